//! Mercure (the SSE hub protocol of Symfony, API Platform and Laravel) at
//! `/.well-known/mercure`, as an adapter over the hub: `GET` subscribes,
//! `POST` publishes, `OPTIONS` answers a CORS preflight. Served when the
//! service has a [`MercureConfig`] (`--mercure-jwt-key`).
//!
//! | file | concern |
//! |---|---|
//! | `auth.rs` | tokens: where they are found, what they grant |
//! | `decoded.rs` | stored updates decoded once for all subscribers |
//! | `publish.rs` | `POST`: a form-encoded update |
//! | `subscribe.rs` | `GET`: the updates a subscriber's selectors match |
//! | `subscriptions.rs` | subscription events and the subscriptions API |
//!
//! Updates live in the hub (`hub::mercure`): one history of updates in
//! whichever store the hub has.

pub(crate) mod auth;
pub(crate) mod decoded;
mod publish;
pub(crate) mod subscribe;
pub(crate) mod subscriptions;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;

pub use self::auth::MercureConfig;
use self::auth::{query_pairs, unauthorized};
use crate::http::body::ResponseBody;
use crate::http::future::ResponseFuture;
use crate::http::responses::{not_allowed, text};
use crate::http::service::SseService;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

use crate::core::mercure::HUB_PATH as BASE;

const ALLOW: &str = "GET, HEAD, POST, OPTIONS";

/// Answers a request for the hub (`path` is [`BASE`] or below it).
pub(crate) fn answer<B>(
    service: &SseService,
    mercure: &MercureConfig,
    req: Request<B>,
) -> ResponseFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let origin = req.headers().get(header::ORIGIN).cloned();
    let path = req.uri().path();
    let below = path.find(BASE).map_or("", |at| &path[at + BASE.len()..]);
    let fut = if below.is_empty() || below == "/" {
        match *req.method() {
            Method::GET | Method::HEAD => subscribe::subscribe(service, mercure, &req),
            Method::POST => publish::publish(service, mercure, req),
            Method::OPTIONS => ResponseFuture::ready(preflight(service)),
            _ => ResponseFuture::ready(not_allowed(ALLOW)),
        }
    } else {
        match below.strip_prefix("/subscriptions") {
            Some(rest)
                if mercure.tracks_subscriptions() && (rest.is_empty() || rest.starts_with('/')) =>
            {
                ResponseFuture::ready(subscriptions_api(service, mercure, &req, rest))
            }
            _ => ResponseFuture::ready(text(StatusCode::NOT_FOUND, "not found")),
        }
    };
    let config = service.config.clone();
    fut.map(move |res| {
        if config.cors != crate::http::cors::CorsOrigins::Off {
            config.cors.decorate(origin.as_ref(), res.headers_mut());
            res.headers_mut().insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("last-event-id"),
            );
        }
    })
}

/// The subscriptions API: `GET` with a token.
fn subscriptions_api<B>(
    service: &SseService,
    mercure: &MercureConfig,
    req: &Request<B>,
    rest: &str,
) -> Response<ResponseBody> {
    if *req.method() != Method::GET && *req.method() != Method::HEAD {
        return not_allowed("GET, HEAD");
    }
    let query = query_pairs(req.uri().query());
    let grant = match mercure.grant(req.headers(), &query) {
        Ok(Some(g)) => g,
        Ok(None) => return unauthorized(auth::TokenError::Missing),
        Err(e) => return unauthorized(e),
    };
    let path = req.uri().path();
    let path = path.find(BASE).map_or(path, |at| &path[at..]);
    subscriptions::api(
        &service.hub,
        &service.shared.mercure_active,
        path,
        rest,
        &grant,
    )
}

fn preflight(service: &SseService) -> Response<ResponseBody> {
    service.config.cors.protocol_preflight(
        ALLOW,
        "authorization, content-type, last-event-id, cache-control",
    )
}
