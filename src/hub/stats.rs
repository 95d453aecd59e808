//! What a hub reports about itself: [`HubStats`] and [`TopicInfo`].

use std::sync::atomic::Ordering;

use crate::core::id::EventId;
use crate::hub::Hub;

impl Hub {
    /// Counters and gauges of the hub's activity.
    pub fn stats(&self) -> HubStats {
        let c = &self.inner.counters;
        HubStats {
            topics: self.read_topics().len(),
            subscribers: c.subscribers.load(Ordering::Relaxed),
            retained_bytes: c.retained_bytes.load(Ordering::Relaxed),
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
            resyncs: c.resyncs.load(Ordering::Relaxed),
            topics_retired: self.inner.retired.load(Ordering::Relaxed),
            idempotent_replays: c.idempotent_replays.load(Ordering::Relaxed),
            idempotent_conflicts: c.idempotent_conflicts.load(Ordering::Relaxed),
            durable_streams: c.durable_streams.load(Ordering::Relaxed),
            durable_appends: c.durable_appends.load(Ordering::Relaxed),
            durable_duplicates: c.durable_duplicates.load(Ordering::Relaxed),
            durable_live_reads: c.durable_live_reads.load(Ordering::Relaxed),
            mercure_updates: c.mercure_updates.load(Ordering::Relaxed),
            mercure_duplicates: c.mercure_duplicates.load(Ordering::Relaxed),
            mercure_subscribers: c.mercure_subscribers.load(Ordering::Relaxed),
        }
    }

    /// Facts about one topic, `None` if it does not exist.
    pub fn topic_info(&self, name: &str) -> Option<TopicInfo> {
        let topic = self.read_topics().get(name).cloned()?;
        let ring = topic.lock();
        let epoch = ring.epoch();
        Some(TopicInfo {
            oldest: ring.oldest().map(|s| EventId::new(epoch, s)),
            latest: EventId::new(epoch, ring.latest()),
            retained_events: ring.len(),
            retained_bytes: ring.bytes(),
            idempotency_keys: ring.key_count(),
            subscribers: topic.subscriber_count(),
        })
    }
}

/// A snapshot of a hub's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HubStats {
    /// Topics that exist.
    pub topics: usize,
    /// Open event streams.
    pub subscribers: usize,
    /// Bytes of encoded events retained by all rings.
    pub retained_bytes: usize,
    /// Events published since the hub was built.
    pub published: u64,
    /// Events handed to subscribers' streams, replays included.
    pub delivered: u64,
    /// Of those, events that were published before the subscription.
    pub replayed: u64,
    /// `resync` events sent.
    pub resyncs: u64,
    /// Idle topics retired to make room for new ones.
    pub topics_retired: u64,
    /// Publishes answered with the ids of an earlier one with the same
    /// idempotency key, publishing nothing.
    pub idempotent_replays: u64,
    /// Publishes refused because their idempotency key was used for a
    /// different request.
    pub idempotent_conflicts: u64,
    /// Durable Streams that exist (`/v1/stream/`), soft-deleted ones too.
    pub durable_streams: usize,
    /// Durable Streams writes accepted (appends and closes).
    pub durable_appends: u64,
    /// Durable Streams writes answered as duplicates (a producer's retry),
    /// changing nothing.
    pub durable_duplicates: u64,
    /// Durable Streams reads waiting for data now (long-poll and SSE).
    pub durable_live_reads: usize,
    /// Mercure updates published (`/.well-known/mercure`).
    pub mercure_updates: u64,
    /// Mercure updates refused because their id is in history (`409`).
    pub mercure_duplicates: u64,
    /// Mercure subscribers connected now.
    pub mercure_subscribers: usize,
}

/// Facts about one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicInfo {
    /// The oldest retained event, `None` when none is retained.
    pub oldest: Option<EventId>,
    /// The newest event (sequence 0 if none was published).
    pub latest: EventId,
    /// Events in the ring.
    pub retained_events: usize,
    /// Bytes of those events (and of the idempotency keys kept with them,
    /// in memory).
    pub retained_bytes: usize,
    /// Idempotency keys the ring keeps (memory store; the disk and Redis
    /// stores keep theirs with the history).
    pub idempotency_keys: usize,
    /// Open streams on the topic.
    pub subscribers: usize,
}
