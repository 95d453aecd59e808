//! `GET /v1/stream/{path}?offset=...&live=sse`: the stream's messages as
//! server-sent events, live.
//!
//! Each batch of messages is one `event: data` (text as is, JSON as one
//! array, any other content type base64 with `Stream-SSE-Data-Encoding:
//! base64`), always followed by one `event: control` carrying the offset
//! after it, a cursor, and `upToDate` once the reader is at the tail.
//! Idle, a control event goes out every long-poll timeout. When the
//! stream is closed and read to its end, a last control event says
//! `streamClosed` and the response ends. Lines are `data:` without a space
//! (the protocol's choice; clients strip at most one).
//!
//! The events are written by a future polled with the body (no task or
//! channel per reader). A reader catches up on its own; at the tail it
//! follows the stream's pump (`live.rs`), which reads and encodes each new
//! batch once for all the readers there.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tokio::time::Instant;

use crate::core::TopicName;
use crate::core::durable::meta::{is_json, is_text};
use crate::core::durable::offset::{Offset, Start};
use crate::core::event::put_data_lines;
use crate::http::body::{Emitter, ResponseBody};
use crate::http::durable::live::{Follow, Followers, Step};
use crate::http::durable::query::{MAX_READ_BYTES, Query, body_of, next_cursor};
use crate::http::durable::wire::{SSE_DATA_ENCODING, error};
use crate::http::future::ResponseFuture;
use crate::http::responses::Attempt;
use crate::http::service::SseService;
use crate::hub::Hub;
use crate::hub::durable::{Chunk, Waited};

pub(super) fn open(service: &SseService, topic: TopicName, q: Query) -> ResponseFuture {
    let hub = service.hub.clone();
    let chunk = match hub.read_stream(&topic, q.start, MAX_READ_BYTES) {
        Ok(chunk) => chunk,
        Err(e) => return ResponseFuture::ready(error(e, Attempt::Read)),
    };
    let format = Format::of(&chunk.content_type);
    let reader = Reader {
        hub,
        topic,
        cursor: q.cursor,
        format,
        idle: service.config.long_poll_timeout,
        followers: service.shared.durable_followers.clone(),
    };
    let mut res = Response::new(ResponseBody::driven(move |out| reader.run(chunk, out)));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if format.base64 {
        h.insert(SSE_DATA_ENCODING, HeaderValue::from_static("base64"));
    }
    ResponseFuture::ready(res)
}

/// How a stream's messages go into `event: data`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    json: bool,
    base64: bool,
}

impl Format {
    pub(crate) fn of(content_type: &str) -> Self {
        Format {
            json: is_json(content_type),
            base64: !is_text(content_type),
        }
    }
}

struct Reader {
    hub: Hub,
    topic: TopicName,
    cursor: Option<String>,
    format: Format,
    idle: Duration,
    followers: Followers,
}

/// How following the pump ended.
enum Followed {
    /// The response is over.
    Ended,
    /// Read on its own from where the reader is.
    Read,
    /// Wait on its own, then read.
    Wait,
}

impl Reader {
    async fn run(self, mut chunk: Chunk, out: Emitter) {
        let _live = self.hub.live_read();
        // The stream's pump, once at the tail; held until the response
        // ends, so that the pump lives while this reader may need it.
        let mut follow = None;
        let mut first = true;
        loop {
            let next = chunk.next;
            // A read that found nothing new adds no events (but the first
            // always answers).
            if first || !chunk.frames.is_empty() {
                first = false;
                let mut buf = BytesMut::new();
                if !chunk.frames.is_empty() {
                    data(&mut buf, &chunk.frames, self.format);
                }
                if chunk.closed && chunk.up_to_date {
                    closed(&mut buf, next);
                    out.emit(buf.freeze()).await;
                    return;
                }
                let cursor = next_cursor(self.cursor.as_deref());
                control(&mut buf, next, cursor, chunk.up_to_date);
                out.emit(buf.freeze()).await;
            } else if chunk.closed && chunk.up_to_date {
                let mut buf = BytesMut::new();
                closed(&mut buf, next);
                out.emit(buf.freeze()).await;
                return;
            }
            let mut at = next;
            if chunk.up_to_date {
                let wait = match self.follow(&mut follow, &mut at, &out).await {
                    Followed::Ended => return,
                    Followed::Read => false,
                    Followed::Wait => true,
                };
                if wait && !self.wait(at, &out).await {
                    return;
                }
            }
            chunk = match self
                .hub
                .read_stream(&self.topic, Start::At(at), MAX_READ_BYTES)
            {
                Ok(chunk) => chunk,
                // Deleted, or gone with its history: the response ends.
                Err(_) => return,
            };
        }
    }

    /// Sends the pump's batches from `at` on while it has them, and a
    /// control event each idle period.
    async fn follow(
        &self,
        follow: &mut Option<Arc<Follow>>,
        at: &mut Offset,
        out: &Emitter,
    ) -> Followed {
        let follow = follow.get_or_insert_with(|| {
            self.followers
                .follow(&self.hub, &self.topic, *at, self.idle)
        });
        let mut rx = follow.subscribe();
        let mut deadline = Instant::now() + self.idle;
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        let mut pump_gone = false;
        loop {
            let step = rx.borrow_and_update().step(*at);
            match step {
                Step::Send(batch) => {
                    out.emit(batch.events(self.cursor.as_deref())).await;
                    *at = batch.next;
                    if batch.closed {
                        return Followed::Ended;
                    }
                    deadline = Instant::now() + self.idle;
                    continue;
                }
                Step::Behind => return Followed::Read,
                Step::Closed => {
                    let mut buf = BytesMut::new();
                    closed(&mut buf, *at);
                    out.emit(buf.freeze()).await;
                    return Followed::Ended;
                }
                Step::Alone => return Followed::Wait,
                Step::Wait if pump_gone => return Followed::Wait,
                Step::Wait => {}
            }
            tokio::select! {
                // The timer is polled only when nothing changed: it is
                // rarely due.
                biased;
                changed = rx.changed() => pump_gone = changed.is_err(),
                () = &mut sleep => {
                    if Instant::now() >= deadline {
                        let mut buf = BytesMut::new();
                        let cursor = next_cursor(self.cursor.as_deref());
                        control(&mut buf, *at, cursor, true);
                        out.emit(buf.freeze()).await;
                        deadline = Instant::now() + self.idle;
                    }
                    sleep.as_mut().reset(deadline);
                }
            }
        }
    }

    /// Waits for messages after `next`, sending a control event each idle
    /// period; `false` when the response is over (closed, gone).
    async fn wait(&self, next: Offset, out: &Emitter) -> bool {
        loop {
            let deadline = std::time::Instant::now() + self.idle;
            let waited = self.hub.wait_stream(&self.topic, next, deadline).await;
            let mut buf = BytesMut::new();
            match waited {
                Ok(Waited::Data) => return true,
                Ok(Waited::Closed) => {
                    closed(&mut buf, next);
                    out.emit(buf.freeze()).await;
                    return false;
                }
                Ok(Waited::TimedOut) => {
                    let cursor = next_cursor(self.cursor.as_deref());
                    control(&mut buf, next, cursor, true);
                }
                Err(_) => return false,
            }
            out.emit(buf.freeze()).await;
        }
    }
}

/// The `event: data` of `frames` (none for no frames).
pub(crate) fn data(buf: &mut BytesMut, frames: &[Bytes], format: Format) {
    if frames.is_empty() {
        return;
    }
    let body = body_of(frames, format.json);
    buf.put_slice(b"event: data\n");
    if format.base64 {
        put_data_lines(buf, b"data:", base64(&body).as_bytes());
    } else {
        put_data_lines(buf, b"data:", &body);
    }
    buf.put_u8(b'\n');
}

/// A control event: the offset after what was sent, a cursor, and
/// whether that is the tail.
pub(crate) fn control(buf: &mut BytesMut, next: Offset, cursor: u64, up_to_date: bool) {
    let up = if up_to_date { ",\"upToDate\":true" } else { "" };
    let json = format!("{{\"streamNextOffset\":\"{next}\",\"streamCursor\":\"{cursor}\"{up}}}");
    buf.put_slice(b"event: control\n");
    put_data_lines(buf, b"data:", json.as_bytes());
    buf.put_u8(b'\n');
}

/// The last control event of a closed stream read to its end.
pub(crate) fn closed(buf: &mut BytesMut, next: Offset) {
    let json = format!("{{\"streamNextOffset\":\"{next}\",\"streamClosed\":true}}");
    buf.put_slice(b"event: control\n");
    put_data_lines(buf, b"data:", json.as_bytes());
    buf.put_u8(b'\n');
}

/// Standard base64 with padding (RFC 4648, section 4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }
}
