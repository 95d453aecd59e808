//! [`ResponseFuture`]: the future of [`SseService`](crate::SseService)'s
//! responses, ready at once for most, boxed for those that wait (a publish,
//! a stream whose topic a store loads).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use http::header::{self, HeaderValue};
use http_body::Body;

use crate::http::body::ResponseBody;

/// The future of [`SseService`](crate::SseService)'s responses.
pub struct ResponseFuture {
    inner: FutureKind,
}

// Most responses are ready at once; keeping them inline spares a box per
// request (hyper stores the future once per connection, it is not moved).
#[allow(clippy::large_enum_variant)]
enum FutureKind {
    Ready(Option<Response<ResponseBody>>),
    Boxed(Pin<Box<dyn Future<Output = Response<ResponseBody>> + Send>>),
}

impl ResponseFuture {
    pub(crate) fn ready(res: Response<ResponseBody>) -> Self {
        ResponseFuture {
            inner: FutureKind::Ready(Some(res)),
        }
    }

    pub(crate) fn boxed(
        fut: impl Future<Output = Response<ResponseBody>> + Send + 'static,
    ) -> Self {
        ResponseFuture {
            inner: FutureKind::Boxed(Box::pin(fut)),
        }
    }

    /// The response without its body, for `HEAD`: a complete body's
    /// length stays in `Content-Length`.
    pub(crate) fn head_only(self) -> Self {
        self.map(|res| {
            if let Some(n) = res.body().size_hint().exact()
                && n > 0
            {
                res.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            *res.body_mut() = ResponseBody::empty();
        })
    }

    /// The response, changed by `f` once it is there (CORS headers).
    pub(crate) fn map(self, f: impl FnOnce(&mut Response<ResponseBody>) + Send + 'static) -> Self {
        match self.inner {
            FutureKind::Ready(Some(mut res)) => {
                f(&mut res);
                ResponseFuture::ready(res)
            }
            FutureKind::Boxed(fut) => ResponseFuture::boxed(async move {
                let mut res = fut.await;
                f(&mut res);
                res
            }),
            done @ FutureKind::Ready(None) => ResponseFuture { inner: done },
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<Response<ResponseBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().inner {
            FutureKind::Ready(res) => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => Poll::Pending,
            },
            FutureKind::Boxed(fut) => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
