//! Mercure on the hub: every update is one event of the reserved topic
//! [`UPDATES_TOPIC`], so one history (the ring, `--data-dir` or Redis)
//! serves every subscriber, whatever topics its selectors match, including
//! topics that did not exist when it subscribed.
//!
//! An update is kept as an event of type `mercure` whose data is the
//! update as JSON (`core::mercure::update`), published under an
//! idempotency key made from its Mercure id: the store records the key
//! with the event in one step, in every store, so a second update with the
//! same id is refused, and a subscriber resuming after a Mercure id finds
//! its position the way a retried publish finds its events. The key is
//! forgotten with the event.

use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use crate::core::TopicName;
use crate::core::event::Event;
use crate::core::id::EventId;
use crate::core::idempotency::IdempotencyKey;
use crate::core::mercure::update::{Update, UpdateError};
use crate::hub::subscribe::Subscribe;
use crate::hub::{EventStream, Hub, HubError};

/// The topic that holds every Mercure update. Its prefix is reserved: the
/// native API takes no events and no streams on `mercure:` topics.
pub(crate) const UPDATES_TOPIC: &str = "mercure:updates";

/// How long a subscription waits for this node to load the updates
/// (Redis) before it starts anyway.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The event type of a stored update.
pub(crate) const EVENT_TYPE: &str = "mercure";

/// Why an update was not published.
#[derive(Debug)]
pub(crate) enum MercureError {
    /// Refused as sent (`400`).
    Update(UpdateError),
    /// History has an update with this id (`409`).
    DuplicateId,
    Hub(HubError),
}

impl From<HubError> for MercureError {
    fn from(e: HubError) -> Self {
        MercureError::Hub(e)
    }
}

/// Where a subscriber starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// With the next update.
    Live,
    /// With the oldest update history keeps.
    Earliest,
    /// After the update with this Mercure id.
    After(String),
}

/// Where a subscription starts, as history has it.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) stream: EventStream,
    /// The Mercure id before the first update it sends (`None`: `earliest`).
    pub(crate) preceding: Option<String>,
}

fn updates_topic() -> TopicName {
    TopicName::new(UPDATES_TOPIC).expect("a valid topic name")
}

/// The idempotency key of a Mercure id: any string an id may be, kept to
/// the characters and length a key allows.
fn key_of(id: &str) -> IdempotencyKey {
    let digest = Sha256::digest(id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    IdempotencyKey::new(&format!("mercure-{hex}")).expect("a valid key")
}

/// Counts a Mercure subscriber while it lives.
#[derive(Debug)]
pub(crate) struct MercureSubscriber(Hub);

impl Drop for MercureSubscriber {
    fn drop(&mut self) {
        let c = &self.0.inner.counters;
        c.mercure_subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// Counts a Mercure subscriber until the guard drops.
    pub(crate) fn mercure_subscriber(&self) -> MercureSubscriber {
        let c = &self.inner.counters;
        c.mercure_subscribers.fetch_add(1, Ordering::Relaxed);
        MercureSubscriber(self.clone())
    }

    /// Publishes `update` (validated here) to every subscriber whose
    /// selectors match one of its topics.
    pub(crate) async fn publish_mercure(&self, update: &Update) -> Result<(), MercureError> {
        update.validate().map_err(MercureError::Update)?;
        let event = Event::new(update.to_json())
            .with_type(EVENT_TYPE)
            .map_err(|_| MercureError::Update(UpdateError::Type))?;
        let receipt = self
            .publish_keyed(&updates_topic(), &key_of(&update.id), vec![event], false)
            .await;
        let counters = &self.inner.counters;
        match receipt {
            Ok(r) if !r.replayed => {
                counters.mercure_updates.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Ok(_) | Err(HubError::KeyReused) => {
                counters.mercure_duplicates.fetch_add(1, Ordering::Relaxed);
                Err(MercureError::DuplicateId)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The native id of the update with Mercure id `id`, if history still
    /// has it.
    async fn mercure_position(&self, id: &str) -> Result<Option<EventId>, HubError> {
        let key = key_of(id);
        let topic = self.topic(&updates_topic())?;
        let (epoch, in_ring) = {
            let ring = topic.lock();
            let found = ring.key(key.as_str()).map(|r| r.first + r.count - 1);
            (ring.epoch(), found)
        };
        if let Some(seq) = in_ring {
            return Ok(Some(EventId::new(epoch, seq)));
        }
        if let Some(history) = topic.history()
            && let Some((first, count)) = history.find_key(epoch, key.as_str()).await
        {
            return Ok(Some(EventId::new(epoch, first + count - 1)));
        }
        let shared = self
            .store()
            .find_key(UPDATES_TOPIC, key.as_str())
            .await
            .map_err(HubError::Storage)?;
        Ok(shared.map(|(epoch, first, count)| EventId::new(epoch, first + count - 1)))
    }

    /// The id of the newest update this node has in memory, if any.
    pub(crate) fn last_mercure_id(&self) -> Option<String> {
        let topic = self.read_topics().get(&updates_topic()).cloned()?;
        let ring = topic.lock();
        let last = ring.latest();
        let mut frames = vec![bytes::Bytes::new()];
        let (n, _) = ring.frames(last, &mut frames, usize::MAX).ok()?;
        drop(ring);
        let frame = frames.into_iter().take(n).next()?;
        let parts = crate::core::event::frame_parts(&frame)?;
        let data = frame[parts.data].strip_prefix(b"data: ")?;
        let json = data.strip_suffix(b"\n").unwrap_or(data);
        Update::from_json(json).map(|u| u.id)
    }

    /// Whether this node can send what follows `at` (else a resume from it
    /// would only be told that history went on without it).
    async fn serves_after(&self, at: &EventId) -> Result<bool, HubError> {
        let topic = self.topic(&updates_topic())?;
        if self.store().loads_topics() {
            // Redis: once this node has loaded the topic up to `at`.
            let _ = tokio::time::timeout(PATIENCE, topic.caught_up(Some(*at))).await;
        }
        let ring = topic.lock();
        let in_ring = ring.oldest().unwrap_or(ring.next_seq());
        let first = topic.durable_first().map_or(in_ring, |d| d.min(in_ring));
        Ok(at.epoch() == ring.epoch() && at.seq() + 1 >= first)
    }

    /// Opens the history of updates for a subscriber: from `resume`, ending
    /// at `expires_at` if given. An id history does not have starts with
    /// the oldest update kept (nothing is lost; the subscriber learns it
    /// from `preceding`, `earliest`).
    pub(crate) async fn subscribe_mercure(
        &self,
        resume: &Resume,
        expires_at: Option<std::time::SystemTime>,
    ) -> Result<Started, HubError> {
        let mut options = Subscribe::new();
        if let Some(at) = expires_at {
            options = options.expires_at(at);
        }
        let (options, preceding) = match resume {
            Resume::Live => (options, None),
            Resume::Earliest => (options.rewind(u64::MAX), None),
            Resume::After(id) => match self.mercure_position(id).await? {
                Some(at) if self.serves_after(&at).await? => {
                    (options.last_event_id(at.to_string()), Some(id.clone()))
                }
                // Unknown, or older than this node can serve (a shared
                // store's keys outlive its ring): from the oldest kept.
                _ => (options.rewind(u64::MAX), None),
            },
        };
        let stream = self
            .subscribe_ready_name(&updates_topic(), options, PATIENCE)
            .await?;
        Ok(Started { stream, preceding })
    }
}
