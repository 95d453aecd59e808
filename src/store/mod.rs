//! Where history lives: the seam between the hub and its storage.
//!
//! A store owns each topic's **epoch**, assigns **sequence numbers** when
//! events are appended (a batch gets consecutive ones), keeps **retention**,
//! reads history **from a position**, and reports history it learns of
//! from elsewhere (events appended by other nodes, a history that was
//! replaced). The hub owns a store and keeps what is the same for all of
//! them: the topic registry, the in-memory ring of every topic, and the
//! fan-out. Events are encoded once; every store hands the hub the same
//! shared frames, and a store never sits between the ring and a socket.
//!
//! | store | history | ids come from | the ring is |
//! |---|---|---|---|
//! | memory (default) | the ring itself | the ring | the history |
//! | disk (`--data-dir`) | an embedded database | the disk writer, after the event is synced | the newest events of this run |
//! | Redis (`--redis`) | Redis Streams | a Lua script in Redis | this node's cache of the stream's tail |
//!
//! # Why an enum, not a trait
//!
//! [`Storage`] is a closed set of three stores behind a crate-private
//! enum. The stores differ in kind: memory does no I/O and appends under the
//! topic's lock, synchronously (its publish must stay a direct call, with no
//! boxed future, so the default's per-publish and per-delivery cost does not
//! change); the disk store has a writer thread that commits groups of
//! appends with one sync; Redis appends with a round trip and learns of
//! everyone's events from a reader task. A trait object would force the
//! slowest shape (a boxed future per append) on the fastest store, and would
//! make a public contract of interfaces that are still moving. With an
//! enum, each operation reads as one `match` in this module, and the Cargo
//! features that bring a store in (`redis`, `disk`) are gated here only.
//!
//! # Idempotency keys
//!
//! A publish under an idempotency key asks the store to append only if the
//! key is free, in the same atomic step as the append: memory under the
//! topic's lock (the ring keeps the keys), disk in the writer's commit (the
//! key record is in the same batch as the events), Redis in the publish
//! script. So concurrent or repeated publishes with one key append once,
//! on one node or many, and a key lives exactly as long as the history it
//! belongs to: it is forgotten with the last event it published.
//!
//! # Durable Streams
//!
//! A Durable Stream's write is decided and committed by the store, atomic
//! with its messages, when the store is not memory (see `streams`): the
//! disk writer runs the stream's rules on its own copy of the metadata,
//! in the round's commit; a Redis node on its copy of the stream's hash,
//! written by a script that applies only if no other node wrote first
//! (see `redis/streams.rs`).
//!
//! # Reporting to the hub
//!
//! A store never calls into the hub's topics. What it learns by itself (a
//! history loaded or replaced, events appended elsewhere) it reports through
//! `Sink`, a trait of this layer that the hub implements; what the hub asks
//! for, it asks through the methods of the crate-private `Store`.

#[cfg(feature = "disk")]
pub(crate) mod disk;
#[cfg(feature = "redis")]
pub(crate) mod redis;

use std::fmt;
use std::sync::Arc;

use crate::core::event::{Encoded, Event};
use crate::core::id::Epoch;
use crate::core::idempotency::{Fingerprint, IdempotencyKey, Keyed};
use crate::core::ring::Read;

mod error;
mod sink;
mod streams;

#[cfg(feature = "disk")]
#[cfg_attr(docsrs, doc(cfg(feature = "disk")))]
pub use self::disk::{DiskStore, Retention};
pub use self::error::{ErrorKind, StoreError};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::RedisStore;
pub(crate) use self::sink::{Appended, Deliver, Sink, StreamChange};
#[cfg(any(feature = "disk", feature = "redis"))]
pub(crate) use self::streams::StreamAnswer;
pub(crate) use self::streams::{LoadedStream, StreamDeliver, StreamDone, StreamOp, StreamReply};

/// Where a [`Hub`](crate::Hub) keeps the history of its topics: in memory
/// (the default), or in one of the stores of this module.
///
/// # Examples
///
/// ```
/// use ssehub::{Hub, Storage};
///
/// let hub = Hub::builder().storage(Storage::memory()).build();
/// assert!(!hub.storage().is_shared());
/// ```
#[derive(Clone, Default)]
pub struct Storage {
    pub(crate) store: Store,
}

impl Storage {
    /// History in the rings of this process: lost on restart.
    pub fn memory() -> Self {
        Storage::default()
    }

    /// Whether other nodes share this storage's topics (and ids).
    pub fn is_shared(&self) -> bool {
        match &self.store {
            Store::Memory => false,
            #[cfg(feature = "disk")]
            Store::Disk(_) => false,
            #[cfg(feature = "redis")]
            Store::Redis(_) => true,
        }
    }

    /// Whether history survives a restart of this process.
    pub fn is_durable(&self) -> bool {
        !matches!(self.store, Store::Memory)
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.store {
            Store::Memory => f.write_str("Storage::Memory"),
            #[cfg(feature = "disk")]
            Store::Disk(d) => f.debug_tuple("Storage::Disk").field(d).finish(),
            #[cfg(feature = "redis")]
            Store::Redis(r) => f.debug_tuple("Storage::Redis").field(r).finish(),
        }
    }
}

#[cfg(feature = "disk")]
impl From<DiskStore> for Storage {
    fn from(store: DiskStore) -> Self {
        Storage {
            store: Store::Disk(store),
        }
    }
}

#[cfg(feature = "redis")]
impl From<RedisStore> for Storage {
    fn from(store: RedisStore) -> Self {
        Storage {
            store: Store::Redis(store),
        }
    }
}

/// The stores. See the module documentation for why this is an enum.
#[derive(Clone, Default)]
pub(crate) enum Store {
    /// The rings are the history.
    #[default]
    Memory,
    /// Topics in a directory on disk.
    #[cfg(feature = "disk")]
    Disk(DiskStore),
    /// Topics in Redis Streams, shared by every node with the same Redis.
    #[cfg(feature = "redis")]
    Redis(RedisStore),
}

impl Store {
    /// Whether the rings are the history (no store behind them).
    pub(crate) fn is_memory(&self) -> bool {
        matches!(self, Store::Memory)
    }

    /// Whether a new topic's history must be loaded before streams can
    /// start (its ring is not the history, and not empty either).
    pub(crate) fn loads_topics(&self) -> bool {
        match self {
            Store::Memory => false,
            #[cfg(feature = "disk")]
            Store::Disk(_) => false,
            #[cfg(feature = "redis")]
            Store::Redis(_) => true,
        }
    }

    /// Connects the store to the hub it reports to.
    // Each store uses what it needs.
    #[allow(unused_variables)]
    pub(crate) fn attach(&self, sink: Arc<dyn Sink>, retention: usize, stream_bytes: usize) {
        match self {
            Store::Memory => {}
            #[cfg(feature = "disk")]
            Store::Disk(d) => d.attach(sink),
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.attach(sink, retention, stream_bytes),
        }
    }

    /// The topics the store has before the hub asked for any.
    pub(crate) fn topics(&self) -> Vec<Box<str>> {
        match self {
            #[cfg(feature = "disk")]
            Store::Disk(d) => d.topics(),
            _ => Vec::new(),
        }
    }

    /// Where a topic the hub creates starts, for a store that keeps its
    /// history on this machine: its epoch, its next sequence number, and
    /// the history older than the ring. `None`: the hub decides (memory),
    /// or the store loads it (Redis).
    /// A Durable Stream's topic on Redis starts empty, and reads what is
    /// older than its ring from Redis.
    #[cfg_attr(not(any(feature = "disk", feature = "redis")), allow(unused_variables))]
    pub(crate) fn open_topic(&self, topic: &str) -> Option<(Epoch, u64, History)> {
        match self {
            #[cfg(feature = "disk")]
            Store::Disk(d) => {
                let (epoch, next, history) = d.open_topic(topic);
                Some((epoch, next, History::Disk(history)))
            }
            #[cfg(feature = "redis")]
            Store::Redis(r) if crate::core::durable::path::is_stream_topic(topic) => {
                let history = r.history(topic);
                Some((Epoch::generate(), 1, History::Redis(history)))
            }
            _ => None,
        }
    }

    /// The hub created a topic: a store that loads topics starts now.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn follow(&self, topic: &str) {
        match self {
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.follow(topic),
            _ => {}
        }
    }

    /// The hub retired a topic: its history goes.
    #[cfg_attr(not(any(feature = "redis", feature = "disk")), allow(unused_variables))]
    pub(crate) fn forget(&self, topic: &str) {
        match self {
            Store::Memory => {}
            #[cfg(feature = "disk")]
            Store::Disk(d) => d.forget(topic),
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.unfollow(topic),
        }
    }

    /// Whether a node loads a Durable Stream from the store on first use
    /// (Redis: other nodes create and change streams).
    pub(crate) fn loads_streams(&self) -> bool {
        match self {
            #[cfg(feature = "redis")]
            Store::Redis(_) => true,
            _ => false,
        }
    }

    /// The Durable Streams the store has before the hub asked for any.
    pub(crate) fn streams(&self) -> Vec<(Box<str>, crate::core::durable::StreamMeta)> {
        match self {
            #[cfg(feature = "disk")]
            Store::Disk(d) => d.streams(),
            _ => Vec::new(),
        }
    }

    /// Sends a write to the Durable Stream of `topic` (see
    /// `store::streams`), to be done in the order sent; for the disk and
    /// Redis stores (memory writes in the rings).
    #[cfg_attr(not(any(feature = "disk", feature = "redis")), allow(unused_variables))]
    pub(crate) fn send_stream(
        &self,
        topic: &str,
        op: StreamOp,
        deliver: StreamDeliver,
    ) -> StreamReply {
        StreamReply(match self {
            #[cfg(feature = "disk")]
            Store::Disk(d) => d.send_stream(topic, op, deliver),
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.send_stream(topic, op, deliver),
            _ => Err(StoreError::new(
                ErrorKind::Unavailable,
                "this store holds no Durable Streams",
            )),
        })
    }

    /// Loads `topic`'s Durable Stream with up to `tail` of its newest
    /// messages, and follows it from then on (Redis); `None` if the store
    /// has no such stream.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn load_stream(
        &self,
        topic: &str,
        tail: usize,
    ) -> Result<Option<LoadedStream>, StoreError> {
        match self {
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.load_stream(topic, tail).await,
            _ => Ok(None),
        }
    }

    /// Where the store's copy of `topic`'s Durable Stream stands (Redis):
    /// its generation and last position.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn stream_head(&self, topic: &str) -> Result<Option<(u64, u64)>, StoreError> {
        match self {
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.stream_head(topic).await,
            _ => Ok(None),
        }
    }

    /// Brings the ring of `topic`'s Durable Stream up to the store (Redis).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn catch_up_stream(&self, topic: &str) -> Result<(), StoreError> {
        match self {
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.catch_up(topic).await,
            _ => Ok(()),
        }
    }

    /// Follows `topic`'s Durable Stream `generation` after message `last`
    /// (Redis): another node's writes reach this node's ring.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn follow_stream(&self, topic: &str, generation: u64, last: u64, closed: bool) {
        match self {
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.follow_stream(topic, generation, last, closed),
            _ => {}
        }
    }

    /// A use of a Durable Stream with a sliding TTL of `ttl_secs` (Redis:
    /// other nodes see it).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn touch_stream(&self, topic: &str, generation: u64, ttl_secs: u64, now_ms: u64) {
        match self {
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.touch_stream(topic, generation, ttl_secs, now_ms),
            _ => {}
        }
    }

    /// Where idempotency key `key` of `topic` stands in a store shared by
    /// several nodes (Redis): the history and the events it published
    /// (`first`, `count`). The other stores are asked through the topic's
    /// ring and [`History::find_key`].
    #[cfg(feature = "mercure")]
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) async fn find_key(
        &self,
        topic: &str,
        key: &str,
    ) -> Result<Option<(Epoch, u64, u64)>, StoreError> {
        match self {
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.find_key(topic, key).await,
            _ => Ok(None),
        }
    }

    /// Appends events to `topic` (stores other than memory; the memory
    /// store appends in the hub's ring). A store that learns of its own
    /// appends by reading them back (Redis) ignores `deliver`; the others
    /// call it with the frames, in order, once they are durable.
    ///
    /// Under an idempotency `key` (with the request's fingerprint), appends
    /// only if the key is free in the topic's current history, and
    /// remembers it in the same atomic step; otherwise appends nothing and
    /// says what the key was used for. Without a key the outcome is always
    /// [`Keyed::Fresh`].
    // Each store uses what it needs.
    #[allow(unused_variables)]
    pub(crate) async fn append(
        &self,
        topic: &str,
        events: &[Event],
        encoded: Vec<Encoded>,
        deliver: Deliver,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> Result<Keyed<Appended>, StoreError> {
        match self {
            Store::Memory => Err(StoreError::new(
                ErrorKind::Unavailable,
                "the memory store appends in the ring",
            )),
            #[cfg(feature = "disk")]
            Store::Disk(d) => d.append(topic, encoded, deliver, key).await,
            #[cfg(feature = "redis")]
            Store::Redis(r) => r.publish(topic, events, key).await,
        }
    }
}

/// A topic's history beyond its ring, kept on this machine: what a stream
/// reads when a client resumes from further back than the ring.
#[derive(Clone, Debug)]
pub(crate) enum History {
    #[cfg(feature = "disk")]
    Disk(disk::History),
    /// A Durable Stream's messages in Redis.
    #[cfg(feature = "redis")]
    Redis(redis::History),
}

impl History {
    /// The events idempotency key `key` published in history `epoch`
    /// (`first`, `count`), if the store still has it (disk; a Redis
    /// history has no keys: see [`Store::find_key`]).
    #[cfg(feature = "mercure")]
    #[cfg_attr(not(feature = "disk"), allow(unused_variables))]
    pub(crate) async fn find_key(&self, epoch: Epoch, key: &str) -> Option<(u64, u64)> {
        match *self {
            #[cfg(feature = "disk")]
            History::Disk(ref d) => d.find_key(epoch, key).await,
            #[cfg(feature = "redis")]
            History::Redis(_) => None,
        }
    }

    /// The oldest event the store has.
    pub(crate) fn first(&self) -> u64 {
        match *self {
            #[cfg(feature = "disk")]
            History::Disk(ref d) => d.first(),
            #[cfg(feature = "redis")]
            History::Redis(ref r) => r.first(),
        }
    }

    /// A Durable Stream's first position, as the hub learned it (Redis;
    /// the disk store keeps its own).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    pub(crate) fn set_first(&self, first: u64) {
        match *self {
            #[cfg(feature = "disk")]
            History::Disk(_) => {}
            #[cfg(feature = "redis")]
            History::Redis(ref r) => r.set_first(first),
        }
    }

    /// Reads a Durable Stream's raw messages `from` on of history `epoch`
    /// (disk) or `generation` (Redis): at most `max` and (unless the first
    /// alone is larger) `max_bytes`, without blocking the caller.
    // Each store names the history its own way.
    #[allow(unused_variables)]
    pub(crate) async fn read_raw(
        &self,
        epoch: Epoch,
        generation: u64,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<bytes::Bytes>, StoreError> {
        match *self {
            #[cfg(feature = "redis")]
            History::Redis(ref r) => r.read_raw(generation, from, max, max_bytes).await,
            #[cfg(feature = "disk")]
            History::Disk(ref d) => d
                .read_raw(epoch, from, max, max_bytes)
                .await
                .unwrap_or_else(|e| {
                    Err(StoreError::with_source(
                        ErrorKind::Unavailable,
                        "the read stopped",
                        e,
                    ))
                }),
        }
    }

    /// Reads events `from` on of history `epoch` into one frame, as the
    /// ring does (see [`Read`]), without blocking the caller.
    #[cfg_attr(not(feature = "disk"), allow(unused_variables))]
    pub(crate) fn read(
        &self,
        epoch: Epoch,
        from: u64,
        max_events: u64,
        max_bytes: usize,
    ) -> tokio::task::JoinHandle<Read> {
        match *self {
            #[cfg(feature = "disk")]
            History::Disk(ref d) => d.read(epoch, from, max_events, max_bytes),
            // Only Durable Streams have a Redis history, and no SSE
            // subscriber reads their topics.
            #[cfg(feature = "redis")]
            History::Redis(_) => tokio::spawn(async { Read::Reset }),
        }
    }
}
