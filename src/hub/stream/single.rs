//! The stream of one topic: [`EventStream`], the [`Single`] strategy of
//! the [driver](super::driver) over one [`Cursor`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::core::event::{reauth_frame, resync_frame};
use crate::core::id::EventId;
use crate::core::resync::{Greeting, Resync, Start};
use crate::core::ring::Read;
use crate::hub::stream::cursor::{Cursor, store_read};
use crate::hub::stream::driver::{Budget, Driver, Loaded, Strategy, StreamParams, queue_greeting};
use crate::hub::sync::{Arc, OwnedNotified};
use crate::hub::topic::Topic;

/// One subscriber's stream of events: an [`http_body::Body`] that writes
/// `text/event-stream` frames.
///
/// In order, it sends:
/// 1. a `retry:` hint, and either an id-only checkpoint at the current
///    position (fresh subscriptions) or a `resync` event (a resume that
///    cannot be exact);
/// 2. the retained events after the client's last id, then live events,
///    with no gap and no duplicate between the two;
/// 3. a `: keep-alive` comment whenever nothing was sent for the hub's
///    keep-alive period.
///
/// Events that are ready together go out as one frame (up to the hub's
/// frame size cap); a single ready event is handed on as the frame shared
/// by every subscriber, without a copy. The stream ends after its event
/// limit, when the hub is closed, or never.
///
/// A subscriber that does not read holds only its position: when it reads
/// again after the ring overwrote events it had not been sent, it gets a
/// `resync` event and continues with the oldest retained one. With a store
/// that keeps history beyond the ring (disk), a stream whose position is
/// older than the ring reads the events from the store first, a frame at a
/// time, then joins the ring with no gap and no duplicate.
///
/// Get one from [`Hub::subscribe`](crate::Hub::subscribe).
///
/// # Examples
///
/// ```
/// use http_body_util::BodyExt;
/// use ssehub::{Event, Hub, Subscribe};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = Hub::new();
/// let mut stream = hub.subscribe("news", Subscribe::new().limit(1))?;
/// hub.publish("news", Event::new("hello")).await?;
///
/// let mut text = Vec::new();
/// while let Some(frame) = stream.frame().await {
///     text.extend_from_slice(&frame?.into_data().unwrap());
/// }
/// let text = String::from_utf8(text)?;
/// assert!(text.starts_with("retry: "));
/// assert!(text.ends_with(&format!("data: hello\nid: {}-1\n\n", hub.epoch())));
/// # Ok(())
/// # }
/// ```
pub struct EventStream {
    driver: Driver<Single>,
}

/// How a stream of one topic reads: its cursor, woken by its topic.
pub(crate) struct Single {
    cursor: Cursor,
    /// Armed before each look at the topic (closed, primed, the ring), so
    /// no publish, close or prime goes unnoticed.
    wait: Option<Pin<Box<OwnedNotified>>>,
    /// Reading events older than the ring from the store.
    store: Option<tokio::task::JoinHandle<Read>>,
}

impl EventStream {
    /// Must be called with the position computed, and the subscriber
    /// counted, under the topic's lock.
    pub(crate) fn new(
        topic: Arc<Topic>,
        start: Start,
        replay_end: u64,
        params: StreamParams,
    ) -> Self {
        let mut single = Single::new(topic);
        let greeting = single.cursor.start(start, replay_end);
        let mut driver = Driver::started(single, &params);
        driver
            .strategy
            .greet(greeting, params.retry_ms, &mut driver.pending);
        EventStream { driver }
    }

    /// A stream on a topic whose history is still being loaded: the start
    /// is computed once it is (the subscriber is counted already).
    pub(crate) fn deferred(
        topic: Arc<Topic>,
        last_event_id: Option<String>,
        rewind: u64,
        params: StreamParams,
    ) -> Self {
        let resume = last_event_id.map(String::into_boxed_str);
        EventStream {
            driver: Driver::loading(Single::new(topic), &params, resume, rewind),
        }
    }

    pub(crate) fn is_deferred(&self) -> bool {
        self.driver.is_loading()
    }

    /// Fixes the start of a deferred stream now, if its topic is primed.
    pub(crate) fn start_if_primed(&mut self) {
        self.driver.start_if_loaded();
    }

    /// This body as a `futures` `Stream` of its
    /// data, for frameworks that take one (the items never fail).
    ///
    /// ```
    /// use ssehub::{Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), ssehub::HubError> {
    /// let hub = Hub::new();
    /// let stream = hub.subscribe("news", Subscribe::new())?.into_data_stream();
    /// fn takes_a_stream(_: impl futures_core::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>>) {}
    /// takes_a_stream(stream);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_data_stream(self) -> http_body_util::BodyDataStream<Self> {
        http_body_util::BodyDataStream::new(self)
    }

    /// The topic this stream follows.
    pub fn topic(&self) -> &str {
        self.driver.strategy.cursor.topic.name()
    }

    /// The id of the last event this stream has handed on (or of the
    /// position it started from).
    pub fn position(&self) -> EventId {
        self.driver.strategy.cursor.position()
    }
}

impl Single {
    fn new(topic: Arc<Topic>) -> Self {
        Single {
            cursor: Cursor::unstarted(topic),
            wait: None,
            store: None,
        }
    }

    /// Queues the greeting for the cursor's start.
    fn greet(&self, greeting: Greeting, retry_ms: Option<u64>, pending: &mut VecDeque<Bytes>) {
        let fresh = matches!(greeting, Greeting::Checkpoint);
        let resync = match greeting {
            Greeting::Resync(r) => Some(r.to_json()),
            Greeting::Checkpoint | Greeting::Resume => None,
        };
        queue_greeting(pending, retry_ms, fresh, resync, &self.cursor.position());
    }

    /// A `resync` event at the cursor, which it moved.
    fn resync(&self, resync: &Resync) -> Bytes {
        resync_frame(None, &resync.to_json(), &self.cursor.position())
    }

    /// Arms the wait if it is not: before any look at the topic.
    #[inline(always)]
    fn arm(&mut self) -> &mut Pin<Box<OwnedNotified>> {
        let topic = &self.cursor.topic;
        self.wait
            .get_or_insert_with(|| Box::pin(topic.notify().clone().notified_owned()))
    }

    /// Waits for the topic's next wake-up (the wait is armed): `true` if
    /// it came (re-armed).
    #[inline(always)]
    fn woken(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(wait) = self.wait.as_mut() else {
            return false;
        };
        if wait.as_mut().poll(cx).is_pending() {
            return false;
        }
        wait.set(self.cursor.topic.notify().clone().notified_owned());
        true
    }
}

impl Strategy for Single {
    type Resume = Box<str>;

    fn loaded(&self) -> Loaded {
        let topic = &self.cursor.topic;
        if topic.is_closed() {
            Loaded::Closed
        } else if topic.is_primed() {
            Loaded::Yes
        } else {
            Loaded::No
        }
    }

    fn poll_loaded(&mut self, cx: &mut Context<'_>) -> Loaded {
        loop {
            self.arm();
            match self.loaded() {
                Loaded::No if self.woken(cx) => continue,
                loaded => return loaded,
            }
        }
    }

    fn begin(
        &mut self,
        resume: Option<&Box<str>>,
        rewind: u64,
        retry_ms: Option<u64>,
        pending: &mut VecDeque<Bytes>,
    ) {
        let greeting = self.cursor.locate(resume.map(|r| &**r), rewind);
        self.greet(greeting, retry_ms, pending);
    }

    #[inline]
    fn poll_events(
        &mut self,
        cx: &mut Context<'_>,
        budget: &mut Budget,
        _pending: &mut VecDeque<Bytes>,
    ) -> Poll<Option<Bytes>> {
        loop {
            // Armed before `closed` is read, as before the ring: a close
            // between the two would wake nobody (`notify_waiters` keeps no
            // permit), and the stream would never end, holding up the
            // graceful shutdown that waits for it.
            self.arm();
            let topic = &self.cursor.topic;
            if topic.is_closed() {
                return Poll::Ready(None);
            }
            let read = match &mut self.store {
                Some(read) => match Pin::new(read).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => {
                        self.store = None;
                        store_read(result)
                    }
                },
                None => {
                    let c = &self.cursor;
                    let read = topic.read(c.epoch, c.next, budget.events(), budget.max_frame_bytes);
                    if let Read::Lagged { .. } = read
                        && let Some(read) = c.read_store(budget.events(), budget.max_frame_bytes)
                    {
                        // Older than the ring, but the store has it.
                        self.store = Some(read);
                        continue;
                    }
                    read
                }
            };
            match read {
                Read::Ready { frame, count } => {
                    // Re-arm now: the wake-up that brought us here is spent,
                    // and the next poll then reads the ring once, not twice.
                    if let Some(wait) = self.wait.as_mut() {
                        wait.set(self.cursor.topic.notify().clone().notified_owned());
                    }
                    self.cursor.next += count;
                    self.cursor.delivered(count);
                    budget.spend(count);
                    return Poll::Ready(Some(frame));
                }
                Read::Lagged { .. } => {
                    let resync = self.cursor.lagged();
                    return Poll::Ready(Some(self.resync(&resync)));
                }
                Read::Reset => {
                    let resync = self.cursor.reset();
                    return Poll::Ready(Some(self.resync(&resync)));
                }
                Read::Empty => {}
            }
            if !self.woken(cx) {
                return Poll::Pending;
            }
        }
    }

    fn reauth(&self) -> Bytes {
        reauth_frame(&self.cursor.position())
    }

    fn finish(&mut self) {
        self.wait = None;
        self.store = None;
    }
}

impl Drop for Single {
    fn drop(&mut self) {
        self.cursor.topic.remove_subscriber();
    }
}

impl Body for EventStream {
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

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.driver.strategy.store {
            Some(_) => "catching up",
            None => self.driver.phase_name(),
        };
        f.debug_struct("EventStream")
            .field("topic", &self.topic())
            .field("state", &state)
            .field("position", &self.position())
            .field("remaining", &self.driver.remaining())
            .finish_non_exhaustive()
    }
}
