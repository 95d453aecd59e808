//! The stream of several topics: [`MultiEventStream`], the [`Multi`]
//! strategy of the [driver](super::driver), one [`Cursor`] per topic.
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
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::core::event::{frame_parts, reauth_frame, resync_frame};
use crate::core::id::EventId;
use crate::core::multi_id::{MultiId, MultiIdText};
use crate::core::resync::{Greeting, Resync, ResyncReason};
use crate::core::ring::Read;
use crate::hub::stream::cursor::{Cursor, store_read};
use crate::hub::stream::driver::{Budget, Driver, Loaded, Strategy, StreamParams, queue_greeting};
use crate::hub::stream::turns::{Marks, Out, WakeSet};
use crate::hub::sync::{Arc, OwnedNotified};
use crate::hub::topic::Topic;

/// Most events one topic sends in its turn before the next topic's turn.
pub(crate) const TURN_EVENTS: usize = 16;

/// Data lines up to this many bytes are copied into the frame being built;
/// longer ones go out as a slice of the shared frame, uncopied.
pub(crate) const COPY_UP_TO: usize = 512;

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
/// 16 of them before the next one's turn (round robin), and a
/// frame ends at the hub's frame size, so a flood on one topic delays an
/// event of another by at most one turn of each busy topic. Data lines
/// longer than 512 bytes are handed on as a slice of the frame
/// every subscriber shares, between this stream's own `event:` and `id:`
/// lines; shorter ones are copied into the frame being built (cheaper than
/// one more piece to write). Get one from
/// [`Hub::subscribe_multi`](crate::Hub::subscribe_multi).
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
/// let mut stream = hub.subscribe_multi(["chat", "news"], Subscribe::new().limit(2))?;
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
    driver: Driver<Multi>,
}

/// Where a stream of several topics resumes from.
pub(crate) enum Last {
    /// The id of the stream.
    Id(MultiId),
    /// Something that can be no position of it, but that a browser may
    /// send all the same (too long to be an id of these topics, or an id
    /// from before ids carried the check of their topics): every topic
    /// starts with `resync` (`malformed`), never with a refusal that would
    /// close an `EventSource` for good.
    Unusable(String),
}

/// How a stream of several topics reads: a cursor per topic, each woken
/// by its own topic, taking turns.
pub(crate) struct Multi {
    /// One per topic, in the order the client named them.
    members: Box<[Member]>,
    /// Which members were woken since the stream last looked.
    wake: Arc<WakeSet>,
    /// Members to look at: woken, or left with events after their turn.
    ready: Marks,
    /// Where the next round of turns starts.
    next_turn: usize,
    /// The stream's position, as the text of its `id:`.
    id: MultiIdText,
}

/// One topic of the stream.
struct Member {
    cursor: Cursor,
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
        self.cursor.topic.detach();
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

impl MultiEventStream {
    /// A stream of `topics` (attached to them, in the stream's order) that
    /// starts once every topic is loaded, resuming after `last`; counts it.
    pub(crate) fn new(
        topics: Vec<Arc<Topic>>,
        last: Option<Last>,
        rewind: u64,
        params: StreamParams,
    ) -> Self {
        let multi = Multi::new(topics);
        let mut driver = Driver::loading(multi, &params, last, rewind);
        driver.start_if_loaded();
        MultiEventStream { driver }
    }

    pub(crate) fn is_loading(&self) -> bool {
        self.driver.is_loading()
    }

    /// Fixes the start now, if every topic is loaded.
    pub(crate) fn start_if_loaded(&mut self) {
        self.driver.start_if_loaded();
    }

    /// The topics, in the stream's order.
    pub fn topics(&self) -> impl ExactSizeIterator<Item = &str> {
        self.driver.strategy.topics()
    }

    /// The stream's position: for each topic, the id of the last event
    /// handed on (or of the position it started from). This is the `id:`
    /// of the last event sent.
    pub fn position(&self) -> MultiId {
        let names: Vec<&str> = self.topics().collect();
        MultiId::new(&names, self.driver.strategy.positions().collect())
    }

    /// This body as a `futures` `Stream` of its data (the items never
    /// fail), as [`EventStream::into_data_stream`](crate::EventStream::into_data_stream).
    pub fn into_data_stream(self) -> http_body_util::BodyDataStream<Self> {
        http_body_util::BodyDataStream::new(self)
    }
}

impl Multi {
    /// The strategy of a stream on `topics` (already attached to them),
    /// counted as one stream.
    fn new(topics: Vec<Arc<Topic>>) -> Self {
        let n = topics.len();
        let wake = WakeSet::new(n);
        let members: Box<[Member]> = topics
            .into_iter()
            .enumerate()
            .map(|(index, topic)| Member {
                wait: Box::pin(topic.notify().clone().notified_owned()),
                waker: wake.waker(index),
                cursor: Cursor::unstarted(topic),
                store: None,
            })
            .collect();
        members[0]
            .cursor
            .topic
            .counters()
            .subscribers
            .fetch_add(1, Ordering::Relaxed);
        let names: Vec<&str> = members.iter().map(|m| m.cursor.topic.name()).collect();
        let id = MultiIdText::new(&names, members.iter().map(|m| m.cursor.position()));
        Multi {
            members,
            wake,
            ready: Marks::all(n),
            next_turn: 0,
            id,
        }
    }

    fn topics(&self) -> impl ExactSizeIterator<Item = &str> {
        self.members.iter().map(|m| m.cursor.topic.name())
    }

    fn positions(&self) -> impl Iterator<Item = EventId> + '_ {
        self.members.iter().map(|m| m.cursor.position())
    }

    /// Writes the whole id again (a topic changed epoch).
    fn render_id(&mut self) {
        let positions = self.members.iter().map(|m| m.cursor.position());
        self.id.render(positions);
    }

    /// Appends event `frame` of member `i`, which it is at: this stream's
    /// `event:` line, the shared data lines, the stream's new `id:`.
    /// Returns `false`, and changes nothing, if that would take the frame
    /// being built over the hub's frame size (a first event always fits).
    fn put_event(
        &mut self,
        i: usize,
        frame: &Bytes,
        max_frame_bytes: usize,
        out: &mut Out,
    ) -> bool {
        let m = &mut self.members[i];
        let Some(parts) = frame_parts(frame) else {
            // Every frame is the encoder's: this cannot happen.
            tracing::error!(topic = m.cursor.topic.name(), "not an event frame; skipped");
            m.cursor.next += 1;
            self.id.set_seq(i, m.cursor.next - 1);
            return true;
        };
        let topic = m.cursor.topic.name().as_bytes();
        let ty = &frame[parts.event_type.clone()];
        let data_len = parts.data.len();
        // The id may grow by a digit.
        let len = 9 + topic.len() + ty.len() + data_len + 7 + self.id.as_bytes().len();
        if out.len > 0 && out.len + len > max_frame_bytes {
            out.full = true;
            return false;
        }
        m.cursor.next += 1;
        self.id.set_seq(i, m.cursor.next - 1);
        let copy = data_len <= COPY_UP_TO;
        out.reserve(if copy { len } else { len - data_len });
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

    /// Member `i`'s `resync` (its cursor moved) into the frame being built.
    fn put_resync(&mut self, i: usize, resync: &Resync, out: &mut Out) {
        let m = &mut self.members[i];
        m.store = None;
        let json = resync.to_json_for(m.cursor.topic.name());
        if let ResyncReason::Epoch = resync.reason {
            // Another history: the topic's part of the id is another epoch.
            self.render_id();
        } else {
            let seq = m.cursor.next - 1;
            self.id.set_seq(i, seq);
        }
        out.put(&resync_frame(None, &json, &self.id));
    }

    /// Counts the `count` events member `i` just handed on.
    fn count(&mut self, i: usize, count: u64, budget: &mut Budget) {
        self.members[i].cursor.delivered(count);
        budget.spend(count);
    }

    /// Member `i`'s turn: at most [`TURN_EVENTS`] events (and what is left
    /// of the limit and of the frame) into `out`.
    fn turn(&mut self, i: usize, budget: &mut Budget, out: &mut Out) -> Turn {
        let m = &mut self.members[i];
        if m.store.is_none() {
            // Armed before the looks at the topic (closed, then the ring):
            // a publish or a close after this point wakes the member.
            m.wait.set(m.cursor.topic.notify().clone().notified_owned());
        }
        if m.cursor.topic.is_closed() {
            return Turn::Closed;
        }
        let max = (TURN_EVENTS as u64).min(budget.events()) as usize;
        let room = budget.max_frame_bytes.saturating_sub(out.len);
        if m.store.is_some() {
            return self.turn_from_store(i, max, budget, out);
        }
        let mut frames: [Bytes; TURN_EVENTS] = Default::default();
        let c = &m.cursor;
        let read = c
            .topic
            .read_frames(c.epoch, c.next, room, &mut frames[..max]);
        match read {
            Ok((n, more)) => {
                let mut sent = 0;
                while sent < n && self.put_event(i, &frames[sent], budget.max_frame_bytes, out) {
                    sent += 1;
                }
                self.count(i, sent as u64, budget);
                if more || sent < n {
                    return Turn::More;
                }
            }
            Err(Read::Lagged { .. }) => {
                let m = &mut self.members[i];
                match m.cursor.read_store(budget.events(), budget.max_frame_bytes) {
                    // Older than the ring, but the store has it.
                    Some(read) => {
                        m.store = Some(Box::new(StoreRead {
                            read: Some(read),
                            backlog: Bytes::new(),
                        }));
                    }
                    None => {
                        let resync = m.cursor.lagged();
                        self.put_resync(i, &resync, out);
                    }
                }
                return Turn::More;
            }
            Err(Read::Reset) => {
                let resync = self.members[i].cursor.reset();
                self.put_resync(i, &resync, out);
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
    fn turn_from_store(
        &mut self,
        i: usize,
        max: usize,
        budget: &mut Budget,
        out: &mut Out,
    ) -> Turn {
        let m = &mut self.members[i];
        let store = m.store.as_mut().expect("reading from the store");
        if let Some(read) = &mut store.read {
            let mut cx = Context::from_waker(&m.waker);
            let result = match Pin::new(read).poll(&mut cx) {
                Poll::Pending => return Turn::Idle,
                Poll::Ready(result) => result,
            };
            store.read = None;
            let resync = match store_read(result) {
                Read::Ready { frame, .. } => {
                    store.backlog = frame;
                    None
                }
                Read::Reset => Some(m.cursor.reset()),
                Read::Empty | Read::Lagged { .. } => Some(m.cursor.lagged()),
            };
            if let Some(resync) = resync {
                self.put_resync(i, &resync, out);
                return Turn::More;
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
            if !self.put_event(i, &frame, budget.max_frame_bytes, out) {
                break;
            }
            if let Some(store) = self.members[i].store.as_mut() {
                let _ = store.backlog.split_to(end + 2);
            }
            sent += 1;
        }
        self.count(i, sent as u64, budget);
        let m = &mut self.members[i];
        if m.store.as_ref().is_some_and(|s| s.backlog.is_empty()) {
            // Done with this read: the ring (or another read) goes on.
            m.store = None;
        }
        Turn::More
    }
}

impl Strategy for Multi {
    type Resume = Last;

    fn register(&self, cx: &mut Context<'_>) {
        // Every wake-up of a member (a publish, a topic loaded, a read of
        // history done) wakes the task that polled last.
        self.wake.register(cx.waker());
    }

    fn loaded(&self) -> Loaded {
        let mut loaded = Loaded::Yes;
        for m in self.members.iter() {
            if m.cursor.topic.is_closed() {
                return Loaded::Closed;
            }
            if !m.cursor.topic.is_primed() {
                loaded = Loaded::No;
            }
        }
        loaded
    }

    fn poll_loaded(&mut self, _cx: &mut Context<'_>) -> Loaded {
        'look: loop {
            // Each wait is armed (at the start, or re-armed after it fired)
            // before its topic is looked at.
            let loaded = self.loaded();
            if !matches!(loaded, Loaded::No) {
                return loaded;
            }
            for m in self.members.iter_mut() {
                if m.cursor.topic.is_primed() {
                    continue;
                }
                let mut cx = Context::from_waker(&m.waker);
                if m.wait.as_mut().poll(&mut cx).is_ready() {
                    m.wait.set(m.cursor.topic.notify().clone().notified_owned());
                    // Primed meanwhile, perhaps: look again.
                    continue 'look;
                }
            }
            return Loaded::No;
        }
    }

    fn begin(
        &mut self,
        last: Option<&Last>,
        rewind: u64,
        retry_ms: Option<u64>,
        pending: &mut VecDeque<Bytes>,
    ) {
        let mut resyncs = Vec::new();
        for (i, m) in self.members.iter_mut().enumerate() {
            let requested = last.map(|l| match l {
                Last::Id(id) => id.ids()[i].to_string(),
                Last::Unusable(text) => text.clone(),
            });
            if let Greeting::Resync(r) = m.cursor.locate(requested.as_deref(), rewind) {
                resyncs.push(r.to_json_for(m.cursor.topic.name()));
            }
        }
        self.render_id();
        queue_greeting(pending, retry_ms, last.is_none(), resyncs, &self.id);
    }

    /// The next frame of events, if any is ready: members take turns.
    fn poll_events(
        &mut self,
        cx: &mut Context<'_>,
        budget: &mut Budget,
        pending: &mut VecDeque<Bytes>,
    ) -> Poll<Option<Bytes>> {
        self.ready.take_woken(&self.wake);
        let mut out = Out::new();
        // Each member is looked at a bounded number of times per frame: a
        // member that stays marked without sending (a publish racing its
        // re-arming) cannot keep the task busy forever.
        let mut looks = 2 * self.members.len() + 2;
        while looks > 0 && !out.full && out.len < budget.max_frame_bytes && !budget.is_spent() {
            let Some(i) = self.ready.next(self.next_turn) else {
                break;
            };
            looks -= 1;
            self.next_turn = (i + 1) % self.members.len();
            match self.turn(i, budget, &mut out) {
                Turn::Idle => self.ready.unmark(i),
                Turn::More => {}
                Turn::Closed => return Poll::Ready(None),
            }
        }
        if looks == 0 && self.ready.next(self.next_turn).is_some() && out.is_empty() {
            // Come back after the others had a go.
            cx.waker().wake_by_ref();
        }
        match out.finish(pending) {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Poll::Pending,
        }
    }

    fn reauth(&self) -> Bytes {
        reauth_frame(&self.id)
    }
}

impl Drop for Multi {
    fn drop(&mut self) {
        self.members[0]
            .cursor
            .topic
            .counters()
            .subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Body for MultiEventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut().driver.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.driver.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.driver.size_hint()
    }
}

impl fmt::Debug for MultiEventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiEventStream")
            .field("topics", &self.topics().collect::<Vec<_>>())
            .field("state", &self.driver.phase_name())
            .field("position", &self.position())
            .field("remaining", &self.driver.remaining())
            .finish_non_exhaustive()
    }
}
