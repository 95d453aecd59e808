//! The fan-out: topics by name, each with a ring of encoded events, and the
//! streams that read them ([`EventStream`] for one topic,
//! [`MultiEventStream`] for several).

pub(crate) mod stream;
mod subscribe_multi;
mod sync;
pub(crate) mod topic;

#[cfg(all(test, ssehub_loom))]
mod loom_tests;

pub use self::stream::{EventStream, MultiEventStream};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use self::stream::StreamParams;
use self::sync::{Arc, AtomicBool, AtomicU64, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use crate::core::event::Event;
use crate::core::id::{Epoch, EventId};
use crate::core::idempotency::{Fingerprint, IdempotencyKey, Keyed};
use crate::core::resync::locate;
use crate::core::ring::RingLimits;
use crate::core::{IntoTopic, InvalidTopic, TopicName};
use crate::hub::topic::{Counters, Published, Topic};
use crate::store::{Sink, Storage, Store, StoreError};

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
    /// Where the history lives (see [`crate::store`]).
    storage: Storage,
    epoch: Epoch,
    topics: RwLock<Topics>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    /// Topics retired so far; also numbers the epochs of re-created topics.
    retired: AtomicU64,
    /// Held by the one publisher that trims the hub back under its bound.
    trimming: Mutex<()>,
}

/// The topics of a hub by name, and the order in which idle ones are
/// retired to make room.
#[derive(Default)]
struct Topics {
    map: HashMap<TopicName, Arc<Topic>>,
    /// Least recently active first: a min-heap on each topic's activity
    /// stamp, kept lazily. A topic's stamp only grows, so an entry whose
    /// stamp is behind its topic's is put back with the new one when it
    /// comes up, and the first entry whose stamp is current is the least
    /// recently active topic. A topic found with subscribers leaves the
    /// heap until its last one leaves (see `Topic::set_in_order`). Making
    /// room costs O(log n) per topic retired, plus one push per topic
    /// active since it was last looked at.
    order: BinaryHeap<Reverse<Stamped>>,
}

impl std::ops::Deref for Topics {
    type Target = HashMap<TopicName, Arc<Topic>>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

/// A topic in the retirement order, with its activity stamp when it was
/// put there (stamps are unique: each is a tick of the hub's clock).
struct Stamped(u64, Arc<Topic>);

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
    fn push(&mut self, topic: Arc<Topic>) {
        self.order
            .push(Reverse(Stamped(topic.last_active(), topic)));
    }
}

/// How many times an operation looks a topic up again after finding it
/// retired (which takes a full hub and a concurrent eviction to happen).
const LOOKUP_ATTEMPTS: usize = 4;

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

    /// Publishes one event to `topic` and returns the id it was given.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidTopic`], [`HubError::TooManyTopics`] if the topic
    /// is new and the hub is full, [`HubError::TooLarge`] if the event alone
    /// is larger than [`HubConfig::max_total_bytes`], [`HubError::Closed`]
    /// after [`Hub::close`], [`HubError::Storage`] if the storage failed.
    pub async fn publish(&self, topic: impl IntoTopic, event: Event) -> Result<EventId, HubError> {
        let topic = &topic.into_topic()?;
        let published = if self.store().is_memory() {
            let encoded = vec![event.encode()];
            self.check_size(&encoded)?;
            self.publish_encoded(topic, encoded)?
        } else {
            fresh(self.append(topic, vec![event], None).await?)?
        };
        Ok(EventId::new(published.epoch, published.first))
    }

    /// Refuses events that the hub could not keep until a subscriber reads
    /// them: more bytes than [`HubConfig::max_total_bytes`] would evict
    /// themselves, so a publisher would be told they were published while
    /// every subscriber got `resync` instead.
    fn check_size(&self, encoded: &[crate::core::event::Encoded]) -> Result<(), HubError> {
        let bytes: usize = encoded.iter().map(|e| e.max_frame_len()).sum();
        if bytes > self.inner.config.max_total_bytes {
            Err(HubError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Publishes events to `topic` in order, as one batch: they get
    /// consecutive ids and subscribers never see part of the batch without
    /// the events before it.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`] ([`HubError::TooLarge`] counts the whole batch);
    /// on error nothing is published.
    pub async fn publish_batch(
        &self,
        topic: impl IntoTopic,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<Vec<EventId>, HubError> {
        let topic = &topic.into_topic()?;
        let published = if self.store().is_memory() {
            // Encode before taking the topic's lock.
            let encoded: Vec<_> = events.into_iter().map(|e| e.encode()).collect();
            self.check_size(&encoded)?;
            self.publish_encoded(topic, encoded)?
        } else {
            fresh(
                self.append(topic, events.into_iter().collect(), None)
                    .await?,
            )?
        };
        Ok(published.ids().collect())
    }

    /// Publishes one event to `topic` under an idempotency key: the first
    /// call with `key` publishes; a later one with the same key and the same
    /// event publishes nothing and gets the same id (a [`Receipt`] marked
    /// `replayed`); one with the same key and a different event fails with
    /// [`HubError::KeyReused`].
    ///
    /// A key is remembered at least as long as the event it published is
    /// retained, and survives what the topic's history survives: a restart
    /// with the disk store (it is written in the same atomic batch as the
    /// event), other nodes with Redis (the same script appends and records
    /// it). Keys are per topic. Only publishes that succeed are remembered:
    /// after an error the key is free. Calls with the same key that overlap
    /// never both publish: in memory and on disk a later one waits for the
    /// earlier one's outcome; with Redis, the one whose script runs first
    /// publishes and the others replay.
    ///
    /// An event and a batch of that one event are different requests (they
    /// are answered differently over HTTP).
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`], and [`HubError::KeyReused`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ssehub::core::IdempotencyKey;
    /// use ssehub::{Event, Hub, HubError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// let key = IdempotencyKey::new("order-1042-shipped")?;
    /// let first = hub.publish_idempotent("orders", &key, Event::new("shipped")).await?;
    /// // The answer was lost; the publisher tries again.
    /// let again = hub.publish_idempotent("orders", &key, Event::new("shipped")).await?;
    /// assert_eq!((again.ids, again.replayed), (first.ids, true));
    /// assert_eq!(hub.topic_info("orders").unwrap().retained_events, 1);
    /// let other = hub.publish_idempotent("orders", &key, Event::new("lost")).await;
    /// assert!(matches!(other, Err(HubError::KeyReused)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish_idempotent(
        &self,
        topic: impl IntoTopic,
        key: &IdempotencyKey,
        event: Event,
    ) -> Result<Receipt<EventId>, HubError> {
        let topic = &topic.into_topic()?;
        let receipt = self.publish_keyed(topic, key, vec![event], false).await?;
        Ok(Receipt {
            ids: EventId::new(receipt.ids.epoch, receipt.ids.first),
            replayed: receipt.replayed,
        })
    }

    /// [`Hub::publish_batch`] under an idempotency key, as
    /// [`Hub::publish_idempotent`]: the same key and the same events in the
    /// same order get the same ids and publish nothing.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish_batch`], and [`HubError::KeyReused`].
    pub async fn publish_batch_idempotent(
        &self,
        topic: impl IntoTopic,
        key: &IdempotencyKey,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<Receipt<Vec<EventId>>, HubError> {
        let topic = &topic.into_topic()?;
        let events = events.into_iter().collect();
        let receipt = self.publish_keyed(topic, key, events, true).await?;
        Ok(Receipt {
            ids: receipt.ids.ids().collect(),
            replayed: receipt.replayed,
        })
    }

    async fn publish_keyed(
        &self,
        topic: &TopicName,
        key: &IdempotencyKey,
        events: Vec<Event>,
        batch: bool,
    ) -> Result<Receipt<Published>, HubError> {
        let fingerprint = Fingerprint::of(batch, &events);
        let outcome = if self.store().is_memory() {
            let encoded: Vec<_> = events.iter().map(Event::encode).collect();
            self.check_size(&encoded)?;
            self.publish_encoded_keyed(topic, encoded, key, fingerprint)?
        } else {
            self.append(topic, events, Some((key, fingerprint))).await?
        };
        let counters = &self.inner.counters;
        match outcome {
            Keyed::Fresh(ids) => Ok(Receipt {
                ids,
                replayed: false,
            }),
            Keyed::Replayed(ids) => {
                counters.idempotent_replays.fetch_add(1, Ordering::Relaxed);
                Ok(Receipt {
                    ids,
                    replayed: true,
                })
            }
            Keyed::Conflict => {
                counters
                    .idempotent_conflicts
                    .fetch_add(1, Ordering::Relaxed);
                Err(HubError::KeyReused)
            }
        }
    }

    /// Appends through a store other than memory: the store gives the ids
    /// (and, under a key, may find that they were given already).
    async fn append(
        &self,
        name: &TopicName,
        events: Vec<Event>,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> Result<Keyed<Published>, HubError> {
        let encoded: Vec<_> = events.iter().map(Event::encode).collect();
        self.check_size(&encoded)?;
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        // A store that keeps history on this machine hands the durable
        // frames back, in order, for the topic's ring; Redis delivers what
        // its reader reads, on every node alike.
        let deliver: crate::store::Deliver = if self.store().loads_topics() {
            Box::new(|_, _, _| {})
        } else {
            let topic = self.topic(name)?;
            let hub = self.clone();
            Box::new(move |epoch, first, frames| {
                // Counted here, not after the answer: a publisher that went
                // away (its request's future dropped) published all the same.
                let count = frames.len() as u64;
                topic.ingest(epoch, (first..).zip(frames));
                hub.inner
                    .counters
                    .published
                    .fetch_add(count, Ordering::Relaxed);
                hub.enforce_total_bytes();
            })
        };
        let outcome = self
            .store()
            .append(name, &events, encoded, deliver, key)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, topic = name.as_str(), "append failed");
                HubError::Storage(e)
            })?;
        let count = events.len() as u64;
        let published = |a: crate::store::Appended| Published {
            epoch: a.epoch,
            first: a.first,
            count,
        };
        Ok(match outcome {
            Keyed::Fresh(appended) => {
                if self.store().loads_topics() {
                    // Redis: the outcome is known only here.
                    self.inner
                        .counters
                        .published
                        .fetch_add(count, Ordering::Relaxed);
                }
                Keyed::Fresh(published(appended))
            }
            Keyed::Replayed(appended) => Keyed::Replayed(published(appended)),
            Keyed::Conflict => Keyed::Conflict,
        })
    }

    fn store(&self) -> &Store {
        &self.inner.storage.store
    }

    /// Where the hub keeps its topics' history.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    fn publish_encoded(
        &self,
        name: &TopicName,
        mut encoded: Vec<crate::core::event::Encoded>,
    ) -> Result<Published, HubError> {
        for _ in 0..LOOKUP_ATTEMPTS {
            let topic = self.topic(name)?;
            match topic.publish(encoded) {
                Ok(published) => {
                    self.enforce_total_bytes();
                    return Ok(published);
                }
                // Retired between the lookup and the lock: look again.
                Err(back) if !self.is_closed() => encoded = back,
                Err(_) => break,
            }
        }
        Err(HubError::Closed)
    }

    /// [`Hub::publish_encoded`] under an idempotency key, in memory.
    fn publish_encoded_keyed(
        &self,
        name: &TopicName,
        mut encoded: Vec<crate::core::event::Encoded>,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<Keyed<Published>, HubError> {
        for _ in 0..LOOKUP_ATTEMPTS {
            let topic = self.topic(name)?;
            match topic.publish_keyed(encoded, key, fingerprint) {
                Ok(outcome) => {
                    if matches!(outcome, Keyed::Fresh(_)) {
                        self.enforce_total_bytes();
                    }
                    return Ok(outcome);
                }
                // Retired between the lookup and the lock: look again.
                Err(back) if !self.is_closed() => encoded = back,
                Err(_) => break,
            }
        }
        Err(HubError::Closed)
    }

    /// Subscribes to `topic`, resuming after `options`' last event id if any.
    ///
    /// The returned body is ready to be a response body (see
    /// [`EventStream`]). With Redis, a topic this node has not loaded yet
    /// starts when it is loaded; answer with [`Hub::subscribe_ready`] instead,
    /// so that the start is fixed before the client gets its response.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidTopic`], [`HubError::TooManyTopics`],
    /// [`HubError::Closed`].
    pub fn subscribe(
        &self,
        topic: impl IntoTopic,
        options: Subscribe,
    ) -> Result<EventStream, HubError> {
        let topic = &topic.into_topic()?;
        let params = self.stream_params(&options);
        for _ in 0..LOOKUP_ATTEMPTS {
            let topic = self.topic(topic)?;
            let ring = topic.lock();
            if topic.is_closed() {
                // Retired between the lookup and the lock: look again.
                continue;
            }
            topic.add_subscriber();
            if !topic.is_primed() {
                // The storage is still loading the topic's history.
                drop(ring);
                return Ok(EventStream::deferred(
                    topic,
                    options.last_event_id,
                    options.rewind,
                    params,
                ));
            }
            let start = locate(
                &ring,
                options.last_event_id.as_deref(),
                options.rewind,
                topic.durable_first(),
            );
            let replay_end = ring.next_seq();
            drop(ring);
            return Ok(EventStream::new(topic, start, replay_end, params));
        }
        Err(HubError::Closed)
    }

    /// How a stream with `options` is set up.
    fn stream_params(&self, options: &Subscribe) -> StreamParams {
        let config = &self.inner.config;
        StreamParams {
            retry_ms: config.retry.map(|d| jittered_ms(d, config.retry_jitter)),
            keep_alive: config.keep_alive,
            max_frame_bytes: config.max_frame_bytes,
            limit: options.limit,
            expires_at: options.expires_at,
        }
    }

    /// Like [`Hub::subscribe`], but with Redis, first waits (at most
    /// `patience`) until this node has loaded the topic's history, so the
    /// stream's start is fixed before the caller answers the client: an
    /// event published after the client got its response is never taken
    /// for history. In memory there is nothing to wait for.
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe`].
    pub async fn subscribe_ready(
        &self,
        topic: impl IntoTopic,
        options: Subscribe,
        patience: Duration,
    ) -> Result<EventStream, HubError> {
        let topic = &topic.into_topic()?;
        if self.store().loads_topics() {
            // Wait until the topic is loaded and, for a resume, until this
            // node has read up to the client's id: a node behind the others
            // must not answer `future` (and replay) for an id that exists.
            let t = self.topic(topic)?;
            let wanted = options
                .last_event_id
                .as_deref()
                .and_then(|id| id.parse::<EventId>().ok());
            // If the storage is down, the stream starts when it is back.
            let _ = tokio::time::timeout(patience, t.caught_up(wanted)).await;
        }
        let mut stream = self.subscribe(topic, options)?;
        if stream.is_deferred() {
            stream.start_if_primed();
        }
        Ok(stream)
    }

    /// Subscribes for an HTTP response: at once when the topic's start is
    /// known (always in memory), else after [`Hub::subscribe_ready`]'s wait.
    pub(crate) fn subscribe_for_response(
        &self,
        topic: &TopicName,
        options: Subscribe,
        patience: Duration,
    ) -> Subscribing {
        if !self.store().loads_topics() {
            return Subscribing::Ready(self.subscribe(topic, options));
        }
        let hub = self.clone();
        let topic = topic.clone();
        Subscribing::Waiting(Box::pin(async move {
            hub.subscribe_ready(topic, options, patience).await
        }))
    }

    /// The id of `topic`'s newest event (sequence 0 when it has none): where
    /// a stream that starts right after a snapshot must resume from. A
    /// server-rendered page reads it with the data it renders, then opens
    /// its stream with `?lastEventId=` set to it, and misses nothing in
    /// between. With Redis, waits (at most `patience`) for this node to
    /// load the topic.
    ///
    /// It changes nothing: a topic that does not exist is not created (nor
    /// another retired to make room). Its position is sequence 0 of the
    /// epoch the hub would create it with now, so a stream that resumes
    /// from it misses nothing; if the topic gets another epoch (the hub
    /// retired a topic meanwhile, or the disk store chose it), that stream
    /// starts with `resync` (`epoch`) and replays everything it has. With
    /// Redis a topic this node has not loaded is loaded (Redis has its
    /// history).
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe`]: [`HubError::TooManyTopics`] if a stream of it
    /// would be refused so.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ssehub::{Event, Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// hub.publish("prices", Event::new("41")).await?;
    /// let seen = hub.position("prices", Duration::from_secs(2)).await?;
    /// hub.publish("prices", Event::new("42")).await?; // after the snapshot
    /// let stream = hub.subscribe("prices", Subscribe::new().last_event_id(seen.to_string()))?;
    /// assert_eq!(stream.position(), seen, "42 comes first");
    ///
    /// // A topic that does not exist stays so.
    /// let empty = hub.position("quiet", Duration::from_secs(2)).await?;
    /// assert_eq!(empty.seq(), 0);
    /// assert!(hub.topic_info("quiet").is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn position(
        &self,
        topic: impl IntoTopic,
        patience: Duration,
    ) -> Result<EventId, HubError> {
        let name = topic.into_topic()?;
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let existing = self
            .read_topics()
            .get(&name)
            .filter(|t| !t.is_closed())
            .cloned();
        let t = match existing {
            Some(t) => t,
            // Only Redis knows where the topic stands.
            None if self.store().loads_topics() => self.topic(&name)?,
            None => {
                self.could_hold(std::slice::from_ref(&name))?;
                return Ok(EventId::new(self.next_epoch(), 0));
            }
        };
        if !t.is_primed() {
            let primed = async {
                loop {
                    let notified = t.notify().notified();
                    if t.is_primed() || t.is_closed() {
                        return;
                    }
                    notified.await;
                }
            };
            if tokio::time::timeout(patience, primed).await.is_err() || t.is_closed() {
                return Err(HubError::Storage(StoreError::new(
                    crate::store::ErrorKind::Unavailable,
                    "the topic's history is not loaded yet",
                )));
            }
        }
        let ring = t.lock();
        Ok(EventId::new(ring.epoch(), ring.latest()))
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
            topics_retired: self.inner.retired.load(Ordering::Relaxed),
            idempotent_replays: c.idempotent_replays.load(Ordering::Relaxed),
            idempotent_conflicts: c.idempotent_conflicts.load(Ordering::Relaxed),
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

    fn read_topics(&self) -> RwLockReadGuard<'_, Topics> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_topics(&self) -> RwLockWriteGuard<'_, Topics> {
        self.inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds or creates a topic.
    fn topic(&self, name: &TopicName) -> Result<Arc<Topic>, HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        if let Some(t) = self.read_topics().get(name)
            && !t.is_closed()
        {
            return Ok(t.clone());
        }
        let mut topics = self.write_topics();
        self.create_all(&mut topics, std::slice::from_ref(name))?;
        topics.get(name).cloned().ok_or(HubError::Closed)
    }

    /// Finds or creates every topic of `names` and counts a stream on each
    /// (see [`Topic::attach`]), all or nothing: if the hub cannot hold them
    /// all, it fails without creating, retiring or attaching anything.
    fn attach_all(&self, names: &[TopicName]) -> Result<Vec<Arc<Topic>>, HubError> {
        self.check_width(names.len())?;
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        // Topics are retired under the write lock only: under either lock,
        // none of them can be retired before it is attached.
        {
            let topics = self.read_topics();
            let found: Option<Vec<_>> = names
                .iter()
                .map(|n| topics.get(n).filter(|t| !t.is_closed()))
                .collect();
            if let Some(found) = found {
                return Ok(attach_each(found));
            }
        }
        let mut topics = self.write_topics();
        self.create_all(&mut topics, names)?;
        let found: Option<Vec<_>> = names.iter().map(|n| topics.get(n)).collect();
        match found {
            Some(found) if !self.is_closed() => Ok(attach_each(found)),
            _ => Err(HubError::Closed),
        }
    }

    /// Refuses a stream of more topics than the hub can ever hold at once.
    fn check_width(&self, topics: usize) -> Result<(), HubError> {
        let max = self.inner.config.max_topics;
        if topics > max {
            return Err(HubError::StreamTooWide { topics, max });
        }
        Ok(())
    }

    /// Whether the hub could hold every topic of `names` now (retiring
    /// idle topics to make room), without changing anything: what
    /// [`Hub::attach_all`] would find, but for a race with other requests.
    fn could_hold(&self, names: &[TopicName]) -> Result<(), HubError> {
        self.check_width(names.len())?;
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let topics = self.read_topics();
        let missing = names.iter().filter(|n| !topics.contains_key(*n)).count();
        let need = (topics.len() + missing).saturating_sub(self.inner.config.max_topics);
        if need == 0 {
            return Ok(());
        }
        let busy = self.inner.counters.busy_topics.load(Ordering::Relaxed);
        let kept_idle = names
            .iter()
            .filter_map(|n| topics.get(n))
            .filter(|t| t.subscriber_count() == 0)
            .count();
        let idle = topics.len().saturating_sub(busy).saturating_sub(kept_idle);
        if idle >= need {
            Ok(())
        } else {
            Err(HubError::TooManyTopics)
        }
    }

    /// The epoch a topic created now gets, if the hub chooses it (memory).
    fn next_epoch(&self) -> Epoch {
        self.inner
            .epoch
            .incarnation(self.inner.retired.load(Ordering::Relaxed))
    }

    /// Creates the topics of `names` that do not exist, retiring as many
    /// idle topics (none of `names`) as they need room for; all or
    /// nothing: without room for all, nothing changes.
    fn create_all(&self, topics: &mut Topics, names: &[TopicName]) -> Result<(), HubError> {
        let mut missing = Vec::new();
        for name in names {
            match topics.map.get(name) {
                Some(t) if !t.is_closed() || self.is_closed() => {}
                Some(_) => {
                    topics.map.remove(name);
                    missing.push(name);
                }
                None => missing.push(name),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let config = &self.inner.config;
        let need = (topics.map.len() + missing.len()).saturating_sub(config.max_topics);
        if need > 0 {
            self.retire_idle(topics, need, names)?;
        }
        let limits = RingLimits {
            max_events: config.buffer,
            max_bytes: config.max_topic_bytes,
        };
        for name in missing {
            let counters = self.inner.counters.clone();
            let topic = Arc::new(match self.store().open_topic(name) {
                // The store keeps the history: it says where it stands.
                Some((epoch, next, history)) => {
                    Topic::new(name, epoch, limits, counters, true).with_history(next, history)
                }
                None => {
                    let primed = !self.store().loads_topics();
                    Topic::new(name, self.next_epoch(), limits, counters, primed)
                }
            });
            topics.map.insert(name.clone(), topic.clone());
            topics.push(topic.clone());
            self.store().follow(name);
            // A close that ran before the insert did not see this topic.
            if self.is_closed() {
                topic.close();
            }
        }
        Ok(())
    }
}

/// Counts a stream on each topic, under its lock (see `Topic::retire`).
fn attach_each(topics: Vec<&Arc<Topic>>) -> Vec<Arc<Topic>> {
    topics
        .into_iter()
        .map(|t| {
            let ring = t.lock();
            t.attach();
            drop(ring);
            t.clone()
        })
        .collect()
}

impl Hub {
    /// Makes room for `need` topics: retires the least recently active
    /// topics that have no subscribers and are not in `keep`, all or none.
    /// Their history is dropped; clients that resume from it later get
    /// `resync` (its epoch is gone), never another history.
    fn retire_idle(
        &self,
        topics: &mut Topics,
        need: usize,
        keep: &[TopicName],
    ) -> Result<(), HubError> {
        // Topics that lost their last subscriber go back in the order.
        let again = std::mem::take(
            &mut *self
                .inner
                .counters
                .idle_again
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for name in again {
            if let Some(t) = topics.map.get(&*name).cloned() {
                topics.push(t);
            }
        }
        // Entries taken out that stay: candidates and kept topics.
        let mut aside: Vec<Stamped> = Vec::new();
        let mut chosen: Vec<Arc<Topic>> = Vec::new();
        let retired = loop {
            while chosen.len() < need {
                let Some(Reverse(entry)) = topics.order.pop() else {
                    break;
                };
                let t = &entry.1;
                let current = topics.map.get(t.name()).is_some_and(|m| Arc::ptr_eq(m, t));
                if !current || t.is_closed() {
                    continue; // retired or replaced: the entry is stale
                }
                let now = t.last_active();
                if now != entry.0 {
                    topics.order.push(Reverse(Stamped(now, entry.1)));
                } else if keep.iter().any(|k| k.as_str() == t.name()) {
                    aside.push(entry);
                } else if t.subscriber_count() > 0 {
                    // Out of the order until its last subscriber leaves;
                    // if that happened meanwhile, it stays in.
                    t.set_in_order(false);
                    if t.subscriber_count() == 0 && !t.set_in_order(true) {
                        aside.push(entry);
                    }
                } else if !chosen.iter().any(|c| Arc::ptr_eq(c, t)) {
                    chosen.push(entry.1);
                }
            }
            if chosen.len() < need {
                break false;
            }
            // Every candidate locked at once: a subscriber registers under
            // the lock, so none can come between the check and the close.
            let rings: Vec<_> = chosen.iter().map(|t| t.lock()).collect();
            if chosen.iter().all(|t| t.subscriber_count() == 0) {
                for (t, ring) in chosen.iter().zip(rings) {
                    t.retire_locked(ring);
                }
                break true;
            }
            drop(rings);
            // One was subscribed meanwhile: put it aside, look further.
            let (busy, idle): (Vec<_>, Vec<_>) = std::mem::take(&mut chosen)
                .into_iter()
                .partition(|t| t.subscriber_count() > 0);
            chosen = idle;
            aside.extend(busy.into_iter().map(|t| Stamped(t.last_active(), t)));
        };
        for entry in aside {
            topics.order.push(Reverse(entry));
        }
        if !retired {
            for t in chosen {
                topics.push(t);
            }
            return Err(HubError::TooManyTopics);
        }
        for topic in chosen {
            topics.map.remove(topic.name());
            self.store().forget(topic.name());
            self.inner.retired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic = topic.name(), "retired idle topic to make room");
        }
        Ok(())
    }

    /// Keeps the bytes retained by all topics under the hub's bound.
    ///
    /// When the total goes over [`HubConfig::max_total_bytes`], the topics
    /// holding the most bytes are trimmed (oldest events first) to a common
    /// level, so that the total falls to 15/16 of the bound: small topics
    /// keep their history, the largest give up the oldest part of theirs.
    /// The slack means this runs once per 1/16 of the bound published, not
    /// on every publish.
    fn enforce_total_bytes(&self) {
        let max = self.inner.config.max_total_bytes;
        let c = &self.inner.counters;
        if c.retained_bytes.load(Ordering::Relaxed) <= max {
            return;
        }
        // One trimmer at a time; the others go on publishing.
        let Ok(_trimming) = self.inner.trimming.try_lock() else {
            return;
        };
        let target = max - max / 16;
        for _ in 0..4 {
            let total = c.retained_bytes.load(Ordering::Relaxed);
            if total <= target {
                return;
            }
            let mut sizes: Vec<_> = self
                .read_topics()
                .values()
                .map(|t| (t.retained_bytes(), t.clone()))
                .collect();
            let level = water_level(&mut sizes, total - target);
            for (size, topic) in &sizes {
                // Events are whole: cutting every topic to the level can
                // shed far more than the excess (alike topics of one event
                // each would all be emptied), so stop once it is shed.
                let total = c.retained_bytes.load(Ordering::Relaxed);
                if *size <= level || total <= target {
                    break;
                }
                topic.trim_to(level.max(size.saturating_sub(total - target)));
            }
        }
    }
}

/// A retry hint for one connection: `retry` scaled by a random factor in
/// `[1 - jitter, 1 + jitter]`, so that clients cut at the same moment do not
/// all come back in the same millisecond.
fn jittered_ms(retry: Duration, jitter: f64) -> u64 {
    let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    if jitter <= 0.0 || ms == 0 {
        return ms;
    }
    let unit = fastrand::f64(); // [0, 1)
    let factor = 1.0 - jitter + 2.0 * jitter * unit;
    (ms as f64 * factor).round() as u64
}

/// Sorts `sizes` largest first and returns the level to which the largest
/// must be cut so that together they shed at least `excess`.
fn water_level(sizes: &mut [(usize, Arc<Topic>)], excess: usize) -> usize {
    sizes.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    let mut above = 0; // sum of the k largest
    for k in 0..sizes.len() {
        above += sizes[k].0;
        let next = sizes.get(k + 1).map_or(0, |s| s.0);
        // Cutting the k+1 largest down to `next` sheds this much.
        if above - (k + 1) * next >= excess {
            return (above - excess) / (k + 1);
        }
    }
    0
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
    rewind: u64,
    expires_at: Option<std::time::SystemTime>,
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

    /// The last event id set, if any.
    pub(crate) fn requested_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Ends the stream after `n` events (replayed events count, `resync`
    /// does not).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// A fresh subscription (without [`last_event_id`](Self::last_event_id))
    /// starts with the last `n` retained events, then goes live: a page
    /// shows recent history without a snapshot of its own. Fewer are sent
    /// if fewer are retained; a resume ignores it.
    ///
    /// ```
    /// use ssehub::{Event, Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// for i in 1..=5 {
    ///     hub.publish("feed", Event::new(i.to_string())).await?;
    /// }
    /// let stream = hub.subscribe("feed", Subscribe::new().rewind(2))?;
    /// assert_eq!(stream.position().seq(), 3, "starts after event 3: 4 and 5 come first");
    /// # Ok(())
    /// # }
    /// ```
    pub fn rewind(mut self, n: u64) -> Self {
        self.rewind = n;
        self
    }

    /// Ends the stream at `at` (when the credentials it was opened with
    /// expire): it sends an event of type `reauth` (see
    /// [`REAUTH_EVENT_TYPE`](crate::core::REAUTH_EVENT_TYPE)) whose data is
    /// `{"reason":"expired","lastEventId":"<its position>"}`, then ends. The
    /// client gets new credentials and resumes from that id.
    pub fn expires_at(mut self, at: std::time::SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// Why the hub refused an operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum HubError {
    /// The topic name is not 1-128 characters of letters, digits, `-_.:`.
    InvalidTopic,
    /// The topic does not exist, the hub holds its maximum of topics, and
    /// every one of them has subscribers (for a stream of several topics:
    /// too few of them are idle to make room for its new topics). This
    /// passes when subscribers leave.
    TooManyTopics,
    /// A stream of several topics names more topics than the hub holds at
    /// most ([`HubConfig::max_topics`]): it can never be served.
    StreamTooWide {
        /// The topics of the stream.
        topics: usize,
        /// The most topics the hub holds.
        max: usize,
    },
    /// The hub was closed.
    Closed,
    /// The storage failed (see the source).
    Storage(StoreError),
    /// The event (or batch) is larger than the hub retains in all
    /// ([`HubConfig::max_total_bytes`]): it could never be delivered.
    TooLarge,
    /// The idempotency key was already used on this topic for a different
    /// request (see [`Hub::publish_idempotent`]): nothing was published.
    KeyReused,
    /// A stream of several topics was asked for with none.
    NoTopics,
    /// A stream of several topics names this topic twice.
    DuplicateTopic(TopicName),
    /// The last event id of a stream of several topics is not the
    /// [`MultiId`](crate::core::MultiId) of its topics.
    InvalidLastEventId(crate::core::MultiIdError),
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HubError::InvalidTopic => {
                "invalid topic name (1-128 characters from A-Z a-z 0-9 - _ . :)"
            }
            HubError::TooManyTopics => "too many topics",
            HubError::StreamTooWide { topics, max } => {
                return write!(
                    f,
                    "the stream names {topics} topics; the server holds at most {max} (--max-topics)"
                );
            }
            HubError::Closed => "hub is shutting down",
            HubError::Storage(_) => "storage failed",
            HubError::TooLarge => "event is larger than the server retains (--max-total-bytes)",
            HubError::KeyReused => {
                "Idempotency-Key already used for a different request on this topic"
            }
            HubError::NoTopics => "no topic",
            HubError::DuplicateTopic(t) => return write!(f, "topic {t} is named twice"),
            HubError::InvalidLastEventId(e) => return write!(f, "invalid last event id: {e}"),
        })
    }
}

impl From<InvalidTopic> for HubError {
    fn from(_: InvalidTopic) -> Self {
        HubError::InvalidTopic
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HubError::Storage(e) => Some(e),
            HubError::InvalidLastEventId(e) => Some(e),
            _ => None,
        }
    }
}

/// What an idempotent publish did (see [`Hub::publish_idempotent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt<T> {
    /// The ids of the events: given now, or, if `replayed`, given to the
    /// first publish with the key.
    pub ids: T,
    /// The key was used before for the same request: nothing was
    /// published now.
    pub replayed: bool,
}

/// The ids of an append that was not under a key (which only a key can
/// make a replay or a conflict).
fn fresh(outcome: Keyed<Published>) -> Result<Published, HubError> {
    match outcome {
        Keyed::Fresh(p) | Keyed::Replayed(p) => Ok(p),
        Keyed::Conflict => Err(HubError::KeyReused),
    }
}

/// A subscription being made for a response (see
/// `Hub::subscribe_for_response`).
pub(crate) enum Subscribing<S = EventStream> {
    Ready(Result<S, HubError>),
    Waiting(std::pin::Pin<Box<dyn std::future::Future<Output = Result<S, HubError>> + Send>>),
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

/// The settings of a [`Hub`].
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

/// Builds a [`Hub`].
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
    config: HubConfig,
    epoch: Option<Epoch>,
    storage: Storage,
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
    /// subscribers, it fails with [`HubError::TooManyTopics`]. At least 1
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
            }),
        };
        let sink = Arc::new(HubSink(Arc::downgrade(&hub.inner)));
        hub.store().attach(sink, hub.inner.config.buffer);
        // Topics the store already has exist from the start: they count
        // against the topic bound, and their ids resume.
        for name in hub.store().topics() {
            let topic = TopicName::new(&name).map_err(HubError::from);
            if let Err(e) = topic.and_then(|t| hub.topic(&t)) {
                tracing::warn!(topic = &*name, error = %e, "cannot open a stored topic");
            }
        }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Event;

    fn topics(sizes: &[usize]) -> Vec<(usize, Arc<Topic>)> {
        let counters = Arc::new(Counters::default());
        sizes
            .iter()
            .map(|&s| {
                let limits = RingLimits {
                    max_events: 1,
                    max_bytes: 1,
                };
                let t = Topic::new("t", Epoch::generate(), limits, counters.clone(), true);
                (s, Arc::new(t))
            })
            .collect()
    }

    #[test]
    fn retry_jitter_stays_in_range_and_spreads() {
        let base = Duration::from_millis(3000);
        assert_eq!(jittered_ms(base, 0.0), 3000);
        let hints: Vec<u64> = (0..10_000).map(|_| jittered_ms(base, 0.5)).collect();
        assert!(hints.iter().all(|&h| (1500..=4500).contains(&h)));
        let low = hints.iter().filter(|&&h| h < 2250).count();
        let high = hints.iter().filter(|&&h| h > 3750).count();
        // A quarter of the range each: about 2,500 of 10,000.
        assert!(
            (2000..3000).contains(&low) && (2000..3000).contains(&high),
            "{low} {high}"
        );
    }

    #[test]
    fn water_level_cuts_the_largest_to_a_common_level() {
        // 100 + 60 + 10 = 170; shedding 50 cuts 100 and 60 to 55.
        assert_eq!(water_level(&mut topics(&[60, 10, 100]), 50), 55);
        // Shedding 30 cuts only the largest, to 70.
        assert_eq!(water_level(&mut topics(&[60, 10, 100]), 30), 70);
        // Shedding exactly down to the second largest.
        assert_eq!(water_level(&mut topics(&[60, 10, 100]), 40), 60);
        // Shedding everything.
        assert_eq!(water_level(&mut topics(&[60, 10, 100]), 170), 0);
        assert_eq!(water_level(&mut topics(&[]), 10), 0);
    }

    #[tokio::test]
    async fn total_bytes_stay_bounded_across_topics() {
        let hub = Hub::builder().max_total_bytes(64 << 10).build();
        let data = "x".repeat(100);
        for i in 0..2000 {
            hub.publish(&format!("t{}", i % 50), Event::new(data.clone()))
                .await
                .unwrap();
            assert!(hub.stats().retained_bytes <= (64 << 10) + 200);
        }
        // The newest topics still hold events.
        assert!(hub.topic_info("t49").unwrap().retained_events >= 1);
    }

    #[tokio::test]
    async fn a_full_hub_retires_the_least_recently_active_idle_topic() {
        let hub = Hub::builder().max_topics(3).build();
        hub.publish("a", Event::new("1")).await.unwrap();
        let _held = hub.subscribe("b", Subscribe::new()).unwrap();
        hub.publish("c", Event::new("1")).await.unwrap();
        hub.publish("a", Event::new("2")).await.unwrap(); // a is now more recent than c
        hub.publish("d", Event::new("1")).await.unwrap(); // retires c
        assert!(hub.topic_info("c").is_none());
        assert_eq!(hub.stats().topics_retired, 1);
        // Re-created, c starts a new history with a new epoch.
        let id = hub.publish("c", Event::new("again")).await.unwrap();
        assert_eq!(id.seq(), 1);
        assert_ne!(id.epoch(), hub.epoch());
        assert!(
            hub.topic_info("b").is_some(),
            "topics with subscribers stay"
        );
    }

    /// The retirement order follows activity through subscriptions: a
    /// topic found subscribed leaves it, and comes back when its last
    /// subscriber leaves (the order is kept lazily, not sorted).
    #[tokio::test]
    async fn a_topic_whose_last_subscriber_left_can_be_retired_again() {
        let hub = Hub::builder().max_topics(3).build();
        let held = hub.subscribe("a", Subscribe::new()).unwrap();
        hub.publish("b", Event::new("1")).await.unwrap();
        hub.publish("c", Event::new("1")).await.unwrap();
        hub.publish("d", Event::new("1")).await.unwrap(); // a is held: retires b
        assert!(hub.topic_info("b").is_none());
        drop(held); // a is idle again, and now the least recently active but c
        hub.publish("c", Event::new("2")).await.unwrap();
        hub.publish("d", Event::new("2")).await.unwrap();
        hub.publish("e", Event::new("1")).await.unwrap(); // retires a
        assert!(hub.topic_info("a").is_none());
        hub.publish("f", Event::new("1")).await.unwrap(); // retires c
        assert!(hub.topic_info("c").is_none());
        assert_eq!(hub.stats().topics_retired, 3);
        assert_eq!(hub.stats().topics, 3);
    }

    /// A stream of several topics is all or nothing: without room for
    /// every new topic, nothing is retired, created or subscribed; and a
    /// topic it names is not retired to make room for another.
    #[tokio::test]
    async fn a_stream_without_room_for_all_its_topics_changes_nothing() {
        let hub = Hub::builder().max_topics(4).build();
        let _held = hub.subscribe("held", Subscribe::new()).unwrap();
        for t in ["x", "y", "z"] {
            hub.publish(t, Event::new("1")).await.unwrap();
        }
        // Five topics where the hub holds four: never.
        assert!(matches!(
            hub.subscribe_many(["n1", "n2", "n3", "n4", "n5"], Subscribe::new()),
            Err(HubError::StreamTooWide { topics: 5, max: 4 })
        ));
        // Four new topics need four idle ones; three are.
        assert!(matches!(
            hub.subscribe_many(["n1", "n2", "n3", "n4"], Subscribe::new()),
            Err(HubError::TooManyTopics)
        ));
        let stats = hub.stats();
        assert_eq!((stats.topics, stats.topics_retired), (4, 0));
        assert_eq!(stats.subscribers, 1);
        // x is the least recently active, but it is on the stream: y and z
        // make room.
        let s = hub
            .subscribe_many(["x", "n1", "n2"], Subscribe::new())
            .unwrap();
        assert_eq!(hub.topic_info("x").unwrap().retained_events, 1);
        assert!(hub.topic_info("y").is_none() && hub.topic_info("z").is_none());
        drop(s);
    }

    #[tokio::test]
    async fn a_hub_full_of_subscribed_topics_refuses_new_ones() {
        let hub = Hub::builder().max_topics(2).build();
        let _a = hub.subscribe("a", Subscribe::new()).unwrap();
        let _b = hub.subscribe("b", Subscribe::new()).unwrap();
        assert!(matches!(
            hub.publish("c", Event::new("x")).await,
            Err(HubError::TooManyTopics)
        ));
        assert!(matches!(
            hub.subscribe("c", Subscribe::new()),
            Err(HubError::TooManyTopics)
        ));
    }

    /// The length of the frame of an untyped one-line event, from the
    /// encoding rules (`data: <x>\nid: <epoch>-<seq>\n\n`), not from the
    /// encoder.
    fn frame_len(data: &str, id: &EventId) -> usize {
        "data: ".len() + data.len() + "\nid: ".len() + id.to_string().len() + "\n\n".len()
    }

    /// Checks a topic's oldest event and ring bytes against the frames of
    /// events `oldest..=latest`, whose data is `data(seq)`.
    fn assert_retained(hub: &Hub, topic: &str, oldest: Option<u64>, data: impl Fn(u64) -> String) {
        let info = hub.topic_info(topic).unwrap();
        let epoch = info.latest.epoch();
        let want: usize = oldest.map_or(0, |o| {
            (o..=info.latest.seq())
                .map(|s| frame_len(&data(s), &EventId::new(epoch, s)))
                .sum()
        });
        assert_eq!(info.oldest.map(|o| o.seq()), oldest, "{topic}: oldest");
        assert_eq!(info.retained_bytes, want, "{topic}: ring bytes");
    }

    /// Regression guard: a publish that evicts must take the evicted
    /// frames off the hub's total (subtracting nothing made the total grow
    /// for ever, and the hub trimmed topics that were well under it).
    #[tokio::test]
    async fn retained_bytes_are_the_frames_kept_when_the_ring_evicts_by_count() {
        let hub = Hub::builder().buffer(4).build();
        let data = |s: u64| format!("event {s}");
        // Past 9 the ids get a digit longer, so every frame's length counts.
        for n in 1..=12u64 {
            hub.publish("t", Event::new(data(n))).await.unwrap();
            let oldest = n.saturating_sub(3).max(1);
            assert_retained(&hub, "t", Some(oldest), data);
            let info = hub.topic_info("t").unwrap();
            assert_eq!(info.retained_events as u64, n - oldest + 1);
            assert_eq!(hub.stats().retained_bytes, info.retained_bytes, "after {n}");
        }
    }

    #[tokio::test]
    async fn retained_bytes_are_the_frames_kept_when_the_ring_evicts_by_bytes() {
        const MAX: usize = 100;
        let hub = Hub::builder().max_topic_bytes(MAX).build();
        let e = hub.epoch();
        // Frames of 35 to 155 bytes; the 150-byte one is kept alone.
        let sizes = [20usize, 30, 25, 40, 150, 10, 10, 10, 10, 60];
        let data = |s: u64| "x".repeat(sizes[s as usize - 1]);
        for n in 1..=sizes.len() as u64 {
            hub.publish("t", Event::new(data(n))).await.unwrap();
            // The newest events whose frames fit in MAX, at least one.
            let mut oldest = n;
            let mut kept = frame_len(&data(n), &EventId::new(e, n));
            while oldest > 1 {
                let older = frame_len(&data(oldest - 1), &EventId::new(e, oldest - 1));
                if kept + older > MAX {
                    break;
                }
                kept += older;
                oldest -= 1;
            }
            assert_retained(&hub, "t", Some(oldest), data);
            assert_eq!(hub.stats().retained_bytes, kept, "after {n}");
        }
    }

    #[tokio::test]
    async fn the_total_bound_trims_the_largest_topic_and_spares_small_ones() {
        const MAX: usize = 1000;
        const TARGET: usize = MAX - MAX / 16;
        let hub = Hub::builder().max_total_bytes(MAX).build();
        let e = hub.epoch();
        let small = |_| "s".to_owned();
        hub.publish("small", Event::new("s")).await.unwrap();
        let small_bytes = frame_len("s", &EventId::new(e, 1));
        let data = |s: u64| format!("{s:>40}");
        let mut oldest = 1;
        let mut trims = 0;
        for n in 1..=60u64 {
            hub.publish("big", Event::new(data(n))).await.unwrap();
            // Over the bound, the big topic loses its oldest events until
            // the total is at most 15/16 of the bound.
            let big = |from: u64| -> usize {
                (from..=n)
                    .map(|s| frame_len(&data(s), &EventId::new(e, s)))
                    .sum()
            };
            if small_bytes + big(oldest) > MAX {
                trims += 1;
                while small_bytes + big(oldest) > TARGET {
                    oldest += 1;
                }
            }
            assert_retained(&hub, "big", Some(oldest), data);
            assert_retained(&hub, "small", Some(1), small);
            assert_eq!(
                hub.stats().retained_bytes,
                small_bytes + big(oldest),
                "after {n}"
            );
        }
        assert!(trims >= 3, "the bound was crossed {trims} times");
    }

    /// Regression: over the total bound, topics of equal size were all cut
    /// to the common level; when that level is below one event, every
    /// topic lost its whole history, and the total fell to nothing instead
    /// of 15/16 of the bound.
    #[tokio::test]
    async fn the_total_bound_sheds_about_one_sixteenth_when_topics_are_alike() {
        const MAX: usize = 10_000;
        const TARGET: usize = MAX - MAX / 16;
        let hub = Hub::builder().max_total_bytes(MAX).build();
        let frame = frame_len("x", &EventId::new(hub.epoch(), 1));
        let mut crossed = false;
        for i in 0..1000 {
            let before = hub.stats().retained_bytes;
            hub.publish(&format!("t{i}"), Event::new("x"))
                .await
                .unwrap();
            let after = hub.stats().retained_bytes;
            if before + frame > MAX {
                crossed = true;
                // Trimmed back under 15/16 of the bound, by less than one
                // more event than needed.
                assert!(
                    after <= TARGET && after + frame > TARGET,
                    "{before} -> {after}"
                );
            } else {
                assert_eq!(after, before + frame);
            }
            let held: usize = (0..=i)
                .filter_map(|t| hub.topic_info(&format!("t{t}")))
                .map(|t| t.retained_bytes)
                .sum();
            assert_eq!(after, held);
        }
        assert!(crossed);
    }

    #[tokio::test]
    async fn retiring_a_topic_takes_its_bytes_off_the_total() {
        let hub = Hub::builder().max_topics(2).build();
        let data = |s: u64| format!("payload {s}");
        for s in 1..=3 {
            hub.publish("a", Event::new(data(s))).await.unwrap();
        }
        for s in 1..=2 {
            hub.publish("b", Event::new(data(s))).await.unwrap();
        }
        let c = hub.publish("c", Event::new(data(1))).await.unwrap(); // retires a
        assert!(hub.topic_info("a").is_none());
        assert_eq!(hub.stats().topics_retired, 1);
        assert_retained(&hub, "b", Some(1), data);
        assert_retained(&hub, "c", Some(1), data);
        let b: usize = (1..=2)
            .map(|s| frame_len(&data(s), &EventId::new(hub.epoch(), s)))
            .sum();
        // `c` has the epoch of a re-created topic: its ids are longer.
        assert_eq!(hub.stats().retained_bytes, b + frame_len(&data(1), &c));
    }

    #[tokio::test]
    async fn close_keeps_the_total_equal_to_what_the_rings_hold() {
        let hub = Hub::builder().buffer(2).build();
        let data = |s: u64| format!("d{s}");
        for s in 1..=3 {
            hub.publish("a", Event::new(data(s))).await.unwrap();
        }
        hub.publish("b", Event::new(data(1))).await.unwrap();
        let e = hub.epoch();
        let want = frame_len("d2", &EventId::new(e, 2))
            + frame_len("d3", &EventId::new(e, 3))
            + frame_len("d1", &EventId::new(e, 1));
        assert_eq!(hub.stats().retained_bytes, want);
        hub.close();
        assert!(matches!(
            hub.publish("a", Event::new("late")).await,
            Err(HubError::Closed)
        ));
        assert_retained(&hub, "a", Some(2), data);
        assert_retained(&hub, "b", Some(1), data);
        assert_eq!(hub.stats().retained_bytes, want);
    }
}
