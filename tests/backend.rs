//! The drop-in backend, over real sockets: JSON publishing, topic and byte
//! bounds, publisher and subscriber auth, CORS, TLS with HTTP/2, connection
//! limits, slow-loris, health, metrics and the page.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ssehub::{CorsOrigins, Event, Grants, Hub, JwtKey, PeerAddr, ServerConfig, SseService};
use support::tls::{test_tls, tls_connect};
use support::{Parser, SseClient, TestServer, events, header, request, request_full, seq};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test]
async fn json_publishes_one_event_or_an_all_or_nothing_batch() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    let e = server.hub.epoch();
    let mut sub = server.subscribe("/events/j").await;
    sub.next_item().await;
    sub.next_item().await;

    let (status, body) = request(
        addr,
        "POST",
        "/events/j",
        &[JSON],
        br#"{"data":"one","event":"a"}"#,
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (201, &*format!("{{\"id\":\"{e}-1\"}}\n"))
    );

    let batch = br#"[{"data":"two"},{"data":{"n":3},"event":"b"},{"data":"four\nlines"}]"#;
    let (status, body) = request(
        addr,
        "POST",
        "/events/j",
        &[("Content-Type", "application/json; charset=utf-8")],
        batch,
    )
    .await;
    assert_eq!(status, 201);
    let ids: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        ids["ids"],
        serde_json::json!([format!("{e}-2"), format!("{e}-3"), format!("{e}-4")])
    );

    // A batch with one bad event publishes nothing.
    for bad in [
        &br#"[{"data":"ok"},{"data":"x","event":"a\nb"}]"#[..],
        br#"[{"data":"ok"},{"dat":"typo"}]"#,
        br#"[{"data":"ok"},{"data":"x","id":"5"}]"#,
        br#"{"data":"#,
        br#"[]"#,
        br#""just a string""#,
    ] {
        let (status, body) = request(addr, "POST", "/events/j", &[JSON], bad).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(bad));
        assert_eq!(body.lines().count(), 1, "{body:?}");
    }
    assert_eq!(server.hub.topic_info("j").unwrap().latest.seq(), 4);

    // Form-encoded (curl -d's default) and untyped bodies are text.
    let (status, _) = request(
        addr,
        "POST",
        "/events/j",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"a=b",
    )
    .await;
    assert_eq!(status, 201);

    let got: Vec<_> = (0..5).map(|_| ()).collect::<Vec<_>>();
    let mut seen = Vec::new();
    for _ in got {
        let ev = sub.next_event().await;
        seen.push((ev.event_type, ev.data, seq(&ev.last_event_id)));
    }
    assert_eq!(
        seen,
        vec![
            ("a".into(), "one".into(), 1),
            ("message".into(), "two".into(), 2),
            ("b".into(), r#"{"n":3}"#.into(), 3),
            ("message".into(), "four\nlines".into(), 4),
            ("message".into(), "a=b".into(), 5),
        ]
    );
}

#[tokio::test]
async fn topic_names_and_the_topic_limit() {
    let hub = Hub::builder().max_topics(3).build();
    let server = TestServer::start(hub).await;
    let addr = server.addr;
    let longest = format!("{}-_.:", "aZ9".repeat(41));
    assert_eq!(longest.len(), 127);
    let (status, _) = request(addr, "POST", &format!("/events/{longest}x"), &[], b"x").await;
    assert_eq!(status, 201);
    let (status, _) = request(addr, "POST", &format!("/events/{longest}xy"), &[], b"x").await;
    assert_eq!(status, 400, "129 characters");

    // Three subscribed topics fill the hub: a fourth is refused with 503.
    let mut subs = Vec::new();
    for t in ["a", "b"] {
        subs.push(server.subscribe(&format!("/events/{t}")).await);
    }
    let c = server.subscribe("/events/c").await; // retires the idle long topic
    assert_eq!(c.status, 200);
    let (status, headers, body) = request_full(addr, "POST", "/events/d", &[], b"x").await;
    assert_eq!((status, body.as_str()), (503, "too many topics\n"));
    assert!(header(&headers, "retry-after").is_some());
    assert_eq!(server.hub.stats().topics_retired, 1);
    // When a subscriber leaves, its topic can make room.
    drop(c.into_stream());
    let mut published = false;
    for _ in 0..200 {
        if request(addr, "POST", "/events/d", &[], b"x").await.0 == 201 {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(published);
    let _ = &mut subs;
}

#[tokio::test]
async fn retained_bytes_stay_bounded_while_thousands_of_topics_are_created() {
    const BOUND: usize = 256 << 10;
    let hub = Hub::builder().max_total_bytes(BOUND).build();
    let server = TestServer::start(hub).await;
    let e = server.hub.epoch();
    let payload = vec![b'x'; 500];
    for i in 0..3000 {
        let (status, _) = request(
            server.addr,
            "POST",
            &format!("/events/t{}", i % 1500),
            &[],
            &payload,
        )
        .await;
        assert_eq!(status, 201);
        let retained = server.hub.stats().retained_bytes;
        // One request may overshoot by its own event before it trims.
        assert!(
            retained <= BOUND + 600,
            "{retained} bytes retained after {i}"
        );
    }
    assert_eq!(server.hub.stats().topics, 1500);
    // Trimmed history is announced, never silently skipped.
    let info = server.hub.topic_info("t0").unwrap();
    assert_eq!(info.latest.seq(), 2);
    if info.oldest.map(|o| o.seq()) == Some(2) {
        let mut c = SseClient::get(
            server.addr,
            "/events/t0?limit=1",
            &[("Last-Event-ID", &format!("{e}-0"))],
        )
        .await;
        let evs = events(&c.until_end().await);
        assert_eq!(evs[0].event_type, "resync");
        assert!(evs[0].data.contains("\"evicted\""));
    }
}

async fn call(service: &SseService, req: http::Request<Empty<Bytes>>) -> (u16, String) {
    let res = service.call(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn publishing_without_a_token_is_for_loopback_only() {
    let service = SseService::new(Hub::new());
    for (peer, want) in [
        ("127.0.0.1:5000", 201),
        ("[::1]:5000", 201),
        ("192.0.2.7:5000", 403),
    ] {
        let mut req = http::Request::post("/events/t").body(Empty::new()).unwrap();
        req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        assert_eq!(call(&service, req).await.0, want, "{peer}");
    }
    // An embedder that does not say who the peer is gets the safe answer.
    let req = http::Request::post("/events/t").body(Empty::new()).unwrap();
    assert_eq!(call(&service, req).await.0, 403);
}

#[tokio::test]
async fn publish_token_is_required_when_set() {
    let service = SseService::builder(Hub::new())
        .publish_token("s3cret")
        .build();
    let server = TestServer::start_service(service).await;
    let addr = server.addr;
    let (status, headers, body) = request_full(addr, "POST", "/events/t", &[], b"x").await;
    assert_eq!((status, body.as_str()), (401, "missing token\n"));
    assert!(
        header(&headers, "www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    for wrong in ["Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearer "] {
        let (status, _) =
            request(addr, "POST", "/events/t", &[("Authorization", wrong)], b"x").await;
        assert_eq!(status, 401, "{wrong}");
    }
    let (status, _) = request(
        addr,
        "POST",
        "/events/t",
        &[("Authorization", "Bearer s3cret")],
        b"x",
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(server.hub.stats().published, 1);
}

#[tokio::test]
async fn jwt_matrix() {
    let key = JwtKey::hs256(b"jwt secret");
    let service = SseService::builder(Hub::new()).jwt_key(key.clone()).build();
    let server = TestServer::start_service(service).await;
    let addr = server.addr;
    let hour = Duration::from_secs(3600);
    let news = key
        .issue(&Grants::new().subscribe("news").unwrap(), hour)
        .unwrap();
    let forged = JwtKey::hs256(b"other")
        .issue(&Grants::new().subscribe("*").unwrap(), hour)
        .unwrap();
    let expired = expired_token(b"jwt secret");
    let publisher = key
        .issue(&Grants::new().publish("news").unwrap(), hour)
        .unwrap();

    let get = |path: String, headers: Vec<(&'static str, String)>| async move {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut c = SseClient::get(addr, &path, &h).await;
        let status = c.status;
        if status == 200 {
            assert!(support::is_default_retry(c.next_item().await));
        }
        status
    };
    let bearer = |t: &str| vec![("Authorization", format!("Bearer {t}"))];
    let cookie = |t: &str| vec![("Cookie", format!("theme=dark; ssehub_token={t}"))];

    assert_eq!(get("/events/news".into(), vec![]).await, 401, "no token");
    assert_eq!(
        get("/events/news".into(), bearer(&forged)).await,
        401,
        "bad signature"
    );
    assert_eq!(
        get("/events/news".into(), bearer(&expired)).await,
        401,
        "expired"
    );
    assert_eq!(
        get("/events/news".into(), bearer("not.a.jwt")).await,
        401,
        "garbage"
    );
    assert_eq!(
        get("/events/sports".into(), bearer(&news)).await,
        403,
        "topic not granted"
    );
    assert_eq!(
        get("/events/news".into(), bearer(&news)).await,
        200,
        "header"
    );
    assert_eq!(
        get(format!("/events/news?access_token={news}"), vec![]).await,
        200,
        "query"
    );
    assert_eq!(
        get("/events/news".into(), cookie(&news)).await,
        200,
        "cookie"
    );
    assert_eq!(
        get("/events/news".into(), cookie(&expired)).await,
        401,
        "expired cookie"
    );
    // A subscribe-only token does not publish; a publish grant does.
    let (status, _) = request(
        addr,
        "POST",
        "/events/news",
        &[("Authorization", &format!("Bearer {news}"))],
        b"x",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = request(
        addr,
        "POST",
        "/events/news",
        &[("Authorization", &format!("Bearer {publisher}"))],
        b"x",
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = request(
        addr,
        "POST",
        "/events/other",
        &[("Authorization", &format!("Bearer {publisher}"))],
        b"x",
    )
    .await;
    assert_eq!(status, 403);
    // The 401 tells the client how to authenticate.
    let (_, headers, _) = request_full(addr, "GET", "/events/news", &[], b"").await;
    assert!(
        header(&headers, "www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
}

fn expired_token(secret: &[u8]) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 30;
    let claims = serde_json::json!({"exp": exp, "ssehub": {"subscribe": ["*"]}});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[tokio::test]
async fn cors_by_default_streams_are_open_and_foreign_publishing_is_refused() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    let origin = ("Origin", "https://app.example");

    let (status, headers, _) = request_full(
        addr,
        "OPTIONS",
        "/events/t",
        &[
            origin,
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "last-event-id"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert!(
        header(&headers, "access-control-allow-headers")
            .unwrap()
            .contains("Last-Event-ID")
    );
    assert!(
        !header(&headers, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );

    let c = SseClient::get(addr, "/events/t", &[origin]).await;
    assert_eq!(c.header("access-control-allow-origin"), Some("*"));
    assert_eq!(c.header("access-control-allow-credentials"), None);

    let (status, body) = request(addr, "POST", "/events/t", &[origin], b"x").await;
    assert_eq!(
        (status, body.as_str()),
        (403, "cross-origin publishing is not allowed\n")
    );
    // Same origin (the page at / of this server) may publish.
    let own = format!("http://{addr}");
    let own_host = addr.to_string();
    let (status, _) = request_full_host(addr, &own_host, &[("Origin", &own)]).await;
    assert_eq!(status, 201);
    assert_eq!(server.hub.stats().published, 1);
}

async fn request_full_host(
    addr: std::net::SocketAddr,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST /events/t HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 1\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\nx");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw[9..12].parse().unwrap();
    (status, raw)
}

#[tokio::test]
async fn cors_listed_origins_get_credentials_others_nothing() {
    let service = SseService::builder(Hub::new())
        .cors(CorsOrigins::from_list(&["https://app.example"]))
        .build();
    let server = TestServer::start_service(service).await;
    let addr = server.addr;
    let good = ("Origin", "https://app.example");
    let evil = ("Origin", "https://evil.example");

    let (status, headers, _) = request_full(
        addr,
        "OPTIONS",
        "/events/t",
        &[good, ("Access-Control-Request-Method", "POST")],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        header(&headers, "access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        header(&headers, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert_eq!(header(&headers, "vary"), Some("origin"));
    let allowed_headers = header(&headers, "access-control-allow-headers").unwrap();
    for h in ["Authorization", "Content-Type", "Last-Event-ID"] {
        assert!(allowed_headers.contains(h));
    }

    let (status, headers, _) = request_full(addr, "OPTIONS", "/events/t", &[evil], b"").await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    assert_eq!(header(&headers, "access-control-allow-methods"), None);

    let c = SseClient::get(addr, "/events/t", &[good]).await;
    assert_eq!(
        c.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(c.header("access-control-allow-credentials"), Some("true"));
    let c = SseClient::get(addr, "/events/t", &[evil]).await;
    assert_eq!(c.header("access-control-allow-origin"), None);

    let (status, headers, _) = request_full(addr, "POST", "/events/t", &[good], b"x").await;
    assert_eq!(status, 201);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://app.example")
    );
    let (status, _) = request(addr, "POST", "/events/t", &[evil], b"x").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn tls_negotiates_h2_and_multiplexes_twenty_streams() {
    let (tls, roots) = test_tls();
    let mut config = ServerConfig::default();
    config.tls = Some(tls);
    let server = TestServer::start_with(SseService::new(Hub::new()), config).await;
    let e = server.hub.epoch();

    let stream = tls_connect(server.addr, roots.clone(), &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut responses = Vec::new();
    for _ in 0..20 {
        let mut sender = sender.clone();
        let req = http::Request::get("https://localhost/events/tabs")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.version(), http::Version::HTTP_2);
        assert_eq!(res.status(), 200);
        responses.push(res.into_body());
    }
    server
        .hub
        .publish("tabs", Event::new("to every tab"))
        .await
        .unwrap();
    for body in &mut responses {
        let mut parser = Parser::new();
        let ev = loop {
            let frame = tokio::time::timeout(support::WAIT, body.frame())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let Some(ev) = events(&parser.feed(&frame.into_data().unwrap())).pop() {
                break ev;
            }
        };
        assert_eq!(
            (ev.data.as_str(), ev.last_event_id),
            ("to every tab", format!("{e}-1"))
        );
    }

    // HTTP/1.1 through ALPN on the same port.
    let stream = tls_connect(server.addr, roots, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            http::Request::get("/events/tabs?lastEventId=".to_owned() + &format!("{e}-0&limit=1"))
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(events(&Parser::new().feed(&body))[0].data, "to every tab");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_answers_503_and_spares_existing_streams() {
    let mut config = ServerConfig::default();
    config.max_connections = 20;
    let server = TestServer::start_with(SseService::new(Hub::new()), config).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut c = server.subscribe("/events/full").await;
        assert!(support::is_default_retry(c.next_item().await));
        clients.push(c);
    }
    for _ in 0..3 {
        let (status, headers, body) =
            request_full(server.addr, "GET", "/events/full", &[], b"").await;
        assert_eq!(
            (status, body.as_str()),
            (503, "server is at its connection limit\n")
        );
        assert!(header(&headers, "retry-after").is_some());
    }
    // The existing streams still receive.
    server
        .hub
        .publish("full", Event::new("still here"))
        .await
        .unwrap();
    for c in &mut clients {
        assert_eq!(c.next_event().await.data, "still here");
    }
    let metrics = request(server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(metrics.0, 503, "metrics too are refused at the limit");
    // A freed slot is usable again.
    drop(clients.pop().unwrap().into_stream());
    let mut ok = false;
    for _ in 0..200 {
        let (status, _, _) = request_full(server.addr, "GET", "/healthz", &[], b"").await;
        if status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok);
    assert!(server.hub.stats().subscribers >= 19);
}

#[tokio::test]
async fn per_ip_limit() {
    let mut config = ServerConfig::default();
    config.max_connections_per_ip = Some(2);
    let server = TestServer::start_with(SseService::new(Hub::new()), config).await;
    let _a = server.subscribe("/events/x").await;
    let _b = server.subscribe("/events/x").await;
    let (status, _) = request(server.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn slow_loris_connections_are_closed() {
    let mut config = ServerConfig::default();
    config.header_read_timeout = Duration::from_millis(300);
    let server = TestServer::start_with(SseService::new(Hub::new()), config).await;

    // Silent, then half a request line, then headers that never end.
    for partial in [
        &b""[..],
        b"GET /events/t HT",
        b"GET /events/t HTTP/1.1\r\nHost: x\r\n",
    ] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(partial).await.unwrap();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(
            closed.is_ok(),
            "closed within the timeout: {:?}",
            String::from_utf8_lossy(partial)
        );
    }
    // Meanwhile others are served.
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[], b"").await.0,
        200
    );
}

#[tokio::test]
async fn health_metrics_and_page() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    let e = server.hub.epoch();
    assert_eq!(
        request(addr, "GET", "/healthz", &[], b"").await,
        (200, "ok\n".into())
    );

    let mut sub = server.subscribe("/events/m").await;
    sub.next_item().await;
    for _ in 0..3 {
        request(addr, "POST", "/events/m", &[], b"x").await;
    }
    let mut replay = SseClient::get(
        addr,
        "/events/m?limit=3",
        &[("Last-Event-ID", &format!("{e}-0"))],
    )
    .await;
    replay.until_end().await;
    let mut rs = SseClient::get(addr, "/events/m?limit=1", &[("Last-Event-ID", "junk")]).await;
    rs.until_end().await;
    for _ in 0..3 {
        sub.next_event().await;
    }

    let (status, headers, text) = request_full(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .contains("openmetrics")
    );
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(value("ssehub_subscribers"), 1.0);
    assert_eq!(value("ssehub_topics"), 1.0);
    assert_eq!(value("ssehub_events_published_total"), 3.0);
    assert!(value("ssehub_events_delivered_total") >= 7.0);
    assert_eq!(value("ssehub_events_replayed_total"), 4.0);
    assert_eq!(value("ssehub_resyncs_total"), 1.0);
    assert_eq!(value("ssehub_connections_rejected_total"), 0.0);
    assert!(value("ssehub_connections") >= 1.0);

    let (status, headers, page) = request_full(addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.contains("new EventSource(") && page.contains("addEventListener(\"resync\""));
    assert_eq!(request(addr, "POST", "/healthz", &[], b"").await.0, 405);
}
