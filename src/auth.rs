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
//!   without credentials.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::hub::validate_topic;

/// The clock difference tolerated when checking a token's expiry.
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
/// use ssehub::Grants;
///
/// let grants = Grants::new().subscribe("news")?.subscribe("chat:*")?.publish("chat:me")?;
/// assert!(grants.may_subscribe("chat:room1"));
/// assert!(!grants.may_subscribe("orders"));
/// assert!(grants.may_publish("chat:me"));
/// assert!(Grants::new().subscribe("bad/name").is_err());
/// # Ok::<(), ssehub::AuthError>(())
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
    if p == "*" || validate_topic(name).is_ok() {
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
/// use ssehub::{Grants, JwtKey};
///
/// let key = JwtKey::hs256(b"a long random secret");
/// let token = key.issue(&Grants::new().subscribe("news")?, Duration::from_secs(3600))?;
/// assert!(key.verify(&token)?.may_subscribe("news"));
/// assert!(JwtKey::hs256(b"another secret").verify(&token).is_err());
/// # Ok::<(), ssehub::AuthError>(())
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
            .map_err(|e| AuthError::Jwt(e.to_string()))
    }

    /// Checks a token's signature and expiry and returns its grants.
    ///
    /// # Errors
    ///
    /// [`AuthError::Expired`] or [`AuthError::InvalidToken`].
    pub fn verify(&self, token: &str) -> Result<Grants, AuthError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims.ssehub),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(AuthError::Expired)
            }
            Err(_) => Err(AuthError::InvalidToken),
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
    /// The JWT library failed to encode a token.
    Jwt(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::BadPattern(p) => write!(f, "invalid topic pattern {p:?}"),
            AuthError::InvalidToken => f.write_str("invalid token"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::Jwt(e) => write!(f, "cannot encode token: {e}"),
        }
    }
}

impl std::error::Error for AuthError {}

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
        match jwt.verify(token) {
            Ok(g) if g.may_subscribe(topic) => Verdict::Allow,
            Ok(_) => Verdict::Forbidden("token does not grant this topic"),
            Err(AuthError::Expired) => Verdict::Unauthorized("token expired"),
            Err(_) => Verdict::Unauthorized("invalid token"),
        }
    }

    pub(crate) fn check_publish(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
        peer: Option<IpAddr>,
        topic: &str,
    ) -> Verdict {
        if let Some(token) = find_token(headers, query_token) {
            if let Some(secret) = &self.publish_token
                && bool::from(token.as_bytes().ct_eq(secret))
            {
                return Verdict::Allow;
            }
            return match &self.jwt {
                Some(jwt) => match jwt.verify(token) {
                    Ok(g) if g.may_publish(topic) => Verdict::Allow,
                    Ok(_) => Verdict::Forbidden("token does not grant publishing to this topic"),
                    Err(AuthError::Expired) => Verdict::Unauthorized("token expired"),
                    Err(_) => Verdict::Unauthorized("invalid token"),
                },
                None if self.publish_token.is_some() => Verdict::Unauthorized("invalid token"),
                // No credentials are configured: the token is irrelevant.
                None => self.without_token(peer),
            };
        }
        self.without_token(peer)
    }

    fn without_token(&self, peer: Option<IpAddr>) -> Verdict {
        if self.publish_token.is_none() && peer.is_some_and(is_loopback) {
            Verdict::Allow
        } else if self.publish_token.is_some() || self.jwt.is_some() {
            Verdict::Unauthorized("missing token")
        } else {
            Verdict::Forbidden("publishing without a token is only allowed from loopback")
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The token of a request: `Authorization: Bearer`, else `?access_token=`,
/// else the `ssehub_token` cookie.
fn find_token<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
    let bearer = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    bearer
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

        let open = Access::default();
        assert_eq!(open.check_publish(&none, None, lo, "t"), Verdict::Allow);
        assert_eq!(open.check_publish(&none, None, v6lo, "t"), Verdict::Allow);
        assert!(matches!(
            open.check_publish(&none, None, far, "t"),
            Verdict::Forbidden(_)
        ));
        assert!(matches!(
            open.check_publish(&none, None, None, "t"),
            Verdict::Forbidden(_)
        ));

        let token = Access {
            publish_token: Some(b"s3cret".to_vec().into()),
            jwt: None,
        };
        let good = headers(&[("authorization", "Bearer s3cret")]);
        let bad = headers(&[("authorization", "Bearer s3cre")]);
        assert_eq!(token.check_publish(&good, None, far, "t"), Verdict::Allow);
        assert_eq!(
            token.check_publish(&bad, None, lo, "t"),
            Verdict::Unauthorized("invalid token")
        );
        assert_eq!(
            token.check_publish(&none, None, lo, "t"),
            Verdict::Unauthorized("missing token")
        );
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
        assert_eq!(access.check_subscribe(&h, None, "a"), Verdict::Allow);
        assert!(matches!(
            access.check_subscribe(&h, None, "b"),
            Verdict::Forbidden(_)
        ));
        assert_eq!(access.check_publish(&h, None, far, "p:1"), Verdict::Allow);
        assert!(matches!(
            access.check_publish(&h, None, far, "a"),
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
