//! HTTP meaning: the endpoints ([`SseService`]), publish bodies, who may
//! publish and subscribe, CORS, metrics, and the response body.
//!
//! [`SseService`] is a `hyper` and `tower` service for any request body;
//! mount it as it is, under a path prefix, or inside another router
//! (axum's `nest_service`). Handlers that do their own routing answer with
//! [`stream_response`].
//!
//! | module file | concept |
//! |---|---|
//! | `service.rs` | the endpoints, routing, [`stream_response`] |
//! | `auth.rs` | the hook that decides who may subscribe and publish: [`Authorize`] |
//! | `tokens.rs` | the built-in policy: [`TokenPolicy`] (publish token, loopback rule) |
//! | `jwt.rs` | JWTs granting topics: `JwtKey`, `Grants` (feature `jwt`) |
//! | `cors.rs` | cross-origin rules: [`CorsOrigins`] |
//! | `publish.rs` | publish bodies, text or JSON |
//! | `metrics.rs` | `GET /metrics`, Prometheus text (feature `metrics`) |
//! | `connections.rs` | [`ConnectionStats`], kept by the server |
//! | `body.rs` | [`ResponseBody`]: a stream or a complete body |
//!
//! Without `jwt` or `metrics`, `no_jwt.rs` and `no_metrics.rs` stand in
//! for them inside the crate: the built-in policy has no JWT branch, and
//! `/metrics` is `404`.

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod connections;
pub(crate) mod cors;
#[cfg(feature = "jwt")]
pub(crate) mod jwt;
#[cfg(not(feature = "jwt"))]
#[path = "no_jwt.rs"]
pub(crate) mod jwt;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
#[cfg(not(feature = "metrics"))]
#[path = "no_metrics.rs"]
pub(crate) mod metrics;
pub(crate) mod publish;
pub(crate) mod refusal;
pub(crate) mod service;
pub(crate) mod tokens;

pub use self::auth::{AccessRequest, Authorize, Decision};
pub use self::body::ResponseBody;
pub use self::connections::ConnectionStats;
pub use self::cors::{CorsOrigins, InvalidOrigin};
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use self::jwt::{AuthError, Grants, JWT_LEEWAY, JwtKey, MAX_JWT_EXP};
pub use self::publish::BodyError;
pub use self::service::{
    DEFAULT_MAX_TOPICS_PER_STREAM, DEFAULT_STREAM_TOPIC, PeerAddr, ResponseFuture, ServiceConfig,
    SseService, SseServiceBuilder, StreamRequestError, stream_response, stream_response_many,
};
pub use self::tokens::{TOKEN_COOKIE, TokenPolicy};
