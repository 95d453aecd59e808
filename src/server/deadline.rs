//! Deadlines of the connections served through hyper: a request body that
//! must keep arriving ([`BodyTimeout`]), and the count of requests in
//! progress that tells when a connection is idle ([`Activity`]).
//!
//! The deadline model as a whole is stated in the docs of
//! [`ServerConfig`](crate::server::ServerConfig); this file holds the two pieces
//! hyper lacks:
//!
//! - hyper bounds an HTTP/1.1 request head, but neither the version preface
//!   hyper-util's auto builder reads first, nor an HTTP/2 connection without
//!   a stream. [`Activity`] counts the requests in progress on one
//!   connection (from the call of the service to the drop of the response
//!   body), and [`Activity::idle_for`] completes once that count has stayed
//!   at zero for a given time, whatever the protocol state is: a partial
//!   preface, a preface without SETTINGS, an HTTP/2 connection that only
//!   sends PINGs. The server then shuts the connection down.
//! - Nothing bounds a request body. [`BodyTimeout`] fails a body whose bytes
//!   stop arriving, or arrive too slowly on average, with an [`io::Error`]
//!   of kind [`TimedOut`](io::ErrorKind::TimedOut).
//!
//! `serve.rs` puts both around each request of a connection.
//!
//! # Where each deadline is enforced
//!
//! (The table of what each state may take is in `ServerConfig`'s docs.)
//!
//! - *Before a protocol is known* (first bytes, TLS handshake):
//!   `first_bytes_within` and `serve_tls` (`mod.rs`), `header_read_timeout` each.
//! - *HTTP/1.1 heads*: the fast path's head loop in `Conn::serve` re-arms
//!   `header_read_timeout` for each request; hyper's own
//!   `header_read_timeout` does the same for the connections it serves, and
//!   its timer also runs while a kept-alive connection waits for the next
//!   request. So for HTTP/1.1, idle and head are one deadline.
//! - *Everything else before a request*, on any connection hyper serves:
//!   hyper-util's version detection and hyper's HTTP/2 server have no
//!   deadline of their own (a partial preface, a preface without SETTINGS,
//!   an HTTP/2 connection without streams, or whose client only PINGs). A
//!   timer per protocol state would need hooks hyper does not have, and
//!   would miss the next state nobody thought of; instead `Conn::hyper`
//!   (`mod.rs`) counts the requests in progress and shuts the
//!   connection down after `idle_timeout` with none, whatever hyper is
//!   doing. The graceful shutdown sends `GOAWAY` on HTTP/2 (and abandons an
//!   unfinished preface at once); a client that does not let the connection
//!   close, for instance by never answering the PING that follows `GOAWAY`,
//!   is dropped after `IDLE_GRACE`. A request that raced the `GOAWAY` in
//!   is answered first: the grace only counts while nothing is in progress.
//! - *Request bodies*: every request served through hyper gets a
//!   [`BodyTimeout`] body in `serve.rs` (silence, then a minimum
//!   average rate); the fast path only takes requests without a body.
//! - *Refusals* (`reject`) run under their own total timeout, and shutdown
//!   aborts whatever outlives `shutdown_timeout`.
//!
//! An event stream is a response in progress for as long as it lasts, so it
//! is never idle: its keep-alive comments show the client is there, and a
//! client that stops reading costs bounded memory.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that fails when the client stops sending it or sends it
/// too slowly.
///
/// Two rules, measured from the first time the body is polled:
/// - *silence*: no byte for `silence` (a client that sends part of a body
///   and stops);
/// - *rate*: once `silence` has passed, the body must have arrived at an
///   average of at least `min_rate` bytes per second (a client that sends a
///   byte now and then, never silent for long, holding the connection for
///   ever). This is the model of ASP.NET Core Kestrel's
///   `MinRequestBodyDataRate`.
///
/// Either failure is an [`io::Error`] of kind
/// [`TimedOut`](io::ErrorKind::TimedOut) (boxed, as every error of this
/// body), so a service recognises it through the error's source chain
/// without knowing this type; [`SseService`](crate::SseService) answers it
/// with `408 Request Timeout`. Errors of the inner body are passed on as
/// they are. [`Server`](crate::Server) wraps every request body it hands to
/// hyper's connections in one of these (see
/// [`ServerConfig::body_read_timeout`](crate::server::ServerConfig::body_read_timeout)).
///
/// The timer only runs while the body waits for the client: time the
/// service takes between two polls is not held against the client unless
/// the client has not sent anything meanwhile either.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use http_body_util::{BodyExt, Full};
/// use ssehub::server::BodyTimeout;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let body = BodyTimeout::new(Full::new(bytes::Bytes::from("hi")), Duration::from_secs(10), 1024);
/// assert_eq!(body.collect().await.unwrap().to_bytes(), "hi");
/// # }
/// ```
pub struct BodyTimeout<B> {
    inner: B,
    silence: Duration,
    min_rate: u64,
    /// When the body was first polled.
    started: Option<Instant>,
    /// When the last byte (or the trailers) arrived.
    last: Option<Instant>,
    received: u64,
    /// Armed the first time the inner body is not ready.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Timed out or ended: only `None` from now on.
    done: bool,
}

impl<B> BodyTimeout<B> {
    /// Wraps `body`: it fails after `silence` without a byte, or if after
    /// `silence` it has averaged fewer than `min_rate` bytes per second (`0`
    /// turns that rule off).
    pub fn new(body: B, silence: Duration, min_rate: u64) -> Self {
        BodyTimeout {
            inner: body,
            silence,
            min_rate,
            started: None,
            last: None,
            received: 0,
            sleep: None,
            done: false,
        }
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }

    /// The earliest deadline, with the rule it belongs to; `None` if both
    /// are too far away to represent.
    fn deadline(&self, started: Instant) -> Option<(Instant, &'static str)> {
        let last = self.last.unwrap_or(started);
        let silence = last
            .checked_add(self.silence)
            .map(|at| (at, "no request body data within the body timeout"));
        let rate = (self.min_rate > 0)
            .then(|| {
                // Nanoseconds the bytes received so far may take.
                let nanos = u128::from(self.received) * 1_000_000_000 / u128::from(self.min_rate);
                let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                started.checked_add(self.silence.max(earned))
            })
            .flatten()
            .map(|at| (at, "request body slower than the minimum rate"));
        match (silence, rate) {
            (Some(s), Some(r)) => Some(if r.0 < s.0 { r } else { s }),
            (s, r) => s.or(r),
        }
    }
}

impl<B> Body for BodyTimeout<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let started = *this.started.get_or_insert_with(Instant::now);
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let progress = match frame.data_ref() {
                    Some(data) => data.remaining(),
                    // Trailers: the body is complete.
                    None => 1,
                };
                if progress > 0 {
                    this.received = this.received.saturating_add(progress as u64);
                    this.last = Some(Instant::now());
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.done = true;
                this.sleep = None;
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        let Some((deadline, why)) = this.deadline(started) else {
            return Poll::Pending;
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.done = true;
        this.sleep = None;
        Poll::Ready(Some(Err(Box::new(io::Error::new(
            io::ErrorKind::TimedOut,
            why,
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for BodyTimeout<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyTimeout")
            .field("inner", &self.inner)
            .field("silence", &self.silence)
            .field("min_rate", &self.min_rate)
            .field("received", &self.received)
            .field("done", &self.done)
            .finish()
    }
}

/// The requests in progress on one connection.
///
/// A request is in progress from the call of the service until its response
/// body is dropped (hyper drops it once it is sent, or when the stream or
/// the connection is reset), so an event stream is in progress for as long
/// as it lasts.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    in_progress: AtomicUsize,
    /// Signalled when the count leaves or reaches zero. One waiter (the
    /// connection's task); `notify_one` keeps a permit if it is not
    /// waiting, so no change is missed.
    changed: Notify,
}

impl Activity {
    /// Marks a request in progress until the guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InProgress {
        if self.in_progress.fetch_add(1, Ordering::AcqRel) == 0 {
            self.changed.notify_one();
        }
        InProgress(self.clone())
    }

    /// Completes once no request has been in progress for `idle`.
    pub(crate) async fn idle_for(&self, idle: Duration) {
        loop {
            if self.in_progress.load(Ordering::Acquire) > 0 {
                self.changed.notified().await;
                continue;
            }
            // Idle from now: the clock restarts after every request.
            if tokio::time::timeout(idle, self.changed.notified())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// One request in progress; see [`Activity`].
#[derive(Debug)]
pub(crate) struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        if self.0.in_progress.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_one();
        }
    }
}

/// A response body that keeps its request in progress until dropped.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    inner: B,
    _in_progress: InProgress,
}

impl<B> Tracked<B> {
    /// `inner`, keeping its request in progress while it lives.
    pub(crate) fn new(inner: B, in_progress: InProgress) -> Self {
        Tracked {
            inner,
            _in_progress: in_progress,
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The per-request deadlines a connection's service applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    pub(crate) silence: Duration,
    pub(crate) min_rate: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    /// A body fed by hand: `None` from the sender ends it.
    struct Fed(mpsc::UnboundedReceiver<Option<Bytes>>);

    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.get_mut().0.poll_recv(cx) {
                Poll::Ready(Some(Some(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    fn fed(
        silence_ms: u64,
        min_rate: u64,
    ) -> (mpsc::UnboundedSender<Option<Bytes>>, BodyTimeout<Fed>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            tx,
            BodyTimeout::new(Fed(rx), Duration::from_millis(silence_ms), min_rate),
        )
    }

    /// `fut`, which must complete within ten (paused) minutes: a deadline
    /// that never fires fails the test instead of hanging it.
    async fn within<F: Future>(fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(600), fut)
            .await
            .expect("completes in time")
    }

    fn is_timeout(e: &BoxError) -> bool {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
    }

    #[tokio::test(start_paused = true)]
    async fn silence_fails_the_body_after_the_timeout() {
        let (tx, mut body) = fed(1000, 0);
        tx.send(Some(Bytes::from_static(b"ab"))).unwrap();
        let t0 = Instant::now();
        assert!(within(body.frame()).await.unwrap().is_ok());
        let e = within(body.frame()).await.unwrap().unwrap_err();
        assert!(is_timeout(&e), "{e}");
        assert_eq!(t0.elapsed(), Duration::from_millis(1000));
        // Ended for good.
        assert!(within(body.frame()).await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test(start_paused = true)]
    async fn each_byte_restarts_the_silence_clock() {
        let (tx, body) = fed(1000, 0);
        let t0 = Instant::now();
        let feeder = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                tx.send(Some(Bytes::from_static(b"x"))).unwrap();
            }
            tx.send(None).unwrap();
        });
        let collected = within(body.collect()).await.unwrap().to_bytes();
        assert_eq!(collected, "xxxxx");
        assert_eq!(t0.elapsed(), Duration::from_millis(4500));
        feeder.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_the_minimum_rate_after_the_grace() {
        // 1 byte every 300 ms never trips the 1 s silence rule; at 100
        // bytes/s minimum, the 4 bytes received by 1 s have earned 40 ms.
        let (tx, mut body) = fed(1000, 100);
        let t0 = Instant::now();
        let _feeder = tokio::spawn(async move {
            loop {
                if tx.send(Some(Bytes::from_static(b"x"))).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        let e = loop {
            match within(body.frame()).await.unwrap() {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(is_timeout(&e), "{e}");
        assert_eq!(t0.elapsed(), Duration::from_millis(1000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_passes() {
        // 100 bytes every 500 ms is 200 bytes/s, above the 100 bytes/s
        // minimum; the silences stay under 1 s.
        let (tx, body) = fed(1000, 100);
        let feeder = tokio::spawn(async move {
            for _ in 0..20 {
                tx.send(Some(Bytes::from(vec![b'x'; 100]))).unwrap();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            tx.send(None).unwrap();
        });
        assert_eq!(within(body.collect()).await.unwrap().to_bytes().len(), 2000);
        feeder.await.unwrap();
    }

    #[test]
    fn huge_settings_do_not_overflow() {
        let (_tx, body) = fed(0, 1);
        let body = BodyTimeout {
            silence: Duration::MAX,
            received: u64::MAX,
            ..body
        };
        let now = Instant::now();
        assert!(body.deadline(now).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let activity = Arc::new(Activity::default());
        let t0 = Instant::now();
        let guard = activity.start();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(Duration::from_millis(1000)).await }
        });
        tokio::time::sleep(Duration::from_millis(5000)).await;
        assert!(!idle.is_finished(), "busy is never idle");
        drop(guard);
        within(idle).await.unwrap();
        assert_eq!(t0.elapsed(), Duration::from_millis(6000));
    }
}
