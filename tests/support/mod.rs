//! Helpers for the integration tests: an in-process server on an ephemeral
//! loopback port, and a raw-socket SSE client that parses what it receives
//! with the independent parser in `sse.rs`.

#![allow(dead_code, unreachable_pub)]

pub mod chaos;
pub mod flaky;
pub mod jwt;
pub mod multi;
pub mod node;
#[cfg(feature = "cli")]
pub mod process;
pub mod redis;
pub mod resume_client;
pub mod sse;
#[cfg(feature = "tls")]
pub mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use ssehub::server::ServerConfig;
use ssehub::{Hub, Server, SseService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use sse::{Item, Parser, SseEvent};

/// The longest any test waits for one thing to happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a wait on progress ([`until_progress`]) tolerates no progress
/// at all: a machine whose cores others take runs a test slowly, and only
/// one where nothing moves for this long is stuck.
pub const STALL: Duration = Duration::from_secs(120);

/// Polls `check` every 20 ms until it says done. `check` also returns a
/// measure of progress (say, how many clients are connected): the wait
/// fails only when that measure has not changed for `stall`, so a starved
/// machine makes the test slower, never red, and a stuck one still fails.
///
/// # Panics
///
/// When nothing progressed for `stall`, naming `what` and where it stood.
#[track_caller]
pub fn until_progress<'a, P, F>(
    what: &'a str,
    stall: Duration,
    mut check: F,
) -> impl std::future::Future<Output = ()> + 'a
where
    P: PartialEq + std::fmt::Debug + 'a,
    F: FnMut() -> (bool, P) + 'a,
{
    let caller = std::panic::Location::caller();
    async move {
        let mut last: Option<P> = None;
        let mut since = tokio::time::Instant::now();
        loop {
            let (done, now) = check();
            if done {
                return;
            }
            if last.as_ref() != Some(&now) {
                last = Some(now);
                since = tokio::time::Instant::now();
            } else if since.elapsed() > stall {
                panic!("{caller}: {what}: no progress for {stall:?}, stuck at {now:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A server running in this process on `127.0.0.1:0`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(hub: Hub) -> TestServer {
        TestServer::start_service(SseService::new(hub)).await
    }

    pub async fn start_service(service: SseService) -> TestServer {
        TestServer::start_with(service, ServerConfig::default()).await
    }

    pub async fn start_with(service: SseService, config: ServerConfig) -> TestServer {
        let hub = service.hub().clone();
        let server = Server::bind("127.0.0.1:0", service)
            .await
            .expect("bind")
            .with_config(config);
        let addr = server.local_addr().unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run_until(async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            hub,
            stop: Some(tx),
            task,
        }
    }

    /// Shuts the server down and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server result");
    }

    pub async fn subscribe(&self, path: &str) -> SseClient {
        SseClient::get(self.addr, path, &[]).await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, String) {
        request(self.addr, "POST", path, &[], body.as_bytes()).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A one-shot HTTP/1.1 request with `Connection: close`; returns the status
/// and the (un-chunked) body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let (status, _, body) = request_full(addr, method, path, headers, body).await;
    (status, body)
}

/// Like [`request`], with the response headers (names lowercased).
pub async fn request_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Headers, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    request_on(stream, method, path, headers, body).await
}

/// Like [`request_full`], on a connection the caller opened.
pub async fn request_on(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Headers, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let (status, headers, rest) = parse_head(&raw).expect("response head");
    let body = if header(&headers, "transfer-encoding") == Some("chunked") {
        let mut d = Dechunker::default();
        d.feed(rest)
    } else {
        rest.to_vec()
    };
    (
        status,
        headers,
        String::from_utf8(body).expect("utf-8 body"),
    )
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Splits a response into status, headers and what follows the head.
/// Response headers, names lowercased.
pub type Headers = Vec<(String, String)>;

fn parse_head(raw: &[u8]) -> Option<(u16, Headers, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers, &raw[end + 4..]))
}

/// An incremental decoder of `Transfer-Encoding: chunked`.
#[derive(Debug, Default)]
pub struct Dechunker {
    buf: Vec<u8>,
    /// Bytes left in the current chunk's data.
    left: usize,
    /// The CRLF after a chunk's data is still to be skipped.
    crlf: bool,
    pub done: bool,
}

impl Dechunker {
    pub fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(input);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            if self.done {
                break;
            }
            if self.left > 0 {
                let n = self.left.min(self.buf.len() - pos);
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&self.buf[pos..pos + n]);
                pos += n;
                self.left -= n;
                continue;
            }
            if self.crlf {
                if self.buf.len() - pos < 2 {
                    break;
                }
                assert_eq!(
                    &self.buf[pos..pos + 2],
                    b"\r\n",
                    "chunk data ends with CRLF"
                );
                pos += 2;
                self.crlf = false;
                continue;
            }
            let Some(eol) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = std::str::from_utf8(&self.buf[pos..pos + eol]).expect("chunk size");
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .expect("hex chunk size");
            pos += eol + 2;
            if size == 0 {
                self.done = true;
                break;
            }
            self.left = size;
            self.crlf = true;
        }
        self.buf.drain(..pos);
        out
    }
}

/// A subscriber over a raw HTTP/1.1 connection.
pub struct SseClient {
    stream: TcpStream,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    dechunker: Dechunker,
    chunked: bool,
    /// Body bytes still to come, for a response with `Content-Length`.
    length_left: Option<usize>,
    pub parser: Parser,
    queue: std::collections::VecDeque<Item>,
    /// Every body byte received so far.
    pub raw: Vec<u8>,
    pub ended: bool,
}

impl SseClient {
    pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        SseClient::get_on(stream, path, headers).await
    }

    pub async fn get_on(stream: TcpStream, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut req =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        SseClient::open(stream, req.as_bytes()).await
    }

    /// Sends raw request bytes and reads the response head.
    pub async fn open(mut stream: TcpStream, request: &[u8]) -> SseClient {
        stream.write_all(request).await.expect("write request");
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let (status, headers, rest) = loop {
            let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
                .await
                .expect("response head in time")
                .expect("read");
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&buf[..n]);
            if let Some((s, h, rest)) = parse_head(&raw) {
                break (s, h, rest.to_vec());
            }
        };
        let chunked = header(&headers, "transfer-encoding") == Some("chunked");
        let length_left = header(&headers, "content-length").map(|n| n.parse().expect("a length"));
        let mut client = SseClient {
            stream,
            status,
            headers,
            dechunker: Dechunker::default(),
            chunked,
            length_left,
            parser: Parser::new(),
            queue: Default::default(),
            raw: Vec::new(),
            ended: false,
        };
        client.absorb(&rest);
        client
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    fn absorb(&mut self, bytes: &[u8]) {
        let body = if self.chunked {
            let b = self.dechunker.feed(bytes);
            if self.dechunker.done {
                self.ended = true;
            }
            b
        } else if let Some(left) = &mut self.length_left {
            let take = bytes.len().min(*left);
            *left -= take;
            if *left == 0 {
                self.ended = true;
            }
            bytes[..take].to_vec()
        } else {
            bytes.to_vec()
        };
        self.raw.extend_from_slice(&body);
        let items = self.parser.feed(&body);
        self.queue.extend(items);
    }

    /// The next item, or `None` if the response ended first. Panics after
    /// `timeout`.
    pub async fn next_item_within(&mut self, timeout: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(item) = self.queue.pop_front() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .expect("next item in time")
                .unwrap_or(0);
            if n == 0 {
                self.ended = true;
                return None;
            }
            self.absorb(&buf[..n]);
        }
    }

    pub async fn next_item(&mut self) -> Option<Item> {
        self.next_item_within(WAIT).await
    }

    /// The next dispatched event, skipping comments, retry and id-only
    /// frames. Panics if the stream ends first.
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            match self.next_item().await {
                Some(Item::Event(e)) => return e,
                Some(_) => {}
                None => panic!("stream ended while waiting for an event"),
            }
        }
    }

    /// Every item until the response ends.
    pub async fn until_end(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while let Some(item) = self.next_item().await {
            items.push(item);
        }
        items
    }

    /// Reads (with a bounded wait) until the connection ends; panics if it
    /// does not.
    pub async fn expect_end(&mut self) {
        while self.next_item().await.is_some() {}
    }

    /// The response ended with the chunked terminator or its whole
    /// `Content-Length` (not a cut socket).
    pub fn ended_cleanly(&self) -> bool {
        self.dechunker.done || self.length_left == Some(0)
    }

    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// Whether `item` is the `retry:` hint of a hub with the default settings
/// (3000 ms with a jitter of ±50%).
pub fn is_default_retry(item: Option<Item>) -> bool {
    matches!(item, Some(Item::Retry(ms)) if (1500..=4500).contains(&ms))
}

/// The events among items.
pub fn events(items: &[Item]) -> Vec<SseEvent> {
    items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The sequence number of an id.
pub fn seq(id: &str) -> u64 {
    id.rsplit_once('-').unwrap().1.parse().unwrap()
}

/// One response out of a pipelined exchange.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Headers,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The response exactly as received.
    pub raw: Vec<u8>,
    /// A chunked body ended with its last chunk (`0\r\n\r\n`).
    pub terminated: bool,
}

/// Splits what a connection sent into responses (none of them to `HEAD`),
/// in order. A response without `Content-Length` or chunked encoding takes
/// everything up to the close.
pub fn answers(mut raw: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    while let Some((status, headers, rest)) = parse_head(raw) {
        let head_len = raw.len() - rest.len();
        let (body, used, terminated) = if header(&headers, "transfer-encoding") == Some("chunked") {
            let mut d = Dechunker::default();
            // Feed byte by byte so the decoder stops exactly at the end.
            let mut body = Vec::new();
            let mut used = 0;
            for b in rest {
                if d.done {
                    break;
                }
                body.extend(d.feed(std::slice::from_ref(b)));
                used += 1;
            }
            // The decoder stops after the `0` size line; no trailers follow.
            let terminated = d.done && rest[used..].starts_with(b"\r\n");
            if terminated {
                used += 2;
            }
            (body, used, terminated)
        } else if let Some(n) = header(&headers, "content-length") {
            let n: usize = n.parse().expect("content-length");
            let n = n.min(rest.len());
            (rest[..n].to_vec(), n, false)
        } else {
            (rest.to_vec(), rest.len(), false)
        };
        out.push(Answer {
            status,
            headers,
            body,
            raw: raw[..head_len + used].to_vec(),
            terminated,
        });
        raw = &rest[used..];
    }
    out
}

/// Writes `request` (from another task, so that a server pushing back does
/// not block the test) and reads until the server closes.
pub async fn exchange(addr: SocketAddr, request: Vec<u8>) -> Vec<u8> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may close before taking everything (an error answer).
        let _ = wr.write_all(&request).await;
        wr
    });
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, rd.read_to_end(&mut out))
        .await
        .expect("the server closes the connection in time")
        .expect("read until the close");
    writer.abort();
    out
}
