//! The HTTP/1.1 fast path over real sockets: pipelining behind event
//! streams, the request head limit, and the chunked terminator of its own
//! responses. (The byte-exact comparison with hyper, at every split of the
//! input, is the unit test `server::testing::differential`.)

use crate::support;

use ssehub::{Event, Hub};
use support::{TestServer, WAIT, answers, exchange, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A replay of one event: `GET /events/{topic}?limit=1&lastEventId={e}-0`.
fn replay_one(topic: &str, epoch: &str, extra: &str) -> String {
    format!("GET /events/{topic}?limit=1&lastEventId={epoch}-0 HTTP/1.1\r\n{extra}\r\n")
}

/// Regression (issue 12, finding 3): the fast path read the client's bytes
/// while streaming and reset the connection, with no answer at all, once
/// more than 16 KiB were pipelined behind an event stream GET (300 copies of
/// a 67-byte GET). hyper's path answers such a load in full; so must this.
#[tokio::test]
async fn three_hundred_pipelined_stream_gets_are_all_answered() {
    let server = TestServer::start(Hub::new()).await;
    server.hub.publish("t1", Event::new("x")).await.unwrap();
    let e = server.hub.epoch().to_string();
    let mut input = replay_one("t1", &e, "").repeat(299);
    input.push_str(&replay_one("t1", &e, "Connection: close\r\n"));
    assert!(
        input.len() > 16 << 10,
        "more than the head limit is pipelined"
    );

    let out = exchange(server.addr, input.into_bytes()).await;
    let got = answers(&out);
    assert_eq!(got.len(), 300, "every request is answered");
    let want = format!("retry: 3000\ndata: x\nid: {e}-1\n\n");
    for (i, a) in got.iter().enumerate() {
        assert_eq!(a.status, 200, "response {i}");
        assert!(a.terminated, "response {i} ends with the last chunk");
        // The hub's retry hint is jittered; the rest is exact.
        let body = String::from_utf8(a.body.clone()).unwrap();
        let (_, rest) = body.split_once('\n').unwrap();
        assert_eq!(rest, want.split_once('\n').unwrap().1, "response {i}");
    }
    assert_eq!(header(&got[299].headers, "connection"), Some("close"));
}

/// Regression (issue 12, finding 4): the head limit was checked before each
/// read instead of across reads, and a read could take up to 16 KiB more, so
/// a 30,000-byte head that arrived as 16,383 + 13,617 bytes was served. The
/// limit is 16 KiB, as on hyper's path: `431`.
#[tokio::test(flavor = "current_thread")]
async fn a_head_over_the_limit_that_arrives_in_two_parts_gets_431() {
    let server = TestServer::start(Hub::new()).await;
    server.hub.publish("t", Event::new("x")).await.unwrap();
    let e = server.hub.epoch().to_string();
    let start = format!("GET /events/t?limit=1&lastEventId={e}-0 HTTP/1.1\r\nHost: x\r\nX-Pad: ");
    let end = "\r\nConnection: close\r\n\r\n";
    let pad = "p".repeat(30_000 - start.len() - end.len());
    let head = format!("{start}{pad}{end}").into_bytes();
    assert_eq!(head.len(), 30_000);

    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&head[..16_383]).await.unwrap();
    // Let the server (on this same thread) accept and read the first part:
    // each yield lets the runtime poll the socket driver once.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    // The server may answer and close before it reads the rest.
    let _ = s.write_all(&head[16_383..]).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .expect("the server answers and closes");
    let got = answers(&out);
    assert_eq!(got.len(), 1, "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(got[0].status, 431);
}

/// The fast path's own chunked terminator: two pipelined stream requests,
/// both answered by the fast path on one connection, each response ending
/// with `0\r\n\r\n` before the next one starts.
#[tokio::test]
async fn each_pipelined_stream_response_ends_with_the_last_chunk() {
    let server = TestServer::start(Hub::new()).await;
    for i in 1..=3 {
        server
            .hub
            .publish("two", Event::new(format!("e{i}")))
            .await
            .unwrap();
    }
    let e = server.hub.epoch().to_string();
    let input = format!(
        "GET /events/two?lastEventId={e}-0&limit=2 HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /events/two?lastEventId={e}-2&limit=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let out = exchange(server.addr, input.into_bytes()).await;
    let got = answers(&out);
    assert_eq!(got.len(), 2, "{:?}", String::from_utf8_lossy(&out));
    for a in &got {
        assert_eq!(a.status, 200);
        assert_eq!(header(&a.headers, "transfer-encoding"), Some("chunked"));
        assert!(a.raw.ends_with(b"\r\n0\r\n\r\n"), "{a:?}");
        assert!(a.terminated);
    }
    assert!(String::from_utf8_lossy(&got[0].body).ends_with(&format!("data: e2\nid: {e}-2\n\n")));
    assert!(String::from_utf8_lossy(&got[1].body).ends_with(&format!("data: e3\nid: {e}-3\n\n")));
    // Nothing follows the second response.
    assert_eq!(got[0].raw.len() + got[1].raw.len(), out.len());
}

/// A client that keeps sending while its stream is live is pushed back
/// (the server stops reading) instead of being cut off: the stream goes on,
/// and what was pipelined is answered after it, in order.
#[tokio::test]
async fn a_client_pipelining_a_lot_behind_a_live_stream_is_answered_after_it() {
    let server = TestServer::start(Hub::new()).await;
    let e = server.hub.epoch().to_string();
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(b"GET /events/bp?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The response head and the stream's checkpoint.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !out.windows(4).any(|w| w == b"id: ") {
        let n = tokio::time::timeout(WAIT, rd.read(&mut buf))
            .await
            .expect("the stream starts")
            .unwrap();
        assert!(n > 0, "the stream starts");
        out.extend_from_slice(&buf[..n]);
    }
    // 64 KiB of pipelined requests, four times the head limit.
    let one = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let n = (64 << 10) / one.len();
    let mut more = one.repeat(n - 1);
    more.push_str("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(more.as_bytes()).await;
        wr
    });
    // Let the server (on this same thread) see them, then publish a live
    // event: the stream is still there to carry it.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    server.hub.publish("bp", Event::new("live")).await.unwrap();
    tokio::time::timeout(WAIT, rd.read_to_end(&mut out))
        .await
        .expect("the server closes after the last request")
        .unwrap();
    writer.abort();
    let got = answers(&out);
    assert_eq!(got.len(), 1 + n, "every request is answered");
    assert_eq!(got[0].status, 200);
    assert!(got[0].terminated);
    assert!(String::from_utf8_lossy(&got[0].body).ends_with(&format!("data: live\nid: {e}-1\n\n")));
    assert!(
        got[1..]
            .iter()
            .all(|a| a.status == 200 && a.body == b"ok\n")
    );
}
