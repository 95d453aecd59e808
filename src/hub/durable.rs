//! Durable Streams on the hub's topics: create, append, close, delete,
//! read and wait, each one step under the topic's lock.
//!
//! A stream is a topic (`ds:` + its path, see `core::durable::path`) whose
//! ring holds the stream's messages as raw frames (bytes as appended; for
//! JSON each value and a comma) and whose [`StreamMeta`] sits beside them
//! under the same lock, so a write's checks, its messages and its metadata
//! change together: concurrent producers, closes and deletes always see
//! one order. Message `n` of the topic is the stream's position `n`; an
//! offset is `generation_n` (see `core::durable::offset`).
//!
//! A stream's topic is pinned while the stream exists (it counts as a
//! subscriber), so the hub never retires it to make room: at the maximum of
//! topics a create is refused instead. A stream is bounded by
//! `max_topic_bytes` like any topic; offsets older than what it retains get
//! `410`. Expiry is checked whenever a stream is used, and by
//! [`Hub::sweep_expired_streams`].
//!
//! Forks copy their source's frames (shared `Bytes`, no payload copy) up
//! to the fork point, and accept the source's offsets up to there. A
//! source keeps a count of its live forks: deleting it then only hides it
//! (`410`) until the last fork goes.
//!
//! With the disk store (`--data-dir`), each write is decided and written by
//! the store, in one commit with the producer state it moves, and reaches
//! the ring (and readers) once durable: the ring's metadata is a copy for
//! reads (see `store::streams`). Writes are sent to the store under the
//! topic's lock, so the store does them in the hub's order. Messages older
//! than the ring are read from disk.
//!
//! With Redis (`--redis`), writes go the same way (see
//! `store::redis::streams`), and several nodes share each stream: a node
//! loads a stream on first use ([`Hub::ready_stream`]), then learns of the
//! other nodes' writes from the store (`Sink::stream_entries`,
//! `Sink::stream_changed`). A read that names an offset this node has not
//! seen yet, or a stream it has not loaded, first catches up from Redis
//! ([`StoredRead`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::core::TopicName;
use crate::core::durable::json::{self, JsonError};
use crate::core::durable::meta::{Config, Expiry, OwnedWrite, Refusal, Verdict, Write, is_json};
use crate::core::durable::offset::{Generations, Offset, OffsetError, Start};
use crate::core::durable::{StreamMeta, path};
use crate::core::id::Epoch;
use crate::core::ring::Ring;
use crate::hub::registry::LOOKUP_ATTEMPTS;
use crate::hub::sync::{Arc, MutexGuard};
use crate::hub::topic::Topic;
use crate::hub::{Hub, HubError};
use crate::store::{
    History, LoadedStream, StoreError, StreamChange, StreamDeliver, StreamDone, StreamOp,
    StreamReply,
};

/// How often expired streams are deleted, if nobody asks for them first.
const SWEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a stream operation failed.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// No such stream (`404`).
    NotFound,
    /// Deleted while it still has forks (`410`).
    Gone,
    /// The offset is from an older incarnation or older than retention
    /// (`410`).
    OffsetGone,
    /// The offset was never given by this stream (`400`).
    OffsetUnknown,
    /// A create found the stream with another configuration (`409`).
    Exists,
    /// A create found the path held by a deleted stream that still has
    /// forks (`409`).
    PathInUse,
    /// A fork's source does not exist (`404`).
    ForkSourceMissing,
    /// A fork's source was deleted and only lives on for its forks (`409`).
    ForkSourceGone,
    /// A fork's offset or sub-offset names no position of the source
    /// (`400`).
    ForkPoint(&'static str),
    /// A fork asked for another content type than its source's (`409`).
    ForkContentType,
    /// A write the stream's rules refuse; `tail` is its current end.
    Refused {
        refusal: Refusal,
        tail: Offset,
    },
    /// A JSON stream's body is not JSON, or an empty array (`400`).
    Json(JsonError),
    Hub(HubError),
}

impl From<HubError> for StreamError {
    fn from(e: HubError) -> Self {
        StreamError::Hub(e)
    }
}

/// What a create asks for.
#[derive(Debug)]
pub(crate) struct Create {
    pub(crate) config: Config,
    /// `Stream-Closed: true`.
    pub(crate) closed: bool,
    /// The initial messages, as sent (framed once the content type is
    /// known: a fork may inherit it).
    pub(crate) body: Bytes,
}

/// A stream's state as answers report it.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    /// After its last message.
    pub(crate) tail: Offset,
    pub(crate) closed: bool,
    pub(crate) content_type: Arc<str>,
    pub(crate) expiry: Expiry,
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Appended (or closed); `tail` is after the new messages.
    Fresh { tail: Offset, closed: bool },
    /// A producer's retry: nothing changed. `last_seq` is the highest
    /// sequence accepted.
    Duplicate {
        tail: Offset,
        closed: bool,
        last_seq: u64,
    },
}

/// What a read found.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// The messages, one frame each.
    pub(crate) frames: Vec<Bytes>,
    /// After the last message returned.
    pub(crate) next: Offset,
    /// Nothing follows `next` (yet).
    pub(crate) up_to_date: bool,
    pub(crate) closed: bool,
    pub(crate) content_type: Arc<str>,
}

/// How a wait for messages ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Messages follow the position.
    Data,
    /// The stream is closed and nothing follows.
    Closed,
    TimedOut,
}

/// Counts a read waiting for data (long-poll, SSE) while it lives.
#[derive(Debug)]
pub(crate) struct LiveRead(Hub);

impl Drop for LiveRead {
    fn drop(&mut self) {
        let c = &self.0.inner.counters;
        c.durable_live_reads.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Hub {
    /// Counts a live read until the guard drops.
    pub(crate) fn live_read(&self) -> LiveRead {
        let c = &self.inner.counters;
        c.durable_live_reads.fetch_add(1, Ordering::Relaxed);
        LiveRead(self.clone())
    }
}

pub(crate) use crate::core::now_ms;

/// A generation no stream of this process had: µs since the Unix epoch,
/// strictly increasing.
fn new_generation() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut prev = LAST_GENERATION.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST_GENERATION.compare_exchange_weak(
            prev,
            next,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

/// The position after the last message of the locked ring's stream.
fn tail(ring: &Ring, meta: &StreamMeta) -> Offset {
    Offset {
        generation: meta.generations.own,
        seq: ring.latest(),
    }
}

fn status(ring: &Ring, meta: &StreamMeta) -> Status {
    Status {
        tail: tail(ring, meta),
        closed: meta.is_closed(),
        content_type: meta.config.content_type.clone(),
        expiry: meta.config.expiry.clone(),
    }
}

/// The oldest position of the locked ring's stream that its store keeps:
/// the ring's, or (disk) the older history's.
fn first_kept(topic: &Topic, ring: &Ring) -> u64 {
    let in_ring = ring.oldest().unwrap_or(ring.next_seq());
    topic.durable_first().map_or(in_ring, |d| d.min(in_ring))
}

/// The answer to an append the rules decided: `tail` and `closed` as the
/// stream stands after it.
fn answer(verdict: Verdict, tail: Offset, closed: bool) -> Result<Appended, StreamError> {
    match verdict {
        Verdict::Accepted { .. } => Ok(Appended::Fresh { tail, closed }),
        Verdict::Duplicate { last_seq } => Ok(Appended::Duplicate {
            tail,
            closed,
            last_seq,
        }),
        Verdict::Refused(refusal) => Err(StreamError::Refused { refusal, tail }),
    }
}

/// The frames a body appends to a stream of `content_type`: none for an
/// empty body (or `[]` on create).
fn frames_of(body: Bytes, content_type: &str, creating: bool) -> Result<Option<Bytes>, JsonError> {
    if body.is_empty() {
        Ok(None)
    } else if is_json(content_type) {
        json::frame(&body, creating)
    } else {
        Ok(Some(body))
    }
}

fn store_error(e: StoreError) -> StreamError {
    StreamError::Hub(HubError::Storage(e))
}

/// Where a fork starts in its source, read under the source's lock.
struct ForkFrom {
    parent: TopicName,
    generations: Generations,
    content_type: Arc<str>,
    expiry: Expiry,
    /// The source's frames the fork inherits, the first of which is
    /// message `first`.
    frames: Vec<Bytes>,
    first: u64,
    /// Part of the message after the fork point (a sub-offset).
    prefix: Option<Bytes>,
}

/// A fork's inherited messages older than its source's ring (disk): read
/// from the source's history once its lock is released.
struct Older {
    history: History,
    epoch: Epoch,
    generation: u64,
    /// Messages `from..to` come from disk.
    from: u64,
    to: u64,
}

impl Older {
    /// Reads messages `from..to` whole, or says they are no longer kept.
    async fn read(&self) -> Result<Vec<Bytes>, StreamError> {
        let mut frames = Vec::new();
        let mut at = self.from;
        while at < self.to {
            let want = usize::try_from(self.to - at)
                .unwrap_or(usize::MAX)
                .min(4096);
            let got = self
                .history
                .read_raw(self.epoch, self.generation, at, want, usize::MAX)
                .await
                .map_err(store_error)?;
            if got.is_empty() {
                return Err(StreamError::ForkPoint("the fork offset is not retained"));
            }
            at += got.len() as u64;
            frames.extend(got);
        }
        Ok(frames)
    }
}

/// A catch-up read that needs the store, finished by
/// [`StoredRead::finish`] off the topic's lock: messages older than the
/// stream's ring (disk, Redis), or (Redis) a stream this node has not
/// loaded, or an offset it has not seen yet.
#[derive(Debug)]
pub(crate) struct StoredRead(Stored);

#[derive(Debug)]
enum Stored {
    History(HistoryRead),
    /// Loads the stream (`load`) or catches up with the store, then reads.
    Sync {
        hub: Hub,
        name: TopicName,
        start: Start,
        max_bytes: usize,
        load: bool,
    },
}

impl StoredRead {
    pub(crate) async fn finish(self) -> Result<Chunk, StreamError> {
        match self.0 {
            Stored::History(read) => read.finish().await,
            Stored::Sync {
                hub,
                name,
                start,
                max_bytes,
                load,
            } => {
                if load {
                    hub.ready_stream(&name).await?;
                } else {
                    hub.refresh_stream(&name).await?;
                }
                match hub.read_with(&name, start, max_bytes)? {
                    Catchup::Ready(chunk) => Ok(chunk),
                    Catchup::Stored(StoredRead(Stored::History(read))) => read.finish().await,
                    Catchup::Stored(_) => Err(StreamError::NotFound),
                }
            }
        }
    }
}

/// Messages older than the stream's ring, read from its store's history.
#[derive(Debug)]
struct HistoryRead {
    history: History,
    epoch: Epoch,
    after: u64,
    count: usize,
    max_bytes: usize,
    last: u64,
    generation: u64,
    closed: bool,
    content_type: Arc<str>,
}

impl HistoryRead {
    async fn finish(self) -> Result<Chunk, StreamError> {
        let frames = self
            .history
            .read_raw(
                self.epoch,
                self.generation,
                self.after + 1,
                self.count,
                self.max_bytes,
            )
            .await
            .map_err(store_error)?;
        if frames.is_empty() {
            // Retention took them meanwhile.
            return Err(StreamError::OffsetGone);
        }
        let next = self.after + frames.len() as u64;
        Ok(Chunk {
            frames,
            next: Offset {
                generation: self.generation,
                seq: next,
            },
            up_to_date: next == self.last,
            closed: self.closed,
            content_type: self.content_type,
        })
    }
}

/// A read that is ready, or must finish with the store.
#[derive(Debug)]
pub(crate) enum Catchup {
    Ready(Chunk),
    Stored(StoredRead),
}

/// The most messages one read answers.
const MAX_READ_MESSAGES: u64 = 4096;

impl Hub {
    fn stream_topic(&self, name: &TopicName) -> Result<Option<Arc<Topic>>, StreamError> {
        if self.is_closed() {
            return Err(HubError::Closed.into());
        }
        Ok(self.read_topics().get(name).cloned())
    }

    /// Runs `f` on the live stream of `name` under its topic's lock, after
    /// retiring it if it expired (`NotFound`, or `Gone` for a source that
    /// still has forks). Soft-deleted streams are `Gone`.
    fn with_stream<R>(
        &self,
        name: &TopicName,
        f: impl FnOnce(&Arc<Topic>, &mut Ring) -> Result<R, StreamError>,
    ) -> Result<R, StreamError> {
        let topic = self.stream_topic(name)?.ok_or(StreamError::NotFound)?;
        let mut released = None;
        let result = {
            let mut ring = topic.lock();
            if topic.is_closed() {
                return Err(StreamError::NotFound);
            }
            match self.check_live(&topic, &mut ring, now_ms(), &mut released) {
                Ok(()) => f(&topic, &mut ring),
                Err(e) => Err(e),
            }
        };
        if let Some(parent) = released {
            self.release_fork_of(parent);
        }
        result
    }

    /// Whether the locked ring holds a live stream; an expired one is
    /// deleted here (its parent, if any, goes to `released`).
    fn check_live(
        &self,
        topic: &Topic,
        ring: &mut Ring,
        now: u64,
        released: &mut Option<TopicName>,
    ) -> Result<(), StreamError> {
        let meta = ring.stream_mut().ok_or(StreamError::NotFound)?;
        if meta.soft_deleted {
            return Err(StreamError::Gone);
        }
        if meta.is_expired(now) {
            if meta.forks > 0 {
                self.hide_locked(topic, ring);
                topic.wake();
                return Err(StreamError::Gone);
            }
            *released = self.remove_locked(topic, ring);
            topic.wake();
            return Err(StreamError::NotFound);
        }
        Ok(())
    }

    /// Sends a write of the locked topic's stream to the store (disk), in
    /// the order of the topic's lock.
    fn send(&self, topic: &Topic, op: StreamOp, deliver: StreamDeliver) -> StreamReply {
        self.store().send_stream(topic.name(), op, deliver)
    }

    /// Hides the locked ring's stream (deleted under live forks, expired);
    /// with a store, writes so (not waiting for it).
    fn hide_locked(&self, topic: &Topic, ring: &mut Ring) {
        if let Some(meta) = ring.stream_mut() {
            meta.soft_deleted = true;
            if !self.store().is_memory() {
                let _ = self.send(topic, StreamOp::Hide, Box::new(|_| {}));
            }
        }
    }

    /// Removes the locked ring's stream (deleted, expired); with a store,
    /// deletes it there too (not waiting for it). Returns the stream it was
    /// forked from, to release.
    fn remove_locked(&self, topic: &Topic, ring: &mut Ring) -> Option<TopicName> {
        let meta = unlink_locked(topic, ring)?;
        if !self.store().is_memory() {
            let _ = self.send(topic, StreamOp::Delete, Box::new(|_| {}));
        }
        meta.parent
    }

    /// Creates the stream of `name` (`Ok(true)`), or finds it created with
    /// the same configuration (`Ok(false)`).
    pub(crate) async fn create_stream(
        &self,
        name: &TopicName,
        create: Create,
    ) -> Result<(bool, Status), StreamError> {
        self.ready_stream(name).await?;
        let from = match &create.config.fork {
            Some(fork) => Some(self.fork_from(fork, &create.config).await?),
            None => None,
        };
        let parent = from.as_ref().map(|f| f.parent.clone());
        // The first messages, framed for the stream's content type (a
        // fork's may be its source's). A body that cannot be framed is
        // refused before a topic is made for it, unless the stream exists
        // (a repeated create ignores the body).
        let content_type = match &from {
            Some(f) if create.config.content_type.is_empty() => f.content_type.clone(),
            _ => create.config.content_type.clone(),
        };
        let framed = frames_of(create.body.clone(), &content_type, true);
        if let Err(e) = &framed
            && matches!(self.local_stream_status(name), Err(StreamError::NotFound))
        {
            if let Some(parent) = parent {
                self.release_fork_of(parent);
            }
            return Err(StreamError::Json(*e));
        }
        if create.config.expiry != Expiry::Never {
            self.sweep_in_background();
        }
        let outcome = self.install(name, create, from, framed).await;
        match (&outcome, parent) {
            (Ok((true, _)), _) | (_, None) => {}
            (_, Some(parent)) => self.release_fork_of(parent),
        }
        self.enforce_total_bytes();
        outcome
    }

    async fn install(
        &self,
        name: &TopicName,
        create: Create,
        from: Option<ForkFrom>,
        framed: Result<Option<Bytes>, JsonError>,
    ) -> Result<(bool, Status), StreamError> {
        // A topic found idle may be retired before its lock is taken (the
        // hub making room): look it up again, as publishing does.
        let mut attempts = LOOKUP_ATTEMPTS;
        let (closed, config) = (create.closed, create.config.clone());
        let sent = loop {
            let topic = self.topic(name)?;
            let ring = topic.lock();
            if !topic.is_closed() {
                break self.install_locked(&topic, ring, create, from, framed)?;
            }
            attempts -= 1;
            if self.is_closed() || attempts == 0 {
                return Err(HubError::Closed.into());
            }
        };
        let (topic, reply, created) = match sent {
            Installed::Done(outcome) => return Ok(outcome),
            Installed::Sent {
                topic,
                reply,
                status,
            } => (topic, reply, status),
        };
        match reply.wait().await {
            Ok(StreamDone::Created) => Ok((true, created)),
            Ok(_) => {
                // Another create of this path was written first (on
                // another node, with Redis: this one loads it).
                topic.detach();
                self.ready_stream(name).await?;
                self.with_stream(name, |_, ring| {
                    let meta = ring.stream().expect("live");
                    if meta.same_as(&config, closed) {
                        Ok((false, status(ring, meta)))
                    } else {
                        Err(StreamError::Exists)
                    }
                })
            }
            Err(e) => {
                topic.detach();
                Err(store_error(e))
            }
        }
    }

    fn install_locked(
        &self,
        topic: &Arc<Topic>,
        mut ring: MutexGuard<'_, Ring>,
        create: Create,
        from: Option<ForkFrom>,
        framed: Result<Option<Bytes>, JsonError>,
    ) -> Result<Installed, StreamError> {
        let now = now_ms();
        let mut released = None;
        let result = (|| {
            match self.check_live(topic, &mut ring, now, &mut released) {
                Ok(()) => {
                    let meta = ring.stream().expect("checked live");
                    return if meta.same_as(&create.config, create.closed) {
                        Ok(Installed::Done((false, status(&ring, meta))))
                    } else {
                        Err(StreamError::Exists)
                    };
                }
                Err(StreamError::Gone) => return Err(StreamError::PathInUse),
                Err(StreamError::NotFound) => {}
                Err(e) => return Err(e),
            }
            let (meta, first, frames) = build(create, from, framed, now)?;
            topic.attach();
            if self.store().is_memory() {
                topic.clear_locked(&mut ring, first);
                topic.push_locked(&mut ring, frames);
                ring.set_stream(Some(meta));
                let c = topic.counters();
                c.durable_streams.fetch_add(1, Ordering::Relaxed);
                let meta = ring.stream().expect("just set");
                return Ok(Installed::Done((true, status(&ring, meta))));
            }
            // The store writes it; the ring gets it once it is durable.
            let status = Status {
                tail: Offset {
                    generation: meta.generations.own,
                    seq: first + frames.len() as u64 - 1,
                },
                closed: meta.is_closed(),
                content_type: meta.config.content_type.clone(),
                expiry: meta.config.expiry.clone(),
            };
            let deliver = {
                let (topic, meta, frames) = (topic.clone(), meta.clone(), frames.clone());
                let store = self.store().clone();
                Box::new(move |done: &StreamDone| {
                    if !matches!(done, StreamDone::Created) {
                        return;
                    }
                    let mut ring = topic.lock();
                    topic.clear_locked(&mut ring, first);
                    topic.push_locked(&mut ring, frames);
                    if let Some(history) = topic.history() {
                        history.set_first(first);
                    }
                    let (generation, closed) = (meta.generations.own, meta.is_closed());
                    store.follow_stream(topic.name(), generation, ring.latest(), closed);
                    ring.set_stream(Some(meta));
                    let c = topic.counters();
                    c.durable_streams.fetch_add(1, Ordering::Relaxed);
                    drop(ring);
                    topic.wake();
                })
            };
            let op = StreamOp::Create {
                meta: Box::new(meta),
                first,
                frames,
            };
            let reply = self.send(topic, op, deliver);
            Ok(Installed::Sent {
                topic: topic.clone(),
                reply,
                status,
            })
        })();
        drop(ring);
        topic.wake();
        if let Some(parent) = released {
            self.release_fork_of(parent);
        }
        result
    }

    /// Reads where a fork of `fork.source` starts, and counts the fork on
    /// its source.
    async fn fork_from(
        &self,
        fork: &crate::core::durable::meta::ForkPoint,
        config: &Config,
    ) -> Result<ForkFrom, StreamError> {
        let parent = fork.topic.clone();
        self.ready_stream(&parent).await.map_err(|e| match e {
            StreamError::NotFound => StreamError::ForkSourceMissing,
            e => e,
        })?;
        let result = self.with_stream(&parent, |topic, ring| {
            let meta = ring.stream().expect("live");
            if !config.content_type.is_empty()
                && crate::core::durable::meta::media_type(&config.content_type)
                    != crate::core::durable::meta::media_type(&meta.config.content_type)
            {
                return Err(StreamError::ForkContentType);
            }
            let first = first_kept(topic, ring);
            let last = ring.latest();
            let at = match fork.offset.as_deref().map(Start::parse) {
                None => last,
                Some(Some(Start::Beginning)) => 0,
                Some(Some(Start::At(o))) => {
                    meta.generations.resolve(o, first, last).map_err(|_| {
                        StreamError::ForkPoint("the fork offset is not a position of the source")
                    })?
                }
                Some(_) => return Err(StreamError::ForkPoint("malformed fork offset")),
            };
            if at + 1 < first {
                return Err(StreamError::ForkPoint(
                    "the fork offset is older than the source retains",
                ));
            }
            if fork.sub_offset > 0 && at >= last {
                return Err(StreamError::ForkPoint(
                    "the fork sub-offset needs a message after the fork offset",
                ));
            }
            // The fork inherits messages `first..=at` (shared frames), and
            // a sub-offset cuts message `at + 1`: what the ring has, the
            // rest (disk) from the history.
            let in_ring = ring.oldest().unwrap_or(ring.next_seq()).max(first);
            let upto = if fork.sub_offset > 0 { at + 1 } else { at };
            let mut frames = Vec::new();
            if upto >= in_ring {
                frames = vec![Bytes::new(); usize::try_from(upto + 1 - in_ring).unwrap_or(0)];
                let (n, _) = ring
                    .frames(in_ring, &mut frames, usize::MAX)
                    .map_err(|_| StreamError::ForkPoint("the fork offset is not retained"))?;
                frames.truncate(n);
            }
            let older = match (first < in_ring.min(upto + 1), topic.history()) {
                (false, _) => None,
                (true, Some(history)) => Some(Older {
                    history: history.clone(),
                    epoch: ring.epoch(),
                    generation: meta.generations.own,
                    from: first,
                    to: in_ring.min(upto + 1),
                }),
                (true, None) => {
                    return Err(StreamError::ForkPoint("the fork offset is not retained"));
                }
            };
            let meta = ring.stream_mut().expect("live");
            meta.forks += 1;
            let from = ForkFrom {
                parent: parent.clone(),
                generations: meta.generations.clone(),
                content_type: meta.config.content_type.clone(),
                expiry: meta.config.expiry.clone(),
                frames,
                first,
                prefix: None,
            };
            Ok((from, older, meta.is_json()))
        });
        let (mut from, older, json) = result.map_err(|e| match e {
            StreamError::NotFound => StreamError::ForkSourceMissing,
            StreamError::Gone => StreamError::ForkSourceGone,
            e => e,
        })?;
        let finish = async {
            if let Some(older) = &older {
                let mut frames = older.read().await?;
                frames.append(&mut from.frames);
                from.frames = frames;
            }
            if fork.sub_offset > 0 {
                let whole = from.frames.pop().ok_or(StreamError::ForkPoint(
                    "the fork sub-offset needs a message after the fork offset",
                ))?;
                from.prefix = Some(sub_prefix(&whole, fork.sub_offset, json)?);
            }
            Ok(())
        };
        match finish.await {
            Ok(()) => Ok(from),
            Err(e) => {
                self.release_fork_of(parent);
                Err(e)
            }
        }
    }

    /// A fork of `parent` went away: counts it off, and deletes the parent
    /// (and so on up) if it was deleted while forks lived.
    fn release_fork_of(&self, parent: TopicName) {
        let mut next = Some(parent);
        while let Some(name) = next.take() {
            let Ok(Some(topic)) = self.stream_topic(&name) else {
                return;
            };
            {
                let mut ring = topic.lock();
                if let Some(meta) = ring.stream_mut() {
                    meta.forks = meta.forks.saturating_sub(1);
                    if meta.forks == 0 && meta.soft_deleted {
                        next = self.remove_locked(&topic, &mut ring);
                    }
                }
            }
            topic.wake();
        }
    }

    /// Appends `frame` (none for a close without data) to the stream of
    /// `name` if its rules admit `write`. `frame` is what the body parsed
    /// to for the request's content type (its error is only reported when
    /// the rules that come first admit the write). With a store (disk),
    /// answers once the append is durable.
    pub(crate) async fn append_stream(
        &self,
        name: &TopicName,
        write: &Write<'_>,
        frame: Result<Option<Bytes>, JsonError>,
    ) -> Result<Appended, StreamError> {
        self.ready_stream(name).await?;
        let now = now_ms();
        let memory = self.store().is_memory();
        let sent = self.with_stream(name, |topic, ring| {
            if !memory && let Ok(frame) = &frame {
                // The store decides, on its copy, which has every write
                // before this one (the ring's lags until they are durable:
                // a producer's next append may be on its way there).
                let owned = write.to_owned();
                let deliver = deliver_append(topic.clone(), owned.clone(), frame.clone(), now);
                let op = StreamOp::Append {
                    write: owned,
                    frame: frame.clone(),
                    now_ms: now,
                };
                return Ok(Err(self.send(topic, op, deliver)));
            }
            let meta = ring.stream().expect("live");
            let verdict = meta.admit(write, now);
            let producer = match verdict {
                Verdict::Accepted { producer } => producer,
                Verdict::Duplicate { .. } => {
                    let c = topic.counters();
                    c.durable_duplicates.fetch_add(1, Ordering::Relaxed);
                    return answer(verdict, tail(ring, meta), meta.is_closed()).map(Ok);
                }
                verdict => return answer(verdict, tail(ring, meta), meta.is_closed()).map(Ok),
            };
            // With a store, only a body that cannot be framed gets here:
            // refused if the rules that come first admit it.
            let frame = frame.map_err(StreamError::Json)?;
            topic.push_locked(ring, frame);
            let meta = ring.stream_mut().expect("live");
            meta.commit(write, producer, now);
            topic.wake();
            let c = topic.counters();
            c.durable_appends.fetch_add(1, Ordering::Relaxed);
            let meta = ring.stream().expect("live");
            Ok(Ok(Appended::Fresh {
                tail: tail(ring, meta),
                closed: meta.is_closed(),
            }))
        });
        let appended = match sent {
            Ok(Ok(appended)) => Ok(appended),
            Ok(Err(reply)) => match reply.wait().await.map_err(store_error)? {
                StreamDone::Appended {
                    verdict,
                    seq,
                    generation,
                    closed,
                } => answer(verdict, Offset { generation, seq }, closed),
                _ => Err(StreamError::NotFound),
            },
            Err(e) => Err(e),
        };
        // Streams count toward the hub's bytes like any topic.
        self.enforce_total_bytes();
        appended
    }

    /// The stream's state, without renewing its TTL (`HEAD`).
    pub(crate) async fn stream_status(&self, name: &TopicName) -> Result<Status, StreamError> {
        self.ready_stream(name).await?;
        self.local_stream_status(name)
    }

    /// [`Hub::stream_status`] of the stream as this node has it (all of
    /// them, unless the store is shared: see [`Hub::ready_stream`]).
    pub(crate) fn local_stream_status(&self, name: &TopicName) -> Result<Status, StreamError> {
        self.with_stream(name, |_, ring| {
            Ok(status(ring, ring.stream().expect("live")))
        })
    }

    /// Deletes the stream of `name`; with live forks it only hides it.
    /// With a store (disk), the ring changes once the deletion is durable,
    /// and then it answers: a deletion that fails changes nothing.
    pub(crate) async fn delete_stream(&self, name: &TopicName) -> Result<(), StreamError> {
        self.ready_stream(name).await?;
        if !self.store().is_memory() {
            return self.delete_stored_stream(name).await;
        }
        let mut released = None;
        self.with_stream(name, |topic, ring| {
            let meta = ring.stream_mut().expect("live");
            if meta.forks > 0 {
                meta.soft_deleted = true;
            } else {
                released = self.remove_locked(topic, ring);
            }
            topic.wake();
            Ok(())
        })?;
        if let Some(parent) = released {
            self.release_fork_of(parent);
        }
        Ok(())
    }

    async fn delete_stored_stream(&self, name: &TopicName) -> Result<(), StreamError> {
        let (reply, parent) = self.with_stream(name, |topic, ring| {
            let meta = ring.stream().expect("live");
            let (generation, hide) = (meta.generations.own, meta.forks > 0);
            let parent = if hide { None } else { meta.parent.clone() };
            let t = topic.clone();
            let deliver: StreamDeliver = Box::new(move |done| {
                if !matches!(done, StreamDone::Done) {
                    return;
                }
                let mut ring = t.lock();
                let Some(meta) = ring.stream_mut() else {
                    return;
                };
                if meta.generations.own != generation {
                    return;
                }
                if hide {
                    meta.soft_deleted = true;
                } else {
                    unlink_locked(&t, &mut ring);
                }
                drop(ring);
                t.wake();
            });
            let op = if hide {
                StreamOp::Hide
            } else {
                StreamOp::Delete
            };
            Ok((self.send(topic, op, deliver), parent))
        })?;
        match reply.wait().await.map_err(store_error)? {
            StreamDone::Done => {}
            _ => return Err(StreamError::NotFound),
        }
        if let Some(parent) = parent {
            self.release_fork_of(parent);
        }
        Ok(())
    }

    /// Reads the messages after `start`, at most `max_bytes` (but at
    /// least one message), and renews the stream's TTL.
    pub(crate) async fn read_stream(
        &self,
        name: &TopicName,
        start: Start,
        max_bytes: usize,
    ) -> Result<Chunk, StreamError> {
        match self.try_read_stream(name, start, max_bytes)? {
            Catchup::Ready(chunk) => Ok(chunk),
            Catchup::Stored(read) => read.finish().await,
        }
    }

    /// [`Hub::read_stream`], answered at once when the ring has the
    /// messages; else what to finish with the store.
    pub(crate) fn try_read_stream(
        &self,
        name: &TopicName,
        start: Start,
        max_bytes: usize,
    ) -> Result<Catchup, StreamError> {
        let sync = self.store().loads_streams();
        match self.read_with(name, start, max_bytes) {
            // Not loaded here, or an offset this node has not seen: the
            // store may know more (Redis).
            Err(
                e @ (StreamError::NotFound | StreamError::OffsetGone | StreamError::OffsetUnknown),
            ) if sync => Ok(Catchup::Stored(StoredRead(Stored::Sync {
                hub: self.clone(),
                name: name.clone(),
                start,
                max_bytes,
                load: matches!(e, StreamError::NotFound),
            }))),
            other => other,
        }
    }

    /// [`Hub::try_read_stream`] of the stream as this node has it.
    fn read_with(
        &self,
        name: &TopicName,
        start: Start,
        max_bytes: usize,
    ) -> Result<Catchup, StreamError> {
        self.with_stream(name, |topic, ring| {
            let meta = ring.stream().expect("live");
            let first = first_kept(topic, ring);
            let last = ring.latest();
            let after = match start {
                Start::Beginning => first - 1,
                Start::Now => last,
                Start::At(o) => meta
                    .generations
                    .resolve(o, first, last)
                    .map_err(|e| match e {
                        OffsetError::Gone => StreamError::OffsetGone,
                        OffsetError::Unknown => StreamError::OffsetUnknown,
                    })?,
            };
            let in_ring = ring.oldest().unwrap_or(ring.next_seq());
            let generation = meta.generations.own;
            let (closed, content_type) = (meta.is_closed(), meta.config.content_type.clone());
            self.touch(topic, ring);
            if after + 1 < in_ring
                && let Some(history) = topic.history()
            {
                return Ok(Catchup::Stored(StoredRead(Stored::History(HistoryRead {
                    history: history.clone(),
                    epoch: ring.epoch(),
                    after,
                    count: usize::try_from((in_ring - 1 - after).min(MAX_READ_MESSAGES))
                        .unwrap_or(usize::MAX),
                    max_bytes,
                    last,
                    generation,
                    closed,
                    content_type,
                }))));
            }
            let mut frames = Vec::new();
            if after < last {
                frames = vec![
                    Bytes::new();
                    usize::try_from((last - after).min(MAX_READ_MESSAGES))
                        .unwrap_or(usize::MAX)
                ];
                let (n, _) = ring
                    .frames(after + 1, &mut frames, max_bytes)
                    .map_err(|_| StreamError::OffsetGone)?;
                frames.truncate(n);
            }
            let next = after + frames.len() as u64;
            Ok(Catchup::Ready(Chunk {
                frames,
                next: Offset {
                    generation,
                    seq: next,
                },
                up_to_date: next == last,
                closed,
                content_type,
            }))
        })
    }

    /// Waits until messages follow `after`, the stream closes, or
    /// `deadline`; renews the TTL when it returns.
    pub(crate) async fn wait_stream(
        &self,
        name: &TopicName,
        after: Offset,
        deadline: Instant,
    ) -> Result<Waited, StreamError> {
        let topic = self.stream_topic(name)?.ok_or(StreamError::NotFound)?;
        loop {
            let notified = topic.notify().notified();
            let state = self.with_stream(name, |topic, ring| {
                let latest = ring.latest();
                let meta = ring.stream_mut().expect("live");
                if meta.generations.own != after.generation {
                    // Deleted and created again while the reader waited.
                    return Err(StreamError::OffsetGone);
                }
                if latest > after.seq {
                    self.touch(topic, ring);
                    return Ok(Some(Waited::Data));
                }
                if meta.is_closed() {
                    return Ok(Some(Waited::Closed));
                }
                Ok(None)
            })?;
            if let Some(w) = state {
                return Ok(w);
            }
            if topic.is_closed() {
                return Err(HubError::Closed.into());
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.with_stream(name, |topic, ring| {
                        self.touch(topic, ring);
                        Ok(())
                    })?;
                    return Ok(Waited::TimedOut);
                }
            }
        }
    }

    /// Starts, once per hub, the task that deletes expired streams every
    /// [`SWEEP_PERIOD`] (it holds the hub weakly: it ends with it). Outside
    /// a runtime, does nothing (a later call starts it).
    fn sweep_in_background(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let hub = Hub { inner };
                if hub.is_closed() {
                    return;
                }
                hub.sweep_expired_streams();
            }
        });
    }

    /// Deletes every expired stream that no fork holds (a source with
    /// forks is hidden instead); returns how many. Streams are also
    /// checked whenever they are used, so this only frees the memory of
    /// streams nobody asks for.
    pub(crate) fn sweep_expired_streams(&self) -> usize {
        let names: Vec<TopicName> = self
            .read_topics()
            .keys()
            .filter(|n| path::is_stream_topic(n))
            .cloned()
            .collect();
        let now = now_ms();
        let mut swept = 0;
        for name in names {
            let Some(topic) = self.read_topics().get(&name).cloned() else {
                continue;
            };
            let mut released = None;
            {
                let mut ring = topic.lock();
                let expired = ring
                    .stream()
                    .is_some_and(|m| m.is_expired(now) && !m.soft_deleted);
                if expired
                    && self
                        .check_live(&topic, &mut ring, now, &mut released)
                        .is_err()
                {
                    swept += 1;
                }
            }
            if let Some(parent) = released {
                self.release_fork_of(parent);
            }
        }
        swept
    }

    /// Puts the streams a store has (disk) into their topics, at startup:
    /// pinned, with their fork counts rebuilt; a source hidden under forks
    /// that are all gone is deleted now.
    pub(crate) fn load_streams(&self) {
        let stored = self.store().streams();
        if stored.is_empty() {
            return;
        }
        let mut forks: std::collections::HashMap<TopicName, u32> = Default::default();
        let mut expiring = false;
        for (_, meta) in &stored {
            raise_generation_floor(meta.generations.own);
            if let Some(parent) = &meta.parent {
                *forks.entry(parent.clone()).or_default() += 1;
            }
            expiring |= meta.config.expiry != Expiry::Never;
        }
        for (name, mut meta) in stored {
            let Some(topic) = TopicName::new(&*name)
                .ok()
                .and_then(|t| self.read_topics().get(&t).cloned())
            else {
                tracing::warn!(topic = &*name, "a stored stream whose topic is not open");
                continue;
            };
            meta.forks = forks.get(topic.name()).copied().unwrap_or(0);
            let mut ring = topic.lock();
            ring.set_stream(Some(meta));
            topic.attach();
            let c = topic.counters();
            c.durable_streams.fetch_add(1, Ordering::Relaxed);
            let orphan = ring
                .stream()
                .is_some_and(|m| m.soft_deleted && m.forks == 0);
            if orphan {
                let _ = self.remove_locked(&topic, &mut ring);
            }
        }
        if expiring {
            self.sweep_in_background();
        }
    }
}

/// Durable Streams shared through a store (Redis): loading, catching up,
/// and what the store learns of other nodes' writes.
impl Hub {
    /// Makes sure this node has the stream of `name` if the store does
    /// (Redis; the other stores have every stream already). Does nothing
    /// when the stream is loaded or does not exist.
    pub(crate) async fn ready_stream(&self, name: &TopicName) -> Result<(), StreamError> {
        if !self.store().loads_streams() {
            return Ok(());
        }
        if self.is_closed() {
            return Err(HubError::Closed.into());
        }
        let loaded = self.read_topics().get(name).cloned();
        if loaded.is_some_and(|t| t.lock().stream().is_some()) {
            return Ok(());
        }
        let tail = self.inner.config.buffer;
        match self.store().load_stream(name.as_str(), tail).await {
            Ok(Some(loaded)) => self.install_loaded(name, loaded),
            Ok(None) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    /// Puts a stream loaded from the store into its topic (unless another
    /// load did first), pinned, and follows it.
    fn install_loaded(&self, name: &TopicName, loaded: LoadedStream) -> Result<(), StreamError> {
        raise_generation_floor(loaded.meta.generations.own);
        let mut attempts = LOOKUP_ATTEMPTS;
        let topic = loop {
            let topic = self.topic(name)?;
            if !topic.is_closed() {
                break topic;
            }
            attempts -= 1;
            if self.is_closed() || attempts == 0 {
                return Err(HubError::Closed.into());
            }
        };
        let mut ring = topic.lock();
        if ring.stream().is_none() && !topic.is_closed() {
            let LoadedStream {
                meta,
                first,
                last,
                tail,
            } = loaded;
            if let Some(history) = topic.history() {
                history.set_first(first);
            }
            topic.clear_locked(&mut ring, last + 1 - tail.len() as u64);
            topic.push_locked(&mut ring, tail);
            let (generation, closed) = (meta.generations.own, meta.is_closed());
            ring.set_stream(Some(meta));
            topic.attach();
            let c = topic.counters();
            c.durable_streams.fetch_add(1, Ordering::Relaxed);
            self.store()
                .follow_stream(topic.name(), generation, last, closed);
        }
        drop(ring);
        topic.wake();
        self.enforce_total_bytes();
        Ok(())
    }

    /// Brings this node's stream of `name` up to the store's: the messages
    /// it lacks, or (deleted, created again) the store's stream instead.
    async fn refresh_stream(&self, name: &TopicName) -> Result<(), StreamError> {
        let head = self
            .store()
            .stream_head(name.as_str())
            .await
            .map_err(store_error)?;
        let topic = self.read_topics().get(name).cloned();
        let local = topic
            .as_ref()
            .and_then(|t| t.lock().stream().map(|m| m.generations.own));
        match (head, local, topic) {
            (Some((g, _)), Some(l), _) if g == l => self
                .store()
                .catch_up_stream(name.as_str())
                .await
                .map_err(store_error),
            (_, Some(l), Some(topic)) => {
                self.stream_changed(&topic, l, StreamChange::Gone);
                self.ready_stream(name).await
            }
            _ => self.ready_stream(name).await,
        }
    }

    /// Renews the locked ring's stream's TTL (and tells a shared store).
    fn touch(&self, topic: &Topic, ring: &mut Ring) {
        let now = now_ms();
        let Some(meta) = ring.stream_mut() else {
            return;
        };
        meta.touched_ms = now;
        if let Expiry::Ttl(secs) = meta.config.expiry {
            let generation = meta.generations.own;
            self.store()
                .touch_stream(topic.name(), generation, secs, now);
        }
    }

    /// Entries of the stream of `topic` (`generation`) read from the store:
    /// the messages the ring lacks, in order, and a close.
    pub(crate) fn ingest_stream(
        &self,
        topic: &Topic,
        generation: u64,
        entries: Vec<(u64, Option<Bytes>, bool)>,
    ) {
        let mut ring = topic.lock();
        if ring
            .stream()
            .is_none_or(|m| m.generations.own != generation)
        {
            return;
        }
        let mut changed = false;
        for (seq, message, closes) in entries {
            if let Some(frame) = message {
                if seq > ring.next_seq() {
                    // A gap: the next catch-up fills it.
                    tracing::debug!(topic = topic.name(), seq, "a stream's entries skip ahead");
                    break;
                }
                if seq == ring.next_seq() {
                    topic.push_locked(&mut ring, Some(frame));
                    changed = true;
                }
            } else if seq > ring.latest() {
                break;
            }
            let meta = ring.stream_mut().expect("checked");
            if closes && meta.closed.is_none() {
                meta.closed = Some(None);
                changed = true;
            }
        }
        drop(ring);
        if changed {
            topic.wake();
            self.enforce_total_bytes();
        }
    }

    /// Another node changed the stream of `topic` (`generation`).
    pub(crate) fn stream_changed(&self, topic: &Topic, generation: u64, change: StreamChange) {
        let mut released = None;
        {
            let mut ring = topic.lock();
            let Some(meta) = ring.stream_mut() else {
                return;
            };
            if meta.generations.own != generation {
                return;
            }
            match change {
                StreamChange::Gone => {
                    // Only this node's copy: the store's is gone already.
                    released = unlink_locked(topic, &mut ring).and_then(|m| m.parent);
                }
                StreamChange::Hidden => meta.soft_deleted = true,
                StreamChange::Touched(ms) => meta.touched_ms = meta.touched_ms.max(ms),
                StreamChange::Trimmed(first) => {
                    if let Some(history) = topic.history()
                        && first > history.first()
                    {
                        history.set_first(first);
                        topic.drop_locked(&mut ring, first);
                    }
                }
            }
        }
        topic.wake();
        if let Some(parent) = released {
            self.release_fork_of(parent);
        }
    }
}

/// What `install_locked` did: answered (memory, or the stream exists), or
/// sent the create to the store (pinned; the ring gets it once durable).
enum Installed {
    Done((bool, Status)),
    Sent {
        topic: Arc<Topic>,
        reply: StreamReply,
        status: Status,
    },
}

/// A new stream from a create: its metadata, its first position and its
/// first messages (inherited, the sub-offset's prefix, the body).
fn build(
    create: Create,
    from: Option<ForkFrom>,
    framed: Result<Option<Bytes>, JsonError>,
    now: u64,
) -> Result<(StreamMeta, u64, Vec<Bytes>), StreamError> {
    let mut config = create.config;
    let parent = from.as_ref().map(|f| f.parent.clone());
    let (generations, first, mut frames, prefix) = match from {
        Some(f) => {
            if config.content_type.is_empty() {
                config.content_type = f.content_type;
            }
            if config.expiry == Expiry::Never {
                config.expiry = f.expiry;
            }
            let own = new_generation();
            let seq = f.first + f.frames.len() as u64 - 1;
            (f.generations.fork(own, seq), f.first, f.frames, f.prefix)
        }
        None => (Generations::new(new_generation()), 1, Vec::new(), None),
    };
    let body = framed.map_err(StreamError::Json)?;
    frames.extend(prefix);
    frames.extend(body);
    let mut meta = StreamMeta::new(config, generations, create.closed, now);
    meta.parent = parent;
    Ok((meta, first, frames))
}

/// Takes the locked ring's stream out: its messages go, its topic is no
/// longer pinned. Returns its metadata, if it had a stream.
fn unlink_locked(topic: &Topic, ring: &mut Ring) -> Option<StreamMeta> {
    let meta = ring.take_stream()?;
    let next = ring.next_seq();
    topic.clear_locked(ring, next);
    topic.detach();
    let c = topic.counters();
    c.durable_streams.fetch_sub(1, Ordering::Relaxed);
    Some(meta)
}

/// Applies a durable append to the hub's copy of its stream (see
/// `store::streams`).
fn deliver_append(
    topic: Arc<Topic>,
    write: OwnedWrite,
    frame: Option<Bytes>,
    now: u64,
) -> StreamDeliver {
    Box::new(move |done| {
        let StreamDone::Appended {
            verdict,
            seq,
            generation,
            ..
        } = done
        else {
            return;
        };
        let producer = match verdict {
            Verdict::Accepted { producer } => producer.clone(),
            Verdict::Duplicate { .. } => {
                let c = topic.counters();
                c.durable_duplicates.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Verdict::Refused(_) => return,
        };
        let mut ring = topic.lock();
        if ring
            .stream()
            .is_none_or(|m| m.generations.own != *generation)
        {
            // Deleted meanwhile.
            return;
        }
        if let Some(frame) = frame {
            match seq.cmp(&ring.next_seq()) {
                std::cmp::Ordering::Equal => {
                    topic.push_locked(&mut ring, Some(frame));
                }
                // Read back from the store first (Redis).
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Greater => {
                    tracing::error!(
                        topic = topic.name(),
                        ring = ring.next_seq(),
                        store = seq,
                        "a stream's ring and store disagree: message not cached"
                    );
                    return;
                }
            }
        }
        let meta = ring.stream_mut().expect("checked");
        meta.commit(&write.as_write(), producer, now);
        let c = topic.counters();
        c.durable_appends.fetch_add(1, Ordering::Relaxed);
        drop(ring);
        topic.wake();
    })
}

/// The last generation given (see [`new_generation`]).
static LAST_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Keeps generations above `generation` (one a store already has).
fn raise_generation_floor(generation: u64) {
    LAST_GENERATION.fetch_max(generation, Ordering::Relaxed);
}

/// The first `n` bytes (or, for JSON, values) of a source's message: the
/// first message of a fork at a sub-offset.
fn sub_prefix(whole: &Bytes, n: u64, json: bool) -> Result<Bytes, StreamError> {
    let too_far = StreamError::ForkPoint("the fork sub-offset is past the end of the message");
    if !json {
        let n = usize::try_from(n).map_err(|_| too_far)?;
        return if n <= whole.len() {
            Ok(whole.slice(..n))
        } else {
            Err(StreamError::ForkPoint(
                "the fork sub-offset is past the end of the message",
            ))
        };
    }
    let array = json::array(whole);
    let values: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&array)
        .map_err(|_| StreamError::ForkPoint("the source message is not JSON"))?;
    let n = usize::try_from(n)
        .map_err(|_| StreamError::ForkPoint("the fork sub-offset is too large"))?;
    if n > values.len() {
        return Err(too_far);
    }
    let mut out = Vec::new();
    for v in &values[..n] {
        out.extend_from_slice(v.get().as_bytes());
        out.push(b',');
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::durable::meta::{ForkPoint, ProducerClaim};

    fn config(ct: &str) -> Config {
        Config {
            content_type: ct.into(),
            expiry: Expiry::Never,
            fork: None,
        }
    }

    async fn create(hub: &Hub, name: &str, ct: &str, body: &str) -> Status {
        let create = Create {
            config: config(ct),
            closed: false,
            body: Bytes::copy_from_slice(body.as_bytes()),
        };
        let (new, status) = hub.create_stream(&topic(name), create).await.unwrap();
        assert!(new);
        status
    }

    fn topic(name: &str) -> TopicName {
        path::topic_of(name).unwrap()
    }

    async fn text(hub: &Hub, name: &str) -> String {
        let chunk = hub
            .read_stream(&topic(name), Start::Beginning, usize::MAX)
            .await
            .unwrap();
        let bytes: Vec<u8> = chunk.frames.iter().flat_map(|f| f.to_vec()).collect();
        String::from_utf8(bytes).unwrap()
    }

    /// Producers racing on threads, each retrying every append once (as a
    /// client whose answer was lost would): every append lands once, in
    /// each producer's order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_producers_that_retry_append_each_batch_once() {
        let hub = Hub::new();
        create(&hub, "race", "text/plain", "").await;
        let mut tasks = Vec::new();
        for p in 0..4 {
            let hub = hub.clone();
            tasks.push(tokio::spawn(async move {
                let mut dups = 0;
                for seq in 0..200u64 {
                    let write = Write {
                        content_type: Some("text/plain"),
                        has_body: true,
                        producer: Some(ProducerClaim {
                            id: format!("p{p}").into(),
                            epoch: 0,
                            seq,
                        }),
                        ..Write::default()
                    };
                    let frame = Bytes::from(format!("{p}:{seq};"));
                    for _ in 0..2 {
                        match hub
                            .append_stream(&topic("race"), &write, Ok(Some(frame.clone())))
                            .await
                        {
                            Ok(Appended::Fresh { .. }) => {}
                            Ok(Appended::Duplicate { last_seq, .. }) => {
                                assert_eq!(last_seq, seq);
                                dups += 1;
                            }
                            Err(e) => panic!("{e:?}"),
                        }
                        tokio::task::yield_now().await;
                    }
                }
                dups
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200, "every retry is a duplicate");
        }
        let all = text(&hub, "race").await;
        for p in 0..4 {
            let mine: Vec<u64> = all
                .split(';')
                .filter_map(|m| m.strip_prefix(&format!("{p}:")))
                .map(|s| s.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..200).collect::<Vec<_>>(), "producer {p}");
        }
        assert_eq!(hub.stats().durable_appends, 800);
    }

    /// A clock set back below a generation a store has (loaded at
    /// startup) does not make a new create repeat or go below it.
    #[test]
    fn generations_stay_above_a_stored_one() {
        let stored = new_generation() + 3_600_000_000;
        raise_generation_floor(stored);
        let next = new_generation();
        assert!(next > stored, "{next} after {stored}");
        assert!(new_generation() > next);
    }

    #[tokio::test]
    async fn a_source_deleted_under_its_forks_goes_with_the_last_one() {
        let hub = Hub::new();
        let source = create(&hub, "src", "text/plain", "abc").await;
        let fork = async |name: &str, sub: u64| {
            let create = Create {
                config: Config {
                    fork: Some(ForkPoint {
                        source: "/v1/stream/src".into(),
                        topic: topic("src"),
                        offset: Some(Offset::ZERO.to_string().into()),
                        sub_offset: sub,
                    }),
                    ..config("")
                },
                closed: false,
                body: Bytes::new(),
            };
            hub.create_stream(&topic(name), create).await.unwrap().1
        };
        let f1 = fork("f1", 2).await;
        fork("f2", 0).await;
        assert_eq!(text(&hub, "f1").await, "ab");
        assert_eq!(&*f1.content_type, "text/plain", "a fork inherits the type");
        assert_ne!(f1.tail.generation, source.tail.generation);
        hub.delete_stream(&topic("src")).await.unwrap();
        assert!(matches!(
            hub.stream_status(&topic("src")).await,
            Err(StreamError::Gone)
        ));
        assert_eq!(hub.stats().durable_streams, 3);
        hub.delete_stream(&topic("f1")).await.unwrap();
        assert!(matches!(
            hub.stream_status(&topic("src")).await,
            Err(StreamError::Gone)
        ));
        hub.delete_stream(&topic("f2")).await.unwrap();
        assert!(matches!(
            hub.stream_status(&topic("src")).await,
            Err(StreamError::NotFound)
        ));
        assert_eq!(hub.stats().durable_streams, 0);
    }

    #[tokio::test]
    async fn expired_streams_are_swept_and_unpinned() {
        let hub = Hub::builder().max_topics(1).build();
        let create = Create {
            config: Config {
                expiry: Expiry::At {
                    ms: now_ms() - 1,
                    text: "past".into(),
                },
                ..config("text/plain")
            },
            closed: false,
            body: Bytes::new(),
        };
        hub.create_stream(&topic("old"), create).await.unwrap();
        assert_eq!(hub.sweep_expired_streams(), 1);
        assert_eq!(hub.stats().durable_streams, 0);
        // Its topic no longer holds the hub's only place.
        self::create(&hub, "new", "text/plain", "").await;
    }

    /// Streams count toward the hub's byte bound: the largest loses its
    /// oldest messages, whose offsets are then gone.
    #[tokio::test]
    async fn streams_stay_under_the_hubs_byte_bound() {
        let hub = Hub::builder().max_total_bytes(64 << 10).build();
        let first = create(&hub, "big", "application/octet-stream", "").await;
        let write = Write {
            content_type: Some("application/octet-stream"),
            has_body: true,
            ..Write::default()
        };
        for _ in 0..100 {
            let frame = Bytes::from(vec![7u8; 1024]);
            hub.append_stream(&topic("big"), &write, Ok(Some(frame)))
                .await
                .unwrap();
        }
        assert!(hub.stats().retained_bytes <= 64 << 10);
        let gone = hub
            .read_stream(&topic("big"), Start::At(first.tail), usize::MAX)
            .await;
        assert!(matches!(gone, Err(StreamError::OffsetGone)), "{gone:?}");
        let rest = hub
            .read_stream(&topic("big"), Start::Beginning, usize::MAX)
            .await
            .unwrap();
        assert_eq!(rest.next.seq, 100);
        assert!(rest.frames.len() < 100);
    }
}
