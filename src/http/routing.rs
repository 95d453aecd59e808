//! Which path goes where: [`SseService`] as a hyper and a tower service.
//!
//! Below the service's prefix, the service's own routes come first
//! (`/healthz`, `/metrics`), then each protocol under its path: today the
//! native API (`native/`) takes everything else. A protocol adapter mounts
//! here with its path prefix (Durable Streams under `/v1/stream/`, later
//! Mercure under `/.well-known/mercure`), beside the native API, which
//! never sees its requests.
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | `200 ok` (`503` while shutting down) |
//! | `GET /metrics` | Prometheus metrics (feature `metrics`; else `404`) |
//! | `/v1/stream/...` | Durable Streams (see `durable/mod.rs`) |
//! | anything else | the native API (see `native/mod.rs`) |
//!
//! `HEAD` is answered as `GET`, without the body.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use hyper::service::Service;

use crate::http::body::ResponseBody;
use crate::http::durable;
use crate::http::future::ResponseFuture;
use crate::http::metrics;
use crate::http::native::{self, Route};
use crate::http::responses::{not_allowed, text};
use crate::http::service::SseService;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a path below the service's prefix goes.
enum Mount<'a> {
    Health,
    Metrics,
    /// A Durable Stream: its path below `/v1/stream/`.
    Durable(&'a str),
    /// The Mercure hub (if served).
    Mercure,
    Native,
}

impl<'a> Mount<'a> {
    fn of(path: &'a str) -> Mount<'a> {
        match path {
            "/healthz" => Mount::Health,
            "/metrics" if metrics::SERVED => Mount::Metrics,
            _ if is_mercure(path) => Mount::Mercure,
            _ => match path.strip_prefix(durable::BASE) {
                Some(stream) => Mount::Durable(stream),
                None => Mount::Native,
            },
        }
    }
}

/// Whether `path` is the Mercure hub's (or below it).
fn is_mercure(path: &str) -> bool {
    path.strip_prefix("/.well-known/mercure")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl SseService {
    /// Whether `path` (without query) is one of the event stream routes.
    pub(crate) fn is_stream_path(&self, path: &str) -> bool {
        self.below_prefix(path).is_some_and(|path| {
            matches!(Mount::of(path), Mount::Native)
                && Route::of(path, &self.config.stream_topic).is_some_and(Route::is_stream)
        })
    }

    /// Whether `path` is the Mercure hub's, when the service serves one: a
    /// `GET` there is a subscription, answered on the server's HTTP/1.1
    /// fast path like event streams.
    pub(crate) fn is_mercure_stream(&self, path: &str) -> bool {
        #[cfg(feature = "mercure")]
        {
            self.config.mercure.is_some()
                && self
                    .below_prefix(path)
                    .is_some_and(|p| p.trim_end_matches('/') == "/.well-known/mercure")
        }
        #[cfg(not(feature = "mercure"))]
        {
            let _ = path;
            false
        }
    }

    /// Whether `path` and `query` ask for a Durable Stream live over SSE
    /// (answered on the server's HTTP/1.1 fast path, like event streams).
    pub(crate) fn is_durable_sse(&self, path: &str, query: Option<&str>) -> bool {
        let durable = self
            .below_prefix(path)
            .is_some_and(|path| matches!(Mount::of(path), Mount::Durable(_)));
        durable
            && form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .any(|(k, v)| k == "live" && v == "sse")
    }

    fn route_request<B>(&self, req: Request<B>) -> ResponseFuture
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let Some(path) = self.below_prefix(req.uri().path()) else {
            return ResponseFuture::ready(text(StatusCode::NOT_FOUND, "not found"));
        };
        let readable = req.method() == Method::GET || req.method() == Method::HEAD;
        match Mount::of(path) {
            Mount::Health if readable => ResponseFuture::ready(if self.hub.is_closed() {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
            } else {
                text(StatusCode::OK, "ok")
            }),
            Mount::Metrics if readable => {
                let mut res = Response::new(ResponseBody::full(self.shared.metrics.render()));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
                ResponseFuture::ready(res)
            }
            Mount::Health | Mount::Metrics => ResponseFuture::ready(not_allowed("GET, HEAD")),
            Mount::Durable(stream) => {
                let stream = stream.to_owned();
                durable::answer(self, req, &stream)
            }
            #[cfg(feature = "mercure")]
            Mount::Mercure if self.config.mercure.is_some() => {
                let mercure = self.config.mercure.clone().expect("checked");
                crate::http::mercure::answer(self, &mercure, req)
            }
            Mount::Mercure => ResponseFuture::ready(text(
                StatusCode::NOT_FOUND,
                "no Mercure hub here (ssehub --mercure-jwt-key)",
            )),
            Mount::Native => native::answer(self, req),
        }
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::hub::Hub;

    async fn answer(service: &SseService, method: Method, path: &str) -> Response<ResponseBody> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        Service::call(service, req).await.unwrap()
    }

    #[tokio::test]
    async fn each_path_goes_to_its_mount() {
        let service = SseService::builder(Hub::new()).prefix("/sse").build();
        for (method, path, status) in [
            (Method::GET, "/sse/healthz", StatusCode::OK),
            (Method::POST, "/sse/healthz", StatusCode::METHOD_NOT_ALLOWED),
            (Method::GET, "/sse/", StatusCode::OK),
            (Method::POST, "/sse/", StatusCode::METHOD_NOT_ALLOWED),
            (Method::GET, "/sse/nothing", StatusCode::NOT_FOUND),
            (Method::GET, "/healthz", StatusCode::NOT_FOUND),
            (
                Method::DELETE,
                "/sse/events/a",
                StatusCode::METHOD_NOT_ALLOWED,
            ),
        ] {
            let res = answer(&service, method.clone(), path).await;
            assert_eq!(res.status(), status, "{method} {path}");
        }
        assert!(service.is_stream_path("/sse/events/a"));
        assert!(service.is_stream_path("/sse/events"));
        assert!(service.is_stream_path("/sse/stream"));
        assert!(!service.is_stream_path("/sse/healthz"));
        assert!(!service.is_stream_path("/sse/"));
        assert!(!service.is_stream_path("/events/a"));
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
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
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
}
