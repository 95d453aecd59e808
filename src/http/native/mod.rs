//! ssehub's own API, below the service's prefix:
//!
//! | request | answer |
//! |---|---|
//! | `GET /stream` | the event stream of the default topic |
//! | `GET /events/{topic}` | the event stream of `topic` |
//! | `GET /events?topic=a&topic=b` | one event stream of several topics |
//! | `HEAD` of those | the headers, and the position in `Last-Event-ID` |
//! | `POST /events/{topic}` | publishes one event (text body) or a batch (JSON) |
//! | `OPTIONS` on those | CORS preflight |
//! | `GET /` | a page to watch a topic and publish test events |
//!
//! Streams take `Last-Event-ID` (header) or `?lastEventId=` (query; the
//! header wins) to resume, `?limit=N` to end after `N` events and
//! `?rewind=N` to start `N` events back.
//!
//! | file | concern |
//! |---|---|
//! | `stream.rs` | the stream endpoints |
//! | `publish.rs` | the publish endpoint and its bodies, text or JSON |
//! | `query.rs` | what a stream request asks for (query and headers) |
//! | `embed.rs` | [`stream_response`], [`stream_response_multi`], [`StreamRequestError`] for handlers that route themselves |
//! | `page.html` | the page of `GET /` |

pub(crate) mod embed;
pub(crate) mod publish;
pub(crate) mod query;
pub(crate) mod stream;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;

use crate::http::body::ResponseBody;
use crate::http::future::ResponseFuture;
use crate::http::responses::{not_allowed, text};
use crate::http::service::SseService;

#[cfg(doc)]
use self::embed::{StreamRequestError, stream_response, stream_response_multi};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PAGE: &str = include_str!("page.html");

/// A route of the native API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// A topic's stream; `true` if it can also be published to.
    Topic(&'a str, bool),
    /// A stream of the topics in the query.
    Topics,
    /// The page.
    Page,
}

impl<'a> Route<'a> {
    /// The route of `path` (below the service's prefix), if it is one of
    /// the native API's.
    pub(crate) fn of(path: &'a str, stream_topic: &'a str) -> Option<Self> {
        match path {
            "/stream" => Some(Route::Topic(stream_topic, false)),
            "" | "/" => Some(Route::Page),
            "/events" => Some(Route::Topics),
            _ => path
                .strip_prefix("/events/")
                .map(|topic| Route::Topic(topic, true)),
        }
    }

    /// Whether the route answers `GET` with an event stream.
    pub(crate) fn is_stream(self) -> bool {
        matches!(self, Route::Topic(..) | Route::Topics)
    }
}

/// Answers `req`, a request below the service's prefix that no other
/// mount took: a route of the native API, else `404`. The service's CORS
/// headers go on everything but a preflight (which carries its own).
pub(crate) fn answer<B>(service: &SseService, req: Request<B>) -> ResponseFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let route = service
        .below_prefix(req.uri().path())
        .and_then(|path| Route::of(path, &service.config.stream_topic));
    let Some(route) = route else {
        return ResponseFuture::ready(text(StatusCode::NOT_FOUND, "not found"));
    };
    let method = req.method().clone();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let fut = match (route, method) {
        (Route::Page, Method::GET | Method::HEAD) => {
            let mut res = Response::new(ResponseBody::full(Bytes::from_static(PAGE.as_bytes())));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return ResponseFuture::ready(res);
        }
        (Route::Page, _) => return ResponseFuture::ready(not_allowed("GET, HEAD")),
        (Route::Topic(..) | Route::Topics, Method::OPTIONS) => {
            return ResponseFuture::ready(service.config.cors.preflight(origin.as_ref()));
        }
        (Route::Topic(topic, _), Method::GET) => stream::subscribe(service, topic, &req),
        (Route::Topic(topic, _), Method::HEAD) => stream::head_stream(service, topic, &req),
        (Route::Topic(topic, true), Method::POST) => {
            let topic = topic.to_owned();
            publish::publish(service, &topic, req)
        }
        (Route::Topic(_, true), _) => {
            ResponseFuture::ready(not_allowed("GET, HEAD, POST, OPTIONS"))
        }
        (Route::Topics, Method::GET) => stream::subscribe_multi(service, &req),
        (Route::Topics, Method::HEAD) => stream::head_many(service, &req),
        (Route::Topic(_, false) | Route::Topics, _) => {
            ResponseFuture::ready(not_allowed("GET, HEAD, OPTIONS"))
        }
    };
    let config = service.config.clone();
    fut.map(move |res| config.cors.decorate(origin.as_ref(), res.headers_mut()))
}
