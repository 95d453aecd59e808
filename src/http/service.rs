//! [`SseService`]: the hub, its settings ([`ServiceConfig`], built with
//! [`SseServiceBuilder`]) and its counters. What it answers to which path
//! is in `routing.rs`; the endpoints themselves in `native/`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::core::TopicName;
use crate::http::auth::Authorize;
use crate::http::connections::ConnectionStats;
use crate::http::cors::CorsOrigins;
use crate::http::metrics::Metrics;
use crate::http::tokens::TokenPolicy;
use crate::hub::Hub;

/// The hyper service with ssehub's HTTP endpoints.
///
/// Clone it into every connection: clones share the hub. It can be mounted
/// under a path prefix of a larger server (see [`SseServiceBuilder::prefix`]
/// and `examples/embed.rs`), and works with any request body type. A
/// publish body that fails with an [`io::Error`](std::io::Error) of kind `TimedOut`
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
    pub(crate) hub: Hub,
    pub(crate) config: Arc<ServiceConfig>,
    pub(crate) shared: Arc<Shared>,
}

/// What the clones of a service share besides the hub and the settings.
pub(crate) struct Shared {
    pub(crate) metrics: Metrics,
    pub(crate) connections: Arc<ConnectionStats>,
    /// The pumps of Durable Streams with `live=sse` readers.
    pub(crate) durable_followers: crate::http::durable::live::Followers,
    /// Mercure updates decoded lately, for every subscriber.
    #[cfg(feature = "mercure")]
    pub(crate) mercure_cache: Arc<crate::http::mercure::decoded::DecodeCache>,
    /// Mercure selectors compiled once for every subscriber.
    #[cfg(feature = "mercure")]
    pub(crate) mercure_selectors: Arc<crate::http::mercure::decoded::SelectorCache>,
    /// The Mercure subscriptions open on this node.
    #[cfg(feature = "mercure")]
    pub(crate) mercure_active: Arc<crate::http::mercure::subscriptions::Active>,
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
    /// How long a Durable Streams long-poll waits for data before it
    /// answers `204`, and how often a `live=sse` read sends a control
    /// event while idle.
    pub long_poll_timeout: Duration,
    /// The Mercure hub at `/.well-known/mercure`, if served.
    #[cfg(feature = "mercure")]
    pub mercure: Option<crate::http::MercureConfig>,
    /// The built-in policy (token, JWT, loopback), unless `authorize`.
    tokens: TokenPolicy,
    /// The embedder's policy, if it set one.
    authorize: Option<Arc<dyn Authorize>>,
}

impl ServiceConfig {
    /// The policy that decides who may subscribe and publish.
    pub(crate) fn policy(&self) -> &dyn Authorize {
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
            .field("long_poll_timeout", &self.long_poll_timeout)
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
            long_poll_timeout: DEFAULT_LONG_POLL_TIMEOUT,
            #[cfg(feature = "mercure")]
            mercure: None,
            tokens: TokenPolicy::default(),
            authorize: None,
        }
    }
}

/// The topic behind `GET /stream` unless configured otherwise.
pub const DEFAULT_STREAM_TOPIC: &str = "stream";

/// How long a Durable Streams long-poll waits unless configured otherwise.
pub(crate) const DEFAULT_LONG_POLL_TIMEOUT: Duration = Duration::from_secs(20);

/// The most topics of one stream unless configured otherwise.
pub const DEFAULT_MAX_TOPICS_PER_STREAM: usize = 64;

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
            policy: PhantomData,
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

    /// The part of `path` below the service's prefix, `None` if `path` is
    /// not under it.
    pub(crate) fn below_prefix<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.config.prefix.as_str())
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
///
/// Who may subscribe and publish is decided either by the built-in
/// [`TokenPolicy`] ([`publish_token`](Self::publish_token),
/// `jwt_key`) or by the embedder's [`authorize`](Self::authorize), never
/// both: the type parameter records which was chosen, so a publish token
/// that a custom policy would silently ignore does not compile.
///
/// ```compile_fail,E0599
/// # use ssehub::http::{AccessRequest, Authorize, Decision};
/// # use ssehub::core::TopicName;
/// # struct Mine;
/// # impl Authorize for Mine {
/// #     fn subscribe(&self, _: &AccessRequest<'_>, _: &TopicName) -> Decision { Decision::Allow }
/// #     fn publish(&self, _: &AccessRequest<'_>, _: &TopicName) -> Decision { Decision::Allow }
/// # }
/// let hub = ssehub::Hub::new();
/// // `Mine` decides: a publish token would never be asked.
/// ssehub::SseService::builder(hub).authorize(Mine).publish_token("s3cret");
/// ```
///
/// ```compile_fail,E0599
/// # use ssehub::http::{AccessRequest, Authorize, Decision};
/// # use ssehub::core::TopicName;
/// # struct Mine;
/// # impl Authorize for Mine {
/// #     fn subscribe(&self, _: &AccessRequest<'_>, _: &TopicName) -> Decision { Decision::Allow }
/// #     fn publish(&self, _: &AccessRequest<'_>, _: &TopicName) -> Decision { Decision::Allow }
/// # }
/// let hub = ssehub::Hub::new();
/// // The same the other way round.
/// ssehub::SseService::builder(hub).publish_token("s3cret").authorize(Mine);
/// ```
///
/// Put the publish token in the policy instead, as a [`TokenPolicy`]
/// given to `authorize`, or check it in your own policy.
#[derive(Debug, Clone)]
#[must_use]
pub struct SseServiceBuilder<P = PolicyUnset> {
    hub: Hub,
    config: ServiceConfig,
    policy: PhantomData<P>,
}

/// An [`SseServiceBuilder`] given no policy yet: the built-in
/// [`TokenPolicy`] with its defaults, unless
/// [`authorize`](SseServiceBuilder::authorize) names another.
#[derive(Debug, Clone)]
pub enum PolicyUnset {}

/// An [`SseServiceBuilder`] given a publish token or a JWT key: the
/// built-in [`TokenPolicy`] decides.
#[derive(Debug, Clone)]
pub enum PolicyTokens {}

/// An [`SseServiceBuilder`] given a policy through
/// [`authorize`](SseServiceBuilder::authorize).
#[derive(Debug, Clone)]
pub enum PolicyCustom {}

impl<P> SseServiceBuilder<P> {
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

    /// The largest request head the server in front accepts (16 KiB by
    /// default, as [`ServerConfig`](crate::server::ServerConfig)): a stream of
    /// several topics whose reconnects could be longer is refused (`400`)
    /// when it is opened, not when a browser reconnects (any status but
    /// `200` closes an `EventSource` for good).
    pub fn max_head_bytes(mut self, bytes: usize) -> Self {
        self.config.max_head_bytes = bytes;
        self
    }

    /// Serves a Mercure hub at `/.well-known/mercure` (feature `mercure`).
    #[cfg(feature = "mercure")]
    #[cfg_attr(docsrs, doc(cfg(feature = "mercure")))]
    pub fn mercure(mut self, config: crate::http::MercureConfig) -> Self {
        self.config.mercure = Some(config);
        self
    }

    /// How long a Durable Streams long-poll (`GET /v1/stream/...?live=long-poll`)
    /// waits for data before it answers `204` (default 20 s, at least 1 ms);
    /// also the period of an idle `live=sse` read's control events.
    pub fn long_poll_timeout(mut self, timeout: Duration) -> Self {
        self.config.long_poll_timeout = timeout.max(Duration::from_millis(1));
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
                durable_followers: Default::default(),
                #[cfg(feature = "mercure")]
                mercure_cache: Default::default(),
                #[cfg(feature = "mercure")]
                mercure_selectors: Default::default(),
                #[cfg(feature = "mercure")]
                mercure_active: Default::default(),
            }),
            hub: self.hub,
            config: Arc::new(self.config),
        }
    }

    fn with_policy<Q>(self) -> SseServiceBuilder<Q> {
        SseServiceBuilder {
            hub: self.hub,
            config: self.config,
            policy: PhantomData,
        }
    }

    #[track_caller]
    fn with_publish_token(mut self, token: impl Into<String>) -> SseServiceBuilder<PolicyTokens> {
        self.config.tokens = self.config.tokens.publish_token(token);
        self.with_policy()
    }

    #[cfg(feature = "jwt")]
    fn with_jwt_key(mut self, key: crate::http::JwtKey) -> SseServiceBuilder<PolicyTokens> {
        self.config.tokens = self.config.tokens.jwt(key);
        self.with_policy()
    }
}

impl SseServiceBuilder<PolicyUnset> {
    /// Requires `Authorization: Bearer <token>` to publish (compared in
    /// constant time). Without it, loopback clients may publish freely.
    ///
    /// # Panics
    ///
    /// If `token` is empty (see [`TokenPolicy::publish_token`]).
    #[track_caller]
    pub fn publish_token(self, token: impl Into<String>) -> SseServiceBuilder<PolicyTokens> {
        self.with_publish_token(token)
    }

    /// Requires a JWT signed with `key` to subscribe; a JWT with publish
    /// grants also authorises publishing (see
    /// [`JwtKey`](crate::http::JwtKey)).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt_key(self, key: crate::http::JwtKey) -> SseServiceBuilder<PolicyTokens> {
        self.with_jwt_key(key)
    }

    /// The built-in policy, configured as a whole: for settings chosen at
    /// run time, as from flags.
    ///
    /// ```
    /// use ssehub::http::TokenPolicy;
    /// use ssehub::{Hub, SseService};
    ///
    /// let token: Option<&str> = Some("s3cret");
    /// let mut tokens = TokenPolicy::new();
    /// if let Some(token) = token {
    ///     tokens = tokens.publish_token(token);
    /// }
    /// let service = SseService::builder(Hub::new()).tokens(tokens).build();
    /// # let _ = service;
    /// ```
    pub fn tokens(mut self, policy: TokenPolicy) -> SseServiceBuilder<PolicyTokens> {
        self.config.tokens = policy;
        self.with_policy()
    }

    /// Decides who may subscribe and publish with `policy` instead of the
    /// built-in [`TokenPolicy`]; `publish_token` and `jwt_key` are then
    /// not there to call (a [`TokenPolicy`] is a policy too). See
    /// [`Authorize`].
    pub fn authorize(mut self, policy: impl Authorize) -> SseServiceBuilder<PolicyCustom> {
        self.config.authorize = Some(Arc::new(policy));
        self.with_policy()
    }
}

impl SseServiceBuilder<PolicyTokens> {
    /// Requires `Authorization: Bearer <token>` to publish, compared in
    /// constant time (see [`TokenPolicy::publish_token`]).
    ///
    /// # Panics
    ///
    /// If `token` is empty (see [`TokenPolicy::publish_token`]).
    #[track_caller]
    pub fn publish_token(self, token: impl Into<String>) -> Self {
        self.with_publish_token(token)
    }

    /// Requires a JWT signed with `key` to subscribe (see
    /// [`JwtKey`](crate::http::JwtKey)).
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
    pub fn jwt_key(self, key: crate::http::JwtKey) -> Self {
        self.with_jwt_key(key)
    }
}
