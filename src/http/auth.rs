//! Who may publish and who may subscribe.
//!
//! - A **publish token** (a shared secret) lets its holder publish to every
//!   topic: `Authorization: Bearer <token>`, compared in constant time.
//! - A **JWT key** (HS256) turns on tokens that grant topics: a claim
//!   `ssehub` with lists `subscribe` and `publish` of topic patterns (a name,
//!   `prefix*`, or `*`), and an expiry `exp`. Browsers cannot set headers on
//!   `EventSource`, so a token is also read from `?access_token=` and from the
//!   cookie `ssehub_token`.
//! - Without a publish token, clients on a loopback address may publish
//!   without credentials, if the request also names a loopback host
//!   (`Host: localhost:8080`, `127.0.0.1`, `[::1]`): a page on another site
//!   whose name an attacker re-points at 127.0.0.1 (DNS rebinding) sends its
//!   own name in `Host`, so it cannot publish through the browser.
//!
//! The publish token is read only from `Authorization`: a secret that
//! publishes to every topic must not travel in URLs (they end up in logs)
//! or in cookies (which browsers attach to requests other sites trigger).

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::core::TopicName;
use crate::core::topic_name::is_valid;

/// The clock difference tolerated when checking a token's expiry (`exp`)
/// and start (`nbf`).
pub const JWT_LEEWAY: Duration = Duration::from_secs(2);

/// The cookie a browser can carry a token in.
pub const TOKEN_COOKIE: &str = "ssehub_token";

/// The topics a token grants.
///
/// Patterns are a topic name, a prefix followed by `*` (`chat:*`), or `*`
/// for every topic.
///
/// # Examples
///
/// ```
/// use ssehub::http::Grants;
///
/// let grants = Grants::new().subscribe("news")?.subscribe("chat:*")?.publish("chat:me")?;
/// assert!(grants.may_subscribe("chat:room1"));
/// assert!(!grants.may_subscribe("orders"));
/// assert!(grants.may_publish("chat:me"));
/// assert!(Grants::new().subscribe("bad/name").is_err());
/// # Ok::<(), ssehub::http::AuthError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

impl Grants {
    /// No rights.
    pub fn new() -> Self {
        Grants::default()
    }

    /// Adds the right to subscribe to topics matching `pattern`.
    ///
    /// # Errors
    ///
    /// [`AuthError::BadPattern`] if `pattern` is not a topic name, a topic
    /// prefix followed by `*`, or `*`.
    pub fn subscribe(mut self, pattern: impl Into<String>) -> Result<Self, AuthError> {
        self.subscribe.push(checked_pattern(pattern.into())?);
        Ok(self)
    }

    /// Adds the right to publish to topics matching `pattern`.
    ///
    /// # Errors
    ///
    /// As [`Grants::subscribe`].
    pub fn publish(mut self, pattern: impl Into<String>) -> Result<Self, AuthError> {
        self.publish.push(checked_pattern(pattern.into())?);
        Ok(self)
    }

    /// Whether these grants allow subscribing to `topic`.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|p| matches(p, topic))
    }

    /// Whether these grants allow publishing to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|p| matches(p, topic))
    }
}

fn checked_pattern(p: String) -> Result<String, AuthError> {
    let name = p.strip_suffix('*').unwrap_or(&p);
    if p == "*" || is_valid(name) {
        Ok(p)
    } else {
        Err(AuthError::BadPattern(p))
    }
}

fn matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix),
        None => pattern == topic,
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    ssehub: Grants,
}

/// An HS256 key that issues and checks tokens.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ssehub::http::{Grants, JwtKey};
///
/// let key = JwtKey::hs256(b"a long random secret");
/// let token = key.issue(&Grants::new().subscribe("news")?, Duration::from_secs(3600))?;
/// assert!(key.verify(&token)?.may_subscribe("news"));
/// assert!(JwtKey::hs256(b"another secret").verify(&token).is_err());
/// # Ok::<(), ssehub::http::AuthError>(())
/// ```
#[derive(Clone)]
pub struct JwtKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKey {
    /// A key from a shared secret.
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = JWT_LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        JwtKey {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Issues a token with these grants, valid for `ttl`.
    ///
    /// # Errors
    ///
    /// [`AuthError::Jwt`] if the token cannot be encoded.
    pub fn issue(&self, grants: &Grants, ttl: Duration) -> Result<String, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let claims = Claims {
            exp: (now + ttl).as_secs(),
            ssehub: grants.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Jwt)
    }

    /// Checks a token's signature, expiry (`exp`) and start (`nbf`, if
    /// present), with [`JWT_LEEWAY`] of tolerance, and returns its grants.
    ///
    /// # Errors
    ///
    /// [`AuthError::Expired`], [`AuthError::NotYetValid`] or
    /// [`AuthError::InvalidToken`].
    pub fn verify(&self, token: &str) -> Result<Grants, AuthError> {
        self.verify_until(token).map(|(grants, _)| grants)
    }

    /// As [`JwtKey::verify`], with the token's expiry.
    fn verify_until(&self, token: &str) -> Result<(Grants, SystemTime), AuthError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok((
                data.claims.ssehub,
                UNIX_EPOCH + Duration::from_secs(data.claims.exp),
            )),
            Err(e) => Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::InvalidToken,
            }),
        }
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtKey(HS256, <secret>)")
    }
}

/// Why a token could not be issued or was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// A topic pattern is not a name, `prefix*` or `*`.
    BadPattern(String),
    /// The token is malformed or its signature does not match.
    InvalidToken,
    /// The token has expired.
    Expired,
    /// The token's `nbf` (not before) is in the future.
    NotYetValid,
    /// The JWT library failed to encode a token (the cause is the source).
    Jwt(jsonwebtoken::errors::Error),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::BadPattern(p) => write!(f, "invalid topic pattern {p:?}"),
            AuthError::InvalidToken => f.write_str("invalid token"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::NotYetValid => f.write_str("token not yet valid"),
            AuthError::Jwt(_) => f.write_str("cannot encode token"),
        }
    }
}

impl std::error::Error for AuthError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuthError::Jwt(e) => Some(e),
            _ => None,
        }
    }
}

/// Who may subscribe to and publish on which topic: [`SseService`]
/// asks its policy before every stream and every publish.
///
/// The built-in policy is [`TokenPolicy`] (the publish token, JWTs and the
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

/// The built-in policy: a publish token, JWTs granting topics, and
/// credential-less publishing from loopback (see the module
/// documentation and the README's table).
///
/// [`SseServiceBuilder::publish_token`](crate::http::SseServiceBuilder::publish_token)
/// and [`jwt_key`](crate::http::SseServiceBuilder::jwt_key) configure the
/// one a service uses by default.
#[derive(Clone, Default)]
pub struct TokenPolicy {
    pub(crate) publish_token: Option<Box<[u8]>>,
    pub(crate) jwt: Option<JwtKey>,
}

impl TokenPolicy {
    /// Anyone subscribes; loopback clients naming a loopback host publish.
    pub fn new() -> Self {
        TokenPolicy::default()
    }

    /// Requires `Authorization: Bearer <token>` to publish (compared in
    /// constant time).
    #[must_use]
    pub fn publish_token(mut self, token: impl Into<String>) -> Self {
        self.publish_token = Some(token.into().into_bytes().into_boxed_slice());
        self
    }

    /// Requires a JWT signed with `key` to subscribe; a JWT with publish
    /// grants also authorises publishing.
    #[must_use]
    pub fn jwt(mut self, key: JwtKey) -> Self {
        self.jwt = Some(key);
        self
    }
}

impl fmt::Debug for TokenPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPolicy")
            .field(
                "publish_token",
                &self.publish_token.as_ref().map(|_| "<secret>"),
            )
            .field("jwt", &self.jwt)
            .finish()
    }
}

impl Authorize for TokenPolicy {
    fn subscribe(&self, req: &AccessRequest<'_>, topic: &TopicName) -> Decision {
        let query = req.query("access_token");
        self.check_subscribe(req.headers, query.as_deref(), topic)
    }

    fn publish(&self, req: &AccessRequest<'_>, topic: &TopicName) -> Decision {
        let query = req.query("access_token");
        self.check_publish(
            req.headers,
            query.as_deref(),
            req.peer(),
            req.authority(),
            topic,
        )
    }
}

impl TokenPolicy {
    pub(crate) fn check_subscribe(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        topic: &str,
    ) -> Decision {
        let Some(jwt) = &self.jwt else {
            return Decision::Allow;
        };
        let Some(token) = find_token(headers, query_token) else {
            return Decision::Unauthorized("missing token".into());
        };
        match jwt.verify_until(token) {
            Ok((g, exp)) if g.may_subscribe(topic) => Decision::AllowUntil(exp),
            Ok(_) => Decision::Forbidden("token does not grant this topic".into()),
            Err(e) => Decision::Unauthorized(unauthorized(&e).into()),
        }
    }

    /// Who may publish to `topic`: the holder of the publish token (from
    /// `Authorization` only), a JWT granting the topic, or, when no publish
    /// token is configured, a loopback client naming a loopback `host`.
    pub(crate) fn check_publish(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        peer: Option<IpAddr>,
        host: Option<&str>,
        topic: &str,
    ) -> Decision {
        let bearer = bearer_token(headers);
        if let (Some(secret), Some(token)) = (&self.publish_token, bearer)
            && bool::from(token.as_bytes().ct_eq(secret))
        {
            return Decision::Allow;
        }
        match (find_token(headers, query_token), &self.jwt) {
            (Some(token), Some(jwt)) => match jwt.verify(token) {
                Ok(g) if g.may_publish(topic) => Decision::Allow,
                Ok(_) => {
                    Decision::Forbidden("token does not grant publishing to this topic".into())
                }
                Err(e) => Decision::Unauthorized(unauthorized(&e).into()),
            },
            // A publish token is configured and this is not it.
            (Some(_), None) if self.publish_token.is_some() => {
                Decision::Unauthorized("invalid token".into())
            }
            // No credentials are configured: a token is irrelevant.
            _ => self.without_token(peer, host),
        }
    }

    fn without_token(&self, peer: Option<IpAddr>, host: Option<&str>) -> Decision {
        let local = peer.is_some_and(is_loopback);
        if self.publish_token.is_some() || (self.jwt.is_some() && !local) {
            Decision::Unauthorized("missing token".into())
        } else if !local {
            Decision::Forbidden("publishing without a token is only allowed from loopback".into())
        } else if !host.is_some_and(is_loopback_host) {
            Decision::Forbidden(
                "publishing without a token needs a loopback Host (localhost, 127.0.0.1, [::1])"
                    .into(),
            )
        } else {
            Decision::Allow
        }
    }
}

/// The `401` text for a token that was not accepted.
fn unauthorized(e: &AuthError) -> &'static str {
    match e {
        AuthError::Expired => "token expired",
        AuthError::NotYetValid => "token not yet valid",
        _ => "invalid token",
    }
}

/// Whether an HTTP authority (`Host` header or URI authority) names this
/// machine: `localhost` or a name under it, `127.0.0.0/8`, or `[::1]`, with
/// any port.
fn is_loopback_host(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        // `[v6]` or `[v6]:port`
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || is_port(port) => v6,
            _ => return false,
        },
        None => match authority.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return false,
            None => authority,
        },
    };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.eq_ignore_ascii_case("localhost")
        || name.len() > 10 && name[name.len() - 10..].eq_ignore_ascii_case(".localhost")
    {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(is_loopback)
}

fn is_port(s: &str) -> bool {
    let p = s.strip_prefix(':').unwrap_or(s);
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
}

/// The JWT of a request: `Authorization: Bearer`, else `?access_token=`,
/// else the `ssehub_token` cookie.
fn find_token<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
    bearer_token(headers)
        .or(query_token)
        .or_else(|| {
            headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|c| {
                    let (name, value) = c.trim().split_once('=')?;
                    (name == TOKEN_COOKIE).then_some(value)
                })
        })
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn patterns() {
        assert!(matches("*", "anything"));
        assert!(matches("chat:*", "chat:1"));
        assert!(!matches("chat:*", "chat"));
        assert!(matches("news", "news"));
        assert!(!matches("news", "news2"));
        for bad in ["", "a b", "a/*", "**"] {
            assert!(checked_pattern(bad.into()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn token_sources_in_order() {
        let h = headers(&[
            ("authorization", "Bearer from-header"),
            ("cookie", "a=b; ssehub_token=from-cookie"),
        ]);
        assert_eq!(find_token(&h, Some("from-query")), Some("from-header"));
        let h = headers(&[("cookie", "a=b; ssehub_token=from-cookie")]);
        assert_eq!(find_token(&h, Some("from-query")), Some("from-query"));
        assert_eq!(find_token(&h, None), Some("from-cookie"));
        let h = headers(&[("cookie", "a=b"), ("cookie", "ssehub_token=second")]);
        assert_eq!(find_token(&h, None), Some("second"));
        let h = headers(&[("authorization", "Basic abc")]);
        assert_eq!(find_token(&h, None), None);
    }

    #[test]
    fn publish_rules() {
        let lo: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
        let v6lo: Option<IpAddr> = Some("::ffff:127.0.0.1".parse().unwrap());
        let far: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let none = HeaderMap::new();

        let host = Some("127.0.0.1:8080");
        let open = TokenPolicy::default();
        assert_eq!(
            open.check_publish(&none, None, lo, host, "t"),
            Decision::Allow
        );
        assert_eq!(
            open.check_publish(&none, None, v6lo, host, "t"),
            Decision::Allow
        );
        assert!(matches!(
            open.check_publish(&none, None, far, host, "t"),
            Decision::Forbidden(_)
        ));
        assert!(matches!(
            open.check_publish(&none, None, None, host, "t"),
            Decision::Forbidden(_)
        ));
        // DNS rebinding: a loopback peer, but a page of another site.
        assert_eq!(
            open.check_publish(&none, None, lo, Some("attacker.example:8080"), "t"),
            Decision::Forbidden(
                "publishing without a token needs a loopback Host (localhost, 127.0.0.1, [::1])"
                    .into()
            )
        );
        assert!(matches!(
            open.check_publish(&none, None, lo, None, "t"),
            Decision::Forbidden(_)
        ));

        let token = TokenPolicy {
            publish_token: Some(b"s3cret".to_vec().into()),
            jwt: None,
        };
        let good = headers(&[("authorization", "Bearer s3cret")]);
        let bad = headers(&[("authorization", "Bearer s3cre")]);
        assert_eq!(
            token.check_publish(&good, None, far, None, "t"),
            Decision::Allow
        );
        assert_eq!(
            token.check_publish(&bad, None, lo, host, "t"),
            Decision::Unauthorized("invalid token".into())
        );
        assert_eq!(
            token.check_publish(&none, None, lo, host, "t"),
            Decision::Unauthorized("missing token".into())
        );
        // The publish token counts only in `Authorization`.
        assert_eq!(
            token.check_publish(&none, Some("s3cret"), far, None, "t"),
            Decision::Unauthorized("invalid token".into())
        );
        let cookie = headers(&[("cookie", "ssehub_token=s3cret")]);
        assert_eq!(
            token.check_publish(&cookie, None, far, None, "t"),
            Decision::Unauthorized("invalid token".into())
        );
    }

    #[test]
    fn loopback_hosts() {
        for yes in [
            "localhost",
            "LocalHost:8080",
            "localhost.",
            "app.localhost:3000",
            "127.0.0.1",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback_host(yes), "{yes}");
        }
        for no in [
            "",
            "attacker.example",
            "attacker.example:8080",
            "localhost.attacker.example",
            "notlocalhost",
            "128.0.0.1",
            "0.0.0.0",
            "[::2]:80",
            "[::1",
            "[::1]x",
            "127.0.0.1:",
            "127.0.0.1:http",
            "127.0.0.1:123456",
            "::1",
        ] {
            assert!(!is_loopback_host(no), "{no}");
        }
    }

    #[test]
    fn jwt_rules() {
        let key = JwtKey::hs256(b"k");
        let access = TokenPolicy {
            publish_token: None,
            jwt: Some(key.clone()),
        };
        let far: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let grants = Grants::new()
            .subscribe("a")
            .unwrap()
            .publish("p:*")
            .unwrap();
        let t = key.issue(&grants, Duration::from_secs(60)).unwrap();
        let h = headers(&[("authorization", &format!("Bearer {t}"))]);
        assert!(matches!(
            access.check_subscribe(&h, None, "a"),
            Decision::AllowUntil(_)
        ));
        assert!(matches!(
            access.check_subscribe(&h, None, "b"),
            Decision::Forbidden(_)
        ));
        assert_eq!(
            access.check_publish(&h, None, far, None, "p:1"),
            Decision::Allow
        );
        assert!(matches!(
            access.check_publish(&h, None, far, None, "a"),
            Decision::Forbidden(_)
        ));
        assert_eq!(
            access.check_subscribe(&HeaderMap::new(), None, "a"),
            Decision::Unauthorized("missing token".into())
        );
        let forged = JwtKey::hs256(b"other")
            .issue(&grants, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            access.check_subscribe(&HeaderMap::new(), Some(&forged), "a"),
            Decision::Unauthorized("invalid token".into())
        );
    }

    #[test]
    fn expiry_has_a_small_leeway() {
        let key = JwtKey::hs256(b"k");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let at = |exp: u64| {
            let claims = Claims {
                exp,
                ssehub: Grants::new(),
            };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key.encoding).unwrap()
        };
        assert!(key.verify(&at(now + 60)).is_ok());
        assert!(key.verify(&at(now)).is_ok(), "within the leeway");
        assert_eq!(key.verify(&at(now - 10)), Err(AuthError::Expired));
    }
}
