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
//! | `live.rs` | the tail of a stream, read and encoded once for its `live=sse` readers |
//! | `query.rs` | what a read asks for |
//! | `events.rs` | what reads answer with: bodies, cursors, the `live=sse` events (a leaf) |
//! | `wire.rs` | the protocol's headers, and the one `StreamError` -> answer table (a leaf) |

mod append;
mod create;
mod events;
pub(crate) mod live;
mod query;
mod read;
mod sse;
mod wire;

pub(crate) use self::wire::BASE;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;

use crate::core::durable::path;
use crate::http::auth::AccessRequest;
use crate::http::body::ResponseBody;
use crate::http::future::ResponseFuture;
use crate::http::responses::{not_allowed, text};
use crate::http::service::SseService;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
        Method::HEAD => read::head(service, topic),
        Method::DELETE => {
            let hub = service.hub.clone();
            ResponseFuture::boxed(async move { read::delete(&hub, &topic).await })
        }
        _ => ResponseFuture::ready(not_allowed(ALLOW)),
    }
}

/// The preflight of a cross-origin request: every method and header of
/// the protocol (unless CORS is off).
fn preflight(service: &SseService) -> Response<ResponseBody> {
    service.config.cors.protocol_preflight(ALLOW, ALLOW_HEADERS)
}
