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

use bytes::BytesMut;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tokio::time::Instant;

use crate::core::TopicName;
use crate::core::durable::offset::{Offset, Start};
use crate::http::body::{Emitter, ResponseBody};
use crate::http::durable::events::{Format, MAX_READ_BYTES, closed, control, data, next_cursor};
use crate::http::durable::live::{Follow, Followers, Step};
use crate::http::durable::query::Query;
use crate::http::durable::wire::{SSE_DATA_ENCODING, error};
use crate::http::future::ResponseFuture;
use crate::http::responses::Attempt;
use crate::http::service::SseService;
use crate::hub::Hub;
use crate::hub::durable::{Catchup, Chunk, Waited};

pub(super) fn open(service: &SseService, topic: TopicName, q: Query) -> ResponseFuture {
    let hub = service.hub.clone();
    let followers = service.shared.durable_followers.clone();
    let idle = service.config.long_poll_timeout;
    match hub.try_read_stream(&topic, q.start, MAX_READ_BYTES) {
        Ok(Catchup::Ready(chunk)) => {
            ResponseFuture::ready(start(hub, topic, q, chunk, idle, followers))
        }
        Ok(Catchup::Stored(read)) => ResponseFuture::boxed(async move {
            match read.finish().await {
                Ok(chunk) => start(hub, topic, q, chunk, idle, followers),
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
    followers: Followers,
) -> Response<ResponseBody> {
    let format = Format::of(&chunk.content_type);
    let reader = Reader {
        hub,
        topic,
        cursor: q.cursor,
        format,
        idle,
        followers,
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
    res
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
                // Boxed: the rare path keeps its large future off the
                // resident one.
                if wait && !Box::pin(self.wait(at, &out)).await {
                    return;
                }
            }
            // Deleted, or gone with its history: the response ends. A read
            // from disk is boxed, off the resident future.
            chunk = match self
                .hub
                .try_read_stream(&self.topic, Start::At(at), MAX_READ_BYTES)
            {
                Ok(Catchup::Ready(chunk)) => chunk,
                Ok(Catchup::Stored(read)) => match Box::pin(read.finish()).await {
                    Ok(chunk) => chunk,
                    Err(_) => return,
                },
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use http::Request;
    use http_body_util::{BodyExt, Full};
    use hyper::service::Service;

    use crate::http::body::ResponseBody;
    use crate::{Hub, SseService};

    async fn call(
        service: &SseService,
        method: &str,
        uri: &str,
        body: &str,
    ) -> (u16, ResponseBody) {
        let mut req = Request::builder().method(method).uri(uri);
        if method != "GET" {
            req = req.header("content-type", "text/plain");
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .unwrap();
        let res = service.call(local(req)).await.unwrap();
        (res.status().as_u16(), res.into_body())
    }

    /// From the loopback address, where writes need no token.
    fn local<B>(mut req: Request<B>) -> Request<B> {
        let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
        req.extensions_mut().insert(crate::http::PeerAddr(peer));
        req.headers_mut()
            .insert("host", http::HeaderValue::from_static("127.0.0.1"));
        req
    }

    /// The next chunk of a live body, `None` at its end.
    async fn next(body: &mut ResponseBody) -> Option<String> {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a chunk within 5 s")?;
        let data = frame.unwrap().into_data().unwrap();
        Some(String::from_utf8(data.to_vec()).unwrap())
    }

    /// Chunks until one carries `until` (a next offset).
    async fn read_until(body: &mut ResponseBody, until: &str) -> String {
        let mut all = String::new();
        while !all.contains(until) {
            all.push_str(&next(body).await.expect("the body goes on"));
        }
        all
    }

    fn data_of(events: &str) -> String {
        events
            .split("\n\n")
            .filter(|e| e.starts_with("event: data\n"))
            .flat_map(|e| e.lines().skip(1))
            .map(|l| l.strip_prefix("data:").unwrap())
            .collect()
    }

    /// Readers at the tail follow the stream's pump: each gets every
    /// message once and in order, whatever the batches; one that echoed a
    /// cursor gets a later one in every control event; a close ends all.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_at_the_tail_share_batches_and_keep_their_cursors() {
        let hub = Hub::new();
        let service = SseService::builder(hub.clone()).build();
        let uri = "/v1/stream/pumped";
        assert_eq!(call(&service, "PUT", uri, "a").await.0, 201);
        let mut readers = Vec::new();
        for q in ["", "", "", "&cursor=999999999"] {
            let (status, mut body) =
                call(&service, "GET", &format!("{uri}?offset=-1&live=sse{q}"), "").await;
            assert_eq!(status, 200);
            let first = next(&mut body).await.unwrap();
            assert_eq!(data_of(&first), "a");
            assert!(first.contains("\"upToDate\":true"), "{first}");
            readers.push(body);
        }
        let mut want = String::from("a");
        let mut received = vec![want.clone(); readers.len()];
        for round in 0..20 {
            // Some rounds append twice before anyone reads.
            for i in 0..=(round % 2) {
                let m = format!("<{round}.{i}>");
                assert_eq!(call(&service, "POST", uri, &m).await.0, 204);
                want.push_str(&m);
            }
            let mut seen = Vec::new();
            for (body, got) in readers.iter_mut().zip(&mut received) {
                let mut events = String::new();
                while got.len() < want.len() {
                    let chunk = next(body).await.expect("the body goes on");
                    got.push_str(&data_of(&chunk));
                    events.push_str(&chunk);
                }
                assert_eq!(*got, want, "{events}");
                seen.push(events);
            }
            let cursors: Vec<u64> = seen
                .iter()
                .map(|e| {
                    let at = e.rfind("\"streamCursor\":\"").unwrap() + 16;
                    e[at..].split('"').next().unwrap().parse().unwrap()
                })
                .collect();
            assert!(cursors[3] > 999_999_999, "{cursors:?}");
            assert!(cursors[..3].iter().all(|&c| c < 999_999_999), "{cursors:?}");
        }
        // One more message: the readers without a cursor of their own send
        // the very same bytes.
        assert_eq!(call(&service, "POST", uri, "z").await.0, 204);
        let mut shared = Vec::new();
        for body in &mut readers {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            shared.push(frame.into_data().unwrap());
        }
        assert!(shared[..3].iter().all(|b| b.as_ptr() == shared[0].as_ptr()));
        assert_ne!(shared[3], shared[0], "its own cursor");
        want.push('z');
        let last = {
            let (_, mut body) = call(&service, "GET", &format!("{uri}?offset=-1"), "").await;
            let all = next(&mut body).await.unwrap();
            assert_eq!(all, want);
            all
        };
        drop(last);
        let mut req = Request::builder()
            .method("POST")
            .uri(uri)
            .header("stream-closed", "true");
        req = req.header("content-type", "text/plain");
        let res = service
            .call(local(req.body(Full::new(Bytes::new())).unwrap()))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 204);
        for body in &mut readers {
            let end = read_until(body, "\"streamClosed\":true").await;
            assert!(!end.contains("streamCursor\":\"x"), "{end}");
            assert_eq!(next(body).await, None, "the response ends after the close");
        }
        assert_eq!(hub.stats().durable_live_reads, 0);
    }

    /// A reader left behind by more batches than the pump keeps reads
    /// the rest on its own, then follows again: every message once, in
    /// order, JSON as arrays.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_left_behind_catches_up_on_its_own() {
        let hub = Hub::new();
        let service = SseService::builder(hub.clone()).build();
        let uri = "/v1/stream/behind";
        let put = Request::builder()
            .method("PUT")
            .uri(uri)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::new()))
            .unwrap();
        assert_eq!(service.call(local(put)).await.unwrap().status(), 201);
        let live = format!("{uri}?offset=-1&live=sse");
        let (_, mut quick) = call(&service, "GET", &live, "").await;
        let (_, mut slow) = call(&service, "GET", &live, "").await;
        next(&mut quick).await.unwrap();
        next(&mut slow).await.unwrap();
        let mut values = Vec::new();
        for i in 0..(3 * super::super::live::RECENT) {
            let post = Request::builder()
                .method("POST")
                .uri(uri)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!("{i}"))))
                .unwrap();
            assert_eq!(service.call(local(post)).await.unwrap().status(), 204);
            values.push(i);
            // Only one reader keeps up.
            let mut got = Vec::new();
            while got.is_empty() {
                got = arrays(&next(&mut quick).await.unwrap());
            }
            assert_eq!(got, [i]);
        }
        let mut got = Vec::new();
        while got.len() < values.len() {
            got.extend(arrays(&next(&mut slow).await.unwrap()));
        }
        assert_eq!(got, values);
    }

    /// The values of the JSON arrays in `events`' data events.
    fn arrays(events: &str) -> Vec<usize> {
        events
            .split("\n\n")
            .filter(|e| e.starts_with("event: data\n"))
            .flat_map(|e| {
                let json: String = e.lines().skip(1).map(|l| &l[5..]).collect();
                serde_json::from_str::<Vec<usize>>(&json).unwrap()
            })
            .collect()
    }

    /// A stream deleted under its readers ends their responses, and one
    /// created again at the same path gets a pump of its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_stream_ends_its_readers_and_a_new_one_is_followed_afresh() {
        let hub = Hub::new();
        let service = SseService::builder(hub.clone()).build();
        let uri = "/v1/stream/again";
        for round in 0..3 {
            assert_eq!(call(&service, "PUT", uri, "").await.0, 201);
            let mut readers = Vec::new();
            for _ in 0..3 {
                let (status, mut body) =
                    call(&service, "GET", &format!("{uri}?offset=now&live=sse"), "").await;
                assert_eq!(status, 200);
                next(&mut body).await.unwrap();
                readers.push(body);
            }
            let m = format!("m{round}");
            assert_eq!(call(&service, "POST", uri, &m).await.0, 204);
            for body in &mut readers {
                let mut got = String::new();
                while got.is_empty() {
                    got = data_of(&next(body).await.unwrap());
                }
                assert_eq!(got, m);
            }
            assert_eq!(call(&service, "DELETE", uri, "").await.0, 204);
            for body in &mut readers {
                while next(body).await.is_some() {}
            }
        }
        assert_eq!(hub.stats().durable_live_reads, 0);
    }

    /// An idle reader at the tail gets a control event each long-poll
    /// timeout, at its place, then the next message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_reader_gets_a_control_event_each_timeout() {
        let hub = Hub::new();
        let service = SseService::builder(hub.clone())
            .long_poll_timeout(Duration::from_millis(150))
            .build();
        let uri = "/v1/stream/idle";
        assert_eq!(call(&service, "PUT", uri, "x").await.0, 201);
        let (_, mut body) = call(&service, "GET", &format!("{uri}?offset=-1&live=sse"), "").await;
        let first = next(&mut body).await.unwrap();
        let started = std::time::Instant::now();
        for _ in 0..3 {
            let idle = next(&mut body).await.unwrap();
            assert!(idle.starts_with("event: control\n"), "{idle}");
            assert!(idle.contains("\"upToDate\":true"), "{idle}");
            let at = |e: &str| e[e.find("streamNextOffset").unwrap()..][..52].to_owned();
            assert_eq!(at(&idle), at(&first));
        }
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(call(&service, "POST", uri, "y").await.0, 204);
        let mut got = String::new();
        while got.is_empty() {
            got = data_of(&next(&mut body).await.unwrap());
        }
        assert_eq!(got, "y");
    }

    /// Closing the hub (the server shutting down) ends the responses of
    /// readers at the tail.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closing_the_hub_ends_live_readers() {
        let hub = Hub::new();
        let service = SseService::builder(hub.clone()).build();
        let uri = "/v1/stream/shut";
        assert_eq!(call(&service, "PUT", uri, "x").await.0, 201);
        let mut readers = Vec::new();
        for _ in 0..3 {
            let (_, mut body) =
                call(&service, "GET", &format!("{uri}?offset=-1&live=sse"), "").await;
            next(&mut body).await.unwrap();
            readers.push(body);
        }
        // Let them reach their wait.
        let (_, mut probe) = call(&service, "GET", &format!("{uri}?offset=-1&live=sse"), "").await;
        next(&mut probe).await.unwrap();
        readers.push(probe);
        hub.close();
        for body in &mut readers {
            while next(body).await.is_some() {}
        }
    }
}
