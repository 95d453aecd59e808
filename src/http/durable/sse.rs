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
//! A task of its own writes the events into the body, one batch at a
//! time: it waits on the stream's topic, and ends when the client goes.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tokio::sync::mpsc;

use crate::core::TopicName;
use crate::core::durable::meta::{is_json, is_text};
use crate::core::durable::offset::{Offset, Start};
use crate::core::event::put_data_lines;
use crate::http::body::ResponseBody;
use crate::http::durable::query::{MAX_READ_BYTES, Query, body_of, next_cursor};
use crate::http::durable::wire::{SSE_DATA_ENCODING, error};
use crate::http::future::ResponseFuture;
use crate::http::responses::Attempt;
use crate::http::service::SseService;
use crate::hub::Hub;
use crate::hub::durable::{Catchup, Chunk, Waited};

/// Batches written ahead of a slow reader.
const AHEAD: usize = 4;

pub(super) fn open(service: &SseService, topic: TopicName, q: Query) -> ResponseFuture {
    let hub = service.hub.clone();
    let idle = service.config.long_poll_timeout;
    match hub.try_read_stream(&topic, q.start, MAX_READ_BYTES) {
        Ok(Catchup::Ready(chunk)) => ResponseFuture::ready(start(hub, topic, q, chunk, idle)),
        Ok(Catchup::Disk(read)) => ResponseFuture::boxed(async move {
            match read.finish().await {
                Ok(chunk) => start(hub, topic, q, chunk, idle),
                Err(e) => error(e, Attempt::Read),
            }
        }),
        Err(e) => ResponseFuture::ready(error(e, Attempt::Read)),
    }
}

/// Starts the events from the first chunk read.
fn start(
    hub: Hub,
    topic: TopicName,
    q: Query,
    chunk: Chunk,
    idle: Duration,
) -> Response<ResponseBody> {
    let format = Format {
        json: is_json(&chunk.content_type),
        base64: !is_text(&chunk.content_type),
    };
    let (tx, rx) = mpsc::channel(AHEAD);
    let writer = Writer {
        hub,
        topic,
        cursor: q.cursor,
        format,
        tx,
        idle,
    };
    tokio::spawn(writer.run(chunk));
    let mut res = Response::new(ResponseBody::channel(rx));
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
    res
}

#[derive(Debug, Clone, Copy)]
struct Format {
    json: bool,
    base64: bool,
}

struct Writer {
    hub: Hub,
    topic: TopicName,
    cursor: Option<String>,
    format: Format,
    tx: mpsc::Sender<Bytes>,
    idle: Duration,
}

impl Writer {
    async fn run(self, mut chunk: Chunk) {
        let _live = self.hub.live_read();
        loop {
            let mut buf = BytesMut::new();
            if !chunk.frames.is_empty() {
                self.data(&mut buf, &chunk.frames);
            }
            let next = chunk.next;
            if chunk.closed && chunk.up_to_date {
                closed(&mut buf, next);
                let _ = self.tx.send(buf.freeze()).await;
                return;
            }
            self.control(&mut buf, next, chunk.up_to_date);
            if self.tx.send(buf.freeze()).await.is_err() {
                return;
            }
            if chunk.up_to_date && !self.wait(next).await {
                return;
            }
            chunk = match self
                .hub
                .read_stream(&self.topic, Start::At(next), MAX_READ_BYTES)
                .await
            {
                Ok(chunk) => chunk,
                // Deleted, or gone with its history: the response ends.
                Err(_) => return,
            };
        }
    }

    /// Waits for messages after `next`, sending a control event each idle
    /// period; `false` when the response is over (closed, gone, client
    /// left).
    async fn wait(&self, next: Offset) -> bool {
        loop {
            let deadline = Instant::now() + self.idle;
            let waited = tokio::select! {
                w = self.hub.wait_stream(&self.topic, next, deadline) => w,
                () = self.tx.closed() => return false,
            };
            let mut buf = BytesMut::new();
            match waited {
                Ok(Waited::Data) => return true,
                Ok(Waited::Closed) => {
                    closed(&mut buf, next);
                    let _ = self.tx.send(buf.freeze()).await;
                    return false;
                }
                Ok(Waited::TimedOut) => self.control(&mut buf, next, true),
                Err(_) => return false,
            }
            if self.tx.send(buf.freeze()).await.is_err() {
                return false;
            }
        }
    }

    fn data(&self, buf: &mut BytesMut, frames: &[Bytes]) {
        let body = body_of(frames, self.format.json);
        buf.put_slice(b"event: data\n");
        if self.format.base64 {
            put_data_lines(buf, b"data:", base64(&body).as_bytes());
        } else {
            put_data_lines(buf, b"data:", &body);
        }
        buf.put_u8(b'\n');
    }

    fn control(&self, buf: &mut BytesMut, next: Offset, up_to_date: bool) {
        let cursor = next_cursor(self.cursor.as_deref());
        let up = if up_to_date { ",\"upToDate\":true" } else { "" };
        let json = format!("{{\"streamNextOffset\":\"{next}\",\"streamCursor\":\"{cursor}\"{up}}}");
        buf.put_slice(b"event: control\n");
        put_data_lines(buf, b"data:", json.as_bytes());
        buf.put_u8(b'\n');
    }
}

/// The last control event of a closed stream read to its end.
fn closed(buf: &mut BytesMut, next: Offset) {
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
