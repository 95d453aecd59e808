//! The tail of a stream, read and encoded once for all its `live=sse`
//! readers.
//!
//! While a stream has readers at its tail, one task (its pump) waits for
//! its messages, reads each new batch once and encodes it once, as the
//! `event: data` and `event: control` every reader at the batch's start
//! sends as is; it publishes the last few batches in a `watch` channel.
//! A reader at a batch's start only clones its bytes: it neither reads the
//! stream nor encodes. Anything else (behind the pump, a cursor of its
//! own, another generation, the pump gone) the reader handles itself, as
//! it would without a pump (see `sse.rs`), so the pump only ever saves
//! work and never decides what a reader sees.
//!
//! The pump ends when its last reader goes (its channel then has no
//! receiver), when the stream closes, or when reading it fails (deleted,
//! the hub closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::core::TopicName;
use crate::core::durable::offset::{Offset, Start};
use crate::http::durable::query::{MAX_READ_BYTES, next_cursor};
use crate::http::durable::sse::{Format, closed, control, data};
use crate::hub::Hub;
use crate::hub::durable::{Chunk, Waited};

/// Batches a pump keeps published: a reader that was not polled between
/// two batches still finds the first.
const RECENT: usize = 8;

/// The pumps of the streams that have live readers, by topic.
#[derive(Clone, Default)]
pub(crate) struct Followers(Arc<Mutex<HashMap<TopicName, Weak<Follow>>>>);

/// A stream's pump, as its readers hold it: the pump runs while one does.
pub(crate) struct Follow {
    rx: watch::Receiver<Arc<Tail>>,
}

impl Follow {
    /// A receiver of the pump's tail, for one reader.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Tail>> {
        self.rx.clone()
    }
}

/// What a pump published last.
#[derive(Clone, Default)]
pub(crate) struct Tail {
    /// The last batches read, oldest first, each starting where the one
    /// before ends.
    batches: Vec<Arc<Batch>>,
    /// Where the pump stands (after its last batch); `None` before its
    /// first read.
    at: Option<Offset>,
    /// The stream is closed at `at`.
    closed: bool,
    /// The pump stopped (the stream is gone, or the hub closed): readers
    /// wait and read on their own.
    ended: bool,
}

/// One batch, encoded.
pub(crate) struct Batch {
    /// Where it starts.
    after: Offset,
    /// Where it ends.
    pub(crate) next: Offset,
    /// The stream is closed after it: its control event says so, and is
    /// the last.
    pub(crate) closed: bool,
    /// It ends at the stream's tail (as read).
    up_to_date: bool,
    /// The cursor its control event carries.
    cursor: u64,
    /// The data event and the control event.
    whole: Bytes,
    /// How much of `whole` is the data event.
    data_len: usize,
}

impl Batch {
    fn encode(after: Offset, chunk: &Chunk, format: Format) -> Self {
        let mut buf = BytesMut::new();
        data(&mut buf, &chunk.frames, format);
        let data_len = buf.len();
        let closed_now = chunk.closed && chunk.up_to_date;
        let cursor = next_cursor(None);
        if closed_now {
            closed(&mut buf, chunk.next);
        } else {
            control(&mut buf, chunk.next, cursor, chunk.up_to_date);
        }
        Batch {
            after,
            next: chunk.next,
            closed: closed_now,
            up_to_date: chunk.up_to_date,
            cursor,
            whole: buf.freeze(),
            data_len,
        }
    }

    /// The events to send a reader that echoed the cursor `client`: the
    /// shared ones, unless the reader's cursor must move past the shared
    /// one's (then its own control event).
    pub(crate) fn events(&self, client: Option<&str>) -> Bytes {
        let own = !self.closed
            && client
                .and_then(|c| c.parse::<u64>().ok())
                .is_some_and(|c| c >= self.cursor);
        if !own {
            return self.whole.clone();
        }
        let mut buf = BytesMut::with_capacity(self.whole.len() + 32);
        buf.extend_from_slice(&self.whole[..self.data_len]);
        control(&mut buf, self.next, next_cursor(client), self.up_to_date);
        buf.freeze()
    }
}

/// What a reader at `at` does next, given the pump's tail.
pub(crate) enum Step {
    /// Send this batch, which starts at `at`.
    Send(Arc<Batch>),
    /// The pump is past `at` with no batch starting there: read on its
    /// own from `at`.
    Behind,
    /// The stream is closed at `at`.
    Closed,
    /// Nothing after `at` yet: wait for the tail to change.
    Wait,
    /// The pump cannot help (it ended, or follows another generation of
    /// the stream): wait and read on its own.
    Alone,
}

impl Tail {
    pub(crate) fn step(&self, at: Offset) -> Step {
        if let Some(b) = self.batches.iter().find(|b| b.after == at) {
            return Step::Send(b.clone());
        }
        match self.at {
            Some(p) if p.generation != at.generation => Step::Alone,
            Some(p) if p.seq > at.seq => Step::Behind,
            Some(p) if p.seq == at.seq && self.closed => Step::Closed,
            _ if self.ended => Step::Alone,
            _ => Step::Wait,
        }
    }
}

impl Followers {
    /// The pump of `topic`, started at `at` (a reader's place at the
    /// tail) if it has none.
    pub(crate) fn follow(
        &self,
        hub: &Hub,
        topic: &TopicName,
        at: Offset,
        idle: Duration,
    ) -> Arc<Follow> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = map.get(topic).and_then(Weak::upgrade) {
            return f;
        }
        let tail = Tail {
            at: Some(at),
            ..Tail::default()
        };
        let (tx, rx) = watch::channel(Arc::new(tail.clone()));
        let follow = Arc::new(Follow { rx });
        map.insert(topic.clone(), Arc::downgrade(&follow));
        let pump = Pump {
            hub: hub.clone(),
            topic: topic.clone(),
            tx,
            idle,
            tail,
        };
        let followers = self.clone();
        let me = Arc::downgrade(&follow);
        tokio::spawn(async move {
            let mut pump = pump;
            pump.run(at).await;
            // Out of the map first: a reader that comes now starts a new
            // pump; one that found this one sees it ended.
            followers.forget(&pump.topic, &me);
            pump.tail.ended = true;
            pump.publish();
        });
        follow
    }

    fn forget(&self, topic: &TopicName, me: &Weak<Follow>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(topic).is_some_and(|w| w.ptr_eq(me)) {
            map.remove(topic);
        }
    }
}

struct Pump {
    hub: Hub,
    topic: TopicName,
    tx: watch::Sender<Arc<Tail>>,
    idle: Duration,
    tail: Tail,
}

impl Pump {
    fn publish(&self) {
        self.tx.send_replace(Arc::new(self.tail.clone()));
    }

    async fn run(&mut self, mut at: Offset) {
        loop {
            let deadline = Instant::now() + self.idle;
            let waited = tokio::select! {
                w = self.hub.wait_stream(&self.topic, at, deadline) => w,
                () = self.tx.closed() => return,
            };
            match waited {
                Ok(Waited::Data) => {}
                Ok(Waited::TimedOut) => continue,
                Ok(Waited::Closed) => {
                    self.tail.closed = true;
                    self.publish();
                    return;
                }
                Err(_) => return,
            }
            let Ok(chunk) = self
                .hub
                .read_stream(&self.topic, Start::At(at), MAX_READ_BYTES)
            else {
                return;
            };
            if chunk.frames.is_empty() {
                // Not expected after `Data`; readers manage alone.
                return;
            }
            let batch = Batch::encode(at, &chunk, Format::of(&chunk.content_type));
            at = batch.next;
            let closed = batch.closed;
            if self.tail.batches.len() == RECENT {
                self.tail.batches.remove(0);
            }
            self.tail.batches.push(Arc::new(batch));
            self.tail.at = Some(at);
            self.tail.closed = closed;
            self.publish();
            if closed {
                return;
            }
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
