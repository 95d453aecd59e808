//! Durable Streams in Redis, shared by every node on the same Redis.
//!
//! Per stream (topic `T`, a `ds:` name), Redis holds two keys with the
//! topic's hash tag:
//! - the hash `ssehub:{T}:ds`: `meta` (the stream's record,
//!   `core::durable::record`), `p:<id>` (one record per producer), `v` (a
//!   version, raised by every write), `g` (the generation), `s` and `n`
//!   (its first and last positions), `f` (live forks), `h` (hidden: deleted
//!   under live forks) and `t` (last use, for a sliding TTL);
//! - the stream `ssehub:{T}:m:<generation>`: message `n` is the entry
//!   `n-0` (field `d`, and `c` if it closed the stream); a close without
//!   data after message `n` is the entry `n-1` (field `c`). A stream deleted
//!   and created again writes a new key, so an entry is never taken for one
//!   of another incarnation.
//!
//! # Writes
//!
//! Each node sends a stream's writes, in the hub's order, to one worker
//! task per stream. The worker decides them on its copy of the stream's
//! metadata with the same rules as memory and disk (`StreamMeta::admit`,
//! written once in `core`), then writes the whole batch with one script
//! that applies only if the hash's version is still the copy's: a
//! compare-and-set. If another node wrote first, the worker loads the
//! stream again, catches this node's ring up, and decides the batch anew;
//! so concurrent producers on several nodes see one order, and a write's
//! messages and its producer state change together or not at all. Once
//! the script returns, the worker hands each outcome to the hub (its ring
//! and its copy, in order), then answers.
//!
//! # Other nodes
//!
//! A node loads a stream on first use (one script: the hash and the
//! newest messages), then the reader task follows its messages with the
//! native topics' `XREAD` and checks every second that the stream is still
//! the one it loaded (deleted, hidden, created again, used elsewhere).
//! Reads that name an offset this node has not seen yet catch up from
//! Redis before answering, so a client that moves between nodes never gets
//! `400` for an offset another node gave.
//!
//! # Expiry
//!
//! Nodes delete expired streams as in memory, and Redis expires the keys a
//! little after the stream's expiry (`PEXPIREAT`, or `PEXPIRE` renewed on
//! use for a sliding TTL) for when no node does. A node writes its uses of
//! a stream with a sliding TTL to `t` at most once a second; the others
//! read it when they check the stream.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, PoisonError};

use bytes::Bytes;
use redis::streams::StreamReadReply;
use redis::{Script, Value};
use tokio::sync::oneshot;

use redis::aio::ConnectionManager;

use super::keys::{corrupt, key_of};
use crate::core::TopicName;
use crate::core::durable::meta::{Expiry, Verdict};
use crate::core::durable::{StreamMeta, path, record};
use crate::store::Sink;
use crate::store::{
    ErrorKind, LoadedStream, StoreError, StreamAnswer, StreamChange, StreamDeliver, StreamDone,
    StreamOp,
};

/// Writes a batch if the hash's version is `ARGV[1]` (empty: if the stream
/// does not exist). Returns `{1, new version, parent's forks, parent
/// hidden, first position}` (`-1` forks: no parent changed), or `{0,
/// current version}`. Then drops the oldest messages (never the last)
/// while the messages take more than `ARGV[7]` bytes (0: no bound).
///
/// KEYS: the hash, the messages, the parent's hash (the hash itself for
/// none). ARGV: expected version, mode (`w` write, `d` delete), expiry
/// (`''`, `at`, `ttl`) and its ms, the parent's change of forks, the bytes
/// the batch adds, the bound, then `H` and `H` field/value pairs to set,
/// `D` and `D` fields to delete, `E` and `E` entries (id, data or `''`,
/// `1` if it closes).
const WRITE: &str = r#"
local v = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
  if v then return {0, v} end
elseif v ~= ARGV[1] then
  return {0, v or ''}
end
local pf, ph = -1, '0'
if ARGV[5] ~= '0' and KEYS[3] ~= KEYS[1] and redis.call('EXISTS', KEYS[3]) == 1 then
  pf = redis.call('HINCRBY', KEYS[3], 'f', ARGV[5])
  redis.call('HINCRBY', KEYS[3], 'v', 1)
  ph = redis.call('HGET', KEYS[3], 'h') or '0'
end
if ARGV[2] == 'd' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return {1, '', pf, ph}
end
local nv = tostring((tonumber(v) or 0) + 1)
local i = 8
local fields = {'v', nv}
for _ = 1, tonumber(ARGV[i]) do
  fields[#fields + 1] = ARGV[i + 1]
  fields[#fields + 1] = ARGV[i + 2]
  i = i + 2
end
i = i + 1
redis.call('HSET', KEYS[1], unpack(fields))
local d = tonumber(ARGV[i])
for j = 1, d do
  redis.call('HDEL', KEYS[1], ARGV[i + j])
end
i = i + d + 1
for _ = 1, tonumber(ARGV[i]) do
  local id, data, close = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if data ~= '' and close == '1' then
    redis.call('XADD', KEYS[2], id, 'd', data, 'c', '1')
  elseif data ~= '' then
    redis.call('XADD', KEYS[2], id, 'd', data)
  else
    redis.call('XADD', KEYS[2], id, 'c', '1')
  end
  i = i + 3
end
if ARGV[3] == 'at' then
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
  redis.call('PEXPIREAT', KEYS[2], ARGV[4])
elseif ARGV[3] == 'ttl' then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local first = tonumber(redis.call('HGET', KEYS[1], 's'))
local last = tonumber(redis.call('HGET', KEYS[1], 'n'))
local b = redis.call('HINCRBY', KEYS[1], 'b', ARGV[6])
local max = tonumber(ARGV[7])
if max > 0 and b > max and first < last then
  while b > max and first < last do
    local id = string.format('%d-0', first)
    local e = redis.call('XRANGE', KEYS[2], id, id)
    if e[1] then
      local f = e[1][2]
      for k = 1, #f, 2 do
        if f[k] == 'd' then b = b - #f[k + 1] end
      end
      redis.call('XDEL', KEYS[2], id)
    end
    first = first + 1
  end
  redis.call('HSET', KEYS[1], 'b', b, 's', string.format('%d', first))
end
return {1, nv, pf, ph, string.format('%d', first)}
"#;

/// The stream's hash and its newest `ARGV[1]` entries, newest first, in one
/// step; `{}` if there is no such stream. KEYS: the hash.
const LOAD: &str = r#"
local all = redis.call('HGETALL', KEYS[1])
if #all == 0 then return {} end
local tail = {}
if tonumber(ARGV[1]) > 0 then
  local g = redis.call('HGET', KEYS[1], 'g')
  local m = string.sub(KEYS[1], 1, -3) .. 'm:' .. g
  tail = redis.call('XREVRANGE', m, '+', '-', 'COUNT', ARGV[1])
end
return {all, tail}
"#;

/// Renews a stream's sliding TTL: its last use and its keys' expiry.
/// KEYS: the hash, the messages. ARGV: now (ms), the keys' TTL (ms).
const TOUCH: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  local t = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
  if tonumber(ARGV[1]) > t then redis.call('HSET', KEYS[1], 't', ARGV[1]) end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"#;

/// The scripts, hashed once.
static WRITE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(WRITE));
static LOAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOAD));
static TOUCH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(TOUCH));

/// How long Redis keeps a stream's keys after its expiry: nodes delete it
/// at the exact time; Redis only cleans up after streams no node uses.
const EXPIRY_MARGIN_MS: u64 = 5_000;

/// How often a node writes its uses of a stream with a sliding TTL.
const TOUCH_EVERY_MS: u64 = 1_000;

/// Most writes decided and written in one script.
const MAX_BATCH: usize = 256;

/// Times a batch is decided again after other nodes wrote first.
const MAX_ATTEMPTS: usize = 16;

/// Most entries one catch-up or history read asks for at a time.
const READ_CHUNK: usize = 4096;

pub(super) fn hash_key(topic: &str) -> String {
    key_of(topic, "ds")
}

pub(super) fn messages_key(topic: &str, generation: u64) -> String {
    key_of(topic, &format!("m:{generation}"))
}

/// An entry of a stream's messages: a position, its message (none for a
/// close without data), and whether it closed the stream.
pub(crate) type Entry = (u64, Option<Bytes>, bool);

/// A worker's copy of a stream, as of version `version` of its hash.
#[derive(Debug, Clone)]
struct Copy {
    meta: StreamMeta,
    version: String,
    first: u64,
    last: u64,
}

/// A write waiting for its worker.
struct Pending {
    op: StreamOp,
    deliver: StreamDeliver,
    reply: oneshot::Sender<Result<StreamDone, StoreError>>,
}

/// One stream's worker state on this node.
#[derive(Default)]
pub(super) struct Slot {
    queue: VecDeque<Pending>,
    busy: bool,
    /// The worker's copy: unknown (`None`), absent, or the stream.
    copy: Option<Option<Copy>>,
    /// When this node last wrote a use of the stream (sliding TTL).
    touched_ms: u64,
}

/// A stream this node follows: its messages' key and where `XREAD` goes on.
#[derive(Debug, Clone)]
pub(super) struct Followed {
    pub(super) generation: u64,
    pub(super) cursor: String,
}

/// What a batch's script must write.
#[derive(Default)]
struct Plan {
    /// Only if the stream does not exist.
    create: bool,
    delete: bool,
    /// The messages' key (of the stream's generation).
    messages: String,
    /// Hash fields to set (`Some`) or delete (`None`), in the end state.
    fields: BTreeMap<String, Option<Vec<u8>>>,
    entries: Vec<(String, Option<Bytes>, bool)>,
    expire: Option<(&'static str, u64)>,
    /// The parent's hash and its change of forks.
    parent: Option<(String, i64)>,
    /// The parent, when a delete counts a fork off it.
    released: Option<TopicName>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        !self.create && !self.delete && self.fields.is_empty() && self.entries.is_empty()
    }

    fn set(&mut self, field: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.fields.insert(field.into(), Some(value.into()));
    }
}

/// The ids of an entry: `n-0` a message, `n-1` a close after message `n`.
fn entry_id(seq: u64, message: bool) -> String {
    format!("{seq}-{}", u8::from(!message))
}

/// How long Redis keeps a stream's keys, from its expiry.
fn expire_of(meta: &StreamMeta) -> Option<(&'static str, u64)> {
    match &meta.config.expiry {
        Expiry::Never => None,
        Expiry::At { ms, .. } => Some(("at", ms.saturating_add(EXPIRY_MARGIN_MS))),
        Expiry::Ttl(secs) => Some((
            "ttl",
            secs.saturating_mul(1000).saturating_add(EXPIRY_MARGIN_MS),
        )),
    }
}

/// Decides `op` on `copy` (the stream as the batch leaves it so far),
/// adding what it writes to `plan`.
fn decide(topic: &str, copy: &mut Option<Copy>, op: &StreamOp, plan: &mut Plan) -> StreamDone {
    match op {
        StreamOp::Create {
            meta,
            first,
            frames,
        } => {
            if copy.is_some() {
                return StreamDone::Exists;
            }
            let generation = meta.generations.own;
            let last = first + frames.len() as u64 - 1;
            plan.create = true;
            plan.messages = messages_key(topic, generation);
            plan.set("meta", record::encode_stream(meta));
            plan.set("g", generation.to_string());
            plan.set("s", first.to_string());
            plan.set("n", last.to_string());
            plan.set("f", "0");
            plan.set("h", "0");
            plan.set("t", meta.touched_ms.to_string());
            for (i, frame) in frames.iter().enumerate() {
                plan.entries
                    .push((entry_id(first + i as u64, true), Some(frame.clone()), false));
            }
            if meta.is_closed() {
                plan.entries.push((entry_id(last, false), None, true));
            }
            plan.expire = expire_of(meta);
            if let Some(parent) = &meta.parent {
                plan.parent = Some((hash_key(parent.as_str()), 1));
            }
            *copy = Some(Copy {
                meta: (**meta).clone(),
                version: String::new(),
                first: *first,
                last,
            });
            StreamDone::Created
        }
        StreamOp::Append {
            write,
            frame,
            now_ms,
        } => {
            let Some(c) = copy else {
                return StreamDone::NotFound;
            };
            let w = write.as_write();
            let generation = c.meta.generations.own;
            let producer = match c.meta.admit(&w, *now_ms) {
                Verdict::Accepted { producer } => producer,
                verdict => {
                    return StreamDone::Appended {
                        verdict,
                        seq: c.last,
                        generation,
                        closed: c.meta.is_closed(),
                    };
                }
            };
            plan.messages = messages_key(topic, generation);
            match frame {
                Some(frame) => {
                    c.last += 1;
                    plan.entries
                        .push((entry_id(c.last, true), Some(frame.clone()), w.close));
                    plan.set("n", c.last.to_string());
                }
                None if w.close => plan.entries.push((entry_id(c.last, false), None, true)),
                None => {}
            }
            let forgotten = c.meta.commit(&w, producer.clone(), *now_ms);
            if w.close || w.stream_seq.is_some() {
                plan.set("meta", record::encode_stream(&c.meta));
            }
            if let Some(p) = &producer
                && let Some(state) = c.meta.producers.get(&p.id)
            {
                plan.set(format!("p:{}", p.id), record::encode_producer(state));
            }
            if let Some(id) = forgotten {
                plan.fields.insert(format!("p:{id}"), None);
            }
            if let Expiry::Ttl(_) = c.meta.config.expiry {
                plan.set("t", now_ms.to_string());
                plan.expire = expire_of(&c.meta);
            }
            StreamDone::Appended {
                verdict: Verdict::Accepted { producer },
                seq: c.last,
                generation,
                closed: c.meta.is_closed(),
            }
        }
        StreamOp::Hide => {
            let Some(c) = copy else {
                return StreamDone::NotFound;
            };
            hide(topic, c, plan);
            StreamDone::Done
        }
        StreamOp::Delete => {
            let Some(c) = copy else {
                return StreamDone::NotFound;
            };
            if c.meta.forks > 0 {
                // A fork was made on another node meanwhile: hidden, as
                // the hub does with its own forks.
                hide(topic, c, plan);
                return StreamDone::Done;
            }
            plan.delete = true;
            plan.messages = messages_key(topic, c.meta.generations.own);
            if let Some(parent) = &c.meta.parent {
                plan.parent = Some((hash_key(parent.as_str()), -1));
                plan.released = Some(parent.clone());
            }
            *copy = None;
            StreamDone::Done
        }
    }
}

fn hide(topic: &str, c: &mut Copy, plan: &mut Plan) {
    c.meta.soft_deleted = true;
    plan.messages = messages_key(topic, c.meta.generations.own);
    plan.set("meta", record::encode_stream(&c.meta));
    plan.set("h", "1");
}

/// Whether `op` must be written alone (it changes what the script
/// checks: the stream's existence).
fn alone(op: &StreamOp) -> bool {
    matches!(op, StreamOp::Create { .. } | StreamOp::Delete)
}

/// What the write script did.
enum Ran {
    /// Written: the hash's new version, the parent's forks and hidden
    /// flag if a parent changed, and the stream's first position.
    Written {
        version: String,
        parent: Option<(i64, bool)>,
        first: Option<u64>,
    },
    /// Another write came first.
    Conflict,
}

/// The Durable Streams of one node: its workers, the streams it follows,
/// and its connection for commands. Cheap to clone.
#[derive(Clone)]
pub(super) struct Streams(Arc<Shared>);

struct Shared {
    commands: ConnectionManager,
    /// The hub the store reports to (shared with the store).
    sink: Arc<std::sync::Mutex<Option<Arc<dyn Sink>>>>,
    /// The most bytes of messages a stream keeps (0: no bound).
    stream_bytes: std::sync::atomic::AtomicUsize,
    /// The streams this node writes (their workers).
    slots: std::sync::Mutex<HashMap<Box<str>, Slot>>,
    /// The streams this node follows.
    follow: std::sync::Mutex<HashMap<Box<str>, Followed>>,
}

impl Streams {
    pub(super) fn new(
        commands: ConnectionManager,
        sink: Arc<std::sync::Mutex<Option<Arc<dyn Sink>>>>,
    ) -> Self {
        Streams(Arc::new(Shared {
            commands,
            sink,
            stream_bytes: std::sync::atomic::AtomicUsize::new(0),
            slots: Default::default(),
            follow: Default::default(),
        }))
    }

    /// Streams keep at most `bytes` bytes of messages (0: no bound).
    pub(super) fn set_stream_bytes(&self, bytes: usize) {
        self.0.stream_bytes.store(bytes, Ordering::Relaxed);
    }

    fn sink(&self) -> Option<Arc<dyn Sink>> {
        self.0
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Slot>> {
        self.0.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn follow(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Followed>> {
        self.0.follow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops following `topic`.
    pub(super) fn unfollow(&self, topic: &str) {
        self.follow().remove(topic);
    }

    /// Queues a write of `topic`'s stream for its worker (see the module
    /// documentation); the answer comes once it is in Redis.
    pub(super) fn send(
        &self,
        topic: &str,
        op: StreamOp,
        deliver: StreamDeliver,
    ) -> Result<StreamAnswer, StoreError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::new(ErrorKind::Unavailable, "no runtime for redis"))?;
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut slots = self.slots();
            let slot = slots.entry(topic.into()).or_default();
            slot.queue.push_back(Pending { op, deliver, reply });
            !std::mem::replace(&mut slot.busy, true)
        };
        if start {
            runtime.spawn(self.clone().work(topic.into()));
        }
        Ok(answer)
    }

    /// A stream's worker: writes its queue's batches until it is empty.
    async fn work(self, topic: Box<str>) {
        loop {
            let (batch, copy) = {
                let mut slots = self.slots();
                let Some(slot) = slots.get_mut(&topic) else {
                    return;
                };
                if slot.queue.is_empty() {
                    slot.busy = false;
                    if !matches!(slot.copy, Some(Some(_))) {
                        // Nothing worth keeping: the map stays bounded by
                        // the streams this node holds.
                        slots.remove(&topic);
                    }
                    return;
                }
                let mut batch = vec![slot.queue.pop_front().expect("not empty")];
                while !alone(&batch[0].op)
                    && batch.len() < MAX_BATCH
                    && slot.queue.front().is_some_and(|p| !alone(&p.op))
                {
                    batch.extend(slot.queue.pop_front());
                }
                (batch, slot.copy.take())
            };
            let copy = self.write_batch(&topic, batch, copy).await;
            if let Some(slot) = self.slots().get_mut(&topic) {
                slot.copy = copy;
            }
        }
    }

    /// Decides and writes `batch`, delivers and answers each write; returns
    /// the copy to keep.
    async fn write_batch(
        &self,
        topic: &str,
        batch: Vec<Pending>,
        mut copy: Option<Option<Copy>>,
    ) -> Option<Option<Copy>> {
        for _ in 0..MAX_ATTEMPTS {
            let current = match copy.take() {
                Some(c) => c,
                None => match self.load_copy(topic).await {
                    Ok(c) => c,
                    Err(e) => {
                        fail(batch, &e);
                        return None;
                    }
                },
            };
            let mut scratch = current.clone();
            let mut plan = Plan::default();
            let done: Vec<StreamDone> = batch
                .iter()
                .map(|p| decide(topic, &mut scratch, &p.op, &mut plan))
                .collect();
            if plan.is_empty() {
                finish(batch, done);
                return Some(scratch);
            }
            let expected = current.as_ref().map_or("", |c| c.version.as_str());
            match self.run_plan(topic, expected, &plan).await {
                Ok(Ran::Written {
                    version,
                    parent,
                    first,
                }) => {
                    if let Some(c) = &mut scratch {
                        c.version = version;
                        if let Some(first) = first.filter(|&f| f > c.first) {
                            // The bound dropped the oldest messages.
                            c.first = first;
                            let generation = c.meta.generations.own;
                            if let Some(sink) = self.sink() {
                                sink.stream_changed(
                                    topic,
                                    generation,
                                    StreamChange::Trimmed(first),
                                );
                            }
                        }
                    }
                    if let (Some((0, true)), Some(parent)) = (parent, &plan.released) {
                        // The last fork of a hidden stream: it goes too
                        // (its worker decides, on its own copy).
                        let _ = self.send(parent.as_str(), StreamOp::Delete, Box::new(|_| {}));
                    }
                    finish(batch, done);
                    return Some(scratch);
                }
                Ok(Ran::Conflict) => {}
                Err(e) => {
                    fail(batch, &e);
                    return None;
                }
            }
        }
        let e = StoreError::new(
            ErrorKind::Unavailable,
            "redis: other nodes kept writing this stream first",
        );
        fail(batch, &e);
        None
    }

    /// Loads the worker's copy of `topic`'s stream (absent: `None`), and
    /// catches this node's ring up to it.
    async fn load_copy(&self, topic: &str) -> Result<Option<Copy>, StoreError> {
        let Some((copy, _)) = self.load_raw(topic, 0).await? else {
            return Ok(None);
        };
        self.catch_up(topic).await?;
        Ok(Some(copy))
    }

    /// Runs the write script for `plan`, if the hash is at `expected`.
    async fn run_plan(&self, topic: &str, expected: &str, plan: &Plan) -> Result<Ran, StoreError> {
        let hash = hash_key(topic);
        let mut inv = WRITE_SCRIPT.prepare_invoke();
        inv.key(&hash)
            .key(&plan.messages)
            .key(plan.parent.as_ref().map_or(&hash, |p| &p.0))
            .arg(expected)
            .arg(if plan.delete { "d" } else { "w" })
            .arg(plan.expire.map_or("", |e| e.0))
            .arg(plan.expire.map_or(0, |e| e.1))
            .arg(plan.parent.as_ref().map_or(0, |p| p.1))
            .arg(
                plan.entries
                    .iter()
                    .map(|e| e.1.as_ref().map_or(0, Bytes::len))
                    .sum::<usize>(),
            )
            .arg(self.0.stream_bytes.load(Ordering::Relaxed));
        let set: Vec<_> = plan
            .fields
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
        inv.arg(set.len());
        for (k, v) in set {
            inv.arg(k.as_str()).arg(v.as_slice());
        }
        let del: Vec<_> = plan
            .fields
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.as_str())
            .collect();
        inv.arg(del.len());
        for k in del {
            inv.arg(k);
        }
        inv.arg(plan.entries.len());
        for (id, data, close) in &plan.entries {
            inv.arg(id.as_str())
                .arg(data.as_deref().unwrap_or(b""))
                .arg(if *close { "1" } else { "" });
        }
        let mut conn = self.0.commands.clone();
        let reply: Vec<Value> = inv.invoke_async(&mut conn).await?;
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        match int(reply.first()) {
            Some(1) => Ok(Ran::Written {
                version: text(reply.get(1)).unwrap_or_default(),
                parent: match int(reply.get(2)) {
                    Some(f) if f >= 0 => Some((f, text(reply.get(3)).as_deref() == Some("1"))),
                    _ => None,
                },
                first: text(reply.get(4)).and_then(|f| f.parse().ok()),
            }),
            Some(0) => Ok(Ran::Conflict),
            _ => Err(corrupt(format!("stream write reply for {topic}"))),
        }
    }

    /// The stream of `topic` with its `tail` newest messages, in one step;
    /// `None` if Redis has no such stream.
    async fn load_raw(
        &self,
        topic: &str,
        tail: usize,
    ) -> Result<Option<(Copy, Vec<(String, Entry)>)>, StoreError> {
        let mut conn = self.0.commands.clone();
        let reply: Vec<Value> = LOAD_SCRIPT
            .key(hash_key(topic))
            .arg(tail)
            .invoke_async(&mut conn)
            .await?;
        let [hash, entries] = reply.as_slice() else {
            return Ok(None);
        };
        let mut fields: HashMap<String, Vec<u8>> = HashMap::new();
        for (k, v) in pairs(hash) {
            fields.insert(String::from_utf8_lossy(&k).into_owned(), v);
        }
        let bad = || corrupt(format!("the stream record of {topic}"));
        let num = |name: &str| -> Option<u64> {
            std::str::from_utf8(fields.get(name)?).ok()?.parse().ok()
        };
        let now = crate::core::now_ms();
        let mut meta = fields
            .get("meta")
            .and_then(|m| record::decode_stream(m, now))
            .ok_or_else(bad)?;
        if num("g") != Some(meta.generations.own) {
            return Err(bad());
        }
        for (k, v) in &fields {
            if let Some(id) = k.strip_prefix("p:") {
                let p = record::decode_producer(v).ok_or_else(bad)?;
                meta.producers.insert(id.into(), p);
            }
        }
        meta.forks = u32::try_from(num("f").unwrap_or(0)).unwrap_or(u32::MAX);
        meta.soft_deleted = num("h") == Some(1);
        if let Some(t) = num("t") {
            meta.touched_ms = t;
        }
        let (first, last) = (num("s").ok_or_else(bad)?, num("n").ok_or_else(bad)?);
        let version = fields
            .get("v")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(bad)?;
        let mut read = parse_entries(entries);
        read.reverse();
        Ok(Some((
            Copy {
                meta,
                version,
                first,
                last,
            },
            read,
        )))
    }

    /// Loads `topic`'s stream for the hub: its metadata and up to `tail`
    /// newest messages; from then on this node follows it.
    pub(super) async fn load_stream(
        &self,
        topic: &str,
        tail: usize,
    ) -> Result<Option<LoadedStream>, StoreError> {
        let Some((copy, entries)) = self.load_raw(topic, tail.max(1)).await? else {
            return Ok(None);
        };
        // The newest messages, consecutive up to the last.
        let mut frames = Vec::with_capacity(entries.len());
        let mut expect = copy.last;
        for (_, (seq, data, _)) in entries.into_iter().rev() {
            match data {
                Some(d) if seq == expect && seq >= copy.first => {
                    frames.push(d);
                    expect -= 1;
                }
                Some(_) => break,
                None => {}
            }
        }
        frames.reverse();
        self.follow_stream(
            topic,
            copy.meta.generations.own,
            copy.last,
            copy.meta.is_closed(),
        );
        Ok(Some(LoadedStream {
            meta: copy.meta,
            first: copy.first,
            last: copy.last,
            tail: frames,
        }))
    }

    /// Follows the messages of `topic`'s stream `generation` after message
    /// `last` (and its close, if `closed`), from the reader's next round.
    pub(super) fn follow_stream(&self, topic: &str, generation: u64, last: u64, closed: bool) {
        self.follow().insert(
            topic.into(),
            Followed {
                generation,
                cursor: entry_id(last, !closed),
            },
        );
    }

    /// Brings this node's ring of `topic`'s stream up to Redis: the
    /// messages (and close) after the ring's last, if it is the same
    /// incarnation.
    pub(super) async fn catch_up(&self, topic: &str) -> Result<(), StoreError> {
        let Some(sink) = self.sink() else {
            return Ok(());
        };
        let Some((generation, after)) = sink.stream_tail(topic) else {
            return Ok(());
        };
        let key = messages_key(topic, generation);
        let mut start = format!("({}", entry_id(after, true));
        loop {
            let mut conn = self.0.commands.clone();
            let reply: Value = redis::cmd("XRANGE")
                .arg(&key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(READ_CHUNK)
                .query_async(&mut conn)
                .await?;
            let entries = parse_entries(&reply);
            let Some((id, _)) = entries.last() else {
                return Ok(());
            };
            start = format!("({id}");
            let full = entries.len() == READ_CHUNK;
            let entries: Vec<Entry> = entries.into_iter().map(|(_, e)| e).collect();
            sink.stream_entries(topic, generation, entries);
            if !full {
                return Ok(());
            }
        }
    }

    /// Where Redis's copy of `topic`'s stream stands: its generation and
    /// last position; `None` if it has none.
    pub(super) async fn stream_head(&self, topic: &str) -> Result<Option<(u64, u64)>, StoreError> {
        let mut conn = self.0.commands.clone();
        let (g, n): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(hash_key(topic))
            .arg("g")
            .arg("n")
            .query_async(&mut conn)
            .await?;
        Ok(g.zip(n))
    }

    /// Reads messages `from` on of `topic`'s stream `generation`: at most
    /// `max`, and (unless the first alone is larger) `max_bytes`.
    pub(super) async fn read_messages(
        &self,
        topic: &str,
        generation: u64,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        let mut conn = self.0.commands.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(messages_key(topic, generation))
            .arg(entry_id(from, true))
            .arg("+")
            .arg("COUNT")
            .arg(max.min(READ_CHUNK))
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for (_, (seq, data, _)) in parse_entries(&reply) {
            let Some(d) = data else { continue };
            if seq != from + out.len() as u64 || (!out.is_empty() && bytes + d.len() > max_bytes) {
                break;
            }
            bytes += d.len();
            out.push(d);
            if out.len() >= max {
                break;
            }
        }
        Ok(out)
    }

    /// Renews a stream's sliding TTL in Redis (at most once a second per
    /// stream per node; not waiting for it).
    pub(super) fn touch_stream(&self, topic: &str, generation: u64, ttl_secs: u64, now_ms: u64) {
        {
            let mut slots = self.slots();
            let slot = slots.entry(topic.into()).or_default();
            if now_ms.saturating_sub(slot.touched_ms) < TOUCH_EVERY_MS {
                return;
            }
            slot.touched_ms = now_ms;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut conn = self.0.commands.clone();
        let (hash, messages) = (hash_key(topic), messages_key(topic, generation));
        let keep = ttl_secs
            .saturating_mul(1000)
            .saturating_add(EXPIRY_MARGIN_MS);
        runtime.spawn(async move {
            let r: Result<Value, _> = TOUCH_SCRIPT
                .key(hash)
                .key(messages)
                .arg(now_ms)
                .arg(keep)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "cannot renew a stream's TTL in redis");
            }
        });
    }
}

/// Hands each outcome to the hub, in order, then answers.
fn finish(batch: Vec<Pending>, done: Vec<StreamDone>) {
    for (p, d) in batch.into_iter().zip(done) {
        (p.deliver)(&d);
        let _ = p.reply.send(Ok(d));
    }
}

fn fail(batch: Vec<Pending>, e: &StoreError) {
    for p in batch {
        let _ = p.reply.send(Err(StoreError::new(e.kind(), e.to_string())));
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn bytes_of(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        _ => None,
    }
}

/// The field/value pairs of a hash or an entry, in RESP2 or RESP3.
fn pairs(v: &Value) -> Vec<(Vec<u8>, Vec<u8>)> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| Some((bytes_of(kv.first()?)?, bytes_of(kv.get(1)?)?)))
            .collect(),
        Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((bytes_of(k)?, bytes_of(v)?)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The entries of an `XRANGE`-like reply, with their ids, in reply order;
/// entries that are not a stream's are skipped.
pub(super) fn parse_entries(reply: &Value) -> Vec<(String, Entry)> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(pair) = item else { continue };
        let (Some(id), Some(fields)) = (pair.first().and_then(bytes_of), pair.get(1)) else {
            continue;
        };
        let id = String::from_utf8_lossy(&id).into_owned();
        let Some(entry) = entry_of(&id, pairs(fields)) else {
            continue;
        };
        out.push((id, entry));
    }
    out
}

/// An entry from its id and fields; `None` for what this code did not write.
pub(super) fn entry_of(id: &str, fields: Vec<(Vec<u8>, Vec<u8>)>) -> Option<Entry> {
    let (seq, kind) = id.split_once('-')?;
    let seq: u64 = seq.parse().ok()?;
    let mut data = None;
    let mut close = false;
    for (k, v) in fields {
        match k.as_slice() {
            b"d" => data = Some(Bytes::from(v)),
            b"c" => close = true,
            _ => {}
        }
    }
    match (kind, data) {
        ("0", Some(d)) => Some((seq, Some(d), close)),
        ("1", None) if close => Some((seq, None, true)),
        _ => None,
    }
}

/// Whether `topic` holds a Durable Stream (followed by the stream reader).
pub(super) fn is_stream(topic: &str) -> bool {
    path::is_stream_topic(topic)
}

/// A followed stream as one `XREAD` reads it.
pub(super) struct Reading {
    topic: Box<str>,
    generation: u64,
    pub(super) key: String,
    pub(super) cursor: String,
}

/// The streams to read, with their cursors.
pub(super) fn reading(streams: &Streams) -> Vec<Reading> {
    streams
        .follow()
        .iter()
        .map(|(topic, f)| Reading {
            topic: topic.clone(),
            generation: f.generation,
            key: messages_key(topic, f.generation),
            cursor: f.cursor.clone(),
        })
        .collect()
}

/// Hands the entries an `XREAD` got for followed streams to the hub.
pub(super) fn ingest(streams: &Streams, reading: &[Reading], reply: &StreamReadReply) {
    let Some(sink) = streams.sink() else {
        return;
    };
    for stream in &reply.keys {
        let Some(r) = reading.iter().find(|r| r.key == stream.key) else {
            continue;
        };
        let mut entries = Vec::with_capacity(stream.ids.len());
        for e in &stream.ids {
            let fields = e
                .map
                .iter()
                .filter_map(|(k, v)| Some((k.clone().into_bytes(), bytes_of(v)?)))
                .collect();
            entries.extend(entry_of(&e.id, fields));
        }
        if let Some(last) = stream.ids.last()
            && let Some(f) = streams.follow().get_mut(&r.topic)
            && f.generation == r.generation
        {
            f.cursor = last.id.clone();
        }
        if !entries.is_empty() {
            sink.stream_entries(&r.topic, r.generation, entries);
        }
    }
}

/// Checks with one round trip that every followed stream is still the one
/// this node loaded: tells the hub of those deleted or created again (and
/// stops following them), hidden, or used on other nodes.
pub(super) async fn verify(
    streams: &Streams,
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<(), StoreError> {
    let followed: Vec<(Box<str>, u64)> = streams
        .follow()
        .iter()
        .map(|(t, f)| (t.clone(), f.generation))
        .collect();
    if followed.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (topic, _) in &followed {
        pipe.cmd("HMGET")
            .arg(hash_key(topic))
            .arg("g")
            .arg("h")
            .arg("t")
            .arg("s");
    }
    type State = (Option<u64>, Option<u64>, Option<u64>, Option<u64>);
    let states: Vec<State> = pipe.query_async(conn).await?;
    let Some(sink) = streams.sink() else {
        return Ok(());
    };
    for ((topic, generation), (g, hidden, touched, first)) in followed.into_iter().zip(states) {
        if g != Some(generation) {
            {
                let mut follow = streams.follow();
                if follow
                    .get(&topic)
                    .is_some_and(|f| f.generation == generation)
                {
                    follow.remove(&topic);
                }
            }
            {
                // Its worker's copy is stale too: the map stays bounded.
                let mut slots = streams.slots();
                if slots.get(&topic).is_some_and(|s| !s.busy) {
                    slots.remove(&topic);
                }
            }
            sink.stream_changed(&topic, generation, StreamChange::Gone);
            continue;
        }
        if hidden == Some(1) {
            sink.stream_changed(&topic, generation, StreamChange::Hidden);
        }
        if let Some(t) = touched {
            sink.stream_changed(&topic, generation, StreamChange::Touched(t));
        }
        if let Some(first) = first {
            sink.stream_changed(&topic, generation, StreamChange::Trimmed(first));
        }
    }
    Ok(())
}

/// A Durable Stream's messages in Redis, read when older than the ring.
#[derive(Clone)]
pub(crate) struct History {
    streams: Streams,
    topic: Arc<str>,
    first: Arc<AtomicU64>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl History {
    pub(super) fn new(streams: Streams, topic: &str) -> Self {
        History {
            streams,
            topic: topic.into(),
            first: Arc::new(AtomicU64::new(1)),
        }
    }

    pub(crate) fn first(&self) -> u64 {
        self.first.load(Ordering::Acquire)
    }

    pub(crate) fn set_first(&self, first: u64) {
        self.first.store(first, Ordering::Release);
    }

    pub(crate) async fn read_raw(
        &self,
        generation: u64,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        self.streams
            .read_messages(&self.topic, generation, from, max, max_bytes)
            .await
    }
}
