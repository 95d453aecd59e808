//! How a store reports to the hub: loaded histories, events appended
//! elsewhere, trims ([`crate::store::Sink`]).

use crate::core::id::Epoch;
use crate::hub::Hub;
use crate::hub::handle::Inner;
use crate::hub::sync::Arc;
use crate::hub::topic::Topic;
use crate::store::Sink;

/// What a store reports reaches the topics through here.
#[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
pub(super) struct HubSink(pub(super) std::sync::Weak<Inner>);

#[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
impl HubSink {
    fn topic(&self, name: &str) -> Option<(Hub, Arc<Topic>)> {
        let hub = Hub {
            inner: self.0.upgrade()?,
        };
        let topic = hub.read_topics().get(name).cloned()?;
        Some((hub, topic))
    }
}

impl Sink for HubSink {
    fn load(&self, topic: &str, epoch: Epoch, next: u64, events: Vec<(u64, bytes::Bytes)>) -> bool {
        let Some((hub, topic)) = self.topic(topic) else {
            return false;
        };
        if topic.is_closed() {
            return false;
        }
        topic.prime(epoch, next, events);
        // Loaded events count against the hub's byte bound.
        hub.enforce_total_bytes();
        true
    }

    fn append(&self, topic: &str, epoch: Epoch, events: Vec<(u64, bytes::Bytes)>) {
        if let Some((hub, topic)) = self.topic(topic) {
            topic.ingest(epoch, events);
            hub.enforce_total_bytes();
        }
    }

    fn trimmed(&self, topic: &str, epoch: Epoch, first: u64) {
        if let Some((_, topic)) = self.topic(topic) {
            topic.drop_before(epoch, first);
        }
    }
}
