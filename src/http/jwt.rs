//! JWTs that grant topics (feature `jwt`): HS256 tokens with an expiry
//! and a claim `ssehub` listing the topic patterns their holder may
//! subscribe to and publish on.
//!
//! [`TokenPolicy`](crate::http::TokenPolicy) asks a [`JwtKey`] about the
//! tokens it finds in a request; the key turns a token into a
//! [`Decision`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::core::topic_name::is_valid;
use crate::http::auth::Decision;

/// The clock difference tolerated when checking a token's expiry (`exp`)
/// and start (`nbf`).
pub const JWT_LEEWAY: Duration = Duration::from_secs(2);

/// The latest expiry a token may have: 9999-12-31T23:59:59Z, in seconds
/// since the Unix epoch. A token with a later `exp` is invalid (its expiry
/// would overflow the clock), and [`JwtKey::issue`] refuses a TTL that
/// reaches past it.
pub const MAX_JWT_EXP: u64 = 253_402_300_799;

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
    ///
    /// # Panics
    ///
    /// If `secret` is empty: anyone could sign tokens with it. Use
    /// [`JwtKey::try_hs256`] for a secret read from configuration.
    #[track_caller]
    pub fn hs256(secret: &[u8]) -> Self {
        match JwtKey::try_hs256(secret) {
            Ok(key) => key,
            Err(e) => panic!("JwtKey::hs256: {e}"),
        }
    }

    /// A key from a shared secret, for a secret read from configuration.
    ///
    /// # Errors
    ///
    /// [`AuthError::EmptySecret`] if `secret` is empty: anyone could sign
    /// tokens with it, so it must not stand for "no check".
    pub fn try_hs256(secret: &[u8]) -> Result<Self, AuthError> {
        if secret.is_empty() {
            return Err(AuthError::EmptySecret);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = JWT_LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Ok(JwtKey {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        })
    }

    /// Issues a token with these grants, valid for `ttl`.
    ///
    /// # Errors
    ///
    /// [`AuthError::TtlTooLong`] if the token would expire after
    /// [`MAX_JWT_EXP`]; [`AuthError::Jwt`] if it cannot be encoded.
    pub fn issue(&self, grants: &Grants, ttl: Duration) -> Result<String, AuthError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let exp = now
            .checked_add(ttl)
            .map(|exp| exp.as_secs())
            .filter(|exp| *exp <= MAX_JWT_EXP)
            .ok_or(AuthError::TtlTooLong)?;
        let claims = Claims {
            exp,
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
    /// [`AuthError::InvalidToken`] (also for an `exp` after
    /// [`MAX_JWT_EXP`]).
    pub fn verify(&self, token: &str) -> Result<Grants, AuthError> {
        self.verify_until(token).map(|(grants, _)| grants)
    }

    /// As [`JwtKey::verify`], with the token's expiry.
    fn verify_until(&self, token: &str) -> Result<(Grants, SystemTime), AuthError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            // An expiry the clock cannot hold (`exp >= 2^63` overflowed it,
            // a panic on every request with such a token) means nothing.
            Ok(data) if data.claims.exp > MAX_JWT_EXP => Err(AuthError::InvalidToken),
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
    /// A key was asked for with an empty secret.
    EmptySecret,
    /// A token was asked for that would expire after [`MAX_JWT_EXP`].
    TtlTooLong,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::BadPattern(p) => write!(f, "invalid topic pattern {p:?}"),
            AuthError::InvalidToken => f.write_str("invalid token"),
            AuthError::Expired => f.write_str("token expired"),
            AuthError::NotYetValid => f.write_str("token not yet valid"),
            AuthError::Jwt(_) => f.write_str("cannot encode token"),
            AuthError::EmptySecret => f.write_str("empty secret"),
            AuthError::TtlTooLong => f.write_str("token would expire after year 9999"),
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

impl JwtKey {
    /// May the holder of `token` read `topic`? Until the token expires.
    pub(crate) fn subscribe_decision(&self, token: &str, topic: &str) -> Decision {
        match self.verify_until(token) {
            Ok((g, exp)) if g.may_subscribe(topic) => Decision::AllowUntil(exp),
            Ok(_) => Decision::Forbidden("token does not grant this topic".into()),
            Err(e) => Decision::Unauthorized(unauthorized(&e).into()),
        }
    }

    /// May the holder of `token` publish to `topic`?
    pub(crate) fn publish_decision(&self, token: &str, topic: &str) -> Decision {
        match self.verify(token) {
            Ok(g) if g.may_publish(topic) => Decision::Allow,
            Ok(_) => Decision::Forbidden("token does not grant publishing to this topic".into()),
            Err(e) => Decision::Unauthorized(unauthorized(&e).into()),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Regression (issue 20, finding 4): a key from an empty secret is one
    /// anyone can sign with; it is an error, never a key.
    #[test]
    fn an_empty_secret_is_no_key() {
        assert!(matches!(
            JwtKey::try_hs256(b""),
            Err(AuthError::EmptySecret)
        ));
        assert!(JwtKey::try_hs256(b"k").is_ok());
        let panicked = std::panic::catch_unwind(|| JwtKey::hs256(b""));
        assert!(panicked.is_err());
    }

    /// Regression (issue 20, finding 6): `ssehub token --ttl
    /// 18446744073709551615` overflowed `now + ttl` and panicked; a token
    /// with `exp >= 2^63` overflowed the clock on every request that
    /// carried it. Neither panics: a TTL past [`MAX_JWT_EXP`] is an error,
    /// such a token is invalid.
    #[test]
    fn extreme_expiries_are_errors_not_panics() {
        let key = JwtKey::hs256(b"k");
        let grants = Grants::new().subscribe("a").unwrap();
        for ttl in [
            Duration::MAX,
            Duration::from_secs(u64::MAX),
            Duration::from_secs(i64::MAX as u64 + 1),
            Duration::from_secs(MAX_JWT_EXP),
        ] {
            assert!(
                matches!(key.issue(&grants, ttl), Err(AuthError::TtlTooLong)),
                "{ttl:?}"
            );
        }
        for ttl in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_secs(3600),
        ] {
            assert!(key.issue(&grants, ttl).is_ok(), "{ttl:?}");
        }
        let at = |exp: u64| {
            let claims = Claims {
                exp,
                ssehub: grants.clone(),
            };
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key.encoding).unwrap()
        };
        for exp in [
            MAX_JWT_EXP + 1,
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX,
        ] {
            let token = at(exp);
            assert_eq!(key.verify(&token), Err(AuthError::InvalidToken), "{exp}");
            assert_eq!(
                key.subscribe_decision(&token, "a"),
                Decision::Unauthorized("invalid token".into())
            );
        }
        assert!(matches!(
            key.subscribe_decision(&at(MAX_JWT_EXP), "a"),
            Decision::AllowUntil(_)
        ));
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
