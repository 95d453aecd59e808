//! The body of one subscriber's `text/event-stream` response.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::futures::OwnedNotified;
use tokio::time::{Instant, Sleep};

use crate::event::{KEEP_ALIVE_FRAME, checkpoint_frame, resync_frame};
use crate::id::{Epoch, EventId};
use crate::resync::{Greeting, Resync, Start};
use crate::ring::Read;
use crate::topic::Topic;

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
/// `resync` event and continues with the oldest retained one.
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
    topic: Arc<Topic>,
    epoch: Epoch,
    /// The next event to send.
    cursor: u64,
    /// Events before this one were published before the subscription.
    replay_end: u64,
    /// A control frame to send before any event.
    pending: Option<Bytes>,
    /// Events left to send before the stream ends, `None` for no limit.
    remaining: Option<u64>,
    max_frame_bytes: usize,
    /// Armed before each look at the ring, so no publish goes unnoticed.
    wait: Option<Pin<Box<OwnedNotified>>>,
    keep_alive: Option<KeepAlive>,
    done: bool,
}

struct KeepAlive {
    period: Duration,
    last_sent: Instant,
    /// Created on the first idle poll and reset only when it fires, so a busy
    /// stream costs no timer operations.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// How a stream is set up; built by the hub.
pub(crate) struct StreamParams {
    pub(crate) retry_ms: Option<u64>,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) max_frame_bytes: usize,
    pub(crate) limit: Option<u64>,
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
        let greeting = match &start.greeting {
            Greeting::Checkpoint => Some(checkpoint_frame(
                params.retry_ms,
                &EventId::new(start.epoch, start.cursor - 1),
            )),
            Greeting::Resume => params.retry_ms.map(|ms| {
                let mut s = String::with_capacity(16);
                s.push_str("retry: ");
                s.push_str(&ms.to_string());
                s.push('\n');
                Bytes::from(s)
            }),
            Greeting::Resync(r) => {
                topic.counters().resyncs.fetch_add(1, Ordering::Relaxed);
                Some(resync_frame(
                    params.retry_ms,
                    &r.to_json(),
                    &EventId::new(start.epoch, start.cursor - 1),
                ))
            }
        };
        EventStream {
            topic,
            epoch: start.epoch,
            cursor: start.cursor,
            replay_end,
            pending: greeting,
            remaining: params.limit,
            max_frame_bytes: params.max_frame_bytes,
            wait: None,
            keep_alive: params.keep_alive.map(|period| KeepAlive {
                period,
                last_sent: Instant::now(),
                sleep: None,
            }),
            done: false,
        }
    }

    /// The topic this stream follows.
    pub fn topic(&self) -> &str {
        self.topic.name()
    }

    /// The id of the last event this stream has handed on (or of the
    /// position it started from).
    pub fn position(&self) -> EventId {
        EventId::new(self.epoch, self.cursor - 1)
    }

    fn sent(&mut self) {
        if let Some(ka) = &mut self.keep_alive {
            ka.last_sent = Instant::now();
        }
    }

    fn finish(&mut self) {
        self.done = true;
        self.pending = None;
        self.wait = None;
        self.keep_alive = None;
    }

    /// The `resync` for a subscriber whose unsent events were overwritten.
    fn lagged(&mut self) -> Bytes {
        let ring = self.topic.lock();
        let resync = Resync::lagged(&ring, self.cursor);
        self.cursor = ring.oldest().unwrap_or(ring.next_seq());
        drop(ring);
        self.topic
            .counters()
            .resyncs
            .fetch_add(1, Ordering::Relaxed);
        resync_frame(None, &resync.to_json(), &self.position())
    }

    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let Some(ka) = &mut self.keep_alive else {
            return Poll::Pending;
        };
        let sleep = ka
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(ka.last_sent + ka.period)));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let due = ka.last_sent + ka.period;
            if now >= due {
                ka.last_sent = now;
                sleep.as_mut().reset(now + ka.period);
                return Poll::Ready(Some(Bytes::from_static(KEEP_ALIVE_FRAME)));
            }
            // Something was sent since the timer was set: wait out the rest.
            sleep.as_mut().reset(due);
        }
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(frame) = this.pending.take() {
            this.sent();
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        if this.remaining == Some(0) {
            this.finish();
            return Poll::Ready(None);
        }
        loop {
            if this.topic.is_closed() {
                this.finish();
                return Poll::Ready(None);
            }
            let topic = &this.topic;
            let wait = this
                .wait
                .get_or_insert_with(|| Box::pin(topic.notify().clone().notified_owned()));
            let max_events = this.remaining.unwrap_or(u64::MAX);
            match topic.read(this.cursor, max_events, this.max_frame_bytes) {
                Read::Ready { frame, count } => {
                    let replayed = this
                        .replay_end
                        .min(this.cursor + count)
                        .saturating_sub(this.cursor);
                    let c = topic.counters();
                    c.delivered.fetch_add(count, Ordering::Relaxed);
                    if replayed > 0 {
                        c.replayed.fetch_add(replayed, Ordering::Relaxed);
                    }
                    this.cursor += count;
                    if let Some(r) = &mut this.remaining {
                        *r -= count;
                    }
                    this.sent();
                    return Poll::Ready(Some(Ok(Frame::data(frame))));
                }
                Read::Lagged { .. } => {
                    let frame = this.lagged();
                    this.sent();
                    return Poll::Ready(Some(Ok(Frame::data(frame))));
                }
                Read::Empty => {}
            }
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let fresh = topic.notify().clone().notified_owned();
                    wait.set(fresh);
                }
                Poll::Pending => break,
            }
        }
        match this.poll_keep_alive(cx) {
            Poll::Ready(Some(frame)) => Poll::Ready(Some(Ok(Frame::data(frame)))),
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.pending.is_none() && self.remaining == Some(0))
    }

    fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.topic.remove_subscriber();
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("topic", &self.topic.name())
            .field("position", &self.position())
            .field("remaining", &self.remaining)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}
