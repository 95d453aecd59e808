//! Topics shared by several ssehub nodes through Redis Streams.
//!
//! Per topic, Redis holds three keys (with a hash tag, so a cluster keeps
//! them together): `ssehub:{topic}:epoch`, `ssehub:{topic}:seq` and the
//! stream `ssehub:{topic}:stream`, whose entry ids are `0-<seq>`. A Lua
//! script increments the sequence and appends in one step, so every node
//! gives an event the same id, in the same `<epoch>-<seq>` format as in
//! memory. If the keys are gone (Redis restarted without persistence, a key
//! was deleted) the script starts a new epoch, and clients that resume from
//! the old one get `resync`.
//!
//! Each node runs one reader task on a dedicated connection: it loads the
//! tail of a topic's stream into the topic's ring when the node first needs
//! the topic, then follows every such topic with one `XREAD BLOCK`, and
//! feeds what it reads into the rings, which fan out locally. Encoded frames
//! are built once per event per node. When Redis is unreachable, publishing
//! fails (`503`), open streams keep their keep-alives, and the reader
//! reconnects with backoff; if the history survived, it continues from the
//! last entry it read, otherwise subscribers get `resync`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::StreamReadReply;
use redis::{AsyncConnectionConfig, Client, Script, Value};

use crate::event::{Event, encode_parts};
use crate::id::{Epoch, EventId};
use crate::topic::Topic;

/// Appends events to a topic's stream and returns `{epoch, first seq}`.
/// With no events it only makes sure the topic has an epoch, and returns
/// the next sequence number.
const PUBLISH: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if (not epoch) or redis.call('EXISTS', KEYS[2]) == 0 then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
  redis.call('SET', KEYS[2], 0)
  redis.call('DEL', KEYS[3])
end
local n = tonumber(ARGV[3])
local first = redis.call('INCRBY', KEYS[2], n) - n + 1
for i = 0, n - 1 do
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], string.format('0-%d', first + i),
    't', ARGV[4 + 2 * i], 'd', ARGV[5 + 2 * i])
end
return {epoch, first}
"#;

/// How long one `XREAD` blocks before the reader checks epochs and new
/// topics.
const BLOCK: Duration = Duration::from_millis(1000);

/// A connection to Redis that a [`Hub`](crate::Hub) keeps its topics in.
///
/// Cheap to clone. Build it once per process and give it to
/// [`HubBuilder::redis`](crate::HubBuilder::redis); the hub's `buffer`
/// sets how many events each stream keeps (trimmed approximately).
///
/// ```no_run
/// use ssehub::{Hub, RedisStore};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let hub = Hub::builder().redis(store).build();
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    commands: ConnectionManager,
    script: Script,
    maxlen: std::sync::atomic::AtomicUsize,
    follow: Mutex<HashMap<Box<str>, Followed>>,
    /// `CLIENT ID` of the reader's connection, to interrupt its `XREAD`.
    reader_id: Mutex<Option<i64>>,
}

struct Followed {
    topic: Weak<Topic>,
    /// The history the ring holds, once primed.
    epoch: Option<Epoch>,
    /// The last sequence number read into the ring.
    last: u64,
}

/// Why Redis could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// Redis could not be reached or answered with an error.
    Redis(String),
    /// Redis answered something ssehub did not write.
    Corrupt(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Redis(e) => write!(f, "redis: {e}"),
            StoreError::Corrupt(e) => write!(f, "unexpected data in redis: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<redis::RedisError> for StoreError {
    fn from(e: redis::RedisError) -> Self {
        StoreError::Redis(e.to_string())
    }
}

fn key(topic: &str, what: &str) -> String {
    format!("ssehub:{{{topic}}}:{what}")
}

impl RedisStore {
    /// Connects to Redis (e.g. `redis://127.0.0.1:6379/`) and starts the
    /// reader task.
    ///
    /// # Errors
    ///
    /// [`StoreError::Redis`] if the URL is invalid or Redis does not answer.
    pub async fn connect(url: &str) -> Result<RedisStore, StoreError> {
        let client = Client::open(url)?;
        let commands = client.get_connection_manager().await?;
        let inner = Arc::new(Inner {
            client,
            commands,
            script: Script::new(PUBLISH),
            maxlen: std::sync::atomic::AtomicUsize::new(1024),
            follow: Mutex::new(HashMap::new()),
            reader_id: Mutex::new(None),
        });
        tokio::spawn(reader(Arc::downgrade(&inner)));
        Ok(RedisStore { inner })
    }

    pub(crate) fn set_retention(&self, events: usize) {
        self.inner
            .maxlen
            .store(events.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Appends events to `topic`; returns the epoch and the first sequence
    /// number (the others follow).
    pub(crate) async fn publish(
        &self,
        topic: &str,
        events: &[Event],
    ) -> Result<(Epoch, u64), StoreError> {
        let inner = &self.inner;
        let mut inv = inner.script.prepare_invoke();
        inv.key(key(topic, "epoch"))
            .key(key(topic, "seq"))
            .key(key(topic, "stream"))
            .arg(Epoch::generate().as_str())
            .arg(inner.maxlen.load(std::sync::atomic::Ordering::Relaxed))
            .arg(events.len());
        for ev in events {
            inv.arg(ev.event_type().unwrap_or("")).arg(ev.data());
        }
        let mut conn = inner.commands.clone();
        let (epoch, first): (String, u64) = inv.invoke_async(&mut conn).await?;
        let epoch = epoch
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("epoch {epoch:?}")))?;
        Ok((epoch, first))
    }

    /// Starts following `topic` on this node: its history is loaded into
    /// its ring (which marks it primed), then new events are read into it.
    pub(crate) fn follow(&self, topic: &Arc<Topic>) {
        {
            let mut follow = self
                .inner
                .follow
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if follow.contains_key(topic.name()) {
                return;
            }
            follow.insert(
                topic.name().into(),
                Followed {
                    topic: Arc::downgrade(topic),
                    epoch: None,
                    last: 0,
                },
            );
        }
        self.wake_reader();
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

/// The reader: one per node, on its own connection.
async fn reader(weak: Weak<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let config = AsyncConnectionConfig::new().set_response_timeout(None);
        let conn = inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await;
        let mut conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "redis unreachable; retrying in {backoff:?}");
                drop(inner);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        match redis::cmd("CLIENT")
            .arg("ID")
            .query_async::<i64>(&mut conn)
            .await
        {
            Ok(id) => {
                *inner
                    .reader_id
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(id)
            }
            Err(_) => continue,
        }
        backoff = Duration::from_millis(100);
        // After (re)connecting, check every history: it may be gone.
        let result = follow_loop(&inner, &mut conn).await;
        *inner
            .reader_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        if let Err(e) = result {
            tracing::warn!(error = %e, "redis reader lost its connection");
        }
        drop(inner);
        tokio::time::sleep(backoff).await;
    }
}

async fn follow_loop(
    inner: &Arc<Inner>,
    conn: &mut MultiplexedConnection,
) -> Result<(), StoreError> {
    let mut verify = true;
    loop {
        // Topics to (re)load, and the ones being followed.
        let mut to_prime: Vec<Box<str>> = Vec::new();
        let mut known = Vec::new();
        {
            let mut follow = inner.follow.lock().unwrap_or_else(PoisonError::into_inner);
            follow.retain(|_, f| f.topic.strong_count() > 0);
            for (name, f) in follow.iter() {
                match f.epoch {
                    Some(epoch) => known.push((name.clone(), epoch, f.last)),
                    None => to_prime.push(name.clone()),
                }
            }
        }
        if verify && !known.is_empty() {
            // One round trip: is every history still the one we follow?
            let keys: Vec<String> = known.iter().map(|(n, _, _)| key(n, "epoch")).collect();
            let epochs: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(conn).await?;
            for ((name, epoch, _), now) in known.drain(..).zip(epochs) {
                if now.as_deref() != Some(epoch.as_str()) {
                    to_prime.push(name);
                }
            }
        }
        verify = false;
        for name in to_prime {
            prime(inner, conn, &name).await?;
        }
        let reading: Vec<(Box<str>, Epoch, u64)> = {
            let follow = inner.follow.lock().unwrap_or_else(PoisonError::into_inner);
            follow
                .iter()
                .filter_map(|(n, f)| f.epoch.map(|e| (n.clone(), e, f.last)))
                .collect()
        };
        if !reading.is_empty() {
            let keys: Vec<String> = reading.iter().map(|(n, _, _)| key(n, "stream")).collect();
            let ids: Vec<String> = reading
                .iter()
                .map(|(_, _, last)| format!("0-{last}"))
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
            match reply {
                Some(reply) => ingest(inner, &reading, reply),
                // Nothing for a while: a history may have been replaced.
                None => verify = true,
            }
        } else {
            // Nothing to follow yet: wait for a topic (or a wake-up).
            let _: Value = redis::cmd("BLPOP")
                .arg("ssehub:{}:never")
                .arg(BLOCK.as_secs_f64())
                .query_async(conn)
                .await?;
        }
    }
}

/// Loads a topic's history into its ring: the first time, and whenever the
/// history in Redis is no longer the one the ring follows.
async fn prime(
    inner: &Arc<Inner>,
    conn: &mut MultiplexedConnection,
    name: &str,
) -> Result<(), StoreError> {
    let Some(topic) = inner
        .follow
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(name)
        .and_then(|f| f.topic.upgrade())
    else {
        return Ok(());
    };
    // Make sure the topic has an epoch; learn the next sequence number.
    let store = RedisStore {
        inner: inner.clone(),
    };
    let (epoch, next) = store.publish(name, &[]).await?;
    let maxlen = inner.maxlen.load(std::sync::atomic::Ordering::Relaxed);
    let entries: Vec<(u64, Bytes)> = {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(key(name, "stream"))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(maxlen)
            .query_async(conn)
            .await?;
        let mut entries = parse_entries(&reply, epoch)?;
        entries.reverse();
        entries
    };
    let next = entries.last().map_or(next, |e| e.0.max(next - 1) + 1);
    let last = next - 1;
    topic.prime(epoch, next, entries);
    if let Some(f) = inner
        .follow
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(name)
    {
        f.epoch = Some(epoch);
        f.last = last;
    }
    Ok(())
}

fn ingest(inner: &Arc<Inner>, reading: &[(Box<str>, Epoch, u64)], reply: StreamReadReply) {
    for stream in reply.keys {
        let Some((name, epoch, _)) = reading
            .iter()
            .find(|(n, _, _)| key(n, "stream") == stream.key)
        else {
            continue;
        };
        let mut events = Vec::with_capacity(stream.ids.len());
        for entry in &stream.ids {
            let Some(seq) = entry.id.strip_prefix("0-").and_then(|s| s.parse().ok()) else {
                continue;
            };
            let ty = field(&entry.map, "t");
            let data = field(&entry.map, "d");
            events.push((
                seq,
                encode_parts(&ty, &data).finish(&EventId::new(*epoch, seq)),
            ));
        }
        let Some(last) = events.last().map(|e| e.0) else {
            continue;
        };
        let topic = {
            let mut follow = inner.follow.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(f) = follow.get_mut(&**name) else {
                continue;
            };
            f.last = f.last.max(last);
            f.topic.upgrade()
        };
        if let Some(topic) = topic {
            topic.ingest(*epoch, events);
        }
    }
}

fn field(map: &HashMap<String, Value>, name: &str) -> Vec<u8> {
    match map.get(name) {
        Some(Value::BulkString(b)) => b.clone(),
        Some(Value::SimpleString(s)) => s.clone().into_bytes(),
        _ => Vec::new(),
    }
}

/// Entries of an `XRANGE`/`XREVRANGE` reply, encoded as frames.
fn parse_entries(reply: &Value, epoch: Epoch) -> Result<Vec<(u64, Bytes)>, StoreError> {
    let Value::Array(items) = reply else {
        return Err(StoreError::Corrupt("XREVRANGE reply".into()));
    };
    let mut out = Vec::with_capacity(items.len());
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
        let Some(seq) = id.strip_prefix("0-").and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let mut map = HashMap::new();
        if let Value::Array(kv) = fields {
            for pair in kv.chunks(2) {
                if let [Value::BulkString(k), v] = pair {
                    map.insert(String::from_utf8_lossy(k).into_owned(), v.clone());
                }
            }
        }
        let frame =
            encode_parts(&field(&map, "t"), &field(&map, "d")).finish(&EventId::new(epoch, seq));
        out.push((seq, frame));
    }
    Ok(out)
}
