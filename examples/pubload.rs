//! pubload: closed-loop publishers for a durable-publishing benchmark.
//! Loopback only. `--connections N` keep-alive connections each POST a body
//! and wait for the answer before the next one (as `oha -c N` and
//! `redis-benchmark -c N -P 1` do); with `--topics T` every request goes to
//! a topic drawn at random from `{topic}0` .. `{topic}(T-1)` (as
//! `redis-benchmark -r T` draws its `__rand_int__` keys). One thread, raw
//! sockets, so that the client costs less than the server it measures.
//! Prints one JSON object: requests, answers per second, latency
//! percentiles; any answer other than 2xx stops it with an error.
//!
//! ```sh
//! cargo run --release --example pubload -- \
//!     --url 'http://127.0.0.1:8080/events/{topic}' --topic t --topics 16 \
//!     --connections 64 --seconds 10 --body-bytes 1000
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
#[command(about = "Closed-loop HTTP publishers (loopback only)")]
struct Args {
    /// Publish URL (POST), `{topic}` replaced: http://127.0.0.1:8080/events/{topic}
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "t")]
    topic: String,
    /// Topics the requests are spread over, at random (named `{topic}0`,
    /// `{topic}1`... when more than one).
    #[arg(long, default_value_t = 1)]
    topics: u32,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to publish.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of publishing before the measured period (not counted).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// Body size: printable, barely compressible bytes.
    #[arg(long, default_value_t = 1000)]
    body_bytes: usize,
}

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

/// One connection's results.
#[derive(Default)]
struct Tally {
    ok: u64,
    /// Answers to requests sent before the measured period too.
    all: u64,
    latencies_us: Vec<u32>,
}

fn body(n: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize]
        })
        .collect()
}

/// The requests one connection sends: one per topic, built once.
fn requests(args: &Args, url: &Url, body: &[u8]) -> Vec<Vec<u8>> {
    let names: Vec<String> = if args.topics <= 1 {
        vec![args.topic.clone()]
    } else {
        (0..args.topics)
            .map(|i| format!("{}{i}", args.topic))
            .collect()
    };
    names
        .iter()
        .map(|name| {
            let mut r = format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                url.path.replace("{topic}", name),
                url.host,
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(body);
            r
        })
        .collect()
}

/// Reads one response; returns its status.
async fn response(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    loop {
        if let Some(end) = memchr_head(buf) {
            let head = std::str::from_utf8(&buf[..end]).map_err(std::io::Error::other)?;
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other("bad status line"))?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .ok_or_else(|| std::io::Error::other("no content-length"))?;
            let total = end + 4 + len;
            while buf.len() < total {
                read_more(sock, buf).await?;
            }
            buf.drain(..total);
            return Ok(status);
        }
        read_more(sock, buf).await?;
    }
}

fn memchr_head(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

async fn read_more(sock: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = sock.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "server closed the connection",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

async fn connection(
    addr: SocketAddr,
    requests: std::rc::Rc<Vec<Vec<u8>>>,
    seed: u64,
    start: Instant,
    end: Instant,
) -> Result<Tally, String> {
    let mut sock = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(1024);
    let mut x = seed | 1;
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(tally);
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let req = &requests[(x % requests.len() as u64) as usize];
        sock.write_all(req)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let status = response(&mut sock, &mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!("answer {status}"));
        }
        tally.all += 1;
        if sent >= start {
            tally.ok += 1;
            tally
                .latencies_us
                .push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
    }
}

fn main() {
    let args = Args::parse();
    let url = parse_url(&args.url);
    let body = body(args.body_bytes);
    let requests = requests(&args, &url, &body);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let out = local.block_on(&rt, async {
        let requests = std::rc::Rc::new(requests);
        let t0 = Instant::now();
        let start = t0 + Duration::from_secs_f64(args.warmup);
        let end = start + Duration::from_secs_f64(args.seconds);
        let tasks: Vec<_> = (0..args.connections)
            .map(|c| {
                tokio::task::spawn_local(connection(
                    url.addr,
                    requests.clone(),
                    0x2545_F491_4F6C_DD1D ^ (c as u64).wrapping_mul(0x9E37_79B9),
                    start,
                    end,
                ))
            })
            .collect();
        let mut all = Tally::default();
        for t in tasks {
            match t.await.expect("task") {
                Ok(t) => {
                    all.ok += t.ok;
                    all.all += t.all;
                    all.latencies_us.extend(t.latencies_us);
                }
                Err(e) => {
                    eprintln!("pubload: {e}");
                    std::process::exit(1);
                }
            }
        }
        let measured = Instant::now().duration_since(start).as_secs_f64();
        all.latencies_us.sort_unstable();
        let pct = |p: f64| {
            let v = &all.latencies_us;
            if v.is_empty() {
                0.0
            } else {
                v[((v.len() - 1) as f64 * p) as usize] as f64 / 1000.0
            }
        };
        format!(
            "{{\"requests\":{},\"answered_total\":{},\"seconds\":{:.3},\"rps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"connections\":{},\"topics\":{}}}",
            all.ok,
            all.all,
            measured,
            all.ok as f64 / measured,
            pct(0.5),
            pct(0.99),
            pct(1.0),
            args.connections,
            args.topics
        )
    });
    println!("{out}");
}
