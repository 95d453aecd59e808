//! The official Durable Streams clients, written by others, against the
//! binary (memory store, `--long-poll-timeout 2`) over real TCP on
//! 127.0.0.1, each client through a chaos proxy of its own
//! (`support::chaos`, `Chaos::flaky`: every connection is cut, after a
//! random number of bytes or milliseconds, by reset or clean close, or
//! after a stall). The scripts and the pinned clients are in `clients/`.
//!
//! Covered:
//! - `ts_reads_json_and_text_live_through_cuts`: the TypeScript client
//!   (`@durable-streams/client`, `clients/reader.mjs`) reads a JSON stream
//!   and a text stream, each with `live: "sse"` and with
//!   `live: "long-poll"` (four readers at once), while the test appends
//!   numbered messages with plain POSTs straight to the server; each proxy
//!   cuts at least 50 times. Each reader gets every message exactly once
//!   and in order (JSON: the values, batch after batch; text: the
//!   concatenation equals what was appended), with offsets that only grow.
//! - `ts_reader_killed_resumes_from_its_saved_offset`: a reader process
//!   (JSON over SSE, text over long-poll) saves each batch with its offset
//!   in a journal file (one append for both) and is killed (SIGKILL)
//!   mid-stream; a new process on the same journal resumes from the offset
//!   of its last whole line. The journal holds everything, once, in order.
//! - `python_reads_json_and_text_live_through_cuts`: the Python client
//!   (`durable-streams` on PyPI, `clients/reader.py`), JSON over SSE and
//!   text over long-poll, as the first test.
//! - `ts_idempotent_producers_through_cuts_append_each_batch_once`: four
//!   `IdempotentProducer`s of the TypeScript client (`clients/producers.mjs`,
//!   epoch 0, batches of their own making, five in flight) append to one
//!   JSON stream, each through a cutting proxy, retrying a request whose
//!   answer was cut. The stream holds each producer's messages exactly once
//!   and in its order, and at least one retry was answered `204` (a
//!   duplicate of an append the server had applied before the cut).
//!
//! Neither client survives a cut in the middle of a response body on its
//! own: the session fails (TypeScript: `res.closed` rejects; Python: the
//! iterator raises, and an SSE response that ends is not reconnected). As
//! both clients document, the application resumes from the last offset the
//! client gave it; the scripts do that, and print each restart.
//!
//! Needs Node.js (>= 20), Python 3 and what `.ci/run` installs: `npm ci`
//! and a virtualenv (`.venv`, from `requirements.txt`) in
//! `tests/durable/clients`.

use crate::support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::chaos::{Chaos, ChaosProxy};
use support::process::Ssehub;
use support::{STALL, header, request_full, until_progress};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// Cuts each reader's proxy makes before the writer ends the streams.
const MIN_CUTS: u64 = 50;

/// How long a client may take to reach the end once it was written.
const FINISH: Duration = Duration::from_secs(60);

/// The server's arguments: long-polls that wait 2 s at most.
const SERVER_ARGS: &[&str] = &["--long-poll-timeout", "2"];

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/durable/clients")
}

fn node_ready() {
    assert!(
        clients_dir()
            .join("node_modules/@durable-streams/client")
            .exists(),
        "the TypeScript client is not installed: run `npm ci` in {} \
         (`bash .ci/run` does)",
        clients_dir().display()
    );
}

fn python() -> PathBuf {
    let python = clients_dir().join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python client is not installed: `bash .ci/run` makes {} \
         (python3 -m venv .venv && .venv/bin/pip install -r requirements.txt)",
        python.display()
    );
    python
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Text,
}

impl Kind {
    fn content_type(self) -> &'static str {
        match self {
            Kind::Json => "application/json",
            Kind::Text => "text/plain; charset=utf-8",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Json => "json",
            Kind::Text => "text",
        }
    }

    /// The last message the writer appends; the readers stop after it.
    fn end(self) -> Value {
        match self {
            Kind::Json => json!({"end": true}),
            Kind::Text => json!("END\n"),
        }
    }
}

/// Creates the stream `name` (`PUT`, straight to the server).
async fn create(addr: SocketAddr, name: &str, kind: Kind) {
    let (status, _, body) = request_full(
        addr,
        "PUT",
        &format!("/v1/stream/{name}"),
        &[("Content-Type", kind.content_type())],
        b"",
    )
    .await;
    assert_eq!(status, 201, "PUT /v1/stream/{name}: {body}");
}

/// What the writer appended to one stream.
#[derive(Debug, Default)]
struct Appended {
    /// JSON: every value, in order.
    values: Vec<Value>,
    /// Text: everything, in order.
    text: String,
}

/// Appends numbered messages to streams, round robin, with plain POSTs
/// straight to the server (not through a proxy), until stopped; then the
/// end marker to each.
struct Writer {
    stop: Arc<AtomicBool>,
    posts: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<Appended>>,
}

/// Where a [`Writer`] appends, and how.
#[derive(Clone)]
enum Target {
    /// Plain POSTs, each answered `204`.
    Plain(SocketAddr),
    /// As an idempotent producer (`Producer-Id` per stream, epoch 0): a
    /// POST that gets no answer (the server is down) is sent again, with
    /// the same sequence number, to wherever `addr` then points, until it
    /// is answered `200` or `204` (a duplicate: it had landed).
    Producer(Arc<Mutex<SocketAddr>>),
}

impl Writer {
    fn start(addr: SocketAddr, streams: Vec<(String, Kind)>) -> Writer {
        Writer::start_to(Target::Plain(addr), streams)
    }

    fn start_to(target: Target, streams: Vec<(String, Kind)>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let posts = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, posts) = (stop.clone(), posts.clone());
            async move {
                let mut appended: Vec<Appended> =
                    streams.iter().map(|_| Appended::default()).collect();
                let mut seqs = vec![0u64; streams.len()];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (((name, kind), out), seq) in
                        streams.iter().zip(&mut appended).zip(&mut seqs)
                    {
                        // One to three messages a POST.
                        let count = 1 + n % 3;
                        let body = match kind {
                            Kind::Json => {
                                let values: Vec<Value> = (0..count)
                                    .map(|j| json!({"n": n, "j": j, "s": "é\n✓ \"q\""}))
                                    .collect();
                                out.values.extend(values.iter().cloned());
                                Value::Array(values).to_string()
                            }
                            Kind::Text => {
                                let text: String =
                                    (0..count).map(|j| format!("{n}.{j}: é✓ x\n")).collect();
                                out.text.push_str(&text);
                                text
                            }
                        };
                        append_to(&target, name, *kind, &body, seq).await;
                        posts.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                    // Pacing, not synchronisation: a steady flow.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
                for (((name, kind), out), seq) in streams.iter().zip(&mut appended).zip(&mut seqs) {
                    let end = kind.end();
                    let body = match kind {
                        Kind::Json => {
                            out.values.push(end.clone());
                            end.to_string()
                        }
                        Kind::Text => {
                            let text = end.as_str().unwrap();
                            out.text.push_str(text);
                            text.to_owned()
                        }
                    };
                    append_to(&target, name, *kind, &body, seq).await;
                }
                appended
            }
        });
        Writer { stop, posts, task }
    }

    /// Stops, appends the end markers and returns what was appended.
    async fn finish(self) -> Vec<Appended> {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(support::WAIT, self.task)
            .await
            .expect("the writer stops in time")
            .expect("the writer")
    }
}

/// Appends `body` to stream `name` as `target` says; `seq` is the
/// producer's next sequence number (moved on once the append is answered).
async fn append_to(target: &Target, name: &str, kind: Kind, body: &str, seq: &mut u64) {
    let addr = match target {
        Target::Plain(addr) => return append(*addr, name, kind, body).await,
        Target::Producer(addr) => addr,
    };
    let producer = format!("writer-{name}");
    let seq_text = seq.to_string();
    let headers = [
        ("Content-Type", kind.content_type()),
        ("Producer-Id", producer.as_str()),
        ("Producer-Epoch", "0"),
        ("Producer-Seq", seq_text.as_str()),
    ];
    let deadline = tokio::time::Instant::now() + support::WAIT * 4;
    loop {
        let at = *addr.lock().unwrap();
        match try_request(at, "POST", &format!("/v1/stream/{name}"), &headers, body).await {
            Some((200 | 204, _)) => break,
            Some((status, answer)) if status < 500 => {
                panic!("POST /v1/stream/{name} (producer seq {seq}): {status} {answer}")
            }
            // No answer, or a server error: the same append again.
            _ => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "POST /v1/stream/{name} (producer seq {seq}) gets no answer"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    *seq += 1;
}

/// One HTTP/1.1 request on a new connection: the status and body, or
/// `None` if the connection failed before a whole answer (never panics).
async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    use tokio::io::AsyncWriteExt;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw);
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let (_, answer) = text.split_once("\r\n\r\n")?;
        Some((status, answer.to_owned()))
    };
    tokio::time::timeout(support::WAIT, exchange).await.ok()?
}

async fn append(addr: SocketAddr, name: &str, kind: Kind, body: &str) {
    let (status, _, answer) = request_full(
        addr,
        "POST",
        &format!("/v1/stream/{name}"),
        &[("Content-Type", kind.content_type())],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 204, "POST /v1/stream/{name}: {answer}");
}

/// A client script running as a child process, its stdout lines (JSON)
/// collected as they come.
struct Client {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    eof: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Client {
    fn node(name: &str, script: &str, config: Value) -> Client {
        node_ready();
        Client::spawn(name, "node".into(), script, config)
    }

    fn python(name: &str, config: Value) -> Client {
        Client::spawn(name, python(), "reader.py", config)
    }

    fn spawn(name: &str, program: PathBuf, script: &str, config: Value) -> Client {
        let mut child = Command::new(&program)
            .arg(script)
            .arg(config.to_string())
            .current_dir(clients_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let eof = Arc::new(AtomicBool::new(false));
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut err = child.stderr.take().unwrap();
        let tasks = vec![
            tokio::spawn({
                let (lines, eof) = (lines.clone(), eof.clone());
                async move {
                    while let Ok(Some(line)) = out.next_line().await {
                        // A line cut short by a kill is kept as a string.
                        let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                        lines.lock().unwrap().push(v);
                    }
                    eof.store(true, Ordering::Relaxed);
                }
            }),
            tokio::spawn({
                let stderr = stderr.clone();
                async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = err.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut s = stderr.lock().unwrap();
                        if s.len() < 64 * 1024 {
                            s.push_str(&String::from_utf8_lossy(&buf[..n]));
                        }
                    }
                }
            }),
        ];
        Client {
            name: name.to_owned(),
            child,
            lines,
            stderr,
            eof,
            tasks,
        }
    }

    /// Batches printed so far.
    fn batches(&self) -> usize {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.get("items").is_some() || l.get("text").is_some())
            .count()
    }

    /// Panics if the script failed or exited before its end.
    fn check_alive(&self) {
        let lines = self.lines.lock().unwrap();
        if let Some(e) = lines.iter().find_map(|l| l.get("error")) {
            let last: Vec<String> = lines
                .iter()
                .rev()
                .take(8)
                .rev()
                .map(|l| {
                    let mut t = l.to_string();
                    t.truncate(200);
                    t
                })
                .collect();
            panic!(
                "{}: {e}; {} lines, the last: {last:#?}\n{}",
                self.name,
                lines.len(),
                self.stderr.lock().unwrap()
            );
        }
        let done = lines.iter().any(|l| l.get("done").is_some());
        if self.eof.load(Ordering::Relaxed) && !done {
            panic!(
                "{}: exited before its end; last lines: {:?}\n{}",
                self.name,
                &lines[lines.len().saturating_sub(5)..],
                self.stderr.lock().unwrap()
            );
        }
    }

    /// Waits (progress-bounded, and [`FINISH`] at most) until the script
    /// says it is done; returns its lines.
    async fn finish(mut self) -> Vec<Value> {
        let limit = tokio::time::Instant::now() + FINISH;
        let name = self.name.clone();
        let done = || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.get("done").is_some())
        };
        until_progress(&name, STALL, || {
            self.check_alive();
            assert!(
                tokio::time::Instant::now() < limit,
                "{name}: no end after {FINISH:?}; last lines: {:?}\n{}",
                self.tail(),
                self.stderr.lock().unwrap()
            );
            (done(), self.lines.lock().unwrap().len())
        })
        .await;
        let _ = tokio::time::timeout(support::WAIT, self.child.wait()).await;
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(support::WAIT, t).await;
        }
        self.lines.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) until the script prints its report (`done`
    /// or `error`) or exits; returns its lines, the report last if it came.
    async fn report(mut self, limit: Duration) -> Vec<Value> {
        let ended = |c: &Client| {
            c.eof.load(Ordering::Relaxed)
                || c.lines
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.get("done").is_some() || l.get("error").is_some())
        };
        let end = tokio::time::Instant::now() + limit;
        while !ended(&self) {
            assert!(
                tokio::time::Instant::now() < end,
                "{}: no report after {limit:?}\n{}",
                self.name,
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = tokio::time::timeout(support::WAIT, self.child.wait()).await;
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(support::WAIT, t).await;
        }
        self.lines.lock().unwrap().clone()
    }

    /// SIGKILL; returns what it printed.
    async fn kill(mut self) -> Vec<Value> {
        self.child.start_kill().unwrap();
        tokio::time::timeout(support::WAIT, self.child.wait())
            .await
            .expect("gone in time after SIGKILL")
            .unwrap();
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(support::WAIT, t).await;
        }
        self.lines.lock().unwrap().clone()
    }

    fn tail(&self) -> Vec<Value> {
        let lines = self.lines.lock().unwrap();
        lines[lines.len().saturating_sub(5)..].to_vec()
    }
}

/// What a reader printed, checked against what was appended: every message
/// once, in order (JSON: the values; text: the concatenation), with
/// offsets that grow from batch to batch. Returns a summary for the log.
fn check_reader(name: &str, lines: &[Value], kind: Kind, appended: &Appended) -> String {
    let mut values = Vec::new();
    let mut text = String::new();
    let mut last_offset = String::new();
    let (mut batches, mut restarts) = (0, 0);
    for line in lines {
        if line.get("restart").is_some() {
            restarts += 1;
            continue;
        }
        let Some(offset) = line.get("offset").and_then(Value::as_str) else {
            continue;
        };
        assert!(
            offset > last_offset.as_str(),
            "{name}: offset {offset} after {last_offset} (line {line})"
        );
        last_offset = offset.to_owned();
        batches += 1;
        match kind {
            Kind::Json => values.extend(line["items"].as_array().expect("items").iter().cloned()),
            Kind::Text => text.push_str(line["text"].as_str().expect("text")),
        }
    }
    match kind {
        Kind::Json => {
            if values != appended.values {
                let at = values
                    .iter()
                    .zip(&appended.values)
                    .position(|(a, b)| a != b)
                    .unwrap_or(values.len().min(appended.values.len()));
                panic!(
                    "{name}: got {} values, {} were appended; first difference at {at}: \
                     got {:?}, appended {:?}",
                    values.len(),
                    appended.values.len(),
                    &values[at..(at + 3).min(values.len())],
                    &appended.values[at..(at + 3).min(appended.values.len())],
                );
            }
        }
        Kind::Text => {
            if text != appended.text {
                let at = text
                    .bytes()
                    .zip(appended.text.bytes())
                    .position(|(a, b)| a != b)
                    .unwrap_or(text.len().min(appended.text.len()));
                let around = |s: &str| {
                    let bytes = &s.as_bytes()[at.saturating_sub(40)..(at + 40).min(s.len())];
                    String::from_utf8_lossy(bytes).into_owned()
                };
                panic!(
                    "{name}: got {} bytes, {} were appended; first difference at byte {at}: \
                     got {:?}, appended {:?}",
                    text.len(),
                    appended.text.len(),
                    around(&text),
                    around(&appended.text),
                );
            }
        }
    }
    let messages = match kind {
        Kind::Json => values.len(),
        Kind::Text => text.lines().count(),
    };
    if restarts == 0 {
        format!("{messages} messages in {batches} batches")
    } else {
        format!("{messages} messages in {batches} batches, {restarts} session restarts")
    }
}

/// The last line of a reader that says it is done.
fn done_line(lines: &[Value]) -> &Value {
    lines
        .iter()
        .rev()
        .find(|l| l.get("done").is_some())
        .expect("a done line")
}

fn proxy_summary(proxy: &ChaosProxy) -> String {
    let s = &proxy.stats;
    format!(
        "{} connections, {} cuts ({} resets, {} closes, {} stalls)",
        s.connections.load(Ordering::Relaxed),
        s.cuts(),
        s.resets.load(Ordering::Relaxed),
        s.closes.load(Ordering::Relaxed),
        s.stalls.load(Ordering::Relaxed)
    )
}

/// One reader of the live tests: its stream, how it reads, its proxy.
struct Live {
    stream: String,
    kind: Kind,
    live: &'static str,
    proxy: ChaosProxy,
}

impl Live {
    fn config(&self, offset: &str) -> Value {
        json!({
            "url": format!("http://{}/v1/stream/{}", self.proxy.addr, self.stream),
            "kind": self.kind.name(),
            "live": self.live,
            "offset": offset,
            "end": self.kind.end(),
            "timeoutMs": 120_000,
        })
    }
}

/// Creates one stream per `(kind, live)` and a proxy for each.
async fn live_streams(
    server: &Ssehub,
    prefix: &str,
    combos: &[(Kind, &'static str)],
    seed: u64,
) -> Vec<Live> {
    let mut out = Vec::new();
    for (i, &(kind, live)) in combos.iter().enumerate() {
        let stream = format!("{prefix}-{}-{live}", kind.name());
        create(server.addr, &stream, kind).await;
        let proxy = ChaosProxy::start(server.addr, Chaos::flaky(seed + i as u64)).await;
        out.push(Live {
            stream,
            kind,
            live,
            proxy,
        });
    }
    out
}

/// Keeps the writer going until every proxy cut `MIN_CUTS` times and every
/// client got something; fails early if a client failed.
async fn write_until_cut(readers: &[Live], clients: &[&Client]) {
    until_progress("the proxies cut the readers", STALL, || {
        for c in clients {
            c.check_alive();
        }
        let cuts: Vec<u64> = readers.iter().map(|r| r.proxy.stats.cuts()).collect();
        let batches: Vec<usize> = clients.iter().map(|c| c.batches()).collect();
        let done = cuts.iter().all(|&c| c >= MIN_CUTS) && batches.iter().all(|&b| b > 0);
        (done, (cuts, batches))
    })
    .await;
}

/// Four readers of one client kind (TypeScript or Python) through cuts.
async fn read_live_through_cuts(
    prefix: &str,
    combos: &[(Kind, &'static str)],
    spawn: impl Fn(&str, Value) -> Client,
) {
    let server = Ssehub::start_in_memory(prefix, SERVER_ARGS).await;
    let readers = live_streams(&server, prefix, combos, 0x5EED).await;
    let clients: Vec<Client> = readers
        .iter()
        .map(|r| spawn(&r.stream, r.config("-1")))
        .collect();
    let writer = Writer::start(
        server.addr,
        readers.iter().map(|r| (r.stream.clone(), r.kind)).collect(),
    );
    write_until_cut(&readers, &clients.iter().collect::<Vec<_>>()).await;
    let posts = writer.posts.load(Ordering::Relaxed);
    let appended = writer.finish().await;
    for ((r, client), appended) in readers.iter().zip(clients).zip(&appended) {
        let lines = client.finish().await;
        let summary = check_reader(&r.stream, &lines, r.kind, appended);
        println!(
            "{}: {summary}; requests {}; proxy: {}",
            r.stream,
            done_line(&lines)["requests"],
            proxy_summary(&r.proxy)
        );
        assert!(r.proxy.stats.cuts() >= MIN_CUTS);
        let requests = &done_line(&lines)["requests"];
        assert!(
            requests[r.live].as_u64().unwrap_or(0) > 0,
            "{}: no {} request: {requests}",
            r.stream,
            r.live
        );
    }
    println!("{prefix}: {posts} POSTs by the writer");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_reads_json_and_text_live_through_cuts() {
    let _shared = crate::HEAVY.read().await;
    read_live_through_cuts(
        "ts",
        &[
            (Kind::Json, "sse"),
            (Kind::Json, "long-poll"),
            (Kind::Text, "sse"),
            (Kind::Text, "long-poll"),
        ],
        |name, config| Client::node(name, "reader.mjs", config),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_reads_json_and_text_live_through_cuts() {
    let _shared = crate::HEAVY.read().await;
    read_live_through_cuts(
        "py",
        &[(Kind::Json, "sse"), (Kind::Text, "long-poll")],
        Client::python,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_reader_killed_resumes_from_its_saved_offset() {
    /// Batches the first process saves before it is killed.
    const BEFORE_KILL: usize = 20;
    let _shared = crate::HEAVY.read().await;
    let server = Ssehub::start_in_memory("restart", SERVER_ARGS).await;
    let readers = live_streams(
        &server,
        "restart",
        &[(Kind::Json, "sse"), (Kind::Text, "long-poll")],
        0xD1E,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let journal = |r: &Live| dir.path().join(format!("{}.journal", r.stream));
    let config = |r: &Live| {
        let mut c = r.config("-1");
        c["journal"] = json!(journal(r));
        c
    };
    let first: Vec<Client> = readers
        .iter()
        .map(|r| Client::node(&format!("{} (first)", r.stream), "reader.mjs", config(r)))
        .collect();
    let writer = Writer::start(
        server.addr,
        readers.iter().map(|r| (r.stream.clone(), r.kind)).collect(),
    );
    until_progress("the first readers save batches", STALL, || {
        first.iter().for_each(Client::check_alive);
        let batches: Vec<usize> = first.iter().map(Client::batches).collect();
        (batches.iter().all(|&b| b >= BEFORE_KILL), batches)
    })
    .await;

    // Killed (SIGKILL) while the writer goes on. A new process on the same
    // journal resumes from the offset of its last whole line.
    let mut second = Vec::new();
    let mut saved = Vec::new();
    for (r, client) in readers.iter().zip(first) {
        let lines = client.kill().await;
        assert!(
            !lines.iter().any(|l| l.get("done").is_some()),
            "{}: done before the kill",
            r.stream
        );
        let kept = journal_lines(&journal(r));
        let offset = kept
            .last()
            .expect("a batch saved before the kill")
            .get("offset")
            .cloned()
            .expect("an offset");
        saved.push((kept.len(), offset));
        second.push(Client::node(
            &format!("{} (second)", r.stream),
            "reader.mjs",
            config(r),
        ));
    }
    write_until_cut(&readers, &second.iter().collect::<Vec<_>>()).await;
    let appended = writer.finish().await;
    for (((r, client), (killed_at, offset)), appended) in
        readers.iter().zip(second).zip(saved).zip(&appended)
    {
        let printed = client.finish().await;
        assert_eq!(
            printed.first().map(|l| &l["resumed"]),
            Some(&offset),
            "{}: the second process did not resume from the journal",
            r.stream
        );
        let lines = journal_lines(&journal(r));
        let summary = check_reader(&r.stream, &lines, r.kind, appended);
        println!(
            "{}: {summary} (killed after {killed_at} batches, resumed at {offset}); \
             second process: {} session restarts; proxy: {}",
            r.stream,
            done_line(&printed)["restarts"],
            proxy_summary(&r.proxy)
        );
    }
    server.stop().await;
}

/// ssehub with `--data-dir` killed (SIGKILL) under load and started again
/// on its directory: the TypeScript client's readers (JSON over SSE, text
/// over long-poll, each through a cutting proxy that holds connections
/// while the server is down) and a producer that appends whatever the
/// crash left unanswered again, with its sequence number, go on. Every
/// appended message arrives once and in order: an append answered before
/// the kill and lost would be missing (and the producer's next append a
/// gap); an offset given again after the restart, or producer state lost,
/// would show as a repeated or missing message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_clients_go_on_after_ssehub_on_disk_is_killed() {
    /// Batches each reader gets before the kill, and after the restart.
    const BEFORE: usize = 15;
    let _shared = crate::HEAVY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Ssehub::start(dir.path(), SERVER_ARGS).await;
    let mut readers = Vec::new();
    for (i, (kind, live)) in [(Kind::Json, "sse"), (Kind::Text, "long-poll")]
        .into_iter()
        .enumerate()
    {
        let stream = format!("crash-{}-{live}", kind.name());
        create(server.addr, &stream, kind).await;
        let chaos = Chaos {
            hold_while_down: Some(Duration::from_secs(10)),
            ..Chaos::flaky(0xC4A5 + i as u64)
        };
        let proxy = ChaosProxy::start(server.addr, chaos).await;
        readers.push(Live {
            stream,
            kind,
            live,
            proxy,
        });
    }
    let clients: Vec<Client> = readers
        .iter()
        .map(|r| Client::node(&r.stream, "reader.mjs", r.config("-1")))
        .collect();
    let addr = Arc::new(Mutex::new(server.addr));
    let writer = Writer::start_to(
        Target::Producer(addr.clone()),
        readers.iter().map(|r| (r.stream.clone(), r.kind)).collect(),
    );
    until_progress("the readers get batches", STALL, || {
        clients.iter().for_each(Client::check_alive);
        let b: Vec<usize> = clients.iter().map(Client::batches).collect();
        (b.iter().all(|&n| n >= BEFORE), b)
    })
    .await;
    let posts = writer.posts.load(Ordering::Relaxed);
    server.kill().await;
    let server = Ssehub::start(dir.path(), SERVER_ARGS).await;
    *addr.lock().unwrap() = server.addr;
    for r in &readers {
        r.proxy.set_upstream(server.addr);
    }
    let seen: Vec<usize> = clients.iter().map(Client::batches).collect();
    until_progress("the readers get batches after the restart", STALL, || {
        clients.iter().for_each(Client::check_alive);
        let b: Vec<usize> = clients.iter().map(Client::batches).collect();
        let more = b.iter().zip(&seen).all(|(now, then)| *now >= then + BEFORE);
        (more && writer.posts.load(Ordering::Relaxed) > posts, b)
    })
    .await;
    let appended = writer.finish().await;
    for ((r, client), appended) in readers.iter().zip(clients).zip(&appended) {
        let lines = client.finish().await;
        let summary = check_reader(&r.stream, &lines, r.kind, appended);
        println!(
            "{} (killed after {posts} posts): {summary}; proxy: {}",
            r.stream,
            proxy_summary(&r.proxy)
        );
    }
    server.stop().await;
}

/// The whole lines of a reader's journal.
fn journal_lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or(0, |i| i + 1);
    text[..whole]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_idempotent_producers_through_cuts_append_each_batch_once() {
    producers_through_cuts(None).await;
}

/// The same with `--data-dir`, where the disk writer decides appends on
/// its own copy of the producers (five batches in flight per producer: a
/// batch may be decided before the one ahead of it is synced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ts_idempotent_producers_on_disk_append_each_batch_once() {
    let dir = tempfile::tempdir().unwrap();
    producers_through_cuts(Some(dir.path())).await;
}

async fn producers_through_cuts(data_dir: Option<&std::path::Path>) {
    const PRODUCERS: usize = 4;
    const MESSAGES: u64 = 1000;
    let _shared = crate::HEAVY.read().await;
    node_ready();
    let server = match data_dir {
        Some(dir) => Ssehub::start(dir, SERVER_ARGS).await,
        None => Ssehub::start_in_memory("producers", SERVER_ARGS).await,
    };
    create(server.addr, "producers", Kind::Json).await;
    let mut proxies = Vec::new();
    for i in 0..PRODUCERS {
        proxies.push(ChaosProxy::start(server.addr, Chaos::flaky(0xFACE + i as u64)).await);
    }
    let urls: Vec<String> = proxies
        .iter()
        .map(|p| format!("http://{}/v1/stream/producers", p.addr))
        .collect();
    // The script gives up after 90 s, or as soon as a batch is answered
    // `409` 200 times (a server that lost a producer's place): the stream
    // is checked all the same, then the error.
    let run = Client::node(
        "producers",
        "producers.mjs",
        json!({"urls": urls, "messages": MESSAGES, "seed": 7, "timeoutMs": 90_000}),
    );
    let lines = run.report(Duration::from_secs(100)).await;
    let report = lines.last().cloned().unwrap_or_default();

    // The stream, read straight from the server.
    let values = read_all(server.addr, "producers").await;
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); PRODUCERS];
    for v in &values {
        let p = v["p"].as_u64().expect("p") as usize;
        seen[p].push(v["k"].as_u64().expect("k"));
    }
    let expected: Vec<u64> = (0..MESSAGES).collect();
    for (p, ks) in seen.iter().enumerate() {
        if *ks != expected {
            let at = ks
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(ks.len().min(expected.len()));
            let distinct: std::collections::BTreeSet<_> = ks.iter().collect();
            panic!(
                "producer p{p}: {} messages in the stream for {MESSAGES} appended \
                 ({} more than once, {} missing); first difference at {at}: {:?}; \
                 the producers said: {report}",
                ks.len(),
                ks.len() - distinct.len(),
                MESSAGES as usize - distinct.len(),
                &ks[at..(at + 5).min(ks.len())]
            );
        }
    }
    assert_eq!(values.len() as u64, PRODUCERS as u64 * MESSAGES);
    assert!(
        report.get("done").is_some(),
        "the producers failed: {report}"
    );

    let producers = report["producers"].as_array().expect("producers");
    let mut duplicates = 0;
    for (p, proxy) in producers.iter().zip(&proxies) {
        assert_eq!(p["errors"], json!([]), "{p}");
        duplicates += p["duplicatesOnRetry"].as_u64().unwrap();
        println!(
            "{}{}: {} POSTs, {} attempts, {} retries, statuses {}, {} retries answered 204; \
             proxy: {}",
            if data_dir.is_some() { "(disk) " } else { "" },
            p["id"],
            p["posts"],
            p["attempts"],
            p["retries"],
            p["statuses"],
            p["duplicatesOnRetry"],
            proxy_summary(proxy)
        );
    }
    assert!(
        duplicates > 0,
        "no retry was answered 204: the dedup path was not exercised ({report})"
    );
    server.stop().await;
}

/// Every value of a JSON stream (catch-up reads from the start until
/// up to date).
async fn read_all(addr: SocketAddr, name: &str) -> Vec<Value> {
    let mut values = Vec::new();
    let mut offset = "-1".to_owned();
    loop {
        let (status, headers, body) = request_full(
            addr,
            "GET",
            &format!("/v1/stream/{name}?offset={offset}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(status, 200, "GET {name} at {offset}: {body}");
        let batch: Vec<Value> = serde_json::from_str(&body).expect("a JSON array");
        values.extend(batch);
        offset = header(&headers, "stream-next-offset")
            .expect("stream-next-offset")
            .to_owned();
        if header(&headers, "stream-up-to-date").is_some() {
            return values;
        }
    }
}
