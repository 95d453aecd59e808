//! The built-in policy: who may publish and who may subscribe.
//!
//! - A **publish token** (a shared secret) lets its holder publish to every
//!   topic: `Authorization: Bearer <token>`, compared in constant time.
//! - A **JWT key** (HS256, feature `jwt`) turns on tokens that grant topics: a claim
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

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};
use subtle::ConstantTimeEq;

use crate::core::TopicName;
use crate::http::auth::{AccessRequest, Authorize, Decision, Unauthorized};
use crate::http::jwt::JwtKey;

/// The cookie a browser can carry a token in.
pub const TOKEN_COOKIE: &str = "ssehub_token";

/// The built-in policy: a publish token, JWTs granting topics (feature
/// `jwt`), and credential-less publishing from loopback (see the module
/// documentation and the README's table).
///
/// [`SseServiceBuilder::publish_token`](crate::http::SseServiceBuilder::publish_token)
/// and `SseServiceBuilder::jwt_key` configure the one a service uses by
/// default.
///
/// # Examples
///
/// ```
/// use ssehub::http::TokenPolicy;
/// use ssehub::{Hub, SseService};
///
/// // Publishing needs `Authorization: Bearer s3cret`; anyone subscribes.
/// let policy = TokenPolicy::new().publish_token("s3cret");
/// let service = SseService::builder(Hub::new()).authorize(policy).build();
/// # let _ = service;
/// ```
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
    ///
    /// # Panics
    ///
    /// If `token` is empty: a secret that is empty protects nothing (check
    /// a token read from configuration before passing it).
    #[must_use]
    #[track_caller]
    pub fn publish_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        assert!(!token.is_empty(), "TokenPolicy::publish_token: empty token");
        self.publish_token = Some(token.into_bytes().into_boxed_slice());
        self
    }

    /// Requires a JWT signed with `key` to subscribe; a JWT with publish
    /// grants also authorises publishing.
    #[cfg(feature = "jwt")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
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
            return Decision::Unauthorized(Unauthorized::Missing("missing token".into()));
        };
        jwt.subscribe_decision(token, topic)
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
            (Some(token), Some(jwt)) => jwt.publish_decision(token, topic),
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
            Decision::Unauthorized(Unauthorized::Missing("missing token".into()))
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

    #[cfg(feature = "jwt")]
    #[test]
    fn jwt_rules() {
        let key = crate::http::JwtKey::hs256(b"k");
        let access = TokenPolicy {
            publish_token: None,
            jwt: Some(key.clone()),
        };
        let far: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let grants = crate::http::Grants::new()
            .subscribe("a")
            .unwrap()
            .publish("p:*")
            .unwrap();
        let t = key
            .issue(&grants, std::time::Duration::from_secs(60))
            .unwrap();
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
            Decision::Unauthorized(Unauthorized::Missing("missing token".into()))
        );
        let forged = crate::http::JwtKey::hs256(b"other")
            .issue(&grants, std::time::Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            access.check_subscribe(&HeaderMap::new(), Some(&forged), "a"),
            Decision::Unauthorized("invalid token".into())
        );
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
            Decision::Unauthorized(Unauthorized::Missing("missing token".into()))
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

    /// Without a JWT key (always so without the `jwt` feature) anyone
    /// subscribes, whatever token comes along, and the publish token
    /// alone decides who publishes from afar.
    #[test]
    fn without_a_jwt_key_tokens_only_guard_publishing() {
        let far: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let policy = TokenPolicy::new().publish_token("s3cret");
        let h = headers(&[("authorization", "Bearer some.jwt.token")]);
        assert_eq!(policy.check_subscribe(&h, None, "t"), Decision::Allow);
        assert_eq!(
            policy.check_subscribe(&HeaderMap::new(), Some("x"), "t"),
            Decision::Allow
        );
        assert_eq!(
            policy.check_publish(&h, None, far, None, "t"),
            Decision::Unauthorized("invalid token".into())
        );
        let good = headers(&[("authorization", "Bearer s3cret")]);
        assert_eq!(
            policy.check_publish(&good, None, far, None, "t"),
            Decision::Allow
        );
    }

    /// Regression (issue 20, finding 4): an empty publish token protects
    /// nothing; the builder refuses it.
    #[test]
    #[should_panic(expected = "empty token")]
    fn an_empty_publish_token_is_refused() {
        let _ = TokenPolicy::new().publish_token("");
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
}
