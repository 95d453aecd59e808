//! Who may publish and subscribe on the Mercure hub (the spec's
//! "Authorization" section): a JWS signed with the hub's key (HS256),
//! found in the `Authorization` header, else the `authorization` query
//! parameter, else the `mercureAuthorization` cookie, in that order: the
//! first one present is the one used, valid or not. Its `mercure` claim
//! lists the selectors its holder may `publish` to and `subscribe` to
//! (private updates), and a `payload`; an `exp`, if present, ends a
//! subscription at that time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, AUTHORIZATION, COOKIE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::core::mercure::selector::Selector;
use crate::http::body::ResponseBody;
use crate::http::jwt::JWT_LEEWAY;
use crate::http::responses::text;

/// The cookie a browser sends its token in.
pub(crate) const COOKIE_NAME: &str = "mercureAuthorization";

/// The hub's key and its anonymous policy.
#[derive(Clone)]
pub struct MercureConfig {
    key: DecodingKey,
    anonymous: bool,
    subscriptions: bool,
}

impl std::fmt::Debug for MercureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MercureConfig")
            .field("anonymous", &self.anonymous)
            .field("subscriptions", &self.subscriptions)
            .finish_non_exhaustive()
    }
}

impl MercureConfig {
    /// A hub whose tokens are signed with `secret` (HS256); subscribers
    /// need a token unless [`MercureConfig::anonymous`].
    ///
    /// # Errors
    ///
    /// [`AuthError::EmptySecret`](crate::http::AuthError::EmptySecret):
    /// an empty secret would let anyone sign tokens.
    pub fn try_hs256(secret: &[u8]) -> Result<Self, crate::http::AuthError> {
        if secret.is_empty() {
            return Err(crate::http::AuthError::EmptySecret);
        }
        Ok(MercureConfig {
            key: DecodingKey::from_secret(secret),
            anonymous: false,
            subscriptions: false,
        })
    }

    /// Lets subscribers without a token receive public updates.
    pub fn anonymous(mut self, yes: bool) -> Self {
        self.anonymous = yes;
        self
    }

    /// Publishes subscription events and serves the subscriptions API
    /// (`/.well-known/mercure/subscriptions`).
    pub fn subscriptions(mut self, yes: bool) -> Self {
        self.subscriptions = yes;
        self
    }

    pub(crate) fn allows_anonymous(&self) -> bool {
        self.anonymous
    }

    pub(crate) fn tracks_subscriptions(&self) -> bool {
        self.subscriptions
    }
}

#[derive(Debug, Default, Deserialize)]
struct Claims {
    #[serde(default)]
    mercure: MercureClaim,
    #[serde(default)]
    exp: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct MercureClaim {
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

/// What a valid token grants.
#[derive(Debug, Clone, Default)]
pub(crate) struct Grant {
    pub(crate) publish: Vec<Selector>,
    pub(crate) subscribe: Vec<Selector>,
    pub(crate) payload: Option<serde_json::Value>,
    pub(crate) expires_at: Option<SystemTime>,
}

impl Grant {
    pub(crate) fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|s| s.matches(topic))
    }
}

/// Why a request's token is refused (`401`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    Missing,
    Invalid,
}

impl TokenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            TokenError::Missing => {
                "a token is required: Authorization: Bearer, ?authorization= or the mercureAuthorization cookie"
            }
            TokenError::Invalid => {
                "the token is invalid or expired (HS256, signed with the hub's key)"
            }
        }
    }
}

/// The request's token, in the spec's order of precedence.
fn token<'a>(
    headers: &'a HeaderMap,
    query: &'a [(String, String)],
) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(h) = headers.get(AUTHORIZATION) {
        let v = h.to_str().unwrap_or("");
        let t = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v);
        return Some(t.trim().into());
    }
    if let Some((_, v)) = query.iter().find(|(k, _)| k == "authorization") {
        return Some(v.as_str().into());
    }
    for h in headers.get_all(COOKIE) {
        for pair in h.to_str().unwrap_or("").split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == COOKIE_NAME
            {
                return Some(v.trim_matches('"').into());
            }
        }
    }
    None
}

impl MercureConfig {
    /// The grant of the request's token: `Ok(None)` without a token.
    pub(crate) fn grant(
        &self,
        headers: &HeaderMap,
        query: &[(String, String)],
    ) -> Result<Option<Grant>, TokenError> {
        let Some(token) = token(headers, query) else {
            return Ok(None);
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.leeway = JWT_LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.validate_aud = false;
        let data = jsonwebtoken::decode::<Claims>(token.as_ref(), &self.key, &validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let selectors = |v: Vec<String>| v.iter().filter_map(|s| Selector::new(s)).collect();
        Ok(Some(Grant {
            publish: selectors(claims.mercure.publish),
            subscribe: selectors(claims.mercure.subscribe),
            payload: claims.mercure.payload,
            expires_at: claims
                .exp
                .map(|s| UNIX_EPOCH + Duration::from_secs(s) + JWT_LEEWAY),
        }))
    }
}

/// The query's pairs, decoded.
pub(crate) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `401` with the reason.
pub(crate) fn unauthorized(e: TokenError) -> Response<ResponseBody> {
    let mut res = text(StatusCode::UNAUTHORIZED, e.reason());
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mercure\""),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// The token of the Mercure conformance tests: `publish` and
    /// `subscribe` `["*"]`, signed with the Mercure hub's example key.
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0.bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g";
    const KEY: &[u8] = b"!ChangeThisMercureHubJWTSecretKey!";

    #[test]
    fn header_then_query_then_cookie() {
        let config = MercureConfig::try_hs256(KEY).unwrap();
        let mut headers = HeaderMap::new();
        let query = vec![("authorization".to_owned(), TOKEN.to_owned())];
        let g = config.grant(&headers, &query).unwrap().unwrap();
        assert!(g.may_publish("anything"));
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=b; mercureAuthorization=x"),
        );
        assert_eq!(
            config.grant(&headers, &[]).unwrap_err(),
            TokenError::Invalid
        );
        assert!(
            config.grant(&headers, &query).is_ok(),
            "the query wins over the cookie"
        );
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert_eq!(
            config.grant(&headers, &query).unwrap_err(),
            TokenError::Invalid,
            "the header wins, even invalid"
        );
        assert!(config.grant(&HeaderMap::new(), &[]).unwrap().is_none());
        let other = MercureConfig::try_hs256(b"another key").unwrap();
        assert!(other.grant(&HeaderMap::new(), &query).is_err());
    }
}
