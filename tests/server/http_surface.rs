//! The HTTP surface over real sockets: headers, publishing, bad input, h2c,
//! and shutdown with open streams.

use crate::support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ssehub::{Event, Hub, SseService};
use support::{Parser, SseClient, TestServer, events, header, request, request_full, seq};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_stream_is_event_stream_uncached_unbuffered_and_unsized() {
    let server = TestServer::start(Hub::new()).await;
    for path in ["/stream", "/events/news"] {
        let c = server.subscribe(path).await;
        assert_eq!(c.status, 200);
        assert_eq!(c.header("content-type"), Some("text/event-stream"));
        assert_eq!(c.header("cache-control"), Some("no-cache"));
        assert_eq!(c.header("x-accel-buffering"), Some("no"));
        assert_eq!(c.header("access-control-allow-origin"), Some("*"));
        assert_eq!(c.header("content-length"), None);
    }
}

#[tokio::test]
async fn post_publishes_the_body_and_answers_the_id() {
    let server = TestServer::start(Hub::new()).await;
    let mut sub = server.subscribe("/events/news").await;
    assert!(support::is_default_retry(sub.next_item().await));
    sub.next_item().await; // checkpoint

    let (status, body) = server
        .post("/events/news?event=greeting", "hello\r\nworld")
        .await;
    assert_eq!(status, 201);
    let id = format!("{}-1", server.hub.epoch());
    assert_eq!(body, format!("{{\"id\":\"{id}\"}}\n"));

    let ev = sub.next_event().await;
    assert_eq!(ev.event_type, "greeting");
    assert_eq!(ev.data, "hello\nworld");
    assert_eq!(ev.last_event_id, id);

    // The /stream endpoint is the topic `stream`.
    let mut s = server.subscribe("/stream").await;
    s.next_item().await;
    s.next_item().await;
    let (status, _) = server.post("/events/stream", "tick").await;
    assert_eq!(status, 201);
    assert_eq!(s.next_event().await.data, "tick");
}

#[tokio::test]
async fn bad_requests_get_a_precise_status_and_change_nothing() {
    let service = SseService::builder(Hub::new()).max_body_bytes(1000).build();
    let server = TestServer::start_service(service).await;
    let addr = server.addr;

    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("GET", "/nope", vec![], 404, "not found"),
        // The stream of several topics, asked for with none.
        ("GET", "/events", vec![], 400, "no topic"),
        ("GET", "/eventsx", vec![], 404, "not found"),
        ("DELETE", "/events/t", vec![], 405, "method not allowed"),
        ("POST", "/stream", vec![], 405, "method not allowed"),
        ("GET", "/events/a%20b", vec![], 400, "invalid topic"),
        ("GET", "/events/", vec![], 400, "invalid topic"),
        ("GET", "/events/a/b", vec![], 400, "invalid topic"),
        ("POST", "/events/a$b", b"x".to_vec(), 400, "invalid topic"),
        (
            "GET",
            &*Box::leak(format!("/events/{}", "x".repeat(129)).into_boxed_str()),
            vec![],
            400,
            "invalid topic",
        ),
        ("GET", "/events/t?limit=0", vec![], 400, "invalid limit"),
        ("GET", "/events/t?limit=abc", vec![], 400, "invalid limit"),
        ("GET", "/events/t?limit=-1", vec![], 400, "invalid limit"),
        (
            "POST",
            "/events/t",
            vec![b'x'; 1001],
            413,
            "larger than 1000 bytes",
        ),
        (
            "POST",
            "/events/t",
            vec![0xff, 0xfe],
            400,
            "not valid utf-8",
        ),
        (
            "POST",
            "/events/t?event=a%0Db",
            b"x".to_vec(),
            400,
            "line break",
        ),
        (
            "POST",
            "/events/t?event=a%0Ab",
            b"x".to_vec(),
            400,
            "line break",
        ),
        (
            "POST",
            "/events/t?event=resync",
            b"x".to_vec(),
            400,
            "reserved",
        ),
        (
            "POST",
            &*Box::leak(format!("/events/t?event={}", "e".repeat(129)).into_boxed_str()),
            b"x".to_vec(),
            400,
            "longer than 128",
        ),
    ];
    for (method, path, body, status, text) in cases {
        let (got, got_body) = request(addr, method, path, &[], &body).await;
        assert_eq!(got, status, "{method} {path}");
        assert!(got_body.contains(text), "{method} {path}: {got_body:?}");
        assert!(got_body.ends_with('\n') && got_body.lines().count() == 1);
    }
    let (_, headers, _) = request_full(addr, "PUT", "/events/t", &[], b"").await;
    assert_eq!(
        support::header(&headers, "allow"),
        Some("GET, HEAD, POST, OPTIONS")
    );

    // Nothing was published by any of them.
    assert_eq!(server.hub.stats().published, 0);
    // A body of exactly the limit is fine.
    let (got, _) = request(addr, "POST", "/events/t", &[], &[b'y'; 1000]).await;
    assert_eq!(got, 201);
}

#[tokio::test]
async fn oversized_request_head_gets_431() {
    let server = TestServer::start(Hub::new()).await;
    let big = "x".repeat(20 << 10);
    let (status, _) = request(server.addr, "GET", "/events/t", &[("X-Big", &big)], b"").await;
    assert_eq!(status, 431);
}

#[tokio::test]
async fn a_non_utf8_last_event_id_is_malformed_not_an_error() {
    let server = TestServer::start(Hub::new()).await;
    server.hub.publish("t", Event::new("a")).await.unwrap();
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let mut c = SseClient::open(
        stream,
        b"GET /events/t?limit=1 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: \xff\xfe-1\r\n\r\n",
    )
    .await;
    assert_eq!(c.status, 200);
    let ev = c.next_event().await;
    assert_eq!(ev.event_type, "resync");
    assert!(ev.data.contains("\"malformed\""));
}

#[tokio::test]
async fn h2c_prior_knowledge_multiplexes_streams() {
    let server = TestServer::start(Hub::new()).await;
    let e = server.hub.epoch();
    for i in 1..=3 {
        server
            .hub
            .publish("t", Event::new(format!("x{i}")))
            .await
            .unwrap();
    }
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);

    // Twenty concurrent streams on one connection, each replaying 3 events.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get(format!("http://test/events/t?lastEventId={e}-0&limit=3"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = sender.send_request(req).await.unwrap();
            assert_eq!(res.version(), http::Version::HTTP_2);
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["content-type"], "text/event-stream");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let evs = events(&Parser::new().feed(&body));
            evs.iter()
                .map(|e| seq(&e.last_event_id))
                .collect::<Vec<_>>()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), vec![1, 2, 3]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_streams_and_stops() {
    let server = TestServer::start(Hub::new()).await;
    let mut clients = Vec::new();
    for i in 0..50 {
        let mut c = server.subscribe(&format!("/events/t{}", i % 5)).await;
        assert!(support::is_default_retry(c.next_item().await));
        clients.push(c);
    }
    // An h2c stream too.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let h2_conn = tokio::spawn(conn);
    let res = sender
        .send_request(
            http::Request::get("http://test/events/t0")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();

    let addr = server.addr;
    let hub = server.hub.clone();
    server.stop().await;

    for c in &mut clients {
        c.expect_end().await;
        assert!(c.ended_cleanly());
    }
    let body = tokio::time::timeout(support::WAIT, res.into_body().collect())
        .await
        .expect("h2 stream ends")
        .expect("h2 stream ends cleanly");
    assert!(body.to_bytes().starts_with(b"retry: "));
    let _ = tokio::time::timeout(support::WAIT, h2_conn)
        .await
        .expect("h2 connection closes");
    assert!(hub.is_closed());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener is closed"
    );
}

/// The server writes HTTP/1.1 event streams itself (the fast path) and
/// gives every other request to hyper; these check the seams.
mod fast_path {
    use super::*;
    use ssehub::server::ServerConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(support::WAIT, s.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn pipelined_requests_after_a_limited_stream_are_answered_in_order() {
        let server = TestServer::start(Hub::new()).await;
        for i in 1..=3 {
            server
                .hub
                .publish("p", Event::new(format!("e{i}")))
                .await
                .unwrap();
        }
        let e = server.hub.epoch();
        let req = format!(
            "GET /events/p?lastEventId={e}-0&limit=2 HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
             GET /events/p?lastEventId={e}-2&limit=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let out = raw(server.addr, req.as_bytes()).await;
        let e1 = out.find("data: e1").unwrap();
        let e2 = out.find("data: e2").unwrap();
        let ok = out.find("\r\nok\n").unwrap();
        let e3 = out.find("data: e3").unwrap();
        assert!(e1 < e2 && e2 < ok && ok < e3, "{out}");
        // The first response is the fast path's; from `/healthz` on the
        // connection is hyper's. Each chunked one ends with its last chunk
        // (the fast path's own terminator on two pipelined streams is
        // `each_pipelined_stream_response_ends_with_the_last_chunk`).
        let got = support::answers(out.as_bytes());
        assert_eq!(got.len(), 3, "{out}");
        assert!(got.iter().all(|a| a.status == 200));
        assert!(got[0].terminated && got[0].raw.ends_with(b"\r\n0\r\n\r\n"));
        assert!(got[2].terminated);
        assert_eq!(
            support::header(&got[2].headers, "connection"),
            Some("close")
        );
    }

    #[tokio::test]
    async fn requests_the_fast_path_does_not_take_go_to_hyper() {
        let server = TestServer::start(Hub::new()).await;
        server.hub.publish("h", Event::new("x")).await.unwrap();
        let e = server.hub.epoch();
        // A GET with a body.
        let out = raw(
            server.addr,
            format!("GET /events/h?lastEventId={e}-0&limit=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").as_bytes(),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 200 OK") && out.contains("data: x"),
            "{out}"
        );
        // HTTP/1.0: no chunked encoding, the end of the body is the close.
        let out = raw(
            server.addr,
            format!("GET /events/h?lastEventId={e}-0&limit=1 HTTP/1.0\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.0 200 OK")
                && !out.contains("chunked")
                && out.ends_with(&format!("data: x\nid: {e}-1\n\n")),
            "{out}"
        );
        // HEAD: hyper answers the GET's head, without a body.
        let out = raw(
            server.addr,
            b"HEAD /events/h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
        // Garbage.
        let out = raw(server.addr, b"GARBAGE\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }

    #[tokio::test]
    async fn error_answers_on_the_fast_path_keep_the_connection() {
        let server = TestServer::start(Hub::new()).await;
        let out = raw(
            server.addr,
            b"GET /events/bad$topic HTTP/1.1\r\nHost: x\r\n\r\nGET /events/t?limit=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("content-length: 63\r\n") && out.contains("invalid topic name"));
        assert!(
            out.contains("invalid limit"),
            "the second request was answered: {out}"
        );
        assert!(out.contains("\r\ndate: "));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_goes_away_is_noticed_while_idle() {
        let server = TestServer::start(Hub::new()).await;
        let mut clients = Vec::new();
        for _ in 0..50 {
            let mut c = server.subscribe("/events/gone").await;
            c.next_item().await;
            clients.push(c);
        }
        assert_eq!(server.hub.stats().subscribers, 50);
        drop(clients);
        let deadline = tokio::time::Instant::now() + support::WAIT;
        while server.hub.stats().subscribers > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "subscribers not released"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The same exchange through hyper's connection (fast path off) and
    /// through the fast path: identical events.
    #[tokio::test]
    async fn both_paths_send_the_same_stream() {
        let mut bodies = Vec::new();
        for fast in [true, false] {
            let hub = Hub::builder()
                .epoch("same".parse().unwrap())
                .retry_jitter(0.0)
                .build();
            for i in 1..=5 {
                hub.publish("t", Event::new(format!("line {i}\nsecond")))
                    .await
                    .unwrap();
            }
            let mut config = ServerConfig::default();
            config.stream_fast_path = fast;
            let server = TestServer::start_with(SseService::new(hub), config).await;
            let mut c =
                SseClient::get(server.addr, "/events/t?lastEventId=same-2&limit=3", &[]).await;
            assert_eq!(c.status, 200);
            assert_eq!(c.header("content-type"), Some("text/event-stream"));
            c.until_end().await;
            assert!(c.ended_cleanly());
            bodies.push(c.raw.clone());
            // A live stream ends cleanly at shutdown on both paths.
            let mut live = server.subscribe("/events/t").await;
            live.next_item().await;
            server.stop().await;
            live.expect_end().await;
            assert!(live.ended_cleanly(), "fast path {fast}");
        }
        assert_eq!(bodies[0], bodies[1]);
    }
}

/// Regression: `Connection: keep-alive, close` was not taken as a request
/// to close (only a header value of exactly `close` was).
#[tokio::test]
async fn connection_close_among_other_tokens_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Hub::new()).await;
    server.hub.publish("c", Event::new("x")).await.unwrap();
    let e = server.hub.epoch();
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(format!("GET /events/c?lastEventId={e}-0&limit=1 HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive , CLOSE\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(support::WAIT, s.read_to_end(&mut out))
        .await
        .expect("the server closes")
        .unwrap();
    assert!(String::from_utf8_lossy(&out).contains("connection: close"));
}

// An event larger than `--max-total-bytes` is refused (`413`), not
// acknowledged and then replaced by a `resync` (`lagged`) for a live
// subscriber (found in an adversarial pass, issue 12).
#[tokio::test]
async fn an_event_larger_than_the_hub_retains_is_refused() {
    let hub = Hub::builder().max_total_bytes(4096).build();
    let server = TestServer::start(hub).await;
    let addr = server.addr;
    let mut sub = server.subscribe("/events/big").await;
    sub.next_item().await; // retry
    sub.next_item().await; // checkpoint

    let big = "x".repeat(5000);
    let (status, body) = request(addr, "POST", "/events/big", &[], big.as_bytes()).await;
    assert_eq!(
        (status, body.as_str()),
        (
            413,
            "event is larger than the server retains (--max-total-bytes)\n"
        )
    );
    // A batch that together exceeds it: nothing of it is published.
    let part = "y".repeat(1500);
    let batch = serde_json::json!([{"data": part}, {"data": part}, {"data": part}]);
    let (status, _) = request(
        addr,
        "POST",
        "/events/big",
        &[("Content-Type", "application/json")],
        batch.to_string().as_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(server.hub.stats().published, 0);

    // One that fits is delivered, and is the first thing the subscriber sees.
    let fits = "z".repeat(3000);
    let (status, _) = request(addr, "POST", "/events/big", &[], fits.as_bytes()).await;
    assert_eq!(status, 201);
    let ev = sub.next_event().await;
    assert_eq!((ev.event_type.as_str(), ev.data.len()), ("message", 3000));
    assert!(matches!(
        server.hub.publish("big", Event::new(big)).await,
        Err(ssehub::HubError::TooLarge)
    ));
}

// `HEAD` answers what `GET` would, without a body, on `/healthz` and the
// stream URLs too (RFC 9110 9.1; it used to answer `405`, issue 12).
#[tokio::test]
async fn head_answers_the_get_status_and_headers_without_a_body() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    for path in ["/healthz", "/metrics", "/", "/events/t", "/stream"] {
        let (get_status, get_headers, get_body) =
            if path.starts_with("/events") || path == "/stream" {
                (200, Vec::new(), String::new())
            } else {
                request_full(addr, "GET", path, &[], b"").await
            };
        let (status, headers, body) = request_full(addr, "HEAD", path, &[], b"").await;
        assert_eq!(status, get_status, "{path}");
        assert_eq!(body, "", "{path}: no body");
        if !get_body.is_empty() && path != "/metrics" {
            assert_eq!(
                header(&headers, "content-length"),
                Some(get_body.len().to_string().as_str()),
                "{path}"
            );
        }
        for name in ["content-type"] {
            if let Some(v) = header(&get_headers, name) {
                assert_eq!(header(&headers, name), Some(v), "{path}");
            }
        }
        if path.starts_with("/events") || path == "/stream" {
            assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
            assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
        }
    }
    // It opened no stream.
    assert_eq!(server.hub.stats().subscribers, 0);
    // Refusals are the GET's.
    let (status, _, body) = request_full(addr, "HEAD", "/events/bad$name", &[], b"").await;
    assert_eq!((status, body.as_str()), (400, ""));
    let (status, _, _) = request_full(addr, "HEAD", "/nope", &[], b"").await;
    assert_eq!(status, 404);

    // Over HTTP/2, where a body on a HEAD response is a protocol error.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for (path, len) in [("/healthz", Some("3")), ("/events/t", None)] {
        let req = http::Request::head(format!("http://localhost{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            res.headers()
                .get("content-length")
                .map(|v| v.to_str().unwrap()),
            len
        );
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty());
    }
    assert_eq!(server.hub.stats().subscribers, 0);
}
