//! dsload: a load generator for any Durable Streams server (protocol 1.0,
//! `PROTOCOL.md` in `durable-streams/durable-streams`), given a stream's URL.
//! Loopback only. One thread, raw sockets, HTTP/1.1 keep-alive, so that the
//! client costs less than the server it measures. Prints one JSON object.
//!
//! ```sh
//! cargo bench --bench dsload -- --url http://127.0.0.1:8080/v1/stream/s \
//!     --server-pid "$(pgrep -x ssehub)" fanout --readers 2000 --rate 20 --seconds 5
//! ```
//!
//! Modes (each creates its stream first with `PUT`, `text/plain`):
//! - `fanout`: N `live=sse` readers from offset `-1`; once all have their
//!   answer's head, one writer appends at a fixed rate. Each message
//!   carries `@T<µs since start>;`, so the readers count deliveries and
//!   latency whatever the server batches into one `data` event. Over the
//!   measured window: deliveries, server CPU per delivery, latency
//!   percentiles.
//! - `append`: N closed-loop writers, each `POST`ing a body and waiting for
//!   its answer; appends/s, latency, server CPU per append. `--count M`
//!   stops after M appends instead (to fill a stream).
//! - `idle`: N `live=sse` readers connected to an empty stream and left
//!   idle; server RSS before and after, bytes per reader.
//! - `catchup`: reads the stream from offset `-1`, following
//!   `Stream-Next-Offset` until `Stream-Up-To-Date: true`; time, requests,
//!   bytes.
//!
//! Any answer other than 2xx is counted (`non_2xx`), never taken for data.
//! A bench target (`harness = false`): run with no arguments, as `cargo
//! test --benches` does, it exits 0.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(about = "Durable Streams load generator (loopback only)")]
struct Args {
    /// The stream: http://127.0.0.1:PORT/v1/stream/NAME
    #[arg(long)]
    url: String,
    /// The server's process (CPU and RSS are read from /proc/PID).
    #[arg(long = "server-pid")]
    server_pid: Option<u32>,
    /// Don't create the stream first.
    #[arg(long)]
    no_create: bool,
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    Fanout {
        #[arg(long, default_value_t = 100)]
        readers: usize,
        /// Appends per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[arg(long, default_value_t = 100)]
        body_bytes: usize,
    },
    Append {
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        #[arg(long, default_value_t = 100)]
        body_bytes: usize,
        /// Stop after this many appends (no time limit, no warm-up).
        #[arg(long)]
        count: Option<u64>,
    },
    Idle {
        #[arg(long, default_value_t = 2000)]
        readers: usize,
        /// Seconds to wait, all connected, before reading RSS.
        #[arg(long, default_value_t = 2.0)]
        settle: f64,
    },
    Catchup {
        /// Bytes expected in all (checked).
        #[arg(long)]
        expect_bytes: Option<u64>,
    },
}

// ---------------------------------------------------------------- URLs ----

struct Url {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Url {
    let rest = url.strip_prefix("http://").expect("http:// URLs only");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse().expect("an IP:port host");
    assert!(addr.ip().is_loopback(), "loopback only");
    Url {
        addr,
        host: host.to_owned(),
        path: path.to_owned(),
    }
}

// ---------------------------------------------------------------- /proc ----

fn cpu_s(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let f: Vec<&str> = s[s.rfind(')').unwrap_or(0) + 2..].split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    // SC_CLK_TCK is 100 on Linux everywhere this runs.
    ticks / 100.0
}

/// This process's CPU seconds (the load tool's own cost).
fn self_cpu_s() -> f64 {
    cpu_s(Some(std::process::id()))
}

fn rss_bytes(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

// ---------------------------------------------------------------- HTTP ----

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }
    fn content_length(&self) -> Option<usize> {
        self.get("content-length")
            .and_then(|v| v.trim().parse().ok())
    }
    fn no_body(&self) -> bool {
        self.status == 204 || self.status == 304 || (100..200).contains(&self.status)
    }
}

/// Decodes `Transfer-Encoding: chunked` as bytes arrive.
#[derive(Default)]
struct Chunked {
    /// Bytes left in the current chunk's data.
    left: usize,
    /// The size line (or CRLF after data, or trailer lines) so far.
    line: Vec<u8>,
    /// Expecting the CRLF after a chunk's data.
    after_data: bool,
    /// After the last chunk: reading trailer lines.
    trailer: bool,
    done: bool,
}

impl Chunked {
    /// Feeds `input`; appends payload to `out`; returns bytes consumed
    /// (less than `input.len()` only once done).
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, String> {
        let mut i = 0;
        while i < input.len() && !self.done {
            if self.left > 0 {
                let n = self.left.min(input.len() - i);
                out.extend_from_slice(&input[i..i + n]);
                self.left -= n;
                i += n;
                if self.left == 0 {
                    self.after_data = true;
                }
                continue;
            }
            let b = input[i];
            i += 1;
            self.line.push(b);
            if b != b'\n' {
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let text = std::str::from_utf8(&line)
                .map_err(|e| e.to_string())?
                .trim();
            if self.after_data {
                if !text.is_empty() {
                    return Err("no CRLF after a chunk".into());
                }
                self.after_data = false;
            } else if self.trailer {
                if text.is_empty() {
                    self.done = true;
                }
            } else {
                let hex = text.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16)
                    .map_err(|e| format!("chunk size {text:?}: {e}"))?;
                if size == 0 {
                    self.trailer = true;
                } else {
                    self.left = size;
                }
            }
        }
        Ok(i)
    }
}

struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl Conn {
    async fn open(url: &Url) -> Result<Self, String> {
        let sock = TcpStream::connect(url.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Conn {
            sock,
            buf: Vec::with_capacity(8192),
            host: url.host.clone(),
        })
    }

    async fn more(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 16384];
        let n = self
            .sock
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        ctype: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(ct) = ctype {
            r.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            r.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        r.push_str("\r\n");
        let mut bytes = r.into_bytes();
        bytes.extend_from_slice(body);
        self.sock
            .write_all(&bytes)
            .await
            .map_err(|e| format!("write: {e}"))
    }

    async fn head(&mut self) -> Result<Head, String> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let text = std::str::from_utf8(&self.buf[..end]).map_err(|e| e.to_string())?;
                let mut lines = text.split("\r\n");
                let status: u16 = lines
                    .next()
                    .and_then(|l| l.get(9..12))
                    .and_then(|s| s.parse().ok())
                    .ok_or("bad status line")?;
                let headers = lines
                    .filter_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        Some((k.trim().to_owned(), v.trim().to_owned()))
                    })
                    .collect();
                self.buf.drain(..end + 4);
                return Ok(Head { status, headers });
            }
            if self.more().await? == 0 {
                return Err("server closed the connection".into());
            }
        }
    }

    /// Reads a whole body (not a streaming one) into `out`.
    async fn body(&mut self, head: &Head, out: &mut Vec<u8>) -> Result<(), String> {
        if head.no_body() {
            return Ok(());
        }
        if head.chunked() {
            let mut dec = Chunked::default();
            loop {
                let used = dec.feed(&self.buf, out)?;
                self.buf.drain(..used);
                if dec.done {
                    return Ok(());
                }
                if self.more().await? == 0 {
                    return Err("closed within a chunked body".into());
                }
            }
        }
        let len = head
            .content_length()
            .ok_or("a body with neither length nor chunks")?;
        while self.buf.len() < len {
            if self.more().await? == 0 {
                return Err("closed within a body".into());
            }
        }
        out.extend_from_slice(&self.buf[..len]);
        self.buf.drain(..len);
        Ok(())
    }

    /// One request, its whole answer.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        ctype: Option<&str>,
        body: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Head, String> {
        self.send(method, path, ctype, body).await?;
        let head = self.head().await?;
        self.body(&head, out).await?;
        Ok(head)
    }
}

fn payload(n: usize, stamp_us: u64) -> Vec<u8> {
    let mut b = format!("@T{stamp_us};").into_bytes();
    while b.len() < n {
        b.push(b'a' + (b.len() % 26) as u8);
    }
    b
}

async fn create(url: &Url) -> Result<(), String> {
    let mut c = Conn::open(url).await?;
    let mut out = Vec::new();
    let h = c
        .request("PUT", &url.path, Some("text/plain"), b"", &mut out)
        .await?;
    if !(200..300).contains(&h.status) {
        return Err(format!("PUT {} answered {}", url.path, h.status));
    }
    Ok(())
}

fn pct(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

// -------------------------------------------------------------- readers ----

#[derive(Default)]
struct Shared {
    /// Readers whose answer head came (2xx).
    connected: Cell<usize>,
    non_2xx: Cell<u64>,
    reconnects: Cell<u64>,
    errors: RefCell<Vec<String>>,
    /// Measured window in µs since t0 (receive time).
    window: Cell<(u64, u64)>,
    deliveries: Cell<u64>,
    latencies_us: RefCell<Vec<u32>>,
    stop: Cell<bool>,
    data_events: Cell<u64>,
    control_events: Cell<u64>,
}

/// One `live=sse` reader: counts the `@T` marks of `data` events, follows
/// `streamNextOffset` of `control` events to reconnect if the server ends
/// the response.
async fn reader(url: Rc<Url>, shared: Rc<Shared>, t0: Instant, count: bool) {
    let mut offset = "-1".to_owned();
    let mut first = true;
    while !shared.stop.get() {
        if !first {
            shared.reconnects.set(shared.reconnects.get() + 1);
        }
        match read_sse(&url, &shared, t0, count, &mut offset, first).await {
            Ok(()) => {}
            Err(e) => {
                if !shared.stop.get() {
                    shared.errors.borrow_mut().push(e);
                }
                return;
            }
        }
        first = false;
    }
}

async fn read_sse(
    url: &Url,
    shared: &Shared,
    t0: Instant,
    count: bool,
    offset: &mut String,
    first: bool,
) -> Result<(), String> {
    let mut c = Conn::open(url).await?;
    let path = format!("{}?offset={offset}&live=sse", url.path);
    c.send("GET", &path, None, b"").await?;
    let head = c.head().await?;
    if !(200..300).contains(&head.status) {
        shared.non_2xx.set(shared.non_2xx.get() + 1);
        return Err(format!("SSE GET answered {}", head.status));
    }
    if first {
        shared.connected.set(shared.connected.get() + 1);
    }
    let chunked = head.chunked();
    let mut dec = Chunked::default();
    let mut payload = Vec::with_capacity(4096);
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut event = Vec::<u8>::new();
    let mut control = Vec::<u8>::new();
    let mut pending = std::mem::take(&mut c.buf);
    let mut chunk = vec![0u8; 8192];
    loop {
        if shared.stop.get() {
            return Ok(());
        }
        let now_us = t0.elapsed().as_micros() as u64;
        payload.clear();
        if chunked {
            dec.feed(&pending, &mut payload)?;
        } else {
            payload.extend_from_slice(&pending);
        }
        pending.clear();
        for &b in payload.iter() {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                if event == b"control" {
                    shared.control_events.set(shared.control_events.get() + 1);
                    if let Some(o) = json_str(&control, "streamNextOffset") {
                        *offset = o;
                    }
                } else if event == b"data" {
                    shared.data_events.set(shared.data_events.get() + 1);
                }
                event.clear();
                control.clear();
            } else if let Some(v) = line.strip_prefix(b"event:") {
                event = v.trim_ascii().to_vec();
            } else if let Some(v) = line.strip_prefix(b"data:") {
                if event == b"control" {
                    control.extend_from_slice(v);
                } else if count {
                    marks(v, now_us, shared);
                }
            }
            line.clear();
        }
        if dec.done {
            return Ok(());
        }
        let n = c
            .sock
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn marks(v: &[u8], now_us: u64, shared: &Shared) {
    let (from, to) = shared.window.get();
    let in_window = now_us >= from && now_us < to;
    let mut i = 0;
    while let Some(p) = memchr::memmem::find(&v[i..], b"@T") {
        let s = i + p + 2;
        let mut e = s;
        while e < v.len() && v[e].is_ascii_digit() {
            e += 1;
        }
        if e < v.len() && v[e] == b';' && e > s {
            let sent: u64 = std::str::from_utf8(&v[s..e]).unwrap().parse().unwrap();
            if in_window {
                shared.deliveries.set(shared.deliveries.get() + 1);
                shared
                    .latencies_us
                    .borrow_mut()
                    .push(now_us.saturating_sub(sent).min(u32::MAX as u64) as u32);
            }
        }
        i = e.max(s);
    }
}

fn json_str(json: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(json).ok()?;
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..]
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

async fn connect_readers(
    url: &Rc<Url>,
    shared: &Rc<Shared>,
    n: usize,
    t0: Instant,
    count: bool,
) -> Result<f64, String> {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tasks.push(tokio::task::spawn_local(reader(
            url.clone(),
            shared.clone(),
            t0,
            count,
        )));
        // At most 100 connects in flight: a listen backlog never overflows.
        while i + 1 - shared.connected.get() - shared.errors.borrow().len() >= 100 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while shared.connected.get() + shared.errors.borrow().len() < n {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {n} readers connected in 60 s",
                shared.connected.get()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(e) = shared.errors.borrow().first() {
        return Err(format!("a reader failed: {e}"));
    }
    std::mem::forget(tasks);
    Ok(started.elapsed().as_secs_f64())
}

// ---------------------------------------------------------------- modes ----

async fn fanout(
    args: &Args,
    url: Rc<Url>,
    readers: usize,
    rate: f64,
    seconds: f64,
    warmup: f64,
    body_bytes: usize,
) -> Result<String, String> {
    let t0 = Instant::now();
    let shared = Rc::new(Shared::default());
    shared.window.set((u64::MAX, u64::MAX));
    let connect_s = connect_readers(&url, &shared, readers, t0, true).await?;
    let mut w = Conn::open(&url).await?;
    let start = t0.elapsed() + Duration::from_secs_f64(warmup);
    let end = start + Duration::from_secs_f64(seconds);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let (mut cpu0, mut client0) = (0.0, 0.0);
    let (cpu1, client1, rss_end);
    let (mut appends, mut appends_window, mut write_non_2xx) = (0u64, 0u64, 0u64);
    let mut out = Vec::new();
    let mut started = false;
    loop {
        tick.tick().await;
        let now = t0.elapsed();
        if !started && now >= start {
            started = true;
            shared
                .window
                .set((now.as_micros() as u64, end.as_micros() as u64));
            cpu0 = cpu_s(args.server_pid);
            client0 = self_cpu_s();
        }
        if now >= end {
            cpu1 = cpu_s(args.server_pid);
            client1 = self_cpu_s();
            rss_end = rss_bytes(args.server_pid);
            break;
        }
        let body = payload(body_bytes, now.as_micros() as u64);
        out.clear();
        let h = w
            .request("POST", &url.path, Some("text/plain"), &body, &mut out)
            .await?;
        if (200..300).contains(&h.status) {
            appends += 1;
            if started {
                appends_window += 1;
            }
        } else {
            write_non_2xx += 1;
        }
    }
    // Let what was sent in the window arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shared.stop.set(true);
    let deliveries = shared.deliveries.get();
    let mut lat = shared.latencies_us.take();
    lat.sort_unstable();
    let cpu = cpu1 - cpu0;
    let errors = shared.errors.borrow().len();
    Ok(format!(
        concat!(
            "{{\"mode\":\"fanout\",\"readers\":{},\"rate\":{},\"seconds\":{},\"connect_s\":{:.3},",
            "\"appends\":{},\"appends_window\":{},\"deliveries\":{},\"expected\":{},",
            "\"server_cpu_s\":{:.3},\"client_cpu_s\":{:.3},\"cpu_us_per_delivery\":{:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},",
            "\"data_events\":{},\"control_events\":{},\"reconnects\":{},\"reader_errors\":{},\"non_2xx\":{},\"server_rss\":{}}}"
        ),
        readers,
        rate,
        seconds,
        connect_s,
        appends,
        appends_window,
        deliveries,
        appends_window * readers as u64,
        cpu,
        client1 - client0,
        if deliveries > 0 {
            cpu * 1e6 / deliveries as f64
        } else {
            0.0
        },
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        shared.data_events.get(),
        shared.control_events.get(),
        shared.reconnects.get(),
        errors,
        shared.non_2xx.get() + write_non_2xx,
        rss_end
    ))
}

#[derive(Default)]
struct Tally {
    ok: u64,
    all: u64,
    non_2xx: u64,
    lat_us: Vec<u32>,
}

async fn writer(
    url: Rc<Url>,
    body: Rc<Vec<u8>>,
    start: Instant,
    end: Instant,
    left: Rc<Cell<u64>>,
    counted: bool,
) -> Result<Tally, String> {
    let mut c = Conn::open(&url).await?;
    let mut t = Tally::default();
    let mut out = Vec::new();
    loop {
        let sent = Instant::now();
        if counted {
            if left.get() == 0 {
                return Ok(t);
            }
            left.set(left.get() - 1);
        } else if sent >= end {
            return Ok(t);
        }
        out.clear();
        let h = c
            .request("POST", &url.path, Some("text/plain"), &body, &mut out)
            .await?;
        if !(200..300).contains(&h.status) {
            t.non_2xx += 1;
            if counted {
                left.set(left.get() + 1);
            }
            if t.non_2xx > 1000 {
                return Err(format!("answer {}", h.status));
            }
            continue;
        }
        t.all += 1;
        if sent >= start {
            t.ok += 1;
            t.lat_us
                .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
    }
}

async fn append(
    args: &Args,
    url: Rc<Url>,
    connections: usize,
    seconds: f64,
    warmup: f64,
    body_bytes: usize,
    count: Option<u64>,
) -> Result<String, String> {
    let body = Rc::new(payload(body_bytes, 0));
    let t0 = Instant::now();
    let (start, end) = if count.is_some() {
        (t0, t0)
    } else {
        let s = t0 + Duration::from_secs_f64(warmup);
        (s, s + Duration::from_secs_f64(seconds))
    };
    let left = Rc::new(Cell::new(count.unwrap_or(0)));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            tokio::task::spawn_local(writer(
                url.clone(),
                body.clone(),
                start,
                end,
                left.clone(),
                count.is_some(),
            ))
        })
        .collect();
    let mut cpu0 = cpu_s(args.server_pid);
    let mut client0 = self_cpu_s();
    if count.is_none() {
        tokio::time::sleep_until(start.into()).await;
        cpu0 = cpu_s(args.server_pid);
        client0 = self_cpu_s();
    }
    let mut all = Tally::default();
    for t in tasks {
        let t = t.await.map_err(|e| e.to_string())??;
        all.ok += t.ok;
        all.all += t.all;
        all.non_2xx += t.non_2xx;
        all.lat_us.extend(t.lat_us);
    }
    let cpu = cpu_s(args.server_pid) - cpu0;
    let client = self_cpu_s() - client0;
    let measured = Instant::now().duration_since(start).as_secs_f64();
    all.lat_us.sort_unstable();
    Ok(format!(
        concat!(
            "{{\"mode\":\"append\",\"connections\":{},\"appends\":{},\"appends_total\":{},\"seconds\":{:.3},\"rps\":{:.1},",
            "\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"server_cpu_s\":{:.3},\"client_cpu_s\":{:.3},\"cpu_us_per_append\":{:.3},\"non_2xx\":{}}}"
        ),
        connections,
        all.ok,
        all.all,
        measured,
        all.ok as f64 / measured,
        pct(&all.lat_us, 0.5),
        pct(&all.lat_us, 0.99),
        pct(&all.lat_us, 1.0),
        cpu,
        client,
        if all.ok > 0 {
            cpu * 1e6 / all.ok as f64
        } else {
            0.0
        },
        all.non_2xx
    ))
}

async fn idle(args: &Args, url: Rc<Url>, readers: usize, settle: f64) -> Result<String, String> {
    // Settle the server after the create, then a baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = rss_bytes(args.server_pid);
    let t0 = Instant::now();
    let shared = Rc::new(Shared::default());
    let connect_s = connect_readers(&url, &shared, readers, t0, false).await?;
    tokio::time::sleep(Duration::from_secs_f64(settle)).await;
    let rss1 = rss_bytes(args.server_pid);
    let cpu0 = cpu_s(args.server_pid);
    tokio::time::sleep(Duration::from_secs_f64(1.0)).await;
    let idle_cpu = cpu_s(args.server_pid) - cpu0;
    let rss2 = rss_bytes(args.server_pid);
    shared.stop.set(true);
    let errors = shared.errors.borrow().len();
    Ok(format!(
        concat!(
            "{{\"mode\":\"idle\",\"readers\":{},\"connect_s\":{:.3},\"rss_before\":{},\"rss_after\":{},\"rss_after_1s\":{},",
            "\"bytes_per_reader\":{:.0},\"idle_cpu_s_per_s\":{:.4},\"reader_errors\":{},\"non_2xx\":{}}}"
        ),
        readers,
        connect_s,
        rss0,
        rss1,
        rss2,
        (rss1.max(rss2) as f64 - rss0 as f64) / readers as f64,
        idle_cpu,
        errors,
        shared.non_2xx.get()
    ))
}

async fn catchup(url: Rc<Url>, expect: Option<u64>, pid: Option<u32>) -> Result<String, String> {
    let mut c = Conn::open(&url).await?;
    let t0 = Instant::now();
    let cpu0 = cpu_s(pid);
    let mut offset = "-1".to_owned();
    let (mut requests, mut bytes) = (0u64, 0u64);
    let mut out = Vec::with_capacity(1 << 20);
    let mut marks = 0u64;
    loop {
        out.clear();
        let h = c
            .request(
                "GET",
                &format!("{}?offset={offset}", url.path),
                None,
                b"",
                &mut out,
            )
            .await?;
        requests += 1;
        if !(200..300).contains(&h.status) {
            return Err(format!(
                "catch-up GET answered {} after {bytes} bytes",
                h.status
            ));
        }
        bytes += out.len() as u64;
        marks += memchr::memmem::find_iter(&out, b"@T").count() as u64;
        let next = h
            .get("stream-next-offset")
            .ok_or("no Stream-Next-Offset")?
            .to_owned();
        if h.get("stream-up-to-date")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            break;
        }
        if next == offset && out.is_empty() {
            return Err("no progress".into());
        }
        offset = next;
        if requests > 10_000_000 {
            return Err("too many requests".into());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_s(pid) - cpu0;
    if let Some(e) = expect
        && e != bytes
    {
        return Err(format!("read {bytes} bytes, expected {e}"));
    }
    Ok(format!(
        "{{\"mode\":\"catchup\",\"seconds\":{secs:.4},\"requests\":{requests},\"bytes\":{bytes},\"messages\":{marks},\"server_cpu_s\":{cpu:.3},\"mb_per_s\":{:.1}}}",
        bytes as f64 / secs / 1e6
    ))
}

fn main() {
    // A bench target without a harness: `cargo bench` appends `--bench` and
    // `cargo test --benches` passes nothing; neither asks for a load run.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().filter(|a| a != "--bench").collect();
    if argv.len() <= 1 {
        eprintln!("dsload: no mode given, nothing to run (see --help)");
        return;
    }
    let args = Args::parse_from(argv);
    let Some(mode) = &args.mode else {
        return;
    };
    let url = Rc::new(parse_url(&args.url));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let out = local.block_on(&rt, async {
        if !args.no_create {
            create(&url).await?;
        }
        match *mode {
            Mode::Fanout {
                readers,
                rate,
                seconds,
                warmup,
                body_bytes,
            } => {
                fanout(
                    &args,
                    url.clone(),
                    readers,
                    rate,
                    seconds,
                    warmup,
                    body_bytes,
                )
                .await
            }
            Mode::Append {
                connections,
                seconds,
                warmup,
                body_bytes,
                count,
            } => {
                append(
                    &args,
                    url.clone(),
                    connections,
                    seconds,
                    warmup,
                    body_bytes,
                    count,
                )
                .await
            }
            Mode::Idle { readers, settle } => idle(&args, url.clone(), readers, settle).await,
            Mode::Catchup { expect_bytes } => {
                catchup(url.clone(), expect_bytes, args.server_pid).await
            }
        }
    });
    match out {
        Ok(s) => println!("{s}"),
        Err(e) => {
            eprintln!("dsload: {e}");
            std::process::exit(1);
        }
    }
}
