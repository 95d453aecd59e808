//! The disk store's writer: one thread that commits groups of appends with
//! one sync, then delivers them in order.
//!
//! Each round takes every job queued since the last one (up to a bound),
//! gives appended events their sequence numbers from the index, writes the
//! events and the metadata they change, trims what retention no longer
//! allows (a bounded number of events per round, so no commit is long), and
//! commits with a sync. Only then does it hand each batch's frames to its
//! `Deliver` (the hub puts them in the topic's ring) and answer its
//! publisher. If the commit fails, the index is rolled back: no sequence
//! number is used, nothing is delivered, and every publisher of the round
//! gets the error. A failed write leaves the engine unusable (it refuses
//! further writes), so the writer reopens it before the next round and
//! removes what the failed commit may have left on disk.
//!
//! An append under an idempotency key is looked up in the key records of
//! the topic's history first: a known key answers at once with what it was
//! used for (its events are committed) and writes nothing; a free key is
//! written with the events. A second append with the key of an append of
//! the same round waits for the next round (`deferred`): by then the first
//! has committed (the second is a replay) or failed (the key is free).
//!
//! Over 700 lines, as one concern: a round (gather, number, write, trim,
//! commit, answer or roll back) reads best whole; retention's trimming and
//! the engine's reopening are the parts that could move out next.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, mpsc};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::layout::{self, Meta};
use super::marks::Marked;
use super::state::{Engine, Entry, State, kind_of, now_ms};
use crate::core::durable::meta::Verdict;
use crate::core::durable::{StreamMeta, path, record};
use crate::core::event::Encoded;
use crate::core::id::{Epoch, EventId};
use crate::core::idempotency::{Fingerprint, IdempotencyKey, KeyRecord, Keyed};
use crate::store::{Appended, ErrorKind, StoreError, StreamDeliver, StreamDone, StreamOp};

use crate::store::Deliver;

pub(super) enum Job {
    /// Events to append to a topic.
    Append {
        topic: Box<str>,
        events: Vec<Encoded>,
        /// Each event's value on disk, built by the publisher's task (see
        /// `DiskStore::append`): the writer, whose work every publisher of
        /// the next round waits for, only adds keys.
        values: Vec<fjall::Slice>,
        published_ms: u64,
        deliver: Deliver,
        /// Append only if this idempotency key is free.
        key: Option<(IdempotencyKey, Fingerprint)>,
        reply: oneshot::Sender<Result<Keyed<Appended>, StoreError>>,
    },
    /// A topic was created: write its metadata (its epoch).
    Create { topic: Box<str> },
    /// A topic was retired: delete its history `meta`.
    Retire { topic: Box<str>, meta: Meta },
    /// A write to a Durable Stream (see `store::streams`); `values` are
    /// its messages' values on disk, built by the caller's task.
    Stream {
        topic: Box<str>,
        op: StreamOp,
        values: Vec<fjall::Slice>,
        published_ms: u64,
        deliver: StreamDeliver,
        reply: oneshot::Sender<Result<StreamDone, StoreError>>,
    },
    /// A topic's history `epoch` cannot be read: start a new one. `done`
    /// is dropped once a round has committed this job (the hub has the
    /// new epoch by then); a round that fails keeps it for the next one.
    Rotate {
        topic: Box<str>,
        epoch: Epoch,
        done: mpsc::Sender<()>,
    },
}

/// Most jobs in one round.
const MAX_JOBS: usize = 1024;

/// Most a round waits for the publishers the last round answered (at
/// most as long as the last sync took, and never this long).
const MAX_GATHER: Duration = Duration::from_millis(2);

/// How a round's commit reaches the disk.
const SYNC: fjall::PersistMode = fjall::PersistMode::SyncData;

/// Most events retention trims per round.
const TRIM_PER_ROUND: usize = 2048;

/// How often retention is checked while nothing is published (age).
const IDLE_TICK: Duration = Duration::from_secs(1);

/// How long closing waits for the engine to write its tables.
const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(3);

/// How long the writer waits between attempts to reopen the engine.
const REOPEN_BACKOFF: Duration = Duration::from_millis(200);

pub(super) fn run(state: Arc<State>, rx: mpsc::Receiver<Job>) {
    // Every topic is checked against retention once at startup: settings
    // lowered since the last run apply to idle topics too.
    let backlog = state.index().keys().cloned().collect();
    let marks = MarksThread::start(state.clone());
    let mut writer = Writer {
        state,
        marks,
        retry: Vec::new(),
        deferred: Vec::new(),
        reopen: false,
        oldest_ms: HashMap::new(),
        backlog,
        last_age_scan: std::time::Instant::now(),
        queued: Vec::new(),
        answered: 0,
        last_sync: Duration::ZERO,
    };
    loop {
        // Deferred appends go first, in their order, and do not wait; then
        // what was queued while the last round synced.
        let mut jobs = std::mem::take(&mut writer.deferred);
        jobs.append(&mut writer.queued);
        let wait = if !jobs.is_empty() || !writer.backlog.is_empty() {
            Duration::ZERO
        } else if writer.retry.is_empty() {
            IDLE_TICK
        } else {
            REOPEN_BACKOFF
        };
        jobs.append(&mut writer.retry);
        // The publishers the last round answered are about to publish
        // again (a closed loop: answer, next request): wait for them too,
        // a bounded time, instead of syncing what is queued alone and
        // leaving them to the round after (publishers would then split
        // into two groups that take turns, each waiting two syncs).
        let gather = (jobs.len() + writer.answered).min(MAX_JOBS);
        match rx.recv_timeout(wait) {
            Ok(job) => jobs.push(job),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if jobs.is_empty() {
                    break;
                }
            }
        }
        while jobs.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        if !jobs.is_empty() && jobs.len() < gather {
            let deadline = std::time::Instant::now() + writer.last_sync.min(MAX_GATHER);
            while jobs.len() < gather {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match rx.recv_timeout(left) {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        writer.round(jobs, &rx);
    }
    writer.close();
}

/// Writes and syncs a round's marks on a thread of its own while the
/// round's journal syncs: the two files' syncs overlap instead of adding
/// up. Both are done before anything of the round is answered or
/// delivered. A round whose commit fails has written its marks all the
/// same; if nothing commits those topics again before a stop, the next
/// start finds the marks ahead of the journal and gives them a new epoch
/// (a resync for their clients, never a reused id).
struct MarksThread {
    tx: mpsc::Sender<Vec<(Box<str>, Option<Marked>)>>,
    done: mpsc::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl MarksThread {
    /// `None` if no thread can be started: the writer then writes the
    /// marks itself, after the journal.
    fn start(state: Arc<State>) -> Option<MarksThread> {
        let (tx, rx) = mpsc::channel::<Vec<(Box<str>, Option<Marked>)>>();
        let (done_tx, done) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("ssehub-disk-marks".into())
            .spawn(move || {
                for changes in rx {
                    state.mark(&changes);
                    if done_tx.send(()).is_err() {
                        break;
                    }
                }
            })
            .inspect_err(|e| tracing::warn!(error = %e, "cannot start the marks thread"))
            .ok()?;
        Some(MarksThread { tx, done, thread })
    }

    /// Ends the thread once it has written what it was sent; it holds the
    /// store's state (its directory's lock among it) until then.
    fn stop(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("the marks thread panicked");
        }
    }
}

struct Writer {
    state: Arc<State>,
    /// Syncs the marks beside the journal (see [`MarksThread`]).
    marks: Option<MarksThread>,
    /// Jobs other than appends that a failed round must do again.
    retry: Vec<Job>,
    /// Appends whose idempotency key an earlier append of their round was
    /// writing: the next round does them first.
    deferred: Vec<Job>,
    /// The engine refused a write: reopen it before the next round.
    reopen: bool,
    /// The publish time of each topic's oldest event, once looked up (for
    /// retention by age).
    oldest_ms: HashMap<Box<str>, u64>,
    /// Topics still over a retention rule when a round's budget ran out.
    backlog: HashSet<Box<str>>,
    /// When every topic was last checked against the age rule.
    last_age_scan: std::time::Instant,
    /// Jobs queued while the last round synced (taken before it answered
    /// its publishers): the next round's, first.
    queued: Vec<Job>,
    /// Appends the last round answered.
    answered: usize,
    /// How long the last round's commit (and sync) took.
    last_sync: Duration,
}

/// A stream write waiting for its commit (every outcome waits: a
/// duplicate or a refusal may rest on a write of the same round).
struct StreamPending {
    done: StreamDone,
    deliver: StreamDeliver,
    reply: oneshot::Sender<Result<StreamDone, StoreError>>,
}

/// An append waiting for its commit.
struct Pending {
    topic: Box<str>,
    epoch: Epoch,
    first: u64,
    events: Vec<Encoded>,
    deliver: Deliver,
    reply: oneshot::Sender<Result<Keyed<Appended>, StoreError>>,
}

impl Writer {
    fn round(&mut self, jobs: Vec<Job>, rx: &mpsc::Receiver<Job>) {
        self.answered = 0;
        let Some(engine) = self.engine() else {
            // Still cannot write: answer appends, keep the rest.
            let recovering = || {
                StoreError::new(
                    ErrorKind::Unavailable,
                    "the store is recovering from a failed write",
                )
            };
            for job in jobs {
                match job {
                    Job::Append { reply, .. } => {
                        let _ = reply.send(Err(recovering()));
                    }
                    Job::Stream { reply, .. } => {
                        let _ = reply.send(Err(recovering()));
                    }
                    other => self.retry.push(other),
                }
            }
            return;
        };
        // `fdatasync`, as Redis's `appendfsync always`: the journal's data
        // and what is needed to read it back (its size, its blocks) reach
        // the disk; only its times may not.
        let mut batch = engine.db.batch().durability(Some(SYNC));
        // The index as it was before this round, per topic it changed.
        let mut undo: HashMap<Box<str>, Option<Meta>> = HashMap::new();
        let mut pending = Vec::new();
        let mut rotated = Vec::new();
        let mut retired = Vec::new();
        let mut kept = Vec::new();
        // The idempotency keys this round writes, per topic.
        let mut keyed: HashSet<(Box<str>, IdempotencyKey)> = HashSet::new();
        let state = self.state.clone();
        let mut index = state.index();
        let mut streams = state.streams();
        // The streams as they were before this round, per stream it wrote.
        let mut stream_undo: HashMap<Box<str>, Option<StreamMeta>> = HashMap::new();
        let mut stream_pending = Vec::new();
        // Topics whose first event moved other than by trimming.
        let mut reset = Vec::new();
        let remember = |undo: &mut HashMap<Box<str>, Option<Meta>>,
                        index: &HashMap<Box<str>, Entry>,
                        t: &str| {
            if !undo.contains_key(t) {
                undo.insert(t.into(), index.get(t).map(|e| e.meta));
            }
        };
        for job in jobs {
            match job {
                Job::Append {
                    topic,
                    events,
                    values,
                    published_ms,
                    deliver,
                    key,
                    reply,
                } => {
                    if let Some((k, fingerprint)) = &key {
                        if keyed.contains(&(topic.clone(), k.clone())) {
                            self.deferred.push(Job::Append {
                                topic,
                                events,
                                values,
                                published_ms,
                                deliver,
                                key,
                                reply,
                            });
                            continue;
                        }
                        // A topic the index does not have is new: no keys.
                        if let Some(epoch) = index.get(&topic).map(|e| e.meta.epoch) {
                            match known_key(&engine, &topic, epoch, k) {
                                Ok(None) => {}
                                Ok(Some(record)) => {
                                    let outcome = if record.fingerprint == *fingerprint {
                                        Keyed::Replayed(Appended {
                                            epoch,
                                            first: record.first,
                                        })
                                    } else {
                                        Keyed::Conflict
                                    };
                                    let _ = reply.send(Ok(outcome));
                                    continue;
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(StoreError::with_source(
                                        kind_of(&e),
                                        "cannot read an idempotency key",
                                        e,
                                    )));
                                    continue;
                                }
                            }
                        }
                    }
                    remember(&mut undo, &index, &topic);
                    // A topic retired while this was queued starts again.
                    let entry = index.entry(topic.clone()).or_insert_with(|| {
                        let meta = Meta::new(Epoch::generate());
                        Entry {
                            meta,
                            first: Arc::new(AtomicU64::new(meta.first)),
                        }
                    });
                    let meta = &mut entry.meta;
                    let first = meta.next;
                    if meta.first == meta.next {
                        self.oldest_ms.insert(topic.clone(), published_ms);
                    }
                    for value in values {
                        meta.bytes += value.len() as u64;
                        batch.insert(
                            &engine.events,
                            layout::event_key(&topic, meta.epoch, meta.next),
                            value,
                        );
                        meta.next += 1;
                    }
                    if let Some((k, fingerprint)) = key
                        && meta.next > first
                    {
                        let record = KeyRecord {
                            fingerprint,
                            first,
                            count: meta.next - first,
                        };
                        batch.insert(
                            &engine.keys,
                            layout::key_record_key(&topic, meta.epoch, k.as_str()),
                            layout::key_record_value(&record),
                        );
                        batch.insert(
                            &engine.key_order,
                            layout::event_key(&topic, meta.epoch, meta.next - 1),
                            k.as_str(),
                        );
                        keyed.insert((topic.clone(), k));
                    }
                    pending.push(Pending {
                        topic,
                        epoch: meta.epoch,
                        first,
                        events,
                        deliver,
                        reply,
                    });
                }
                Job::Stream {
                    topic,
                    op,
                    values,
                    published_ms,
                    deliver,
                    reply,
                } => {
                    let creates = matches!(op, StreamOp::Create { .. });
                    let done = if index.contains_key(&topic) || creates {
                        remember(&mut undo, &index, &topic);
                        if !stream_undo.contains_key(&topic) {
                            stream_undo.insert(topic.clone(), streams.get(&topic).cloned());
                        }
                        let entry = index.entry(topic.clone()).or_insert_with(|| {
                            let meta = Meta::new(Epoch::generate());
                            Entry {
                                meta,
                                first: Arc::new(AtomicU64::new(meta.first)),
                            }
                        });
                        let was_empty = entry.meta.first == entry.meta.next;
                        let done = stream_op(
                            &engine,
                            &mut batch,
                            &topic,
                            &mut entry.meta,
                            &mut streams,
                            op,
                            values,
                        );
                        match &done {
                            StreamDone::Created | StreamDone::Done => {
                                self.oldest_ms.remove(&topic);
                                reset.push(topic.clone());
                            }
                            StreamDone::Appended { .. }
                                if was_empty && entry.meta.first < entry.meta.next =>
                            {
                                self.oldest_ms.insert(topic.clone(), published_ms);
                            }
                            _ => {}
                        }
                        done
                    } else {
                        StreamDone::NotFound
                    };
                    stream_pending.push(StreamPending {
                        done,
                        deliver,
                        reply,
                    });
                }
                Job::Create { topic } => {
                    remember(&mut undo, &index, &topic);
                    kept.push(Job::Create { topic });
                }
                Job::Retire { topic, meta } => {
                    for seq in meta.first..meta.next {
                        batch.remove(&engine.events, layout::event_key(&topic, meta.epoch, seq));
                    }
                    forget_keys(
                        &engine,
                        &mut batch,
                        &topic,
                        meta.epoch,
                        meta.first,
                        u64::MAX,
                    );
                    remember(&mut undo, &index, &topic);
                    retired.push((topic.clone(), meta));
                    kept.push(Job::Retire { topic, meta });
                }
                Job::Rotate { topic, epoch, done } => {
                    remember(&mut undo, &index, &topic);
                    if let Some(entry) = index.get_mut(&topic)
                        && entry.meta.epoch == epoch
                    {
                        let old = entry.meta;
                        for seq in old.first..old.next {
                            batch.remove(&engine.events, layout::event_key(&topic, epoch, seq));
                        }
                        forget_keys(&engine, &mut batch, &topic, epoch, old.first, u64::MAX);
                        entry.meta = Meta::new(Epoch::generate());
                        rotated.push((topic.clone(), old));
                    }
                    kept.push(Job::Rotate { topic, epoch, done });
                }
            }
        }
        let mut appended: Vec<Box<str>> =
            pending.iter().map(|p: &Pending| p.topic.clone()).collect();
        appended.extend(stream_undo.keys().cloned());
        let trimmed = self.trim(
            &engine,
            &mut index,
            &mut batch,
            &mut undo,
            appended.into_iter(),
        );
        // The positions this commit writes, for the marks.
        let mut marked = Vec::with_capacity(undo.len());
        for (topic, before) in &undo {
            let mark = index.get(topic).map(|e| Marked {
                at: (e.meta.epoch, e.meta.next),
                before: before.map(|m| (m.epoch, m.next)),
            });
            match index.get(topic) {
                Some(entry) => batch.insert(&engine.meta, topic.as_bytes(), entry.meta.encode()),
                None => batch.remove(&engine.meta, topic.as_bytes()),
            }
            marked.push((topic.clone(), mark));
        }
        drop(streams);
        drop(index);
        if undo.is_empty() {
            for p in stream_pending {
                (p.deliver)(&p.done);
                let _ = p.reply.send(Ok(p.done));
            }
            return;
        }

        let started = std::time::Instant::now();
        // The marks sync beside the journal (on their thread), or after it.
        let inline = match &self.marks {
            Some(m) => {
                m.tx.send(marked)
                    .err()
                    .map(|mpsc::SendError(marked)| marked)
            }
            None => Some(marked),
        };
        let committed = batch.commit();
        match &inline {
            Some(marked) => self.state.mark(marked),
            None => {
                let m = self.marks.as_ref().expect("sent to the marks thread");
                if m.done.recv().is_err() {
                    tracing::error!("the marks thread ended");
                    self.marks = None;
                }
            }
        }
        self.last_sync = started.elapsed();
        match committed {
            Ok(()) => {
                if !pending.is_empty() || !stream_pending.is_empty() {
                    self.state.syncs.fetch_add(1, Ordering::Relaxed);
                }
                // What was queued while this round synced goes first in the
                // next; what its publishers send once answered is gathered
                // after it (see `run`).
                while self.queued.len() < MAX_JOBS {
                    match rx.try_recv() {
                        Ok(job) => self.queued.push(job),
                        Err(_) => break,
                    }
                }
                self.answered = pending.len() + stream_pending.len();
                self.committed(&trimmed, &retired, &rotated, &reset, &undo);
                for p in stream_pending {
                    (p.deliver)(&p.done);
                    let _ = p.reply.send(Ok(p.done));
                }
                for p in pending {
                    let frames: Vec<Bytes> = p
                        .events
                        .into_iter()
                        .zip(p.first..)
                        .map(|(enc, seq)| enc.finish(&EventId::new(p.epoch, seq)))
                        .collect();
                    (p.deliver)(p.epoch, p.first, frames);
                    let _ = p.reply.send(Ok(Keyed::Fresh(Appended {
                        epoch: p.epoch,
                        first: p.first,
                    })));
                }
                self.trimmed(&trimmed);
            }
            Err(e) => {
                let kind = kind_of(&e);
                tracing::error!(error = %e, dir = %self.state.dir.display(), "commit failed");
                let mut index = self.state.index();
                for (topic, before) in undo {
                    match before {
                        Some(meta) => {
                            if let Some(entry) = index.get_mut(&topic) {
                                entry.meta = meta;
                                // A reader may have published the trim
                                // that did not happen (see `missing`).
                                entry.first.store(meta.first, Ordering::Release);
                            }
                        }
                        None => {
                            index.remove(&topic);
                        }
                    }
                }
                drop(index);
                let mut streams = self.state.streams();
                for (topic, before) in stream_undo {
                    match before {
                        Some(meta) => streams.insert(topic, meta),
                        None => streams.remove(&topic),
                    };
                }
                drop(streams);
                self.oldest_ms.clear();
                let why = match kind {
                    ErrorKind::Full => "the disk is full",
                    _ => "cannot write to the data directory",
                };
                for p in pending {
                    let _ = p.reply.send(Err(StoreError::new(kind, why)));
                }
                for p in stream_pending {
                    let _ = p.reply.send(Err(StoreError::new(kind, why)));
                }
                self.retry.extend(kept);
                self.reopen = true;
            }
        }
    }

    /// Publishes what a successful commit changed to readers and the hub.
    fn committed(
        &mut self,
        trimmed: &HashSet<Box<str>>,
        retired: &[(Box<str>, Meta)],
        rotated: &[(Box<str>, Meta)],
        reset: &[Box<str>],
        changed: &HashMap<Box<str>, Option<Meta>>,
    ) {
        let state = &self.state;
        let index = state.index();
        let mut total: i64 = 0;
        for (topic, before) in changed {
            let now = index.get(topic).map_or(0, |e| e.meta.bytes as i64);
            total += now - before.map_or(0, |m| m.bytes as i64);
        }
        for (_, meta) in retired {
            total -= meta.bytes as i64;
        }
        for topic in trimmed
            .iter()
            .chain(rotated.iter().map(|(t, _)| t))
            .chain(reset)
        {
            if let Some(entry) = index.get(topic) {
                entry.first.store(entry.meta.first, Ordering::Release);
            }
        }

        let rotations: Vec<_> = rotated
            .iter()
            .filter_map(|(t, _)| Some((t.clone(), index.get(t)?.meta)))
            .collect();
        drop(index);
        if total >= 0 {
            state.total_bytes.fetch_add(total as u64, Ordering::Relaxed);
        } else {
            state
                .total_bytes
                .fetch_sub(total.unsigned_abs(), Ordering::Relaxed);
        }
        for (topic, _) in retired {
            self.oldest_ms.remove(topic);
        }
        if let Some(sink) = state.sink() {
            for (topic, meta) in rotations {
                self.oldest_ms.remove(&topic);
                sink.load(&topic, meta.epoch, meta.next, Vec::new());
            }
        }
    }

    /// One retention, whichever layer serves an event: the rings drop
    /// what the store no longer keeps (after this round's events reached
    /// them, which a trim of the same round may have cut into).
    fn trimmed(&self, trimmed: &HashSet<Box<str>>) {
        let Some(sink) = self.state.sink() else {
            return;
        };
        let trims: Vec<_> = {
            let index = self.state.index();
            trimmed
                .iter()
                .filter_map(|t| Some((t, index.get(t)?.meta)))
                .collect()
        };
        for (topic, meta) in trims {
            sink.trimmed(topic, meta.epoch, meta.first);
        }
    }

    /// Removes the oldest events that retention no longer allows, at most
    /// [`TRIM_PER_ROUND`] of them. Looks at the topics appended to in this
    /// round and those left over from earlier rounds; at all topics when
    /// the store is over its total bound, and once a second for the age
    /// rule. Returns the topics it trimmed.
    fn trim(
        &mut self,
        engine: &Engine,
        index: &mut HashMap<Box<str>, Entry>,
        batch: &mut fjall::OwnedWriteBatch,
        undo: &mut HashMap<Box<str>, Option<Meta>>,
        appended: impl Iterator<Item = Box<str>>,
    ) -> HashSet<Box<str>> {
        let retention = self.state.retention.clone();
        let mut trimmed = HashSet::new();
        let total = self.state.total_bytes.load(Ordering::Relaxed) as i64 + self.delta(index, undo);
        let mut total = total.max(0) as u64;
        let target = retention.total_bytes - retention.total_bytes / 16;
        // Over the total bound, the largest topics are cut to a common
        // level (as the hub does in memory): small topics keep everything.
        let level = (total > retention.total_bytes).then(|| {
            let mut sizes: Vec<u64> = index.values().map(|e| e.meta.bytes).collect();
            water_level(&mut sizes, total - target)
        });
        let age_due = retention.age.is_some() && self.last_age_scan.elapsed() >= IDLE_TICK;
        let mut candidates: Vec<Box<str>> = if level.is_some() || age_due {
            if age_due {
                self.last_age_scan = std::time::Instant::now();
            }
            index.keys().cloned().collect()
        } else {
            let mut c: Vec<Box<str>> = self.backlog.drain().collect();
            c.extend(appended);
            c.sort_unstable();
            c.dedup();
            c
        };
        if level.is_some() {
            candidates.sort_by_key(|t| std::cmp::Reverse(index.get(t).map_or(0, |e| e.meta.bytes)));
        }
        let too_old = retention
            .age
            .map(|age| now_ms().saturating_sub(age.as_millis() as u64));
        let mut budget = TRIM_PER_ROUND;
        for topic in candidates {
            let Some(entry) = index.get_mut(&topic) else {
                continue;
            };
            let meta = &mut entry.meta;
            let count = |m: &Meta| m.next - m.first;
            // A Durable Stream's messages are bounded by bytes and age,
            // not by count (a JSON append is one message per value).
            let counted = !path::is_stream_topic(&topic);
            // The rules that do not need the oldest event's time.
            let over = |m: &Meta, total: u64| {
                counted && count(m) > retention.events
                    || (m.bytes > retention.bytes && count(m) > 1)
                    || level.is_some_and(|l| total > target && m.bytes > l && count(m) > 0)
            };
            let aged =
                |at: Option<u64>| matches!((too_old, at), (Some(limit), Some(at)) if at < limit);
            if too_old.is_some()
                && count(meta) > 0
                && !self.oldest_ms.contains_key(&topic)
                && let Some(at) = oldest_published(engine, &topic, meta)
            {
                self.oldest_ms.insert(topic.clone(), at);
            }
            if !over(meta, total) && !aged(self.oldest_ms.get(&topic).copied()) {
                continue;
            }
            if budget == 0 {
                self.backlog.insert(topic);
                continue;
            }
            if !undo.contains_key(&topic) {
                undo.insert(topic.clone(), Some(*meta));
            }
            let first_before = meta.first;
            let start = layout::event_key(&topic, meta.epoch, meta.first);
            let end = layout::event_key(&topic, meta.epoch, u64::MAX);
            for kv in engine.events.range(start..=end) {
                let Ok((key, value)) = kv.into_inner() else {
                    break;
                };
                if layout::key_seq(&key) != Some(meta.first) {
                    break;
                }
                let at = layout::parse_event_value(&value).map(|(at, _)| at);
                if !(over(meta, total) || aged(at) && count(meta) > 0) {
                    // This one stays: it is now the oldest.
                    if let Some(at) = at {
                        self.oldest_ms.insert(topic.clone(), at);
                    }
                    break;
                }
                if budget == 0 {
                    self.backlog.insert(topic.clone());
                    break;
                }
                batch.remove(&engine.events, key);
                let len = value.len() as u64;
                meta.bytes = meta.bytes.saturating_sub(len);
                meta.first += 1;
                total = total.saturating_sub(len);
                budget -= 1;
                trimmed.insert(topic.clone());
                self.oldest_ms.remove(&topic);
            }
            // A key goes with the last event it published.
            if meta.first > first_before {
                forget_keys(engine, batch, &topic, meta.epoch, first_before, meta.first);
            }
        }
        trimmed
    }

    /// How much this round's changes so far move the total of bytes.
    fn delta(
        &self,
        index: &HashMap<Box<str>, Entry>,
        undo: &HashMap<Box<str>, Option<Meta>>,
    ) -> i64 {
        undo.iter()
            .map(|(t, before)| {
                index.get(t).map_or(0, |e| e.meta.bytes as i64)
                    - before.map_or(0, |m| m.bytes as i64)
            })
            .sum()
    }

    /// The engine, reopening it first if a write failed.
    fn engine(&mut self) -> Option<Engine> {
        if !self.reopen {
            return self.state.engine();
        }
        // Every handle must be gone before the directory can be opened
        // again; readers give theirs back when their chunk is read.
        self.state
            .engine
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match Engine::open(&self.state.dir) {
            Ok(engine) => {
                if let Err(e) = self.reconcile(&engine) {
                    tracing::warn!(error = %e, "cannot check the store after a failed write; retrying");
                    return None;
                }
                *self
                    .state
                    .engine
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Some(engine.clone());
                self.reopen = false;
                tracing::info!(dir = %self.state.dir.display(), "store reopened after a failed write");
                Some(engine)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot reopen the store yet");
                None
            }
        }
    }

    /// After a failed commit, makes the disk agree with the index: what the
    /// failed commit wrote (it may have reached the journal) was never
    /// acknowledged nor delivered, so it must not come back.
    fn reconcile(&self, engine: &Engine) -> Result<(), fjall::Error> {
        let index = self.state.index();
        let mut batch = engine
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        for (topic, entry) in index.iter() {
            let on_disk = engine
                .meta
                .get(topic.as_bytes())?
                .and_then(|v| Meta::decode(&v));
            if on_disk == Some(entry.meta) {
                continue;
            }
            if let Some(disk) = on_disk
                && disk.epoch == entry.meta.epoch
            {
                for seq in entry.meta.next..disk.next {
                    batch.remove(&engine.events, layout::event_key(topic, disk.epoch, seq));
                }
                forget_keys(
                    engine,
                    &mut batch,
                    topic,
                    disk.epoch,
                    entry.meta.next,
                    u64::MAX,
                );
            }
            batch.insert(&engine.meta, topic.as_bytes(), entry.meta.encode());
        }
        drop(index);
        if batch.is_empty() {
            return Ok(());
        }
        batch.commit()
    }

    /// Flushes the engine so that the next start replays no journal, and
    /// lets the directory go.
    fn close(mut self) {
        if let Some(marks) = self.marks.take() {
            marks.stop();
        }
        let engine = self
            .state
            .engine
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(engine) = engine {
            let flushed = engine
                .db
                .persist(fjall::PersistMode::SyncAll)
                .and_then(|()| engine.events.rotate_memtable())
                .and_then(|_| engine.meta.rotate_memtable());
            // A flush that cannot be written (a full disk) is retried by
            // the engine forever: wait a bounded time, the journal has it.
            let deadline = std::time::Instant::now() + CLOSE_FLUSH_WAIT;
            let sealed =
                || engine.events.sealed_memtable_count() + engine.meta.sealed_memtable_count();
            while flushed.is_ok() && sealed() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Err(e) = flushed {
                tracing::warn!(error = %e, "cannot flush the store on close");
            } else if sealed() > 0 {
                tracing::warn!("cannot flush the store on close; its journal keeps the events");
            }
        }
    }
}

/// The level to which the largest of `sizes` must be cut so that together
/// they shed at least `excess` (as `Hub`'s bound in memory).
fn water_level(sizes: &mut [u64], excess: u64) -> u64 {
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut above = 0u64;
    for k in 0..sizes.len() {
        above += sizes[k];
        let next = sizes.get(k + 1).copied().unwrap_or(0);
        if above - (k as u64 + 1) * next >= excess {
            return (above - excess) / (k as u64 + 1);
        }
    }
    0
}

/// The record of idempotency key `key` in `topic`'s history `epoch`, if
/// it has one. A record ssehub cannot read is taken as absent (and
/// overwritten by the publish that finds it so).
fn known_key(
    engine: &Engine,
    topic: &str,
    epoch: Epoch,
    key: &IdempotencyKey,
) -> Result<Option<KeyRecord>, fjall::Error> {
    let value = engine
        .keys
        .get(layout::key_record_key(topic, epoch, key.as_str()))?;
    Ok(value.and_then(|v| {
        let record = layout::parse_key_record(&v);
        if record.is_none() {
            tracing::warn!(
                topic,
                key = key.as_str(),
                "unreadable idempotency key record: ignored"
            );
        }
        record
    }))
}

/// Removes (in `batch`) the idempotency keys of `topic`'s history `epoch`
/// whose last event is in `from..to`.
pub(super) fn forget_keys(
    engine: &Engine,
    batch: &mut fjall::OwnedWriteBatch,
    topic: &str,
    epoch: Epoch,
    from: u64,
    to: u64,
) {
    let start = layout::event_key(topic, epoch, from);
    let end = layout::event_key(topic, epoch, to);
    for kv in engine.key_order.range(start..end) {
        let (order, key) = match kv.into_inner() {
            Ok(kv) => kv,
            Err(e) => {
                // Left for good: each is at most one small record per
                // event, and a later publish with the key overwrites it.
                tracing::warn!(topic, error = %e, "cannot read idempotency keys to forget");
                return;
            }
        };
        if let Ok(key) = std::str::from_utf8(&key) {
            batch.remove(&engine.keys, layout::key_record_key(topic, epoch, key));
        }
        batch.remove(&engine.key_order, order);
    }
}

/// Does a stream write, in `batch`, on the writer's copy of the stream
/// (`streams`) and the index entry `m` of its topic.
fn stream_op(
    engine: &Engine,
    batch: &mut fjall::OwnedWriteBatch,
    topic: &str,
    m: &mut Meta,
    streams: &mut HashMap<Box<str>, StreamMeta>,
    op: StreamOp,
    values: Vec<fjall::Slice>,
) -> StreamDone {
    let put = |batch: &mut fjall::OwnedWriteBatch, m: &mut Meta, value: fjall::Slice| {
        m.bytes += value.len() as u64;
        batch.insert(
            &engine.events,
            layout::event_key(topic, m.epoch, m.next),
            value,
        );
        m.next += 1;
    };
    match op {
        StreamOp::Create { meta, first, .. } => {
            if streams.contains_key(topic) {
                return StreamDone::Exists;
            }
            // What a stream deleted from this path left (nothing, unless
            // its delete failed halfway).
            for seq in m.first..m.next {
                batch.remove(&engine.events, layout::event_key(topic, m.epoch, seq));
            }
            forget_stream(engine, batch, topic);
            (m.first, m.next, m.bytes) = (first, first, 0);
            for value in values {
                put(batch, m, value);
            }
            batch.insert(
                &engine.streams,
                topic.as_bytes(),
                record::encode_stream(&meta),
            );
            streams.insert(topic.into(), *meta);
            StreamDone::Created
        }
        StreamOp::Append { write, now_ms, .. } => {
            let Some(stream) = streams.get_mut(topic) else {
                return StreamDone::NotFound;
            };
            let w = write.as_write();
            let producer = match stream.admit(&w, now_ms) {
                Verdict::Accepted { producer } => producer,
                verdict => {
                    return StreamDone::Appended {
                        verdict,
                        seq: m.next - 1,
                        generation: stream.generations.own,
                        closed: stream.is_closed(),
                    };
                }
            };
            let mut seq = m.next - 1;
            if let Some(value) = values.into_iter().next() {
                seq = m.next;
                put(batch, m, value);
            }
            let forgotten = stream.commit(&w, producer.clone(), now_ms);
            if w.close || w.stream_seq.is_some() {
                batch.insert(
                    &engine.streams,
                    topic.as_bytes(),
                    record::encode_stream(stream),
                );
            }
            if let Some(p) = &producer
                && let Some(state) = stream.producers.get(&p.id)
            {
                batch.insert(
                    &engine.producers,
                    layout::producer_key(topic, &p.id),
                    record::encode_producer(state),
                );
            }
            if let Some(id) = forgotten {
                batch.remove(&engine.producers, layout::producer_key(topic, &id));
            }
            StreamDone::Appended {
                verdict: Verdict::Accepted { producer },
                seq,
                generation: stream.generations.own,
                closed: stream.is_closed(),
            }
        }
        StreamOp::Hide => {
            let Some(stream) = streams.get_mut(topic) else {
                return StreamDone::NotFound;
            };
            stream.soft_deleted = true;
            batch.insert(
                &engine.streams,
                topic.as_bytes(),
                record::encode_stream(stream),
            );
            StreamDone::Done
        }
        StreamOp::Delete => {
            if streams.remove(topic).is_none() {
                return StreamDone::NotFound;
            }
            for seq in m.first..m.next {
                batch.remove(&engine.events, layout::event_key(topic, m.epoch, seq));
            }
            forget_stream(engine, batch, topic);
            (m.first, m.bytes) = (m.next, 0);
            StreamDone::Done
        }
    }
}

/// Removes (in `batch`) the records of `topic`'s Durable Stream, if it has
/// one: the stream's and its producers'.
fn forget_stream(engine: &Engine, batch: &mut fjall::OwnedWriteBatch, topic: &str) {
    batch.remove(&engine.streams, topic.as_bytes());
    for kv in engine.producers.prefix(layout::producers_prefix(topic)) {
        match kv.key() {
            Ok(key) => batch.remove(&engine.producers, key),
            Err(e) => {
                tracing::warn!(topic, error = %e, "cannot read producers to forget");
                return;
            }
        }
    }
}

/// The publish time of a topic's oldest retained event.
fn oldest_published(engine: &Engine, topic: &str, meta: &Meta) -> Option<u64> {
    let value = engine
        .events
        .get(layout::event_key(topic, meta.epoch, meta.first))
        .ok()??;
    layout::parse_event_value(&value).map(|(at, _)| at)
}
