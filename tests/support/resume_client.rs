//! ssehub's own reconnecting test client: an `EventSource` in Rust. It
//! reconnects after every cut, waits the server's `retry:` hint, and sends
//! `Last-Event-ID` with the last id it saw, like a browser.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Dechunker;
use super::sse::{Item, Parser, SseEvent};

/// Everything the client saw.
#[derive(Debug, Default)]
pub struct ClientLog {
    /// Events other than `resync`, in arrival order.
    pub events: Vec<SseEvent>,
    pub resyncs: Vec<SseEvent>,
    /// Events and resyncs, in arrival order.
    pub seen: Vec<super::flaky::Seen>,
    /// When each connection attempt started.
    pub attempts: Vec<Instant>,
    /// When each connection got its response head.
    pub connects: Vec<Instant>,
    /// When each connection was lost.
    pub drops: Vec<Instant>,
    /// The `retry:` hint in force when each connection was lost (ms).
    pub hints: Vec<u64>,
    pub done: bool,
}

pub struct ResumingClient {
    pub log: Arc<Mutex<ClientLog>>,
    task: JoinHandle<()>,
}

impl ResumingClient {
    /// Subscribes to `path` on `addr` until an event with data `until`.
    pub fn spawn(addr: SocketAddr, path: String, until: &'static str) -> ResumingClient {
        let log = Arc::new(Mutex::new(ClientLog::default()));
        let task = tokio::spawn(run(addr, path, until, log.clone()));
        ResumingClient { log, task }
    }

    pub fn is_done(&self) -> bool {
        self.log.lock().unwrap().done
    }
}

impl Drop for ResumingClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(addr: SocketAddr, path: String, until: &'static str, log: Arc<Mutex<ClientLog>>) {
    let mut last_id = String::new();
    let mut retry: Option<u64> = None;
    let mut buf = vec![0u8; 4096];
    loop {
        log.lock().unwrap().attempts.push(Instant::now());
        let mut parser = Parser::resuming(last_id.clone(), retry);
        if let Some((mut stream, rest)) = connect(addr, &path, &last_id).await {
            log.lock().unwrap().connects.push(Instant::now());
            let mut dechunker = Dechunker::default();
            let mut pending = rest;
            loop {
                let body = dechunker.feed(&pending);
                for item in parser.feed(&body) {
                    if let Item::Event(ev) = item {
                        let mut log = log.lock().unwrap();
                        let end = ev.data == until;
                        if ev.event_type == "resync" {
                            let json = serde_json::from_str(&ev.data).unwrap_or_default();
                            log.seen.push(super::flaky::Seen::Resync(json));
                            log.resyncs.push(ev);
                        } else {
                            log.seen.push(super::flaky::Seen::Event(
                                ev.last_event_id.clone(),
                                ev.data.clone(),
                            ));
                            log.events.push(ev);
                        }
                        if end {
                            log.done = true;
                            return;
                        }
                    }
                }
                if dechunker.done {
                    break;
                }
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => pending = buf[..n].to_vec(),
                }
            }
            let mut log = log.lock().unwrap();
            log.drops.push(Instant::now());
            log.hints.push(parser.retry.unwrap_or(3000));
        }
        // What the connection taught us survives it.
        last_id = parser.last_event_id.clone();
        retry = parser.retry;
        tokio::time::sleep(Duration::from_millis(retry.unwrap_or(3000))).await;
    }
}

/// Opens a stream; returns the socket and the body bytes read with the head.
async fn connect(addr: SocketAddr, path: &str, last_id: &str) -> Option<(TcpStream, Vec<u8>)> {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let mut req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n");
    if !last_id.is_empty() {
        req.push_str(&format!("Last-Event-ID: {last_id}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let status_ok = raw.starts_with(b"HTTP/1.1 200");
            if !status_ok {
                return None;
            }
            return Some((stream, raw[end + 4..].to_vec()));
        }
    }
}
