//! The small answers every endpoint gives: one-line texts, JSON, the
//! headers of an event stream, and the one table that turns a [`HubError`]
//! into a status.
//!
//! A leaf: it imports nothing else of `http/` but the body type, so any
//! other room may use it.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::http::body::ResponseBody;
use crate::hub::HubError;
use crate::store::ErrorKind;

/// The name of the request header that names a publish.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The response header that marks an answer given again for a retry.
pub(crate) const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

/// A one-line plain-text response.
pub(crate) fn text(status: StatusCode, msg: &str) -> Response<ResponseBody> {
    let mut body = String::with_capacity(msg.len() + 1);
    body.push_str(msg);
    body.push('\n');
    let mut res = Response::new(ResponseBody::full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: String) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::full(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `405` with the methods the route takes.
pub(crate) fn not_allowed(allow: &'static str) -> Response<ResponseBody> {
    let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// The headers of every event stream.
pub(crate) fn stream_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}

/// What the request that met a [`HubError`] tried to do: the same error
/// can mean another status for each (see [`hub_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// Open a stream, or ask a stream's position.
    Read,
    /// Publish.
    Write,
}

/// How a [`HubError`] is answered: its status and the one line sent with
/// it. The only table of it: the endpoints and
/// [`StreamRequestError`](crate::http::StreamRequestError) both read it.
///
/// A full disk is `507 Insufficient Storage` for a publish: the server
/// could not store what the request carried (RFC 4918, 11.5), and the
/// text says nothing was published. A read stores nothing of the
/// client's, so for it the same disk is `503` with `Retry-After`, like
/// any other storage trouble: it passes, and retrying later is all the
/// client can do.
pub(crate) fn hub_status(e: &HubError, attempt: Attempt) -> (StatusCode, Cow<'static, str>) {
    match e {
        HubError::InvalidTopic
        | HubError::ReservedTopic(_)
        | HubError::NoTopics
        | HubError::DuplicateTopic(_)
        | HubError::InvalidLastEventId(_)
        | HubError::StreamTooWide { .. } => (StatusCode::BAD_REQUEST, e.to_string().into()),
        HubError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string().into()),
        HubError::KeyReused => (StatusCode::CONFLICT, e.to_string().into()),
        // The cause is logged where it happened; clients get the gist.
        HubError::Storage(s) if s.kind() == ErrorKind::Full && attempt == Attempt::Write => (
            StatusCode::INSUFFICIENT_STORAGE,
            "storage full: nothing was published".into(),
        ),
        HubError::Storage(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "storage unavailable".into(),
        ),
        _ => (StatusCode::SERVICE_UNAVAILABLE, e.to_string().into()),
    }
}

/// The answer to a [`HubError`] (see [`hub_status`]); a `503` says when to
/// come back.
pub(crate) fn hub_error(e: &HubError, attempt: Attempt) -> Response<ResponseBody> {
    let (status, msg) = hub_status(e, attempt);
    let mut res = text(status, &msg);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_full_disk_is_507_for_a_publish_and_503_for_a_read() {
        let full = || HubError::Storage(StoreError::new(ErrorKind::Full, "test"));
        let publish = hub_error(&full(), Attempt::Write);
        assert_eq!(publish.status(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(publish.headers().get(header::RETRY_AFTER).is_none());
        let read = hub_error(&full(), Attempt::Read);
        assert_eq!(read.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(read.headers()[header::RETRY_AFTER], "5");
    }
}
