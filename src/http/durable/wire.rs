//! What every Durable Streams endpoint shares: the protocol's headers,
//! header parsing, and the one table from a [`StreamError`] to its answer.
//! A leaf of `durable/`.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::core::TopicName;
use crate::core::durable::meta::Refusal;
use crate::core::durable::offset::Offset;
use crate::core::durable::path;
use crate::http::body::ResponseBody;
use crate::http::responses::{Attempt, hub_error, text};
use crate::http::service::SseService;
use crate::hub::durable::StreamError;

/// Where the protocol's streams are, below the service's prefix.
pub(crate) const BASE: &str = "/v1/stream/";

pub(crate) const NEXT_OFFSET: HeaderName = HeaderName::from_static("stream-next-offset");
pub(crate) const CURSOR: HeaderName = HeaderName::from_static("stream-cursor");
pub(crate) const UP_TO_DATE: HeaderName = HeaderName::from_static("stream-up-to-date");
pub(crate) const CLOSED: HeaderName = HeaderName::from_static("stream-closed");
pub(crate) const SEQ: HeaderName = HeaderName::from_static("stream-seq");
pub(crate) const TTL: HeaderName = HeaderName::from_static("stream-ttl");
pub(crate) const EXPIRES_AT: HeaderName = HeaderName::from_static("stream-expires-at");
pub(crate) const PRODUCER_ID: HeaderName = HeaderName::from_static("producer-id");
pub(crate) const PRODUCER_EPOCH: HeaderName = HeaderName::from_static("producer-epoch");
pub(crate) const PRODUCER_SEQ: HeaderName = HeaderName::from_static("producer-seq");
pub(crate) const EXPECTED_SEQ: HeaderName = HeaderName::from_static("producer-expected-seq");
pub(crate) const RECEIVED_SEQ: HeaderName = HeaderName::from_static("producer-received-seq");
pub(crate) const FORKED_FROM: HeaderName = HeaderName::from_static("stream-forked-from");
pub(crate) const FORK_OFFSET: HeaderName = HeaderName::from_static("stream-fork-offset");
pub(crate) const FORK_SUB_OFFSET: HeaderName = HeaderName::from_static("stream-fork-sub-offset");
pub(crate) const SSE_DATA_ENCODING: HeaderName =
    HeaderName::from_static("stream-sse-data-encoding");

/// A header value from a number or an offset.
pub(crate) fn value(v: impl ToString) -> HeaderValue {
    HeaderValue::try_from(v.to_string()).expect("digits and '_' are valid header values")
}

/// A request refused before any stream is looked at: the status and the
/// one line that says why.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) StatusCode, pub(crate) Cow<'static, str>);

impl Refused {
    /// `400` with `why`.
    pub(crate) fn bad(why: impl Into<Cow<'static, str>>) -> Self {
        Refused(StatusCode::BAD_REQUEST, why.into())
    }

    pub(crate) fn response(&self) -> Response<ResponseBody> {
        text(self.0, &self.1)
    }
}

/// The one request header `name`, as text: `Ok(None)` if absent, `Err`
/// (a `400`) if repeated or not visible ASCII.
pub(crate) fn one_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, Refused> {
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Refused::bad(format!("{name} is given more than once")));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| Refused::bad(format!("{name} is not valid text")))
}

/// The status of an empty answer with the stream's tail in it.
pub(crate) fn with_tail(status: StatusCode, tail: Offset, closed: bool) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::empty());
    *res.status_mut() = status;
    res.headers_mut().insert(NEXT_OFFSET, value(tail));
    if closed {
        res.headers_mut()
            .insert(CLOSED, HeaderValue::from_static("true"));
    }
    res
}

/// The answer to a failed stream operation.
pub(crate) fn error(e: StreamError, attempt: Attempt) -> Response<ResponseBody> {
    let say = |status, msg: &str| text(status, msg);
    match e {
        StreamError::NotFound => say(StatusCode::NOT_FOUND, "stream not found"),
        StreamError::Gone => say(
            StatusCode::GONE,
            "stream was deleted (it lives on only for its forks)",
        ),
        StreamError::OffsetGone => say(
            StatusCode::GONE,
            "offset is gone: older than the stream keeps, or from a deleted stream",
        ),
        StreamError::OffsetUnknown => say(
            StatusCode::BAD_REQUEST,
            "offset is not a position of this stream",
        ),
        StreamError::Exists => say(
            StatusCode::CONFLICT,
            "stream already exists with a different configuration",
        ),
        StreamError::PathInUse => say(
            StatusCode::CONFLICT,
            "stream was deleted but still has forks: the path cannot be reused until they are gone",
        ),
        StreamError::ForkSourceMissing => say(StatusCode::NOT_FOUND, "fork source not found"),
        StreamError::ForkSourceGone => say(
            StatusCode::CONFLICT,
            "fork source was deleted (it lives on only for its forks)",
        ),
        StreamError::ForkPoint(why) => say(StatusCode::BAD_REQUEST, why),
        StreamError::ForkContentType => say(
            StatusCode::CONFLICT,
            "content type differs from the fork source's",
        ),
        StreamError::Refused { refusal, tail } => refused(refusal, tail),
        StreamError::Json(e) => say(StatusCode::BAD_REQUEST, &e.to_string()),
        StreamError::Hub(e) => hub_error(&e, attempt),
    }
}

fn refused(refusal: Refusal, tail: Offset) -> Response<ResponseBody> {
    let mut res = match refusal {
        Refusal::Closed => {
            let mut res = text(StatusCode::CONFLICT, "stream is closed");
            res.headers_mut()
                .insert(CLOSED, HeaderValue::from_static("true"));
            res
        }
        Refusal::ContentType => text(
            StatusCode::CONFLICT,
            "content type differs from the stream's",
        ),
        Refusal::StreamSeq => text(
            StatusCode::CONFLICT,
            "Stream-Seq is not above the last one accepted",
        ),
        Refusal::StaleEpoch { current } => {
            let mut res = text(StatusCode::FORBIDDEN, "stale producer epoch");
            res.headers_mut().insert(PRODUCER_EPOCH, value(current));
            res
        }
        Refusal::NewEpochNotAtZero => text(
            StatusCode::BAD_REQUEST,
            "a new producer epoch must start at Producer-Seq 0",
        ),
        Refusal::Gap { expected, received } => {
            let mut res = text(StatusCode::CONFLICT, "producer sequence gap");
            res.headers_mut().insert(EXPECTED_SEQ, value(expected));
            res.headers_mut().insert(RECEIVED_SEQ, value(received));
            res
        }
    };
    res.headers_mut().insert(NEXT_OFFSET, value(tail));
    res
}

/// The topic of a `Stream-Forked-From` value: a stream's URL path
/// (`{prefix}/v1/stream/{path}`).
pub(crate) fn source_topic(service: &SseService, source: &str) -> Option<TopicName> {
    let below = service.below_prefix(source)?;
    path::topic_of(below.strip_prefix(BASE)?).ok()
}
