//! A refusal that will pass must keep a browser's `EventSource` retrying:
//! any status but `200` closes it for good. Each transient refusal answers a
//! request that accepts `text/event-stream` with `200`, a reason, a `retry:`
//! hint and the end; other clients keep `503`; permanent refusals stay.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use ssehub::http::CorsOrigins;
use ssehub::server::ServerConfig;
use ssehub::{Event, Hub, SseService};
use support::chaos::{Chaos, ChaosProxy};
use support::node::NodeRun;
use support::process::Ssehub;
use support::{Item, STALL, SseClient, TestServer, WAIT, request_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// What an `EventSource` and what curl get for the same refused request,
/// both from the loopback address `from`.
async fn both_answers(
    addr: SocketAddr,
    from: [u8; 4],
    path: &str,
    reason: &str,
    range: (u64, u64),
) {
    let mut browser = SseClient::get_on(connect_from(from, addr).await, path, &[]).await;
    assert_eq!(browser.status, 200, "{path}");
    assert_eq!(browser.header("content-type"), Some("text/event-stream"));
    let items = browser.until_end().await;
    assert!(browser.ended_cleanly(), "the answer ends: {items:?}");
    let [Item::Comment(why), Item::Retry(ms)] = items.as_slice() else {
        panic!("a reason and a hint, nothing else (no id): {items:?}");
    };
    assert_eq!(why.trim(), reason);
    assert!((range.0..=range.1).contains(ms), "{reason}: retry {ms}");

    let conn = connect_from(from, addr).await;
    let (status, headers, body) = request_on(conn, "GET", path, &[], b"").await;
    assert_eq!(
        (status, body.as_str()),
        (503, format!("{reason}\n").as_str())
    );
    assert_eq!(support::header(&headers, "retry-after"), Some("5"));
}

/// A connection from the loopback address `ip` (the per-IP limit counts
/// each apart).
async fn connect_from(ip: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(ip), 0).into())
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// A refusal counter of `/metrics` text.
fn refusals(metrics: &str, reason: &str, answer: &str) -> u64 {
    let name = format!(r#"ssehub_refusals_total{{reason="{reason}",answer="{answer}"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&name))
        .unwrap_or_else(|| panic!("{name} in\n{metrics}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn every_transient_refusal_keeps_a_browser_and_answers_others_503() {
    let hub = Hub::builder()
        .max_topics(1)
        .retry(Some(Duration::from_millis(600)))
        .build();
    let mut config = ServerConfig::default();
    config.max_connections_per_ip = Some(2);
    let server = TestServer::start_with(SseService::new(hub.clone()), config).await;
    let addr = server.addr;
    // R = 600 ms: topics 5R/3-5R, connections 5R/3-20R/3, closing R/3-4R/3.

    // The only topic slot is held by a topic with a subscriber.
    let mut holder = SseClient::get(addr, "/events/a", &[]).await;
    assert_eq!(holder.status, 200);
    both_answers(
        addr,
        [127, 0, 0, 2],
        "/events/b",
        "too many topics",
        (1_000, 3_000),
    )
    .await;

    // Permanent refusals stay what they are, for a browser too.
    let bad = connect_from([127, 0, 0, 7], addr).await;
    let bad = SseClient::get_on(bad, "/events/no%20spaces", &[]).await;
    assert_eq!(bad.status, 400);
    let missing = connect_from([127, 0, 0, 8], addr).await;
    let missing = SseClient::get_on(missing, "/nowhere", &[]).await;
    assert_eq!(missing.status, 404);

    // Two connections from 127.0.0.3 fill its share; the next one from
    // there is refused, one from 127.0.0.4 is not.
    let _first = connect_from([127, 0, 0, 3], addr).await;
    let _second = connect_from([127, 0, 0, 3], addr).await;
    both_answers(
        addr,
        [127, 0, 0, 3],
        "/events/a",
        "too many connections from this address",
        (1_000, 4_000),
    )
    .await;
    let other = SseClient::get_on(connect_from([127, 0, 0, 4], addr).await, "/events/a", &[]).await;
    assert_eq!(other.status, 200);

    // Shutting down: the hub refuses streams while the server drains.
    hub.publish("a", Event::new("last")).await.unwrap();
    assert_eq!(holder.next_event().await.data, "last");
    hub.close();
    holder.expect_end().await;
    let metrics_conn = connect_from([127, 0, 0, 5], addr).await;
    both_answers(
        addr,
        [127, 0, 0, 6],
        "/events/a",
        "server is shutting down",
        (200, 800),
    )
    .await;

    let (status, _, metrics) = request_on(metrics_conn, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    for (reason, retry, unavailable) in [
        ("topics", 1, 1),
        ("connections_per_ip", 1, 1),
        ("connections", 0, 0),
        ("shutting_down", 1, 1),
        ("storage", 0, 0),
    ] {
        assert_eq!(refusals(&metrics, reason, "retry"), retry, "{reason}");
        assert_eq!(refusals(&metrics, reason, "503"), unavailable, "{reason}");
    }
}

#[tokio::test]
async fn over_the_connection_limit_a_browser_gets_a_hint_and_others_503() {
    let mut config = ServerConfig::default();
    config.max_connections = 1;
    let server = TestServer::start_with(SseService::new(Hub::new()), config).await;
    let _held = SseClient::get(server.addr, "/events/x", &[]).await;
    // R = 3,000 ms (the default): 5-20 s.
    both_answers(
        server.addr,
        [127, 0, 0, 1],
        "/events/x",
        "server is at its connection limit",
        (5_000, 20_000),
    )
    .await;
}

/// Regression (issue 20, finding 5): a transient refusal echoed any
/// `Origin` with `Access-Control-Allow-Credentials: true`, `null` too,
/// although the service listed only `https://app.example` (and the README
/// says unlisted origins get no CORS headers). A refusal follows the same
/// rule as the stream it stands for: the service's refusals (every topic
/// slot taken) and the server's own (over the per-IP connection limit,
/// answered before any service sees the request) alike.
#[tokio::test]
async fn refusals_follow_the_services_cors_policy() {
    let hub = Hub::builder().max_topics(1).build();
    let service = SseService::builder(hub.clone())
        .cors(CorsOrigins::from_list(&["https://app.example"]))
        .build();
    let mut config = ServerConfig::default();
    config.max_connections_per_ip = Some(2);
    let server = TestServer::start_with(service, config).await;
    let addr = server.addr;
    let holder = SseClient::get(addr, "/events/a", &[]).await;
    assert_eq!(holder.status, 200);
    let _first = connect_from([127, 0, 0, 3], addr).await;
    let _second = connect_from([127, 0, 0, 3], addr).await;

    let cases = [
        // (from, path, reason): the service's refusal, then the server's.
        ([127, 0, 0, 2], "/events/b", "too many topics"),
        (
            [127, 0, 0, 3],
            "/events/a",
            "too many connections from this address",
        ),
    ];
    for (from, path, reason) in cases {
        for origin in ["null", "https://evil.example", "https://app.example"] {
            let conn = connect_from(from, addr).await;
            let mut c = SseClient::get_on(conn, path, &[("Origin", origin)]).await;
            assert_eq!(c.status, 200, "{reason} {origin}");
            let items = c.until_end().await;
            assert!(
                matches!(&items[0], Item::Comment(why) if why.trim() == reason),
                "{items:?}"
            );
            let mut cors: Vec<(&str, &str)> = c
                .headers
                .iter()
                .filter(|(k, _)| k.starts_with("access-control-") || k == "vary")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            cors.sort();
            if origin == "https://app.example" {
                assert_eq!(
                    cors,
                    [
                        ("access-control-allow-credentials", "true"),
                        ("access-control-allow-origin", origin),
                        ("vary", "origin"),
                    ],
                    "{reason}"
                );
            } else {
                assert_eq!(cors, [("vary", "origin")], "{reason} {origin}");
            }
        }
    }
    drop(holder);
}

/// A request on a connection kept open: `POST` with a keep-alive answer.
struct KeepAlive(TcpStream);

impl KeepAlive {
    async fn connect(addr: SocketAddr) -> KeepAlive {
        KeepAlive(TcpStream::connect(addr).await.unwrap())
    }

    async fn send(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = tokio::time::timeout(WAIT, self.0.read(&mut buf))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(n > 0, "closed before the answer");
            raw.extend_from_slice(&buf[..n]);
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&raw[..end])
                .unwrap()
                .to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .expect("a length")
                .trim()
                .parse()
                .unwrap();
            if raw.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8(raw[end + 4..end + 4 + len].to_vec()).unwrap();
                return (status, body);
            }
        }
    }

    async fn publish(&mut self, data: &str) -> String {
        let (status, body) = self.send("POST", "/events/t", data).await;
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    async fn refused_browsers(&mut self) -> u64 {
        let (status, text) = self.send("GET", "/metrics", "").await;
        assert_eq!(status, 200);
        refusals(&text, "connections", "retry")
    }
}

/// Fills the server's free connections with open streams of another topic.
async fn hogs(addr: SocketAddr, n: usize) -> Vec<SseClient> {
    let mut out = Vec::new();
    for _ in 0..n {
        let hog = SseClient::get(addr, "/events/hog", &[]).await;
        assert_eq!(hog.status, 200);
        out.push(hog);
    }
    out
}

/// The scenario of issue 10: both slots held, a page opens its
/// `EventSource`. It is refused (a `200` with a hint), keeps retrying, and
/// once a slot frees it gets every event published meanwhile, once. Then
/// the same across a SIGTERM and a restart on the same data directory,
/// turned away again at first by the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_turned_away_comes_back_and_misses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Three connections: the test's publisher and two held streams. R =
    // 300 ms gives refusals hints of 0.5-2 s, and restarts 0.1-0.4 s.
    let args = [
        "--max-connections",
        "3",
        "--retry",
        "300",
        "--retry-jitter",
        "0",
    ];
    let server = Ssehub::start(&dir, &args).await;
    let mut publisher = KeepAlive::connect(server.addr).await;
    let start = publisher.publish("a0").await;
    let mut held = hogs(server.addr, 2).await;
    // The browser reaches the server through a proxy that outlives it.
    let proxy = ChaosProxy::start(server.addr, Chaos::none(7)).await;
    let mut page = NodeRun::start(serde_json::json!({
        "scenario": "refused",
        "streamUrl": format!("http://{}/events/t?lastEventId={start}", proxy.addr),
        "timeoutMs": 90_000,
    }));

    // Turned away at least twice, and still trying.
    let mut refused = 0;
    for i in 1..=3 {
        publisher.publish(&format!("a{i}")).await;
    }
    until_refused(&mut publisher, 2, &mut refused).await;
    page.send(r#"{"cmd":"state"}"#).await;
    let state = page.next(WAIT).await;
    assert_eq!(state["closed"], false, "{state}");
    assert_ne!(state["readyState"], 2, "{state}");
    assert_eq!(state["events"], serde_json::json!([]), "{state}");

    // A slot frees: the page comes back and gets a1..a3 after `a0`.
    held.pop();
    page.send(r#"{"cmd":"until","data":"a3"}"#).await;
    page.next(Duration::from_secs(30)).await;

    // A restart: streams end, the proxy finds nobody for a while, and
    // the new process is full when the page first reaches it.
    server.stop().await;
    drop(held);
    drop(publisher);
    let server = Ssehub::start(&dir, &args).await;
    let mut publisher = KeepAlive::connect(server.addr).await;
    let _held = hogs(server.addr, 2).await;
    proxy.set_upstream(server.addr);
    for i in 1..=3 {
        publisher.publish(&format!("b{i}")).await;
    }
    let mut refused = 0;
    until_refused(&mut publisher, 1, &mut refused).await;
    drop(_held);
    page.send(r#"{"cmd":"until","data":"b3"}"#).await;
    page.next(Duration::from_secs(30)).await;
    page.send(r#"{"cmd":"end"}"#).await;
    let report = page.report(WAIT).await;

    let events: Vec<String> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}={}", e[0].as_str().unwrap(), e[1].as_str().unwrap()))
        .collect();
    let data: Vec<&str> = events
        .iter()
        .map(|e| e.split_once('=').unwrap().1)
        .collect();
    assert_eq!(
        data,
        ["a1", "a2", "a3", "b1", "b2", "b3"],
        "every event once, in order, no resync: {report}"
    );
    assert_eq!(report["closed"], false, "{report}");
    server.stop().await;
}

/// Waits until the server has turned the browser away `n` more times. On
/// progress, not a clock: it fails only when the count stood still for
/// [`STALL`] (a starved machine runs Chromium's retries late; a browser
/// that gave up never retries).
async fn until_refused(publisher: &mut KeepAlive, n: u64, seen: &mut u64) {
    let mut last = (*seen, tokio::time::Instant::now());
    loop {
        let now = publisher.refused_browsers().await;
        if now >= *seen + n {
            *seen = now;
            return;
        }
        if now != last.0 {
            last = (now, tokio::time::Instant::now());
        }
        assert!(
            last.1.elapsed() < STALL,
            "the browser was refused {now} times, waiting for {}, none for {STALL:?}",
            *seen + n
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Regression (issue 20, finding 2): with `--data-dir` and
/// `--max-topics 5`, `GET /events?topic=n1&...&topic=n6` was refused (an
/// `EventSource` got `200` and `retry:`, for a condition that never
/// passes, and came back every 5-15 s to do it again) after retiring the
/// idle topics, and `HEAD /events/h1` ... `h5` retired them too: after a
/// restart, `precious` resumed with `resync`, its durable history gone. A
/// stream wider than the hub is a permanent `400`, and neither it, nor a
/// stream refused for want of room, nor a `HEAD`, creates or retires a
/// topic.
#[tokio::test]
async fn a_refusal_or_a_head_keeps_durable_history_across_a_restart() {
    use support::process::{Answer, publish, read_history};
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--max-topics", "5"];
    let server = Ssehub::start(tmp.path(), &args).await;
    let addr = server.addr;
    let mut epoch = String::new();
    for i in 1..=3 {
        let Answer::Created(id) = publish(addr, "precious", &format!("p{i}")).await else {
            panic!("published");
        };
        epoch = id.rsplit_once('-').unwrap().0.to_owned();
    }
    for t in ["i1", "i2"] {
        assert!(matches!(publish(addr, t, "x").await, Answer::Created(_)));
    }
    let six = "/events?topic=n1&topic=n2&topic=n3&topic=n4&topic=n5&topic=n6";
    let browser = SseClient::get(addr, six, &[]).await;
    assert_eq!(browser.status, 400, "a stream that can never be served");
    let (status, body) = support::request(addr, "GET", six, &[], b"").await;
    assert_eq!(
        (status, body.trim_end()),
        (
            400,
            "the stream names 6 topics; the server holds at most 5 (--max-topics)"
        )
    );
    let (status, _) = support::request(addr, "HEAD", six, &[], b"").await;
    assert_eq!(status, 400, "HEAD answers what GET does");
    // Two held topics leave room for at most three new ones (with every
    // idle one retired): four are refused for now, and nothing goes.
    let _i1 = SseClient::get(addr, "/events/i1", &[]).await;
    let _i2 = SseClient::get(addr, "/events/i2", &[]).await;
    let four = "/events?topic=n1&topic=n2&topic=n3&topic=n4";
    let (status, _) = support::request(addr, "GET", four, &[], b"").await;
    assert_eq!(status, 503);
    let (status, _) = support::request(addr, "HEAD", four, &[], b"").await;
    assert_eq!(status, 503);
    for i in 1..=5 {
        let (status, _) = support::request(addr, "HEAD", &format!("/events/h{i}"), &[], b"").await;
        assert_eq!(status, 200);
    }
    let (_, _, metrics) = support::request_full(addr, "GET", "/metrics", &[], b"").await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ssehub_topics_retired"))
        .expect("the retired counter");
    assert!(line.ends_with(" 0"), "nothing retired: {line}");
    drop((_i1, _i2));
    server.stop().await;

    let server = Ssehub::start(tmp.path(), &args).await;
    let history = read_history(server.addr, "precious", &epoch, 3).await;
    let data: Vec<_> = history.iter().map(|h| h.1.as_str()).collect();
    assert_eq!(data, ["p1", "p2", "p3"], "precious kept its history");
    server.stop().await;
}
