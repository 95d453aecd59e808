//! `GET /v1/stream/{path}` without `live=sse`: a catch-up read from
//! `offset`, or with `live=long-poll` one that waits for data first;
//! `HEAD` (the metadata) and `DELETE`.
//!
//! A read answers at most [`MAX_READ_BYTES`] (and at least one message):
//! a client that is not told `Stream-Up-To-Date` reads on from
//! `Stream-Next-Offset`. A chunk that is not the tail never changes, so it
//! may be cached; the tail may grow, so it is only revalidated (`ETag`).

use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::core::TopicName;
use crate::core::durable::meta::{Expiry, is_json};
use crate::core::durable::offset::Start;
use crate::http::body::ResponseBody;
use crate::http::durable::query::{Live, MAX_READ_BYTES, Query, body_of, next_cursor, query};
use crate::http::durable::sse;
use crate::http::durable::wire::{
    CLOSED, CURSOR, EXPIRES_AT, NEXT_OFFSET, TTL, UP_TO_DATE, error, value, with_tail,
};
use crate::http::future::ResponseFuture;
use crate::http::responses::Attempt;
use crate::http::service::SseService;
use crate::hub::Hub;
use crate::hub::durable::{Catchup, Chunk, Status, StreamError, Waited};

pub(super) fn get<B>(service: &SseService, topic: TopicName, req: &Request<B>) -> ResponseFuture {
    let q = match query(req.uri().query()) {
        Ok(q) => q,
        Err(refused) => return ResponseFuture::ready(refused.response()),
    };
    if q.live == Live::Sse {
        return sse::open(service, topic, q);
    }
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
    match service.hub.try_read_stream(&topic, q.start, MAX_READ_BYTES) {
        Ok(Catchup::Ready(chunk)) => respond(service, topic, chunk, q, if_none_match),
        Ok(Catchup::Stored(read)) => {
            // Older than the ring: read from disk, off this task.
            let service = service.clone();
            ResponseFuture::boxed(async move {
                match read.finish().await {
                    Ok(chunk) => match respond(&service, topic, chunk, q, if_none_match).await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    },
                    Err(e) => error(e, Attempt::Read),
                }
            })
        }
        Err(e) => ResponseFuture::ready(error(e, Attempt::Read)),
    }
}

/// The answer to a read whose first chunk is read.
fn respond(
    service: &SseService,
    topic: TopicName,
    chunk: Chunk,
    q: Query,
    if_none_match: Option<HeaderValue>,
) -> ResponseFuture {
    if q.live == Live::No {
        return ResponseFuture::ready(answer(chunk, &q, None, if_none_match.as_ref()));
    }
    if !chunk.frames.is_empty() {
        let cursor = next_cursor(q.cursor.as_deref());
        return ResponseFuture::ready(answer(chunk, &q, Some(cursor), if_none_match.as_ref()));
    }
    // Long-poll at the tail: wait for data, or the stream's close.
    if chunk.closed {
        let mut res = with_tail(StatusCode::NO_CONTENT, chunk.next, true);
        res.headers_mut()
            .insert(UP_TO_DATE, HeaderValue::from_static("true"));
        return ResponseFuture::ready(res);
    }
    let hub = service.hub.clone();
    let deadline = Instant::now() + service.config.long_poll_timeout;
    ResponseFuture::boxed(async move { long_poll(&hub, &topic, chunk, q, deadline).await })
}

async fn long_poll(
    hub: &Hub,
    topic: &TopicName,
    at: Chunk,
    q: Query,
    deadline: Instant,
) -> Response<ResponseBody> {
    let _live = hub.live_read();
    let cursor = next_cursor(q.cursor.as_deref());
    match hub.wait_stream(topic, at.next, deadline).await {
        Ok(Waited::Data) => match hub
            .read_stream(topic, Start::At(at.next), MAX_READ_BYTES)
            .await
        {
            Ok(chunk) => answer(chunk, &q, Some(cursor), None),
            Err(e) => error(e, Attempt::Read),
        },
        Ok(w @ (Waited::Closed | Waited::TimedOut)) => {
            let closed = w == Waited::Closed
                || hub
                    .stream_status(topic)
                    .await
                    .is_ok_and(|s| s.closed && s.tail == at.next);
            let mut res = with_tail(StatusCode::NO_CONTENT, at.next, closed);
            let h = res.headers_mut();
            h.insert(UP_TO_DATE, HeaderValue::from_static("true"));
            h.insert(CURSOR, value(cursor));
            res
        }
        Err(e) => error(e, Attempt::Read),
    }
}

/// A `200` with the messages of `chunk` (or `304` if the client has them).
fn answer(
    chunk: Chunk,
    q: &Query,
    cursor: Option<u64>,
    if_none_match: Option<&HeaderValue>,
) -> Response<ResponseBody> {
    let closed_at_tail = chunk.closed && chunk.up_to_date;
    let etag = format!(
        "\"{}:{}{}\"",
        q.offset_text,
        chunk.next,
        if closed_at_tail { ":c" } else { "" }
    );
    let etag = HeaderValue::try_from(etag).expect("an offset is a valid header value");
    if if_none_match.is_some_and(|v| v == etag) {
        let mut res = Response::new(ResponseBody::empty());
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        res.headers_mut().insert(header::ETAG, etag);
        return res;
    }
    let json_stream = is_json(&chunk.content_type);
    let body = if q.start == Start::Now && cursor.is_none() {
        // `offset=now`: nothing, at the tail.
        if json_stream {
            Bytes::from_static(b"[]")
        } else {
            Bytes::new()
        }
    } else {
        body_of(&chunk.frames, json_stream)
    };
    let mut res = Response::new(ResponseBody::full(body));
    let h = res.headers_mut();
    if let Ok(ct) = HeaderValue::try_from(&*chunk.content_type) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    h.insert(NEXT_OFFSET, value(chunk.next));
    if chunk.up_to_date {
        h.insert(UP_TO_DATE, HeaderValue::from_static("true"));
    }
    if closed_at_tail {
        h.insert(CLOSED, HeaderValue::from_static("true"));
    }
    if let Some(c) = cursor {
        h.insert(CURSOR, value(c));
    }
    let cache = if q.start == Start::Now || cursor.is_some() {
        "no-store"
    } else if chunk.up_to_date {
        "no-cache"
    } else {
        "public, max-age=60, stale-while-revalidate=300"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if q.start != Start::Now {
        h.insert(header::ETAG, etag);
    }
    res
}

/// `HEAD`: the stream's tail, content type, closure and lifetime.
pub(super) fn head(service: &SseService, topic: TopicName) -> ResponseFuture {
    if !service.hub.storage().store.loads_streams() {
        return ResponseFuture::ready(head_of(service.hub.local_stream_status(&topic)));
    }
    // The stream may have to be loaded first (Redis).
    let hub = service.hub.clone();
    ResponseFuture::boxed(async move { head_of(hub.stream_status(&topic).await) })
}

fn head_of(status: Result<Status, StreamError>) -> Response<ResponseBody> {
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            let mut res = error(e, Attempt::Read);
            *res.body_mut() = ResponseBody::empty();
            return res;
        }
    };
    let mut res = with_tail(StatusCode::OK, status.tail, status.closed);
    let h = res.headers_mut();
    if let Ok(ct) = HeaderValue::try_from(&*status.content_type) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match status.expiry {
        Expiry::Never => {}
        Expiry::Ttl(secs) => {
            h.insert(TTL, value(secs));
        }
        Expiry::At { text, .. } => {
            if let Ok(v) = HeaderValue::try_from(&*text) {
                h.insert(EXPIRES_AT, v);
            }
        }
    }
    let etag = format!(
        "\"-1:{}{}\"",
        status.tail,
        if status.closed { ":c" } else { "" }
    );
    h.insert(header::ETAG, HeaderValue::try_from(etag).expect("valid"));
    res
}

/// `DELETE`: `204` (with a store, once the deletion is durable).
pub(super) async fn delete(hub: &Hub, topic: &TopicName) -> Response<ResponseBody> {
    match hub.delete_stream(topic).await {
        Ok(()) => {
            let mut res = Response::new(ResponseBody::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            res
        }
        Err(e) => error(e, Attempt::Write),
    }
}
