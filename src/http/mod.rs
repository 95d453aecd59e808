//! HTTP meaning: the endpoints ([`SseService`]), publish bodies, who may
//! publish and subscribe, CORS, metrics, and the response body.
//!
//! [`SseService`] is a `hyper` service for any request body; mount it as it
//! is, under a path prefix, or inside another router.

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod cors;
pub(crate) mod metrics;
pub(crate) mod publish;
pub(crate) mod refusal;
pub(crate) mod service;

pub use self::auth::{
    AccessRequest, AuthError, Authorize, Decision, Grants, JWT_LEEWAY, JwtKey, TOKEN_COOKIE,
    TokenPolicy,
};
pub use self::body::ResponseBody;
pub use self::cors::CorsOrigins;
pub use self::metrics::ConnectionStats;
pub use self::publish::BodyError;
pub use self::service::{
    DEFAULT_MAX_TOPICS_PER_STREAM, DEFAULT_STREAM_TOPIC, PeerAddr, ResponseFuture, ServiceConfig,
    SseService, SseServiceBuilder, StreamRequestError, stream_response, stream_response_many,
};
