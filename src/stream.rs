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
use crate::resync::{Greeting, Resync, ResyncReason, Start, locate};
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
    /// Until the topic is primed (storage loaded its history), where the
    /// client asked to resume; the start is computed then.
    deferred: Option<Deferred>,
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

struct Deferred {
    last_event_id: Option<Box<str>>,
    retry_ms: Option<u64>,
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
        let retry_ms = params.retry_ms;
        let mut stream = EventStream::unstarted(topic, params);
        stream.begin(start, replay_end, retry_ms);
        stream
    }

    /// A stream on a topic whose history is still being loaded: the start
    /// is computed once it is (the subscriber is counted already).
    pub(crate) fn deferred(
        topic: Arc<Topic>,
        last_event_id: Option<String>,
        params: StreamParams,
    ) -> Self {
        // The retry hint goes out at once; the rest of the greeting once the
        // start is known.
        let retry_ms = params.retry_ms;
        let mut stream = EventStream::unstarted(topic, params);
        stream.pending = retry_ms.map(retry_line);
        stream.deferred = Some(Deferred {
            last_event_id: last_event_id.map(String::into_boxed_str),
            retry_ms,
        });
        stream
    }

    fn unstarted(topic: Arc<Topic>, params: StreamParams) -> Self {
        EventStream {
            topic,
            epoch: Epoch::placeholder(),
            cursor: 1,
            replay_end: 0,
            pending: None,
            remaining: params.limit,
            max_frame_bytes: params.max_frame_bytes,
            deferred: None,
            wait: None,
            keep_alive: params.keep_alive.map(|period| KeepAlive {
                period,
                last_sent: Instant::now(),
                sleep: None,
            }),
            done: false,
        }
    }

    /// Sets the position and the greeting (retry hint, checkpoint or
    /// resync) of a stream that starts at `start`.
    fn begin(&mut self, start: Start, replay_end: u64, retry_ms: Option<u64>) {
        let at = EventId::new(start.epoch, start.cursor - 1);
        self.pending = match &start.greeting {
            Greeting::Checkpoint => Some(checkpoint_frame(retry_ms, &at)),
            Greeting::Resume => retry_ms.map(retry_line),
            Greeting::Resync(r) => {
                self.topic
                    .counters()
                    .resyncs
                    .fetch_add(1, Ordering::Relaxed);
                Some(resync_frame(retry_ms, &r.to_json(), &at))
            }
        };
        self.epoch = start.epoch;
        self.cursor = start.cursor;
        self.replay_end = replay_end;
    }

    pub(crate) fn is_deferred(&self) -> bool {
        self.deferred.is_some()
    }

    /// Fixes the start of a deferred stream now, if its topic is primed.
    pub(crate) fn start_if_primed(&mut self) {
        self.try_begin();
    }

    /// Starts a deferred stream if its topic is primed now.
    fn try_begin(&mut self) -> bool {
        if !self.topic.is_primed() {
            return false;
        }
        let Some(d) = self.deferred.take() else {
            return true;
        };
        let (start, replay_end) = {
            let ring = self.topic.lock();
            (locate(&ring, d.last_event_id.as_deref()), ring.next_seq())
        };
        // The retry hint is still queued if nothing was sent yet: the
        // greeting replaces it, so it must carry it.
        let retry_ms = if self.pending.is_some() {
            d.retry_ms
        } else {
            None
        };
        self.begin(start, replay_end, retry_ms);
        true
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

    /// The `resync` for a subscriber whose topic got another history.
    fn reset(&mut self) -> Bytes {
        let ring = self.topic.lock();
        let resync = Resync {
            reason: ResyncReason::Epoch,
            requested: self.position().to_string(),
            oldest: ring.oldest().map(|s| EventId::new(ring.epoch(), s)),
            latest: EventId::new(ring.epoch(), ring.latest()),
            missed: None,
        };
        self.epoch = ring.epoch();
        self.cursor = ring.oldest().unwrap_or(ring.next_seq());
        drop(ring);
        self.topic
            .counters()
            .resyncs
            .fetch_add(1, Ordering::Relaxed);
        resync_frame(None, &resync.to_json(), &self.position())
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

fn retry_line(ms: u64) -> Bytes {
    let mut s = String::with_capacity(16);
    s.push_str("retry: ");
    s.push_str(&ms.to_string());
    s.push('\n');
    Bytes::from(s)
}

impl EventStream {
    /// After a deferred start: the greeting, if any, goes out first.
    fn poll_pending_or_continue(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(frame) = self.pending.take() {
            self.sent();
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        Pin::new(self).poll_frame(cx)
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
            if this.wait.is_none() {
                this.wait = Some(Box::pin(this.topic.notify().clone().notified_owned()));
            }
            if this.deferred.is_some() {
                if this.try_begin() {
                    return this.poll_pending_or_continue(cx);
                }
                let topic = &this.topic;
                let Some(wait) = this.wait.as_mut() else {
                    break;
                };
                match wait.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let fresh = topic.notify().clone().notified_owned();
                        wait.set(fresh);
                        continue;
                    }
                    Poll::Pending => break,
                }
            }
            let topic = &this.topic;
            let Some(wait) = this.wait.as_mut() else {
                break;
            };
            let max_events = this.remaining.unwrap_or(u64::MAX);
            match topic.read(this.epoch, this.cursor, max_events, this.max_frame_bytes) {
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
                    // Re-arm now: the wake-up that brought us here is spent,
                    // and the next poll then reads the ring once, not twice.
                    wait.set(topic.notify().clone().notified_owned());
                    this.sent();
                    return Poll::Ready(Some(Ok(Frame::data(frame))));
                }
                Read::Lagged { .. } => {
                    let frame = this.lagged();
                    this.sent();
                    return Poll::Ready(Some(Ok(Frame::data(frame))));
                }
                Read::Reset => {
                    let frame = this.reset();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use crate::event::Event;
    use crate::hub::{Hub, Subscribe};

    /// The next frame's text; fails at once if none is ready (the clock is
    /// paused, so the timeout elapses as soon as nothing else can run).
    async fn next_frame(stream: &mut super::EventStream) -> String {
        let frame = tokio::time::timeout(Duration::from_secs(1), stream.frame())
            .await
            .expect("a frame is ready")
            .expect("the stream goes on")
            .unwrap();
        String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
    }

    /// Regression guard: a live subscriber whose unsent events were
    /// overwritten must be told in-band, with the exact count, and continue
    /// with the oldest retained event (dropping the `lagged` resync was
    /// caught only by an RSS-measuring test).
    #[tokio::test(start_paused = true)]
    async fn a_lagging_subscriber_gets_the_exact_lagged_resync_then_the_ring() {
        let hub = Hub::builder()
            .buffer(4)
            .retry(Some(Duration::from_millis(1000)))
            .retry_jitter(0.0)
            .build();
        let e = hub.epoch();
        let mut stream = hub.subscribe("t", Subscribe::new()).unwrap();
        assert_eq!(
            next_frame(&mut stream).await,
            format!("retry: 1000\nid: {e}-0\n\n")
        );
        for i in 1..=2 {
            hub.publish("t", Event::new(format!("e{i}"))).await.unwrap();
        }
        assert_eq!(
            next_frame(&mut stream).await,
            format!("data: e1\nid: {e}-1\n\ndata: e2\nid: {e}-2\n\n")
        );
        // Ten more while the subscriber does not read: the ring keeps 9..=12,
        // so 3..=8 are lost to it.
        for i in 3..=12 {
            hub.publish("t", Event::new(format!("e{i}"))).await.unwrap();
        }
        assert_eq!(
            next_frame(&mut stream).await,
            format!(
                "event: resync\ndata: {{\"reason\":\"lagged\",\"requested\":\"{e}-2\",\
                 \"oldest\":\"{e}-9\",\"latest\":\"{e}-12\",\"missed\":6}}\nid: {e}-8\n\n"
            )
        );
        let ring: String = (9..=12)
            .map(|i| format!("data: e{i}\nid: {e}-{i}\n\n"))
            .collect();
        assert_eq!(next_frame(&mut stream).await, ring);
        hub.publish("t", Event::new("e13")).await.unwrap();
        assert_eq!(
            next_frame(&mut stream).await,
            format!("data: e13\nid: {e}-13\n\n")
        );
        let stats = hub.stats();
        assert_eq!((stats.resyncs, stats.delivered, stats.replayed), (1, 7, 0));
        // Then nothing but the keep-alive, 15 s after the last frame.
        let start = tokio::time::Instant::now();
        let keep_alive = stream.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            (&keep_alive[..], start.elapsed()),
            (&b": keep-alive\n\n"[..], Duration::from_secs(15))
        );
    }
}
