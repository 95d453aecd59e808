//! The drop-in backend, over real sockets: JSON publishing, topic and byte
//! bounds, publisher and subscriber auth, CORS, TLS with HTTP/2, connection
//! limits, slow-loris, health, metrics and the page.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::service::Service;
use ssehub::http::{CorsOrigins, PeerAddr};
#[cfg(feature = "jwt")]
use ssehub::http::{Grants, JwtKey};
use ssehub::server::ServerConfig;
use ssehub::{Event, Hub, SseService};
use support::{SseClient, TestServer, events, header, request, request_full, seq};
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

/// The length of the frame of an untyped one-line event, from the encoding
/// rules: `data: <x>\nid: <epoch>-<seq>\n\n`.
fn frame_len(data_len: usize, id: &str) -> usize {
    "data: ".len() + data_len + "\nid: ".len() + id.len() + "\n\n".len()
}

#[tokio::test]
async fn retained_bytes_stay_bounded_while_thousands_of_topics_are_created() {
    const BOUND: usize = 256 << 10;
    const TARGET: usize = BOUND - BOUND / 16;
    let hub = Hub::builder().max_total_bytes(BOUND).build();
    let server = TestServer::start(hub).await;
    let hub = &server.hub;
    let e = hub.epoch();
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
        // Each publish trims before it answers.
        let retained = hub.stats().retained_bytes;
        assert!(retained <= BOUND, "{retained} bytes retained after {i}");
    }
    assert_eq!(hub.stats().topics, 1500);
    // The total is exactly the frames the topics still hold.
    let mut held = 0;
    for t in 0..1500 {
        let info = hub.topic_info(&format!("t{t}")).unwrap();
        assert_eq!(info.latest.seq(), 2);
        let frames: usize = info.oldest.map_or(0, |o| {
            (o.seq()..=2)
                .map(|s| frame_len(500, &format!("{e}-{s}")))
                .sum()
        });
        assert_eq!(info.retained_bytes, frames, "t{t}");
        held += frames;
    }
    assert_eq!(hub.stats().retained_bytes, held);

    // An event nearly as large as the whole bound (a larger one is refused
    // with 413) makes its topic the largest by far: cut to the common
    // level, it loses everything, the new event too.
    let huge = vec![b'h'; BOUND - 1000];
    let (status, _) = request(server.addr, "POST", "/events/t0", &[], &huge).await;
    assert_eq!(status, 201);
    let info = hub.topic_info("t0").unwrap();
    assert_eq!((info.oldest, info.latest.seq()), (None, 3));
    assert!(hub.stats().retained_bytes <= TARGET);
    let (status, _) = request(server.addr, "POST", "/events/t0", &[], &payload).await;
    assert_eq!(status, 201);
    // Trimmed history is announced, never silently skipped.
    let mut c = SseClient::get(
        server.addr,
        "/events/t0?limit=1",
        &[("Last-Event-ID", &format!("{e}-0"))],
    )
    .await;
    let evs = events(&c.until_end().await);
    assert_eq!(evs.len(), 2, "{evs:?}");
    assert_eq!(
        (
            evs[0].event_type.as_str(),
            evs[0].data.as_str(),
            evs[0].last_event_id.as_str()
        ),
        (
            "resync",
            &*format!(
                r#"{{"reason":"evicted","requested":"{e}-0","oldest":"{e}-4","latest":"{e}-4","missed":3}}"#
            ),
            &*format!("{e}-3")
        )
    );
    assert_eq!(
        (evs[1].data.as_bytes(), evs[1].last_event_id.as_str()),
        (&payload[..], &*format!("{e}-4"))
    );
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
        let mut req = http::Request::post("/events/t")
            .header("host", "localhost:8080")
            .body(Empty::new())
            .unwrap();
        req.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        assert_eq!(call(&service, req).await.0, want, "{peer}");
    }
    // An embedder that does not say who the peer is gets the safe answer.
    let req = http::Request::post("/events/t")
        .header("host", "localhost:8080")
        .body(Empty::new())
        .unwrap();
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

#[cfg(feature = "jwt")]
#[tokio::test]
async fn subscriber_jwts_are_401_unless_valid_and_403_outside_their_grants() {
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

#[cfg(feature = "jwt")]
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
        (
            403,
            "cross-origin publishing is not allowed (see --cors-origin)\n"
        )
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

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_negotiates_h2_and_multiplexes_twenty_streams() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use support::Parser;
    use support::tls::{test_tls, tls_connect};

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

/// A Durable Stream created over TLS is located at an `https` URL (over
/// HTTP/1.1 the request names no scheme: the connection does).
#[cfg(feature = "tls")]
#[tokio::test]
async fn a_stream_created_over_tls_is_located_at_https() {
    use hyper_util::rt::TokioIo;
    use support::tls::{test_tls, tls_connect};

    let (tls, roots) = test_tls();
    let mut config = ServerConfig::default();
    config.tls = Some(tls);
    let server = TestServer::start_with(SseService::new(Hub::new()), config).await;
    let stream = tls_connect(server.addr, roots, &[b"http/1.1"]).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = sender
        .send_request(
            http::Request::put("/v1/stream/docs/a")
                .header("host", "localhost:8443")
                .header("content-type", "text/plain")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers()["location"],
        "https://localhost:8443/v1/stream/docs/a"
    );
    // Cleartext: `http`.
    let server = TestServer::start(Hub::new()).await;
    let (status, headers, _) = request_full(
        server.addr,
        "PUT",
        "/v1/stream/docs/a",
        &[("Content-Type", "text/plain")],
        b"",
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        header(&headers, "location"),
        Some("http://localhost/v1/stream/docs/a")
    );
}

/// Everything a TLS client receives until the server closes (or `WAIT`).
#[cfg(feature = "tls")]
async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + support::WAIT;
    // A reset or a missing `close_notify` ends the reading too.
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Regression guard (a mutation that survived every test: the ALPN `h2`
/// check of `serve_tls` inverted, since hyper's detection and the fast
/// path's hand-off each serve both protocols). ALPN decides: after `h2`
/// the connection is HTTP/2 only (RFC 9113, 3.2), so an HTTP/1.1 request
/// gets the HTTP/2 server preface (a SETTINGS frame) and no HTTP/1.1
/// answer; after `http/1.1`, or no ALPN, it is HTTP/1.1.
#[cfg(feature = "tls")]
#[tokio::test]
async fn alpn_decides_the_protocol_of_a_tls_connection() {
    use support::tls::{test_tls, tls_connect};

    let (tls, roots) = test_tls();
    let mut config = ServerConfig::default();
    config.tls = Some(tls);
    let server = TestServer::start_with(SseService::new(Hub::new()), config).await;
    server.hub.publish("t", Event::new("x")).await.unwrap();
    let e = server.hub.epoch();
    let get = format!(
        "GET /events/t?limit=1&lastEventId={e}-0 HTTP/1.1\r\nHost: localhost\r\n\
         Accept: text/event-stream\r\nConnection: close\r\n\r\n"
    );

    let mut h2 = tls_connect(server.addr, roots.clone(), &[b"h2", b"http/1.1"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    h2.write_all(get.as_bytes()).await.unwrap();
    let got = read_until_closed(&mut h2).await;
    assert!(
        got.len() >= 9 && got[3] == 0x4,
        "an HTTP/2 SETTINGS frame first: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        !got.windows(8).any(|w| w == b"HTTP/1.1"),
        "no HTTP/1.1 answer after ALPN h2: {:?}",
        String::from_utf8_lossy(&got)
    );

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let mut h1 = tls_connect(server.addr, roots.clone(), alpn).await;
        h1.write_all(get.as_bytes()).await.unwrap();
        let got = String::from_utf8_lossy(&read_until_closed(&mut h1).await).into_owned();
        assert!(got.starts_with("HTTP/1.1 200 "), "{alpn:?}: {got:?}");
        assert!(got.contains(&format!("data: x\nid: {e}-1\n\n")), "{got:?}");
    }
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
    // The slot is freed after the stream is dropped.
    assert_eq!(server.hub.stats().subscribers, 19);
}

#[tokio::test]
async fn a_connection_over_the_per_ip_limit_gets_503() {
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
async fn healthz_answers_ok_and_the_page_reads_the_stream_with_fetch() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    assert_eq!(
        request(addr, "GET", "/healthz", &[], b"").await,
        (200, "ok\n".into())
    );
    let (status, headers, page) = request_full(addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    // The page reads the stream with fetch() and its own event-stream
    // parser (an EventSource hides typed events), and handles `resync`.
    assert!(page.contains("fetch(url") && page.contains("\"resync\""));
    assert_eq!(request(addr, "POST", "/healthz", &[], b"").await.0, 405);
}

/// The metrics of the README's table, name and type, e.g.
/// `("ssehub_events_published_total", "counter")`.
#[cfg(feature = "metrics")]
fn readme_metrics() -> Vec<(String, String)> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n### Metrics\n")
        .nth(1)
        .expect("a Metrics section");
    let rows: Vec<(String, String)> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            (cells[1].trim_matches('`').to_owned(), cells[2].to_owned())
        })
        .collect();
    assert!(rows.len() >= 10, "{rows:?}");
    rows
}

/// Parses an OpenMetrics text exposition of unlabelled gauges and
/// counters: every family has `# HELP` and `# TYPE`, a counter's one sample
/// is `<family>_total`, a gauge's is `<family>`, values are integers, and
/// the text ends with `# EOF`. Returns sample name, type and value.
#[cfg(feature = "metrics")]
fn parse_openmetrics(text: &str) -> Vec<(String, String, u64)> {
    let mut lines = text.lines().peekable();
    let mut out = Vec::new();
    let mut eof = false;
    while let Some(line) = lines.next() {
        assert!(!eof, "text after # EOF: {line:?}");
        if line == "# EOF" {
            eof = true;
            continue;
        }
        let help = line
            .strip_prefix("# HELP ")
            .unwrap_or_else(|| panic!("expected # HELP, got {line:?}"));
        let (family, help_text) = help.split_once(' ').unwrap();
        assert!(!help_text.is_empty(), "{family} has no help text");
        let ty_line = lines.next().unwrap();
        let ty = ty_line
            .strip_prefix(&format!("# TYPE {family} "))
            .unwrap_or_else(|| panic!("expected # TYPE {family}, got {ty_line:?}"));
        let sample = match ty {
            "counter" => format!("{family}_total"),
            "gauge" => family.to_owned(),
            other => panic!("{family}: unexpected type {other}"),
        };
        // One unlabelled sample, or one per label set.
        let mut samples = 0;
        while let Some(sample_line) = lines.next_if(|l| {
            l.strip_prefix(sample.as_str())
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        }) {
            let (name, value) = sample_line.rsplit_once(' ').unwrap();
            if let Some(labels) = name.strip_prefix(sample.as_str()).filter(|l| !l.is_empty()) {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("bad labels in {sample_line:?}"));
                for pair in inner.split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    assert!(
                        k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                        "{k}"
                    );
                    assert!(
                        v.len() >= 2 && v.starts_with('"') && v.ends_with('"'),
                        "{v}"
                    );
                }
            }
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("{name}: not an integer: {value:?}"));
            assert!(
                !out.iter()
                    .any(|(s, _, _): &(String, String, u64)| *s == name),
                "{name} twice"
            );
            out.push((name.to_owned(), ty.to_owned(), value));
            samples += 1;
        }
        assert!(samples > 0, "{family} has no sample");
    }
    assert!(eof, "no # EOF");
    out
}

/// Every metric of the README's table, with its exact value in a scenario
/// where each one is known (several were only checked with `>=`, three
/// not at all).
#[cfg(feature = "metrics")]
#[tokio::test]
async fn every_metric_in_the_readme_has_its_exact_value() {
    use support::request_on;

    let hub = Hub::builder()
        .buffer(3)
        .max_topics(2)
        .retry_jitter(0.0)
        .build();
    let mut config = ServerConfig::default();
    config.max_connections = 2;
    let service = SseService::new(hub);
    let server = TestServer::start_with(service.clone(), config).await;
    let (addr, hub) = (server.addr, server.hub.clone());
    let e = hub.epoch();

    // Connections: a stream and an idle connection fill the server, so a
    // third is refused. (The server accepts in order; the idle one later
    // asks for the metrics.)
    let mut live = server.subscribe("/events/m").await;
    assert_eq!(live.next_item().await, Some(support::Item::Retry(3000)));
    assert_eq!(
        live.next_item().await,
        Some(support::Item::IdOnly(format!("{e}-0")))
    );
    let idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        request(addr, "GET", "/healthz", &[], b"").await,
        (503, "server is at its connection limit\n".into())
    );

    // Four events into a ring of three; the live stream gets all four.
    for i in 1..=4 {
        hub.publish("m", Event::new(format!("m{i}"))).await.unwrap();
        assert_eq!(live.next_event().await.data, format!("m{i}"));
    }
    // Replays, an `evicted` and a `malformed` resync, served in-process so
    // they take no connection.
    let get = |last_id: &str, limit: u64| {
        http::Request::get(format!("/events/m?limit={limit}"))
            .header("last-event-id", last_id)
            .body(Empty::<Bytes>::new())
            .unwrap()
    };
    let frame = |i: u64| format!("data: m{i}\nid: {e}-{i}\n\n");
    let ring = (2..=4).map(frame).collect::<String>();
    assert_eq!(
        call(&service, get(&format!("{e}-1"), 3)).await,
        (200, format!("retry: 3000\n{ring}"))
    );
    let resync = |json: String, at: u64| {
        format!("retry: 3000\nevent: resync\ndata: {json}\nid: {e}-{at}\n\n")
    };
    assert_eq!(
        call(&service, get(&format!("{e}-0"), 3)).await,
        (
            200,
            resync(
                format!(
                    r#"{{"reason":"evicted","requested":"{e}-0","oldest":"{e}-2","latest":"{e}-4","missed":1}}"#
                ),
                1
            ) + &ring
        )
    );
    assert_eq!(
        call(&service, get("junk", 1)).await,
        (
            200,
            resync(
                format!(
                    r#"{{"reason":"malformed","requested":"junk","oldest":"{e}-2","latest":"{e}-4"}}"#
                ),
                1
            ) + &frame(2)
        )
    );
    // A third topic retires the idle one (`m` has a subscriber).
    hub.publish("a", Event::new("a1")).await.unwrap();
    let b = hub.publish("b", Event::new("b1")).await.unwrap();
    assert!(hub.topic_info("a").is_none());

    let (status, headers, text) = request_on(idle, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let metrics = parse_openmetrics(&text);
    // A labelled family as the README names it: `name{label,label}`.
    let mut names: Vec<_> = metrics
        .iter()
        .map(|(n, t, _)| {
            let name = match n.split_once('{') {
                Some((base, labels)) => {
                    let keys: Vec<_> = labels
                        .trim_end_matches('}')
                        .split(',')
                        .map(|p| p.split_once('=').unwrap().0)
                        .collect();
                    format!("{base}{{{}}}", keys.join(","))
                }
                None => n.clone(),
            };
            (name, t.clone())
        })
        .collect();
    names.dedup();
    let mut documented = readme_metrics();
    names.sort();
    documented.sort();
    assert_eq!(names, documented, "the README's table and /metrics differ");

    let retained = (2..=4)
        .map(|i| frame_len(2, &format!("{e}-{i}")))
        .sum::<usize>()
        + frame_len(2, &b.to_string());
    let want = [
        ("ssehub_subscribers", 1),
        ("ssehub_topics", 2),
        ("ssehub_retained_bytes", retained as u64),
        ("ssehub_connections", 2), // the stream and this request
        ("ssehub_events_published_total", 6),
        ("ssehub_events_delivered_total", 4 + 3 + 3 + 1),
        ("ssehub_events_replayed_total", 3 + 3 + 1),
        ("ssehub_resyncs_total", 2),
        ("ssehub_topics_retired_total", 1),
        // Non-zero values: tests/server/idempotency.rs.
        ("ssehub_idempotent_replays_total", 0),
        ("ssehub_idempotent_conflicts_total", 0),
        ("ssehub_connections_accepted_total", 2),
        ("ssehub_connections_rejected_total", 1),
        // Non-zero values: tests/durable/protocol.rs (from HubStats).
        ("ssehub_durable_streams", 0),
        ("ssehub_durable_live_reads", 0),
        ("ssehub_durable_appends_total", 0),
        ("ssehub_durable_duplicates_total", 0),
        // Non-zero values: tests/mercure/protocol.rs (from HubStats).
        ("ssehub_mercure_subscribers", 0),
        ("ssehub_mercure_updates_total", 0),
        ("ssehub_mercure_duplicates_total", 0),
    ];
    // The refused connection asked for the health check (not a stream):
    // a `503`. Every other reason and answer is there, at zero.
    let refusals = [
        "connections",
        "connections_per_ip",
        "shutting_down",
        "topics",
        "storage",
    ]
    .into_iter()
    .flat_map(|reason| {
        ["retry", "503"].into_iter().map(move |answer| {
            (
                format!(r#"ssehub_refusals_total{{reason="{reason}",answer="{answer}"}}"#),
                u64::from(reason == "connections" && answer == "503"),
            )
        })
    })
    .collect::<Vec<_>>();
    let want: Vec<(&str, u64)> = want
        .into_iter()
        .chain(refusals.iter().map(|(n, v)| (n.as_str(), *v)))
        .collect();
    let got: Vec<(&str, u64)> = metrics.iter().map(|(n, _, v)| (n.as_str(), *v)).collect();
    for &(name, value) in &want {
        assert_eq!(
            got.iter().find(|(n, _)| *n == name),
            Some(&(name, value)),
            "{name} in\n{text}"
        );
    }
    assert_eq!(got.len(), want.len());
}
