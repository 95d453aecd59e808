//! Cross-origin rules.
//!
//! Without configured origins, event streams may be read from any page
//! (`Access-Control-Allow-Origin: *`, no credentials) and publishing from
//! another origin is refused. With configured origins, those origins get
//! their own origin echoed with credentials allowed (so cookies work), and
//! may publish; other origins get no CORS headers and may not publish.
//! `*` allows every origin, without credentials.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::http::body::ResponseBody;

/// Which origins a service serves cross-origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorsOrigins {
    /// Streams readable from any page; no cross-origin publishing.
    #[default]
    StreamsOnly,
    /// Every origin, streams and publishing, without credentials.
    Any,
    /// These origins (`scheme://host[:port]`), with credentials.
    List(Vec<String>),
    /// No CORS handling at all: the host stack does it (e.g. tower-http's
    /// `CorsLayer` in front of the service). No CORS headers, no refusal of
    /// cross-origin publishing, and `OPTIONS` answers `204` with `Allow`
    /// only.
    Off,
}

impl CorsOrigins {
    /// The policy for a list of origins: empty is
    /// [`CorsOrigins::StreamsOnly`], any `*` is [`CorsOrigins::Any`]. The
    /// entries are not checked (one that is not an origin matches no
    /// request); [`CorsOrigins::try_from_list`] checks them.
    pub fn from_list<S: AsRef<str>>(origins: &[S]) -> Self {
        if origins.is_empty() {
            CorsOrigins::StreamsOnly
        } else if origins.iter().any(|o| o.as_ref() == "*") {
            CorsOrigins::Any
        } else {
            CorsOrigins::List(
                origins
                    .iter()
                    .map(|o| o.as_ref().trim_end_matches('/').to_owned())
                    .collect(),
            )
        }
    }

    /// The policy for a list of origins as given on the command line, each
    /// checked with [`CorsOrigins::parse_origin`]: empty is
    /// [`CorsOrigins::StreamsOnly`], any `*` is [`CorsOrigins::Any`].
    ///
    /// # Errors
    ///
    /// The first entry that is neither `*` nor an origin.
    pub fn try_from_list<S: AsRef<str>>(origins: &[S]) -> Result<Self, InvalidOrigin> {
        let parsed = origins
            .iter()
            .map(|o| CorsOrigins::parse_origin(o.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CorsOrigins::from_list(&parsed))
    }

    /// An origin as browsers send it in `Origin`: `http://` or `https://`,
    /// a host and an optional port, nothing after but an optional `/`
    /// (dropped); the scheme and host in lowercase (as browsers send them,
    /// so that an origin written `https://App.example` still matches). `*`
    /// stands for every origin. `null` (sandboxed frames, `file:` pages) is
    /// not accepted: every such page sends it.
    ///
    /// # Errors
    ///
    /// [`InvalidOrigin`] for anything else (an empty string, a path, a
    /// query, user info, another scheme, a bad port).
    pub fn parse_origin(s: &str) -> Result<String, InvalidOrigin> {
        if s == "*" {
            return Ok(s.to_owned());
        }
        let bad = || InvalidOrigin(s.to_owned());
        let lower = s.to_ascii_lowercase();
        let trimmed = lower.strip_suffix('/').unwrap_or(&lower);
        let authority = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let (host, port) = match authority.rsplit_once(':') {
            // `[v6]` without a port.
            Some((h, p)) if !authority.ends_with(']') => (h, Some(p)),
            _ => (authority, None),
        };
        let host_ok = if let Some(v6) = host.strip_prefix('[') {
            v6.strip_suffix(']')
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        };
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if host_ok && port_ok {
            Ok(trimmed.to_owned())
        } else {
            Err(bad())
        }
    }

    fn listed(&self, origin: &HeaderValue) -> bool {
        match self {
            CorsOrigins::List(list) => list.iter().any(|o| o.as_bytes() == origin.as_bytes()),
            _ => false,
        }
    }

    /// Adds the CORS headers of a response to a request from `origin`.
    pub(crate) fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        if *self == CorsOrigins::Off {
            return;
        }
        // A page of another origin may read the position a `HEAD` answers,
        // and whether a publish was answered again for a retry.
        if headers.contains_key("last-event-id") {
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Last-Event-ID"),
            );
        } else if headers.contains_key(crate::http::responses::IDEMPOTENT_REPLAYED) {
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Idempotent-Replayed"),
            );
        }
        match self {
            CorsOrigins::StreamsOnly | CorsOrigins::Any => {
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            CorsOrigins::List(_) => {
                headers.append(header::VARY, HeaderValue::from_static("origin"));
                if let Some(origin) = origin.filter(|o| self.listed(o)) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                    headers.insert(
                        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                        HeaderValue::from_static("true"),
                    );
                }
            }
            CorsOrigins::Off => {}
        }
    }

    /// Whether a request from `origin` may publish. Same-origin requests
    /// and requests without `Origin` (not from a browser page) always may.
    pub(crate) fn may_publish(
        &self,
        origin: Option<&HeaderValue>,
        authority: Option<&str>,
    ) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if same_origin(origin, authority) {
            return true;
        }
        match self {
            CorsOrigins::StreamsOnly => false,
            CorsOrigins::Any | CorsOrigins::Off => true,
            CorsOrigins::List(_) => self.listed(origin),
        }
    }

    /// The preflight of a protocol mounted beside the native API (Durable
    /// Streams, Mercure): every method in `allow` and header in `headers`
    /// (only `Allow` when CORS is off; the response's CORS headers are
    /// added with the protocol's other answers).
    pub(crate) fn protocol_preflight(
        &self,
        allow: &'static str,
        headers: &'static str,
    ) -> Response<ResponseBody> {
        let mut res = Response::new(ResponseBody::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        h.insert(header::ALLOW, HeaderValue::from_static(allow));
        if *self != CorsOrigins::Off {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(allow),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(headers),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
        }
        res
    }

    /// `403` for a publish from a page of an origin that may not publish
    /// (see [`CorsOrigins::may_publish`]); `None` if it may. The rule of
    /// every protocol's publishing.
    pub(crate) fn refuse_publish<B>(
        &self,
        req: &http::Request<B>,
    ) -> Option<Response<ResponseBody>> {
        let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        (!self.may_publish(req.headers().get(header::ORIGIN), authority)).then(|| {
            crate::http::responses::text(
                StatusCode::FORBIDDEN,
                "cross-origin publishing is not allowed (see --cors-origin)",
            )
        })
    }

    /// The answer to a preflight `OPTIONS` request.
    pub(crate) fn preflight(&self, origin: Option<&HeaderValue>) -> Response<ResponseBody> {
        let mut res = Response::new(ResponseBody::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let methods = match self {
            CorsOrigins::StreamsOnly => "GET, OPTIONS",
            CorsOrigins::Any | CorsOrigins::List(_) | CorsOrigins::Off => "GET, POST, OPTIONS",
        };
        let h = res.headers_mut();
        h.insert(header::ALLOW, HeaderValue::from_static(methods));
        if *self == CorsOrigins::Off {
            return res;
        }
        let allowed = match self {
            CorsOrigins::List(_) => origin.is_some_and(|o| self.listed(o)),
            _ => true,
        };
        self.decorate(origin, h);
        if allowed {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(methods),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(
                    "Authorization, Content-Type, Idempotency-Key, Last-Event-ID",
                ),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
        }
        res
    }
}

/// A configured origin that is not one (see [`CorsOrigins::parse_origin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidOrigin(String);

impl std::fmt::Display for InvalidOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid origin {:?}: expected `*` or http(s)://host[:port]",
            self.0
        )
    }
}

impl std::error::Error for InvalidOrigin {}

/// Whether `origin` (`scheme://host[:port]`) names the server the request
/// was sent to (its `Host` or `:authority`).
fn same_origin(origin: &HeaderValue, authority: Option<&str>) -> bool {
    let (Ok(origin), Some(authority)) = (origin.to_str(), authority) else {
        return false;
    };
    let host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn publish_origins() {
        let a = hv("https://a.example");
        let own = hv("http://localhost:8080");
        let default = CorsOrigins::default();
        assert!(default.may_publish(None, Some("localhost:8080")));
        assert!(default.may_publish(Some(&own), Some("localhost:8080")));
        assert!(!default.may_publish(Some(&a), Some("localhost:8080")));
        assert!(!default.may_publish(Some(&hv("null")), Some("localhost:8080")));
        let list = CorsOrigins::from_list(&["https://a.example/"]);
        assert!(list.may_publish(Some(&a), Some("localhost:8080")));
        assert!(!list.may_publish(Some(&hv("https://b.example")), None));
        assert!(CorsOrigins::from_list(&["*"]).may_publish(Some(&a), None));
    }

    #[test]
    fn origins_are_checked_and_normalised() {
        for (given, want) in [
            ("*", "*"),
            ("https://app.example", "https://app.example"),
            ("HTTPS://App.Example/", "https://app.example"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://[::1]", "http://[::1]"),
            ("http://[::1]:8080/", "http://[::1]:8080"),
        ] {
            assert_eq!(CorsOrigins::parse_origin(given).as_deref(), Ok(want));
        }
        for bad in [
            "",
            "null",
            "not a url",
            "app.example",
            "ftp://app.example",
            "https://",
            "https://app.example/path",
            "https://app.example?q",
            "https://user@app.example",
            "https://app.example:",
            "https://app.example:0",
            "https://app.example:65536",
            "https://[::1",
            "https://[zz]:80",
            "https://app example",
            "*.example",
        ] {
            assert!(CorsOrigins::parse_origin(bad).is_err(), "{bad:?}");
        }
        assert!(CorsOrigins::try_from_list(&["https://a.example", ""]).is_err());
        assert_eq!(
            CorsOrigins::try_from_list(&["HTTPS://A.example/"]),
            Ok(CorsOrigins::List(vec!["https://a.example".into()]))
        );
        assert_eq!(
            CorsOrigins::try_from_list::<&str>(&[]),
            Ok(CorsOrigins::StreamsOnly)
        );
    }

    #[test]
    fn listed_origins_are_echoed_with_credentials() {
        let list = CorsOrigins::from_list(&["https://a.example"]);
        let mut h = HeaderMap::new();
        list.decorate(Some(&hv("https://a.example")), &mut h);
        assert_eq!(h["access-control-allow-origin"], "https://a.example");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["vary"], "origin");
        let mut h = HeaderMap::new();
        list.decorate(Some(&hv("https://evil.example")), &mut h);
        assert!(h.get("access-control-allow-origin").is_none());
    }
}
