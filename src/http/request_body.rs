//! Request bodies: read whole, bounded by size and by the server's body
//! deadline, with the one answer for each way that fails.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body::Body;
use http_body_util::BodyExt;

use crate::http::body::ResponseBody;
use crate::http::responses::text;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The most bytes of a refused body read (and dropped) before the `413`:
/// a client still sending would otherwise meet a connection closed with
/// its data unread, which the kernel answers with a reset that can destroy
/// the `413` before the client reads it. Beyond this the answer goes at
/// once, and the connection closes.
pub(crate) const DRAIN_MAX: u64 = 64 << 20;

/// Reads `body` whole: at most `max` bytes (`413`, once the rest is read
/// and dropped, up to [`DRAIN_MAX`]), in the time the server allows
/// (`408`, see [`BodyTimeout`](crate::server::BodyTimeout)).
pub(crate) async fn collect<B>(
    body: B,
    max: usize,
    version: Version,
) -> Result<Bytes, Response<ResponseBody>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    // Copied into a buffer of its own: a stored message must not keep
    // alive the connection's read buffer it arrived in.
    let expected = usize::try_from(body.size_hint().lower()).unwrap_or(max);
    let mut buf = BytesMut::with_capacity(expected.min(max));
    let mut body = std::pin::pin!(body);
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| failed(&*e.into(), version))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen += data.remaining() as u64;
        if seen > max as u64 {
            // Read the rest and drop it, then refuse.
            if seen > DRAIN_MAX {
                return Err(too_large_closing(max, version));
            }
            continue;
        }
        buf.put(data);
    }
    if seen > max as u64 {
        return Err(too_large(max));
    }
    Ok(buf.freeze())
}

fn failed(e: &(dyn std::error::Error + 'static), version: Version) -> Response<ResponseBody> {
    if is_timeout(e) {
        body_timeout(version)
    } else {
        text(StatusCode::BAD_REQUEST, "could not read request body")
    }
}

/// The answer to a request whose `Content-Length` is over `max`: `None`
/// when the body is small enough to be read and dropped first (then
/// [`collect`] answers `413`), else `413` at once, closing the connection.
pub(crate) fn refuse_declared(
    headers: &HeaderMap,
    max: usize,
    version: Version,
) -> Option<Response<ResponseBody>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())?;
    (declared > max as u64 && declared > DRAIN_MAX).then(|| too_large_closing(max, version))
}

fn too_large_closing(max: usize, version: Version) -> Response<ResponseBody> {
    let mut res = too_large(max);
    if version < Version::HTTP_2 {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
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
