//! Idempotent publishing: `POST /events/{topic}` with `Idempotency-Key`.
//!
//! A retry answers what the first attempt answered and publishes nothing
//! (subscribers see each event once); a different request under the same
//! key is `409`; bad keys are `400`; concurrent duplicates publish once;
//! keys live as long as the events they published, in memory, on disk and
//! in Redis; they survive restarts of the binary (SIGTERM and SIGKILL) and
//! are shared by nodes on one Redis; and a publisher that retries every
//! POST through a proxy that cuts connections (often after the request
//! reached the server and before the answer reached the client) gets every
//! logical publish into the stream exactly once.

use crate::support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ssehub::core::{IDEMPOTENCY_KEY_OVERHEAD, IdempotencyKey};
use ssehub::store::{DiskStore, Retention};
use ssehub::{Event, Hub, HubError, SseService};
use support::chaos::{Chaos, ChaosProxy};
use support::process::{Ssehub, read_history};
use support::{Headers, Item, TestServer, header, request_full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `POST path` with an optional `Idempotency-Key` and `Content-Type`.
async fn post(
    addr: SocketAddr,
    path: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Headers, String) {
    let mut headers = Vec::new();
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    request_full(addr, "POST", path, &headers, body.as_bytes()).await
}

fn replayed(headers: &Headers) -> bool {
    match header(headers, "idempotent-replayed") {
        Some("true") => true,
        None => false,
        Some(other) => panic!("Idempotent-Replayed: {other}"),
    }
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// The ids of a `201` body, `{"id":...}` or `{"ids":[...]}`.
fn ids_of(body: &str) -> Vec<String> {
    let v = json(body);
    match (&v["id"], &v["ids"]) {
        (serde_json::Value::String(id), _) => vec![id.clone()],
        (_, serde_json::Value::Array(ids)) => {
            ids.iter().map(|i| i.as_str().unwrap().to_owned()).collect()
        }
        _ => panic!("no ids in {body}"),
    }
}

/// A counter's value in `/metrics`.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (status, _, text) = request_full(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// The events of a stream until the one whose data is `last`, as
/// `(id, data)`; panics on a `resync`.
async fn events_until(sub: &mut support::SseClient, last: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    loop {
        let e = sub.next_event().await;
        assert_ne!(e.event_type, "resync", "{}", e.data);
        let done = e.data == last;
        seen.push((e.last_event_id, e.data));
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_retry_answers_the_same_and_publishes_nothing() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    let mut sub = server.subscribe("/events/orders").await;

    // The draft's quoted form, then a bare retry: one key.
    let (status, h1, one) =
        post(addr, "/events/orders", Some("\"order-1\""), None, "shipped").await;
    assert_eq!(status, 201, "{one}");
    assert!(!replayed(&h1), "a first publish is not a replay");
    let (status, h2, again) = post(addr, "/events/orders", Some("order-1"), None, "shipped").await;
    assert_eq!((status, &again), (201, &one));
    assert!(replayed(&h2));
    assert_eq!(header(&h2, "content-type"), Some("application/json"));
    // The same event as a JSON object is the same request.
    let (status, h3, as_json) = post(
        addr,
        "/events/orders",
        Some("order-1"),
        Some("application/json"),
        r#"{"data": "shipped"}"#,
    )
    .await;
    assert_eq!((status, &as_json), (201, &one));
    assert!(replayed(&h3));

    // A batch, and its retry.
    let batch = r#"[{"data":"a"},{"data":"b","event":"t"}]"#;
    let (status, h4, ids) = post(
        addr,
        "/events/orders",
        Some("batch-1"),
        Some("application/json"),
        batch,
    )
    .await;
    assert_eq!(status, 201, "{ids}");
    assert!(!replayed(&h4));
    assert_eq!(ids_of(&ids).len(), 2);
    let (status, h5, ids_again) = post(
        addr,
        "/events/orders",
        Some("batch-1"),
        Some("application/json"),
        batch,
    )
    .await;
    assert_eq!((status, &ids_again), (201, &ids));
    assert!(replayed(&h5));

    // Keys are per topic: the same key elsewhere is another key.
    let (status, h6, other) = post(addr, "/events/other", Some("order-1"), None, "shipped").await;
    assert_eq!(status, 201);
    assert!(!replayed(&h6));
    assert_eq!(support::seq(&ids_of(&other)[0]), 1);
    assert_eq!(server.hub.topic_info("other").unwrap().retained_events, 1);

    let (status, _, end) = post(addr, "/events/orders", None, None, "end").await;
    assert_eq!(status, 201);
    let seen = events_until(&mut sub, "end").await;
    let mut want: Vec<(String, String)> = Vec::new();
    want.push((ids_of(&one)[0].clone(), "shipped".into()));
    let batch_ids = ids_of(&ids);
    want.push((batch_ids[0].clone(), "a".into()));
    want.push((batch_ids[1].clone(), "b".into()));
    want.push((ids_of(&end)[0].clone(), "end".into()));
    assert_eq!(seen, want, "each event once");

    let stats = server.hub.stats();
    assert_eq!((stats.published, stats.idempotent_replays), (5, 3));
    assert_eq!(metric(addr, "ssehub_idempotent_replays_total").await, 3);
    assert_eq!(metric(addr, "ssehub_idempotent_conflicts_total").await, 0);
}

#[tokio::test]
async fn the_same_key_for_a_different_request_is_409_and_publishes_nothing() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    let (status, _, first) = post(addr, "/events/t", Some("k"), None, "one").await;
    assert_eq!(status, 201);
    // Whatever would publish something else is another request.
    let other_requests: [(&str, Option<&str>, &str); 5] = [
        ("/events/t", None, "two"),
        ("/events/t?event=x", None, "one"),
        // As text, this JSON is the data itself.
        ("/events/t", Some("text/plain"), r#"{"data":"one"}"#),
        // A batch of the same event is answered with `ids`, not `id`.
        ("/events/t", Some("application/json"), r#"[{"data":"one"}]"#),
        (
            "/events/t",
            Some("application/json"),
            r#"{"data":"one","event":"x"}"#,
        ),
    ];
    for (path, ct, body) in other_requests {
        let (status, headers, text) = post(addr, path, Some("k"), ct, body).await;
        assert_eq!(status, 409, "{path} {ct:?} {body}: {text}");
        assert_eq!(
            text,
            "Idempotency-Key already used for a different request on this topic\n"
        );
        assert!(!replayed(&headers));
    }
    // The first request itself still replays.
    let (status, headers, again) = post(addr, "/events/t", Some("k"), None, "one").await;
    assert_eq!((status, &again), (201, &first));
    assert!(replayed(&headers));
    let info = server.hub.topic_info("t").unwrap();
    assert_eq!((info.latest.seq(), info.retained_events), (1, 1));
    assert_eq!(server.hub.stats().idempotent_conflicts, 5);
    assert_eq!(metric(addr, "ssehub_idempotent_conflicts_total").await, 5);
    assert_eq!(metric(addr, "ssehub_idempotent_replays_total").await, 1);
}

#[tokio::test]
async fn bad_keys_are_400_and_publish_nothing() {
    let server = TestServer::start(Hub::new()).await;
    let long = "k".repeat(256);
    let long_quoted = format!("\"{long}\"");
    let cases: [(&str, &str); 9] = [
        ("", "empty"),
        ("\"\"", "empty"),
        ("a b", "only visible ASCII characters are allowed"),
        ("\"a b\"", "only visible ASCII characters are allowed"),
        ("clé", "only visible ASCII characters are allowed"),
        (&long, "longer than 255 characters"),
        (&long_quoted, "longer than 255 characters"),
        ("\"unterminated", "malformed quoted string"),
        ("\"a\\nb\"", "malformed quoted string"),
    ];
    for (key, why) in cases {
        let (status, _, text) = post(server.addr, "/events/bad", Some(key), None, "x").await;
        assert_eq!(status, 400, "{key:?}");
        assert_eq!(text, format!("invalid Idempotency-Key: {why}\n"), "{key:?}");
    }
    let (status, _, text) = request_full(
        server.addr,
        "POST",
        "/events/bad",
        &[("Idempotency-Key", "a"), ("Idempotency-Key", "a")],
        b"x",
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (400, "invalid Idempotency-Key: more than one\n")
    );
    assert!(
        server
            .hub
            .topic_info("bad")
            .is_none_or(|i| i.latest.seq() == 0),
        "nothing was published"
    );
    // The longest key, with every kind of visible character.
    let longest = format!("!~\"\\{}", "k".repeat(251));
    let (status, _, _) = post(server.addr, "/events/bad", Some(&longest), None, "x").await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn only_a_successful_publish_takes_the_key() {
    let hub = Hub::builder().max_total_bytes(1024).build();
    let server =
        TestServer::start_service(SseService::builder(hub).max_body_bytes(2048).build()).await;
    let addr = server.addr;
    let json = Some("application/json");
    // Refused before anything is published: the key stays free.
    let (status, _, _) = post(addr, "/events/t", Some("k1"), json, "{").await;
    assert_eq!(status, 400);
    let (status, _, _) = post(addr, "/events/t", Some("k1"), None, &"x".repeat(1500)).await;
    assert_eq!(status, 413, "larger than the hub retains");
    let (status, _, _) = post(addr, "/events/t", Some("k1"), None, &"x".repeat(3000)).await;
    assert_eq!(status, 413, "larger than a body may be");
    let (status, headers, body) = post(addr, "/events/t", Some("k1"), None, "fits").await;
    assert_eq!(status, 201, "{body}");
    assert!(!replayed(&headers), "the failures did not take the key");
    // Once taken, a failing request with the key changes nothing.
    let (status, _, _) = post(addr, "/events/t", Some("k1"), json, "[]").await;
    assert_eq!(status, 400);
    let (status, headers, again) = post(addr, "/events/t", Some("k1"), None, "fits").await;
    assert_eq!((status, &again), (201, &body));
    assert!(replayed(&headers));
    assert_eq!(server.hub.topic_info("t").unwrap().latest.seq(), 1);
}

/// Sends `n` copies of one keyed request at once: all answer the same ids,
/// exactly one of them publishes. Then `n` different requests under one key
/// at once: exactly one publishes, the others are `409`.
async fn concurrent_duplicates_publish_once(hub: Hub) {
    let server = TestServer::start(hub).await;
    let addr = server.addr;
    let mut sub = server.subscribe("/events/c").await;
    let n = 24;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move { post(addr, "/events/c", Some("dup"), None, "once").await })
        })
        .collect();
    let mut bodies = Vec::new();
    let mut fresh = 0;
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        fresh += usize::from(!replayed(&headers));
        bodies.push(body);
    }
    assert_eq!(fresh, 1, "one publish, the others replays");
    assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");

    let tasks: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(async move {
                post(addr, "/events/c", Some("race"), None, &format!("v{i}")).await
            })
        })
        .collect();
    let mut statuses = HashMap::<u16, usize>::new();
    let mut winner = None;
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        if status == 201 {
            winner = Some(body);
        }
    }
    assert_eq!(statuses, HashMap::from([(201, 1), (409, n - 1)]));
    post(addr, "/events/c", None, None, "end").await;
    let seen = events_until(&mut sub, "end").await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], (ids_of(&bodies[0])[0].clone(), "once".to_owned()));
    assert_eq!(seen[1].0, ids_of(&winner.unwrap())[0]);
    assert_eq!(server.hub.stats().idempotent_replays, n as u64 - 1);
    assert_eq!(server.hub.stats().idempotent_conflicts, n as u64 - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_publish_once_in_memory() {
    concurrent_duplicates_publish_once(Hub::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_publish_once_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), Retention::default()).unwrap();
    concurrent_duplicates_publish_once(Hub::builder().storage(store).build()).await;
}

#[tokio::test]
async fn pages_of_other_origins_may_send_the_key_and_read_the_marker() {
    let hub = Hub::new();
    let service = SseService::builder(hub)
        .cors(ssehub::http::CorsOrigins::from_list(&[
            "https://app.example",
        ]))
        .build();
    let server = TestServer::start_service(service).await;
    let origin = ("Origin", "https://app.example");
    let (status, headers, _) = request_full(
        server.addr,
        "OPTIONS",
        "/events/t",
        &[
            origin,
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "idempotency-key,content-type",
            ),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    let allowed = header(&headers, "access-control-allow-headers").unwrap();
    assert!(allowed.contains("Idempotency-Key"), "{allowed}");
    for expect_replay in [false, true] {
        let (status, headers, _) = request_full(
            server.addr,
            "POST",
            "/events/t",
            &[origin, ("Idempotency-Key", "k")],
            b"x",
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(replayed(&headers), expect_replay);
        let exposed = header(&headers, "access-control-expose-headers");
        assert_eq!(exposed, expect_replay.then_some("Idempotent-Replayed"));
    }
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::new(s).unwrap()
}

#[tokio::test]
async fn in_memory_a_key_lives_as_long_as_its_events() {
    let hub = Hub::builder().buffer(4).build();
    let once = |k: &str, data: &str| {
        let (hub, k, data) = (hub.clone(), key(k), data.to_owned());
        async move {
            hub.publish_idempotent("t", &k, Event::new(data))
                .await
                .unwrap()
        }
    };
    let first = once("k1", "one").await;
    for i in 2..=4 {
        hub.publish("t", Event::new(i.to_string())).await.unwrap();
    }
    let again = once("k1", "one").await;
    assert_eq!((again.ids, again.replayed), (first.ids, true));
    // Event 1 leaves the ring, and its key with it.
    hub.publish("t", Event::new("5")).await.unwrap();
    let after = once("k1", "one").await;
    assert!(!after.replayed);
    assert_eq!(after.ids.seq(), 6);

    // A batch's key stays while any of its events does... (7, 8, 9)
    let batch = || vec![Event::new("a"), Event::new("b"), Event::new("c")];
    let b = hub
        .publish_batch_idempotent("t", &key("kb"), batch())
        .await
        .unwrap();
    assert_eq!(b.ids.iter().map(|i| i.seq()).collect::<Vec<_>>(), [7, 8, 9]);
    for i in 10..=12 {
        hub.publish("t", Event::new(i.to_string())).await.unwrap();
    }
    // ...that is, while its last one does (9 of 9..12).
    let again = hub
        .publish_batch_idempotent("t", &key("kb"), batch())
        .await
        .unwrap();
    assert_eq!((&again.ids, again.replayed), (&b.ids, true));
    hub.publish("t", Event::new("13")).await.unwrap();
    let again = hub
        .publish_batch_idempotent("t", &key("kb"), batch())
        .await
        .unwrap();
    assert!(!again.replayed, "forgotten with event 9");
    let info = hub.topic_info("t").unwrap();
    assert!(info.idempotency_keys <= info.retained_events);
}

/// Frames of one-line events with ids `<epoch>-<seq>` of 1 to 3 digits.
fn frame_len(data: &str, epoch: &str, seq: u64) -> usize {
    format!("data: {data}\nid: {epoch}-{seq}\n\n").len()
}

#[tokio::test]
async fn in_memory_keys_count_against_the_byte_bounds() {
    // 255-byte keys are far larger than these events: the per-topic bound
    // keeps few of them, and the bytes are exactly frames plus keys.
    const MAX: usize = 4096;
    let hub = Hub::builder().max_topic_bytes(MAX).build();
    let epoch = hub.epoch().to_string();
    let long = |i: u64| format!("{i:0>255}");
    for i in 1..=100u64 {
        hub.publish_idempotent("t", &key(&long(i)), Event::new("x"))
            .await
            .unwrap();
        let info = hub.topic_info("t").unwrap();
        let first = info.oldest.unwrap().seq();
        let frames: usize = (first..=i).map(|s| frame_len("x", &epoch, s)).sum();
        let keys = info.idempotency_keys * (255 + IDEMPOTENCY_KEY_OVERHEAD);
        assert_eq!(
            info.idempotency_keys, info.retained_events,
            "one key per event"
        );
        assert_eq!(info.retained_bytes, frames + keys, "after {i}");
        assert!(
            info.retained_bytes <= MAX,
            "after {i}: {}",
            info.retained_bytes
        );
        assert_eq!(hub.stats().retained_bytes, info.retained_bytes);
    }
    let info = hub.topic_info("t").unwrap();
    assert!(info.retained_events < 10, "{}", info.retained_events);
    // The oldest key left with its event; the newest replays.
    let old = hub
        .publish_idempotent("t", &key(&long(1)), Event::new("x"))
        .await
        .unwrap();
    assert!(!old.replayed);
    let new = hub
        .publish_idempotent("t", &key(&long(100)), Event::new("x"))
        .await
        .unwrap();
    assert!(new.replayed);
    assert_eq!(new.ids.seq(), 100);

    // The bound of all topics trims keys with the events.
    let hub = Hub::builder().max_total_bytes(16 << 10).build();
    for i in 0..400u64 {
        hub.publish_idempotent(&format!("t{}", i % 20), &key(&long(i)), Event::new("x"))
            .await
            .unwrap();
        assert!(hub.stats().retained_bytes <= 16 << 10);
    }
    let keys: usize = (0..20)
        .filter_map(|t| hub.topic_info(&format!("t{t}")))
        .map(|i| i.idempotency_keys)
        .sum();
    let events: usize = (0..20)
        .filter_map(|t| hub.topic_info(&format!("t{t}")))
        .map(|i| i.retained_events)
        .sum();
    assert_eq!(keys, events);
    assert!(events < 400 && events > 0, "{events}");
}

fn disk_hub(dir: &std::path::Path, retention: Retention) -> Hub {
    let store = DiskStore::open(dir, retention).expect("open the store");
    // A ring smaller than what the disk keeps: keys live with the disk's
    // history, not the ring's.
    Hub::builder().buffer(2).storage(store).build()
}

/// `(seq, replayed)` of publishing `data` under `k` to topic `t`.
async fn once(hub: &Hub, k: &str, data: &str) -> (u64, bool) {
    let r = hub
        .publish_idempotent("t", &key(k), Event::new(data))
        .await
        .unwrap();
    (r.ids.seq(), r.replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_disk_a_key_lives_as_long_as_its_events_and_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    // The disk keeps 4 events per topic, the ring 2.
    let retention = Retention::default().events(4);
    let batch = || [Event::new("a"), Event::new("b")];
    {
        let hub = disk_hub(dir.path(), retention.clone());
        assert_eq!(once(&hub, "k1", "one").await, (1, false));
        assert_eq!(once(&hub, "k2", "two").await, (2, false));
        for i in 3..=4 {
            hub.publish("t", Event::new(i.to_string())).await.unwrap();
        }
        // Out of the ring, still on disk.
        assert_eq!(once(&hub, "k1", "one").await, (1, true));
        let conflict = hub
            .publish_idempotent("t", &key("k1"), Event::new("1"))
            .await;
        assert!(matches!(conflict, Err(HubError::KeyReused)));
        // Event 5 makes the disk drop event 1, and k1 with it; k2 stays
        // with event 2.
        hub.publish("t", Event::new("5")).await.unwrap();
        assert_eq!(once(&hub, "k2", "two").await, (2, true));
        assert_eq!(once(&hub, "k1", "one").await, (6, false));
        // Event 6 dropped event 2.
        assert_eq!(once(&hub, "k2", "two").await, (7, false));
        let b = hub
            .publish_batch_idempotent("t", &key("kb"), batch())
            .await
            .unwrap();
        assert_eq!(b.ids.iter().map(|i| i.seq()).collect::<Vec<_>>(), [8, 9]);
    }
    // Closed and opened again (the disk has 6..=9): the keys are read
    // from disk.
    let hub = disk_hub(dir.path(), retention);
    assert_eq!(once(&hub, "k1", "one").await, (6, true));
    assert_eq!(once(&hub, "k2", "two").await, (7, true));
    let again = hub
        .publish_batch_idempotent("t", &key("kb"), batch())
        .await
        .unwrap();
    assert_eq!(
        again.ids.iter().map(|i| i.seq()).collect::<Vec<_>>(),
        [8, 9]
    );
    assert!(again.replayed);
    let one = hub
        .publish_idempotent("t", &key("kb"), Event::new("a"))
        .await;
    assert!(
        matches!(one, Err(HubError::KeyReused)),
        "one event is not a batch"
    );
    assert_eq!(hub.topic_info("t").unwrap().latest.seq(), 9);
    assert_eq!(
        hub.stats().published,
        0,
        "nothing published since reopening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_answers_a_retry_after_sigterm_and_sigkill_with_the_original_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = Vec::new();
    for how in ["TERM", "KILL"] {
        let server = Ssehub::start(dir.path(), &[]).await;
        let one_key = format!("{how}-one");
        let batch_key = format!("{how}-batch");
        let batch = r#"[{"data":"b1"},{"data":"b2","event":"t"}]"#;
        let json = Some("application/json");
        let (status, _, one) = post(server.addr, "/events/d", Some(&one_key), None, "one").await;
        assert_eq!(status, 201, "{one}");
        let (status, _, ids) = post(server.addr, "/events/d", Some(&batch_key), json, batch).await;
        assert_eq!(status, 201, "{ids}");
        want.push((ids_of(&one)[0].clone(), "one".to_owned()));
        for (id, data) in ids_of(&ids).into_iter().zip(["b1", "b2"]) {
            want.push((id, data.to_owned()));
        }
        match how {
            "TERM" => server.stop().await,
            _ => server.kill().await,
        }
        let server = Ssehub::start(dir.path(), &[]).await;
        let (status, headers, again) =
            post(server.addr, "/events/d", Some(&one_key), None, "one").await;
        assert_eq!((status, &again), (201, &one), "after SIG{how}");
        assert!(replayed(&headers));
        let (status, headers, again) =
            post(server.addr, "/events/d", Some(&batch_key), json, batch).await;
        assert_eq!((status, &again), (201, &ids), "after SIG{how}");
        assert!(replayed(&headers));
        let (status, _, _) = post(server.addr, "/events/d", Some(&one_key), None, "other").await;
        assert_eq!(status, 409, "after SIG{how}");
        let epoch = want[0].0.rsplit_once('-').unwrap().0.to_owned();
        let history = read_history(server.addr, "d", &epoch, want.len() as u64).await;
        assert_eq!(history, want, "each event once, after SIG{how}");
        server.stop().await;
    }
}

/// A POST that never panics: `None` if the connection failed or the answer
/// did not come whole.
async fn try_post(
    addr: SocketAddr,
    path: &str,
    key: &str,
    body: &str,
) -> Option<(u16, bool, String)> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let answer = support::answers(&raw).into_iter().next()?;
        let len: usize = header(&answer.headers, "content-length")?.parse().ok()?;
        (answer.body.len() == len).then_some(())?;
        let replayed = header(&answer.headers, "idempotent-replayed") == Some("true");
        Some((
            answer.status,
            replayed,
            String::from_utf8(answer.body).ok()?,
        ))
    };
    tokio::time::timeout(support::WAIT, attempt)
        .await
        .ok()
        .flatten()
}

/// Regression guard for the atomicity of a key and its events on disk: a
/// crash between writing the events and writing the key would make the
/// retry publish them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_keyed_publishing_then_retries_leave_each_publish_once() {
    const PUBLISHERS: u64 = 8;
    const EACH: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let server = Ssehub::start(dir.path(), &[]).await;
    let (addr_tx, addr_rx) = tokio::sync::watch::channel(server.addr);
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (mut addr, done) = (addr_rx.clone(), done.clone());
            tokio::spawn(async move {
                for i in 0..EACH {
                    let data = format!("p{p}-{i}");
                    loop {
                        let to = *addr.borrow_and_update();
                        match try_post(to, "/events/crash", &data, &data).await {
                            Some((201, _, _)) => break,
                            // 503 while shutting down, or no answer: again.
                            Some((503, _, _)) | None => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Some((status, _, body)) => panic!("{data}: {status} {body}"),
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    // Kill in the middle of the publishing, start again, let it finish.
    support::process::until("a third of the publishes", support::WAIT * 3, || {
        done.load(Ordering::Relaxed) >= PUBLISHERS * EACH / 3
    })
    .await;
    server.kill().await;
    let server = Ssehub::start(dir.path(), &[]).await;
    addr_tx.send_replace(server.addr);
    for t in tasks {
        tokio::time::timeout(support::WAIT * 6, t)
            .await
            .unwrap()
            .unwrap();
    }
    let (epoch, latest) = support::process::latest(server.addr, "crash").await;
    let history = read_history(server.addr, "crash", &epoch, latest).await;
    let mut count = HashMap::<String, u64>::new();
    for (_, data) in &history {
        *count.entry(data.clone()).or_default() += 1;
    }
    for p in 0..PUBLISHERS {
        for i in 0..EACH {
            let data = format!("p{p}-{i}");
            assert_eq!(count.get(&data), Some(&1), "{data}");
        }
    }
    assert_eq!(history.len() as u64, PUBLISHERS * EACH, "nothing else");
    server.stop().await;
}

mod redis_nodes {
    use super::*;
    use ssehub::store::RedisStore;
    use support::redis::Redis;

    async fn node(redis: &Redis, buffer: usize) -> TestServer {
        let store = RedisStore::connect(&redis.url()).await.expect("redis");
        let hub = Hub::builder()
            .buffer(buffer)
            .retry(Some(Duration::from_millis(100)))
            .storage(store)
            .build();
        TestServer::start(hub).await
    }

    async fn conn(redis: &Redis) -> ::redis::aio::MultiplexedConnection {
        ::redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_answer_a_retry_alike_and_publish_once() {
        let redis = Redis::start(false);
        let a = node(&redis, 1024).await;
        let b = node(&redis, 1024).await;
        let mut sub = b.subscribe("/events/shared").await;
        // Wait for the checkpoint: the stream is live.
        while !matches!(sub.next_item().await, Some(Item::IdOnly(_))) {}

        let (status, headers, first) = post(a.addr, "/events/shared", Some("k"), None, "x").await;
        assert_eq!(status, 201, "{first}");
        assert!(!replayed(&headers));
        let (status, headers, again) = post(b.addr, "/events/shared", Some("k"), None, "x").await;
        assert_eq!(
            (status, &again),
            (201, &first),
            "the other node answers alike"
        );
        assert!(replayed(&headers));
        let (status, _, _) = post(b.addr, "/events/shared", Some("k"), None, "y").await;
        assert_eq!(status, 409);

        // Duplicates on both nodes at once: one publish.
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let to = if i % 2 == 0 { a.addr } else { b.addr };
                tokio::spawn(
                    async move { post(to, "/events/shared", Some("race"), None, "r").await },
                )
            })
            .collect();
        let mut fresh = Vec::new();
        let mut bodies = Vec::new();
        for t in tasks {
            let (status, headers, body) = t.await.unwrap();
            assert_eq!(status, 201, "{body}");
            if !replayed(&headers) {
                fresh.push(body.clone());
            }
            bodies.push(body);
        }
        assert_eq!(fresh.len(), 1, "{bodies:?}");
        assert!(bodies.iter().all(|b| b == &fresh[0]));
        post(a.addr, "/events/shared", None, None, "end").await;
        let seen = events_until(&mut sub, "end").await;
        let data: Vec<_> = seen.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(data, ["x", "r", "end"]);
        assert_eq!(seen[0].0, ids_of(&first)[0]);
        assert_eq!(seen[1].0, ids_of(&fresh[0])[0]);
        let replays = a.hub.stats().idempotent_replays + b.hub.stats().idempotent_replays;
        assert_eq!(replays, 16, "1 + 15");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_are_trimmed_with_the_stream() {
        let redis = Redis::start(false);
        let a = node(&redis, 8).await;
        let b = node(&redis, 8).await;
        let mut ids = Vec::new();
        for i in 0..300 {
            let (status, _, body) = post(
                a.addr,
                "/events/trim",
                Some(&format!("k{i}")),
                None,
                &i.to_string(),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            ids.push(body);
        }
        let mut c = conn(&redis).await;
        let xlen: usize = ::redis::cmd("XLEN")
            .arg("ssehub:{trim}:stream")
            .query_async(&mut c)
            .await
            .unwrap();
        let hlen: usize = ::redis::cmd("HLEN")
            .arg("ssehub:{trim}:keys")
            .query_async(&mut c)
            .await
            .unwrap();
        let llen: usize = ::redis::cmd("LLEN")
            .arg("ssehub:{trim}:key_order")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(xlen < 300, "the stream was trimmed ({xlen})");
        assert!(
            hlen <= xlen && llen == hlen,
            "keys {hlen}, order {llen}, entries {xlen}"
        );
        let k0: bool = ::redis::cmd("HEXISTS")
            .arg("ssehub:{trim}:keys")
            .arg("k0")
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(!k0, "the key of a trimmed event is forgotten");
        let oldest: Vec<(String, HashMap<String, String>)> = ::redis::cmd("XRANGE")
            .arg("ssehub:{trim}:stream")
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut c)
            .await
            .unwrap();
        let oldest: usize = oldest[0].0.trim_start_matches("0-").parse().unwrap();
        // Seq `i + 1` is key `k{i}`: every key of a retained event is
        // there, none of an event trimmed away.
        assert_eq!(hlen, 300 - (oldest - 1), "oldest entry {oldest}");
        // On the other node: the newest replays, the oldest is free again.
        let (status, headers, again) =
            post(b.addr, "/events/trim", Some("k299"), None, "299").await;
        assert_eq!((status, &again), (201, &ids[299]));
        assert!(replayed(&headers));
        let (status, headers, body) = post(b.addr, "/events/trim", Some("k0"), None, "0").await;
        assert_eq!(status, 201);
        assert!(!replayed(&headers));
        assert_eq!(support::seq(&ids_of(&body)[0]), 301);
    }
}

/// Writes one request on a kept-alive connection and reads its answer
/// whole; `None` (and the connection dropped) if anything breaks.
async fn attempt(
    conn: &mut Option<TcpStream>,
    addr: SocketAddr,
    request: &[u8],
) -> Option<(u16, bool, String)> {
    if conn.is_none() {
        *conn = Some(TcpStream::connect(addr).await.ok()?);
    }
    let result = async {
        let stream = conn.as_mut()?;
        stream.write_all(request).await.ok()?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&buf[..n]);
            let Some(answer) = support::answers(&raw).into_iter().next() else {
                continue;
            };
            let len: usize = header(&answer.headers, "content-length")?.parse().ok()?;
            if answer.body.len() < len {
                continue;
            }
            let replayed = header(&answer.headers, "idempotent-replayed") == Some("true");
            return Some((
                answer.status,
                replayed,
                String::from_utf8(answer.body).ok()?,
            ));
        }
    };
    // A stalled connection is reset by the proxy within 1.2 s.
    let out = tokio::time::timeout(Duration::from_secs(5), result)
        .await
        .ok()
        .flatten();
    if out.is_none() {
        *conn = None;
    }
    out
}

/// Publishers of the chaos test.
const PUBLISHERS: usize = 4;

/// The most logical publishes of one publisher (a quarter are batches of
/// three events): what the ring of the in-memory run is sized for.
const CAP: usize = 1500;

/// What a publisher of the chaos test did.
#[derive(Debug, Default)]
struct PublisherLog {
    /// Per logical publish: its events' data and the ids its `201` gave.
    publishes: Vec<(Vec<String>, Vec<String>)>,
    attempts: u64,
    /// Logical publishes whose answer came as a replay after an attempt
    /// that got no answer: the request had reached the server.
    replayed_after_a_cut: u64,
}

/// Publishes through `proxy` until the run has seen enough cuts (or
/// [`CAP`] logical publishes), every fourth a batch of three, retrying
/// every attempt that gets no whole answer with the same key; then
/// publishes `end-<p>`.
async fn chaos_publisher(
    p: usize,
    proxy: SocketAddr,
    stats: &support::chaos::ChaosStats,
    replays: &AtomicU64,
) -> PublisherLog {
    let mut log = PublisherLog::default();
    let mut conn = None;
    let mut i = 0;
    loop {
        // Until the proxy has cut enough, and enough requests were cut
        // after the server handled them.
        let enough = stats.cuts() >= 60 && replays.load(Ordering::Relaxed) >= 8;
        let last = i >= CAP || (i >= 20 && enough);
        let (data, body, content_type): (Vec<String>, String, &str) = if last {
            let d = format!("end-{p}");
            (vec![d.clone()], d, "text/plain")
        } else if i % 4 == 3 {
            let d: Vec<String> = (0..3).map(|j| format!("p{p}-{i}-{j}")).collect();
            let body = serde_json::to_string(
                &d.iter()
                    .map(|x| serde_json::json!({ "data": x }))
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            (d, body, "application/json")
        } else {
            let d = format!("p{p}-{i}");
            (vec![d.clone()], d, "text/plain")
        };
        let request = format!(
            "POST /events/chaos HTTP/1.1\r\nHost: localhost\r\nIdempotency-Key: \"p{p}-{i}\"\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut cut = false;
        let ids = loop {
            log.attempts += 1;
            assert!(log.attempts < 100_000, "publisher {p} is stuck at {i}");
            match attempt(&mut conn, proxy, request.as_bytes()).await {
                Some((201, replayed, body)) => {
                    // A request answered at the first attempt published.
                    assert!(
                        cut || !replayed,
                        "publisher {p}, publish {i}: a replay at once"
                    );
                    if replayed {
                        log.replayed_after_a_cut += 1;
                        replays.fetch_add(1, Ordering::Relaxed);
                    }
                    break ids_of(&body);
                }
                Some((status, _, body)) => panic!("publisher {p}, publish {i}: {status} {body}"),
                None => cut = true,
            }
        };
        assert_eq!(ids.len(), data.len());
        log.publishes.push((data, ids));
        if last {
            return log;
        }
        i += 1;
    }
}

/// The headline: publishers retry every POST through a proxy that cuts
/// connections, often after the server received the request and before the
/// client got the answer; every logical publish reaches a subscriber
/// exactly once, with the ids its publisher was given.
async fn retries_through_a_cutting_proxy_publish_exactly_once(hub: Hub) {
    let server = TestServer::start(hub).await;
    let chaos = Chaos {
        seed: 0x1de3,
        // Answers are about 200 bytes: most cuts land in one, on a
        // kept-alive connection, before or after the request was handled.
        // Every connection is cut: one left alone would carry the rest.
        bytes: (10, 700),
        millis: (5, 300),
        stall_millis: (100, 600),
        p_bytes: 0.55,
        p_time: 0.3,
        p_stall: 0.15,
        p_reset: 0.5,
        hold_while_down: None,
    };
    let proxy = ChaosProxy::start(server.addr, chaos).await;
    let mut sub = server.subscribe("/events/chaos").await;
    let replays = Arc::new(AtomicU64::new(0));
    let stats = proxy.stats.clone();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let (replays, stats, addr) = (replays.clone(), stats.clone(), proxy.addr);
            tokio::spawn(async move { chaos_publisher(p, addr, &stats, &replays).await })
        })
        .collect();
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.unwrap());
    }
    let replayed_after_a_cut: u64 = logs.iter().map(|l| l.replayed_after_a_cut).sum();

    // The stream: every publisher's events in its order, each once, with
    // the ids its `201` said.
    let mut per_publisher: Vec<Vec<(String, String)>> = vec![Vec::new(); PUBLISHERS];
    let mut ends = 0;
    while ends < PUBLISHERS {
        let e = sub.next_event().await;
        assert_ne!(e.event_type, "resync", "{}", e.data);
        let p: usize = e
            .data
            .trim_start_matches("end-")
            .trim_start_matches('p')
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if e.data.starts_with("end-") {
            ends += 1;
        }
        per_publisher[p].push((e.last_event_id, e.data));
    }
    let mut total = 0;
    for (p, log) in logs.iter().enumerate() {
        let want: Vec<(String, String)> = log
            .publishes
            .iter()
            .flat_map(|(data, ids)| ids.iter().cloned().zip(data.iter().cloned()))
            .collect();
        assert_eq!(
            per_publisher[p].len(),
            want.len(),
            "publisher {p}: events seen"
        );
        assert_eq!(per_publisher[p], want, "publisher {p}");
        total += want.len() as u64;
    }
    assert_eq!(
        server.hub.stats().published,
        total,
        "nothing published twice"
    );
    let attempts: u64 = logs.iter().map(|l| l.attempts).sum();
    let publishes: usize = logs.iter().map(|l| l.publishes.len()).sum();
    println!(
        "{publishes} logical publishes ({total} events) in {attempts} attempts; proxy: {} cuts \
         ({} resets, {} closes, {} stalls) over {} connections; {replayed_after_a_cut} answers \
         replayed after a cut; server replays {}",
        stats.cuts(),
        stats.resets.load(Ordering::Relaxed),
        stats.closes.load(Ordering::Relaxed),
        stats.stalls.load(Ordering::Relaxed),
        stats.connections.load(Ordering::Relaxed),
        server.hub.stats().idempotent_replays,
    );
    assert!(stats.cuts() >= 50, "{} cuts", stats.cuts());
    assert!(
        replayed_after_a_cut >= 8,
        "only {replayed_after_a_cut} requests were cut after the server handled them"
    );
    assert!(server.hub.stats().idempotent_replays >= replayed_after_a_cut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_a_cutting_proxy_publish_exactly_once_in_memory() {
    // The ring holds the whole run: only a duplicate or a loss can fail it.
    let hub = Hub::builder()
        .buffer(PUBLISHERS * CAP * 3 + PUBLISHERS)
        .max_topic_bytes(64 << 20)
        .build();
    retries_through_a_cutting_proxy_publish_exactly_once(hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_a_cutting_proxy_publish_exactly_once_on_disk() {
    // Cuts also land while a publish waits for its group commit.
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), Retention::default()).unwrap();
    retries_through_a_cutting_proxy_publish_exactly_once(Hub::builder().storage(store).build())
        .await;
}
