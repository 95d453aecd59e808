//! One stream of several topics: [`MultiEventStream`], and the hub's
//! methods that open it.
//!
//! ## What goes out
//!
//! Every event carries its topic in its type: an event of topic `chat`
//! published without a type goes out as `event: chat`, one of type
//! `update` as `event: chat/update` (topic names cannot contain `/`), so a
//! page tells topics apart with the plain `EventSource` API
//! (`addEventListener("chat", ...)`). Its `id:` is a [`MultiId`]: the
//! position of every topic of the stream, so one `Last-Event-ID` resumes
//! them all. The data lines are the ones encoded once at publish time,
//! shared: large ones are handed on as a slice of the shared frame between
//! this stream's own `event:` and `id:` lines, small ones (up to
//! [`COPY_UP_TO`] bytes, less than the cost of one more write) are copied
//! into the frame being built.
//!
//! ## Fairness
//!
//! Each topic has its own wake-up (a waker that marks the topic, then wakes
//! the stream's task), so a publish makes the stream look at that topic
//! only. Marked topics take turns, round robin from where the last frame
//! stopped; a turn sends at most [`TURN_EVENTS`] events, and a frame ends
//! at the hub's frame size. A topic that still has events after its turn
//! stays marked and waits for the others: a flood on one topic delays an
//! event of another by at most one turn of each busy topic.
//!
//! ## Signals
//!
//! `resync` is per topic: its JSON names the topic first
//! (`{"topic":"chat","reason":"evicted",...}`) and its ids are that topic's
//! own; the event's `id:` is the stream's. `reauth` is one per stream, with
//! the stream's id as `lastEventId`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::core::event::{checkpoint_frame, frame_parts, reauth_frame, resync_frame};
use crate::core::id::{Epoch, EventId};
use crate::core::multi_id::{MultiId, MultiIdError, MultiIdText};
use crate::core::resync::{Greeting, Resync, ResyncReason, locate, oldest_retained};
use crate::core::ring::{Read, Ring};
use crate::core::{IntoTopic, TopicName};
use crate::hub::stream::{KeepAlive, StreamParams, expiry_timer, retry_line};
use crate::hub::sync::{Arc, OwnedNotified};
use crate::hub::topic::Topic;
use crate::hub::{Hub, HubError, Subscribe, Subscribing};

/// Most events one topic sends in its turn before the next topic's turn.
pub const TURN_EVENTS: usize = 16;

/// Data lines up to this many bytes are copied into the frame being built;
/// longer ones go out as a slice of the shared frame, uncopied.
pub const COPY_UP_TO: usize = 512;

/// A stream of several topics: an [`http_body::Body`] that writes their
/// events as one `text/event-stream`.
///
/// It sends what an [`EventStream`](crate::EventStream) sends (a `retry:`
/// hint, a checkpoint or the resumed events, then live events, keep-alive
/// comments, `reauth` when its credentials expire), for every topic, with
/// three differences:
/// - an event's type is its topic: `chat` for an event of topic `chat`
///   without a type, `chat/update` for one of type `update`;
/// - its `id:` is a [`MultiId`], the position of every topic, so a client
///   that resumes with it gets, for each topic, exactly the events after
///   it (or that topic's `resync`);
/// - a `resync` names its topic: `{"topic":"chat","reason":...}`.
///
/// Topics take turns: each topic with events ready sends at most
/// [`TURN_EVENTS`] of them before the next one's turn (round robin), and a
/// frame ends at the hub's frame size, so a flood on one topic delays an
/// event of another by at most one turn of each busy topic. Data lines
/// longer than [`COPY_UP_TO`] bytes are handed on as a slice of the frame
/// every subscriber shares, between this stream's own `event:` and `id:`
/// lines; shorter ones are copied into the frame being built (cheaper than
/// one more piece to write). Get one from [`Hub::subscribe_many`].
///
/// # Examples
///
/// ```
/// use http_body_util::BodyExt;
/// use ssehub::{Event, Hub, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Hub::builder().retry(None).build();
/// let mut stream = hub.subscribe_many(["chat", "news"], Subscribe::new().limit(2))?;
/// hub.publish("news", Event::new("extra")).await?;
/// hub.publish("chat", Event::new("hi").with_type("message")?).await?;
///
/// let mut text = Vec::new();
/// while let Some(frame) = stream.frame().await {
///     text.extend_from_slice(&frame?.into_data().unwrap());
/// }
/// // Ids start with a check of the stream's topics, then the positions.
/// let c = stream.position().to_string().split_once('_').unwrap().0.to_owned();
/// let e = hub.epoch();
/// assert_eq!(
///     String::from_utf8(text)?,
///     format!(
///         "id: {c}_{e}-0.0\n\n\
///          event: chat/message\ndata: hi\nid: {c}_{e}-1.0\n\n\
///          event: news\ndata: extra\nid: {c}_{e}-1.1\n\n"
///     )
/// );
/// # Ok(())
/// # }
/// ```
pub struct MultiEventStream {
    /// One per topic, in the order the client named them.
    members: Box<[Member]>,
    /// Which members were woken since the stream last looked.
    wake: Arc<WakeSet>,
    /// Members to look at: woken, or left with events after their turn.
    ready: Box<[u64]>,
    /// Where the next round of turns starts.
    next_turn: usize,
    /// The stream's position, as the text of its `id:`.
    id: MultiIdText,
    state: State,
    /// Frames to send before anything else, in order.
    pending: VecDeque<Bytes>,
    /// Events left to send before the stream ends, `None` for no limit.
    remaining: Option<u64>,
    max_frame_bytes: usize,
    keep_alive: Option<KeepAlive>,
    /// When the credentials the stream was opened with expire.
    expiry: Option<Pin<Box<Sleep>>>,
}

enum State {
    /// Some topics' histories are still being loaded (Redis): the stream
    /// starts once all are.
    Loading {
        last_event_id: Option<Last>,
        rewind: u64,
        retry_ms: Option<u64>,
    },
    Live,
    Done,
}

/// One topic of the stream: a cursor, as an [`EventStream`](crate::EventStream) has.
struct Member {
    topic: Arc<Topic>,
    /// The history `cursor` belongs to.
    epoch: Epoch,
    /// The next event to send.
    cursor: u64,
    /// Events before this one were published before the subscription.
    replay_end: u64,
    /// Armed before each look at the ring, polled with `waker`.
    wait: Pin<Box<OwnedNotified>>,
    /// Marks this member in the stream's [`WakeSet`], then wakes the task.
    waker: Waker,
    /// Reading events older than the ring from the store.
    store: Option<Box<StoreRead>>,
}

/// A read of history beyond the ring, and what it returned not sent yet.
struct StoreRead {
    read: Option<tokio::task::JoinHandle<Read>>,
    /// Frames of events, back to back.
    backlog: Bytes,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.topic.detach();
    }
}

/// The members woken since the stream last looked, and the stream's task.
struct WakeSet {
    marks: Box<[AtomicU64]>,
    task: AtomicWaker,
}

struct MemberWake {
    set: Arc<WakeSet>,
    index: usize,
}

impl Wake for MemberWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.set.marks[self.index / 64].fetch_or(1 << (self.index % 64), Ordering::AcqRel);
        self.set.task.wake();
    }
}

/// What a member's turn found.
enum Turn {
    /// It sent what it had (or nothing) and waits for a publish.
    Idle,
    /// It may have more: it stays marked.
    More,
    /// Its topic was closed (the hub shut down): the stream ends.
    Closed,
}

/// The frame being built from the members' turns.
struct Out {
    buf: BytesMut,
    /// Finished pieces when a large event's data goes out uncopied.
    pieces: Vec<Bytes>,
    len: usize,
    /// An event did not fit: the frame is as large as it gets.
    full: bool,
}

impl Out {
    fn new() -> Self {
        Out {
            buf: BytesMut::new(),
            pieces: Vec::new(),
            len: 0,
            full: false,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
        self.len += bytes.len();
    }

    /// Hands on `shared` as its own piece.
    fn share(&mut self, shared: Bytes) {
        if !self.buf.is_empty() {
            self.pieces.push(self.buf.split().freeze());
        }
        self.len += shared.len();
        self.pieces.push(shared);
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl MultiEventStream {
    /// Counts one stream on `members`' topics (already attached to them).
    fn new(members: Vec<(Arc<Topic>, Epoch, u64)>, params: StreamParams, state: State) -> Self {
        let n = members.len();
        let wake = Arc::new(WakeSet {
            marks: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            task: AtomicWaker::new(),
        });
        let members: Box<[Member]> = members
            .into_iter()
            .enumerate()
            .map(|(index, (topic, epoch, cursor))| Member {
                wait: Box::pin(topic.notify().clone().notified_owned()),
                waker: Waker::from(Arc::new(MemberWake {
                    set: wake.clone(),
                    index,
                })),
                topic,
                epoch,
                cursor,
                replay_end: 0,
                store: None,
            })
            .collect();
        members[0]
            .topic
            .counters()
            .subscribers
            .fetch_add(1, Ordering::Relaxed);
        let names: Vec<&str> = members.iter().map(|m| m.topic.name()).collect();
        let id = MultiIdText::new(
            &names,
            members.iter().map(|m| EventId::new(m.epoch, m.cursor - 1)),
        );
        let mut ready: Box<[u64]> = vec![0; n.div_ceil(64)].into_boxed_slice();
        // Every member looks at its ring once at the start.
        for i in 0..n {
            ready[i / 64] |= 1 << (i % 64);
        }
        MultiEventStream {
            members,
            wake,
            ready,
            next_turn: 0,
            id,
            state,
            pending: VecDeque::new(),
            remaining: params.limit,
            max_frame_bytes: params.max_frame_bytes,
            keep_alive: params.keep_alive.map(KeepAlive::new),
            expiry: params.expires_at.map(expiry_timer),
        }
    }

    /// The topics, in the stream's order.
    pub fn topics(&self) -> impl ExactSizeIterator<Item = &str> {
        self.members.iter().map(|m| m.topic.name())
    }

    /// The stream's position: for each topic, the id of the last event
    /// handed on (or of the position it started from). This is the `id:`
    /// of the last event sent.
    pub fn position(&self) -> MultiId {
        let names: Vec<&str> = self.topics().collect();
        MultiId::new(
            &names,
            self.members
                .iter()
                .map(|m| EventId::new(m.epoch, m.cursor - 1))
                .collect(),
        )
    }

    /// This body as a `futures` `Stream` of its data (the items never
    /// fail), as [`EventStream::into_data_stream`](crate::EventStream::into_data_stream).
    pub fn into_data_stream(self) -> http_body_util::BodyDataStream<Self> {
        http_body_util::BodyDataStream::new(self)
    }

    fn is_loading(&self) -> bool {
        matches!(self.state, State::Loading { .. })
    }

    /// Starts a stream whose topics are all primed: every member's start,
    /// and the greeting (retry hint, checkpoint or resyncs).
    fn begin(&mut self, last: Option<&Last>, rewind: u64, retry_ms: Option<u64>) {
        let mut resyncs = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            let requested = last.map(|l| match l {
                Last::Id(id) => id.ids()[i].to_string(),
                Last::Unusable(text) => text.clone(),
            });
            let ring = m.topic.lock();
            let start = locate(&ring, requested.as_deref(), rewind, m.topic.durable_first());
            m.replay_end = ring.next_seq();
            drop(ring);
            m.epoch = start.epoch;
            m.cursor = start.cursor;
            if let Greeting::Resync(r) = start.greeting {
                resyncs.push((i, r));
            }
        }
        self.id.render(
            self.members
                .iter()
                .map(|m| EventId::new(m.epoch, m.cursor - 1)),
        );
        let mut retry_ms = retry_ms;
        if last.is_none() {
            self.pending
                .push_back(checkpoint_frame(retry_ms.take(), &self.id));
        }
        for (i, r) in resyncs {
            let m = &self.members[i];
            m.topic.counters().resyncs.fetch_add(1, Ordering::Relaxed);
            let json = r.to_json_for(m.topic.name());
            self.pending
                .push_back(resync_frame(retry_ms.take(), &json, &self.id));
        }
        if let Some(ms) = retry_ms {
            self.pending.push_back(retry_line(ms));
        }
        self.state = State::Live;
    }

    /// Starts a loading stream if every topic is primed now; otherwise
    /// registers the wake-ups of those that are not.
    fn try_begin(&mut self) {
        loop {
            let mut waiting = false;
            for m in self.members.iter_mut() {
                if m.topic.is_primed() || m.topic.is_closed() {
                    continue;
                }
                waiting = true;
                let mut cx = Context::from_waker(&m.waker);
                if m.wait.as_mut().poll(&mut cx).is_ready() {
                    m.wait.set(m.topic.notify().clone().notified_owned());
                    // Primed meanwhile, perhaps: look again.
                    waiting = false;
                    break;
                }
            }
            if waiting {
                return;
            }
            if self
                .members
                .iter()
                .all(|m| m.topic.is_primed() || m.topic.is_closed())
            {
                break;
            }
        }
        let State::Loading {
            last_event_id,
            rewind,
            retry_ms,
        } = std::mem::replace(&mut self.state, State::Live)
        else {
            return;
        };
        // The retry hint is still queued if nothing was sent yet.
        let retry_ms = match self.pending.pop_front() {
            Some(_) => retry_ms,
            None => None,
        };
        self.begin(last_event_id.as_ref(), rewind, retry_ms);
    }

    fn sent(&mut self) {
        if let Some(ka) = &mut self.keep_alive {
            ka.sent();
        }
    }

    fn finish(&mut self) {
        self.state = State::Done;
        self.pending.clear();
        self.keep_alive = None;
        self.expiry = None;
    }

    /// The next member to look at from `from` on (round robin), if any.
    fn next_ready(&self, from: usize) -> Option<usize> {
        let n = self.members.len();
        let words = self.ready.len();
        // Two passes over the words: from `from` to the end, then the start.
        for step in 0..=words {
            let w = (from / 64 + step) % words;
            let mut bits = self.ready[w];
            if step == 0 {
                bits &= u64::MAX << (from % 64);
            } else if step == words {
                bits &= !(u64::MAX << (from % 64));
            }
            if bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                if i < n {
                    return Some(i);
                }
            }
        }
        None
    }

    fn unmark(&mut self, i: usize) {
        self.ready[i / 64] &= !(1 << (i % 64));
    }

    /// Appends event `frame` of member `i`, which it is at: this stream's
    /// `event:` line, the shared data lines, the stream's new `id:`.
    /// Returns `false`, and changes nothing, if that would take the frame
    /// being built over the hub's frame size (a first event always fits).
    fn put_event(&mut self, i: usize, frame: &Bytes, out: &mut Out) -> bool {
        let m = &mut self.members[i];
        let Some(parts) = frame_parts(frame) else {
            // Every frame is the encoder's: this cannot happen.
            tracing::error!(topic = m.topic.name(), "not an event frame; skipped");
            m.cursor += 1;
            self.id.set_seq(i, m.cursor - 1);
            return true;
        };
        let topic = m.topic.name().as_bytes();
        let ty = &frame[parts.event_type.clone()];
        let data_len = parts.data.len();
        // The id may grow by a digit.
        let len = 9 + topic.len() + ty.len() + data_len + 7 + self.id.as_bytes().len();
        if out.len > 0 && out.len + len > self.max_frame_bytes {
            out.full = true;
            return false;
        }
        m.cursor += 1;
        self.id.set_seq(i, m.cursor - 1);
        let copy = data_len <= COPY_UP_TO;
        out.buf.reserve(if copy { len } else { len - data_len });
        out.put(b"event: ");
        out.put(topic);
        if !ty.is_empty() {
            out.put(b"/");
            out.put(ty);
        }
        out.put(b"\n");
        if copy {
            out.put(&frame[parts.data]);
        } else {
            out.share(frame.slice(parts.data));
        }
        out.put(b"id: ");
        out.put(self.id.as_bytes());
        out.put(b"\n\n");
        true
    }

    /// A `resync` of member `i` into the frame being built.
    fn put_resync(&mut self, i: usize, resync: &Resync, out: &mut Out) {
        let m = &self.members[i];
        m.topic.counters().resyncs.fetch_add(1, Ordering::Relaxed);
        let frame = resync_frame(None, &resync.to_json_for(m.topic.name()), &self.id);
        out.put(&frame);
    }

    /// Member `i`'s topic got another history: `resync` (`epoch`), then
    /// everything retained of the new one.
    fn reset(&mut self, i: usize, out: &mut Out) {
        let topic = Arc::clone(&self.members[i].topic);
        let ring = topic.lock();
        let resync = self.reset_to(i, &ring);
        drop(ring);
        self.put_resync(i, &resync, out);
    }

    /// [`reset`](Self::reset)'s move to the ring's history, with it locked.
    fn reset_to(&mut self, i: usize, ring: &Ring) -> Resync {
        let m = &mut self.members[i];
        let retained = oldest_retained(ring, m.topic.durable_first());
        let resync = Resync {
            reason: ResyncReason::Epoch,
            requested: EventId::new(m.epoch, m.cursor - 1).to_string(),
            oldest: retained.map(|s| EventId::new(ring.epoch(), s)),
            latest: EventId::new(ring.epoch(), ring.latest()),
            missed: None,
        };
        m.epoch = ring.epoch();
        m.cursor = retained.unwrap_or(ring.next_seq());
        m.store = None;
        self.id.render(
            self.members
                .iter()
                .map(|m| EventId::new(m.epoch, m.cursor - 1)),
        );
        resync
    }

    /// Member `i`'s unsent events were overwritten: `resync` (`lagged`).
    fn lagged(&mut self, i: usize, out: &mut Out) {
        let topic = Arc::clone(&self.members[i].topic);
        let ring = topic.lock();
        // The read that found the member behind has released the lock: the
        // ring may hold another history by now, and counting what was
        // missed in it would mix the two. The change of history is what
        // the client must hear (as `EventStream` does).
        if ring.epoch() != self.members[i].epoch {
            let resync = self.reset_to(i, &ring);
            drop(ring);
            return self.put_resync(i, &resync, out);
        }
        let m = &mut self.members[i];
        let durable = m.topic.durable_first();
        let resync = Resync::lagged(&ring, m.cursor, durable);
        m.cursor = oldest_retained(&ring, durable).unwrap_or(ring.next_seq());
        drop(ring);
        m.store = None;
        self.id.set_seq(i, m.cursor - 1);
        self.put_resync(i, &resync, out);
    }

    /// Counts the `count` events member `i` just handed on.
    fn count(&mut self, i: usize, count: u64) {
        let m = &self.members[i];
        let c = m.topic.counters();
        c.delivered.fetch_add(count, Ordering::Relaxed);
        let replayed = m.replay_end.min(m.cursor).saturating_sub(m.cursor - count);
        if replayed > 0 {
            c.replayed.fetch_add(replayed, Ordering::Relaxed);
        }
        if let Some(r) = &mut self.remaining {
            *r -= count.min(*r);
        }
    }

    /// Member `i`'s turn: at most [`TURN_EVENTS`] events (and what is left
    /// of the limit and of the frame) into `out`.
    fn turn(&mut self, i: usize, out: &mut Out) -> Turn {
        let m = &mut self.members[i];
        if m.store.is_none() {
            // Armed before the looks at the topic (closed, then the ring):
            // a publish or a close after this point wakes the member.
            m.wait.set(m.topic.notify().clone().notified_owned());
        }
        if m.topic.is_closed() {
            return Turn::Closed;
        }
        let max = (TURN_EVENTS as u64).min(self.remaining.unwrap_or(u64::MAX)) as usize;
        let room = self.max_frame_bytes.saturating_sub(out.len);
        if m.store.is_some() {
            return self.turn_from_store(i, max, out);
        }
        let mut frames: [Bytes; TURN_EVENTS] = Default::default();
        let read = m
            .topic
            .read_frames(m.epoch, m.cursor, room, &mut frames[..max]);
        match read {
            Ok((n, more)) => {
                let mut sent = 0;
                while sent < n && self.put_event(i, &frames[sent], out) {
                    sent += 1;
                }
                self.count(i, sent as u64);
                if more || sent < n {
                    return Turn::More;
                }
            }
            Err(Read::Lagged { .. }) => {
                let m = &mut self.members[i];
                match m.topic.history() {
                    // Older than the ring, but the store has it.
                    Some(history) if history.first() <= m.cursor => {
                        let read = history.read(
                            m.epoch,
                            m.cursor,
                            self.remaining.unwrap_or(u64::MAX),
                            self.max_frame_bytes,
                        );
                        m.store = Some(Box::new(StoreRead {
                            read: Some(read),
                            backlog: Bytes::new(),
                        }));
                    }
                    _ => self.lagged(i, out),
                }
                return Turn::More;
            }
            Err(Read::Reset) => {
                self.reset(i, out);
                return Turn::More;
            }
            Err(_) => {}
        }
        // Caught up: wait for the next publish.
        let m = &mut self.members[i];
        let mut cx = Context::from_waker(&m.waker);
        match m.wait.as_mut().poll(&mut cx) {
            Poll::Pending => Turn::Idle,
            // Published meanwhile.
            Poll::Ready(()) => Turn::More,
        }
    }

    /// A turn of a member reading history beyond the ring: `Idle` while
    /// the read is under way (its completion wakes the member), else the
    /// events it returned, a turn's worth at a time, then the ring again.
    fn turn_from_store(&mut self, i: usize, max: usize, out: &mut Out) -> Turn {
        let m = &mut self.members[i];
        let store = m.store.as_mut().expect("reading from the store");
        if let Some(read) = &mut store.read {
            let mut cx = Context::from_waker(&m.waker);
            let result = match Pin::new(read).poll(&mut cx) {
                Poll::Pending => return Turn::Idle,
                Poll::Ready(result) => result,
            };
            store.read = None;
            // A read that failed finds nothing: what it was after is
            // announced as gone (the store gives the topic a new epoch if
            // its history is damaged).
            match result.unwrap_or(Read::Empty) {
                Read::Ready { frame, .. } => store.backlog = frame,
                Read::Reset => {
                    self.reset(i, out);
                    return Turn::More;
                }
                Read::Empty | Read::Lagged { .. } => {
                    self.lagged(i, out);
                    return Turn::More;
                }
            }
        }
        let mut sent = 0;
        while sent < max {
            let store = self.members[i]
                .store
                .as_mut()
                .expect("reading from the store");
            // A frame ends with the only empty line of its event.
            let Some(end) = memchr::memmem::find(&store.backlog, b"\n\n") else {
                break;
            };
            let frame = store.backlog.slice(..end + 2);
            if !self.put_event(i, &frame, out) {
                break;
            }
            if let Some(store) = self.members[i].store.as_mut() {
                let _ = store.backlog.split_to(end + 2);
            }
            sent += 1;
        }
        self.count(i, sent as u64);
        let m = &mut self.members[i];
        if m.store.as_ref().is_some_and(|s| s.backlog.is_empty()) {
            // Done with this read: the ring (or another read) goes on.
            m.store = None;
        }
        Turn::More
    }

    /// The next frame of events, if any is ready: members take turns.
    fn poll_events(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        for (mine, woken) in self.ready.iter_mut().zip(self.wake.marks.iter()) {
            *mine |= woken.swap(0, Ordering::AcqRel);
        }
        let mut out = Out::new();
        // Each member is looked at a bounded number of times per frame: a
        // member that stays marked without sending (a publish racing its
        // re-arming) cannot keep the task busy forever.
        let mut looks = 2 * self.members.len() + 2;
        while looks > 0 && !out.full && out.len < self.max_frame_bytes && self.remaining != Some(0)
        {
            let Some(i) = self.next_ready(self.next_turn) else {
                break;
            };
            looks -= 1;
            self.next_turn = (i + 1) % self.members.len();
            match self.turn(i, &mut out) {
                Turn::Idle => self.unmark(i),
                Turn::More => {}
                Turn::Closed => {
                    self.finish();
                    return Poll::Ready(None);
                }
            }
        }
        if looks == 0 && self.next_ready(self.next_turn).is_some() && out.is_empty() {
            // Come back after the others had a go.
            cx.waker().wake_by_ref();
        }
        if out.is_empty() {
            return Poll::Pending;
        }
        if out.pieces.is_empty() {
            return Poll::Ready(Some(out.buf.freeze()));
        }
        if !out.buf.is_empty() {
            out.pieces.push(out.buf.freeze());
        }
        let mut pieces = out.pieces.into_iter();
        let first = pieces.next();
        self.pending.extend(pieces);
        Poll::Ready(first)
    }
}

impl Body for MultiEventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let State::Done = this.state {
            return Poll::Ready(None);
        }
        // Every wake-up of a member (a publish, a topic loaded, a read of
        // history done) wakes the task that polled last.
        this.wake.task.register(cx.waker());
        if let Some(frame) = this.pending.pop_front() {
            this.sent();
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if this.remaining == Some(0) {
            this.finish();
            return Poll::Ready(None);
        }
        if let Some(expiry) = this.expiry.as_mut()
            && expiry.as_mut().poll(cx).is_ready()
            && !this.is_loading()
        {
            // Between frames only: never in the middle of a batch.
            let frame = reauth_frame(&this.id);
            this.finish();
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if this.is_loading() {
            this.try_begin();
            if let Some(frame) = this.pending.pop_front() {
                this.sent();
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
        }
        if !this.is_loading()
            && let Poll::Ready(frame) = this.poll_events(cx)
        {
            if frame.is_some() {
                this.sent();
            }
            return Poll::Ready(frame.map(|f| Ok(Frame::data(f))));
        }
        match &mut this.keep_alive {
            Some(ka) => ka.poll(cx).map(|f| f.map(|f| Ok(Frame::data(f)))),
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done) || (self.pending.is_empty() && self.remaining == Some(0))
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

impl Drop for MultiEventStream {
    fn drop(&mut self) {
        self.members[0]
            .topic
            .counters()
            .subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for MultiEventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Loading { .. } => "loading",
            State::Live => "live",
            State::Done => "done",
        };
        f.debug_struct("MultiEventStream")
            .field("topics", &self.topics().collect::<Vec<_>>())
            .field("state", &state)
            .field("position", &self.position())
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

/// Multi-topic streams.
impl Hub {
    /// Subscribes to several topics on one stream (see
    /// [`MultiEventStream`]), resuming after `options`' last event id if
    /// any: a [`MultiId`] with one part per topic, in the order of
    /// `topics`. `options`' `rewind` counts per topic (up to `n` events of
    /// each), its `limit` all events together.
    ///
    /// # Errors
    ///
    /// [`HubError::NoTopics`] for an empty list, [`HubError::DuplicateTopic`],
    /// [`HubError::InvalidLastEventId`] if the last event id is not the
    /// [`MultiId`] of these topics, and those of [`Hub::subscribe`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ssehub::{Event, Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// let stream = hub.subscribe_many(["a", "b"], Subscribe::new())?;
    /// hub.publish("b", Event::new("x")).await?;
    /// // A client that saw nothing resumes from the stream's start:
    /// let id = stream.position().to_string();
    /// let resumed = hub.subscribe_many(["a", "b"], Subscribe::new().last_event_id(id))?;
    /// assert_eq!(resumed.position(), stream.position(), "b's event comes next");
    /// // An id of another list of topics is refused.
    /// assert!(hub.subscribe_many(["a"], Subscribe::new().last_event_id("x-1.2")).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe_many<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        options: Subscribe,
    ) -> Result<MultiEventStream, HubError> {
        let names = checked_topics(topics)?;
        let last = parse_last(&options, &names)?;
        let members = self.attach_all(&names)?;
        Ok(self.stream_of(members, last, &options))
    }

    /// The stream of `members` (attached, in the stream's order), resuming
    /// after `last`.
    fn stream_of(
        &self,
        members: Vec<Arc<Topic>>,
        last: Option<Last>,
        options: &Subscribe,
    ) -> MultiEventStream {
        let params = self.stream_params(options);
        let loading = members.iter().any(|t| !t.is_primed());
        let retry_ms = params.retry_ms;
        // A placeholder position until the stream begins.
        let members = members
            .into_iter()
            .map(|t| (t, Epoch::placeholder(), 1))
            .collect();
        let mut stream = MultiEventStream::new(
            members,
            params,
            State::Loading {
                last_event_id: last,
                rewind: options.rewind,
                retry_ms,
            },
        );
        if loading {
            // The retry hint goes out at once, the rest once every topic
            // is loaded.
            stream.pending.extend(retry_ms.map(retry_line));
        } else {
            let State::Loading {
                last_event_id,
                rewind,
                retry_ms,
            } = std::mem::replace(&mut stream.state, State::Live)
            else {
                unreachable!("built loading")
            };
            stream.begin(last_event_id.as_ref(), rewind, retry_ms);
        }
        stream
    }

    /// Like [`Hub::subscribe_many`], but with Redis, first waits (at most
    /// `patience` in all) until this node has loaded every topic's history
    /// and caught up with the client's id, as [`Hub::subscribe_ready`].
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe_many`].
    pub async fn subscribe_many_ready<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        options: Subscribe,
        patience: Duration,
    ) -> Result<MultiEventStream, HubError> {
        let names = checked_topics(topics)?;
        let last = parse_last(&options, &names)?;
        // Every topic first, all or nothing, so the store loads them all at
        // once; then the waits, within one patience.
        // Detaches the topics if this future is dropped while it waits.
        struct Attached(Vec<Arc<Topic>>);
        impl Drop for Attached {
            fn drop(&mut self) {
                for t in self.0.drain(..) {
                    t.detach();
                }
            }
        }
        let mut members = Attached(self.attach_all(&names)?);
        if self.store().loads_topics() {
            let deadline = tokio::time::Instant::now() + patience;
            for (i, t) in members.0.iter().enumerate() {
                let wanted = match &last {
                    Some(Last::Id(id)) => Some(id.ids()[i]),
                    _ => None,
                };
                // If the storage is down, the stream starts when it is back.
                let _ = tokio::time::timeout_at(deadline, caught_up(t, wanted)).await;
            }
        }
        let members = std::mem::take(&mut members.0);
        let mut stream = self.stream_of(members, last, &options);
        if stream.is_loading() {
            stream.try_begin();
        }
        Ok(stream)
    }

    /// Subscribes to several topics for an HTTP response: at once in
    /// memory, else after [`Hub::subscribe_many_ready`]'s wait.
    pub(crate) fn subscribe_many_for_response(
        &self,
        topics: Vec<TopicName>,
        options: Subscribe,
        patience: Duration,
    ) -> Subscribing<MultiEventStream> {
        if !self.store().loads_topics() {
            return Subscribing::Ready(self.subscribe_many(topics, options));
        }
        let hub = self.clone();
        Subscribing::Waiting(Box::pin(async move {
            hub.subscribe_many_ready(topics, options, patience).await
        }))
    }

    /// The position of several topics at once, as the id a stream of
    /// these topics would start from (see [`Hub::position`]): a page that
    /// renders a snapshot of several topics reads it with the snapshot,
    /// then opens its stream with `?lastEventId=` set to it. Like
    /// [`Hub::position`], it creates and retires nothing (but with Redis,
    /// which loads the topics this node has not loaded).
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe_many`] and [`Hub::position`]: a stream of these
    /// topics that would be refused is refused here too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ssehub::{Event, Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// hub.publish("a", Event::new("1")).await?;
    /// let seen = hub.position_many(["a", "b"], Duration::from_secs(2)).await?;
    /// assert!(seen.to_string().ends_with(&format!("_{}-1.0", hub.epoch())));
    /// assert!(hub.topic_info("b").is_none(), "b is not created");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn position_many<T: IntoTopic>(
        &self,
        topics: impl IntoIterator<Item = T>,
        patience: Duration,
    ) -> Result<MultiId, HubError> {
        let names = checked_topics(topics)?;
        // Nothing is created or retired unless a stream of these topics
        // would be served (and then, only with Redis: see `Hub::position`).
        self.could_hold(&names)?;
        if self.store().loads_topics() {
            // Every topic first, so the store loads them all at once.
            self.attach_all(&names)?.iter().for_each(|t| t.detach());
        }
        let deadline = tokio::time::Instant::now() + patience;
        let mut ids = Vec::with_capacity(names.len());
        for name in &names {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            ids.push(self.position(name, left).await?);
        }
        Ok(MultiId::new(&names, ids))
    }
}

/// Waits until `t` is loaded and, if the client resumes from `wanted`, this
/// node has read up to it.
pub(crate) async fn caught_up(t: &Topic, wanted: Option<EventId>) {
    loop {
        let notified = t.notify().notified();
        if t.is_closed() {
            return;
        }
        if t.is_primed() {
            let ring = t.lock();
            let behind =
                wanted.is_some_and(|id| id.epoch() == ring.epoch() && id.seq() >= ring.next_seq());
            if !behind {
                return;
            }
        }
        notified.await;
    }
}

/// Where a stream of several topics resumes from.
enum Last {
    /// The id of the stream.
    Id(MultiId),
    /// Something that can be no position of it, but that a browser may
    /// send all the same (too long to be an id of these topics, or an id
    /// from before ids carried the check of their topics): every topic
    /// starts with `resync` (`malformed`), never with a refusal that would
    /// close an `EventSource` for good.
    Unusable(String),
}

/// The last event id of `options`, the id of a stream of `names`.
fn parse_last(options: &Subscribe, names: &[TopicName]) -> Result<Option<Last>, HubError> {
    let Some(id) = &options.last_event_id else {
        return Ok(None);
    };
    match MultiId::parse(id, names) {
        Ok(id) => Ok(Some(Last::Id(id))),
        Err(MultiIdError::TooLong | MultiIdError::NoCheck) => Ok(Some(Last::Unusable(id.clone()))),
        Err(e) => Err(HubError::InvalidLastEventId(e)),
    }
}

/// Checks a list of topics: at least one, each valid, none twice.
fn checked_topics<T: IntoTopic>(
    topics: impl IntoIterator<Item = T>,
) -> Result<Vec<TopicName>, HubError> {
    let names: Vec<TopicName> = topics
        .into_iter()
        .map(|t| t.into_topic())
        .collect::<Result<_, _>>()?;
    if names.is_empty() {
        return Err(HubError::NoTopics);
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for name in &names {
        if !seen.insert(name.as_str()) {
            return Err(HubError::DuplicateTopic(name.clone()));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::BodyExt;

    use super::*;
    use crate::core::event::Event;
    use crate::core::multi_id::check_prefix;

    fn hub(buffer: usize) -> Hub {
        Hub::builder()
            .buffer(buffer)
            .retry(Some(Duration::from_millis(1000)))
            .retry_jitter(0.0)
            .build()
    }

    /// The next frame (not a keep-alive); fails if none is ready (the
    /// clock is paused: the timeout elapses as soon as nothing can run).
    async fn next(stream: &mut MultiEventStream) -> Bytes {
        tokio::time::timeout(Duration::from_secs(1), stream.frame())
            .await
            .expect("a frame is ready")
            .expect("the stream goes on")
            .unwrap()
            .into_data()
            .unwrap()
    }

    async fn next_text(stream: &mut MultiEventStream) -> String {
        String::from_utf8(next(stream).await.to_vec()).unwrap()
    }

    /// Everything ready now, as text.
    async fn ready_text(stream: &mut MultiEventStream) -> String {
        let mut text = String::new();
        while let Ok(Some(f)) = tokio::time::timeout(Duration::from_millis(1), stream.frame()).await
        {
            text.push_str(std::str::from_utf8(&f.unwrap().into_data().unwrap()).unwrap());
        }
        text
    }

    /// (event type, data, id) of each event in `text`.
    fn events(text: &str) -> Vec<(String, String, String)> {
        text.split("\n\n")
            .filter_map(|ev| {
                let (mut ty, mut data, mut id) = (None, Vec::new(), None);
                for line in ev.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        ty = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v);
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    }
                }
                (!data.is_empty()).then(|| {
                    (
                        ty.unwrap_or_default(),
                        data.join("\n"),
                        id.unwrap_or_default(),
                    )
                })
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn events_are_typed_with_their_topic_and_carry_every_position() {
        let hub = hub(100);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        let mut s = hub.subscribe_many(["a", "b"], Subscribe::new()).unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("retry: 1000\nid: {c}{e}-0.0\n\n")
        );
        hub.publish("a", Event::new("x").with_type("t").unwrap())
            .await
            .unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("event: a/t\ndata: x\nid: {c}{e}-1.0\n\n")
        );
        hub.publish("b", Event::new("y\nz")).await.unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("event: b\ndata: y\ndata: z\nid: {c}{e}-1.1\n\n")
        );
        assert_eq!(s.position().to_string(), format!("{c}{e}-1.1"));
        assert_eq!(s.topics().collect::<Vec<_>>(), ["a", "b"]);
        let stats = hub.stats();
        assert_eq!((stats.subscribers, stats.delivered), (1, 2));
        assert_eq!(hub.topic_info("a").unwrap().subscribers, 1);
        drop(s);
        assert_eq!(hub.stats().subscribers, 0);
        assert_eq!(hub.topic_info("b").unwrap().subscribers, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn one_id_resumes_every_topic_exactly() {
        let hub = hub(100);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b", "c"]);
        for i in 1..=3 {
            hub.publish("a", Event::new(format!("a{i}"))).await.unwrap();
        }
        for i in 1..=2 {
            hub.publish("b", Event::new(format!("b{i}"))).await.unwrap();
        }
        let opts = Subscribe::new().last_event_id(format!("{c}{e}-1.1.0"));
        let mut s = hub.subscribe_many(["a", "b", "c"], opts).unwrap();
        assert_eq!(next_text(&mut s).await, "retry: 1000\n");
        let got = events(&ready_text(&mut s).await);
        let want = [
            ("a", "a2", format!("{c}{e}-2.1.0")),
            ("a", "a3", format!("{c}{e}-3.1.0")),
            ("b", "b2", format!("{c}{e}-3.2.0")),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((ty, data, id), (wt, wd, wi)) in got.iter().zip(&want) {
            assert_eq!((ty.as_str(), data.as_str(), id), (*wt, *wd, wi));
        }
        assert_eq!(hub.stats().replayed, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_is_per_topic_and_names_it() {
        let hub = hub(2);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b", "c"]);
        for i in 1..=5 {
            hub.publish("a", Event::new(format!("a{i}"))).await.unwrap();
        }
        hub.publish("b", Event::new("b1")).await.unwrap();
        // a is evicted up to 3; b resumes exactly; c is of another epoch.
        let opts = Subscribe::new().last_event_id(format!("{c}{e}-1.0.zz-4"));
        let mut s = hub.subscribe_many(["a", "b", "c"], opts).unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!(
                "retry: 1000\nevent: resync\ndata: {{\"topic\":\"a\",\"reason\":\"evicted\",\
                 \"requested\":\"{e}-1\",\"oldest\":\"{e}-4\",\"latest\":\"{e}-5\",\"missed\":2}}\n\
                 id: {c}{e}-3.0.0\n\n"
            )
        );
        assert_eq!(
            next_text(&mut s).await,
            format!(
                "event: resync\ndata: {{\"topic\":\"c\",\"reason\":\"epoch\",\
                 \"requested\":\"zz-4\",\"oldest\":null,\"latest\":\"{e}-0\"}}\nid: {c}{e}-3.0.0\n\n"
            )
        );
        let got = events(&ready_text(&mut s).await);
        let ids: Vec<_> = got.iter().map(|g| (g.1.as_str(), g.2.clone())).collect();
        assert_eq!(
            ids,
            [
                ("a4", format!("{c}{e}-4.0.0")),
                ("a5", format!("{c}{e}-5.0.0")),
                ("b1", format!("{c}{e}-5.1.0"))
            ]
        );
        assert_eq!(hub.stats().resyncs, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lagging_topic_gets_its_own_resync_and_the_others_go_on() {
        let hub = hub(4);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        let mut s = hub.subscribe_many(["a", "b"], Subscribe::new()).unwrap();
        next(&mut s).await;
        for i in 1..=10 {
            hub.publish("a", Event::new(format!("a{i}"))).await.unwrap();
        }
        hub.publish("b", Event::new("b1")).await.unwrap();
        let text = ready_text(&mut s).await;
        assert!(
            text.starts_with(&format!(
                "event: resync\ndata: {{\"topic\":\"a\",\"reason\":\"lagged\",\"requested\":\"{e}-0\",\
                 \"oldest\":\"{e}-7\",\"latest\":\"{e}-10\",\"missed\":6}}\nid: {c}{e}-6.0\n\n"
            )),
            "{text}"
        );
        let got: Vec<_> = events(&text)
            .into_iter()
            .filter(|g| g.0 != "resync")
            .map(|g| g.1)
            .collect();
        // After its resync, a waits for its next turn: b's comes first.
        assert_eq!(got, ["b1", "a7", "a8", "a9", "a10"]);
    }

    /// A flood on one topic does not hold up another: each topic sends at
    /// most a turn's worth before the next one's turn.
    #[tokio::test(start_paused = true)]
    async fn a_busy_topic_does_not_starve_the_others() {
        let hub = hub(10_000);
        let mut s = hub
            .subscribe_many(["busy", "quiet", "other"], Subscribe::new())
            .unwrap();
        next(&mut s).await;
        for i in 1..=5000 {
            hub.publish("busy", Event::new(format!("{i:>40}")))
                .await
                .unwrap();
        }
        hub.publish("quiet", Event::new("q")).await.unwrap();
        hub.publish("other", Event::new("o")).await.unwrap();
        let first = events(&next_text(&mut s).await);
        let pos = |d: &str| first.iter().position(|g| g.1 == d);
        assert_eq!(pos("q"), Some(TURN_EVENTS), "{first:?}");
        assert_eq!(pos("o"), Some(TURN_EVENTS + 1));
        // Then busy's events, in order, in frames of at most the hub's size.
        let mut n = first.iter().filter(|g| g.0 == "busy").count();
        while n < 5000 {
            let frame = next(&mut s).await;
            assert!(frame.len() <= hub.config().max_frame_bytes);
            for (ty, data, _) in events(std::str::from_utf8(&frame).unwrap()) {
                assert_eq!(ty, "busy");
                n += 1;
                assert_eq!(data.trim(), n.to_string());
            }
        }
    }

    /// Large data lines go out as a slice of the frame every subscriber
    /// shares, between this stream's own lines; small ones are copied.
    #[tokio::test(start_paused = true)]
    async fn large_data_is_shared_not_copied() {
        let hub = hub(10);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        let mut s = hub.subscribe_many(["a", "b"], Subscribe::new()).unwrap();
        next(&mut s).await;
        let big = "x".repeat(COPY_UP_TO + 1);
        hub.publish("b", Event::new(big.clone())).await.unwrap();
        let head = next(&mut s).await;
        let data = next(&mut s).await;
        let tail = next(&mut s).await;
        assert_eq!(head, "event: b\n");
        assert_eq!(data, format!("data: {big}\n"));
        assert_eq!(tail, format!("id: {c}{e}-0.1\n\n"));
        let topic = hub.read_topics().get("b").cloned().unwrap();
        let Read::Ready { frame, .. } = topic.read(e, 1, 1, usize::MAX) else {
            panic!("the event is in the ring")
        };
        let shared = frame.as_ptr_range();
        assert!(
            shared.contains(&data.as_ptr()),
            "a slice of the ring's frame"
        );
        // A small one is one frame.
        hub.publish("a", Event::new("small")).await.unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("event: a\ndata: small\nid: {c}{e}-1.1\n\n")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_counts_every_topic_and_rewind_each() {
        let hub = hub(100);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        for t in ["a", "b"] {
            for i in 1..=5 {
                hub.publish(t, Event::new(format!("{t}{i}"))).await.unwrap();
            }
        }
        let mut s = hub
            .subscribe_many(["a", "b"], Subscribe::new().rewind(2).limit(3))
            .unwrap();
        assert_eq!(
            next_text(&mut s).await,
            format!("retry: 1000\nid: {c}{e}-3.3\n\n")
        );
        let mut text = String::new();
        while let Some(f) = s.frame().await {
            text.push_str(std::str::from_utf8(&f.unwrap().into_data().unwrap()).unwrap());
        }
        let got: Vec<_> = events(&text).into_iter().map(|g| g.1).collect();
        assert_eq!(got, ["a4", "a5", "b4"]);
        assert!(s.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn reauth_carries_the_stream_position() {
        let hub = hub(100);
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        let at = std::time::SystemTime::now() + Duration::from_secs(30);
        let mut s = hub
            .subscribe_many(["a", "b"], Subscribe::new().expires_at(at))
            .unwrap();
        next(&mut s).await;
        hub.publish("b", Event::new("1")).await.unwrap();
        next(&mut s).await;
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(
            next_text(&mut s).await,
            format!(
                "event: reauth\ndata: {{\"reason\":\"expired\",\"lastEventId\":\"{c}{e}-0.1\"}}\n\
                 id: {c}{e}-0.1\n\n"
            )
        );
        assert!(s.frame().await.is_none());
    }

    #[tokio::test]
    async fn what_is_not_a_stream_of_several_topics_is_refused() {
        let hub = Hub::new();
        let none: [&str; 0] = [];
        assert!(matches!(
            hub.subscribe_many(none, Subscribe::new()),
            Err(HubError::NoTopics)
        ));
        assert!(matches!(
            hub.subscribe_many(["a", "b", "a"], Subscribe::new()),
            Err(HubError::DuplicateTopic(t)) if t.as_str() == "a"
        ));
        assert!(matches!(
            hub.subscribe_many(["a", "b/c"], Subscribe::new()),
            Err(HubError::InvalidTopic)
        ));
        let e = hub.epoch();
        let c = check_prefix(&["a", "b"]);
        assert!(matches!(
            hub.subscribe_many(
                ["a", "b"],
                Subscribe::new().last_event_id(format!("{c}{e}-1"))
            ),
            Err(HubError::InvalidLastEventId(
                crate::core::MultiIdError::Count {
                    expected: 2,
                    found: 1
                }
            ))
        ));
        // Nothing stays subscribed after a refusal.
        assert_eq!(hub.stats().subscribers, 0);
        assert_eq!(hub.topic_info("a").map_or(0, |t| t.subscribers), 0);
    }

    #[tokio::test]
    async fn closing_the_hub_ends_the_stream() {
        let hub = Hub::builder().retry(None).build();
        let mut s = hub.subscribe_many(["a", "b"], Subscribe::new()).unwrap();
        s.frame().await.unwrap().unwrap();
        let closer = {
            let hub = hub.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                hub.close();
            })
        };
        assert!(
            tokio::time::timeout(Duration::from_secs(5), s.frame())
                .await
                .unwrap()
                .is_none()
        );
        closer.await.unwrap();
    }
}
