//! The hub: topics by name, publishing and subscribing.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::event::Event;
use crate::id::{Epoch, EventId};
use crate::resync::locate;
use crate::ring::RingLimits;
use crate::stream::{EventStream, StreamParams};
use crate::topic::{Counters, Topic};

/// The longest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// A handle to a set of topics: cheap to clone, shared across tasks.
///
/// Every event published to a topic gets the next id of that topic and is
/// kept in the topic's ring for replay, whether or not anyone is subscribed.
/// Topics are created on first use.
///
/// # Examples
///
/// ```
/// use ssehub::{Event, Hub};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), ssehub::HubError> {
/// let hub = Hub::builder().buffer(100).build();
/// let first = hub.publish("chat", Event::new("hi")).await?;
/// let second = hub.publish("chat", Event::new("there")).await?;
/// assert_eq!(second.seq(), first.seq() + 1);
/// assert_eq!(first.epoch(), hub.epoch());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: HubConfig,
    epoch: Epoch,
    topics: RwLock<HashMap<Box<str>, Arc<Topic>>>,
    counters: Arc<Counters>,
    closed: AtomicBool,
}

impl Hub {
    /// A hub with the default settings (see [`HubBuilder`]).
    pub fn new() -> Hub {
        HubBuilder::default().build()
    }

    /// Starts configuring a hub.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The epoch of this hub's ids: every id it assigns starts with it.
    pub fn epoch(&self) -> Epoch {
        self.inner.epoch
    }

    /// The settings the hub was built with.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Publishes one event to `topic` and returns the id it was given.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidTopic`], [`HubError::TooManyTopics`] if the topic
    /// is new and the hub is full, [`HubError::Closed`] after [`Hub::close`].
    pub async fn publish(&self, topic: &str, event: Event) -> Result<EventId, HubError> {
        let topic = self.topic(topic)?;
        let published = topic
            .publish(std::iter::once(event.encode()))
            .map_err(|_| HubError::Closed)?;
        Ok(EventId::new(published.epoch, published.first))
    }

    /// Publishes events to `topic` in order, as one batch: they get
    /// consecutive ids and subscribers never see part of the batch without
    /// the events before it.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`]; on error nothing is published.
    pub async fn publish_batch(
        &self,
        topic: &str,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<Vec<EventId>, HubError> {
        let topic = self.topic(topic)?;
        // Encode before taking the topic's lock.
        let encoded: Vec<_> = events.into_iter().map(|e| e.encode()).collect();
        let published = topic.publish(encoded).map_err(|_| HubError::Closed)?;
        Ok(published.ids().collect())
    }

    /// Subscribes to `topic`, resuming after `options`' last event id if any.
    ///
    /// The returned body is ready to be a response body (see
    /// [`EventStream`]).
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidTopic`], [`HubError::TooManyTopics`],
    /// [`HubError::Closed`].
    pub fn subscribe(&self, topic: &str, options: Subscribe) -> Result<EventStream, HubError> {
        let topic = self.topic(topic)?;
        let config = &self.inner.config;
        let (start, replay_end) = {
            let ring = topic.lock();
            (
                locate(&ring, options.last_event_id.as_deref()),
                ring.next_seq(),
            )
        };
        let params = StreamParams {
            retry_ms: config
                .retry
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            keep_alive: config.keep_alive,
            max_frame_bytes: config.max_frame_bytes,
            limit: options.limit,
        };
        Ok(EventStream::new(topic, start, replay_end, params))
    }

    /// Ends every stream and refuses further events and subscriptions.
    ///
    /// Streams end cleanly, so clients reconnect (elsewhere, or to the next
    /// run) with their last event id. Servers call this on shutdown: an
    /// endless event stream would otherwise hold a graceful shutdown forever.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let topics: Vec<_> = self.read_topics().values().cloned().collect();
        for t in topics {
            t.close();
        }
    }

    /// Whether [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

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
            subscribers: topic.subscriber_count(),
        })
    }

    fn read_topics(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, Arc<Topic>>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds or creates a topic.
    fn topic(&self, name: &str) -> Result<Arc<Topic>, HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        if let Some(t) = self.read_topics().get(name) {
            return Ok(t.clone());
        }
        validate_topic(name)?;
        let mut topics = self
            .inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = topics.get(name) {
            return Ok(t.clone());
        }
        let config = &self.inner.config;
        if topics.len() >= config.max_topics {
            return Err(HubError::TooManyTopics);
        }
        let topic = Arc::new(Topic::new(
            name,
            self.inner.epoch,
            RingLimits {
                max_events: config.buffer,
                max_bytes: config.max_topic_bytes,
            },
            self.inner.counters.clone(),
        ));
        topics.insert(name.into(), topic.clone());
        // A close that ran before the insert did not see this topic.
        if self.is_closed() {
            topic.close();
        }
        Ok(topic)
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("epoch", &self.inner.epoch)
            .field("config", &self.inner.config)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Checks a topic name: 1 to 128 bytes of ASCII letters, digits, `-`, `_`,
/// `.` and `:`.
///
/// # Examples
///
/// ```
/// use ssehub::{validate_topic, HubError};
///
/// assert!(validate_topic("orders.eu:42").is_ok());
/// assert_eq!(validate_topic("a/b"), Err(HubError::InvalidTopic));
/// assert_eq!(validate_topic(""), Err(HubError::InvalidTopic));
/// ```
///
/// # Errors
///
/// [`HubError::InvalidTopic`] for anything else.
pub fn validate_topic(name: &str) -> Result<(), HubError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOPIC_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(HubError::InvalidTopic)
    }
}

/// Options of one subscription.
///
/// # Examples
///
/// ```
/// use ssehub::Subscribe;
///
/// // Resume after the last event the client saw, and end after 100 events.
/// let opts = Subscribe::new().last_event_id("k3f9x2ab-1042").limit(100);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Subscribe {
    last_event_id: Option<String>,
    limit: Option<u64>,
}

impl Subscribe {
    /// A live subscription from now on, without limit.
    pub fn new() -> Self {
        Subscribe::default()
    }

    /// Resumes strictly after this id: the value of the client's
    /// `Last-Event-ID`, taken as is (anything that is not a current id
    /// leads to a `resync` event, never to an error).
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// Ends the stream after `n` events (replayed events count, `resync`
    /// does not).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
}

/// Why the hub refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// The topic name is not 1-128 characters of letters, digits, `-_.:`.
    InvalidTopic,
    /// The topic does not exist and the hub holds its maximum of topics.
    TooManyTopics,
    /// The hub was closed.
    Closed,
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HubError::InvalidTopic => {
                "invalid topic name (1-128 characters from A-Z a-z 0-9 - _ . :)"
            }
            HubError::TooManyTopics => "too many topics",
            HubError::Closed => "hub is shutting down",
        })
    }
}

impl std::error::Error for HubError {}

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
    /// Bytes of those events.
    pub retained_bytes: usize,
    /// Open streams on the topic.
    pub subscribers: usize,
}

/// The settings of a [`Hub`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Most events retained per topic.
    pub buffer: usize,
    /// Most bytes of encoded events retained per topic.
    pub max_topic_bytes: usize,
    /// Most topics.
    pub max_topics: usize,
    /// The `retry:` hint sent at the start of each stream.
    pub retry: Option<Duration>,
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
            retry: Some(Duration::from_millis(3000)),
            keep_alive: Some(Duration::from_secs(15)),
            max_frame_bytes: 64 << 10,
        }
    }
}

/// Builds a [`Hub`].
///
/// | setting | default |
/// |---|---|
/// | [`buffer`](HubBuilder::buffer) | 1024 events per topic |
/// | [`max_topic_bytes`](HubBuilder::max_topic_bytes) | 16 MiB per topic |
/// | [`max_topics`](HubBuilder::max_topics) | 10,000 |
/// | [`retry`](HubBuilder::retry) | 3 s |
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
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct HubBuilder {
    config: HubConfig,
    epoch: Option<Epoch>,
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

    /// Most topics the hub holds; publishing or subscribing to a new topic
    /// beyond it fails with [`HubError::TooManyTopics`].
    pub fn max_topics(mut self, topics: usize) -> Self {
        self.config.max_topics = topics;
        self
    }

    /// The reconnection delay suggested to clients (`retry:`), `None` to
    /// send none.
    pub fn retry(mut self, delay: Option<Duration>) -> Self {
        self.config.retry = delay;
        self
    }

    /// How long a stream may stay silent before it sends a keep-alive
    /// comment, `None` for never.
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

    /// Builds the hub.
    pub fn build(self) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                config: self.config,
                epoch: self.epoch.unwrap_or_else(Epoch::generate),
                topics: RwLock::new(HashMap::new()),
                counters: Arc::new(Counters::default()),
                closed: AtomicBool::new(false),
            }),
        }
    }
}
