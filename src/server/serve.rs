//! What a [`Server`](super::Server) runs: [`Serve`], for [`SseService`] and,
//! through [`ServiceAdapter`], for any other tower or hyper service; and how each
//! request reaches it on a connection served by hyper, under the deadlines
//! of `deadline.rs`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::deadline::{Activity, BodyLimits, BodyTimeout, InProgress, Tracked};
use crate::http::connections::ConnectionStats;
use crate::http::{ResponseBody, ResponseFuture, SseService};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A service a [`Server`](super::Server) can run.
///
/// The server hands it every request, with a [`RequestBody`] (whose reads
/// have the server's body deadlines), and the client's address in the
/// request's extensions as [`PeerAddr`](crate::http::PeerAddr).
/// [`SseService`] implements it; wrap any other service (an axum `Router`,
/// a `tower` stack, a hyper `service_fn`) in [`ServiceAdapter`].
pub trait Serve: Clone + Send + Sync + 'static {
    /// The response body.
    type Body: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static;
    /// The future of a response.
    type Future: Future<Output = Response<Self::Body>> + Send + Unpin + 'static;

    /// Answers one request.
    fn serve(&self, req: Request<RequestBody>) -> Self::Future;

    /// Whether a `GET` of `path` (without the query) is an event stream:
    /// HTTP/1.1 requests for these are answered on the server's fast path,
    /// which keeps no buffers while a stream is idle.
    fn is_stream(&self, path: &str) -> bool {
        let _ = path;
        false
    }

    /// Like [`Serve::is_stream`], for a route that streams only with some
    /// query (Durable Streams' `?live=sse`). The default asks
    /// [`Serve::is_stream`] with the path alone.
    fn is_stream_request(&self, path: &str, query: Option<&str>) -> bool {
        let _ = query;
        self.is_stream(path)
    }

    /// Called once when the server starts to shut down, before it waits for
    /// connections to finish: end the service's endless responses (event
    /// streams) here, or the wait lasts until its timeout.
    fn shutdown(&self) {}

    /// Where the server counts connections, if the service reports them
    /// (in its metrics).
    fn connection_stats(&self) -> Option<Arc<ConnectionStats>> {
        None
    }
}

impl Serve for SseService {
    type Body = ResponseBody;
    type Future = ServeFuture;

    fn serve(&self, req: Request<RequestBody>) -> ServeFuture {
        ServeFuture(hyper::service::Service::call(self, req))
    }

    fn is_stream(&self, path: &str) -> bool {
        self.is_stream_path(path)
    }

    fn is_stream_request(&self, path: &str, query: Option<&str>) -> bool {
        self.is_stream_path(path)
            || self.is_durable_sse(path, query)
            || self.is_mercure_stream(path)
    }

    fn shutdown(&self) {
        // Ends every stream: clients reconnect elsewhere, or to the next run.
        self.hub().close();
    }

    fn connection_stats(&self) -> Option<Arc<ConnectionStats>> {
        Some(self.connection_stats().clone())
    }
}

/// The future of [`SseService`]'s answers for a [`Server`](super::Server).
#[derive(Debug)]
pub struct ServeFuture(ResponseFuture);

impl Future for ServeFuture {
    type Output = Response<ResponseBody>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.get_mut().0).poll(cx) {
            Poll::Ready(Ok(res)) => Poll::Ready(res),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Any `tower` service, made something a [`Server`](super::Server) runs,
/// with the routes it answers with event streams (for the fast path) and
/// what ends them on shutdown.
///
/// # Examples
///
/// ```no_run
/// use std::convert::Infallible;
/// use http_body_util::{BodyExt, Full};
/// use ssehub::server::{RequestBody, ServiceAdapter};
/// use ssehub::{Hub, Server, SseService};
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let hub = Hub::new();
/// let sse = SseService::builder(hub.clone()).prefix("/sse").build();
/// let app = tower::service_fn(move |req: http::Request<RequestBody>| {
///     let sse = sse.clone();
///     async move {
///         if req.uri().path().starts_with("/sse/") {
///             let res = hyper::service::Service::call(&sse, req).await?;
///             Ok::<_, Infallible>(res.map(|b| http_body_util::BodyExt::boxed(b)))
///         } else {
///             let page = Full::from("my page").map_err(|never| match never {});
///             Ok(http::Response::new(http_body_util::BodyExt::boxed(page)))
///         }
///     }
/// });
/// let app = ServiceAdapter::new(app)
///     .streams(["/sse/stream", "/sse/events/"])
///     .on_shutdown(move || hub.close());
/// Server::bind("127.0.0.1:8080", app).await?.run_until(ssehub::server::shutdown_signal()).await
/// # }
/// ```
pub struct ServiceAdapter<S> {
    service: S,
    /// Paths that are streams: exact, or a prefix when ending with `/`.
    streams: Arc<[Box<str>]>,
    on_shutdown: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl<S> ServiceAdapter<S> {
    /// Runs `service`, with no stream routes.
    pub fn new(service: S) -> Self {
        ServiceAdapter {
            service,
            streams: Arc::from([]),
            on_shutdown: None,
        }
    }

    /// The paths answered with event streams: a path ending with `/` is a
    /// prefix (`/sse/events/` covers every topic), any other is exact.
    #[must_use]
    pub fn streams<P: Into<Box<str>>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.streams = paths.into_iter().map(Into::into).collect();
        self
    }

    /// What ends the service's streams when the server shuts down (for
    /// ssehub's: `hub.close()`).
    #[must_use]
    pub fn on_shutdown(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.on_shutdown = Some(Arc::new(f));
        self
    }
}

impl<S: Clone> Clone for ServiceAdapter<S> {
    fn clone(&self) -> Self {
        ServiceAdapter {
            service: self.service.clone(),
            streams: self.streams.clone(),
            on_shutdown: self.on_shutdown.clone(),
        }
    }
}

impl<S> fmt::Debug for ServiceAdapter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAdapter")
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Serve for ServiceAdapter<S>
where
    S: tower_service::Service<Request<RequestBody>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static,
{
    type Body = AdapterBody<B>;
    type Future = BoxFuture<Response<AdapterBody<B>>>;

    fn serve(&self, req: Request<RequestBody>) -> Self::Future {
        let mut service = self.service.clone();
        Box::pin(async move {
            let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
            let result = match ready {
                Ok(()) => service.call(req).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(res) => res.map(AdapterBody::Service),
                Err(e) => {
                    let e: BoxError = e.into();
                    tracing::warn!(error = %e, "service failed");
                    let mut res = Response::new(AdapterBody::Error(Some(Bytes::from_static(
                        b"internal server error\n",
                    ))));
                    *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    res
                }
            }
        })
    }

    fn is_stream(&self, path: &str) -> bool {
        self.streams.iter().any(|p| {
            if p.ends_with('/') {
                path.starts_with(&**p) && path.len() > p.len()
            } else {
                path == &**p
            }
        })
    }

    fn shutdown(&self) {
        if let Some(f) = &self.on_shutdown {
            f();
        }
    }
}

/// The body of a [`ServiceAdapter`] response: the service's, or a short error the
/// server wrote when the service failed.
#[derive(Debug)]
pub enum AdapterBody<B> {
    /// The service's body.
    Service(B),
    /// The server's `500` text.
    Error(Option<Bytes>),
}

impl<B> Body for AdapterBody<B>
where
    B: Body<Data = Bytes, Error: Into<BoxError>> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            AdapterBody::Service(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            AdapterBody::Error(text) => Poll::Ready(text.take().map(|t| Ok(Frame::data(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AdapterBody::Service(b) => b.is_end_stream(),
            AdapterBody::Error(text) => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            AdapterBody::Service(b) => b.size_hint(),
            AdapterBody::Error(text) => {
                SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64))
            }
        }
    }
}

/// A service wrapped for one hyper connection: request bodies get a
/// [`BodyTimeout`], and each request counts as in progress on the
/// connection's [`Activity`] until its response body is dropped.
#[derive(Debug)]
pub(crate) struct Deadlines<S> {
    inner: S,
    peer: Option<std::net::SocketAddr>,
    secure: bool,
    activity: Arc<Activity>,
    body: BodyLimits,
}

impl<S> Deadlines<S> {
    pub(crate) fn new(
        inner: S,
        peer: Option<std::net::SocketAddr>,
        secure: bool,
        activity: Arc<Activity>,
        body: BodyLimits,
    ) -> Self {
        Deadlines {
            inner,
            peer,
            secure,
            activity,
            body,
        }
    }
}

impl<S: Serve> hyper::service::Service<Request<Incoming>> for Deadlines<S> {
    type Response = Response<Tracked<S::Body>>;
    type Error = std::convert::Infallible;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_progress = self.activity.start();
        let limits = self.body;
        let mut req = req.map(|body| {
            RequestBody::incoming(BodyTimeout::new(body, limits.silence, limits.min_rate))
        });
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(crate::http::PeerAddr(peer));
        }
        if self.secure {
            req.extensions_mut().insert(crate::http::Secure);
        }
        TrackedFuture {
            inner: self.inner.serve(req),
            in_progress: Some(in_progress),
        }
    }
}

/// The future of [`Deadlines`]: the request is in progress while it runs,
/// then while its response body lives.
#[derive(Debug)]
pub(crate) struct TrackedFuture<F> {
    inner: F,
    in_progress: Option<InProgress>,
}

impl<F, B> Future for TrackedFuture<F>
where
    F: Future<Output = Response<B>> + Unpin,
{
    type Output = Result<Response<Tracked<B>>, std::convert::Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let res = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        let Some(in_progress) = this.in_progress.take() else {
            // Polled after completion: the inner future decides.
            return Poll::Pending;
        };
        Poll::Ready(Ok(res.map(|inner| Tracked::new(inner, in_progress))))
    }
}

/// The body of a request a [`Server`](super::Server) hands its service:
/// what the client sends, read under the server's body deadlines (a read
/// that stalls fails with an `io::Error` of kind `TimedOut`), or nothing.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<BodyTimeout<Incoming>>,
}

impl RequestBody {
    /// A request without a body (the fast path's).
    pub(crate) fn empty() -> Self {
        RequestBody { inner: None }
    }

    pub(crate) fn incoming(body: BodyTimeout<Incoming>) -> Self {
        RequestBody { inner: Some(body) }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
