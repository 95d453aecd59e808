//! The HTTP endpoints, as a hyper [`Service`].
//!
//! | request | answer |
//! |---|---|
//! | `GET /stream` | the event stream of the default topic |
//! | `GET /events/{topic}` | the event stream of `topic` |
//! | `GET /events?topic=a&topic=b` | one event stream of several topics |
//! | `POST /events/{topic}` | publishes one event (text body) or a batch (JSON) |
//! | `OPTIONS` on those | CORS preflight |
//! | `GET /healthz` | `200 ok` (`503` while shutting down) |
//! | `GET /metrics` | Prometheus metrics (feature `metrics`; else `404`) |
//! | `GET /` | a page to watch a topic and publish test events |
//!
//! Streams take `Last-Event-ID` (header) or `?lastEventId=` (query; the
//! header wins) to resume, and `?limit=N` to end after `N` events.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::service::Service;

use crate::core::event::Event;
use crate::core::{EventId, IntoTopic, TopicName};
use crate::core::{MultiId, MultiIdError};
use crate::http::auth::{AccessRequest, Authorize, Decision};
use crate::http::body::ResponseBody;
use crate::http::connections::ConnectionStats;
use crate::http::cors::CorsOrigins;
use crate::http::metrics::{self, Metrics};
use crate::http::publish::Publish;
use crate::http::refusal::{Refusal, refuse};
use crate::http::tokens::TokenPolicy;
use crate::hub::{EventStream, Hub, HubError, MultiEventStream, Receipt, Subscribe, Subscribing};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The address of the client, for services not run by [`Server`](crate::Server).
///
/// [`Server`](crate::Server) tells the service each connection's peer; an
/// embedder with its own accept loop inserts this into the request's
/// extensions so that the loopback rule for publishing can apply. Without
/// it, a client is not considered local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The hyper service with ssehub's HTTP endpoints.
///
/// Clone it into every connection: clones share the hub. It can be mounted
/// under a path prefix of a larger server (see [`SseServiceBuilder::prefix`]
/// and `examples/embed.rs`), and works with any request body type. A
/// publish body that fails with an [`io::Error`] of kind `TimedOut`
/// anywhere in its error's source chain (as [`BodyTimeout`](crate::server::BodyTimeout)'s
/// do) is answered `408 Request Timeout`; other body errors `400`.
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
    shared: Arc<Shared>,
}

struct Shared {
    metrics: Metrics,
    connections: Arc<ConnectionStats>,
}

/// The settings of an [`SseService`].
#[derive(Clone)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Path prefix every route sits under (empty for none).
    pub prefix: String,
    /// The topic served at `GET /stream`.
    pub stream_topic: String,
    /// Largest accepted publish body.
    pub max_body_bytes: usize,
    /// Most topics one `GET /events?topic=...` stream may follow.
    pub max_topics_per_stream: usize,
    /// The largest request head the server in front accepts
    /// ([`ServerConfig::max_header_bytes`](crate::server::ServerConfig::max_header_bytes),
    /// 16 KiB by default). A stream of several topics is opened only if
    /// its reconnects fit: the request with its id at its longest, both
    /// in `Last-Event-ID` and in `?lastEventId=`.
    pub max_head_bytes: usize,
    /// Which origins may read streams and publish from a browser page.
    pub cors: CorsOrigins,
    /// The built-in policy (token, JWT, loopback), unless `authorize`.
    tokens: TokenPolicy,
    /// The embedder's policy, if it set one.
    authorize: Option<Arc<dyn Authorize>>,
}

impl ServiceConfig {
    /// The policy that decides who may subscribe and publish.
    fn policy(&self) -> &dyn Authorize {
        match &self.authorize {
            Some(custom) => &**custom,
            None => &self.tokens,
        }
    }
}

impl fmt::Debug for ServiceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConfig")
            .field("prefix", &self.prefix)
            .field("stream_topic", &self.stream_topic)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_topics_per_stream", &self.max_topics_per_stream)
            .field("max_head_bytes", &self.max_head_bytes)
            .field("cors", &self.cors)
            .field("tokens", &self.tokens)
            .field("authorize", &self.authorize.as_ref().map(|_| "<custom>"))
            .finish()
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            prefix: String::new(),
            stream_topic: DEFAULT_STREAM_TOPIC.to_owned(),
            max_body_bytes: 1 << 20,
            max_topics_per_stream: DEFAULT_MAX_TOPICS_PER_STREAM,
            max_head_bytes: 16 << 10,
            cors: CorsOrigins::default(),
            tokens: TokenPolicy::default(),
            authorize: None,
        }
    }
}

/// The topic behind `GET /stream` unless configured otherwise.
pub const DEFAULT_STREAM_TOPIC: &str = "stream";

/// The most topics of one stream unless configured otherwise.
pub const DEFAULT_MAX_TOPICS_PER_STREAM: usize = 64;

/// Topics that cannot be on a stream of several topics: their events
/// would be typed as ssehub's own signals.
const RESERVED_ON_MULTI: [&str; 2] = [
    crate::core::RESYNC_EVENT_TYPE,
    crate::core::REAUTH_EVENT_TYPE,
];

const PAGE: &str = include_str!("page.html");

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

    pub(crate) fn connection_stats(&self) -> &Arc<ConnectionStats> {
        &self.shared.connections
    }

    /// Whether `path` (without query) is one of the event stream routes.
    pub(crate) fn is_stream_path(&self, path: &str) -> bool {
        matches!(self.route(path), Route::Topic(..) | Route::Topics)
    }

    fn route<'a>(&'a self, path: &'a str) -> Route<'a> {
        let Some(path) = path.strip_prefix(self.config.prefix.as_str()) else {
            return Route::NotFound;
        };
        match path {
            "/stream" => Route::Topic(&self.config.stream_topic, false),
            "" | "/" => Route::Page,
            "/healthz" => Route::Health,
            "/metrics" if metrics::SERVED => Route::Metrics,
            "/events" => Route::Topics,
            _ => match path.strip_prefix("/events/") {
                Some(topic) => Route::Topic(topic, true),
                None => Route::NotFound,
            },
        }
    }

    /// The checks and options of a stream request (`GET` or `HEAD`): the
    /// query, the topic name, the subscriber's credentials, the position to
    /// resume from.
    // The refusal is built once and answered at once: boxing it would only
    // add an allocation.
    #[allow(clippy::result_large_err)]
    fn stream_request<B>(
        &self,
        topic: &str,
        req: &Request<B>,
    ) -> Result<(TopicName, Subscribe), Response<ResponseBody>> {
        let options = subscribe_options(req.uri(), req.headers())
            .map_err(|msg| text(StatusCode::BAD_REQUEST, msg))?;
        let topic = TopicName::new(topic).map_err(|e| hub_error(e.into()))?;
        let verdict = self
            .config
            .policy()
            .subscribe(&AccessRequest::new(req), &topic);
        let expires = match verdict {
            Decision::AllowUntil(at) => Some(at),
            _ => None,
        };
        if let Some(res) = denied(verdict) {
            return Err(res);
        }
        Ok((
            topic,
            match expires {
                Some(at) => options.expires_at(at),
                None => options,
            },
        ))
    }

    /// `HEAD` of a stream: what `GET` would answer, without opening a
    /// stream, and the topic's position in `Last-Event-ID` (see
    /// [`Hub::position`]).
    fn head_stream<B>(&self, topic: &str, req: &Request<B>) -> ResponseFuture {
        let topic = match self.stream_request(topic, req) {
            Ok((topic, _)) => topic,
            Err(res) => return ResponseFuture::ready(res),
        };
        // It creates and retires nothing (see `Hub::position`), and is
        // refused as the `GET` would be.
        let this = self.clone();
        let headers = refusal_headers(req.headers());
        ResponseFuture::boxed(async move {
            match this.hub.position(&topic, SUBSCRIBE_PATIENCE).await {
                Ok(id) => position_response(&id.to_string()),
                Err(e) => this.stream_refused(e, &headers),
            }
        })
    }

    fn subscribe<B>(&self, topic: &str, req: &Request<B>) -> ResponseFuture {
        let (topic, options) = match self.stream_request(topic, req) {
            Ok(checked) => checked,
            Err(res) => return ResponseFuture::ready(res),
        };
        // A store that loads topics fixes the start before the answer
        // (see `Hub::subscribe_ready`); in memory it is fixed at once.
        match self
            .hub
            .subscribe_for_response(&topic, options, SUBSCRIBE_PATIENCE)
        {
            Subscribing::Ready(result) => ResponseFuture::ready(match result {
                Ok(stream) => stream_body_response(stream),
                Err(e) => self.stream_refused(e, req.headers()),
            }),
            Subscribing::Waiting(fut) => {
                let this = self.clone();
                let headers = refusal_headers(req.headers());
                ResponseFuture::boxed(async move {
                    match fut.await {
                        Ok(stream) => stream_body_response(stream),
                        Err(e) => this.stream_refused(e, &headers),
                    }
                })
            }
        }
    }

    /// The answer to a stream request the hub refused: one that will pass
    /// keeps a browser retrying (see [`refusal`](super::refusal)).
    fn stream_refused(&self, e: HubError, request: &http::HeaderMap) -> Response<ResponseBody> {
        match Refusal::of(&e) {
            Some(why) => refuse(why, request, Some(&self.shared.connections.refusals)),
            None => hub_error(e),
        }
    }

    /// The checks and options of a request for a stream of several topics
    /// (`GET` or `HEAD` of `/events?topic=a&topic=b`): the query, the
    /// topics, the last event id of those topics, and the subscriber's
    /// credentials for each topic.
    #[allow(clippy::result_large_err)]
    fn stream_request_many<B>(
        &self,
        req: &Request<B>,
    ) -> Result<(Vec<TopicName>, Subscribe), Response<ResponseBody>> {
        let bad = |msg: &str| text(StatusCode::BAD_REQUEST, msg);
        let options = subscribe_options(req.uri(), req.headers()).map_err(bad)?;
        let topics = query_topics(req.uri().query(), self.config.max_topics_per_stream)
            .map_err(|msg| bad(&msg))?;
        match options.requested_id() {
            Some(id) => {
                let from = if req.headers().contains_key("last-event-id") {
                    "Last-Event-ID"
                } else {
                    "lastEventId"
                };
                match MultiId::parse(id, &topics) {
                    // What cannot be a position of these topics but may
                    // come from a browser starts every topic with
                    // `resync`: a refusal would close its `EventSource`.
                    Ok(_) | Err(MultiIdError::TooLong | MultiIdError::NoCheck) => {}
                    Err(e) => return Err(bad(&format!("invalid {from}: {e}"))),
                }
            }
            // A new stream is opened only if its reconnects will fit in
            // the server's request head: one refused for its size would
            // close the `EventSource` for good.
            None => {
                let worst = reconnect_head_len(req, topics.len());
                let max = self.config.max_head_bytes;
                if worst > max {
                    return Err(bad(&format!(
                        "a reconnect of this stream could need a request head of {worst} \
                         bytes (its id at its longest, in Last-Event-ID and in \
                         ?lastEventId=), over the server's {max}: name fewer topics"
                    )));
                }
            }
        }
        let access = AccessRequest::new(req);
        let mut expires: Option<std::time::SystemTime> = None;
        for topic in &topics {
            match self.config.policy().subscribe(&access, topic) {
                Decision::Allow => {}
                Decision::AllowUntil(at) => expires = Some(expires.map_or(at, |e| e.min(at))),
                refused => {
                    return Err(denied_for(refused, Some(topic))
                        .unwrap_or_else(|| text(StatusCode::FORBIDDEN, "refused")));
                }
            }
        }
        Ok((
            topics,
            match expires {
                Some(at) => options.expires_at(at),
                None => options,
            },
        ))
    }

    fn subscribe_many<B>(&self, req: &Request<B>) -> ResponseFuture {
        let (topics, options) = match self.stream_request_many(req) {
            Ok(checked) => checked,
            Err(res) => return ResponseFuture::ready(res),
        };
        match self
            .hub
            .subscribe_multi_for_response(topics, options, SUBSCRIBE_PATIENCE)
        {
            Subscribing::Ready(result) => ResponseFuture::ready(match result {
                Ok(stream) => multi_body_response(stream),
                Err(e) => self.stream_refused(e, req.headers()),
            }),
            Subscribing::Waiting(fut) => {
                let this = self.clone();
                let headers = refusal_headers(req.headers());
                ResponseFuture::boxed(async move {
                    match fut.await {
                        Ok(stream) => multi_body_response(stream),
                        Err(e) => this.stream_refused(e, &headers),
                    }
                })
            }
        }
    }

    /// `HEAD` of a stream of several topics: what `GET` would answer, and
    /// the position of all its topics in `Last-Event-ID` (see
    /// [`Hub::position_multi`]).
    fn head_many<B>(&self, req: &Request<B>) -> ResponseFuture {
        let topics = match self.stream_request_many(req) {
            Ok((topics, _)) => topics,
            Err(res) => return ResponseFuture::ready(res),
        };
        // It creates and retires nothing (see `Hub::position_multi`), and
        // is refused as the `GET` would be.
        let this = self.clone();
        let headers = refusal_headers(req.headers());
        ResponseFuture::boxed(async move {
            match this.hub.position_multi(topics, SUBSCRIBE_PATIENCE).await {
                Ok(id) => position_response(&id.to_string()),
                Err(e) => this.stream_refused(e, &headers),
            }
        })
    }

    fn publish<B>(&self, topic: &str, req: Request<B>) -> ResponseFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let topic = match TopicName::new(topic) {
            Ok(topic) => topic,
            Err(e) => return ResponseFuture::ready(hub_error(e.into())),
        };
        let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        if !self
            .config
            .cors
            .may_publish(req.headers().get(header::ORIGIN), authority)
        {
            return ResponseFuture::ready(text(
                StatusCode::FORBIDDEN,
                "cross-origin publishing is not allowed",
            ));
        }
        let mut event_type = None;
        for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
            if k == "event" {
                if let Err(e) = crate::core::event::validate_type(&v) {
                    return ResponseFuture::ready(text(StatusCode::BAD_REQUEST, &e.to_string()));
                }
                event_type = Some(v.into_owned());
            }
        }
        let verdict = self
            .config
            .policy()
            .publish(&AccessRequest::new(&req), &topic);
        if let Some(res) = denied(verdict) {
            return ResponseFuture::ready(res);
        }
        let key = match crate::http::publish::idempotency_key(req.headers()) {
            Ok(key) => key,
            Err(msg) => return ResponseFuture::ready(text(StatusCode::BAD_REQUEST, &msg)),
        };
        let max = self.config.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return ResponseFuture::ready(too_large(max));
        }
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_type);
        let hub = self.hub.clone();
        let version = req.version();
        ResponseFuture::boxed(async move {
            let bytes = match Limited::new(req.into_body(), max).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                    return too_large(max);
                }
                Err(e) if is_timeout(&*e) => return body_timeout(version),
                Err(_) => return text(StatusCode::BAD_REQUEST, "could not read request body"),
            };
            let request = if is_json {
                match crate::http::publish::parse_json(&bytes) {
                    Ok(request) => request,
                    Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
                }
            } else {
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
                Publish::One(event)
            };
            let receipt = |ids, replayed| Receipt { ids, replayed };
            let outcome = match (request, key) {
                (Publish::One(event), None) => hub
                    .publish(&topic, event)
                    .await
                    .map(|id| receipt(Ids::One(id), false)),
                (Publish::Batch(events), None) => hub
                    .publish_batch(&topic, events)
                    .await
                    .map(|ids| receipt(Ids::Batch(ids), false)),
                (Publish::One(event), Some(key)) => hub
                    .publish_idempotent(&topic, &key, event)
                    .await
                    .map(|r| receipt(Ids::One(r.ids), r.replayed)),
                (Publish::Batch(events), Some(key)) => hub
                    .publish_batch_idempotent(&topic, &key, events)
                    .await
                    .map(|r| receipt(Ids::Batch(r.ids), r.replayed)),
            };
            match outcome {
                Ok(receipt) => published(receipt),
                Err(e) => hub_error(e),
            }
        })
    }
}

/// The ids a publish answers with: `{"id":...}` for one event,
/// `{"ids":[...]}` for a batch.
enum Ids {
    One(EventId),
    Batch(Vec<EventId>),
}

/// The `201` of a publish, marked `Idempotent-Replayed: true` when it
/// repeats the answer of an earlier request with the same key.
fn published(receipt: Receipt<Ids>) -> Response<ResponseBody> {
    let body = match receipt.ids {
        Ids::One(id) => format!("{{\"id\":\"{id}\"}}\n"),
        Ids::Batch(ids) => {
            let list: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
            format!("{{\"ids\":[{}]}}\n", list.join(","))
        }
    };
    let mut res = json(StatusCode::CREATED, body);
    if receipt.replayed {
        res.headers_mut().insert(
            crate::http::publish::IDEMPOTENT_REPLAYED,
            HeaderValue::from_static("true"),
        );
    }
    res
}

/// What a stream request asks for: `Last-Event-ID` (the header, else
/// `?lastEventId=`; an empty one is none), `?limit=` and `?rewind=`.
fn subscribe_options(
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<Subscribe, &'static str> {
    let query = StreamQuery::parse(uri.query())?;
    let mut options = Subscribe::new();
    // The header wins over the query parameter.
    let header_id = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|v| !v.is_empty());
    if let Some(id) = header_id.or(query.last_event_id) {
        options = options.last_event_id(id);
    }
    if let Some(n) = query.limit {
        options = options.limit(n);
    }
    if let Some(n) = query.rewind {
        options = options.rewind(n);
    }
    Ok(options)
}

/// Answers an event-stream request in one call, for handlers that do their
/// own routing (and their own authorisation): reads what the client asks
/// for from `req` (`Last-Event-ID`, `?lastEventId=`, `?limit=`,
/// `?rewind=`), subscribes to `topic`, and returns the
/// `200 text/event-stream` response with the [`EventStream`] as its body.
///
/// # Errors
///
/// [`StreamRequestError`]: a bad query (`400`) or what the hub refused;
/// [`StreamRequestError::into_response`] answers it.
///
/// # Examples
///
/// ```
/// use ssehub::Hub;
/// use ssehub::http::stream_response;
///
/// let hub = Hub::new();
/// let (parts, ()) = http::Request::get("/anything?rewind=10")
///     .header("last-event-id", "")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let res = stream_response(&hub, "news", &parts).unwrap();
/// assert_eq!(res.headers()["content-type"], "text/event-stream");
/// ```
pub fn stream_response(
    hub: &Hub,
    topic: impl IntoTopic,
    req: &http::request::Parts,
) -> Result<Response<EventStream>, StreamRequestError> {
    let options = subscribe_options(&req.uri, &req.headers).map_err(StreamRequestError::Query)?;
    let stream = hub
        .subscribe(topic, options)
        .map_err(StreamRequestError::Hub)?;
    let mut res = Response::new(stream);
    stream_headers(res.headers_mut());
    Ok(res)
}

/// [`stream_response`] for a stream of several topics (see
/// [`MultiEventStream`]): reads `Last-Event-ID` (or `?lastEventId=`; the id
/// of these topics, in this order), `?limit=` and `?rewind=` (per topic)
/// from `req`, subscribes to `topics`, and returns the `200
/// text/event-stream` response. The handler chooses the topics (and
/// checks who may read them).
///
/// # Errors
///
/// [`StreamRequestError`]: a bad query, or what the hub refused (an empty
/// or repeated topic, a last event id of other topics or of these in
/// another order, more topics than the hub holds: `400`).
///
/// # Examples
///
/// ```
/// use ssehub::Hub;
/// use ssehub::http::stream_response_many;
///
/// let hub = Hub::new();
/// let (parts, ()) = http::Request::get("/feed").body(()).unwrap().into_parts();
/// let res = stream_response_many(&hub, ["chat", "news"], &parts).unwrap();
/// assert_eq!(res.headers()["content-type"], "text/event-stream");
///
/// // The id of the same topics in another order is refused, not misread.
/// let other = hub.subscribe_multi(["news", "chat"], Default::default()).unwrap().position();
/// let uri = format!("/feed?lastEventId={other}");
/// let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
/// let refused = stream_response_many(&hub, ["chat", "news"], &parts).unwrap_err();
/// assert_eq!(refused.status(), 400, "an id of (news, chat), for (chat, news)");
/// ```
pub fn stream_response_many<T: IntoTopic>(
    hub: &Hub,
    topics: impl IntoIterator<Item = T>,
    req: &http::request::Parts,
) -> Result<Response<MultiEventStream>, StreamRequestError> {
    let options = subscribe_options(&req.uri, &req.headers).map_err(StreamRequestError::Query)?;
    let stream = hub
        .subscribe_multi(topics, options)
        .map_err(StreamRequestError::Hub)?;
    let mut res = Response::new(stream);
    stream_headers(res.headers_mut());
    Ok(res)
}

/// The length of the head of a reconnect of the stream `req` opens (a
/// request without a last event id): `req` as HTTP/1.1 sends it, with the
/// stream's id at its longest added twice, in `Last-Event-ID` and in
/// `?lastEventId=` (a page that resumes with the query parameter gets the
/// header too when its `EventSource` reconnects).
fn reconnect_head_len<B>(req: &Request<B>, topics: usize) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    // `GET <target> HTTP/1.1\r\n`, each header, the empty line.
    let mut len = req.method().as_str().len() + 1 + target + 11;
    for (name, value) in req.headers() {
        len += name.as_str().len() + 2 + value.len() + 2;
    }
    if req.headers().get(header::HOST).is_none() {
        // HTTP/2's `:authority` is a `Host` header in HTTP/1.1.
        len += req
            .uri()
            .authority()
            .map_or(0, |a| 6 + a.as_str().len() + 2);
    }
    len += 2;
    let id = crate::core::multi_id::max_len(topics);
    len + "last-event-id: ".len() + id + 2 + "&lastEventId=".len() + id
}

/// The topics of `GET /events?topic=a&topic=b`: at least one, at most
/// `max`, each a valid name, none twice, none that would pass for
/// ssehub's own signals.
fn query_topics(query: Option<&str>, max: usize) -> Result<Vec<TopicName>, String> {
    let mut topics: Vec<TopicName> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "topic" {
            continue;
        }
        if topics.len() == max {
            return Err(format!("too many topics: at most {max} per stream"));
        }
        let topic = TopicName::new(&*v).map_err(|e| {
            let mut shown: String = v.chars().take(64).collect();
            if shown.len() < v.len() {
                shown.push_str("...");
            }
            format!("topic {shown:?}: {e}")
        })?;
        if RESERVED_ON_MULTI.contains(&topic.as_str()) {
            return Err(format!(
                "topic \"{topic}\" cannot be on a stream of several topics: \
                 its events would be taken for ssehub's own `{topic}` events"
            ));
        }
        if topics.contains(&topic) {
            return Err(format!("topic \"{topic}\" is named twice"));
        }
        topics.push(topic);
    }
    if topics.is_empty() {
        return Err("no topic: name them with ?topic=a&topic=b".to_owned());
    }
    Ok(topics)
}

/// Why [`stream_response`] could not answer with a stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamRequestError {
    /// The query is not valid (`400`): the text says why.
    Query(&'static str),
    /// The hub refused (an invalid topic name is `400`, others `503`).
    Hub(HubError),
}

impl StreamRequestError {
    /// The status the error is answered with.
    pub fn status(&self) -> StatusCode {
        self.response_parts().0
    }

    /// The answer: the status with a one-line text.
    ///
    /// Prefer [`into_response_for`](Self::into_response_for) when the
    /// request may come from a browser's `EventSource`.
    pub fn into_response(self) -> Response<ResponseBody> {
        match self {
            StreamRequestError::Query(msg) => text(StatusCode::BAD_REQUEST, msg),
            StreamRequestError::Hub(e) => hub_error(e),
        }
    }

    /// The answer to the request whose headers are `request`, the way
    /// [`SseService`] answers: a refusal that will pass (shutting down, no
    /// topic slot, storage out of reach) is, for a request that accepts
    /// `text/event-stream` (every `EventSource`), `200` with a `retry:`
    /// hint and an immediate end, so the browser reconnects later instead
    /// of giving up for good as it does on any other status. Others get
    /// [`into_response`](Self::into_response). No CORS headers: the
    /// application's CORS layer adds them, as to its other responses.
    ///
    /// ```
    /// # async fn f() {
    /// let hub = ssehub::Hub::new();
    /// hub.close();
    /// let (parts, ()) = http::Request::get("/events/news")
    ///     .header("accept", "text/event-stream")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let err = ssehub::http::stream_response(&hub, "news", &parts).unwrap_err();
    /// let res = err.into_response_for(&parts.headers);
    /// assert_eq!(res.status(), 200);
    /// assert_eq!(res.headers()["content-type"], "text/event-stream");
    /// # }
    /// ```
    pub fn into_response_for(self, request: &http::HeaderMap) -> Response<ResponseBody> {
        match &self {
            StreamRequestError::Hub(e) => match Refusal::of(e) {
                Some(why) => refuse(why, request, None),
                None => self.into_response(),
            },
            StreamRequestError::Query(_) => self.into_response(),
        }
    }

    fn response_parts(&self) -> (StatusCode, ()) {
        match self {
            StreamRequestError::Query(_) => (StatusCode::BAD_REQUEST, ()),
            StreamRequestError::Hub(
                HubError::InvalidTopic
                | HubError::NoTopics
                | HubError::DuplicateTopic(_)
                | HubError::InvalidLastEventId(_)
                | HubError::StreamTooWide { .. },
            ) => (StatusCode::BAD_REQUEST, ()),
            StreamRequestError::Hub(HubError::TooLarge) => (StatusCode::PAYLOAD_TOO_LARGE, ()),
            StreamRequestError::Hub(_) => (StatusCode::SERVICE_UNAVAILABLE, ()),
        }
    }
}

impl fmt::Display for StreamRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamRequestError::Query(msg) => f.write_str(msg),
            StreamRequestError::Hub(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StreamRequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamRequestError::Query(_) => None,
            StreamRequestError::Hub(e) => Some(e),
        }
    }
}

/// How long a subscription to a Redis topic waits for this node to load the
/// topic's history before answering anyway (the stream then starts when
/// Redis is back).
const SUBSCRIBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

fn stream_body_response(stream: crate::hub::stream::EventStream) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::from(stream));
    stream_headers(res.headers_mut());
    res
}

/// What a refusal made after waiting for the hub needs of the request.
fn refusal_headers(request: &http::HeaderMap) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for name in [header::ACCEPT, header::ORIGIN] {
        for v in request.get_all(&name) {
            headers.append(name.clone(), v.clone());
        }
    }
    headers
}

/// The answer to a `HEAD` of a stream: its headers, and the position in
/// `Last-Event-ID`.
fn position_response(id: &str) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::empty());
    stream_headers(res.headers_mut());
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert("last-event-id", v);
    }
    res
}

fn multi_body_response(stream: MultiEventStream) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::from(stream));
    stream_headers(res.headers_mut());
    res
}

fn stream_headers(h: &mut http::HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

fn is_json_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json")
}

/// The response for a refused request, `None` if allowed.
fn denied(verdict: Decision) -> Option<Response<ResponseBody>> {
    denied_for(verdict, None)
}

/// The response for a refused request, naming the refused topic of a
/// stream of several; `None` if allowed.
fn denied_for(verdict: Decision, topic: Option<&TopicName>) -> Option<Response<ResponseBody>> {
    let say = |why: &str| match topic {
        Some(t) => format!("topic \"{t}\": {why}"),
        None => why.to_owned(),
    };
    match verdict {
        Decision::Allow | Decision::AllowUntil(_) => None,
        Decision::Unauthorized(why) => {
            let mut res = text(StatusCode::UNAUTHORIZED, &say(&why));
            let challenge = if why == "missing token" {
                HeaderValue::from_static("Bearer realm=\"ssehub\"")
            } else {
                HeaderValue::from_static("Bearer realm=\"ssehub\", error=\"invalid_token\"")
            };
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
            Some(res)
        }
        Decision::Forbidden(why) => Some(text(StatusCode::FORBIDDEN, &say(&why))),
    }
}

/// The same service for tower stacks: axum's `Router::nest_service` and
/// `route_service`, tower layers, poem's and salvo's tower bridges. It is
/// always ready.
impl<B> tower_service::Service<Request<B>> for SseService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        Service::call(&*self, req)
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
        if req.method() == Method::HEAD {
            // The status and headers of `GET`, without the body (hyper's
            // HTTP/2 refuses a body on a `HEAD` response).
            return self.route_request(req).head_only();
        }
        self.route_request(req)
    }
}

impl SseService {
    fn route_request<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let route = self.route(req.uri().path());
        let method = req.method().clone();
        match route {
            Route::Topic(topic, publishable) => {
                let origin = req.headers().get(header::ORIGIN).cloned();
                let cors = self.config.clone();
                let fut = match method {
                    Method::GET => self.subscribe(topic, &req),
                    Method::HEAD => self.head_stream(topic, &req),
                    Method::POST if publishable => {
                        let topic = topic.to_owned();
                        self.publish(&topic, req)
                    }
                    Method::OPTIONS => {
                        ResponseFuture::ready(self.config.cors.preflight(origin.as_ref()))
                    }
                    _ if publishable => {
                        ResponseFuture::ready(not_allowed("GET, HEAD, POST, OPTIONS"))
                    }
                    _ => ResponseFuture::ready(not_allowed("GET, HEAD, OPTIONS")),
                };
                if method == Method::OPTIONS {
                    return fut;
                }
                fut.with_cors(cors, origin)
            }
            Route::Topics => {
                let origin = req.headers().get(header::ORIGIN).cloned();
                let fut = match method {
                    Method::GET => self.subscribe_many(&req),
                    Method::HEAD => self.head_many(&req),
                    Method::OPTIONS => {
                        return ResponseFuture::ready(self.config.cors.preflight(origin.as_ref()));
                    }
                    _ => ResponseFuture::ready(not_allowed("GET, HEAD, OPTIONS")),
                };
                fut.with_cors(self.config.clone(), origin)
            }
            Route::Page if method == Method::GET || method == Method::HEAD => {
                let mut res =
                    Response::new(ResponseBody::full(Bytes::from_static(PAGE.as_bytes())));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                ResponseFuture::ready(res)
            }
            Route::Health if method == Method::GET || method == Method::HEAD => {
                ResponseFuture::ready(if self.hub.is_closed() {
                    text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
                } else {
                    text(StatusCode::OK, "ok")
                })
            }
            Route::Metrics if method == Method::GET || method == Method::HEAD => {
                let mut res = Response::new(ResponseBody::full(self.shared.metrics.render()));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                ResponseFuture::ready(res)
            }
            Route::Page | Route::Health | Route::Metrics => {
                ResponseFuture::ready(not_allowed("GET, HEAD"))
            }
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
            TopicName::new(&topic).is_ok(),
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

    /// Most topics one `GET /events?topic=a&topic=b...` stream may follow;
    /// more get `400` (default 64, at least 1).
    pub fn max_topics_per_stream(mut self, n: usize) -> Self {
        self.config.max_topics_per_stream = n.max(1);
        self
    }

    /// Requires `Authorization: Bearer <token>` to publish (compared in
    /// constant time). Without it, loopback clients may publish freely.
    ///
    /// # Panics
    ///
    /// If `token` is empty (see [`TokenPolicy::publish_token`]).
    #[track_caller]
    pub fn publish_token(mut self, token: impl Into<String>) -> Self {
        self.config.tokens = self.config.tokens.publish_token(token);
        self
    }

    /// Requires a JWT signed with `key` to subscribe; a JWT with publish
    /// grants also authorises publishing (see
    /// [`JwtKey`](crate::http::JwtKey)).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt_key(mut self, key: crate::http::JwtKey) -> Self {
        self.config.tokens = self.config.tokens.jwt(key);
        self
    }

    /// Decides who may subscribe and publish with `policy` instead of the
    /// built-in [`TokenPolicy`] (then [`publish_token`](Self::publish_token)
    /// and `jwt_key` have no effect). See [`Authorize`].
    pub fn authorize(mut self, policy: impl Authorize) -> Self {
        self.config.authorize = Some(Arc::new(policy));
        self
    }

    /// The largest request head the server in front accepts (16 KiB by
    /// default, as [`ServerConfig`](crate::server::ServerConfig)): a stream of
    /// several topics whose reconnects could be longer is refused (`400`)
    /// when it is opened, not when a browser reconnects (any status but
    /// `200` closes an `EventSource` for good).
    pub fn max_head_bytes(mut self, bytes: usize) -> Self {
        self.config.max_head_bytes = bytes;
        self
    }

    /// Which origins may read streams and publish from browser pages.
    pub fn cors(mut self, origins: CorsOrigins) -> Self {
        self.config.cors = origins;
        self
    }

    /// Builds the service.
    pub fn build(self) -> SseService {
        let connections = Arc::new(ConnectionStats::default());
        connections.refusals.set_retry(self.hub.config().retry);
        connections.refusals.set_cors(self.config.cors.clone());
        SseService {
            shared: Arc::new(Shared {
                metrics: Metrics::new(self.hub.clone(), connections.clone()),
                connections,
            }),
            hub: self.hub,
            config: Arc::new(self.config),
        }
    }
}

enum Route<'a> {
    /// A topic's stream; `true` if it can also be published to.
    Topic(&'a str, bool),
    /// A stream of the topics in the query.
    Topics,
    Page,
    Health,
    Metrics,
    NotFound,
}

/// The query parameters of a stream request.
#[derive(Debug, Default)]
struct StreamQuery {
    last_event_id: Option<String>,
    limit: Option<u64>,
    rewind: Option<u64>,
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
                "rewind" => {
                    q.rewind =
                        Some(parse_count(&v).ok_or("invalid rewind: expected an integer from 0")?)
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

fn parse_limit(v: &str) -> Option<u64> {
    parse_count(v).filter(|&n| n > 0)
}

/// A decimal count: digits only (no sign, no spaces), fits in a `u64`.
fn parse_count(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
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

    /// The response without its body, for `HEAD`: a complete body's
    /// length stays in `Content-Length`.
    fn head_only(self) -> Self {
        fn strip(mut res: Response<ResponseBody>) -> Response<ResponseBody> {
            if let Some(n) = res.body().size_hint().exact()
                && n > 0
            {
                res.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            *res.body_mut() = ResponseBody::empty();
            res
        }
        match self.inner {
            FutureKind::Ready(Some(res)) => ResponseFuture::ready(strip(res)),
            FutureKind::Boxed(fut) => ResponseFuture::boxed(async move { strip(fut.await) }),
            done @ FutureKind::Ready(None) => ResponseFuture { inner: done },
        }
    }

    /// Adds the CORS headers for `origin` to the response.
    fn with_cors(self, config: Arc<ServiceConfig>, origin: Option<HeaderValue>) -> Self {
        match self.inner {
            FutureKind::Ready(Some(mut res)) => {
                config.cors.decorate(origin.as_ref(), res.headers_mut());
                ResponseFuture::ready(res)
            }
            FutureKind::Boxed(fut) => ResponseFuture::boxed(async move {
                let mut res = fut.await;
                config.cors.decorate(origin.as_ref(), res.headers_mut());
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

/// Whether `e` or one of its sources is an [`io::Error`] of kind
/// `TimedOut` (as [`BodyTimeout`](crate::server::BodyTimeout)'s are).
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
    })
}

/// `408` for a request body that stopped or slowed down: the rest of it may
/// still be on its way, so an HTTP/1.1 connection cannot serve another
/// request (HTTP/2 ends only the stream, and forbids `Connection`).
fn body_timeout(version: Version) -> Response<ResponseBody> {
    let mut res = text(
        StatusCode::REQUEST_TIMEOUT,
        "request body not received in time",
    );
    if version < Version::HTTP_2 {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

pub(crate) fn hub_error(e: HubError) -> Response<ResponseBody> {
    let (status, msg) = match &e {
        HubError::InvalidTopic
        | HubError::NoTopics
        | HubError::DuplicateTopic(_)
        | HubError::InvalidLastEventId(_)
        | HubError::StreamTooWide { .. } => (StatusCode::BAD_REQUEST, e.to_string()),
        HubError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        HubError::KeyReused => (StatusCode::CONFLICT, e.to_string()),
        // The cause is logged where it happened; clients get the gist.
        HubError::Storage(e) if e.kind() == crate::store::ErrorKind::Full => (
            StatusCode::INSUFFICIENT_STORAGE,
            "storage full: nothing was published".to_owned(),
        ),
        HubError::Storage(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable".to_owned(),
        ),
        _ => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let mut res = text(status, &msg);
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

    #[test]
    fn timeouts_are_found_in_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapper")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "slow");
        let direct: BoxError = Box::new(timed_out());
        assert!(is_timeout(&*direct));
        let nested: BoxError = Box::new(Wrapper(timed_out()));
        assert!(is_timeout(&*nested));
        let other: BoxError = Box::new(Wrapper(io::Error::other("reset")));
        assert!(!is_timeout(&*other));
    }

    async fn answer(service: &SseService, method: Method, path: &str) -> Response<ResponseBody> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        Service::call(service, req).await.unwrap()
    }

    #[cfg(feature = "metrics")]
    #[tokio::test]
    async fn metrics_are_served_under_the_prefix() {
        let service = SseService::builder(Hub::new()).prefix("/sse").build();
        let res = answer(&service, Method::GET, "/sse/metrics").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"# HELP ssehub_"), "{body:?}");
        let res = answer(&service, Method::POST, "/sse/metrics").await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    /// Without the feature `/metrics` is an unknown path for every method,
    /// not a route that refuses some; the rest is served as ever.
    #[cfg(not(feature = "metrics"))]
    #[tokio::test]
    async fn without_the_metrics_feature_metrics_is_not_found() {
        let service = SseService::builder(Hub::new()).prefix("/sse").build();
        for method in [Method::GET, Method::HEAD, Method::POST] {
            let res = answer(&service, method.clone(), "/sse/metrics").await;
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method}");
        }
        let res = answer(&service, Method::GET, "/sse/healthz").await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[test]
    fn body_timeout_closes_http1_only() {
        let h1 = body_timeout(Version::HTTP_11);
        assert_eq!(h1.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(h1.headers()[header::CONNECTION], "close");
        let h2 = body_timeout(Version::HTTP_2);
        assert_eq!(h2.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(h2.headers().get(header::CONNECTION).is_none());
    }
}
