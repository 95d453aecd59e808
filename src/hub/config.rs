//! The settings of a hub ([`HubConfig`]) and its builder ([`HubBuilder`]).

use std::fmt;
use std::time::Duration;

use crate::core::id::Epoch;
use crate::store::Storage;

/// The settings of a [`Hub`](crate::Hub).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Most events retained per topic.
    pub buffer: usize,
    /// Most bytes of encoded events retained per topic.
    pub max_topic_bytes: usize,
    /// Most topics.
    pub max_topics: usize,
    /// Most bytes of encoded events retained by all topics together.
    pub max_total_bytes: usize,
    /// The `retry:` hint sent at the start of each stream.
    pub retry: Option<Duration>,
    /// Spread of the hint: each stream gets `retry` times a random factor
    /// in `[1 - jitter, 1 + jitter]`.
    pub retry_jitter: f64,
    /// Idle time after which a stream sends a keep-alive comment.
    pub keep_alive: Option<Duration>,
    /// Largest frame a stream builds from several ready events.
    pub max_frame_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            buffer: 1024,
            max_topic_bytes: 16 << 20,
            max_topics: 10_000,
            max_total_bytes: 256 << 20,
            retry: Some(Duration::from_millis(3000)),
            retry_jitter: 0.5,
            keep_alive: Some(Duration::from_secs(15)),
            max_frame_bytes: 64 << 10,
        }
    }
}

/// Builds a [`Hub`](crate::Hub).
///
/// | setting | default |
/// |---|---|
/// | [`buffer`](HubBuilder::buffer) | 1024 events per topic |
/// | [`max_topic_bytes`](HubBuilder::max_topic_bytes) | 16 MiB per topic |
/// | [`max_topics`](HubBuilder::max_topics) | 10,000 |
/// | [`max_total_bytes`](HubBuilder::max_total_bytes) | 256 MiB for all topics |
/// | [`retry`](HubBuilder::retry) | 3 s |
/// | [`retry_jitter`](HubBuilder::retry_jitter) | 0.5: each stream's hint is random in 1.5-4.5 s |
/// | [`keep_alive`](HubBuilder::keep_alive) | 15 s |
/// | [`max_frame_bytes`](HubBuilder::max_frame_bytes) | 64 KiB |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ssehub::Hub;
///
/// let hub = Hub::builder()
///     .buffer(4096)
///     .retry(Some(Duration::from_secs(1)))
///     .keep_alive(Some(Duration::from_secs(20)))
///     .build();
/// assert_eq!(hub.config().buffer, 4096);
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct HubBuilder {
    pub(super) config: HubConfig,
    pub(super) epoch: Option<Epoch>,
    pub(super) storage: Storage,
}

impl fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBuilder")
            .field("config", &self.config)
            .field("epoch", &self.epoch)
            .field("storage", &self.storage)
            .finish()
    }
}

impl HubBuilder {
    /// Most events retained per topic for replay (at least 1).
    pub fn buffer(mut self, events: usize) -> Self {
        self.config.buffer = events.max(1);
        self
    }

    /// Most bytes of encoded events retained per topic. The newest event is
    /// kept even if it alone is larger.
    pub fn max_topic_bytes(mut self, bytes: usize) -> Self {
        self.config.max_topic_bytes = bytes;
        self
    }

    /// Most topics the hub holds. A new topic beyond it retires the least
    /// recently active topic without subscribers (its history is dropped:
    /// clients resuming from it get `resync`); if every topic has
    /// subscribers, it fails with [`HubError::TooManyTopics`](crate::HubError::TooManyTopics). At least 1
    /// (0 counts as 1).
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.config.max_topics = topics.max(1);
        self
    }

    /// Most bytes of encoded events retained by all topics together. Over
    /// it, the topics holding the most bytes lose their oldest events first
    /// (see the README); clients that wanted them get `resync`.
    pub fn max_total_bytes(mut self, bytes: usize) -> Self {
        self.config.max_total_bytes = bytes;
        self
    }

    /// The reconnection delay suggested to clients (`retry:`), `None` to
    /// send none.
    pub fn retry(mut self, delay: Option<Duration>) -> Self {
        self.config.retry = delay;
        self
    }

    /// Spreads the `retry:` hint: each stream gets the delay times a random
    /// factor in `[1 - jitter, 1 + jitter]` (clamped to `0..=1`, NaN counts
    /// as 0; 0 sends the same hint to everyone). After a restart or a
    /// network blip, a fleet of browsers then comes back over a window
    /// instead of all at once.
    pub fn retry_jitter(mut self, jitter: f64) -> Self {
        self.config.retry_jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// How long a stream may stay silent before it sends a keep-alive
    /// comment, `None` (or zero) for never. A period longer than a year
    /// counts as a year.
    pub fn keep_alive(mut self, period: Option<Duration>) -> Self {
        self.config.keep_alive = period.filter(|p| !p.is_zero());
        self
    }

    /// The largest frame a stream builds when several events are ready (a
    /// single larger event still goes out whole).
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.config.max_frame_bytes = bytes.max(1);
        self
    }

    /// Uses this epoch instead of a random one (e.g. to resume ids across
    /// restarts when the events are restored some other way).
    pub fn epoch(mut self, epoch: Epoch) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// Where the history of topics is kept: [`Storage::memory`] (the
    /// default), or a store such as `RedisStore` (feature `redis`;
    /// topics shared by every hub that uses the same Redis; the ring
    /// becomes this node's cache of each stream's tail and ids come from
    /// Redis, so every node gives an event the same id).
    pub fn storage(mut self, storage: impl Into<Storage>) -> Self {
        self.storage = storage.into();
        self
    }
}
