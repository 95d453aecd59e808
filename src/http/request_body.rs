//! Request bodies: read whole, bounded by size and by the server's body
//! deadline, with the one answer for each way that fails.

use std::io;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::http::body::ResponseBody;
use crate::http::responses::text;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Reads `body` whole: at most `max` bytes (`413`), in the time the server
/// allows (`408`, see [`BodyTimeout`](crate::server::BodyTimeout)).
pub(crate) async fn collect<B>(
    body: B,
    max: usize,
    version: Version,
) -> Result<Bytes, Response<ResponseBody>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(max)),
        Err(e) if is_timeout(&*e) => Err(body_timeout(version)),
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "could not read request body")),
    }
}

/// Whether the request says its body is larger than `max` bytes
/// (`Content-Length`): it can be refused before it is read.
pub(crate) fn declared_too_large(headers: &HeaderMap, max: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
}

/// `413` for a body larger than `max` bytes.
pub(crate) fn too_large(max: usize) -> Response<ResponseBody> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body is larger than {max} bytes"),
    )
}

/// Whether `e` or one of its sources is an [`io::Error`] of kind
/// `TimedOut` (as [`BodyTimeout`](crate::server::BodyTimeout)'s are).
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
    })
}

/// `408` for a request body that stopped or slowed down: the rest of it may
/// still be on its way, so an HTTP/1.1 connection cannot serve another
/// request (HTTP/2 ends only the stream, and forbids `Connection`).
fn body_timeout(version: Version) -> Response<ResponseBody> {
    let mut res = text(
        StatusCode::REQUEST_TIMEOUT,
        "request body not received in time",
    );
    if version < Version::HTTP_2 {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    #[test]
    fn timeouts_are_found_in_the_source_chain() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl fmt::Display for Wrapper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("wrapper")
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "slow");
        let direct: BoxError = Box::new(timed_out());
        assert!(is_timeout(&*direct));
        let nested: BoxError = Box::new(Wrapper(timed_out()));
        assert!(is_timeout(&*nested));
        let other: BoxError = Box::new(Wrapper(io::Error::other("reset")));
        assert!(!is_timeout(&*other));
    }

    #[test]
    fn body_timeout_closes_http1_only() {
        let h1 = body_timeout(Version::HTTP_11);
        assert_eq!(h1.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(h1.headers()[header::CONNECTION], "close");
        let h2 = body_timeout(Version::HTTP_2);
        assert_eq!(h2.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(h2.headers().get(header::CONNECTION).is_none());
    }
}
