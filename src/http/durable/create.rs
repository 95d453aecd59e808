//! `PUT /v1/stream/{path}`: creates a stream, with its content type, its
//! lifetime (`Stream-TTL` or `Stream-Expires-At`), maybe closed, maybe as a
//! fork of another stream, maybe with its first messages.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;

use crate::core::TopicName;
use crate::core::durable::meta::{Config, Expiry, ForkPoint, parse_rfc3339};
use crate::core::durable::offset::Offset;
use crate::http::body::ResponseBody;
use crate::http::durable::wire::{
    CLOSED, EXPIRES_AT, FORK_OFFSET, FORK_SUB_OFFSET, FORKED_FROM, NEXT_OFFSET, Refused, TTL,
    error, one_header, source_topic, value,
};
use crate::http::future::ResponseFuture;
use crate::http::request_body;
use crate::http::responses::Attempt;
use crate::http::service::SseService;
use crate::hub::durable::Create;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The content type of a stream created without a usable one.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

pub(super) fn create<B>(service: &SseService, topic: TopicName, req: Request<B>) -> ResponseFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (config, closed) = match parse(service, req.headers()) {
        Ok(parsed) => parsed,
        Err(refused) => return ResponseFuture::ready(refused.response()),
    };
    let max = service.config.max_body_bytes;
    if let Some(res) = request_body::refuse_declared(req.headers(), max, req.version()) {
        return ResponseFuture::ready(res);
    }
    let location = location(&req);
    let hub = service.hub.clone();
    let version = req.version();
    ResponseFuture::boxed(async move {
        let body = match request_body::collect(req.into_body(), max, version).await {
            Ok(body) => body,
            Err(res) => return res,
        };
        let create = Create {
            config,
            closed,
            body,
        };
        match hub.create_stream(&topic, create).await {
            Ok((new, status)) => {
                let code = if new {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let mut res = created(code, status.tail, status.closed);
                let h = res.headers_mut();
                if let Ok(ct) = HeaderValue::try_from(&*status.content_type) {
                    h.insert(header::CONTENT_TYPE, ct);
                }
                if new && let Some(location) = location {
                    h.insert(header::LOCATION, location);
                }
                res
            }
            Err(e) => error(e, Attempt::Write),
        }
    })
}

fn created(code: StatusCode, tail: Offset, closed: bool) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = code;
    res.headers_mut().insert(NEXT_OFFSET, value(tail));
    if closed {
        res.headers_mut()
            .insert(CLOSED, HeaderValue::from_static("true"));
    }
    res
}

/// The absolute URL of the stream, for `Location`.
fn location<B>(req: &Request<B>) -> Option<HeaderValue> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST)?.to_str().ok())?;
    // Over HTTP/1.1 the request's URI is relative: the connection says
    // whether it is TLS. Behind a TLS terminator `http` is what ssehub
    // sees (`Location` is informative).
    let secure = req.extensions().get::<crate::http::Secure>().is_some();
    let scheme = req
        .uri()
        .scheme_str()
        .unwrap_or(if secure { "https" } else { "http" });
    HeaderValue::try_from(format!("{scheme}://{host}{}", req.uri().path())).ok()
}

/// The configuration a create asks for, and whether it asks for a closed
/// stream; a `400` for any header that is not valid.
fn parse(service: &SseService, h: &HeaderMap) -> Result<(Config, bool), Refused> {
    let bad = |msg: &'static str| Refused::bad(msg);
    let forked_from = one_header(h, &FORKED_FROM)?;
    let content_type = match one_header(h, &header::CONTENT_TYPE)? {
        Some(ct) if is_media_type(ct) => ct.to_owned(),
        // A fork without one inherits its source's.
        _ if forked_from.is_some() => String::new(),
        _ => DEFAULT_CONTENT_TYPE.to_owned(),
    };
    let ttl = one_header(h, &TTL)?;
    let expires_at = one_header(h, &EXPIRES_AT)?;
    let expiry = match (ttl, expires_at) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "Stream-TTL and Stream-Expires-At cannot be used together",
            ));
        }
        (Some(ttl), None) => Expiry::Ttl(
            decimal(ttl).ok_or_else(|| bad("Stream-TTL must be a whole number of seconds"))?,
        ),
        (None, Some(at)) => Expiry::At {
            ms: parse_rfc3339(at)
                .ok_or_else(|| bad("Stream-Expires-At must be an RFC 3339 timestamp"))?,
            text: at.into(),
        },
        (None, None) => Expiry::Never,
    };
    let closed = one_header(h, &CLOSED)?.is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let offset = one_header(h, &FORK_OFFSET)?;
    let sub_offset = one_header(h, &FORK_SUB_OFFSET)?;
    let fork = match forked_from {
        None if offset.is_some() || sub_offset.is_some() => {
            return Err(bad(
                "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From",
            ));
        }
        None => None,
        Some(source) => {
            if offset.is_some_and(|o| Offset::parse(o).is_none()) {
                return Err(bad("Stream-Fork-Offset is not an offset"));
            }
            let sub_offset = match sub_offset {
                None => 0,
                Some(s) => decimal(s)
                    .ok_or_else(|| bad("Stream-Fork-Sub-Offset must be a whole number"))?,
            };
            let topic = source_topic(service, source).ok_or(Refused(
                StatusCode::NOT_FOUND,
                "fork source not found: Stream-Forked-From names no stream path".into(),
            ))?;
            Some(ForkPoint {
                source: source.into(),
                topic,
                offset: offset.map(Into::into),
                sub_offset,
            })
        }
    };
    Ok((
        Config {
            content_type: content_type.into(),
            expiry,
            fork,
        },
        closed,
    ))
}

/// `0` or digits without a leading zero, as a `u64`.
fn decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Whether `ct` starts like a media type (`type/subtype`).
fn is_media_type(ct: &str) -> bool {
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence
        .split_once('/')
        .is_some_and(|(t, s)| word(t) && word(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_canonical_decimals() {
        assert_eq!(decimal("0"), Some(0));
        assert_eq!(decimal("3600"), Some(3600));
        for bad in [
            "",
            "01",
            "+1",
            "1.5",
            "1e3",
            " 1",
            "-1",
            "99999999999999999999999",
        ] {
            assert_eq!(decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn media_types_need_a_type_and_a_subtype() {
        assert!(is_media_type("text/plain"));
        assert!(is_media_type("application/vnd.api+json; charset=utf-8"));
        for bad in ["", "text", "text/", "/plain", "text plain", "a/b c"] {
            assert!(!is_media_type(bad), "{bad}");
        }
    }
}
