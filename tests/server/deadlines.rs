//! Every state of a connection has a deadline, on every protocol: HTTP/2
//! prefaces and idle HTTP/2 connections (cleartext and TLS), request bodies
//! that stop or trickle (HTTP/1.1 and HTTP/2), the refusal path and
//! shutdown; and event streams, which never time out.
//!
//! Deadlines here are a few hundred milliseconds, set through
//! `ServerConfig`; every wait is bounded by [`BOUND`], far longer than any
//! deadline and far shorter than the defaults.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ssehub::server::ServerConfig;
use ssehub::{Event, Hub, SseService};
use support::{Item, SseClient, TestServer, header, request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The deadlines of the servers under test.
const D: Duration = Duration::from_millis(400);

/// The longest wait for a deadline to act.
const BOUND: Duration = Duration::from_secs(5);

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

const GOAWAY: u8 = 7;

fn config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.header_read_timeout = D;
    config.idle_timeout = D;
    config.body_read_timeout = D;
    config
}

async fn start(config: ServerConfig) -> TestServer {
    TestServer::start_with(SseService::new(Hub::new()), config).await
}

/// Reads until the peer closes (cleanly or not); what it sent and how long
/// after `since` it closed. Panics if it is still open after [`BOUND`].
async fn until_closed<S: AsyncRead + Unpin>(s: &mut S, since: Instant) -> (Duration, Vec<u8>) {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(BOUND, read)
        .await
        .expect("the server closes the connection");
    (since.elapsed(), got)
}

/// The types of the HTTP/2 frames in `bytes`.
fn frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

/// An h2c client (prior knowledge) whose connection runs in a task.
struct H2 {
    send: h2::client::SendRequest<Bytes>,
    conn: tokio::task::JoinHandle<Result<(), h2::Error>>,
    ping: Option<h2::PingPong>,
}

impl H2 {
    async fn connect(addr: SocketAddr) -> H2 {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (send, mut conn) = h2::client::handshake(tcp).await.unwrap();
        let ping = conn.ping_pong();
        H2 {
            send,
            conn: tokio::spawn(conn),
            ping,
        }
    }

    /// Starts a request; its body stays open unless `end_of_stream`.
    async fn start(
        &mut self,
        method: &str,
        path: &str,
        end_of_stream: bool,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://localhost{path}"))
            .body(())
            .unwrap();
        let mut send = self.send.clone().ready().await.unwrap();
        send.send_request(req, end_of_stream).unwrap()
    }

    /// A complete request without a body: status and body.
    async fn get(&mut self, path: &str) -> (u16, Vec<u8>) {
        let (res, _) = self.start("GET", path, true).await;
        let res = tokio::time::timeout(BOUND, res).await.unwrap().unwrap();
        let status = res.status().as_u16();
        (status, read_all(res.into_body()).await)
    }

    /// Waits for the server to end the connection; its result and when.
    async fn closed(self, since: Instant) -> (Duration, Result<(), h2::Error>) {
        let done = tokio::time::timeout(BOUND, self.conn)
            .await
            .expect("the server closes the connection")
            .unwrap();
        (since.elapsed(), done)
    }
}

async fn read_all(mut body: h2::RecvStream) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = tokio::time::timeout(BOUND, body.data()).await.unwrap() {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    got
}

/// Regression: a socket that sent `PRI * HTTP/2.0\r\n` and nothing else
/// went to hyper-util's protocol detection, which waits for the rest of the
/// preface without a deadline: ten of them held `--max-connections 10` and
/// `/healthz` answered `503` for minutes.
#[tokio::test]
async fn h2_preface_holders_are_closed_and_free_their_slots() {
    const SLOTS: usize = 4;
    let mut config = config();
    config.max_connections = SLOTS;
    let server = start(config).await;
    let t0 = Instant::now();
    let mut holders = Vec::new();
    for _ in 0..SLOTS {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(&PREFACE[..16]).await.unwrap();
        holders.push(s);
    }
    // Accepted in order: the holders have every slot.
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[], b"").await.0,
        503
    );
    for s in &mut holders {
        let (after, _) = until_closed(s, t0).await;
        assert!(after >= D, "closed after {after:?}, before the deadline");
    }
    let freed = async {
        loop {
            if request(server.addr, "GET", "/healthz", &[], b"").await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(BOUND, freed)
        .await
        .expect("the slots are free again");
}

/// Regression: a partial preface, a whole one, and a whole one with its
/// SETTINGS frame each held a connection for minutes. Once HTTP/2 has
/// started, the server says `GOAWAY` before it closes.
#[tokio::test]
async fn every_stage_of_an_h2_preface_is_bounded() {
    let cases: [(&str, Vec<u8>, bool); 4] = [
        ("request line", PREFACE[..16].to_vec(), false),
        ("all but one byte", PREFACE[..23].to_vec(), false),
        ("preface", PREFACE.to_vec(), true),
        ("preface and SETTINGS", [PREFACE, SETTINGS].concat(), true),
    ];
    let mut tasks = JoinSet::new();
    for fast_path in [true, false] {
        let mut config = config();
        config.stream_fast_path = fast_path;
        let server = start(config).await;
        for (name, bytes, goaway) in cases.clone() {
            let addr = server.addr;
            tasks.spawn(async move {
                let t0 = Instant::now();
                let mut s = TcpStream::connect(addr).await.unwrap();
                s.write_all(&bytes).await.unwrap();
                let (after, got) = until_closed(&mut s, t0).await;
                let what = format!("{name} (fast path {fast_path})");
                assert!(after >= D, "{what}: closed after {after:?}");
                if goaway {
                    assert!(
                        frame_types(&got).contains(&GOAWAY),
                        "{what}: GOAWAY before closing, got frames {:?}",
                        frame_types(&got)
                    );
                }
            });
        }
        // The server lives until its connections are checked.
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        drop(server);
    }
}

/// Regression: an HTTP/2 connection that had made one request then stayed
/// open, idle, for minutes. The idle clock starts when the last request
/// ends: a stream that lasted longer than the deadline is not cut, and its
/// end starts a whole deadline.
#[tokio::test]
async fn an_idle_h2_connection_gets_goaway_then_closes() {
    let server = start(config()).await;
    let mut h2 = H2::connect(server.addr).await;
    assert_eq!(h2.get("/healthz").await, (200, b"ok\n".to_vec()));
    let (res, _) = h2.start("GET", "/events/idle?limit=1", true).await;
    let res = tokio::time::timeout(BOUND, res).await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    // Longer than the deadline, in progress all along.
    tokio::time::sleep(2 * D).await;
    assert!(!h2.conn.is_finished(), "a stream in progress is not idle");
    server
        .hub
        .publish("idle", Event::new("last"))
        .await
        .unwrap();
    let body = read_all(res.into_body()).await;
    assert!(String::from_utf8_lossy(&body).contains("data: last\n"));
    // No GOAWAY came while the stream ran: new requests are still served.
    assert_eq!(h2.get("/healthz").await.0, 200);

    let t0 = Instant::now();
    let send = h2.send.clone();
    let (after, done) = h2.closed(t0).await;
    assert!(after >= D, "closed after {after:?}");
    assert!(done.is_ok(), "closed cleanly: {done:?}");
    // The server said GOAWAY, not just closed the socket.
    let Err(refused) = send.ready().await else {
        panic!("new requests are refused after GOAWAY");
    };
    assert!(refused.is_go_away(), "{refused:?}");
    assert_eq!(refused.reason(), Some(h2::Reason::NO_ERROR));
}

/// PINGs are answered but are not requests: a client that only pings is
/// idle.
#[tokio::test]
async fn pings_do_not_keep_an_h2_connection_open() {
    let server = start(config()).await;
    let mut h2 = H2::connect(server.addr).await;
    let t0 = Instant::now();
    let mut ping = h2.ping.take().unwrap();
    let pinger = tokio::spawn(async move {
        let mut pongs = 0;
        while ping.ping(h2::Ping::opaque()).await.is_ok() {
            pongs += 1;
            tokio::time::sleep(D / 4).await;
        }
        pongs
    });
    let (after, done) = h2.closed(t0).await;
    assert!(after >= D, "closed after {after:?}");
    assert!(done.is_ok(), "closed cleanly: {done:?}");
    let pongs = tokio::time::timeout(BOUND, pinger).await.unwrap().unwrap();
    assert!(pongs >= 3, "the server answered the pings: {pongs}");
}

/// Regression: over TLS, a client that negotiated `h2` and sent nothing,
/// or negotiated `http/1.1` and then sent the HTTP/2 preface, kept its
/// connection.
#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_connections_stuck_before_http2_are_closed() {
    use support::tls::{test_tls, tls_connect};

    let (tls, roots) = test_tls();
    let mut config = config();
    config.tls = Some(tls);
    let server = start(config).await;

    let t0 = Instant::now();
    let mut silent = tls_connect(server.addr, roots.clone(), &[b"h2"]).await;
    assert_eq!(silent.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (after, _) = until_closed(&mut silent, t0).await;
    assert!(after >= D, "ALPN h2, no bytes: closed after {after:?}");

    let t0 = Instant::now();
    let mut switched = tls_connect(server.addr, roots, &[b"http/1.1"]).await;
    assert_eq!(switched.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    switched.write_all(PREFACE).await.unwrap();
    switched.flush().await.unwrap();
    let (after, got) = until_closed(&mut switched, t0).await;
    assert!(
        after >= D,
        "ALPN http/1.1, h2 preface: closed after {after:?}"
    );
    assert!(
        frame_types(&got).contains(&GOAWAY),
        "{:?}",
        frame_types(&got)
    );
}

/// A response in progress is never idle: event streams outlive every
/// deadline, over HTTP/2 and over HTTP/1.1 (fast path or hyper).
#[tokio::test]
async fn event_streams_outlive_the_deadlines() {
    let hub = Hub::builder()
        .keep_alive(Some(D / 4))
        .retry_jitter(0.0)
        .build();
    let service = SseService::new(hub.clone());
    let server = TestServer::start_with(service.clone(), config()).await;
    let mut config = config();
    config.stream_fast_path = false;
    let hyper_only = TestServer::start_with(service, config).await;

    let mut h2 = H2::connect(server.addr).await;
    let (res, _) = h2.start("GET", "/events/long", true).await;
    let res = tokio::time::timeout(BOUND, res).await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    let mut h2_body = res.into_body();
    let mut fast = SseClient::get(server.addr, "/events/long", &[]).await;
    let mut hyper = SseClient::get(hyper_only.addr, "/events/long", &[]).await;
    assert_eq!((fast.status, hyper.status), (200, 200));

    // Keep-alive comments flow on all three for several deadlines.
    let until = Instant::now() + 4 * D;
    let mut comments = [0; 3];
    while Instant::now() < until {
        for (i, c) in [&mut fast, &mut hyper].into_iter().enumerate() {
            if let Some(Item::Comment(_)) = c.next_item_within(BOUND).await {
                comments[i] += 1;
            }
        }
        let chunk = tokio::time::timeout(BOUND, h2_body.data())
            .await
            .unwrap()
            .expect("the h2 stream is open")
            .unwrap();
        let _ = h2_body.flow_control().release_capacity(chunk.len());
        comments[2] += 1;
    }
    assert!(comments.iter().all(|&n| n >= 4), "{comments:?}");

    hub.publish("long", Event::new("still here")).await.unwrap();
    assert_eq!(fast.next_event().await.data, "still here");
    assert_eq!(hyper.next_event().await.data, "still here");
    let mut parser = support::Parser::new();
    let ev = loop {
        let chunk = tokio::time::timeout(BOUND, h2_body.data())
            .await
            .unwrap()
            .expect("the h2 stream is open")
            .unwrap();
        let _ = h2_body.flow_control().release_capacity(chunk.len());
        if let Some(ev) = support::events(&parser.feed(&chunk)).pop() {
            break ev;
        }
    };
    assert_eq!(ev.data, "still here");
    // Nor did the h2 connection get GOAWAY: it takes new requests.
    assert_eq!(h2.get("/healthz").await.0, 200);
}

/// Sends a request head announcing a `declared`-byte body, then `body`.
async fn post_head(addr: SocketAddr, declared: usize, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /events/slow HTTP/1.1\r\nHost: localhost\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s
}

/// The status and headers of an HTTP/1.1 response.
fn status_and_headers(raw: &[u8]) -> (u16, support::Headers) {
    let text = String::from_utf8_lossy(raw);
    let (head, _) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// Regression: `POST` with `Content-Length: 100`, two bytes of body, then
/// silence held the connection for minutes. A body that starts fast (100
/// KB, which earns 97 s at the minimum rate) and then stops is ended by
/// the silence rule alone.
#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_closes() {
    let server = start(config()).await;
    for (declared, sent) in [(100, 2), (200_000, 100_000)] {
        let t0 = Instant::now();
        let mut s = post_head(server.addr, declared, &vec![b'x'; sent]).await;
        let (after, got) = until_closed(&mut s, t0).await;
        let (status, headers) = status_and_headers(&got);
        assert_eq!(
            status,
            408,
            "{sent} bytes: {}",
            String::from_utf8_lossy(&got)
        );
        assert_eq!(header(&headers, "connection"), Some("close"));
        assert!(after >= D, "{sent} bytes: answered after {after:?}");
    }
    assert_eq!(server.hub.stats().published, 0);
}

/// Regression: a body trickling one byte every two seconds, never silent
/// for long, held the connection; the minimum rate ends it.
#[tokio::test]
async fn a_trickled_body_gets_408() {
    let server = start(config()).await;
    let t0 = Instant::now();
    let s = post_head(server.addr, 100, b"a").await;
    let (mut rx, mut tx) = s.into_split();
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(D / 3);
        tick.tick().await;
        loop {
            tick.tick().await;
            if tx.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let (after, got) = until_closed(&mut rx, t0).await;
    trickle.abort();
    let (status, _) = status_and_headers(&got);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&got));
    assert!(after >= D, "answered after {after:?}");
}

/// The same two bodies over HTTP/2 get `408` on their stream; the
/// connection goes on serving.
#[tokio::test]
async fn slow_h2_bodies_get_408_on_their_stream() {
    let server = start(config()).await;
    let mut h2 = H2::connect(server.addr).await;

    let t0 = Instant::now();
    let (res, mut body) = h2.start("POST", "/events/slow", false).await;
    body.send_data(Bytes::from_static(b"ab"), false).unwrap();
    let res = tokio::time::timeout(BOUND, res).await.unwrap().unwrap();
    assert_eq!(res.status(), 408, "stalled");
    assert!(t0.elapsed() >= D);
    assert!(res.headers().get("connection").is_none());

    let t0 = Instant::now();
    let (res, mut body) = h2.start("POST", "/events/slow", false).await;
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(D / 3);
        loop {
            tick.tick().await;
            if body.send_data(Bytes::from_static(b"x"), false).is_err() {
                return;
            }
        }
    });
    let res = tokio::time::timeout(BOUND, res).await.unwrap().unwrap();
    trickle.abort();
    assert_eq!(res.status(), 408, "trickled");
    assert!(t0.elapsed() >= D);

    assert_eq!(h2.get("/healthz").await.0, 200);
    assert_eq!(server.hub.stats().published, 0);
}

/// A slow but steady body is not cut: 64 KiB at 2.5 times the minimum
/// rate, in small pieces, outlasting the grace, publishes.
#[tokio::test]
async fn a_slow_steady_body_publishes() {
    const SIZE: usize = 64 << 10;
    const PIECE: usize = 2 << 10;
    // A longer grace than the other tests': a loaded machine may stall the
    // writer for a while, and this test must not flake.
    const GRACE: Duration = Duration::from_secs(1);
    let mut config = config();
    config.body_read_timeout = GRACE;
    config.min_body_rate = 16 << 10;
    let server = start(config).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /events/steady HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {SIZE}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // 2 KiB every 50 ms: 40 KiB/s, pauses far below the silence deadline.
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    for _ in 0..SIZE / PIECE {
        tick.tick().await;
        s.write_all(&[b'x'; PIECE]).await.unwrap();
    }
    let sent = t0.elapsed();
    let (_, got) = until_closed(&mut s, t0).await;
    assert_eq!(
        status_and_headers(&got).0,
        201,
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(sent > GRACE, "the rate rule applied: {sent:?}");
    assert_eq!(server.hub.topic_info("steady").unwrap().latest.seq(), 1);
}

/// A connection over the limit is answered `503` and closed, and one that
/// sends an HTTP/2 preface instead of a request is closed in bounded time
/// too.
#[tokio::test]
async fn refused_connections_are_closed_in_bounded_time() {
    let mut config = config();
    config.max_connections = 1;
    let server = start(config).await;
    let _held = server.subscribe("/events/held").await;
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[], b"").await.0,
        503
    );
    for bytes in [&b""[..], &PREFACE[..16], PREFACE] {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        until_closed(&mut s, t0).await;
    }
}

/// Shutdown does not wait on a connection stuck in the HTTP/2 preface.
#[tokio::test]
async fn shutdown_is_not_held_by_a_stuck_preface() {
    let mut config = config();
    config.idle_timeout = Duration::from_secs(60);
    config.header_read_timeout = Duration::from_secs(60);
    let server = start(config).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(&PREFACE[..16]).await.unwrap();
    // The connection is being served before the server stops.
    assert_eq!(
        request(server.addr, "GET", "/healthz", &[], b"").await.0,
        200
    );
    let t0 = Instant::now();
    server.stop().await;
    until_closed(&mut s, t0).await;
    assert!(t0.elapsed() < ServerConfig::default().shutdown_timeout);
}

/// Property over extreme deadlines (issue 20, finding 6, beyond the
/// flags): a library user's `ServerConfig` with every deadline at
/// `Duration::MAX` (or `u64::MAX` seconds) serves a stream, a publish, a
/// `HEAD` and an HTTP/2 request without a panic (the clock cannot add
/// such a duration).
#[tokio::test]
async fn extreme_deadlines_never_panic_the_server() {
    for d in [Duration::MAX, Duration::from_secs(u64::MAX)] {
        let mut config = ServerConfig::default();
        config.header_read_timeout = d;
        config.body_read_timeout = d;
        config.idle_timeout = d;
        config.shutdown_timeout = d;
        let server = TestServer::start_with(SseService::new(Hub::new()), config).await;
        let mut c = SseClient::get(server.addr, "/events/t", &[]).await;
        assert_eq!(c.status, 200);
        let (status, _) = request(server.addr, "POST", "/events/t", &[], b"x").await;
        assert_eq!(status, 201);
        assert_eq!(c.next_event().await.data, "x");
        let (status, _) = request(server.addr, "HEAD", "/events/t", &[], b"").await;
        assert_eq!(status, 200);
        let mut h2 = TcpStream::connect(server.addr).await.unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut settings = [0u8; 9];
        tokio::time::timeout(support::WAIT, h2.read_exact(&mut settings))
            .await
            .expect("the server's SETTINGS in time")
            .unwrap();
        assert_eq!(settings[3], 0x4, "a SETTINGS frame");
    }
}
