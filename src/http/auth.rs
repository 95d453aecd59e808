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

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

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

/// The access policy of a service.
#[derive(Clone, Default)]
pub(crate) struct Access {
    pub(crate) publish_token: Option<Box<[u8]>>,
    pub(crate) jwt: Option<JwtKey>,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field(
                "publish_token",
                &self.publish_token.as_ref().map(|_| "<secret>"),
            )
            .field("jwt", &self.jwt)
            .finish()
    }
}

/// The outcome of an access check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    /// Allowed by credentials that expire: a stream ends then.
    AllowUntil(SystemTime),
    /// `401`: credentials missing or not valid.
    Unauthorized(&'static str),
    /// `403`: valid credentials (or none needed) but not for this.
    Forbidden(&'static str),
}

impl Access {
    pub(crate) fn check_subscribe(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        topic: &str,
    ) -> Verdict {
        let Some(jwt) = &self.jwt else {
            return Verdict::Allow;
        };
        let Some(token) = find_token(headers, query_token) else {
            return Verdict::Unauthorized("missing token");
        };
        match jwt.verify_until(token) {
            Ok((g, exp)) if g.may_subscribe(topic) => Verdict::AllowUntil(exp),
            Ok(_) => Verdict::Forbidden("token does not grant this topic"),
            Err(e) => Verdict::Unauthorized(unauthorized(&e)),
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
    ) -> Verdict {
        let bearer = bearer_token(headers);
        if let (Some(secret), Some(token)) = (&self.publish_token, bearer)
            && bool::from(token.as_bytes().ct_eq(secret))
        {
            return Verdict::Allow;
        }
        match (find_token(headers, query_token), &self.jwt) {
            (Some(token), Some(jwt)) => match jwt.verify(token) {
                Ok(g) if g.may_publish(topic) => Verdict::Allow,
                Ok(_) => Verdict::Forbidden("token does not grant publishing to this topic"),
                Err(e) => Verdict::Unauthorized(unauthorized(&e)),
            },
            // A publish token is configured and this is not it.
            (Some(_), None) if self.publish_token.is_some() => {
                Verdict::Unauthorized("invalid token")
            }
            // No credentials are configured: a token is irrelevant.
            _ => self.without_token(peer, host),
        }
    }

    fn without_token(&self, peer: Option<IpAddr>, host: Option<&str>) -> Verdict {
        let local = peer.is_some_and(is_loopback);
        if self.publish_token.is_some() || (self.jwt.is_some() && !local) {
            Verdict::Unauthorized("missing token")
        } else if !local {
            Verdict::Forbidden("publishing without a token is only allowed from loopback")
        } else if !host.is_some_and(is_loopback_host) {
            Verdict::Forbidden(
                "publishing without a token needs a loopback Host (localhost, 127.0.0.1, [::1])",
            )
        } else {
            Verdict::Allow
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
        let open = Access::default();
        assert_eq!(
            open.check_publish(&none, None, lo, host, "t"),
            Verdict::Allow
        );
        assert_eq!(
            open.check_publish(&none, None, v6lo, host, "t"),
            Verdict::Allow
        );
        assert!(matches!(
            open.check_publish(&none, None, far, host, "t"),
            Verdict::Forbidden(_)
        ));
        assert!(matches!(
            open.check_publish(&none, None, None, host, "t"),
            Verdict::Forbidden(_)
        ));
        // DNS rebinding: a loopback peer, but a page of another site.
        assert_eq!(
            open.check_publish(&none, None, lo, Some("attacker.example:8080"), "t"),
            Verdict::Forbidden(
                "publishing without a token needs a loopback Host (localhost, 127.0.0.1, [::1])"
            )
        );
        assert!(matches!(
            open.check_publish(&none, None, lo, None, "t"),
            Verdict::Forbidden(_)
        ));

        let token = Access {
            publish_token: Some(b"s3cret".to_vec().into()),
            jwt: None,
        };
        let good = headers(&[("authorization", "Bearer s3cret")]);
        let bad = headers(&[("authorization", "Bearer s3cre")]);
        assert_eq!(
            token.check_publish(&good, None, far, None, "t"),
            Verdict::Allow
        );
        assert_eq!(
            token.check_publish(&bad, None, lo, host, "t"),
            Verdict::Unauthorized("invalid token")
        );
        assert_eq!(
            token.check_publish(&none, None, lo, host, "t"),
            Verdict::Unauthorized("missing token")
        );
        // The publish token counts only in `Authorization`.
        assert_eq!(
            token.check_publish(&none, Some("s3cret"), far, None, "t"),
            Verdict::Unauthorized("invalid token")
        );
        let cookie = headers(&[("cookie", "ssehub_token=s3cret")]);
        assert_eq!(
            token.check_publish(&cookie, None, far, None, "t"),
            Verdict::Unauthorized("invalid token")
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
        let access = Access {
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
            Verdict::AllowUntil(_)
        ));
        assert!(matches!(
            access.check_subscribe(&h, None, "b"),
            Verdict::Forbidden(_)
        ));
        assert_eq!(
            access.check_publish(&h, None, far, None, "p:1"),
            Verdict::Allow
        );
        assert!(matches!(
            access.check_publish(&h, None, far, None, "a"),
            Verdict::Forbidden(_)
        ));
        assert_eq!(
            access.check_subscribe(&HeaderMap::new(), None, "a"),
            Verdict::Unauthorized("missing token")
        );
        let forged = JwtKey::hs256(b"other")
            .issue(&grants, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            access.check_subscribe(&HeaderMap::new(), Some(&forged), "a"),
            Verdict::Unauthorized("invalid token")
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
