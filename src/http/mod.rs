//! HTTP meaning: the endpoints ([`SseService`]), who may publish and
//! subscribe, CORS, metrics, and the response body. The crate documentation
//! maps the whole crate; this is the table of contents of `http/`.
//!
//! What every protocol shares sits at the top; each protocol is a folder
//! below it: `native/` (ssehub's own API) and `durable/` (Durable Streams).
//!
//! | file | concern |
//! |---|---|
//! | `service.rs` | [`SseService`], its settings ([`ServiceConfig`]) and builder |
//! | `routing.rs` | which path goes where: the `hyper` and `tower` `Service` impls, a mount per protocol |
//! | `native/` | the native API: stream and publish endpoints, [`stream_response`] |
//! | `durable/` | Durable Streams under `/v1/stream/`, over the hub's streams |
//! | `future.rs` | [`ResponseFuture`] |
//! | `responses.rs` | small answers and headers, the one `HubError` -> status table (a leaf) |
//! | `body.rs` | [`ResponseBody`]: a stream or a complete body |
//! | `request_body.rs` | request bodies, read whole, bounded in size and time |
//! | `auth.rs` | the hook that decides who may subscribe and publish: [`Authorize`], [`PeerAddr`] |
//! | `tokens.rs` | the built-in policy: [`TokenPolicy`] (publish token, loopback rule) |
//! | `jwt.rs` | JWTs granting topics: `JwtKey`, `Grants` (feature `jwt`) |
//! | `cors.rs` | cross-origin rules: [`CorsOrigins`] |
//! | `refusal.rs` | refusals that pass, answered so that a browser keeps trying |
//! | `connections.rs` | [`ConnectionStats`], kept by the server |
//! | `metrics.rs` | `GET /metrics`, Prometheus text (feature `metrics`) |
//!
//! Without `jwt` or `metrics`, `no_jwt.rs` and `no_metrics.rs` stand in
//! for them inside the crate: the built-in policy has no JWT branch, and
//! `/metrics` is `404`.

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod connections;
pub(crate) mod cors;
pub(crate) mod durable;
pub(crate) mod future;
#[cfg(feature = "jwt")]
pub(crate) mod jwt;
#[cfg(not(feature = "jwt"))]
#[path = "no_jwt.rs"]
pub(crate) mod jwt;
#[cfg(feature = "mercure")]
pub(crate) mod mercure;
#[cfg(feature = "metrics")]
pub(crate) mod metrics;
#[cfg(not(feature = "metrics"))]
#[path = "no_metrics.rs"]
pub(crate) mod metrics;
pub(crate) mod native;
pub(crate) mod refusal;
pub(crate) mod request_body;
pub(crate) mod responses;
pub(crate) mod routing;
pub(crate) mod service;
pub(crate) mod tokens;

pub(crate) use self::auth::Secure;
pub use self::auth::{AccessRequest, Authorize, Decision, PeerAddr, Unauthorized};
pub use self::body::ResponseBody;
pub use self::connections::ConnectionStats;
pub use self::cors::{CorsOrigins, InvalidOrigin};
pub use self::future::ResponseFuture;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub use self::jwt::{AuthError, Grants, JWT_LEEWAY, JwtKey, MAX_JWT_EXP};
#[cfg(feature = "mercure")]
#[cfg_attr(docsrs, doc(cfg(feature = "mercure")))]
pub use self::mercure::MercureConfig;
#[allow(deprecated)]
pub use self::native::embed::{
    StreamRequestError, stream_response, stream_response_many, stream_response_multi,
};
pub use self::native::publish::BodyError;
pub use self::service::{
    DEFAULT_MAX_TOPICS_PER_STREAM, DEFAULT_STREAM_TOPIC, PolicyCustom, PolicyTokens, PolicyUnset,
    ServiceConfig, SseService, SseServiceBuilder,
};
pub use self::tokens::{TOKEN_COOKIE, TokenPolicy};
