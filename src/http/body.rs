//! The response body of [`SseService`](crate::SseService): an event stream
//! or a short complete body.

use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
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
    /// Written by a task of its own (a Durable Streams `live=sse` read);
    /// ends when the task drops its sender.
    Channel(tokio::sync::mpsc::Receiver<Bytes>),
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

    /// A body that a task writes, chunk by chunk, until it drops the
    /// sender; dropping the body tells the task (its sends fail).
    pub(crate) fn channel(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Channel(rx),
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
            Kind::Channel(rx) => rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Stream(s) => s.is_end_stream(),
            Kind::Multi(s) => s.is_end_stream(),
            Kind::Full(b) => b.is_none(),
            Kind::Channel(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Stream(s) => s.size_hint(),
            Kind::Multi(s) => s.size_hint(),
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Channel(_) => SizeHint::default(),
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
            Kind::Channel(_) => f.write_str("ResponseBody(channel)"),
        }
    }
}
