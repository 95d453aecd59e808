//! The stream endpoints: `GET` and `HEAD` of `/events/{topic}`,
//! `/stream` and `/events?topic=a&topic=b`. Each checks the request
//! (query, topic names, the policy), asks the hub for the stream or its
//! position, and answers a refusal that will pass so that a browser keeps
//! trying (see [`refusal`](crate::http::refusal)).

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::core::{MultiId, MultiIdError, TopicName};
use crate::http::auth::{AccessRequest, Decision};
use crate::http::body::ResponseBody;
use crate::http::future::ResponseFuture;
use crate::http::native::query::{query_topics, reconnect_head_len, subscribe_options};
use crate::http::refusal::{Refusal, refuse};
use crate::http::responses::{Attempt, hub_error, stream_headers, text};
use crate::http::service::SseService;
use crate::hub::{HubError, Subscribe, Subscribing};

/// The checks and options of a stream request (`GET` or `HEAD`): the
/// query, the topic name, the subscriber's credentials, the position to
/// resume from.
// The refusal is built once and answered at once: boxing it would only
// add an allocation.
#[allow(clippy::result_large_err)]
fn stream_request<B>(
    service: &SseService,
    topic: &str,
    req: &Request<B>,
) -> Result<(TopicName, Subscribe), Response<ResponseBody>> {
    let options = subscribe_options(req.uri(), req.headers())
        .map_err(|msg| text(StatusCode::BAD_REQUEST, msg))?;
    let topic = TopicName::new(topic).map_err(|e| hub_error(&e.into(), Attempt::Read))?;
    let verdict = service
        .config
        .policy()
        .subscribe(&AccessRequest::new(req), &topic);
    let expires = match verdict {
        Decision::AllowUntil(at) => Some(at),
        _ => None,
    };
    if let Some(res) = verdict.refusal(None) {
        return Err(res);
    }
    Ok((
        topic,
        match expires {
            Some(at) => options.expires_at(at),
            None => options,
        },
    ))
}

/// `HEAD` of a stream: what `GET` would answer, without opening a
/// stream, and the topic's position in `Last-Event-ID` (see
/// [`Hub::position`]).
pub(crate) fn head_stream<B>(
    service: &SseService,
    topic: &str,
    req: &Request<B>,
) -> ResponseFuture {
    let topic = match stream_request(service, topic, req) {
        Ok((topic, _)) => topic,
        Err(res) => return ResponseFuture::ready(res),
    };
    // It creates and retires nothing (see `Hub::position`), and is
    // refused as the `GET` would be.
    let this = service.clone();
    let headers = refusal_headers(req.headers());
    ResponseFuture::boxed(async move {
        match this.hub.position(&topic, SUBSCRIBE_PATIENCE).await {
            Ok(id) => position_response(&id.to_string()),
            Err(e) => stream_refused(&this, e, &headers),
        }
    })
}

pub(crate) fn subscribe<B>(service: &SseService, topic: &str, req: &Request<B>) -> ResponseFuture {
    let (topic, options) = match stream_request(service, topic, req) {
        Ok(checked) => checked,
        Err(res) => return ResponseFuture::ready(res),
    };
    // A store that loads topics fixes the start before the answer
    // (see `Hub::subscribe_ready`); in memory it is fixed at once.
    answer(
        service,
        service
            .hub
            .subscribe_for_response(&topic, options, SUBSCRIBE_PATIENCE),
        req.headers(),
    )
}

/// The answer to a stream request the hub refused: one that will pass
/// keeps a browser retrying (see [`refusal`](crate::http::refusal)).
fn stream_refused(
    service: &SseService,
    e: HubError,
    request: &http::HeaderMap,
) -> Response<ResponseBody> {
    match Refusal::of(&e) {
        Some(why) => refuse(why, request, Some(&service.shared.connections.refusals)),
        None => hub_error(&e, Attempt::Read),
    }
}

/// The checks and options of a request for a stream of several topics
/// (`GET` or `HEAD` of `/events?topic=a&topic=b`): the query, the
/// topics, the last event id of those topics, and the subscriber's
/// credentials for each topic.
#[allow(clippy::result_large_err)]
fn stream_request_many<B>(
    service: &SseService,
    req: &Request<B>,
) -> Result<(Vec<TopicName>, Subscribe), Response<ResponseBody>> {
    let bad = |msg: &str| text(StatusCode::BAD_REQUEST, msg);
    let options = subscribe_options(req.uri(), req.headers()).map_err(bad)?;
    let topics = query_topics(req.uri().query(), service.config.max_topics_per_stream)
        .map_err(|msg| bad(&msg))?;
    match options.requested_id() {
        Some(id) => {
            let from = if req.headers().contains_key("last-event-id") {
                "Last-Event-ID"
            } else {
                "lastEventId"
            };
            match MultiId::parse(id, &topics) {
                // What cannot be a position of these topics but may
                // come from a browser starts every topic with
                // `resync`: a refusal would close its `EventSource`.
                Ok(_) | Err(MultiIdError::TooLong | MultiIdError::NoCheck) => {}
                Err(e) => return Err(bad(&format!("invalid {from}: {e}"))),
            }
        }
        // A new stream is opened only if its reconnects will fit in
        // the server's request head: one refused for its size would
        // close the `EventSource` for good.
        None => {
            let worst = reconnect_head_len(req, topics.len());
            let max = service.config.max_head_bytes;
            if worst > max {
                return Err(bad(&format!(
                    "a reconnect of this stream could need a request head of {worst} \
                     bytes (its id at its longest, in Last-Event-ID and in \
                     ?lastEventId=), over the server's {max}: name fewer topics"
                )));
            }
        }
    }
    let access = AccessRequest::new(req);
    let mut expires: Option<std::time::SystemTime> = None;
    for topic in &topics {
        match service.config.policy().subscribe(&access, topic) {
            Decision::Allow => {}
            Decision::AllowUntil(at) => expires = Some(expires.map_or(at, |e| e.min(at))),
            refused => {
                return Err(refused
                    .refusal(Some(topic))
                    .unwrap_or_else(|| text(StatusCode::FORBIDDEN, "refused")));
            }
        }
    }
    Ok((
        topics,
        match expires {
            Some(at) => options.expires_at(at),
            None => options,
        },
    ))
}

pub(crate) fn subscribe_multi<B>(service: &SseService, req: &Request<B>) -> ResponseFuture {
    let (topics, options) = match stream_request_many(service, req) {
        Ok(checked) => checked,
        Err(res) => return ResponseFuture::ready(res),
    };
    answer(
        service,
        service
            .hub
            .subscribe_multi_for_response(topics, options, SUBSCRIBE_PATIENCE),
        req.headers(),
    )
}

/// `HEAD` of a stream of several topics: what `GET` would answer, and
/// the position of all its topics in `Last-Event-ID` (see
/// [`Hub::position_multi`]).
pub(crate) fn head_many<B>(service: &SseService, req: &Request<B>) -> ResponseFuture {
    let topics = match stream_request_many(service, req) {
        Ok((topics, _)) => topics,
        Err(res) => return ResponseFuture::ready(res),
    };
    // It creates and retires nothing (see `Hub::position_multi`), and
    // is refused as the `GET` would be.
    let this = service.clone();
    let headers = refusal_headers(req.headers());
    ResponseFuture::boxed(async move {
        match this.hub.position_multi(topics, SUBSCRIBE_PATIENCE).await {
            Ok(id) => position_response(&id.to_string()),
            Err(e) => stream_refused(&this, e, &headers),
        }
    })
}

/// How long a subscription to a Redis topic waits for this node to load the
/// topic's history before answering anyway (the stream then starts when
/// Redis is back).
const SUBSCRIBE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The answer to a stream request once the hub has subscribed it (at once,
/// or after loading its topics): the stream, or the refusal.
fn answer<S>(
    service: &SseService,
    subscribing: Subscribing<S>,
    request: &http::HeaderMap,
) -> ResponseFuture
where
    S: Into<ResponseBody> + Send + 'static,
{
    match subscribing {
        Subscribing::Ready(result) => ResponseFuture::ready(match result {
            Ok(stream) => body_response(stream),
            Err(e) => stream_refused(service, e, request),
        }),
        Subscribing::Waiting(fut) => {
            let this = service.clone();
            let headers = refusal_headers(request);
            ResponseFuture::boxed(async move {
                match fut.await {
                    Ok(stream) => body_response(stream),
                    Err(e) => stream_refused(&this, e, &headers),
                }
            })
        }
    }
}

fn body_response(stream: impl Into<ResponseBody>) -> Response<ResponseBody> {
    let mut res = Response::new(stream.into());
    stream_headers(res.headers_mut());
    res
}

/// What a refusal made after waiting for the hub needs of the request.
fn refusal_headers(request: &http::HeaderMap) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for name in [header::ACCEPT, header::ORIGIN] {
        for v in request.get_all(&name) {
            headers.append(name.clone(), v.clone());
        }
    }
    headers
}

/// The answer to a `HEAD` of a stream: its headers, and the position in
/// `Last-Event-ID`.
fn position_response(id: &str) -> Response<ResponseBody> {
    let mut res = Response::new(ResponseBody::empty());
    stream_headers(res.headers_mut());
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert("last-event-id", v);
    }
    res
}
