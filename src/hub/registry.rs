//! The registry of a hub's topics: by name, and in the order in which idle
//! ones retire. What the hub does with it is in `topics.rs`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use crate::core::{IntoTopic, TopicName};
use crate::hub::HubError;
use crate::hub::sync::Arc;
use crate::hub::topic::Topic;

/// The topics of a hub by name, and the order in which idle ones are
/// retired to make room.
#[derive(Default)]
pub(crate) struct Topics {
    pub(super) map: HashMap<TopicName, Arc<Topic>>,
    /// Least recently active first: a min-heap on each topic's activity
    /// stamp, kept lazily. A topic's stamp only grows, so an entry whose
    /// stamp is behind its topic's is put back with the new one when it
    /// comes up, and the first entry whose stamp is current is the least
    /// recently active topic. A topic found with subscribers leaves the
    /// heap until its last one leaves (see `Topic::set_in_order`). Making
    /// room costs O(log n) per topic retired, plus one push per topic
    /// active since it was last looked at.
    pub(super) order: BinaryHeap<Reverse<Stamped>>,
}

impl std::ops::Deref for Topics {
    type Target = HashMap<TopicName, Arc<Topic>>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

/// A topic in the retirement order, with its activity stamp when it was
/// put there (stamps are unique: each is a tick of the hub's clock).
pub(super) struct Stamped(pub(super) u64, pub(super) Arc<Topic>);

impl PartialEq for Stamped {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Stamped {}

impl PartialOrd for Stamped {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stamped {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl Topics {
    pub(super) fn push(&mut self, topic: Arc<Topic>) {
        self.order
            .push(Reverse(Stamped(topic.last_active(), topic)));
    }
}

/// How many times an operation looks a topic up again after finding it
/// retired (which takes a full hub and a concurrent eviction to happen).
pub(super) const LOOKUP_ATTEMPTS: usize = 4;

/// The topic of an event publish or subscription: any valid name but the
/// `ds:` ones, which hold Durable Streams (`hub/durable.rs`) and take
/// neither events nor event streams.
pub(super) fn event_topic(topic: impl IntoTopic) -> Result<TopicName, HubError> {
    let name = topic.into_topic()?;
    if crate::core::durable::path::is_stream_topic(&name) || name.starts_with("mercure:") {
        return Err(HubError::ReservedTopic(name));
    }
    Ok(name)
}
