//! Topics shared by several ssehub nodes through Redis Streams.
//!
//! Per topic, Redis holds three keys (with a hash tag, so a cluster keeps
//! them together): `ssehub:{topic}:epoch`, `ssehub:{topic}:seq` and the
//! stream `ssehub:{topic}:stream`, whose entry ids are `0-<seq>`; and, once
//! a publish names an idempotency key, the hash `ssehub:{topic}:keys` (key
//! -> `<epoch> <fingerprint> <first> <count>`) and the list
//! `ssehub:{topic}:key_order` (`<epoch> <last seq> <key>`, oldest first). A Lua
//! script increments the sequence and appends in one step, so every node
//! gives an event the same id, in the same `<epoch>-<seq>` format as in
//! memory. If the keys are gone (Redis restarted without persistence, a key
//! was deleted) the script starts a new epoch, and clients that resume from
//! the old one get `resync`.
//!
//! The same script checks and records idempotency keys: a key the hash has
//! for the current epoch answers with its record and appends nothing; a
//! free one is recorded with the `XADD`s. Every publish then forgets the
//! keys whose last event the stream no longer has (the list is in the
//! order of the events, so this looks at its head only), so keys are
//! trimmed with the stream (never more keys than entries), and every node
//! answers a retry alike.
//!
//! Each node runs one reader task on a dedicated connection: it loads the
//! tail of a topic's stream into the topic's ring when the node first needs
//! the topic, then follows every such topic with one `XREAD BLOCK`, and
//! feeds what it reads into the rings, which fan out locally. Encoded frames
//! are built once per event per node. When Redis is unreachable, publishing
//! fails (`503`), open streams keep their keep-alives, and the reader
//! reconnects with backoff; if the history survived, it continues from the
//! last entry it read, otherwise subscribers get `resync`.
//!
//! Durable Streams (`ds:` topics) keep their own keys and rules: see
//! `streams.rs`. The reader follows their messages too.

mod keys;
mod streams;

use self::keys::{corrupt, key_of};
pub(crate) use self::streams::History;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client, Script, Value};

use super::{Appended, ErrorKind, Sink, StoreError};
use crate::core::event::{Event, encode_parts};
use crate::core::id::{Epoch, EventId};
use crate::core::idempotency::{Fingerprint, IdempotencyKey, Keyed};

/// Appends events to a topic's stream and returns `{epoch, first seq,
/// outcome}` (0: appended; under an idempotency key, 1: the key was used
/// for the same request, nothing appended, `first` is the first seq it
/// got; 2: used for another request, nothing appended).
/// With no events it only makes sure the topic has an epoch, and returns
/// the next sequence number; keys it creates that way expire after
/// `ARGV[4]` seconds unless something is published (a subscriber to a topic
/// nobody publishes to leaves nothing behind). Every entry carries its
/// epoch, so a reader never takes an entry of one history for another.
///
/// KEYS: epoch, seq, stream, keys (hash), key order (list). ARGV:
/// candidate epoch, maxlen, n, ttl, idempotency key (empty for none), its
/// fingerprint, then `n` pairs of (type, data).
const PUBLISH: &str = r#"
local n = tonumber(ARGV[3])
local idem = ARGV[5]
local epoch = redis.call('GET', KEYS[1])
if (not epoch) or redis.call('EXISTS', KEYS[2]) == 0 then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
  if n == 0 then
    redis.call('EXPIRE', KEYS[1], ARGV[4])
    redis.call('EXPIRE', KEYS[2], ARGV[4])
  end
end
if idem ~= '' then
  local rec = redis.call('HGET', KEYS[4], idem)
  if rec then
    local e, fp, first = string.match(rec, '^(%S+) (%S+) (%d+) %d+$')
    if e == epoch then
      if fp == ARGV[6] then
        return {epoch, tonumber(first), 1}
      end
      return {epoch, 0, 2}
    end
  end
end
if n > 0 then
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
local first = redis.call('INCRBY', KEYS[2], n) - n + 1
for i = 0, n - 1 do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], string.format('0-%d', first + i),
    'e', epoch, 't', ARGV[7 + 2 * i], 'd', ARGV[8 + 2 * i])
end
if idem ~= '' and n > 0 then
  redis.call('HSET', KEYS[4], idem,
    string.format('%s %s %d %d', epoch, ARGV[6], first, n))
  redis.call('RPUSH', KEYS[5], string.format('%s %d %s', epoch, first + n - 1, idem))
end
-- Forget the keys whose last event the stream no longer has (or of
-- another history). Each key is forgotten once, and a trim removes at
-- most a macro node of entries, so this stays short.
local head = redis.call('LINDEX', KEYS[5], 0)
if head then
  local floor = math.huge
  local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if oldest[1] then
    floor = tonumber(string.match(oldest[1][1], '^0%-(%d+)$')) or 0
  end
  while head do
    local e, last, k = string.match(head, '^(%S+) (%d+) (%S+)$')
    if e == epoch and tonumber(last) >= floor then break end
    redis.call('LPOP', KEYS[5])
    if k then
      local rec = redis.call('HGET', KEYS[4], k)
      if rec then
        local re, rfirst, rcount = string.match(rec, '^(%S+) %S+ (%d+) (%d+)$')
        -- Only the record this entry was written for.
        if re == e and tonumber(rfirst) + tonumber(rcount) - 1 == tonumber(last) then
          redis.call('HDEL', KEYS[4], k)
        end
      end
    end
    head = redis.call('LINDEX', KEYS[5], 0)
  end
end
return {epoch, first, 0}
"#;

/// Replaces a topic's epoch if it is still `ARGV[1]`: its history went
/// back in time (a failover to a replica that was behind, an AOF that lost
/// its last second), so ids already sent would be reused. Returns the
/// current epoch.
const ROTATE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
end
return redis.call('GET', KEYS[1])
"#;

/// How long keys created only by looking at a topic live.
const EMPTY_TTL_SECS: u64 = 86_400;

/// How long a command (a publish) waits for Redis's answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one `XREAD` blocks.
const BLOCK: Duration = Duration::from_millis(1000);

/// How often the reader checks that the histories it follows are still the
/// ones in Redis, even while events flow.
const VERIFY_EVERY: Duration = Duration::from_secs(1);

/// A connection to Redis that a [`Hub`](crate::Hub) keeps its topics in.
///
/// Cheap to clone. Build it once per process and give it to
/// [`HubBuilder::storage`](crate::hub::HubBuilder::storage); the hub's `buffer`
/// sets how many events each stream keeps (trimmed approximately).
///
/// ```no_run
/// use ssehub::Hub;
/// use ssehub::store::RedisStore;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let hub = Hub::builder().storage(store).build();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl Inner {
    fn sink(&self) -> Option<Arc<dyn Sink>> {
        self.sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Inner {
    client: Client,
    commands: ConnectionManager,
    script: Script,
    rotate: Script,
    maxlen: std::sync::atomic::AtomicUsize,
    follow: Mutex<HashMap<Box<str>, Followed>>,
    /// `CLIENT ID` of the reader's connection, to interrupt its `XREAD`.
    reader_id: Mutex<Option<i64>>,
    /// The hub the reader reports to, once attached.
    sink: Arc<Mutex<Option<Arc<dyn Sink>>>>,
    /// The Durable Streams of this node.
    streams: streams::Streams,
}

struct Followed {
    /// The history the ring holds, once primed.
    epoch: Option<Epoch>,
    /// The last sequence number read into the ring.
    last: u64,
    /// The id of the last stream entry read: `XREAD` continues after it.
    cursor: String,
}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::with_source(ErrorKind::Unavailable, "redis", e)
    }
}

impl RedisStore {
    /// Connects to Redis (e.g. `redis://127.0.0.1:6379/`) and starts the
    /// reader task.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] if the URL is invalid or Redis does not answer.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        let client = Client::open(url)?;
        // The redis crate gives up on a reply after 500 ms by default: under
        // load, a publish that Redis performed would then be answered `503`
        // (and retried into a duplicate). Wait longer for the outcome.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(COMMAND_TIMEOUT));
        let commands = client.get_connection_manager_with_config(config).await?;
        let sink = Arc::new(Mutex::new(None));
        let streams = streams::Streams::new(commands.clone(), sink.clone());
        let inner = Arc::new(Inner {
            client,
            commands,
            script: Script::new(PUBLISH),
            rotate: Script::new(ROTATE),
            maxlen: std::sync::atomic::AtomicUsize::new(1024),
            follow: Mutex::new(HashMap::new()),
            reader_id: Mutex::new(None),
            sink,
            streams,
        });
        tokio::spawn(reader(Arc::downgrade(&inner)));
        Ok(RedisStore { inner })
    }

    /// Reports to `sink` from now on; streams keep about `events` events,
    /// and Durable Streams at most `stream_bytes` bytes of messages.
    pub(crate) fn attach(&self, sink: Arc<dyn Sink>, events: usize, stream_bytes: usize) {
        *self
            .inner
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sink);
        self.inner
            .maxlen
            .store(events.max(1), std::sync::atomic::Ordering::Relaxed);
        self.inner.streams.set_stream_bytes(stream_bytes);
    }

    /// Appends events to `topic`; returns the epoch and the first sequence
    /// number (the others follow). Under an idempotency key, only if the key
    /// is free (see the module documentation).
    pub(crate) async fn publish(
        &self,
        topic: &str,
        events: &[Event],
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> Result<Keyed<Appended>, StoreError> {
        let (epoch, first, outcome) = self
            .run_publish(topic, events, Epoch::generate(), key)
            .await?;
        let appended = Appended { epoch, first };
        match outcome {
            0 => Ok(Keyed::Fresh(appended)),
            1 if first >= 1 => Ok(Keyed::Replayed(appended)),
            2 => Ok(Keyed::Conflict),
            _ => Err(corrupt(format!("idempotency key record of {topic}"))),
        }
    }

    /// The publish script; `candidate` is the epoch a new history gets.
    async fn run_publish(
        &self,
        topic: &str,
        events: &[Event],
        candidate: Epoch,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> Result<(Epoch, u64, u8), StoreError> {
        let inner = &self.inner;
        let mut inv = inner.script.prepare_invoke();
        inv.key(key_of(topic, "epoch"))
            .key(key_of(topic, "seq"))
            .key(key_of(topic, "stream"))
            .key(key_of(topic, "keys"))
            .key(key_of(topic, "key_order"))
            .arg(candidate.as_str())
            .arg(inner.maxlen.load(std::sync::atomic::Ordering::Relaxed))
            .arg(events.len())
            .arg(EMPTY_TTL_SECS);
        match key {
            Some((k, fingerprint)) => inv.arg(k.as_str()).arg(fingerprint.to_hex()),
            None => inv.arg("").arg(""),
        };
        for ev in events {
            inv.arg(ev.event_type().unwrap_or("")).arg(ev.data());
        }
        let mut conn = inner.commands.clone();
        let (epoch, first, outcome): (String, u64, u8) = inv.invoke_async(&mut conn).await?;
        let epoch = epoch
            .parse()
            .map_err(|_| corrupt(format!("epoch {epoch:?}")))?;
        Ok((epoch, first, outcome))
    }

    /// The record of idempotency key `key` of `topic`: its history and the
    /// events it published (`first`, `count`).
    #[cfg(feature = "mercure")]
    pub(crate) async fn find_key(
        &self,
        topic: &str,
        key: &str,
    ) -> Result<Option<(Epoch, u64, u64)>, StoreError> {
        let mut conn = self.inner.commands.clone();
        let record: Option<String> = redis::cmd("HGET")
            .arg(key_of(topic, "keys"))
            .arg(key)
            .query_async(&mut conn)
            .await?;
        let Some(record) = record else {
            return Ok(None);
        };
        let mut parts = record.split(' ');
        let parsed = (|| {
            let epoch = parts.next()?.parse().ok()?;
            let _fingerprint = parts.next()?;
            let first = parts.next()?.parse().ok()?;
            let count = parts.next()?.parse().ok()?;
            Some((epoch, first, count))
        })();
        parsed
            .map(Some)
            .ok_or_else(|| corrupt(format!("idempotency key record of {topic}")))
    }

    /// Starts following `topic` on this node: its history is loaded and
    /// reported to the sink, then new events as they come. A topic of the
    /// same name followed before (retired, then created again) is loaded
    /// again.
    pub(crate) fn follow(&self, topic: &str) {
        if streams::is_stream(topic) {
            // Loaded and followed as a stream (see `streams`).
            return;
        }
        self.inner
            .follow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                topic.into(),
                Followed {
                    epoch: None,
                    last: 0,
                    cursor: "0-0".into(),
                },
            );
        self.wake_reader();
    }

    /// Queues a write of `topic`'s Durable Stream (see `streams.rs`).
    pub(crate) fn send_stream(
        &self,
        topic: &str,
        op: crate::store::StreamOp,
        deliver: crate::store::StreamDeliver,
    ) -> Result<crate::store::StreamAnswer, StoreError> {
        self.inner.streams.send(topic, op, deliver)
    }

    /// Loads `topic`'s Durable Stream with up to `tail` newest messages.
    pub(crate) async fn load_stream(
        &self,
        topic: &str,
        tail: usize,
    ) -> Result<Option<crate::store::LoadedStream>, StoreError> {
        self.inner.streams.load_stream(topic, tail).await
    }

    /// Follows `topic`'s Durable Stream `generation` after message `last`.
    pub(crate) fn follow_stream(&self, topic: &str, generation: u64, last: u64, closed: bool) {
        self.inner
            .streams
            .follow_stream(topic, generation, last, closed);
        self.wake_reader();
    }

    /// Brings this node's ring of `topic`'s Durable Stream up to Redis.
    pub(crate) async fn catch_up(&self, topic: &str) -> Result<(), StoreError> {
        self.inner.streams.catch_up(topic).await
    }

    /// The generation and last position of `topic`'s Durable Stream.
    pub(crate) async fn stream_head(&self, topic: &str) -> Result<Option<(u64, u64)>, StoreError> {
        self.inner.streams.stream_head(topic).await
    }

    /// A use of `topic`'s Durable Stream with a sliding TTL.
    pub(crate) fn touch_stream(&self, topic: &str, generation: u64, ttl_secs: u64, now_ms: u64) {
        self.inner
            .streams
            .touch_stream(topic, generation, ttl_secs, now_ms);
    }

    /// The messages of `topic`'s Durable Stream older than the ring.
    pub(crate) fn history(&self, topic: &str) -> History {
        History::new(self.inner.streams.clone(), topic)
    }

    /// Stops following `topic`.
    pub(crate) fn unfollow(&self, topic: &str) {
        self.inner
            .follow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(topic);
        self.inner.streams.unfollow(topic);
    }

    /// Interrupts the reader's `XREAD` so it sees a new topic now.
    fn wake_reader(&self) {
        let id = *self
            .inner
            .reader_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = id {
            let mut conn = self.inner.commands.clone();
            tokio::spawn(async move {
                let _: Result<Value, _> = redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(id)
                    .query_async(&mut conn)
                    .await;
            });
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field(
                "url",
                &self.inner.client.get_connection_info().addr().to_string(),
            )
            .finish_non_exhaustive()
    }
}

/// The reader: one per node, on its own connection. It holds the store
/// only weakly, so dropping every handle stops it.
async fn reader(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(client) = weak.upgrade().map(|i| i.client.clone()) else {
            return;
        };
        // Longer than a block, so a half-open connection is noticed.
        let config =
            AsyncConnectionConfig::new().set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "redis unreachable; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // Without CLIENT ID (ACLs may forbid it) new topics wait one block.
        let id = redis::cmd("CLIENT")
            .arg("ID")
            .query_async::<i64>(&mut conn)
            .await
            .ok();
        match weak.upgrade() {
            Some(inner) => {
                *inner
                    .reader_id
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = id
            }
            None => return,
        }
        // Connected: the next loss waits from the shortest backoff again.
        backoff = Duration::from_millis(100);
        let result = follow_loop(&weak, &mut conn).await;
        if let Some(inner) = weak.upgrade() {
            *inner
                .reader_id
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "redis reader lost its connection; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Follows topics until the connection fails (`Err`) or the store is gone
/// (`Ok`).
async fn follow_loop(
    weak: &Weak<Inner>,
    conn: &mut MultiplexedConnection,
) -> Result<(), StoreError> {
    // After (re)connecting, check every history first: it may be gone.
    let mut last_verify: Option<tokio::time::Instant> = None;
    loop {
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        let mut to_prime: Vec<Box<str>> = Vec::new();
        let mut known = Vec::new();
        {
            let follow = inner.follow.lock().unwrap_or_else(PoisonError::into_inner);
            for (name, f) in follow.iter() {
                match f.epoch {
                    Some(epoch) => known.push((name.clone(), epoch, f.last)),
                    None => to_prime.push(name.clone()),
                }
            }
        }
        if last_verify.is_none_or(|t| t.elapsed() >= VERIFY_EVERY) {
            last_verify = Some(tokio::time::Instant::now());
            if !known.is_empty() {
                to_prime.extend(verify(&inner, conn, known).await?);
            }
            streams::verify(&inner.streams, conn).await?;
        }
        for name in to_prime {
            // One topic's trouble (a key someone else wrote) must not stall
            // the others: it is tried again on the next round.
            if let Err(e) = prime(&inner, conn, &name).await {
                if e.kind() == ErrorKind::Corrupt {
                    tracing::warn!(topic = &*name, error = %e, "cannot load topic from redis");
                } else {
                    return Err(e);
                }
            }
        }
        let reading: Vec<(Box<str>, Epoch, String)> = {
            let follow = inner.follow.lock().unwrap_or_else(PoisonError::into_inner);
            follow
                .iter()
                .filter_map(|(n, f)| f.epoch.map(|e| (n.clone(), e, f.cursor.clone())))
                .collect()
        };
        let ds_reading = streams::reading(&inner.streams);
        // Do not keep the store alive while blocked.
        drop(inner);
        if reading.is_empty() && ds_reading.is_empty() {
            // Nothing to follow yet: wait for a topic (or a wake-up).
            let _: Value = redis::cmd("BLPOP")
                .arg("ssehub:{}:never")
                .arg(BLOCK.as_secs_f64())
                .query_async(conn)
                .await?;
            continue;
        }
        let keys: Vec<String> = reading
            .iter()
            .map(|(n, _, _)| key_of(n, "stream"))
            .chain(ds_reading.iter().map(|r| r.key.clone()))
            .collect();
        let ids: Vec<&str> = reading
            .iter()
            .map(|(_, _, c)| c.as_str())
            .chain(ds_reading.iter().map(|r| r.cursor.as_str()))
            .collect();
        let reply: Option<StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1024)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&keys)
            .arg(&ids)
            .query_async(conn)
            .await?;
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        match reply {
            Some(reply) => {
                streams::ingest(&inner.streams, &ds_reading, &reply);
                ingest(&inner, &reading, reply);
            }
            // A quiet block, or a wake-up for a new topic: check histories.
            None => last_verify = None,
        }
    }
}

/// Checks with one round trip that every followed history is still the one
/// in Redis; returns the topics to load again. A history that went back in
/// time within its epoch gets a new epoch first, so that no id is reused.
async fn verify(
    inner: &Arc<Inner>,
    conn: &mut MultiplexedConnection,
    known: Vec<(Box<str>, Epoch, u64)>,
) -> Result<Vec<Box<str>>, StoreError> {
    let mut cmd = redis::cmd("MGET");
    for (name, _, _) in &known {
        cmd.arg(key_of(name, "epoch")).arg(key_of(name, "seq"));
    }
    let values: Vec<Option<String>> = cmd.query_async(conn).await?;
    let mut stale = Vec::new();
    for ((name, epoch, last), pair) in known.into_iter().zip(values.chunks(2)) {
        let (now, seq) = (
            pair[0].as_deref(),
            pair[1].as_deref().and_then(|s| s.parse::<u64>().ok()),
        );
        if now != Some(epoch.as_str()) {
            stale.push(name);
        } else if seq.is_some_and(|s| s < last) {
            tracing::warn!(topic = &*name, "redis history went back in time: new epoch");
            let _: Option<String> = inner
                .rotate
                .key(key_of(&name, "epoch"))
                .arg(epoch.as_str())
                .arg(Epoch::generate().as_str())
                .invoke_async(conn)
                .await?;
            stale.push(name);
        }
    }
    Ok(stale)
}

/// Loads a topic's history into its ring: the first time, and whenever the
/// history in Redis is no longer the one the ring follows.
async fn prime(
    inner: &Arc<Inner>,
    conn: &mut MultiplexedConnection,
    name: &str,
) -> Result<(), StoreError> {
    let Some(known) = inner
        .follow
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
        .map(|f| f.epoch.map(|e| (e, f.last)))
    else {
        return Ok(());
    };
    let Some(sink) = inner.sink() else {
        return Ok(());
    };
    // A topic whose ring never had an event may keep its epoch (its ids
    // all say "before the first event"); any other history needs a new one.
    let candidate = match known {
        Some((epoch, 0)) => epoch,
        _ => Epoch::generate(),
    };
    let store = RedisStore {
        inner: inner.clone(),
    };
    let (epoch, next, _) = store.run_publish(name, &[], candidate, None).await?;
    let maxlen = inner.maxlen.load(std::sync::atomic::Ordering::Relaxed);
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(key_of(name, "stream"))
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(maxlen)
        .query_async(conn)
        .await?;
    let (mut entries, cursor) = parse_entries(&reply, epoch)?;
    entries.reverse();
    let next = entries.last().map_or(next, |e| (e.0 + 1).max(next));
    let last = next - 1;
    if !sink.load(name, epoch, next, entries) {
        inner
            .follow
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        return Ok(());
    }
    if let Some(f) = inner
        .follow
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(name)
    {
        f.epoch = Some(epoch);
        f.last = last;
        f.cursor = cursor.unwrap_or_else(|| format!("0-{last}"));
    }
    Ok(())
}

/// Feeds an `XREAD` reply into the rings; returns whether anything was
/// added. An entry of another epoch makes the topic load again.
fn ingest(inner: &Arc<Inner>, reading: &[(Box<str>, Epoch, String)], reply: StreamReadReply) {
    let Some(sink) = inner.sink() else {
        return;
    };
    for stream in reply.keys {
        let Some((name, epoch, _)) = reading
            .iter()
            .find(|(n, _, _)| key_of(n, "stream") == stream.key)
        else {
            continue;
        };
        let mut events = Vec::with_capacity(stream.ids.len());
        let mut other_history = false;
        let mut cursor = None;
        for entry in &stream.ids {
            cursor = Some(entry.id.clone());
            let Some(seq) = entry_seq(&entry.id) else {
                continue;
            };
            let e = field(&entry.map, "e");
            if !e.is_empty() && e != epoch.as_str().as_bytes() {
                other_history = true;
                break;
            }
            let ty = field(&entry.map, "t");
            let data = field(&entry.map, "d");
            events.push((
                seq,
                encode_parts(&ty, &data).finish(&EventId::new(*epoch, seq)),
            ));
        }
        {
            let mut follow = inner.follow.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(f) = follow.get_mut(&**name) else {
                continue;
            };
            if other_history {
                f.epoch = None; // load it again
                continue;
            }
            if let Some(c) = cursor {
                f.cursor = c;
            }
            if let Some(last) = events.last().map(|e| e.0) {
                f.last = f.last.max(last);
            }
        }
        if !events.is_empty() {
            sink.append(name, *epoch, events);
        }
    }
}

/// The sequence number of an entry id `0-<seq>`; `None` for anything else
/// (and for a sequence that leaves no room after it).
fn entry_seq(id: &str) -> Option<u64> {
    id.strip_prefix("0-")?
        .parse::<u64>()
        .ok()
        .filter(|&s| s > 0 && s < u64::MAX)
}

fn field(map: &HashMap<String, Value>, name: &str) -> Vec<u8> {
    match map.get(name) {
        Some(Value::BulkString(b)) => b.clone(),
        Some(Value::SimpleString(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    }
}

/// Encoded frames of consecutive events, with their sequence numbers.
type Frames = Vec<(u64, Bytes)>;

/// Entries of an `XREVRANGE` reply that belong to `epoch`, encoded as
/// frames, and the id of the newest entry.
fn parse_entries(reply: &Value, epoch: Epoch) -> Result<(Frames, Option<String>), StoreError> {
    let Value::Array(items) = reply else {
        return Err(corrupt("XREVRANGE reply".into()));
    };
    let mut out = Vec::with_capacity(items.len());
    let mut newest = None;
    for item in items {
        let Value::Array(pair) = item else { continue };
        let (Some(id), Some(fields)) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let id = match id {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => continue,
        };
        if newest.is_none() {
            newest = Some(id.clone());
        }
        let Some(seq) = entry_seq(&id) else { continue };
        let mut map = HashMap::new();
        if let Value::Array(kv) = fields {
            for pair in kv.chunks(2) {
                if let [Value::BulkString(k), v] = pair {
                    map.insert(String::from_utf8_lossy(k).into_owned(), v.clone());
                }
            }
        }
        let e = field(&map, "e");
        if !e.is_empty() && e != epoch.as_str().as_bytes() {
            // Older than the current history (its epoch was replaced).
            break;
        }
        let frame =
            encode_parts(&field(&map, "t"), &field(&map, "d")).finish(&EventId::new(epoch, seq));
        out.push((seq, frame));
    }
    Ok((out, newest))
}
