//! The authorisation hook: [`Authorize`], asked before every stream and
//! every publish, with what it looks at ([`AccessRequest`]) and what it
//! answers ([`Decision`]).
//!
//! The built-in implementation is [`TokenPolicy`](crate::http::TokenPolicy);
//! an embedder that authenticates requests itself implements the trait.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::SystemTime;

use http::HeaderMap;

use crate::core::TopicName;

/// Who may subscribe to and publish on which topic: [`SseService`]
/// asks its policy before every stream and every publish.
///
/// The built-in policy is [`TokenPolicy`](crate::http::TokenPolicy) (the publish token, JWTs and the
/// loopback rule of the README). An embedder that authenticates requests
/// itself (an axum middleware that puts the caller's identity in the
/// request's extensions) implements this trait instead and gives it to
/// [`SseServiceBuilder::authorize`](crate::http::SseServiceBuilder::authorize).
///
/// [`SseService`]: crate::http::SseService
///
/// # Examples
///
/// ```
/// use ssehub::core::TopicName;
/// use ssehub::http::{AccessRequest, Authorize, Decision};
///
/// /// What an upstream middleware put in the request's extensions.
/// #[derive(Clone)]
/// struct User { rooms: Vec<String> }
///
/// struct Rooms;
///
/// impl Authorize for Rooms {
///     fn subscribe(&self, req: &AccessRequest<'_>, topic: &TopicName) -> Decision {
///         match req.extensions().get::<User>() {
///             Some(u) if u.rooms.iter().any(|r| r == topic.as_str()) => Decision::Allow,
///             Some(_) => Decision::Forbidden("not your room".into()),
///             None => Decision::Unauthorized("sign in first".into()),
///         }
///     }
///     fn publish(&self, _: &AccessRequest<'_>, _: &TopicName) -> Decision {
///         Decision::Forbidden("read only".into())
///     }
/// }
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// May the client of `req` read `topic`?
    fn subscribe(&self, req: &AccessRequest<'_>, topic: &TopicName) -> Decision;

    /// May the client of `req` publish to `topic`?
    fn publish(&self, req: &AccessRequest<'_>, topic: &TopicName) -> Decision;
}

/// What a policy looks at: the request's head and the client's address.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub(crate) method: &'a http::Method,
    pub(crate) uri: &'a http::Uri,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) extensions: &'a http::Extensions,
}

impl<'a> AccessRequest<'a> {
    /// The request's head.
    pub fn new<B>(req: &'a http::Request<B>) -> Self {
        AccessRequest {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }

    /// The request method.
    pub fn method(&self) -> &http::Method {
        self.method
    }

    /// The request target.
    pub fn uri(&self) -> &http::Uri {
        self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        self.headers
    }

    /// The request extensions: what middleware put there.
    pub fn extensions(&self) -> &http::Extensions {
        self.extensions
    }

    /// The client's address, if the server (or the embedder) said so with
    /// [`PeerAddr`](crate::http::PeerAddr).
    pub fn peer(&self) -> Option<IpAddr> {
        self.extensions
            .get::<crate::http::PeerAddr>()
            .map(|p| p.0.ip())
    }

    /// The first value of a query parameter, decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The authority the request names: the URI's (HTTP/2, absolute form),
    /// else the `Host` header.
    pub fn authority(&self) -> Option<&str> {
        self.uri.authority().map(|a| a.as_str()).or_else(|| {
            self.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
    }
}

/// A policy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Go ahead, with credentials that expire then: a stream ends at that
    /// time with a `reauth` event (see [`Subscribe::expires_at`](crate::Subscribe::expires_at)).
    AllowUntil(SystemTime),
    /// `401` with this text and `WWW-Authenticate: Bearer`: credentials
    /// missing or not valid.
    Unauthorized(Cow<'static, str>),
    /// `403` with this text: valid credentials (or none needed) but not for
    /// this.
    Forbidden(Cow<'static, str>),
}
