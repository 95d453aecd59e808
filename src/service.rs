//! The HTTP endpoints, as a hyper [`Service`].
//!
//! | request | answer |
//! |---|---|
//! | `GET /stream` | the event stream of the default topic |
//! | `GET /events/{topic}` | the event stream of `topic` |
//! | `POST /events/{topic}` | publishes the body as one event, `201 {"id":"..."}` |
//!
//! Streams take `Last-Event-ID` (header) or `?lastEventId=` (query; the
//! header wins) to resume, and `?limit=N` to end after `N` events.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::service::Service;

use crate::body::ResponseBody;
use crate::event::Event;
use crate::hub::{Hub, HubError, Subscribe, validate_topic};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The hyper service with ssehub's HTTP endpoints.
///
/// Clone it into every connection: clones share the hub. It can be mounted
/// under a path prefix of a larger server (see [`SseServiceBuilder::prefix`]
/// and `examples/embed.rs`), and works with any request body type.
///
/// # Examples
///
/// ```
/// use http_body_util::Empty;
/// use hyper::service::Service;
/// use ssehub::{Hub, SseService};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let service = SseService::builder(Hub::new()).prefix("/sse").build();
///
/// let req = http::Request::get("/sse/events/news").body(Empty::<bytes::Bytes>::new()).unwrap();
/// let res = service.call(req).await.unwrap();
/// assert_eq!(res.status(), 200);
/// assert_eq!(res.headers()["content-type"], "text/event-stream");
/// # }
/// ```
#[derive(Clone)]
pub struct SseService {
    hub: Hub,
    config: Arc<ServiceConfig>,
}

/// The settings of an [`SseService`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Path prefix every route sits under (empty for none).
    pub prefix: String,
    /// The topic served at `GET /stream`.
    pub stream_topic: String,
    /// Largest accepted publish body.
    pub max_body_bytes: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            prefix: String::new(),
            stream_topic: DEFAULT_STREAM_TOPIC.to_owned(),
            max_body_bytes: 1 << 20,
        }
    }
}

/// The topic behind `GET /stream` unless configured otherwise.
pub const DEFAULT_STREAM_TOPIC: &str = "stream";

impl SseService {
    /// A service with the default settings.
    pub fn new(hub: Hub) -> Self {
        SseService::builder(hub).build()
    }

    /// Starts configuring a service.
    pub fn builder(hub: Hub) -> SseServiceBuilder {
        SseServiceBuilder {
            hub,
            config: ServiceConfig::default(),
        }
    }

    /// The hub behind the service.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The service's settings.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    fn route<'a>(&self, path: &'a str) -> Route<'a> {
        let Some(path) = path.strip_prefix(self.config.prefix.as_str()) else {
            return Route::NotFound;
        };
        if path == "/stream" {
            Route::Stream
        } else if let Some(topic) = path.strip_prefix("/events/") {
            Route::Topic(topic)
        } else {
            Route::NotFound
        }
    }

    fn subscribe<B>(&self, topic: &str, req: &Request<B>) -> Response<ResponseBody> {
        let query = match StreamQuery::parse(req.uri().query()) {
            Ok(q) => q,
            Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
        };
        let mut options = Subscribe::new();
        // The header wins over the query parameter; an empty one means none.
        let header_id = req
            .headers()
            .get("last-event-id")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .filter(|v| !v.is_empty());
        if let Some(id) = header_id.or(query.last_event_id) {
            options = options.last_event_id(id);
        }
        if let Some(n) = query.limit {
            options = options.limit(n);
        }
        match self.hub.subscribe(topic, options) {
            Ok(stream) => {
                let mut res = Response::new(ResponseBody::from(stream));
                let h = res.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                h.insert("x-accel-buffering", HeaderValue::from_static("no"));
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                res
            }
            Err(e) => hub_error(e),
        }
    }

    fn publish<B>(&self, topic: &str, req: Request<B>) -> ResponseFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        if let Err(e) = validate_topic(topic) {
            return ResponseFuture::ready(hub_error(e));
        }
        let mut event_type = None;
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            if k == "event" {
                if let Err(e) = crate::event::validate_type(&v) {
                    return ResponseFuture::ready(text(StatusCode::BAD_REQUEST, &e.to_string()));
                }
                event_type = Some(v.into_owned());
            }
        }
        let max = self.config.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return ResponseFuture::ready(too_large(max));
        }
        let hub = self.hub.clone();
        let topic = topic.to_owned();
        ResponseFuture::boxed(async move {
            let bytes = match Limited::new(req.into_body(), max).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    return too_large(max);
                }
                Err(_) => return text(StatusCode::BAD_REQUEST, "could not read request body"),
            };
            let mut event = match Event::from_utf8(bytes) {
                Ok(ev) => ev,
                Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            if let Some(t) = event_type {
                event = match event.with_type(t) {
                    Ok(ev) => ev,
                    Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
                };
            }
            match hub.publish(&topic, event).await {
                Ok(id) => json(StatusCode::CREATED, format!("{{\"id\":\"{id}\"}}\n")),
                Err(e) => hub_error(e),
            }
        })
    }
}

impl<B> Service<Request<B>> for SseService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<B>) -> ResponseFuture {
        let route = self.route(req.uri().path());
        let method = req.method();
        match route {
            Route::Stream if method == Method::GET => {
                ResponseFuture::ready(self.subscribe(&self.config.stream_topic, &req))
            }
            Route::Topic(topic) if method == Method::GET => {
                ResponseFuture::ready(self.subscribe(topic, &req))
            }
            Route::Topic(topic) if method == Method::POST => {
                let topic = topic.to_owned();
                self.publish(&topic, req)
            }
            Route::Stream => ResponseFuture::ready(not_allowed("GET")),
            Route::Topic(_) => ResponseFuture::ready(not_allowed("GET, POST")),
            Route::NotFound => ResponseFuture::ready(text(StatusCode::NOT_FOUND, "not found")),
        }
    }
}

impl fmt::Debug for SseService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseService")
            .field("hub", &self.hub)
            .field("config", &self.config)
            .finish()
    }
}

/// Builds an [`SseService`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SseServiceBuilder {
    hub: Hub,
    config: ServiceConfig,
}

impl SseServiceBuilder {
    /// Serves every route under `prefix` (e.g. `/sse` gives
    /// `/sse/events/{topic}`); other paths are `404`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into().trim_end_matches('/').to_owned();
        self
    }

    /// The topic served at `GET /stream` (default `stream`).
    ///
    /// # Panics
    ///
    /// If `topic` is not a valid topic name.
    #[track_caller]
    pub fn stream_topic(mut self, topic: impl Into<String>) -> Self {
        let topic = topic.into();
        assert!(
            validate_topic(&topic).is_ok(),
            "invalid topic name {topic:?}"
        );
        self.config.stream_topic = topic;
        self
    }

    /// Largest publish body accepted; larger ones get `413` (default 1 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }

    /// Builds the service.
    pub fn build(self) -> SseService {
        SseService {
            hub: self.hub,
            config: Arc::new(self.config),
        }
    }
}

enum Route<'a> {
    Stream,
    Topic(&'a str),
    NotFound,
}

/// The query parameters of a stream request.
#[derive(Debug, Default)]
struct StreamQuery {
    last_event_id: Option<String>,
    limit: Option<u64>,
}

impl StreamQuery {
    fn parse(query: Option<&str>) -> Result<StreamQuery, &'static str> {
        let mut q = StreamQuery::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "lastEventId" if q.last_event_id.is_none() && !v.is_empty() => {
                    q.last_event_id = Some(v.into_owned());
                }
                "limit" => {
                    q.limit =
                        Some(parse_limit(&v).ok_or("invalid limit: expected an integer from 1")?)
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

fn parse_limit(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|&n| n > 0)
}

/// The future of [`SseService`]'s responses.
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
    fn ready(res: Response<ResponseBody>) -> Self {
        ResponseFuture {
            inner: FutureKind::Ready(Some(res)),
        }
    }

    fn boxed(fut: impl Future<Output = Response<ResponseBody>> + Send + 'static) -> Self {
        ResponseFuture {
            inner: FutureKind::Boxed(Box::pin(fut)),
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

/// A one-line plain-text response.
pub(crate) fn text(status: StatusCode, msg: &str) -> Response<ResponseBody> {
    let mut body = String::with_capacity(msg.len() + 1);
    body.push_str(msg);
    body.push('\n');
    let mut res = Response::new(ResponseBody::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn json(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::full(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn not_allowed(allow: &'static str) -> Response<ResponseBody> {
    let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

fn too_large(max: usize) -> Response<ResponseBody> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body is larger than {max} bytes"),
    )
}

fn hub_error(e: HubError) -> Response<ResponseBody> {
    let status = match e {
        HubError::InvalidTopic => StatusCode::BAD_REQUEST,
        HubError::TooManyTopics | HubError::Closed => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut res = text(status, &e.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("1"), Some(1));
        assert_eq!(parse_limit("100"), Some(100));
        for bad in ["", "0", "-1", "+1", "1.5", "abc", "18446744073709551616"] {
            assert_eq!(parse_limit(bad), None, "{bad}");
        }
    }

    #[test]
    fn query() {
        let q = StreamQuery::parse(Some("lastEventId=ab-3&limit=5&x=y")).unwrap();
        assert_eq!(q.last_event_id.as_deref(), Some("ab-3"));
        assert_eq!(q.limit, Some(5));
        let q = StreamQuery::parse(Some("lastEventId=a%2Db-3")).unwrap();
        assert_eq!(q.last_event_id.as_deref(), Some("a-b-3"));
        assert!(StreamQuery::parse(Some("limit=0")).is_err());
        assert!(StreamQuery::parse(None).unwrap().last_event_id.is_none());
    }
}
