//! Durable Streams (protocol 1.0, `PROTOCOL.md` in
//! `durable-streams/durable-streams`) under `/v1/stream/{path}`: an
//! adapter over the hub (`hub/durable.rs`), which holds each stream in a
//! topic of its own (see `core::durable::path` for the names).
//!
//! | request | answer |
//! |---|---|
//! | `PUT` | creates the stream (`201`), or finds it as asked (`200`) |
//! | `POST` | appends (`204`, `200` for a producer), closes with `Stream-Closed: true` |
//! | `GET` | reads from `offset` (catch-up), or waits: `live=long-poll`, `live=sse` |
//! | `HEAD` | the stream's metadata |
//! | `DELETE` | deletes it (`204`) |
//! | `OPTIONS` | CORS preflight |
//!
//! Where the protocol text and its conformance suite (0.3.6) disagree,
//! this follows the suite; the README lists where.
//!
//! | file | concern |
//! |---|---|
//! | `create.rs` | `PUT`: configuration, forks |
//! | `append.rs` | `POST`: appends, producers, closing |
//! | `read.rs` | `GET` catch-up and long-poll, `HEAD`, `DELETE` |
//! | `sse.rs` | `GET ...&live=sse` |

mod append;
mod create;
mod read;
mod sse;

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;

use crate::core::TopicName;
use crate::core::durable::meta::Refusal;
use crate::core::durable::offset::Offset;
use crate::core::durable::path;
use crate::http::auth::AccessRequest;
use crate::http::body::ResponseBody;
use crate::http::future::ResponseFuture;
use crate::http::responses::{Attempt, hub_error, not_allowed, text};
use crate::http::service::SseService;
use crate::hub::durable::StreamError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the protocol's streams are, below the service's prefix.
pub(crate) const BASE: &str = "/v1/stream/";

pub(crate) const NEXT_OFFSET: HeaderName = HeaderName::from_static("stream-next-offset");
pub(crate) const CURSOR: HeaderName = HeaderName::from_static("stream-cursor");
pub(crate) const UP_TO_DATE: HeaderName = HeaderName::from_static("stream-up-to-date");
pub(crate) const CLOSED: HeaderName = HeaderName::from_static("stream-closed");
pub(crate) const SEQ: HeaderName = HeaderName::from_static("stream-seq");
pub(crate) const TTL: HeaderName = HeaderName::from_static("stream-ttl");
pub(crate) const EXPIRES_AT: HeaderName = HeaderName::from_static("stream-expires-at");
pub(crate) const PRODUCER_ID: HeaderName = HeaderName::from_static("producer-id");
pub(crate) const PRODUCER_EPOCH: HeaderName = HeaderName::from_static("producer-epoch");
pub(crate) const PRODUCER_SEQ: HeaderName = HeaderName::from_static("producer-seq");
pub(crate) const EXPECTED_SEQ: HeaderName = HeaderName::from_static("producer-expected-seq");
pub(crate) const RECEIVED_SEQ: HeaderName = HeaderName::from_static("producer-received-seq");
pub(crate) const FORKED_FROM: HeaderName = HeaderName::from_static("stream-forked-from");
pub(crate) const FORK_OFFSET: HeaderName = HeaderName::from_static("stream-fork-offset");
pub(crate) const FORK_SUB_OFFSET: HeaderName = HeaderName::from_static("stream-fork-sub-offset");
pub(crate) const SSE_DATA_ENCODING: HeaderName =
    HeaderName::from_static("stream-sse-data-encoding");

const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "content-type, authorization, if-none-match, stream-seq, stream-ttl, \
    stream-expires-at, stream-closed, producer-id, producer-epoch, producer-seq, \
    stream-forked-from, stream-fork-offset, stream-fork-sub-offset";
const EXPOSE_HEADERS: &str = "stream-next-offset, stream-cursor, stream-up-to-date, stream-closed, \
    stream-ttl, stream-expires-at, stream-sse-data-encoding, producer-epoch, producer-seq, \
    producer-expected-seq, producer-received-seq, etag, location";

/// Answers a request for the stream at `stream_path` (below [`BASE`],
/// as in the URL).
pub(crate) fn answer<B>(service: &SseService, req: Request<B>, stream_path: &str) -> ResponseFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let origin = req.headers().get(header::ORIGIN).cloned();
    let fut = route(service, req, stream_path);
    let config = service.config.clone();
    fut.map(move |res| {
        let h = res.headers_mut();
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            "cross-origin-resource-policy",
            HeaderValue::from_static("cross-origin"),
        );
        if config.cors != crate::http::cors::CorsOrigins::Off {
            config.cors.decorate(origin.as_ref(), h);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
    })
}

fn route<B>(service: &SseService, req: Request<B>, stream_path: &str) -> ResponseFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    if req.method() == Method::OPTIONS {
        return ResponseFuture::ready(preflight(service));
    }
    let topic = match path::topic_of(stream_path) {
        Ok(topic) => topic,
        Err(e) => return ResponseFuture::ready(text(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let method = req.method().clone();
    let access = AccessRequest::new(&req);
    let policy = service.config.policy();
    let verdict = if method == Method::GET || method == Method::HEAD {
        policy.subscribe(&access, &topic)
    } else {
        policy.publish(&access, &topic)
    };
    if let Some(res) = verdict.refusal(None) {
        return ResponseFuture::ready(res);
    }
    match method {
        Method::PUT => create::create(service, topic, req),
        Method::POST => append::append(service, topic, req),
        Method::GET => read::get(service, topic, &req),
        Method::HEAD => ResponseFuture::ready(read::head(service, &topic)),
        Method::DELETE => ResponseFuture::ready(read::delete(service, &topic)),
        _ => ResponseFuture::ready(not_allowed(ALLOW)),
    }
}

/// The preflight of a cross-origin request: every method and header of
/// the protocol (unless CORS is off).
fn preflight(service: &SseService) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
    if service.config.cors != crate::http::cors::CorsOrigins::Off {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    res
}

/// A header value from a number or an offset.
pub(crate) fn value(v: impl ToString) -> HeaderValue {
    HeaderValue::try_from(v.to_string()).expect("digits and '_' are valid header values")
}

/// A request refused before any stream is looked at: the status and the
/// one line that says why.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) StatusCode, pub(crate) Cow<'static, str>);

impl Refused {
    /// `400` with `why`.
    pub(crate) fn bad(why: impl Into<Cow<'static, str>>) -> Self {
        Refused(StatusCode::BAD_REQUEST, why.into())
    }

    pub(crate) fn response(&self) -> Response<ResponseBody> {
        text(self.0, &self.1)
    }
}

/// The one request header `name`, as text: `Ok(None)` if absent, `Err`
/// (a `400`) if repeated or not visible ASCII.
pub(crate) fn one_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, Refused> {
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Refused::bad(format!("{name} is given more than once")));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| Refused::bad(format!("{name} is not valid text")))
}

/// The status of an empty answer with the stream's tail in it.
pub(crate) fn with_tail(status: StatusCode, tail: Offset, closed: bool) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = status;
    res.headers_mut().insert(NEXT_OFFSET, value(tail));
    if closed {
        res.headers_mut()
            .insert(CLOSED, HeaderValue::from_static("true"));
    }
    res
}

/// The answer to a failed stream operation.
pub(crate) fn error(e: StreamError, attempt: Attempt) -> Response<ResponseBody> {
    let say = |status, msg: &str| text(status, msg);
    match e {
        StreamError::NotFound => say(StatusCode::NOT_FOUND, "stream not found"),
        StreamError::Gone => say(
            StatusCode::GONE,
            "stream was deleted (it lives on only for its forks)",
        ),
        StreamError::OffsetGone => say(
            StatusCode::GONE,
            "offset is gone: older than the stream keeps, or from a deleted stream",
        ),
        StreamError::OffsetUnknown => say(
            StatusCode::BAD_REQUEST,
            "offset is not a position of this stream",
        ),
        StreamError::Exists => say(
            StatusCode::CONFLICT,
            "stream already exists with a different configuration",
        ),
        StreamError::PathInUse => say(
            StatusCode::CONFLICT,
            "stream was deleted but still has forks: the path cannot be reused until they are gone",
        ),
        StreamError::ForkSourceMissing => say(StatusCode::NOT_FOUND, "fork source not found"),
        StreamError::ForkSourceGone => say(
            StatusCode::CONFLICT,
            "fork source was deleted (it lives on only for its forks)",
        ),
        StreamError::ForkPoint(why) => say(StatusCode::BAD_REQUEST, why),
        StreamError::ForkContentType => say(
            StatusCode::CONFLICT,
            "content type differs from the fork source's",
        ),
        StreamError::Refused { refusal, tail } => refused(refusal, tail),
        StreamError::Json(e) => say(StatusCode::BAD_REQUEST, &e.to_string()),
        StreamError::Unsupported => say(
            StatusCode::NOT_IMPLEMENTED,
            "Durable Streams are served from the memory store only for now (not with --data-dir or --redis)",
        ),
        StreamError::Hub(e) => hub_error(&e, attempt),
    }
}

fn refused(refusal: Refusal, tail: Offset) -> Response<ResponseBody> {
    let mut res = match refusal {
        Refusal::Closed => {
            let mut res = text(StatusCode::CONFLICT, "stream is closed");
            res.headers_mut()
                .insert(CLOSED, HeaderValue::from_static("true"));
            res
        }
        Refusal::ContentType => text(
            StatusCode::CONFLICT,
            "content type differs from the stream's",
        ),
        Refusal::StreamSeq => text(
            StatusCode::CONFLICT,
            "Stream-Seq is not above the last one accepted",
        ),
        Refusal::StaleEpoch { current } => {
            let mut res = text(StatusCode::FORBIDDEN, "stale producer epoch");
            res.headers_mut().insert(PRODUCER_EPOCH, value(current));
            res
        }
        Refusal::NewEpochNotAtZero => text(
            StatusCode::BAD_REQUEST,
            "a new producer epoch must start at Producer-Seq 0",
        ),
        Refusal::Gap { expected, received } => {
            let mut res = text(StatusCode::CONFLICT, "producer sequence gap");
            res.headers_mut().insert(EXPECTED_SEQ, value(expected));
            res.headers_mut().insert(RECEIVED_SEQ, value(received));
            res
        }
    };
    res.headers_mut().insert(NEXT_OFFSET, value(tail));
    res
}

/// The topic of a `Stream-Forked-From` value: a stream's URL path
/// (`{prefix}/v1/stream/{path}`).
pub(crate) fn source_topic(service: &SseService, source: &str) -> Option<TopicName> {
    let below = service.below_prefix(source)?;
    path::topic_of(below.strip_prefix(BASE)?).ok()
}
