//! Durable Streams on Redis (`--redis`), over real sockets: two `ssehub`
//! processes on one `redis-server` serve the same streams. A stream created
//! on one node is there on the other, appends on either get consecutive
//! offsets, producers are fenced across nodes, live readers on one node get
//! what the other appends, closes and deletes reach the other node, and a
//! node killed and started again finds everything in Redis.
//!
//! Waits are bounded: [`LIVE`] for a live reader to get a message appended
//! on the other node, [`PROPAGATION`] (polling) for a close or a delete.
//! Needs `redis-server` (`bash .ci/run` installs it). A failed test leaves
//! its nodes' logs in the temporary directory
//! (`ssehub-ds-redis-<node>-<pid>-<n>.log`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::process::Ssehub;
use crate::support::redis::Redis;
use crate::support::{Headers, Item, SseClient, header, request_full};

/// The nodes' `--long-poll-timeout`, in seconds: longer than [`LIVE`] and
/// [`PROPAGATION`], so that a long-poll answered in time was woken, not
/// timed out.
const LONG_POLL_SECS: &str = "8";

/// How soon a message appended on one node must reach a live reader (long-
/// poll or SSE) on the other: "about a second", with room for a busy
/// machine.
const LIVE: Duration = Duration::from_secs(2);

/// How long a close or a delete on one node may take to show on the other
/// (it should take about 2 s at most).
const PROPAGATION: Duration = Duration::from_secs(5);

/// An `ssehub --redis` process, named in failure messages.
struct Node {
    name: &'static str,
    server: Ssehub,
}

impl Node {
    async fn start(redis: &Redis, name: &'static str) -> Node {
        let url = redis.url();
        let args = ["--redis", &url, "--long-poll-timeout", LONG_POLL_SECS];
        let server = Ssehub::start_in_memory(&format!("ds-redis-{name}"), &args).await;
        Node { name, server }
    }

    /// SIGTERM: it must exit cleanly (its log is removed then).
    async fn stop(self) {
        self.server.stop().await;
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// One request: its answer, whatever the status.
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let (status, headers, body) =
            request_full(self.addr(), method, path, headers, body.as_bytes()).await;
        Reply {
            status,
            headers,
            body,
        }
    }

    /// `PUT` a stream of type `ct` with a first `body`; it must be created
    /// (`201`). Every test starts with one: an ssehub that does not keep
    /// streams in Redis fails here.
    async fn create(&self, path: &str, ct: &str, body: &str) -> Reply {
        let reply = self.send("PUT", path, &[("Content-Type", ct)], body).await;
        assert_eq!(
            reply.status, 201,
            "creating {path} on node {} (ssehub --redis) must answer 201: {}",
            self.name, reply
        );
        reply
    }

    /// `POST` one text message without a producer; it must be appended
    /// (`204`). Returns `Stream-Next-Offset`.
    async fn append(&self, path: &str, text: &str) -> String {
        let reply = self
            .send("POST", path, &[("Content-Type", "text/plain")], text)
            .await;
        assert_eq!(
            reply.status, 204,
            "appending {text:?} to {path} on node {}: {reply}",
            self.name
        );
        reply.next_offset()
    }

    /// Reads the whole stream from `offset` with catch-up `GET`s, following
    /// `Stream-Next-Offset` until `Stream-Up-To-Date`.
    async fn read_all(&self, path: &str, offset: &str) -> String {
        let (mut text, mut offset) = (String::new(), offset.to_owned());
        for _ in 0..10_000 {
            let reply = self
                .send("GET", &format!("{path}?offset={offset}"), &[], "")
                .await;
            assert_eq!(
                reply.status, 200,
                "reading {path} from {offset} on node {}: {reply}",
                self.name
            );
            text.push_str(&reply.body);
            offset = reply.next_offset();
            if reply.header("stream-up-to-date") == Some("true") {
                return text;
            }
        }
        panic!("reading {path} on node {} never got to its end", self.name);
    }
}

/// An HTTP answer.
struct Reply {
    status: u16,
    headers: Headers,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn next_offset(&self) -> String {
        self.header("stream-next-offset")
            .unwrap_or_else(|| panic!("no Stream-Next-Offset: {self}"))
            .to_owned()
    }

    fn closed(&self) -> bool {
        self.header("stream-closed") == Some("true")
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.status, self.body)
    }
}

/// An offset's generation and position (`GGGGGGGGGGGGGGGG_SSSSSSSSSSSSSSSS`,
/// the number of messages before it).
fn position(offset: &str) -> (u64, u64) {
    let parse = |s: &str| s.parse().unwrap_or_else(|_| panic!("offset {offset:?}"));
    let (generation, seq) = offset
        .split_once('_')
        .unwrap_or_else(|| panic!("offset {offset:?}"));
    (parse(generation), parse(seq))
}

/// The headers of a text append by producer `id`.
fn producer<'a>(id: &'a str, epoch: &'a str, seq: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("Content-Type", "text/plain"),
        ("Producer-Id", id),
        ("Producer-Epoch", epoch),
        ("Producer-Seq", seq),
    ]
}

/// Polls `node` with catch-up reads of `path` (bounded by [`PROPAGATION`])
/// until `done` holds for the answer; returns that answer and how long it
/// took.
async fn poll_until(
    node: &Node,
    path: &str,
    what: &str,
    done: impl Fn(&Reply) -> bool,
) -> (Reply, Duration) {
    let started = Instant::now();
    loop {
        let reply = node
            .send("GET", &format!("{path}?offset=-1"), &[], "")
            .await;
        if done(&reply) {
            return (reply, started.elapsed());
        }
        assert!(
            started.elapsed() < PROPAGATION,
            "node {} still not {what} {PROPAGATION:?} later: GET {path} answers {reply} \
             (Stream-Closed: {:?})",
            node.name,
            reply.header("stream-closed")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A stream created on A is found on B (loaded from Redis on first use)
/// with its type and tail; appends alternating between the nodes get
/// consecutive offsets of one generation; a catch-up read on one node at an
/// offset the other just answered is never a `400` (the node catches up
/// from Redis first) and then serves the message; both nodes read the same
/// whole stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_created_on_one_node_is_read_and_appended_on_the_other() {
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let (a, b) = (
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    );
    let path = "/v1/stream/shared/log";
    let created = a.create(path, "text/plain", "first\n").await;
    let mut offset = created.next_offset();

    let head = b.send("HEAD", path, &[], "").await;
    assert_eq!(head.status, 200, "HEAD {path} on B after its create on A");
    assert_eq!(head.next_offset(), offset, "B's tail is A's");
    let ct = head.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "B's content type: {ct:?}");

    let mut all = String::from("first\n");
    for i in 0..40 {
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let text = format!("message {i} from {}\n", writer.name);
        let next = writer.append(path, &text).await;
        let (before, after) = (position(&offset), position(&next));
        assert_eq!(
            after,
            (before.0, before.1 + 1),
            "append {i} on {} answered {next} after {offset}: not the next offset",
            writer.name
        );
        // The offset the writer just answered, read at once on the other
        // node: up to date there, never unknown.
        let at_tail = reader
            .send("GET", &format!("{path}?offset={next}"), &[], "")
            .await;
        assert_eq!(
            (at_tail.status, at_tail.body.as_str()),
            (200, ""),
            "GET at {next} (just answered by {}) on {}",
            writer.name,
            reader.name
        );
        assert_eq!(at_tail.next_offset(), next);
        let one = reader
            .send("GET", &format!("{path}?offset={offset}"), &[], "")
            .await;
        assert_eq!(
            (one.status, one.body.as_str()),
            (200, text.as_str()),
            "append {i} on {}, read from {offset} on {}",
            writer.name,
            reader.name
        );
        all.push_str(&text);
        offset = next;
    }
    assert_eq!(a.read_all(path, "-1").await, all, "the whole stream on A");
    assert_eq!(b.read_all(path, "-1").await, all, "the whole stream on B");
    a.stop().await;
    b.stop().await;
}

/// Four idempotent producers send each batch to one node and retry it on
/// the other: the first answer is `200`, the retry a duplicate (`204`), and
/// the stream holds every batch exactly once, in each producer's order, at
/// consecutive offsets, the same on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_retrying_on_the_other_node_append_every_batch_exactly_once() {
    const PRODUCERS: usize = 4;
    const BATCHES: usize = 25;
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let nodes = std::sync::Arc::new([
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    ]);
    let path = "/v1/stream/producers";
    let created = nodes[0].create(path, "text/plain", "").await;
    let (generation, start) = position(&created.next_offset());

    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("producer-{p}");
            let mut offsets = Vec::new();
            for seq in 0..BATCHES {
                let (first, retry) = (&nodes[(p + seq) % 2], &nodes[(p + seq + 1) % 2]);
                let text = format!("{id} batch {seq}\n");
                let seq_text = seq.to_string();
                let headers = producer(&id, "0", &seq_text);
                let fresh = first.send("POST", path, &headers, &text).await;
                assert_eq!(
                    fresh.status, 200,
                    "{id} seq {seq} on {}, first try: {fresh}",
                    first.name
                );
                offsets.push(fresh.next_offset());
                let again = retry.send("POST", path, &headers, &text).await;
                assert_eq!(
                    again.status, 204,
                    "{id} seq {seq} retried on {} after {} took it: a duplicate, got {again}",
                    retry.name, first.name
                );
            }
            offsets
        }));
    }
    let mut positions = Vec::new();
    for task in tasks {
        for offset in task.await.expect("a producer failed") {
            let (g, n) = position(&offset);
            assert_eq!(g, generation, "{offset}: another generation");
            positions.push(n);
        }
    }
    positions.sort_unstable();
    let expected: Vec<u64> = (start + 1..=start + (PRODUCERS * BATCHES) as u64).collect();
    assert_eq!(
        positions, expected,
        "the producers' appends took consecutive offsets, each once"
    );

    for node in nodes.iter() {
        let text = node.read_all(path, "-1").await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            PRODUCERS * BATCHES,
            "lines read on {}:\n{text}",
            node.name
        );
        for p in 0..PRODUCERS {
            let prefix = format!("producer-{p} batch ");
            let mine: Vec<&str> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&prefix))
                .collect();
            let want: Vec<String> = (0..BATCHES).map(|s| s.to_string()).collect();
            assert_eq!(
                mine, want,
                "producer-{p}'s batches read on {}: each once, in order",
                node.name
            );
        }
    }
    let Ok([a, b]) = std::sync::Arc::try_unwrap(nodes) else {
        panic!("the producers are done with the nodes");
    };
    a.stop().await;
    b.stop().await;
}

/// A producer that starts a new epoch on B fences its old epoch on A:
/// A refuses the zombie's next append (`403` with the current epoch), and
/// nothing of it is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_producer_epoch_on_one_node_fences_the_old_one_on_the_other() {
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let (a, b) = (
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    );
    let path = "/v1/stream/fenced";
    a.create(path, "text/plain", "").await;
    let old = a
        .send("POST", path, &producer("writer", "0", "0"), "epoch 0\n")
        .await;
    assert_eq!(old.status, 200, "epoch 0 seq 0 on A: {old}");
    let new = b
        .send("POST", path, &producer("writer", "1", "0"), "epoch 1\n")
        .await;
    assert_eq!(new.status, 200, "epoch 1 seq 0 on B: {new}");
    let zombie = a
        .send("POST", path, &producer("writer", "0", "1"), "zombie\n")
        .await;
    assert_eq!(
        zombie.status, 403,
        "epoch 0 on A after epoch 1 on B is fenced: {zombie}"
    );
    assert_eq!(zombie.header("producer-epoch"), Some("1"));
    for node in [&a, &b] {
        assert_eq!(
            node.read_all(path, "-1").await,
            "epoch 0\nepoch 1\n",
            "read on {}",
            node.name
        );
    }
    a.stop().await;
    b.stop().await;
}

/// A chain of long-polls on B, from the tail, gets every message A appends
/// within [`LIVE`] of A's answer (well before the long-poll's own timeout),
/// each once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_on_one_node_get_what_the_other_appends_at_once() {
    const MESSAGES: usize = 20;
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let (a, b) = (
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    );
    let path = "/v1/stream/long-poll";
    let tail = a.create(path, "text/plain", "").await.next_offset();

    // The reader: long-polls on B one after the other, each body sent on.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = b.addr();
    let reader = tokio::spawn(async move {
        let mut offset = tail;
        loop {
            let url = format!("{path}?offset={offset}&live=long-poll");
            let (status, headers, body) = request_full(addr, "GET", &url, &[], b"").await;
            match status {
                200 => {
                    offset = header(&headers, "stream-next-offset")
                        .expect("Stream-Next-Offset")
                        .to_owned();
                    if tx.send(body).is_err() {
                        return;
                    }
                }
                // Timed out with nothing new (the test fails on its own
                // bound first).
                204 => {}
                _ => panic!("long-poll on B at {offset}: {status} {body:?}"),
            }
        }
    });

    let mut slowest = Duration::ZERO;
    for i in 0..MESSAGES {
        let text = format!("live {i}\n");
        a.append(path, &text).await;
        let appended = Instant::now();
        let got = match tokio::time::timeout(LIVE, rx.recv()).await {
            Ok(Some(body)) => body,
            Ok(None) => panic!("the long-poll reader on B stopped: {:?}", reader.await),
            Err(_) => panic!("{text:?}, appended on A, did not reach a long-poll on B in {LIVE:?}"),
        };
        slowest = slowest.max(appended.elapsed());
        assert_eq!(got, text, "long-poll {i} on B");
    }
    reader.abort();
    let _ = reader.await;
    println!("{MESSAGES} messages from A to long-polls on B, the slowest in {slowest:?}");
    a.stop().await;
    b.stop().await;
}

/// An SSE reader on B, from the tail, gets every message A appends within
/// [`LIVE`] of A's answer, each once and in order, each `data` event
/// followed by a `control` event at the offset A answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_on_one_node_gets_what_the_other_appends_at_once() {
    const MESSAGES: usize = 20;
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let (a, b) = (
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    );
    let path = "/v1/stream/sse";
    let tail = a.create(path, "text/plain", "").await.next_offset();
    let url = format!("{path}?offset={tail}&live=sse");
    let mut sse = SseClient::get(b.addr(), &url, &[]).await;
    assert_eq!(sse.status, 200, "SSE on B: {:?}", sse.headers);

    let mut slowest = Duration::ZERO;
    for i in 0..MESSAGES {
        let text = format!("live {i}\n");
        let next = a.append(path, &text).await;
        let appended = Instant::now();
        let data = next_of_type(&mut sse, "data", &text).await;
        slowest = slowest.max(appended.elapsed());
        assert_eq!(data, text, "SSE data event {i} on B");
        let control = next_of_type(&mut sse, "control", &text).await;
        let control: Value = serde_json::from_str(&control).expect("control JSON");
        assert_eq!(
            control["streamNextOffset"],
            json!(next),
            "the control event after {text:?}"
        );
    }
    println!("{MESSAGES} messages from A to SSE on B, the slowest in {slowest:?}");
    drop(sse);
    a.stop().await;
    b.stop().await;
}

/// The data of the next SSE event of type `kind` (skipping others: idle
/// `control` events), within [`LIVE`]; `text` names what is awaited.
async fn next_of_type(sse: &mut SseClient, kind: &str, text: &str) -> String {
    let wait = async {
        loop {
            match sse.next_item_within(crate::support::WAIT).await {
                Some(Item::Event(e)) if e.event_type == kind => return e.data,
                Some(Item::Event(e)) if e.event_type == "data" => {
                    panic!("SSE on B: data {:?} while waiting for {text:?}", e.data)
                }
                Some(_) => {}
                None => panic!("SSE on B ended while waiting for {text:?}"),
            }
        }
    };
    match tokio::time::timeout(LIVE, wait).await {
        Ok(data) => data,
        Err(_) => panic!("{text:?}, appended on A: no `{kind}` event on B's SSE in {LIVE:?}"),
    }
}

/// A close on A reaches B: a long-poll waiting on B ends with
/// `Stream-Closed: true`, B's catch-up reads report it (within
/// [`PROPAGATION`]), and B refuses appends (`409`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_on_one_node_reaches_the_other() {
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let (a, b) = (
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    );
    let path = "/v1/stream/closing";
    let tail = a.create(path, "text/plain", "kept").await.next_offset();
    let open = b.send("GET", &format!("{path}?offset=-1"), &[], "").await;
    assert_eq!((open.status, open.body.as_str()), (200, "kept"), "on B");
    assert!(!open.closed(), "open on B before the close");

    // A long-poll at the tail on B: whether it is waiting when A closes or
    // comes after, it must answer closed, not time out.
    let addr = b.addr();
    let waiting = tokio::spawn(async move {
        let url = format!("{path}?offset={tail}&live=long-poll");
        request_full(addr, "GET", &url, &[], b"").await
    });
    let close = a.send("POST", path, &[("Stream-Closed", "true")], "").await;
    assert_eq!(close.status, 204, "the close on A: {close}");
    let closed_at = Instant::now();

    let (status, headers, body) = tokio::time::timeout(PROPAGATION, waiting)
        .await
        .unwrap_or_else(|_| panic!("B's long-poll still waiting {PROPAGATION:?} after A closed"))
        .expect("the long-poll");
    assert_eq!(
        (status, header(&headers, "stream-closed")),
        (204, Some("true")),
        "B's long-poll after A's close: {body:?}"
    );
    let (read, took) = poll_until(&b, path, "closed", Reply::closed).await;
    assert_eq!((read.status, read.body.as_str()), (200, "kept"));
    println!(
        "the close on A: B's long-poll ended within {:?}, its reads closed after {took:?}",
        closed_at.elapsed()
    );
    let refused = b
        .send("POST", path, &[("Content-Type", "text/plain")], "late")
        .await;
    assert_eq!(refused.status, 409, "an append on B after A's close");
    assert_eq!(a.read_all(path, "-1").await, "kept");
    a.stop().await;
    b.stop().await;
}

/// A delete on A reaches B: B, which had read the stream, answers `404`
/// within [`PROPAGATION`], to reads and appends alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_on_one_node_is_a_404_on_the_other() {
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let (a, b) = (
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    );
    let path = "/v1/stream/deleted";
    a.create(path, "text/plain", "doomed").await;
    assert_eq!(b.read_all(path, "-1").await, "doomed", "on B before");
    let delete = a.send("DELETE", path, &[], "").await;
    assert_eq!(delete.status, 204, "the delete on A: {delete}");
    let (_, took) = poll_until(&b, path, "gone", |r| r.status == 404).await;
    println!("the delete on A: a 404 on B after {took:?}");
    let head = b.send("HEAD", path, &[], "").await;
    assert_eq!(head.status, 404, "HEAD on B after A's delete");
    let append = b
        .send("POST", path, &[("Content-Type", "text/plain")], "x")
        .await;
    assert_eq!(
        append.status, 404,
        "an append on B after A's delete: {append}"
    );
    a.stop().await;
    b.stop().await;
}

/// A path deleted on A and created again on B is a new stream on both
/// nodes: its offsets sort after the old ones (a new generation), A reads
/// the new content, and an old offset is `410` there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_created_again_on_the_other_node_never_repeats_an_offset() {
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let (a, b) = (
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    );
    let path = "/v1/stream/again";
    a.create(path, "text/plain", "").await;
    let old = a.append(path, "old").await;
    let delete = a.send("DELETE", path, &[], "").await;
    assert_eq!(delete.status, 204, "the delete on A: {delete}");
    poll_until(&b, path, "gone", |r| r.status == 404).await;
    b.create(path, "text/plain", "").await;
    let new = b.append(path, "new").await;
    assert!(
        new > old,
        "the new stream's offset {new} sorts after the old {old}"
    );
    assert_ne!(position(&new).0, position(&old).0, "a new generation");
    assert_eq!(a.read_all(path, "-1").await, "new", "on A");
    let stale = a
        .send("GET", &format!("{path}?offset={old}"), &[], "")
        .await;
    assert_eq!(stale.status, 410, "the old offset on A: {stale}");
    a.stop().await;
    b.stop().await;
}

/// A node killed with SIGKILL and started again on the same Redis finds
/// the stream whole: its content type, its tail and content, and its
/// producer's state (the retry of the last append is a duplicate, a gap is
/// refused, the next append takes the next offset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_started_again_finds_its_streams_in_redis() {
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let a = Node::start(&redis, "A").await;
    let path = "/v1/stream/restart";
    let json_producer = |seq: &'static str| {
        [
            ("Content-Type", "application/json"),
            ("Producer-Id", "p"),
            ("Producer-Epoch", "0"),
            ("Producer-Seq", seq),
        ]
    };
    a.create(path, "application/json", r#"{"n":"created"}"#)
        .await;
    for (seq, body) in [
        ("0", r#"{"n":0}"#),
        ("1", r#"{"n":1}"#),
        ("2", r#"{"n":2}"#),
    ] {
        let reply = a.send("POST", path, &json_producer(seq), body).await;
        assert_eq!(reply.status, 200, "producer seq {seq}: {reply}");
    }
    let before = a.send("HEAD", path, &[], "").await;
    assert_eq!(before.status, 200);
    let tail = before.next_offset();
    a.server.kill().await;

    let a = Node::start(&redis, "A-again").await;
    let after = a.send("HEAD", path, &[], "").await;
    assert_eq!(after.status, 200, "HEAD {path} after the restart");
    assert_eq!(after.next_offset(), tail, "the tail after the restart");
    let ct = after.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content type: {ct:?}");
    let read: Value = serde_json::from_str(&a.read_all(path, "-1").await).expect("a JSON array");
    assert_eq!(
        read,
        json!([{"n": "created"}, {"n": 0}, {"n": 1}, {"n": 2}])
    );

    let retry = a
        .send("POST", path, &json_producer("2"), r#"{"n":2}"#)
        .await;
    assert_eq!(
        retry.status, 204,
        "the producer's retry after the restart is a duplicate: {retry}"
    );
    let gap = a
        .send("POST", path, &json_producer("4"), r#"{"n":4}"#)
        .await;
    assert_eq!(gap.status, 409, "a gap after the restart: {gap}");
    let next = a
        .send("POST", path, &json_producer("3"), r#"{"n":3}"#)
        .await;
    assert_eq!(next.status, 200, "the producer's next append: {next}");
    let (g, n) = position(&tail);
    assert_eq!(position(&next.next_offset()), (g, n + 1), "the next offset");
    a.stop().await;
}

/// Kills every connection of `redis` that is blocked in `XREAD` or
/// `BLPOP`: the nodes' readers, which then wait (at least 100 ms) before
/// they connect again. Returns how many it killed.
async fn kill_readers(redis: &Redis) -> usize {
    let mut conn = ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let list: String = ::redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .expect("CLIENT LIST");
    let mut killed = 0;
    for line in list.lines() {
        let field = |name: &str| {
            line.split(' ')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        if matches!(field("cmd"), Some("xread" | "blpop"))
            && let Some(id) = field("id")
        {
            let n: i64 = ::redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut conn)
                .await
                .expect("CLIENT KILL");
            killed += usize::try_from(n).unwrap_or(0);
        }
    }
    killed
}

/// A node whose reader has not yet read another node's append (its
/// connection to Redis was just cut) still answers a read at the offset
/// that append returned: it catches up from Redis first, so the read is
/// `200` at the tail, and the message is there, never a `400` for an
/// offset "from the future".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_reader_lags_catches_up_before_answering() {
    let _shared = crate::HEAVY.read().await;
    let redis = Redis::start(false);
    let (a, b) = (
        Node::start(&redis, "A").await,
        Node::start(&redis, "B").await,
    );
    let path = "/v1/stream/lagging";
    let mut offset = a.create(path, "text/plain", "").await.next_offset();
    assert_eq!(b.read_all(path, "-1").await, "", "B loads the stream");
    for i in 0..5 {
        // The readers of the round before come back after their backoff.
        let cut = Instant::now();
        while kill_readers(&redis).await == 0 {
            assert!(
                cut.elapsed() < PROPAGATION,
                "round {i}: no reader blocked in XREAD to cut"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = format!("m{i}\n");
        let next = a.append(path, &text).await;
        let at_tail = b
            .send("GET", &format!("{path}?offset={next}"), &[], "")
            .await;
        assert_eq!(
            (at_tail.status, at_tail.body.as_str()),
            (200, ""),
            "round {i}: B read at {next}, which A just answered, while B's reader was cut"
        );
        let one = b
            .send("GET", &format!("{path}?offset={offset}"), &[], "")
            .await;
        assert_eq!(one.body, text, "round {i}: B serves A's message");
        offset = next;
    }
    a.stop().await;
    b.stop().await;
}
