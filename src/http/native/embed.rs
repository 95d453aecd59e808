//! The embedding API: [`stream_response`] and [`stream_response_multi`]
//! answer one stream request inside a handler that does its own routing,
//! and [`StreamRequestError`] says why they could not.

use std::fmt;

use http::{Response, StatusCode};

use crate::core::IntoTopic;
use crate::http::body::ResponseBody;
use crate::http::native::query::subscribe_options;
use crate::http::refusal::{Refusal, refuse};
use crate::http::responses::{Attempt, hub_error, hub_status, stream_headers, text};
use crate::hub::{EventStream, Hub, HubError, MultiEventStream};

/// Answers an event-stream request in one call, for handlers that do their
/// own routing (and their own authorisation): reads what the client asks
/// for from `req` (`Last-Event-ID`, `?lastEventId=`, `?limit=`,
/// `?rewind=`), subscribes to `topic`, and returns the
/// `200 text/event-stream` response with the [`EventStream`] as its body.
///
/// # Errors
///
/// [`StreamRequestError`]: a bad query (`400`) or what the hub refused;
/// [`StreamRequestError::into_response`] answers it.
///
/// # Examples
///
/// ```
/// use ssehub::Hub;
/// use ssehub::http::stream_response;
///
/// let hub = Hub::new();
/// let (parts, ()) = http::Request::get("/anything?rewind=10")
///     .header("last-event-id", "")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let res = stream_response(&hub, "news", &parts).unwrap();
/// assert_eq!(res.headers()["content-type"], "text/event-stream");
/// ```
pub fn stream_response(
    hub: &Hub,
    topic: impl IntoTopic,
    req: &http::request::Parts,
) -> Result<Response<EventStream>, StreamRequestError> {
    let options = subscribe_options(&req.uri, &req.headers).map_err(StreamRequestError::Query)?;
    let stream = hub
        .subscribe(topic, options)
        .map_err(StreamRequestError::Hub)?;
    let mut res = Response::new(stream);
    stream_headers(res.headers_mut());
    Ok(res)
}

/// [`stream_response`] for a stream of several topics (see
/// [`MultiEventStream`]): reads `Last-Event-ID` (or `?lastEventId=`; the id
/// of these topics, in this order), `?limit=` and `?rewind=` (per topic)
/// from `req`, subscribes to `topics`, and returns the `200
/// text/event-stream` response. The handler chooses the topics (and
/// checks who may read them).
///
/// # Errors
///
/// [`StreamRequestError`]: a bad query, or what the hub refused (an empty
/// or repeated topic, a last event id of other topics or of these in
/// another order, more topics than the hub holds: `400`).
///
/// # Examples
///
/// ```
/// use ssehub::Hub;
/// use ssehub::http::stream_response_multi;
///
/// let hub = Hub::new();
/// let (parts, ()) = http::Request::get("/feed").body(()).unwrap().into_parts();
/// let res = stream_response_multi(&hub, ["chat", "news"], &parts).unwrap();
/// assert_eq!(res.headers()["content-type"], "text/event-stream");
///
/// // The id of the same topics in another order is refused, not misread.
/// let other = hub.subscribe_multi(["news", "chat"], Default::default()).unwrap().position();
/// let uri = format!("/feed?lastEventId={other}");
/// let (parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
/// let refused = stream_response_multi(&hub, ["chat", "news"], &parts).unwrap_err();
/// assert_eq!(refused.status(), 400, "an id of (news, chat), for (chat, news)");
/// ```
pub fn stream_response_multi<T: IntoTopic>(
    hub: &Hub,
    topics: impl IntoIterator<Item = T>,
    req: &http::request::Parts,
) -> Result<Response<MultiEventStream>, StreamRequestError> {
    let options = subscribe_options(&req.uri, &req.headers).map_err(StreamRequestError::Query)?;
    let stream = hub
        .subscribe_multi(topics, options)
        .map_err(StreamRequestError::Hub)?;
    let mut res = Response::new(stream);
    stream_headers(res.headers_mut());
    Ok(res)
}

/// The old name of [`stream_response_multi`].
#[deprecated(note = "renamed `stream_response_multi`")]
pub fn stream_response_many<T: IntoTopic>(
    hub: &Hub,
    topics: impl IntoIterator<Item = T>,
    req: &http::request::Parts,
) -> Result<Response<MultiEventStream>, StreamRequestError> {
    stream_response_multi(hub, topics, req)
}

/// Why [`stream_response`] could not answer with a stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamRequestError {
    /// The query is not valid (`400`): the text says why.
    Query(&'static str),
    /// The hub refused: an invalid topic name or last event id is `400`,
    /// what passes (shutting down, no topic slot, storage) `503`.
    Hub(HubError),
}

impl StreamRequestError {
    /// The status the error is answered with: the one
    /// [`into_response`](Self::into_response) answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            StreamRequestError::Query(_) => StatusCode::BAD_REQUEST,
            StreamRequestError::Hub(e) => hub_status(e, Attempt::Read).0,
        }
    }

    /// The answer: the status with a one-line text.
    ///
    /// Prefer [`into_response_for`](Self::into_response_for) when the
    /// request may come from a browser's `EventSource`.
    pub fn into_response(self) -> Response<ResponseBody> {
        match self {
            StreamRequestError::Query(msg) => text(StatusCode::BAD_REQUEST, msg),
            StreamRequestError::Hub(e) => hub_error(&e, Attempt::Read),
        }
    }

    /// The answer to the request whose headers are `request`, the way
    /// [`SseService`](crate::SseService) answers: a refusal that will pass (shutting down, no
    /// topic slot, storage out of reach) is, for a request that accepts
    /// `text/event-stream` (every `EventSource`), `200` with a `retry:`
    /// hint and an immediate end, so the browser reconnects later instead
    /// of giving up for good as it does on any other status. Others get
    /// [`into_response`](Self::into_response). No CORS headers: the
    /// application's CORS layer adds them, as to its other responses.
    ///
    /// ```
    /// # async fn f() {
    /// let hub = ssehub::Hub::new();
    /// hub.close();
    /// let (parts, ()) = http::Request::get("/events/news")
    ///     .header("accept", "text/event-stream")
    ///     .body(())
    ///     .unwrap()
    ///     .into_parts();
    /// let err = ssehub::http::stream_response(&hub, "news", &parts).unwrap_err();
    /// let res = err.into_response_for(&parts.headers);
    /// assert_eq!(res.status(), 200);
    /// assert_eq!(res.headers()["content-type"], "text/event-stream");
    /// # }
    /// ```
    pub fn into_response_for(self, request: &http::HeaderMap) -> Response<ResponseBody> {
        match &self {
            StreamRequestError::Hub(e) => match Refusal::of(e) {
                Some(why) => refuse(why, request, None),
                None => self.into_response(),
            },
            StreamRequestError::Query(_) => self.into_response(),
        }
    }
}

impl fmt::Display for StreamRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamRequestError::Query(msg) => f.write_str(msg),
            StreamRequestError::Hub(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StreamRequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamRequestError::Query(_) => None,
            StreamRequestError::Hub(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::MultiIdError;
    use crate::core::TopicName;
    use crate::store::{ErrorKind, StoreError};

    /// Regression: `status()` and `into_response()` each had a table, and
    /// a full disk was `503` in one and `507` in the other.
    #[test]
    fn status_is_the_status_of_the_response_for_every_error() {
        let storage = |kind| HubError::Storage(StoreError::new(kind, "test"));
        let errors = [
            StreamRequestError::Query("invalid limit"),
            StreamRequestError::Hub(HubError::InvalidTopic),
            StreamRequestError::Hub(HubError::TooManyTopics),
            StreamRequestError::Hub(HubError::StreamTooWide { topics: 3, max: 2 }),
            StreamRequestError::Hub(HubError::Closed),
            StreamRequestError::Hub(storage(ErrorKind::Unavailable)),
            StreamRequestError::Hub(storage(ErrorKind::Corrupt)),
            StreamRequestError::Hub(storage(ErrorKind::Full)),
            StreamRequestError::Hub(HubError::TooLarge),
            StreamRequestError::Hub(HubError::KeyReused),
            StreamRequestError::Hub(HubError::NoTopics),
            StreamRequestError::Hub(HubError::DuplicateTopic(TopicName::new("a").unwrap())),
            StreamRequestError::Hub(HubError::InvalidLastEventId(MultiIdError::NoCheck)),
        ];
        for e in errors {
            let said = e.status();
            let shown = e.to_string();
            assert_eq!(said, e.into_response().status(), "{shown}");
        }
        // A stream reads: a full disk passes like any storage trouble.
        let full = StreamRequestError::Hub(storage(ErrorKind::Full));
        assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}
