//! sseload: a load generator for any SSE server, given its subscribe and
//! publish URLs. Loopback only. Built to cost the client less than the
//! server: one thread, raw sockets, a streaming parser with no allocation per
//! event. Prints one JSON object.
//!
//! ```sh
//! cargo bench --bench sseload -- \
//!     --sub 'http://127.0.0.1:8080/events/{topic}' \
//!     --publish 'http://127.0.0.1:8080/events/{topic}' \
//!     --server-pid "$(pgrep -x ssehub)" \
//!     fanout --subscribers 2000 --rate 50 --seconds 10
//! ```
//!
//! A bench target (`harness = false`), not an example: it is a tool for
//! measuring servers, not a demonstration of the library. `cargo bench` and
//! `cargo test --benches` run it without a mode, and it exits at once.
//!
//! Modes:
//! - `fanout`: N subscribers; a publisher at a fixed rate for some seconds,
//!   or `--burst M` events flat out. Deliveries/s, publish-to-receive
//!   latency, lost / duplicated / out-of-order per subscriber, server and
//!   client CPU.
//! - `idle`: N open subscribers; server RSS per connection; heartbeats.
//! - `resume`: M events, then N clients connect at once with the
//!   `Last-Event-ID` of the event K back; time until all have their K
//!   events, lost / extra, connect-to-first-event latency.
//!
//! Event data is `<seq> <publish time in ns>`; sequence numbers, not the
//! server's ids, decide what is lost, so any server can be measured.
//!
//! `--topics N` spreads the events over N topics (`{topic}0` ..), event
//! `k` to topic `(k - 1) % N`. Each subscriber then opens one stream per
//! topic, or with `--multi` one stream of all N topics: the `--sub` URL's
//! `{topics}` is replaced by `topic=bench0&topic=bench1&...` (ssehub's
//! `GET /events?{topics}`). Either way every subscriber gets every event
//! once, so the two ways are compared per delivery and per subscriber.
//!
//! `--publish-form TOPIC_TEMPLATE` publishes each event as a Mercure update
//! (`application/x-www-form-urlencoded`, `topic=` the template with
//! `{topic}` replaced, `data=<seq> <time>`) instead of a `text/plain` body;
//! `--publish-header 'Name: value'` adds a header to every publish request
//! (a Mercure publisher's `Authorization: Bearer ...`). A `--sub` URL
//! without `{topic}` (a Mercure URI template selector) is the same stream
//! for every topic: give it with `--multi` so that each subscriber opens it
//! once.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

#[derive(Debug, Parser)]
#[command(
    name = "sseload",
    about = "Load generator for SSE servers (loopback only)"
)]
struct Args {
    /// Subscribe URL, `{topic}` replaced: http://127.0.0.1:8080/events/{topic}
    #[arg(long)]
    sub: String,
    /// Publish URL (POST), `{topic}` replaced.
    #[arg(long)]
    publish: String,
    /// Publish each event as a Mercure update: a form with `topic=` this
    /// template (`{topic}` replaced by the event's topic) and
    /// `data=<seq> <time>`, instead of a `text/plain` body.
    #[arg(long)]
    publish_form: Option<String>,
    /// A header sent with every publish request, `Name: value` (repeat).
    #[arg(long = "publish-header")]
    publish_headers: Vec<String>,
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Topics the events are spread over (named `{topic}0`, `{topic}1`...
    /// when more than one).
    #[arg(long, default_value_t = 1)]
    topics: u64,
    /// Each subscriber opens one stream of all the topics (the `--sub` URL
    /// has `{topics}`), instead of one stream per topic.
    #[arg(long)]
    multi: bool,
    /// Processes whose CPU and RSS are the server's (repeat for nginx workers).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    Fanout {
        #[arg(long)]
        subscribers: usize,
        /// Events per second (with --seconds).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Publish this many events flat out instead of at a rate.
        #[arg(long)]
        burst: Option<u64>,
        /// Publish requests in flight on the publisher's connection.
        #[arg(long, default_value_t = 16)]
        pipeline: usize,
    },
    Idle {
        #[arg(long)]
        subscribers: usize,
        /// Seconds to hold the connections open, counting heartbeats.
        #[arg(long, default_value_t = 17.0)]
        hold: f64,
    },
    Resume {
        #[arg(long)]
        subscribers: usize,
        #[arg(long, default_value_t = 1000)]
        history: u64,
        #[arg(long, default_value_t = 100)]
        back: u64,
    },
}

// ---------------------------------------------------------------- URLs ----

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    /// The topic `{topic}` was replaced by.
    topic: String,
}

fn target(url: &str, topic: &str) -> Target {
    let url = url.replace("{topic}", topic);
    let rest = url.strip_prefix("http://").expect("http:// URLs only");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = host.parse().expect("an IP:port host");
    assert!(addr.ip().is_loopback(), "sseload only talks to loopback");
    Target {
        addr,
        topic: topic.to_owned(),
        host: host.to_owned(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    }
}

/// The name of topic `i`.
fn topic_name(args: &Args, i: u64) -> String {
    if args.topics <= 1 {
        args.topic.clone()
    } else {
        format!("{}{i}", args.topic)
    }
}

/// What one subscriber opens: one stream per topic, or one of all topics.
fn sub_targets(args: &Args) -> Vec<Rc<Target>> {
    if args.multi {
        let query: Vec<String> = (0..args.topics)
            .map(|i| format!("topic={}", topic_name(args, i)))
            .collect();
        let url = args.sub.replace("{topics}", &query.join("&"));
        vec![Rc::new(target(&url, &args.topic))]
    } else {
        (0..args.topics)
            .map(|i| Rc::new(target(&args.sub, &topic_name(args, i))))
            .collect()
    }
}

/// Where event `k` (from 1) is published: topic `(k - 1) % topics`.
fn pub_targets(args: &Args) -> Vec<Rc<Target>> {
    (0..args.topics.max(1))
        .map(|i| Rc::new(target(&args.publish, &topic_name(args, i))))
        .collect()
}

// ------------------------------------------------------------- clocks -----

thread_local! {
    static ORIGIN: Instant = Instant::now();
}

fn now_ns() -> u64 {
    ORIGIN.with(|o| o.elapsed().as_nanos() as u64)
}

/// utime + stime of processes, in seconds.
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|s| {
            // Fields after the command name, which is in parentheses.
            let after = &s[s.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
            ticks as f64 / 100.0 // CLK_TCK
        })
        .sum()
}

fn self_cpu_seconds() -> f64 {
    cpu_seconds(&[std::process::id()])
}

/// Resident set size of processes, in bytes.
fn rss_bytes(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/statm")).ok())
        .map(|s| s.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 4096)
        .sum()
}

// ---------------------------------------------------------- histogram -----

/// Log-linear histogram of microseconds: 32 sub-buckets per power of two
/// (about 3% precision), up to ~1000 s. No allocation when recording.
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

const SUB: u64 = 32;

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: vec![0; 64 * SUB as usize],
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros() as u64; // v >= 2^exp
        let shift = exp - 5; // SUB = 2^5
        ((exp - 4) * SUB + ((v >> shift) - SUB)) as usize
    }

    fn value(i: usize) -> u64 {
        let i = i as u64;
        if i < SUB {
            return i;
        }
        let exp = i / SUB + 4;
        let shift = exp - 5;
        ((i % SUB) + SUB) << shift
    }

    fn record(&mut self, v: u64) {
        let i = Self::index(v).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let want = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::value(i);
            }
        }
        self.max
    }
}

// -------------------------------------------------------------- stats -----

#[derive(Default)]
struct Stats {
    connected: Cell<usize>,
    failed: Cell<usize>,
    received: Cell<u64>,
    lost: Cell<u64>,
    dup: Cell<u64>,
    ooo: Cell<u64>,
    resyncs: Cell<u64>,
    heartbeats: Cell<u64>,
    last_delivery: Cell<u64>,
    latency: RefCell<Option<Histogram>>,
}

impl Stats {
    fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

// ------------------------------------------------------------ parsing -----

/// What one subscriber connection tracks while parsing its stream.
struct Scanner {
    chunk: Chunk,
    /// The size of the chunk whose size line is being ended.
    pending_size: Option<u64>,
    line: Vec<u8>,
    /// The event being read: seq and publish time from `data:`, id.
    cur: Option<(u64, u64)>,
    cur_id: Vec<u8>,
    cur_resync: bool,
    /// Next sequence number expected for each topic (`seq % stride`);
    /// gaps not yet filled.
    expect: Vec<Option<u64>>,
    stride: u64,
    missing: BTreeSet<u64>,
    /// Events and heartbeats on this connection.
    events: u64,
    heartbeats: u64,
    /// Keep (seq, id) of every event (the resume scout).
    keep_ids: Option<Vec<(u64, String)>>,
    /// Stop after this many events (resume clients).
    want: Option<u64>,
    first_event_at: Option<u64>,
}

#[derive(Clone, Copy)]
enum Chunk {
    Size(u64),
    SizeExt,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    Done,
    /// Not chunked: the body runs to the end of the connection.
    Raw,
}

impl Scanner {
    fn new(chunked: bool, stride: u64) -> Self {
        Scanner {
            chunk: if chunked { Chunk::Size(0) } else { Chunk::Raw },
            pending_size: None,
            line: Vec::with_capacity(128),
            cur: None,
            cur_id: Vec::new(),
            cur_resync: false,
            expect: vec![None; stride.max(1) as usize],
            stride: stride.max(1),
            missing: BTreeSet::new(),
            events: 0,
            heartbeats: 0,
            keep_ids: None,
            want: None,
            first_event_at: None,
        }
    }

    /// Feeds bytes read from the socket (after the response head).
    fn feed(&mut self, mut bytes: &[u8], now: u64, stats: &Stats) {
        while !bytes.is_empty() {
            match self.chunk {
                Chunk::Raw => {
                    self.body(bytes, now, stats);
                    return;
                }
                Chunk::Data(left) => {
                    let n = (left as usize).min(bytes.len());
                    self.body(&bytes[..n], now, stats);
                    bytes = &bytes[n..];
                    self.chunk = if left as usize == n {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - n as u64)
                    };
                    continue;
                }
                _ => {}
            }
            let b = bytes[0];
            bytes = &bytes[1..];
            self.chunk = match (self.chunk, b) {
                (Chunk::Size(n), b'0'..=b'9') => Chunk::Size(n * 16 + (b - b'0') as u64),
                (Chunk::Size(n), b'a'..=b'f') => Chunk::Size(n * 16 + (b - b'a' + 10) as u64),
                (Chunk::Size(n), b'A'..=b'F') => Chunk::Size(n * 16 + (b - b'A' + 10) as u64),
                (Chunk::Size(n), b'\r') => {
                    self.pending_size = Some(n);
                    Chunk::SizeLf
                }
                (Chunk::Size(n), _) => {
                    self.pending_size = Some(n);
                    Chunk::SizeExt
                }
                (Chunk::SizeExt, b'\r') => Chunk::SizeLf,
                (Chunk::SizeExt, _) => Chunk::SizeExt,
                (Chunk::SizeLf, b'\n') => match self.pending_size.take() {
                    Some(0) | None => Chunk::Done,
                    Some(n) => Chunk::Data(n),
                },
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size(0),
                (Chunk::Done, _) => Chunk::Done,
                (state, _) => state,
            };
        }
    }
}

impl Scanner {
    fn body(&mut self, mut bytes: &[u8], now: u64, stats: &Stats) {
        while let Some(i) = memchr::memchr(b'\n', bytes) {
            if self.line.is_empty() {
                self.line_done(&bytes[..i], now, stats);
            } else {
                self.line.extend_from_slice(&bytes[..i]);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, now, stats);
                self.line = line;
                self.line.clear();
            }
            bytes = &bytes[i + 1..];
        }
        self.line.extend_from_slice(bytes);
    }

    fn line_done(&mut self, line: &[u8], now: u64, stats: &Stats) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch(now, stats);
        } else if line[0] == b':' || line == b"event: ping" {
            // A comment, or Nchan's data-less `ping` event: keep-alives.
            self.heartbeats += 1;
            Stats::add(&stats.heartbeats, 1);
        } else if let Some(v) = line.strip_prefix(b"data:") {
            let v = v.strip_prefix(b" ").unwrap_or(v);
            let mut parts = v.split(|&b| b == b' ');
            if let (Some(seq), Some(ts)) = (parts.next().and_then(num), parts.next().and_then(num))
            {
                self.cur = Some((seq, ts));
            }
        } else if let Some(v) = line.strip_prefix(b"id:") {
            if self.keep_ids.is_some() {
                self.cur_id.clear();
                self.cur_id
                    .extend_from_slice(v.strip_prefix(b" ").unwrap_or(v));
            }
        } else if line == b"event: resync" {
            self.cur_resync = true;
        }
    }

    fn dispatch(&mut self, now: u64, stats: &Stats) {
        if std::mem::take(&mut self.cur_resync) {
            Stats::add(&stats.resyncs, 1);
            self.cur = None;
            return;
        }
        let Some((seq, ts)) = self.cur.take() else {
            return;
        };
        self.events += 1;
        if self.first_event_at.is_none() {
            self.first_event_at = Some(now);
        }
        Stats::add(&stats.received, 1);
        stats.last_delivery.set(now);
        if let Some(h) = stats.latency.borrow_mut().as_mut() {
            h.record(now.saturating_sub(ts) / 1000);
        }
        if let Some(ids) = &mut self.keep_ids {
            ids.push((seq, String::from_utf8_lossy(&self.cur_id).into_owned()));
        }
        let stride = self.stride;
        let slot = &mut self.expect[(seq % stride) as usize];
        match *slot {
            None => *slot = Some(seq + stride),
            Some(e) if seq == e => *slot = Some(e + stride),
            Some(e) if seq > e => {
                Stats::add(&stats.lost, (seq - e) / stride);
                if seq - e < 100_000 {
                    self.missing.extend((e..seq).step_by(stride as usize));
                }
                *slot = Some(seq + stride);
            }
            Some(_) => {
                if self.missing.remove(&seq) {
                    Stats::add(&stats.ooo, 1);
                    stats.lost.set(stats.lost.get() - 1);
                } else {
                    Stats::add(&stats.dup, 1);
                }
            }
        }
    }
}

fn num(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n = 0u64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(n)
}

// --------------------------------------------------------- subscribers -----

struct SubOptions {
    last_event_id: Option<String>,
    keep_ids: bool,
    want: Option<u64>,
    /// Topics the events are spread over (see `Scanner::expect`).
    stride: u64,
}

/// Opens a stream and reads it until `want` events or the end.
async fn subscriber(
    t: Rc<Target>,
    opts: SubOptions,
    stats: Rc<Stats>,
    gate: Rc<tokio::sync::Semaphore>,
) -> Option<Scanner> {
    let started = now_ns();
    let permit = gate.acquire().await.ok()?;
    let mut stream = match TcpStream::connect(t.addr).await {
        Ok(s) => s,
        Err(_) => {
            Stats::add_usize(&stats.failed);
            return None;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
        t.path, t.host
    );
    if let Some(id) = &opts.last_event_id {
        req.push_str(&format!("Last-Event-ID: {id}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    let (head_len, chunked) = loop {
        let n = stream.read(&mut buf[have..]).await.ok()?;
        if n == 0 {
            Stats::add_usize(&stats.failed);
            return None;
        }
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])
                .unwrap_or("")
                .to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                Stats::add_usize(&stats.failed);
                return None;
            }
            break (end + 4, head.contains("transfer-encoding: chunked"));
        }
        if have == buf.len() {
            return None;
        }
    };
    drop(permit);
    stats.connected.set(stats.connected.get() + 1);
    let mut sc = Scanner::new(chunked, opts.stride);
    if opts.keep_ids {
        sc.keep_ids = Some(Vec::new());
    }
    sc.want = opts.want;
    let connected_at = started;
    sc.feed(&buf[head_len..have], now_ns(), &stats);
    loop {
        if sc.want.is_some_and(|w| sc.events >= w) || matches!(sc.chunk, Chunk::Done) {
            break;
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        sc.feed(&buf[..n], now_ns(), &stats);
    }
    // Report connect-to-first-event through the scanner.
    sc.first_event_at = sc.first_event_at.map(|t| t - connected_at);
    Some(sc)
}

impl Stats {
    fn add_usize(c: &Cell<usize>) {
        c.set(c.get() + 1);
    }
}

// ----------------------------------------------------------- publisher -----

/// How publish requests are written (`--publish-form`, `--publish-header`).
#[derive(Clone, Copy)]
struct PublishAs<'a> {
    form: Option<&'a str>,
    headers: &'a [String],
}

impl<'a> PublishAs<'a> {
    fn of(args: &'a Args) -> Self {
        PublishAs {
            form: args.publish_form.as_deref(),
            headers: &args.publish_headers,
        }
    }
}

/// `s` percent-encoded for a form value (unreserved bytes kept).
fn form_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// Publishes events `first..first + count` over one keep-alive connection
/// with up to `pipeline` requests in flight, at `rate` events/s (or flat
/// out). Returns when every response has arrived.
async fn publish(
    how: PublishAs<'_>,
    targets: Vec<Rc<Target>>,
    first: u64,
    count: u64,
    rate: Option<f64>,
    pipeline: usize,
) -> u64 {
    let t = targets[0].clone();
    let stream = TcpStream::connect(t.addr)
        .await
        .expect("publisher connects");
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let inflight = Rc::new(Cell::new(0usize));
    let room = Rc::new(Notify::new());
    let errors = Rc::new(Cell::new(0u64));
    let reader = tokio::task::spawn_local({
        let (inflight, room, errors) = (inflight.clone(), room.clone(), errors.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut have = 0usize;
            let mut done = 0u64;
            while done < count {
                // Parse as many complete responses as are buffered.
                while let Some((len, ok)) = response_len(&buf[..have]) {
                    if !ok {
                        errors.set(errors.get() + 1);
                    }
                    buf.copy_within(len..have, 0);
                    have -= len;
                    done += 1;
                    inflight.set(inflight.get() - 1);
                    room.notify_one();
                }
                if done >= count {
                    break;
                }
                if have == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                match rd.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => panic!("publisher connection closed after {done} responses"),
                    Ok(n) => have += n,
                }
            }
        }
    });
    let started = Instant::now();
    let mut req = Vec::with_capacity(256);
    for i in 0..count {
        if let Some(r) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / r);
            tokio::time::sleep_until(due.into()).await;
        }
        while inflight.get() >= pipeline {
            room.notified().await;
        }
        let data = format!("{} {}", first + i, now_ns());
        let to = &targets[((first + i - 1) % targets.len() as u64) as usize];
        let (body, content_type) = match how.form {
            None => (data, "text/plain"),
            Some(template) => {
                let mut body = String::from("topic=");
                form_encode(&template.replace("{topic}", &to.topic), &mut body);
                body.push_str("&data=");
                form_encode(&data, &mut body);
                (body, "application/x-www-form-urlencoded")
            }
        };
        req.clear();
        req.extend_from_slice(
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
                to.path,
                to.host,
                content_type,
                body.len()
            )
            .as_bytes(),
        );
        for h in how.headers {
            req.extend_from_slice(h.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"\r\n");
        req.extend_from_slice(body.as_bytes());
        inflight.set(inflight.get() + 1);
        wr.write_all(&req).await.expect("publish");
    }
    reader.await.unwrap();
    errors.get()
}

/// The length of the first complete response in `b`, and whether it was a
/// 2xx; `None` if incomplete.
fn response_len(b: &[u8]) -> Option<(usize, bool)> {
    let end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&b[..end]).ok()?.to_ascii_lowercase();
    let ok = head.as_bytes().get(9) == Some(&b'2');
    if let Some(cl) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        let n: usize = cl.trim().parse().ok()?;
        return (b.len() >= end + n).then_some((end + n, ok));
    }
    if head.contains("transfer-encoding: chunked") {
        // Walk the chunks to the terminating one.
        let mut i = end;
        loop {
            let eol = b[i..].windows(2).position(|w| w == b"\r\n")? + i;
            let size = usize::from_str_radix(
                std::str::from_utf8(&b[i..eol])
                    .ok()?
                    .split(';')
                    .next()?
                    .trim(),
                16,
            )
            .ok()?;
            i = eol + 2 + size + 2;
            if b.len() < i {
                return None;
            }
            if size == 0 {
                return Some((i, ok));
            }
        }
    }
    Some((end, ok))
}

// ---------------------------------------------------------------- modes -----

/// Opens the streams of `n` subscribers: each opens every target.
async fn connect_all(
    targets: &[Rc<Target>],
    n: usize,
    stats: &Rc<Stats>,
    concurrency: usize,
    stride: u64,
) -> Vec<tokio::task::JoinHandle<Option<Scanner>>> {
    let gate = Rc::new(tokio::sync::Semaphore::new(concurrency));
    let handles: Vec<_> = (0..n)
        .flat_map(|_| targets.iter())
        .map(|t| {
            let opts = SubOptions {
                last_event_id: None,
                keep_ids: false,
                want: None,
                stride,
            };
            tokio::task::spawn_local(subscriber(t.clone(), opts, stats.clone(), gate.clone()))
        })
        .collect();
    let n = handles.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while stats.connected.get() + stats.failed.get() < n {
        assert!(
            Instant::now() < deadline,
            "subscribers did not connect in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handles
}

/// Waits until `received` reaches `expected`, or nothing arrives for `idle`.
async fn wait_deliveries(stats: &Stats, expected: u64, idle: Duration) {
    let mut last = (stats.received.get(), Instant::now());
    while stats.received.get() < expected {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let r = stats.received.get();
        if r != last.0 {
            last = (r, Instant::now());
        } else if last.1.elapsed() > idle {
            break;
        }
    }
}

async fn fanout(
    args: &Args,
    subscribers: usize,
    rate: Option<f64>,
    seconds: f64,
    burst: Option<u64>,
    pipeline: usize,
) -> serde_json::Value {
    let subs = sub_targets(args);
    let pubs = pub_targets(args);
    let stats = Rc::new(Stats::default());
    *stats.latency.borrow_mut() = Some(Histogram::new());
    let handles = connect_all(
        &subs,
        subscribers,
        &stats,
        args.connect_concurrency,
        args.topics.max(1),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let events = match (burst, rate) {
        (Some(m), _) => m,
        (None, Some(r)) => (r * seconds).round() as u64,
        (None, None) => panic!("--rate or --burst"),
    };
    let rate = if burst.is_some() { None } else { rate };
    let (cpu0, me0, t0) = (cpu_seconds(&args.server_pids), self_cpu_seconds(), now_ns());
    let publish_errors = publish(PublishAs::of(args), pubs, 1, events, rate, pipeline).await;
    let publish_done = now_ns();
    // Every subscriber gets every event once, on one of its streams.
    let connected = (stats.connected.get() / subs.len()) as u64;
    wait_deliveries(&stats, connected * events, Duration::from_secs(3)).await;
    let t1 = stats.last_delivery.get().max(publish_done);
    let (cpu1, me1) = (cpu_seconds(&args.server_pids), self_cpu_seconds());
    for h in handles {
        h.abort();
    }
    let elapsed = (t1 - t0) as f64 / 1e9;
    let received = stats.received.get();
    let expected = connected * events;
    let missing = expected.saturating_sub(received + stats.dup.get());
    let hist = stats.latency.borrow();
    let hist = hist.as_ref().unwrap();
    serde_json::json!({
        "mode": "fanout",
        "subscribers": subscribers,
        "topics": args.topics,
        "multi": args.multi,
        "connections": stats.connected.get(),
        "connected": connected,
        "failed": stats.failed.get(),
        "events": events,
        "rate": rate,
        "publish_errors": publish_errors,
        "publish_seconds": (publish_done - t0) as f64 / 1e9,
        "deliveries": received,
        "expected": expected,
        "lost": stats.lost.get() + missing.saturating_sub(stats.lost.get()),
        "duplicated": stats.dup.get(),
        "out_of_order": stats.ooo.get(),
        "lost_dup_ooo": stats.lost.get() + missing.saturating_sub(stats.lost.get()) + stats.dup.get() + stats.ooo.get(),
        "resyncs": stats.resyncs.get(),
        "seconds": elapsed,
        "deliveries_per_s": received as f64 / elapsed,
        "latency_us": {
            "p50": hist.quantile(0.5), "p99": hist.quantile(0.99), "p999": hist.quantile(0.999), "max": hist.max,
        },
        "server_cpu_s": cpu1 - cpu0,
        "server_us_per_delivery": (cpu1 - cpu0) * 1e6 / received.max(1) as f64,
        "client_cpu_s": me1 - me0,
        "client_cpu_pct": (me1 - me0) / elapsed * 100.0,
    })
}

async fn idle(args: &Args, subscribers: usize, hold: f64) -> serde_json::Value {
    let subs = sub_targets(args);
    let stats = Rc::new(Stats::default());
    let rss0 = rss_bytes(&args.server_pids);
    let handles = connect_all(
        &subs,
        subscribers,
        &stats,
        args.connect_concurrency,
        args.topics.max(1),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_bytes(&args.server_pids);
    let hb0 = stats.heartbeats.get();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let rss2 = rss_bytes(&args.server_pids);
    let heartbeats = stats.heartbeats.get() - hb0;
    for h in handles {
        h.abort();
    }
    let connected = stats.connected.get();
    serde_json::json!({
        "mode": "idle",
        "subscribers": subscribers,
        "topics": args.topics,
        "multi": args.multi,
        "connected": connected,
        "failed": stats.failed.get(),
        "rss_before": rss0,
        "rss_connected": rss1,
        "rss_after_hold": rss2,
        "bytes_per_connection": (rss2.max(rss1) as f64 - rss0 as f64) / connected.max(1) as f64,
        "bytes_per_subscriber": (rss2.max(rss1) as f64 - rss0 as f64) / (connected / subs.len()).max(1) as f64,
        "hold_s": hold,
        "heartbeats": heartbeats,
        "heartbeats_per_connection": heartbeats as f64 / connected.max(1) as f64,
    })
}

async fn resume(args: &Args, subscribers: usize, history: u64, back: u64) -> serde_json::Value {
    assert!(back <= history);
    assert!(args.topics <= 1, "resume: one topic");
    let sub = Rc::new(target(&args.sub, &args.topic));
    let pub_t = Rc::new(target(&args.publish, &args.topic));
    let stats = Rc::new(Stats::default());
    let gate = Rc::new(tokio::sync::Semaphore::new(
        args.connect_concurrency.max(subscribers),
    ));
    // A scout learns the server's id of every event.
    let scout = tokio::task::spawn_local(subscriber(
        sub.clone(),
        SubOptions {
            last_event_id: None,
            keep_ids: true,
            want: Some(history),
            stride: 1,
        },
        stats.clone(),
        gate.clone(),
    ));
    while stats.connected.get() < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish(PublishAs::of(args), vec![pub_t], 1, history, None, 16).await;
    let scout = scout.await.unwrap().expect("scout stream");
    let ids = scout.keep_ids.unwrap();
    assert_eq!(ids.len() as u64, history, "the scout saw every event");
    let from = &ids[(history - back - 1) as usize];
    assert_eq!(from.0, history - back);
    let from_id = from.1.clone();

    let stats = Rc::new(Stats::default());
    let (cpu0, me0) = (cpu_seconds(&args.server_pids), self_cpu_seconds());
    let t0 = now_ns();
    let handles: Vec<_> = (0..subscribers)
        .map(|_| {
            let opts = SubOptions {
                last_event_id: Some(from_id.clone()),
                keep_ids: false,
                want: Some(back),
                stride: 1,
            };
            tokio::task::spawn_local(subscriber(sub.clone(), opts, stats.clone(), gate.clone()))
        })
        .collect();
    let mut complete = 0u64;
    let mut wrong = 0u64;
    let mut first = Histogram::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for h in handles {
        match tokio::time::timeout_at(deadline, h).await {
            Ok(Ok(Some(sc))) => {
                // Exactly events history-back+1 ..= history, in order.
                let right =
                    sc.events == back && sc.expect[0] == Some(history + 1) && sc.missing.is_empty();
                if right {
                    complete += 1
                } else {
                    wrong += 1
                }
                if let Some(t) = sc.first_event_at {
                    first.record(t / 1000);
                }
            }
            _ => wrong += 1,
        }
    }
    let t1 = now_ns();
    let (cpu1, me1) = (cpu_seconds(&args.server_pids), self_cpu_seconds());
    let elapsed = (t1 - t0) as f64 / 1e9;
    serde_json::json!({
        "mode": "resume",
        "subscribers": subscribers,
        "history": history,
        "back": back,
        "from_id": from_id,
        "complete": complete,
        "incomplete": wrong,
        "failed": stats.failed.get(),
        "deliveries": stats.received.get(),
        "lost": stats.lost.get(),
        "duplicated": stats.dup.get(),
        "seconds": elapsed,
        "first_event_us": { "p50": first.quantile(0.5), "p99": first.quantile(0.99), "max": first.max },
        "server_cpu_s": cpu1 - cpu0,
        "client_cpu_s": me1 - me0,
        "client_cpu_pct": (me1 - me0) / elapsed * 100.0,
    })
}

fn main() {
    // A bench target without a harness: `cargo bench` appends `--bench` to
    // the arguments and `cargo test --benches` passes none. Neither asks
    // for a load run, so with nothing else given there is nothing to do.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().filter(|a| a != "--bench").collect();
    if argv.len() <= 1 {
        eprintln!("sseload: no mode given, nothing to run (see --help)");
        return;
    }
    let args = Args::parse_from(argv);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&rt, async {
        match args.mode {
            Mode::Fanout {
                subscribers,
                rate,
                seconds,
                burst,
                pipeline,
            } => fanout(&args, subscribers, rate, seconds, burst, pipeline).await,
            Mode::Idle { subscribers, hold } => idle(&args, subscribers, hold).await,
            Mode::Resume {
                subscribers,
                history,
                back,
            } => resume(&args, subscribers, history, back).await,
        }
    });
    println!("{report}");
}
