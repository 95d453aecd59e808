//! The [`Hub`] handle: what it shares between its clones, its life
//! (built, closed), and the sink through which a store reports to it
//! (loaded histories, events appended elsewhere, trims:
//! [`crate::store::Sink`]).

use std::fmt;
use std::sync::atomic::Ordering;

use crate::core::TopicName;
use crate::core::id::Epoch;
use crate::hub::HubError;
use crate::hub::config::{HubBuilder, HubConfig};
use crate::hub::registry::Topics;
use crate::hub::sync::{Arc, AtomicBool, AtomicU64, Mutex, RwLock};
use crate::hub::topic::{Counters, Topic};
use crate::store::{Sink, Storage, Store, StreamChange};

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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) config: HubConfig,
    /// Where the history lives (see [`crate::store`]).
    pub(super) storage: Storage,
    pub(super) epoch: Epoch,
    pub(super) topics: RwLock<Topics>,
    pub(super) counters: Arc<Counters>,
    pub(super) closed: AtomicBool,
    /// Topics retired so far; also numbers the epochs of re-created topics.
    pub(super) retired: AtomicU64,
    /// Held by the one publisher that trims the hub back under its bound.
    pub(super) trimming: Mutex<()>,
    /// Set once the task that deletes expired Durable Streams runs.
    pub(super) sweeping: AtomicBool,
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

    /// The epoch of this hub's ids: the ids of every topic start with it.
    ///
    /// A topic that was retired (see [`HubBuilder::max_topics`]) and is
    /// created again gets this epoch followed by a counter, so the ids of
    /// its new history never collide with those of the old one.
    pub fn epoch(&self) -> Epoch {
        self.inner.epoch
    }

    /// The settings the hub was built with.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    pub(super) fn store(&self) -> &Store {
        &self.inner.storage.store
    }

    /// Where the hub keeps its topics' history.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
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

impl HubBuilder {
    /// Builds the hub.
    pub fn build(self) -> Hub {
        let hub = Hub {
            inner: Arc::new(Inner {
                storage: self.storage,
                config: self.config,
                epoch: self.epoch.unwrap_or_else(Epoch::generate),
                topics: RwLock::new(Topics::default()),
                counters: Arc::new(Counters::default()),
                closed: AtomicBool::new(false),
                retired: AtomicU64::new(0),
                trimming: Mutex::new(()),
                sweeping: AtomicBool::new(false),
            }),
        };
        let sink = Arc::new(HubSink(Arc::downgrade(&hub.inner)));
        let config = &hub.inner.config;
        hub.store()
            .attach(sink, config.buffer, config.max_topic_bytes);
        // Topics the store already has exist from the start: they count
        // against the topic bound, and their ids resume.
        for name in hub.store().topics() {
            let topic = TopicName::new(&name).map_err(HubError::from);
            if let Err(e) = topic.and_then(|t| hub.topic(&t)) {
                tracing::warn!(topic = &*name, error = %e, "cannot open a stored topic");
            }
        }
        hub.load_streams();
        hub
    }
}

/// What a store reports reaches the topics through here.
#[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(dead_code))]
struct HubSink(std::sync::Weak<Inner>);

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

    fn stream_entries(
        &self,
        topic: &str,
        generation: u64,
        entries: Vec<(u64, Option<bytes::Bytes>, bool)>,
    ) {
        if let Some((hub, topic)) = self.topic(topic) {
            hub.ingest_stream(&topic, generation, entries);
        }
    }

    fn stream_changed(&self, topic: &str, generation: u64, change: StreamChange) {
        if let Some((hub, topic)) = self.topic(topic) {
            hub.stream_changed(&topic, generation, change);
        }
    }

    fn stream_tail(&self, topic: &str) -> Option<(u64, u64)> {
        let (_, topic) = self.topic(topic)?;
        let ring = topic.lock();
        ring.stream().map(|m| (m.generations.own, ring.latest()))
    }
}
