//! The response body of [`SseService`](crate::SseService): an event stream
//! or a short complete body.

use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::hub::MultiEventStream;
use crate::hub::stream::EventStream;

/// The body of every response of [`SseService`](crate::SseService).
///
/// An [`EventStream`], a [`MultiEventStream`] or a complete body (JSON, a
/// one-line error).
/// It is a plain `http_body::Body<Data = Bytes, Error = Infallible>`, so it
/// boxes into any stack (`BodyExt::boxed`).
pub struct ResponseBody {
    kind: Kind,
}

enum Kind {
    Stream(EventStream),
    // Boxed: a stream of one topic, the most common body, stays small.
    Multi(Box<MultiEventStream>),
    Full(Option<Bytes>),
    /// Written by a future polled in the body's own task (a Durable
    /// Streams `live=sse` read).
    Driven(Driven),
}

impl ResponseBody {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ResponseBody {
            kind: Kind::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Full(None),
        }
    }

    /// A body whose chunks the future made by `write` emits, one by one,
    /// through the [`Emitter`] it is given, until it returns. The future
    /// is polled when the body is (no task or channel of its own); dropping
    /// the body drops it.
    pub(crate) fn driven<F, Fut>(write: F) -> Self
    where
        F: FnOnce(Emitter) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let future: Pin<Box<dyn Future<Output = ()> + Send>> =
            Box::pin(write(Emitter(slot.clone())));
        // In a mutex only to make the body `Sync` whatever the future
        // holds: it is reached through `get_mut`, never locked.
        let future = Mutex::new(future);
        ResponseBody {
            kind: Kind::Driven(Driven {
                slot,
                future: Some(future),
            }),
        }
    }

    /// The event stream, if this body is one.
    pub fn as_stream(&self) -> Option<&EventStream> {
        match &self.kind {
            Kind::Stream(s) => Some(s),
            _ => None,
        }
    }

    /// The stream of several topics, if this body is one.
    pub fn as_multi_stream(&self) -> Option<&MultiEventStream> {
        match &self.kind {
            Kind::Multi(s) => Some(s),
            _ => None,
        }
    }
}

impl From<MultiEventStream> for ResponseBody {
    fn from(stream: MultiEventStream) -> Self {
        ResponseBody {
            kind: Kind::Multi(Box::new(stream)),
        }
    }
}

impl From<EventStream> for ResponseBody {
    fn from(stream: EventStream) -> Self {
        ResponseBody {
            kind: Kind::Stream(stream),
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match &mut self.get_mut().kind {
            Kind::Stream(s) => Pin::new(s).poll_frame(cx),
            Kind::Multi(s) => Pin::new(&mut **s).poll_frame(cx),
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Driven(d) => d.poll_chunk(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stream(s) => s.is_end_stream(),
            Kind::Multi(s) => s.is_end_stream(),
            Kind::Full(b) => b.is_none(),
            // Once the future is done, its last chunk has been taken.
            Kind::Driven(d) => d.future.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream(s) => s.size_hint(),
            Kind::Multi(s) => s.size_hint(),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Driven(_) => SizeHint::default(),
        }
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Stream(s) => f.debug_tuple("ResponseBody").field(s).finish(),
            Kind::Multi(s) => f.debug_tuple("ResponseBody").field(s).finish(),
            Kind::Full(b) => f
                .debug_struct("ResponseBody")
                .field("len", &b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Driven(_) => f.write_str("ResponseBody(driven)"),
        }
    }
}

/// The chunk handed over from a [`Driven`] body's future to the body.
type Slot = Arc<Mutex<Option<Bytes>>>;

fn take(slot: &Slot) -> Option<Bytes> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// A body whose chunks a future writes, polled by the body itself.
pub(crate) struct Driven {
    slot: Slot,
    future: Option<Mutex<Pin<Box<dyn Future<Output = ()> + Send>>>>,
}

impl Driven {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(b) = take(&self.slot) {
            return Poll::Ready(Some(b));
        }
        let Some(future) = &mut self.future else {
            return Poll::Ready(None);
        };
        let future = future.get_mut().unwrap_or_else(PoisonError::into_inner);
        let done = future.as_mut().poll(cx).is_ready();
        if done {
            self.future = None;
        }
        match take(&self.slot) {
            Some(b) => Poll::Ready(Some(b)),
            None if done => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

/// What the future of a [`ResponseBody::driven`] body writes with.
pub(crate) struct Emitter(Slot);

impl Emitter {
    /// Hands `chunk` to the body; resolves once the body has taken it
    /// (when it is polled for the next one).
    pub(crate) async fn emit(&self, chunk: Bytes) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(chunk);
        // Pending without a waker: the body, polling this future, finds
        // the chunk and returns it at once, and polls again for the next.
        poll_fn(|_| {
            let taken = self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_none();
            if taken {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
