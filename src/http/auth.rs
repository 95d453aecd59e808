//! The authorisation hook: [`Authorize`], asked before every stream and
//! every publish, with what it looks at ([`AccessRequest`]) and what it
//! answers ([`Decision`]).
//!
//! The built-in implementation is [`TokenPolicy`](crate::http::TokenPolicy);
//! an embedder that authenticates requests itself implements the trait.
//! A refusal is answered here too: `401` with its `WWW-Authenticate`
//! challenge, or `403`.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::core::TopicName;
use crate::http::body::ResponseBody;
use crate::http::responses::text;

/// The address of the client, for services not run by [`Server`](crate::Server).
///
/// [`Server`](crate::Server) tells the service each connection's peer; an
/// embedder with its own accept loop inserts this into the request's
/// extensions so that the loopback rule for publishing can apply. Without
/// it, a client is not considered local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The request came over TLS (the server says so in its extensions):
/// absolute URLs the service writes (`Location`) are `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Secure;

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
    /// [`PeerAddr`].
    pub fn peer(&self) -> Option<IpAddr> {
        self.extensions.get::<PeerAddr>().map(|p| p.0.ip())
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
    /// `401` with `WWW-Authenticate: Bearer`: credentials missing or not
    /// valid (see [`Unauthorized`]).
    Unauthorized(Unauthorized),
    /// `403` with this text: valid credentials (or none needed) but not for
    /// this.
    Forbidden(Cow<'static, str>),
}

/// Why a request's credentials were not accepted (`401`).
///
/// The challenge differs (RFC 6750, 3.1): a request without credentials
/// is only told how to authenticate, one with credentials that do not
/// hold is also told `error="invalid_token"`. A text alone converts into
/// [`Unauthorized::Invalid`], so `Decision::Unauthorized("...".into())`
/// reads as before.
///
/// ```
/// use ssehub::http::{Decision, Unauthorized};
///
/// // No session at all: say how to sign in, not that a token is bad.
/// let no_one = Decision::Unauthorized(Unauthorized::Missing("sign in first".into()));
/// # let _ = no_one;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unauthorized {
    /// No credentials: `401` with this text (the built-in policy says
    /// `missing token`).
    Missing(Cow<'static, str>),
    /// Credentials that are not valid (expired, forged, unknown): `401`
    /// with this text.
    Invalid(Cow<'static, str>),
}

impl Unauthorized {
    /// The text of the `401`.
    pub fn text(&self) -> &str {
        match self {
            Unauthorized::Missing(why) | Unauthorized::Invalid(why) => why,
        }
    }

    /// The `WWW-Authenticate` challenge.
    fn challenge(&self) -> HeaderValue {
        match self {
            Unauthorized::Missing(_) => HeaderValue::from_static("Bearer realm=\"ssehub\""),
            Unauthorized::Invalid(_) => {
                HeaderValue::from_static("Bearer realm=\"ssehub\", error=\"invalid_token\"")
            }
        }
    }
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl From<&'static str> for Unauthorized {
    fn from(why: &'static str) -> Self {
        Unauthorized::Invalid(why.into())
    }
}

impl From<String> for Unauthorized {
    fn from(why: String) -> Self {
        Unauthorized::Invalid(why.into())
    }
}

impl From<Cow<'static, str>> for Unauthorized {
    fn from(why: Cow<'static, str>) -> Self {
        Unauthorized::Invalid(why)
    }
}

impl Decision {
    /// The answer to a refused request, naming the refused topic of a
    /// stream of several; `None` if allowed.
    pub(crate) fn refusal(self, topic: Option<&TopicName>) -> Option<Response<ResponseBody>> {
        let say = |why: &str| match topic {
            Some(t) => format!("topic \"{t}\": {why}"),
            None => why.to_owned(),
        };
        match self {
            Decision::Allow | Decision::AllowUntil(_) => None,
            Decision::Unauthorized(why) => {
                let mut res = text(StatusCode::UNAUTHORIZED, &say(why.text()));
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, why.challenge());
                Some(res)
            }
            Decision::Forbidden(why) => Some(text(StatusCode::FORBIDDEN, &say(&why))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_get_a_challenge_without_an_error() {
        let res = Decision::Unauthorized(Unauthorized::Missing("sign in".into()))
            .refusal(None)
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"ssehub\""
        );
        // Any text, "missing token" too, is credentials that do not hold.
        let res = Decision::Unauthorized("missing token".into())
            .refusal(None)
            .unwrap();
        assert_eq!(
            res.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"ssehub\", error=\"invalid_token\""
        );
        assert!(Decision::Allow.refusal(None).is_none());
    }
}
