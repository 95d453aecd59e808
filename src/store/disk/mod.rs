//! Topics on disk (`--data-dir`): [`DiskStore`], whose documentation says
//! how they are kept, synced, trimmed and checked for damage.

mod layout;
mod marks;
mod retention;
mod state;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak, mpsc};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use self::layout::Meta;
use self::marks::{Marked, Marks};
use self::state::{Engine, Entry, State, kind_of, now_ms};
use self::writer::Job;

pub use self::retention::Retention;
use super::{Appended, ErrorKind, Sink, StoreError, StreamAnswer, StreamDeliver, StreamOp};
use crate::core::durable::{StreamMeta, record};
use crate::core::event::Encoded;
use crate::core::id::{Epoch, EventId};
use crate::core::idempotency::{Fingerprint, IdempotencyKey, Keyed};
use crate::core::ring::Read;

/// Topics on disk (`--data-dir`): history that survives restarts and is
/// deeper than memory, in the embedded LSM engine [fjall].
///
/// # What a `201` promises
///
/// An event is appended by one writer thread that commits groups of appends
/// with one sync to disk (group commit: concurrent publishers share a sync,
/// so durability costs latency, not throughput). Only after the sync does
/// the event get its place in the topic's ring, reach subscribers, and its
/// publisher get an answer. So every acknowledged or delivered event
/// survives a crash (`kill -9`, power loss on a disk that honours syncs),
/// and an id never names two different events: an append that fails (a
/// full disk) publishes nothing, and its sequence numbers are given again.
///
/// # Memory
///
/// The ring of each topic holds only the newest events of this run (the
/// hub's `buffer`); everything else is read from disk, in chunks of at most
/// the hub's frame size, when a client resumes from further back. Startup
/// reads only each topic's metadata (its epoch, first and next sequence
/// numbers), never its events.
///
/// # Idempotency keys
///
/// A publish under an idempotency key is looked up by the writer, on
/// demand (startup loads no keys): a key of the topic's current history
/// that is already there answers with its record and writes nothing; a
/// free key is written with the events, in the same batch, so a restart
/// (or a crash) keeps both or neither. A second publish with a key that
/// an earlier publish of the same round is writing waits for the next
/// round, when that one has committed or failed. Retention forgets a key
/// with the last event it published, in the same commit.
///
/// # Retention
///
/// Per topic by count, bytes and age, and for all topics together by bytes
/// (the largest topics give up their oldest events first, as in memory);
/// see [`Retention`]. The writer trims a bounded number of events per
/// commit, so trimming never pauses publishing.
///
/// # Bad states
///
/// - The directory is locked by another process: [`DiskStore::open`] fails
///   with a message naming it.
/// - A damaged journal or table that the engine cannot recover: `open`
///   fails with the engine's error and the directory's name (startup
///   stops; the operator moves the directory aside). A torn last write (a
///   crash in the middle of a commit) is not damage: it was never
///   acknowledged, and the engine drops it.
/// - Damage found while reading a topic's events (a checksum that does not
///   match, or events the topic's record says are there and the engine
///   does not find): that topic's history can no longer be served, so the
///   topic gets a new epoch, once: clients get one `resync` (`epoch`),
///   never wrong data under an id they hold.
/// - A history the engine's journal recovery cut short without an error
///   (damage in the middle of the journal looks to it like a torn last
///   write): the topic's synced mark (see `marks`) is ahead of it, so at
///   startup the topic gets a new epoch, and no id names two events.
/// - A full disk: appends fail (`507` over HTTP), streams go on, nothing
///   acknowledged is lost, and appends work again once there is space.
///
/// [fjall]: https://docs.rs/fjall
///
/// Cheap to clone. Open it once per process and give it to
/// [`HubBuilder::storage`](crate::hub::HubBuilder::storage). Dropping the last
/// handle (with the hub that holds it) finishes the writes in flight,
/// flushes the engine, and releases the directory.
///
/// # Examples
///
/// ```no_run
/// use ssehub::store::{DiskStore, Retention};
/// use ssehub::{Event, Hub};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = DiskStore::open("/var/lib/ssehub", Retention::default())?;
/// let hub = Hub::builder().storage(store).build();
/// // Answered once the event is on disk.
/// let id = hub.publish("news", Event::new("hello")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DiskStore {
    handle: Arc<Handle>,
}

/// The writer's side: dropped with the last [`DiskStore`], which ends the
/// writer thread.
struct Handle {
    state: Arc<State>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How long a reader waits for the engine the writer is reopening.
const ENGINE_WAIT: Duration = Duration::from_secs(5);

/// How long a reader that found damage waits for the topic's new epoch.
const ROTATE_WAIT: Duration = Duration::from_secs(5);

/// The lock file, written with the holder's process id.
const LOCK_FILE: &str = "ssehub.lock";

impl DiskStore {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    ///
    /// The directory cannot be created or read, another process holds it,
    /// or the engine finds damage it cannot recover. The message names the
    /// directory.
    pub fn open(dir: impl AsRef<Path>, retention: Retention) -> Result<DiskStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let named = |what: &str| format!("{what} {}", dir.display());
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::with_source(
                ErrorKind::Unavailable,
                named("cannot create data directory"),
                e,
            )
        })?;
        let lock = lock(&dir)?;
        let engine = Engine::open(&dir).map_err(|e| {
            StoreError::with_source(
                kind_of(&e),
                named("cannot open the store in data directory"),
                e,
            )
        })?;
        let mut index = HashMap::new();
        let mut total = 0;
        for kv in engine.meta.iter() {
            let (key, value) = kv.into_inner().map_err(|e| {
                StoreError::with_source(
                    kind_of(&e),
                    named("cannot read topics in data directory"),
                    e,
                )
            })?;
            let (Ok(name), Some(meta)) = (std::str::from_utf8(&key), Meta::decode(&value)) else {
                return Err(StoreError::new(
                    ErrorKind::Corrupt,
                    named("a topic record that ssehub did not write in data directory"),
                ));
            };
            total += meta.bytes;
            index.insert(
                name.into(),
                Entry {
                    meta,
                    first: Arc::new(AtomicU64::new(meta.first)),
                },
            );
        }
        let mut marks = Marks::open(&dir).map_err(|e| {
            StoreError::with_source(
                ErrorKind::Unavailable,
                named("cannot read the marks in data directory"),
                e,
            )
        })?;
        total -= renew_lost(&engine, &mut index, marks.get()).map_err(|e| {
            StoreError::with_source(
                kind_of(&e),
                named("cannot give a damaged topic a new epoch in data directory"),
                e,
            )
        })?;
        let streams = load_streams(&engine, &index).map_err(|e| {
            StoreError::with_source(
                e.kind(),
                named("cannot read the streams in data directory"),
                e,
            )
        })?;
        let now = index
            .iter()
            .map(|(t, e)| (t.clone(), (e.meta.epoch, e.meta.next)))
            .collect();
        marks.reset(now).map_err(|e| {
            StoreError::with_source(
                ErrorKind::Unavailable,
                named("cannot write the marks in data directory"),
                e,
            )
        })?;
        let state = Arc::new(State {
            dir,
            retention,
            engine: RwLock::new(Some(engine)),
            index: Mutex::new(index),
            total_bytes: AtomicU64::new(total),
            syncs: AtomicU64::new(0),
            streams: Mutex::new(streams),
            sink: Mutex::new(None),
            marks: Mutex::new(marks),
            _lock: lock,
        });
        let (tx, rx) = mpsc::channel();
        let writer = {
            let state = state.clone();
            std::thread::Builder::new()
                .name("ssehub-disk".into())
                .spawn(move || writer::run(state, rx))
                .map_err(|e| {
                    StoreError::with_source(ErrorKind::Unavailable, "cannot start the writer", e)
                })?
        };
        Ok(DiskStore {
            handle: Arc::new(Handle {
                state,
                jobs: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(writer)),
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.handle.state.dir
    }

    /// What the store keeps.
    pub fn retention(&self) -> &Retention {
        &self.handle.state.retention
    }

    /// Bytes of the events of all topics (the directory takes more).
    pub fn retained_bytes(&self) -> u64 {
        self.handle.state.total_bytes.load(Ordering::Relaxed)
    }

    /// How many syncs have made appends durable since the store was
    /// opened. Each sync commits every append queued when it began, of
    /// all topics (group commit), so under concurrent publishing this
    /// grows much slower than the number of appends.
    pub fn syncs(&self) -> u64 {
        self.handle.state.syncs.load(Ordering::Relaxed)
    }

    pub(crate) fn attach(&self, sink: Arc<dyn Sink>) {
        *self
            .handle
            .state
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    /// The topics on disk.
    pub(crate) fn topics(&self) -> Vec<Box<str>> {
        self.handle.state.index().keys().cloned().collect()
    }

    /// Where `topic`'s history stands, creating an empty one (with a new
    /// epoch) for a topic the store does not have.
    pub(crate) fn open_topic(&self, topic: &str) -> (Epoch, u64, History) {
        let state = &self.handle.state;
        let mut index = state.index();
        let entry = index.entry(topic.into()).or_insert_with(|| {
            let meta = Meta::new(Epoch::generate());
            // Written with the next commit, so that subscribers of a topic
            // nothing was published to yet keep their epoch over a restart.
            self.handle.send(Job::Create {
                topic: topic.into(),
            });
            Entry {
                meta,
                first: Arc::new(AtomicU64::new(meta.first)),
            }
        });
        let history = History {
            topic: topic.into(),
            first: entry.first.clone(),
            state: state.clone(),
            handle: Arc::downgrade(&self.handle),
        };
        (entry.meta.epoch, entry.meta.next, history)
    }

    /// The Durable Streams on disk, each with its topic (opened by the hub
    /// like every stored topic).
    pub(crate) fn streams(&self) -> Vec<(Box<str>, StreamMeta)> {
        let streams = self.handle.state.streams();
        streams
            .iter()
            .map(|(t, m)| (t.clone(), m.clone()))
            .collect()
    }

    /// Sends `op` for the stream of `topic` (see `store::streams`) to the
    /// writer, which decides it, writes it, syncs, delivers, then answers
    /// on the receiver; writes are done in the order sent.
    pub(crate) fn send_stream(
        &self,
        topic: &str,
        op: StreamOp,
        deliver: StreamDeliver,
    ) -> Result<StreamAnswer, StoreError> {
        let (reply, answer) = oneshot::channel();
        let published_ms = now_ms();
        // Built here, on the caller's task, as for appends.
        let values = match &op {
            StreamOp::Create { frames, .. } => frames
                .iter()
                .map(|f| fjall::Slice::from(layout::event_value(published_ms, f)))
                .collect(),
            StreamOp::Append { frame: Some(f), .. } => {
                vec![fjall::Slice::from(layout::event_value(published_ms, f))]
            }
            _ => Vec::new(),
        };
        let job = Job::Stream {
            topic: topic.into(),
            op,
            values,
            published_ms,
            deliver,
            reply,
        };
        if !self.handle.send(job) {
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                "the store is closed",
            ));
        }
        Ok(answer)
    }

    /// Drops `topic` and its history (the hub retired it).
    pub(crate) fn forget(&self, topic: &str) {
        let removed = self.handle.state.index().remove(topic);
        if let Some(entry) = removed {
            self.handle.send(Job::Retire {
                topic: topic.into(),
                meta: entry.meta,
            });
        }
    }

    /// Appends encoded events to `topic`: they get the next sequence
    /// numbers, are synced to disk, then handed to `deliver` (in the order
    /// of appends, so the ring gets them in order) before the answer.
    /// Under an idempotency key, only if the key is free (see the module
    /// documentation).
    pub(crate) async fn append(
        &self,
        topic: &str,
        events: Vec<Encoded>,
        deliver: super::Deliver,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> Result<Keyed<Appended>, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let published_ms = now_ms();
        // Built here, on the publisher's task, not by the writer: the
        // writer's work between two syncs is what every publisher of the
        // next round waits for.
        let values = events
            .iter()
            .map(|enc| fjall::Slice::from(layout::event_value(published_ms, enc.lines())))
            .collect();
        let job = Job::Append {
            topic: topic.into(),
            events,
            values,
            published_ms,
            deliver,
            key: key.map(|(k, fp)| (k.clone(), fp)),
            reply,
        };
        if !self.handle.send(job) {
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                "the store is closed",
            ));
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::new(
                ErrorKind::Unavailable,
                "the writer stopped",
            ))
        })
    }
}

impl Handle {
    /// Queues a job for the writer; `false` if it has stopped.
    fn send(&self, job: Job) -> bool {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|tx| tx.send(job).is_ok())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has done what is queued.
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStore")
            .field("dir", &self.handle.state.dir)
            .field("retention", &self.handle.state.retention)
            .finish_non_exhaustive()
    }
}

/// One topic's history on disk, as its readers see it.
#[derive(Clone)]
pub(crate) struct History {
    topic: Box<str>,
    first: Arc<AtomicU64>,
    state: Arc<State>,
    handle: Weak<Handle>,
}

impl History {
    /// The events idempotency key `key` published in history `epoch`
    /// (`first`, `count`), if the store still has it; on a blocking thread.
    #[cfg(feature = "mercure")]
    pub(crate) async fn find_key(&self, epoch: Epoch, key: &str) -> Option<(u64, u64)> {
        let (this, key) = (self.clone(), key.to_owned());
        tokio::task::spawn_blocking(move || {
            let engine = this.engine()?;
            let value = engine
                .keys
                .get(layout::key_record_key(&this.topic, epoch, &key))
                .ok()??;
            layout::parse_key_record(&value).map(|r| (r.first, r.count))
        })
        .await
        .ok()?
    }

    /// The oldest event the store still has.
    pub(crate) fn first(&self) -> u64 {
        self.first.load(Ordering::Acquire)
    }

    /// Reads events `from` on of history `epoch`, into one frame of at
    /// most `max_events` events and (unless the first alone is larger)
    /// `max_bytes`, on a blocking thread.
    pub(crate) fn read(
        &self,
        epoch: Epoch,
        from: u64,
        max_events: u64,
        max_bytes: usize,
    ) -> tokio::task::JoinHandle<Read> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            match this.read_now(epoch, from, max_events, max_bytes) {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(topic = &*this.topic, error = %e, source = ?std::error::Error::source(&e), "cannot read history: new epoch");
                    let Some(handle) = this.handle.upgrade() else {
                        return Read::Empty;
                    };
                    let (done, committed) = mpsc::channel();
                    handle.send(Job::Rotate {
                        topic: this.topic.clone(),
                        epoch,
                        done,
                    });
                    drop(handle);
                    // Once the new epoch is committed (and in the ring), the
                    // stream resyncs on it; reading the damaged history again
                    // meanwhile would only fail again.
                    match committed.recv_timeout(ROTATE_WAIT) {
                        Err(mpsc::RecvTimeoutError::Disconnected) => Read::Reset,
                        _ => Read::Empty,
                    }
                }
            }
        })
    }

    /// Reads the raw messages `from` on of a Durable Stream's history
    /// `epoch` (no `id:` lines): at most `max` of them and (unless the
    /// first alone is larger) `max_bytes`, on a blocking thread. Fewer
    /// (none) if retention or a delete took them meanwhile.
    pub(crate) fn read_raw(
        &self,
        epoch: Epoch,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> tokio::task::JoinHandle<Result<Vec<Bytes>, StoreError>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let Some(engine) = this.engine() else {
                return Err(StoreError::new(
                    ErrorKind::Unavailable,
                    "the store is recovering from a failed write",
                ));
            };
            let start = layout::event_key(&this.topic, epoch, from);
            let end = layout::event_key(&this.topic, epoch, u64::MAX);
            let mut frames = Vec::new();
            let mut bytes = 0;
            for (expect, kv) in (from..).zip(engine.events.range(start..=end)) {
                let (key, value) = kv
                    .into_inner()
                    .map_err(|e| StoreError::with_source(kind_of(&e), "reading messages", e))?;
                if layout::key_seq(&key) != Some(expect) || frames.len() >= max {
                    break;
                }
                let Some((_, message)) = layout::parse_event_value(&value) else {
                    return Err(StoreError::new(ErrorKind::Corrupt, "a message record"));
                };
                if !frames.is_empty() && bytes + message.len() > max_bytes {
                    break;
                }
                bytes += message.len();
                frames.push(Bytes::copy_from_slice(message));
            }
            Ok(frames)
        })
    }

    /// The engine; while the writer reopens it after a failed write, waits
    /// for it (a bounded time, on the blocking thread of the read): finding
    /// nothing would tell the stream that its events are gone.
    fn engine(&self) -> Option<Engine> {
        let deadline = std::time::Instant::now() + ENGINE_WAIT;
        loop {
            let engine = self.state.engine();
            if engine.is_some()
                || self.handle.strong_count() == 0
                || std::time::Instant::now() >= deadline
            {
                return engine;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn read_now(
        &self,
        epoch: Epoch,
        from: u64,
        max_events: u64,
        max_bytes: usize,
    ) -> Result<Read, StoreError> {
        let first = self.first();
        if from < first {
            return Ok(Read::Lagged { oldest: first });
        }
        let Some(engine) = self.engine() else {
            return Ok(Read::Empty);
        };
        let start = layout::event_key(&self.topic, epoch, from);
        let end = layout::event_key(&self.topic, epoch, u64::MAX);
        let mut frame = BytesMut::new();
        let mut count = 0u64;
        for (expect, kv) in (from..).zip(engine.events.range(start..=end)) {
            let (key, value) = kv
                .into_inner()
                .map_err(|e| StoreError::with_source(kind_of(&e), "reading events", e))?;
            let seq = layout::key_seq(&key).unwrap_or(0);
            let Some((_, lines)) = layout::parse_event_value(&value) else {
                return Err(StoreError::new(ErrorKind::Corrupt, "an event record"));
            };
            if seq != expect {
                if count == 0 {
                    // Trimmed while we looked, or lost.
                    return self.missing(epoch, from);
                }
                break;
            }
            let id_line = 4 + epoch.as_str().len() + 1 + 20 + 2;
            if count > 0 && frame.len() + lines.len() + id_line > max_bytes {
                break;
            }
            frame.extend_from_slice(lines);
            frame.extend_from_slice(b"id: ");
            EventId::new(epoch, seq).write_to(&mut frame);
            frame.extend_from_slice(b"\n\n");
            count += 1;
            if count >= max_events.max(1) {
                break;
            }
        }
        if count == 0 {
            return self.missing(epoch, from);
        }
        Ok(Read::Ready {
            frame: frame.freeze(),
            count,
        })
    }

    /// What a read that found no event `from` of history `epoch` means:
    /// trimmed since it looked at `first` (`Lagged`), not written yet
    /// (`Empty`), or damage: the store's records say the event is there.
    ///
    /// The index tells which: the writer moves a topic's `first` there
    /// (under its lock) before it commits the deletions, and its `next`
    /// before it commits the events, so a read that no longer finds an
    /// event that trimming removed sees the index's `first` past it. A
    /// reader only asks for events older than the ring, which are all
    /// committed: one missing below the index's `next` is lost, and
    /// answering `Lagged` for it would send the stream back to the oldest
    /// event, to find the same hole again, forever.
    fn missing(&self, epoch: Epoch, from: u64) -> Result<Read, StoreError> {
        let index = self.state.index();
        let Some(entry) = index.get(&*self.topic) else {
            // Retired meanwhile.
            return Ok(Read::Empty);
        };
        let meta = entry.meta;
        if meta.epoch == epoch && from < meta.first {
            // Trimmed: the deletion is committed (the event is gone), but
            // the writer may not have published the new `first` to readers
            // yet. Published here, under the index's lock, so that the
            // stream's `resync` counts from it: with the old `first` it
            // would say nothing was missed and send the stream back to
            // events that are gone.
            entry.first.fetch_max(meta.first, Ordering::AcqRel);
            return Ok(Read::Lagged { oldest: meta.first });
        }
        drop(index);
        if meta.epoch != epoch {
            // A new history meanwhile: the ring has it, or will.
            return Ok(Read::Empty);
        }
        if from >= meta.next {
            return Ok(Read::Empty);
        }
        Err(StoreError::new(
            ErrorKind::Corrupt,
            format!("events {from}..{} of the history are missing", meta.next),
        ))
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("topic", &self.topic)
            .field("first", &self.first())
            .finish_non_exhaustive()
    }
}

/// Gives a new epoch to every topic whose history, as the engine
/// recovered it, ends before its mark or is of another epoch (unless it
/// stands exactly where the mark's round started: a round a crash cut
/// short, never answered; see `marks`): the engine lost acknowledged
/// events (a journal damaged in its middle, which its recovery takes for a
/// write torn by a crash). Continuing the recovered history would give
/// their sequence numbers to other events. A Durable Stream keeps what
/// was recovered and gets a new generation instead: its old offsets are
/// gone (`410`), none is given twice. Returns the bytes of the histories
/// dropped.
fn renew_lost(
    engine: &Engine,
    index: &mut HashMap<Box<str>, Entry>,
    marks: &HashMap<Box<str>, Marked>,
) -> Result<u64, fjall::Error> {
    let mut batch = engine
        .db
        .batch()
        .durability(Some(fjall::PersistMode::SyncAll));
    let mut dropped = 0;
    for (topic, entry) in index.iter_mut() {
        let Some(mark) = marks.get(topic) else {
            continue;
        };
        let old = entry.meta;
        if mark.kept_by((old.epoch, old.next)) {
            continue;
        }
        let (epoch, next) = mark.at;
        if let Some(record) = engine.streams.get(topic.as_bytes())?
            && let Some(mut stream) = record::decode_stream(&record, now_ms())
        {
            tracing::error!(
                topic = &**topic,
                recovered = old.next - 1,
                acknowledged = next - 1,
                "the store lost acknowledged messages of this stream (a damaged journal?): new generation"
            );
            stream.generations.own = later_generation(stream.generations.own);
            batch.insert(
                &engine.streams,
                topic.as_bytes(),
                record::encode_stream(&stream),
            );
            continue;
        }
        tracing::error!(
            topic = &**topic,
            epoch = %old.epoch,
            recovered = old.next - 1,
            acknowledged = next - 1,
            acknowledged_epoch = %epoch,
            "the store lost acknowledged events of this topic (a damaged journal?): new epoch"
        );
        for seq in old.first..old.next {
            batch.remove(&engine.events, layout::event_key(topic, old.epoch, seq));
        }
        writer::forget_keys(engine, &mut batch, topic, old.epoch, old.first, u64::MAX);
        entry.meta = Meta::new(Epoch::generate());
        entry.first.store(entry.meta.first, Ordering::Release);
        batch.insert(&engine.meta, topic.as_bytes(), entry.meta.encode());
        dropped += old.bytes;
    }
    if !batch.is_empty() {
        batch.commit()?;
    }
    Ok(dropped)
}

/// A stream generation after `old`: µs since the Unix epoch, as the hub
/// makes them (it starts above every loaded one).
fn later_generation(old: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    now.max(old + 1)
}

/// Reads the Durable Streams' records and their producers'.
fn load_streams(
    engine: &Engine,
    index: &HashMap<Box<str>, Entry>,
) -> Result<HashMap<Box<str>, StreamMeta>, StoreError> {
    let corrupt = |what: &str| StoreError::new(ErrorKind::Corrupt, what.to_owned());
    let read = |e: fjall::Error| StoreError::with_source(kind_of(&e), "reading a record", e);
    let now = now_ms();
    let mut streams = HashMap::new();
    for kv in engine.streams.iter() {
        let (key, value) = kv.into_inner().map_err(read)?;
        let topic = std::str::from_utf8(&key)
            .map_err(|_| corrupt("a stream record that ssehub did not write"))?;
        let meta = record::decode_stream(&value, now)
            .ok_or_else(|| corrupt("a stream record that ssehub did not write"))?;
        if !index.contains_key(topic) {
            tracing::warn!(topic, "a stream record without its topic: ignored");
            continue;
        }
        streams.insert(Box::<str>::from(topic), meta);
    }
    for kv in engine.producers.iter() {
        let (key, value) = kv.into_inner().map_err(read)?;
        let bad = || corrupt("a producer record that ssehub did not write");
        let at = key.iter().position(|&b| b == 0).ok_or_else(bad)?;
        let (topic, id) = (
            std::str::from_utf8(&key[..at]),
            std::str::from_utf8(&key[at + 1..]),
        );
        let (Ok(topic), Ok(id)) = (topic, id) else {
            return Err(bad());
        };
        let producer = record::decode_producer(&value).ok_or_else(bad)?;
        if let Some(meta) = streams.get_mut(topic) {
            meta.producers.insert(id.into(), producer);
        }
    }
    Ok(streams)
}

/// Takes the directory's lock file, or says who holds it.
fn lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            StoreError::with_source(
                ErrorKind::Unavailable,
                format!("cannot open {}", path.display()),
                e,
            )
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                format!(
                    "data directory {} is in use by another ssehub{who}",
                    dir.display()
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(StoreError::with_source(
                ErrorKind::Unavailable,
                format!("cannot lock {}", path.display()),
                e,
            ));
        }
    }
    // Best effort: the pid helps the message above; the lock is what counts.
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::durable::meta::{Config, Expiry, Write};
    use crate::core::durable::offset::Generations;
    use crate::core::event::encode_parts;
    use crate::store::StreamDone;

    fn open(dir: &Path) -> DiskStore {
        DiskStore::open(dir, Retention::default()).unwrap()
    }

    async fn publish(store: &DiskStore, topic: &str, n: usize) {
        let events = (0..n).map(|i| encode_parts(b"", format!("e{i}").as_bytes()));
        store
            .append(topic, events.collect(), Box::new(|_, _, _| {}), None)
            .await
            .unwrap();
    }

    /// Where the index stands for `topic` after opening `dir`.
    fn position(dir: &Path, topic: &str) -> Meta {
        open(dir).handle.state.index()[topic].meta
    }

    /// Records `mark` for `topic` as a round of the writer would have.
    fn mark(dir: &Path, topic: &str, mark: Marked) {
        Marks::open(dir)
            .unwrap()
            .record([(topic, Some(mark))])
            .unwrap();
    }

    /// A crash between the marks' sync and the journal's leaves the mark
    /// one round ahead: nothing of that round was answered, so the topic
    /// keeps its epoch and its ids go on. Further behind, it lost answered
    /// events: a new epoch.
    #[tokio::test]
    async fn a_round_cut_short_by_a_crash_keeps_the_epoch() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        publish(&store, "t", 3).await;
        drop(store);
        let before = position(tmp.path(), "t");
        assert_eq!(before.next, 4);
        mark(
            tmp.path(),
            "t",
            Marked {
                at: (before.epoch, 6),
                before: Some((before.epoch, 4)),
            },
        );
        let after = position(tmp.path(), "t");
        assert_eq!((after.epoch, after.next), (before.epoch, 4));
        // Two rounds ahead (the journal lost an answered one): new epoch.
        mark(
            tmp.path(),
            "t",
            Marked {
                at: (before.epoch, 8),
                before: Some((before.epoch, 6)),
            },
        );
        let renewed = position(tmp.path(), "t");
        assert_ne!(renewed.epoch, before.epoch);
        assert_eq!(renewed.next, 1);
    }

    /// A Durable Stream whose journal lost answered messages keeps what
    /// was recovered, under a new generation (its old offsets are gone,
    /// none is given twice); it is not deleted.
    #[tokio::test]
    async fn a_stream_that_lost_messages_gets_a_new_generation() {
        let tmp = tempfile::tempdir().unwrap();
        let store = open(tmp.path());
        let config = Config {
            content_type: "text/plain".into(),
            expiry: Expiry::Never,
            fork: None,
        };
        let meta = StreamMeta::new(config, Generations::new(1000), false, 0);
        let created = store
            .send_stream(
                "ds:s",
                StreamOp::Create {
                    meta: Box::new(meta),
                    first: 1,
                    frames: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")],
                },
                Box::new(|_| {}),
            )
            .unwrap()
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(created, StreamDone::Created));
        let write = Write {
            content_type: Some("text/plain"),
            has_body: true,
            ..Write::default()
        };
        let op = StreamOp::Append {
            write: write.to_owned(),
            frame: Some(Bytes::from_static(b"c")),
            now_ms: 1,
        };
        let appended = store.send_stream("ds:s", op, Box::new(|_| {})).unwrap();
        assert!(matches!(
            appended.await.unwrap().unwrap(),
            StreamDone::Appended { seq: 3, .. }
        ));
        drop(store);
        let at = position(tmp.path(), "ds:s");
        assert_eq!(at.next, 4);
        mark(
            tmp.path(),
            "ds:s",
            Marked {
                at: (at.epoch, 9),
                before: Some((at.epoch, 7)),
            },
        );
        let store = open(tmp.path());
        let streams = store.streams();
        let (_, stream) = streams.iter().find(|(t, _)| &**t == "ds:s").unwrap();
        assert!(stream.generations.own > 1000, "a new generation");
        let meta = store.handle.state.index()["ds:s"].meta;
        assert_eq!((meta.epoch, meta.first, meta.next), (at.epoch, 1, 4));
        let history = store.open_topic("ds:s").2;
        let frames = history
            .read_raw(at.epoch, 1, 10, usize::MAX)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frames, [&b"a"[..], b"b", b"c"]);
    }
}
