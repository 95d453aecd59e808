//! What ssehub adds around the Durable Streams protocol, over real sockets
//! (the suite in `conformance.rs` judges the protocol itself): streams and
//! native topics never meet, who may write and read, the bounds (topics,
//! bodies, names), long-poll timing and wake-ups, offsets never reused.

use std::time::{Duration, Instant};

use ssehub::{Hub, HubError, SseService};

use crate::support::{TestServer, WAIT, header, request, request_full};

fn service(hub: Hub) -> SseService {
    SseService::builder(hub)
        .long_poll_timeout(Duration::from_millis(300))
        .build()
}

async fn put(server: &TestServer, path: &str, ct: &str, body: &str) -> (u16, String) {
    request(
        server.addr,
        "PUT",
        path,
        &[("Content-Type", ct)],
        body.as_bytes(),
    )
    .await
}

/// Creates a text stream, appends `text`, and returns the offset after it.
async fn stream_with(server: &TestServer, path: &str, text: &str) -> String {
    let (status, _) = put(server, path, "text/plain", "").await;
    assert_eq!(status, 201);
    let (status, h, _) = request_full(
        server.addr,
        "POST",
        path,
        &[("Content-Type", "text/plain")],
        text.as_bytes(),
    )
    .await;
    assert_eq!(status, 204);
    header(&h, "stream-next-offset").unwrap().to_owned()
}

#[tokio::test]
async fn streams_and_native_topics_never_meet() {
    let server = TestServer::start_service(service(Hub::new())).await;
    stream_with(&server, "/v1/stream/chat/room-1", "secret").await;
    // The stream's topic is `ds:chat:room-1`: the native API cannot reach it.
    for (method, path) in [
        ("GET", "/events/ds:chat:room-1"),
        ("POST", "/events/ds:chat:room-1"),
        ("GET", "/events?topic=news&topic=ds:chat:room-1"),
        ("HEAD", "/events/ds:chat:room-1"),
    ] {
        let (status, body) = request(server.addr, method, path, &[], b"x").await;
        assert_eq!(status, 400, "{method} {path}: {body}");
    }
    let refused = server
        .hub
        .publish("ds:chat:room-1", ssehub::Event::new("x"))
        .await;
    assert!(
        matches!(refused, Err(HubError::ReservedTopic(_))),
        "{refused:?}"
    );
    // A native topic of the same spelling is another history.
    let (status, _) = server.post("/events/chat:room-1", "native").await;
    assert_eq!(status, 201);
    let (status, body) = request(
        server.addr,
        "GET",
        "/v1/stream/chat/room-1?offset=-1",
        &[],
        b"",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "secret"));
    // Paths that differ only where the encoding could collide stay apart.
    stream_with(&server, "/v1/stream/a.b", "dot").await;
    stream_with(&server, "/v1/stream/a:b", "colon").await;
    stream_with(&server, "/v1/stream/a/b", "slash").await;
    for (path, want) in [
        ("a.b", "dot"),
        ("a:b", "colon"),
        ("a/b", "slash"),
        ("a%2Eb", "dot"),
    ] {
        let (status, body) =
            request(server.addr, "GET", &format!("/v1/stream/{path}"), &[], b"").await;
        assert_eq!((status, body.as_str()), (200, want), "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn names_and_bodies_are_bounded() {
    let service = SseService::builder(Hub::new()).max_body_bytes(1000).build();
    let server = TestServer::start_service(service).await;
    let long = format!("/v1/stream/{}", "x".repeat(126));
    let (status, body) = put(&server, &long, "text/plain", "").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("too long"), "{body}");
    let fits = format!("/v1/stream/{}", "x".repeat(125));
    assert_eq!(put(&server, &fits, "text/plain", "").await.0, 201);
    let (status, _) = put(&server, "/v1/stream/bad%zz", "text/plain", "").await;
    assert_eq!(status, 400);
    let big = "y".repeat(1001);
    let (status, _) = put(&server, "/v1/stream/big", "text/plain", &big).await;
    assert_eq!(status, 413);
    assert_eq!(
        put(&server, "/v1/stream/big", "text/plain", "").await.0,
        201
    );
    let (status, _) = request(
        server.addr,
        "POST",
        "/v1/stream/big",
        &[("Content-Type", "text/plain")],
        big.as_bytes(),
    )
    .await;
    assert_eq!(status, 413);
    // A body far over the bound is read to its end before the `413`, so a
    // client still sending it gets the answer, not a reset.
    let huge = vec![b'z'; 4 << 20];
    for _ in 0..3 {
        let (status, _) = request(
            server.addr,
            "POST",
            "/v1/stream/big",
            &[("Content-Type", "text/plain")],
            &huge,
        )
        .await;
        assert_eq!(status, 413);
    }
    // Nothing of a refused append is kept.
    let (_, body) = request(server.addr, "GET", "/v1/stream/big", &[], b"").await;
    assert_eq!(body, "");
    server.stop().await;
}

#[tokio::test]
async fn streams_hold_their_topics_and_a_full_hub_refuses_creates() {
    let hub = Hub::builder().max_topics(2).build();
    let server = TestServer::start_service(service(hub)).await;
    stream_with(&server, "/v1/stream/one", "1").await;
    stream_with(&server, "/v1/stream/two", "2").await;
    // Neither a new stream nor a native topic may push a stream out.
    let (status, _) = put(&server, "/v1/stream/three", "text/plain", "").await;
    assert_eq!(status, 503);
    let (status, _) = server.post("/events/native", "x").await;
    assert_eq!(status, 503);
    for (path, want) in [("one", "1"), ("two", "2")] {
        let (_, body) = request(server.addr, "GET", &format!("/v1/stream/{path}"), &[], b"").await;
        assert_eq!(body, want);
    }
    // A deleted stream frees its place.
    let (status, _) = request(server.addr, "DELETE", "/v1/stream/one", &[], b"").await;
    assert_eq!(status, 204);
    assert_eq!(
        put(&server, "/v1/stream/three", "text/plain", "").await.0,
        201
    );
    server.stop().await;
}

#[tokio::test]
async fn a_path_created_again_never_repeats_an_offset() {
    let server = TestServer::start_service(service(Hub::new())).await;
    let old = stream_with(&server, "/v1/stream/again", "old").await;
    let (status, _) = request(server.addr, "DELETE", "/v1/stream/again", &[], b"").await;
    assert_eq!(status, 204);
    let new = stream_with(&server, "/v1/stream/again", "new").await;
    assert_ne!(old, new);
    assert!(
        old < new,
        "offsets of the new stream sort after the old ones"
    );
    let (status, body) = request(
        server.addr,
        "GET",
        &format!("/v1/stream/again?offset={old}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 410, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_long_poll_waits_its_timeout_and_a_close_ends_it_at_once() {
    let server = TestServer::start_service(service(Hub::new())).await;
    let tail = stream_with(&server, "/v1/stream/lp", "x").await;
    let path = format!("/v1/stream/lp?offset={tail}&live=long-poll");
    let started = Instant::now();
    let (status, h, _) = request_full(server.addr, "GET", &path, &[], b"").await;
    let waited = started.elapsed();
    assert_eq!(status, 204);
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    let cursor = header(&h, "stream-cursor").unwrap().to_owned();
    assert!(cursor.bytes().all(|b| b.is_ascii_digit()), "{cursor}");
    assert_eq!(header(&h, "stream-next-offset"), Some(tail.as_str()));

    // Data wakes a waiting long-poll; so does a close.
    let addr = server.addr;
    let p = path.clone();
    let waiting = tokio::spawn(async move { request_full(addr, "GET", &p, &[], b"").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = request(
        addr,
        "POST",
        "/v1/stream/lp",
        &[("Content-Type", "text/plain")],
        b"y",
    )
    .await;
    assert_eq!(status, 204);
    let (status, h, body) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (200, "y"));
    let next = header(&h, "stream-next-offset").unwrap().to_owned();

    let p = format!("/v1/stream/lp?offset={next}&live=long-poll");
    let waiting = tokio::spawn(async move { request_full(addr, "GET", &p, &[], b"").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = request(
        addr,
        "POST",
        "/v1/stream/lp",
        &[("Stream-Closed", "true")],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    let (status, h, _) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(status, 204);
    assert_eq!(header(&h, "stream-closed"), Some("true"));
    server.stop().await;
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn writes_need_the_publish_token_and_reads_a_jwt_granting_the_stream() {
    use crate::support::jwt::{mint_hs256, now};
    use ssehub::http::JwtKey;

    const SECRET: &[u8] = b"durable secret";
    let service = SseService::builder(Hub::new())
        .publish_token("pub-token")
        .jwt_key(JwtKey::hs256(SECRET))
        .build();
    let server = TestServer::start_service(service).await;
    let addr = server.addr;
    let ct = ("Content-Type", "text/plain");
    let auth = ("Authorization", "Bearer pub-token");
    for method in ["PUT", "POST", "DELETE"] {
        let (status, _) = request(addr, method, "/v1/stream/chat/a", &[ct], b"x").await;
        assert_eq!(status, 401, "{method} without the token");
    }
    let (status, _) = request(addr, "PUT", "/v1/stream/chat/a", &[ct, auth], b"hi").await;
    assert_eq!(status, 201);
    let (status, _) = request(addr, "GET", "/v1/stream/chat/a", &[], b"").await;
    assert_eq!(status, 401, "a read without a JWT");
    let token = |grant: &str| {
        mint_hs256(
            SECRET,
            &serde_json::json!({"exp": now() + 60, "ssehub": {"subscribe": [grant]}}),
        )
    };
    let chat = format!("Bearer {}", token("ds:chat:*"));
    let (status, body) = request(
        addr,
        "GET",
        "/v1/stream/chat/a",
        &[("Authorization", &chat)],
        b"",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hi"));
    let other = format!("Bearer {}", token("ds:other"));
    let (status, _) = request(
        addr,
        "GET",
        "/v1/stream/chat/a",
        &[("Authorization", &other)],
        b"",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = request(
        addr,
        "HEAD",
        "/v1/stream/chat/a",
        &[("Authorization", &other)],
        b"",
    )
    .await;
    assert_eq!(status, 403);
    server.stop().await;
}

#[tokio::test]
async fn the_hub_counts_streams_writes_duplicates_and_live_reads() {
    let server = TestServer::start_service(service(Hub::new())).await;
    let addr = server.addr;
    stream_with(&server, "/v1/stream/m1", "a").await;
    stream_with(&server, "/v1/stream/m2", "b").await;
    let producer = |seq: &'static str| {
        [
            ("Content-Type", "text/plain"),
            ("Producer-Id", "p"),
            ("Producer-Epoch", "0"),
            ("Producer-Seq", seq),
        ]
    };
    let (status, _) = request(addr, "POST", "/v1/stream/m1", &producer("0"), b"c").await;
    assert_eq!(status, 200);
    let (status, _) = request(addr, "POST", "/v1/stream/m1", &producer("0"), b"c").await;
    assert_eq!(status, 204, "the retry is a duplicate");
    let s = server.hub.stats();
    assert_eq!(
        (s.durable_streams, s.durable_appends, s.durable_duplicates),
        (2, 3, 1)
    );
    let (status, h, _) = request_full(addr, "HEAD", "/v1/stream/m2", &[], b"").await;
    assert_eq!(status, 200);
    let tail = header(&h, "stream-next-offset").unwrap().to_owned();
    let path = format!("/v1/stream/m2?offset={tail}&live=long-poll");
    let waiting = tokio::spawn(async move { request(addr, "GET", &path, &[], b"").await });
    let deadline = Instant::now() + WAIT;
    while server.hub.stats().durable_live_reads != 1 {
        if Instant::now() > deadline || waiting.is_finished() {
            panic!("the long-poll is never counted: {:?}", waiting.await);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, _) = request(addr, "DELETE", "/v1/stream/m2", &[], b"").await;
    assert_eq!(status, 204);
    let (status, _) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(status, 404, "a deleted stream ends its long-polls");
    let s = server.hub.stats();
    assert_eq!((s.durable_streams, s.durable_live_reads), (1, 0));
    server.stop().await;
}

/// SSE gives text back byte for byte (but line breaks, which the protocol
/// turns into LF): a line that starts with a space keeps it, though the
/// protocol writes `data:` without one.
#[tokio::test]
async fn sse_keeps_the_leading_space_of_every_line() {
    let server = TestServer::start_service(service(Hub::new())).await;
    let text = " lead\n  two\nthree \n";
    stream_with(&server, "/v1/stream/spaces", text).await;
    let mut sse =
        crate::support::SseClient::get(server.addr, "/v1/stream/spaces?offset=-1&live=sse", &[])
            .await;
    let data = sse.next_event().await;
    assert_eq!(data.event_type, "data");
    assert_eq!(data.data, text);
    let control = sse.next_event().await;
    assert_eq!(control.event_type, "control");
    server.stop().await;
}

/// A refused create changes nothing: no topic is made (or retired to make
/// room) for a body that is not JSON, a bad header, or a missing source.
#[tokio::test]
async fn a_refused_create_makes_no_topic() {
    let server = TestServer::start_service(service(Hub::new())).await;
    let topics = || server.hub.stats().topics;
    let before = topics();
    let (status, _) = put(&server, "/v1/stream/j", "application/json", "{oops").await;
    assert_eq!(status, 400);
    let (status, _) = request(
        server.addr,
        "PUT",
        "/v1/stream/t",
        &[("Stream-TTL", "01")],
        b"",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = request(
        server.addr,
        "PUT",
        "/v1/stream/f",
        &[("Stream-Forked-From", "/v1/stream/nothing")],
        b"",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = request(server.addr, "HEAD", "/v1/stream/h", &[], b"").await;
    assert_eq!(status, 404);
    assert_eq!(topics(), before);
    // A fork of a JSON stream, inheriting its type, with a body that is
    // not JSON: refused, no topic, and the source counts no fork.
    put(&server, "/v1/stream/src", "application/json", "[1]").await;
    let before = topics();
    let (status, _) = request(
        server.addr,
        "PUT",
        "/v1/stream/fj",
        &[("Stream-Forked-From", "/v1/stream/src")],
        b"{oops",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(topics(), before);
    let (status, _) = request(server.addr, "DELETE", "/v1/stream/src", &[], b"").await;
    assert_eq!(status, 204);
    let (status, _) = request(server.addr, "HEAD", "/v1/stream/src", &[], b"").await;
    assert_eq!(
        status, 404,
        "gone at once: the refused fork was not counted"
    );
    // A repeated create of a JSON stream still ignores its body.
    assert_eq!(
        put(&server, "/v1/stream/j", "application/json", "[1]")
            .await
            .0,
        201
    );
    assert_eq!(
        put(&server, "/v1/stream/j", "application/json", "{oops")
            .await
            .0,
        200
    );
    server.stop().await;
}
