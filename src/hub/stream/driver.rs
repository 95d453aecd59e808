//! The machinery every stream shares, written once: the order in which a
//! stream's frames go out (queued control frames, its event limit, the
//! expiry of its credentials, the wait for its topics' histories, events,
//! keep-alive), its greeting, how it ends, and the `http_body::Body` impl.
//! What differs between a stream of one topic and one of several (how
//! events are read and framed, what the `id:` is) is a [`Strategy`].

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use crate::core::event::{FrameId, checkpoint_frame, resync_frame, retry_line};
use crate::hub::stream::keep_alive::{KeepAlive, expiry_timer};

/// How a stream is set up; built by the hub.
pub(crate) struct StreamParams {
    pub(crate) retry_ms: Option<u64>,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) max_frame_bytes: usize,
    pub(crate) limit: Option<u64>,
    pub(crate) expires_at: Option<std::time::SystemTime>,
}

/// What a stream of one topic and a stream of several do their own way.
pub(crate) trait Strategy {
    /// Where a stream whose topics are still loading resumes from.
    type Resume;

    /// Called first on every poll.
    fn register(&self, _cx: &mut Context<'_>) {}

    /// Whether every topic's history is loaded (or a topic closed), without
    /// registering a wake-up.
    fn loaded(&self) -> Loaded;

    /// [`loaded`](Self::loaded), registering the wake-ups of the topics
    /// still loading. Arms each wait before it looks at the topic, so that
    /// no `prime` (or close) goes unnoticed.
    fn poll_loaded(&mut self, cx: &mut Context<'_>) -> Loaded;

    /// Fixes every topic's start (their histories are loaded) and queues
    /// the greeting (see [`queue_greeting`]).
    fn begin(
        &mut self,
        resume: Option<&Self::Resume>,
        rewind: u64,
        retry_ms: Option<u64>,
        pending: &mut VecDeque<Bytes>,
    );

    /// The next frame of events (or a `resync`), spending `budget`; may
    /// queue more frames that must follow it into `pending`. `Ready(None)`
    /// once a topic is closed; otherwise registers the wake-ups.
    fn poll_events(
        &mut self,
        cx: &mut Context<'_>,
        budget: &mut Budget,
        pending: &mut VecDeque<Bytes>,
    ) -> Poll<Option<Bytes>>;

    /// The `reauth` event at the stream's position.
    fn reauth(&self) -> Bytes;

    /// The stream ended: lets go of what it waits on.
    fn finish(&mut self) {}
}

/// Whether a stream's topics are ready to fix its start.
pub(crate) enum Loaded {
    /// Every history is loaded.
    Yes,
    /// One still loads.
    No,
    /// A topic was closed (the hub shut down): the stream ends.
    Closed,
}

/// What a stream may still send: events before its limit, bytes per frame.
pub(crate) struct Budget {
    /// Events left to send before the stream ends, `None` for no limit.
    remaining: Option<u64>,
    /// The largest frame built from several ready events.
    pub(crate) max_frame_bytes: usize,
}

impl Budget {
    /// Most events that may go out now.
    pub(crate) fn events(&self) -> u64 {
        self.remaining.unwrap_or(u64::MAX)
    }

    /// `count` events went out.
    pub(crate) fn spend(&mut self, count: u64) {
        if let Some(r) = &mut self.remaining {
            *r -= count.min(*r);
        }
    }

    /// The limit is reached: the stream ends.
    pub(crate) fn is_spent(&self) -> bool {
        self.remaining == Some(0)
    }
}

/// What few streams need: a limit, credentials that expire, a history
/// still loading (Redis). Boxed, and only when one of them is there, so
/// the common stream (endless, open, loaded), which stays resident for as
/// long as its client is connected, does not carry them.
struct Cold<R> {
    /// Events left to send before the stream ends, `None` for no limit.
    remaining: Option<u64>,
    /// When the credentials the stream was opened with expire: it then
    /// sends `reauth` and ends.
    expiry: Option<Pin<Box<Sleep>>>,
    /// While a topic's history loads: what fixes the start once it is
    /// loaded (the rest of the greeting goes out then).
    waiting: Option<Waiting<R>>,
}

impl<R> Cold<R> {
    fn is_empty(&self) -> bool {
        self.remaining.is_none() && self.expiry.is_none() && self.waiting.is_none()
    }
}

/// What a loading stream needs to fix its start.
struct Waiting<R> {
    resume: Option<R>,
    rewind: u64,
    retry_ms: Option<u64>,
}

/// A stream: a [`Strategy`] driven by the rules every stream follows.
pub(crate) struct Driver<S: Strategy> {
    pub(super) strategy: S,
    /// Frames to send before anything else, in order.
    pub(super) pending: VecDeque<Bytes>,
    keep_alive: Option<KeepAlive>,
    /// See [`Cold`]; `None` for most streams.
    cold: Option<Box<Cold<S::Resume>>>,
    /// The largest frame built from several ready events (beyond 4 GiB
    /// there is no difference: a frame is sent before it is that large).
    max_frame_bytes: u32,
    /// Ended (its limit reached, its credentials expired, the hub closed):
    /// nothing more to send.
    done: bool,
}

impl<S: Strategy> Driver<S> {
    /// A stream whose start is fixed: the caller queues its greeting.
    pub(crate) fn started(strategy: S, params: &StreamParams) -> Self {
        let cold = Cold {
            remaining: params.limit,
            expiry: params.expires_at.map(expiry_timer),
            waiting: None,
        };
        Driver {
            strategy,
            pending: VecDeque::new(),
            keep_alive: params.keep_alive.map(KeepAlive::new),
            cold: (!cold.is_empty()).then(|| Box::new(cold)),
            max_frame_bytes: u32::try_from(params.max_frame_bytes).unwrap_or(u32::MAX),
            done: false,
        }
    }

    /// A stream that fixes its start once its topics are loaded. The retry
    /// hint goes out at once; the rest of the greeting once the start is
    /// known.
    pub(crate) fn loading(
        strategy: S,
        params: &StreamParams,
        resume: Option<S::Resume>,
        rewind: u64,
    ) -> Self {
        let mut driver = Driver::started(strategy, params);
        let cold = driver.cold.get_or_insert_with(|| {
            Box::new(Cold {
                remaining: None,
                expiry: None,
                waiting: None,
            })
        });
        cold.waiting = Some(Waiting {
            resume,
            rewind,
            retry_ms: params.retry_ms,
        });
        driver.pending.extend(params.retry_ms.map(retry_line));
        driver
    }

    #[inline]
    pub(crate) fn is_loading(&self) -> bool {
        self.cold.as_ref().is_some_and(|c| c.waiting.is_some())
    }

    /// Events left before the limit, `None` for no limit.
    #[inline]
    pub(crate) fn remaining(&self) -> Option<u64> {
        self.cold.as_ref().and_then(|c| c.remaining)
    }

    #[inline]
    fn is_spent(&self) -> bool {
        self.remaining() == Some(0)
    }

    /// Fixes the start of a loading stream now, if its topics are loaded.
    pub(crate) fn start_if_loaded(&mut self) {
        if self.is_loading() && matches!(self.strategy.loaded(), Loaded::Yes) {
            self.begin();
        }
    }

    fn begin(&mut self) {
        let Some(waiting) = self.cold.as_mut().and_then(|c| c.waiting.take()) else {
            return;
        };
        if self.cold.as_ref().is_some_and(|c| c.is_empty()) {
            self.cold = None;
        }
        // The retry hint is still queued if nothing was sent yet: the
        // greeting replaces it, so it must carry it.
        let retry_ms = self.pending.pop_front().and(waiting.retry_ms);
        self.strategy.begin(
            waiting.resume.as_ref(),
            waiting.rewind,
            retry_ms,
            &mut self.pending,
        );
    }

    /// A frame goes out now.
    #[inline]
    fn sent(&mut self, frame: Bytes) -> Poll<Option<Bytes>> {
        if let Some(ka) = &mut self.keep_alive {
            ka.sent();
        }
        Poll::Ready(Some(frame))
    }

    fn finish(&mut self) {
        self.done = true;
        self.pending.clear();
        self.keep_alive = None;
        self.cold = None;
        self.strategy.finish();
    }

    /// The stream ends now.
    fn end(&mut self) -> Poll<Option<Bytes>> {
        self.finish();
        Poll::Ready(None)
    }

    /// `reauth`, once the stream's credentials expired; the stream then
    /// ends. Only between frames: never in the middle of a batch.
    fn poll_expiry(&mut self, cx: &mut Context<'_>) -> Option<Bytes> {
        let cold = self.cold.as_mut()?;
        let expiry = cold.expiry.as_mut()?;
        if expiry.as_mut().poll(cx).is_pending() || cold.waiting.is_some() {
            return None;
        }
        let frame = self.strategy.reauth();
        self.finish();
        Some(frame)
    }

    fn poll_keep_alive(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        match &mut self.keep_alive {
            Some(ka) => ka.poll(cx),
            None => Poll::Pending,
        }
    }

    /// The next frame: what is queued, the end at the limit, `reauth`, the
    /// start once the topics are loaded, events, else a keep-alive once
    /// the stream was silent for its period.
    #[inline]
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        self.strategy.register(cx);
        if let Some(frame) = self.pending.pop_front() {
            return self.sent(frame);
        }
        // Most streams have no limit, no expiry and no history loading:
        // one look at `cold` skips the three.
        if self.cold.is_some() {
            if self.is_spent() {
                return self.end();
            }
            if let Some(frame) = self.poll_expiry(cx) {
                return Poll::Ready(Some(frame));
            }
            if self.is_loading() {
                match self.strategy.poll_loaded(cx) {
                    Loaded::Closed => return self.end(),
                    Loaded::No => return self.poll_keep_alive(cx),
                    Loaded::Yes => {
                        self.begin();
                        if let Some(frame) = self.pending.pop_front() {
                            return self.sent(frame);
                        }
                    }
                }
            }
        }
        let mut budget = Budget {
            remaining: self.remaining(),
            max_frame_bytes: self.max_frame_bytes as usize,
        };
        let polled = self
            .strategy
            .poll_events(cx, &mut budget, &mut self.pending);
        if let Some(cold) = &mut self.cold {
            cold.remaining = budget.remaining;
        }
        match polled {
            Poll::Ready(Some(frame)) => self.sent(frame),
            Poll::Ready(None) => self.end(),
            Poll::Pending => self.poll_keep_alive(cx),
        }
    }

    /// [`poll_next`](Self::poll_next) as `http_body::Body::poll_frame`.
    #[inline]
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.poll_next(cx).map(|f| f.map(|f| Ok(Frame::data(f))))
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.done || (self.pending.is_empty() && self.is_spent())
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        if self.is_end_stream() {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }

    /// The phase, for `Debug`.
    pub(crate) fn phase_name(&self) -> &'static str {
        if self.done {
            "done"
        } else if self.is_loading() {
            "loading"
        } else {
            "live"
        }
    }
}

/// Queues the greeting of a stream whose start was just fixed, at its
/// position `id`: a fresh stream's id-only checkpoint, then each topic's
/// `resync` (a resume that cannot be exact), the first of them carrying the
/// `retry:` hint; a `retry:` line alone when neither goes out (an exact
/// resume).
pub(crate) fn queue_greeting(
    pending: &mut VecDeque<Bytes>,
    mut retry_ms: Option<u64>,
    fresh: bool,
    resyncs: impl IntoIterator<Item = String>,
    id: &impl FrameId,
) {
    if fresh {
        pending.push_back(checkpoint_frame(retry_ms.take(), id));
    }
    for json in resyncs {
        pending.push_back(resync_frame(retry_ms.take(), &json, id));
    }
    pending.extend(retry_ms.map(retry_line));
}
