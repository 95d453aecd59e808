//! A TCP proxy on 127.0.0.1 that breaks connections the way real networks
//! do: it forwards to ssehub and cuts each connection after a random number
//! of bytes or milliseconds (often mid-event), sometimes with a clean close
//! and sometimes with a reset, or stalls it (stops forwarding without
//! closing) before cutting it. Every choice comes from a seeded generator,
//! so a run can be replayed with the same seed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// How connections are broken.
#[derive(Debug, Clone)]
pub struct Chaos {
    pub seed: u64,
    /// Cut after this many server-to-client bytes (uniform range).
    pub bytes: (u64, u64),
    /// Or after this many milliseconds.
    pub millis: (u64, u64),
    /// How long a stalled connection hangs before it is reset.
    pub stall_millis: (u64, u64),
    /// Share of connections cut by byte count, by time, and stalled; the
    /// rest (1 - sum) pass untouched.
    pub p_bytes: f64,
    pub p_time: f64,
    pub p_stall: f64,
    /// Share of cuts that are resets rather than clean closes.
    pub p_reset: f64,
    /// While the upstream refuses connections (a server restarting), hold
    /// a new connection this long, trying the upstream again (a reverse
    /// proxy waiting for its backend), instead of resetting it at once.
    /// Chromium's `EventSource` gives up for good after a connection reset
    /// before any response, as after a `502`.
    pub hold_while_down: Option<Duration>,
}

impl Chaos {
    /// No random cuts: only [`ChaosProxy::cut_all`] breaks connections.
    pub fn none(seed: u64) -> Self {
        Chaos {
            seed,
            bytes: (0, 0),
            millis: (0, 0),
            stall_millis: (0, 0),
            p_bytes: 0.0,
            p_time: 0.0,
            p_stall: 0.0,
            p_reset: 0.5,
            hold_while_down: None,
        }
    }

    /// Every connection is cut, in every way.
    pub fn flaky(seed: u64) -> Self {
        Chaos {
            seed,
            bytes: (60, 2500),
            millis: (50, 500),
            stall_millis: (300, 1200),
            p_bytes: 0.45,
            p_time: 0.35,
            p_stall: 0.2,
            p_reset: 0.5,
            hold_while_down: None,
        }
    }
}

/// The goal of publishing under chaos: every proxy has cut its
/// connections `min` times (and `also()` holds). Its progress is the cuts
/// still needed, so publishing waits for a client that a starved machine
/// keeps offline; while not reached, it prints where each proxy stands
/// every 10 s (libtest shows it when the test fails).
pub fn all_cut(proxies: &[ChaosProxy], min: u64) -> AllCut {
    AllCut {
        stats: proxies.iter().map(|p| p.stats.clone()).collect(),
        min,
        also: Box::new(|| true),
        printed: Mutex::new(Instant::now()),
    }
}

/// See [`all_cut`].
pub struct AllCut {
    stats: Vec<Arc<ChaosStats>>,
    min: u64,
    also: Box<dyn Fn() -> bool + Send + Sync>,
    printed: Mutex<Instant>,
}

impl AllCut {
    /// Also waits for `also()`.
    pub fn and(mut self, also: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.also = Box::new(also);
        self
    }
}

impl super::flaky::Goal for AllCut {
    fn reached(&self) -> bool {
        let done = self.stats.iter().all(|s| s.cuts() >= self.min) && (self.also)();
        let mut printed = self.printed.lock().unwrap();
        if !done && printed.elapsed() >= Duration::from_secs(10) {
            *printed = Instant::now();
            eprintln!("{}", self.explain());
        }
        done
    }

    fn progress(&self) -> Option<u64> {
        Some(self.stats.iter().map(|s| s.cuts().min(self.min)).sum())
    }

    fn explain(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.stats.iter().enumerate() {
            out += &format!(
                "\nproxy {i}: {} connections, {} cuts; last: {:?}",
                s.connections.load(Ordering::Relaxed),
                s.cuts(),
                s.recent().last()
            );
        }
        out
    }
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct ChaosStats {
    pub connections: AtomicU64,
    pub closes: AtomicU64,
    pub resets: AtomicU64,
    pub stalls: AtomicU64,
    pub mass_cuts: AtomicU64,
    /// What happened to the most recent connections, for failure messages.
    recent: Mutex<std::collections::VecDeque<String>>,
}

impl ChaosStats {
    /// Connections the proxy broke (closes and resets, stalls included).
    pub fn cuts(&self) -> u64 {
        self.closes.load(Ordering::Relaxed) + self.resets.load(Ordering::Relaxed)
    }

    /// One line for each of the last connections: its fate, the first line
    /// the server sent, and how it ended.
    pub fn recent(&self) -> Vec<String> {
        self.recent.lock().unwrap().iter().cloned().collect()
    }

    fn note(&self, line: String) {
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == 64 {
            recent.pop_front();
        }
        recent.push_back(line);
    }
}

pub struct ChaosProxy {
    pub addr: SocketAddr,
    pub stats: Arc<ChaosStats>,
    upstream: Arc<Mutex<SocketAddr>>,
    cut_all: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

/// splitmix64: a small, good, seedable generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Pass,
    AfterBytes(u64),
    AfterMillis(u64),
    StallAfterBytes(u64, u64),
}

impl ChaosProxy {
    pub async fn start(upstream: SocketAddr, chaos: Chaos) -> ChaosProxy {
        // A deep backlog: the proxy plays the network, not a bottleneck.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(4096).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(ChaosStats::default());
        let upstream = Arc::new(Mutex::new(upstream));
        let (cut_all, cut_rx) = watch::channel(0u64);
        let task = tokio::spawn({
            let stats = stats.clone();
            let upstream = upstream.clone();
            async move {
                let mut index = 0u64;
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    index += 1;
                    stats.connections.fetch_add(1, Ordering::Relaxed);
                    let mut rng = Rng::new(chaos.seed ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d));
                    let fate = pick(&chaos, &mut rng);
                    let reset = rng.unit() < chaos.p_reset;
                    tokio::spawn(relay(
                        index,
                        client,
                        (upstream.clone(), chaos.hold_while_down),
                        fate,
                        reset,
                        stats.clone(),
                        cut_rx.clone(),
                    ));
                }
            }
        });
        ChaosProxy {
            addr,
            stats,
            upstream,
            cut_all,
            task,
        }
    }

    /// Sends new connections to another server (e.g. after a restart).
    pub fn set_upstream(&self, addr: SocketAddr) {
        *self.upstream.lock().unwrap() = addr;
    }

    /// Resets every open connection at once.
    pub fn cut_all(&self) {
        self.stats.mass_cuts.fetch_add(1, Ordering::Relaxed);
        self.cut_all.send_modify(|n| *n += 1);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pick(chaos: &Chaos, rng: &mut Rng) -> Fate {
    let r = rng.unit();
    if r < chaos.p_bytes {
        Fate::AfterBytes(rng.range(chaos.bytes))
    } else if r < chaos.p_bytes + chaos.p_time {
        Fate::AfterMillis(rng.range(chaos.millis))
    } else if r < chaos.p_bytes + chaos.p_time + chaos.p_stall {
        Fate::StallAfterBytes(rng.range(chaos.bytes), rng.range(chaos.stall_millis))
    } else {
        Fate::Pass
    }
}

/// Connects to the upstream as it is now; while it refuses, tries again
/// for up to `hold` (re-reading where it is).
async fn connect_upstream(
    (upstream, hold): (Arc<Mutex<SocketAddr>>, Option<Duration>),
) -> Option<TcpStream> {
    let deadline = tokio::time::Instant::now() + hold.unwrap_or_default();
    loop {
        let to = *upstream.lock().unwrap();
        match TcpStream::connect(to).await {
            Ok(s) => return Some(s),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return None,
        }
    }
}

async fn relay(
    index: u64,
    client: TcpStream,
    upstream: (Arc<Mutex<SocketAddr>>, Option<Duration>),
    fate: Fate,
    reset: bool,
    stats: Arc<ChaosStats>,
    mut cut_all: watch::Receiver<u64>,
) {
    cut_all.mark_unchanged();
    let start = tokio::time::Instant::now();
    let Some(server) = connect_upstream(upstream).await else {
        // Upstream down: reset the client, as a refused connection would.
        let _ = client.set_zero_linger();
        stats.note(format!("#{index} {fate:?}: upstream down, reset"));
        return;
    };
    let mut first_line: Option<String> = None;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();

    // Requests pass untouched.
    let upstream_copy = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
        cr
    });

    let budget = match fate {
        Fate::AfterBytes(n) | Fate::StallAfterBytes(n, _) => n,
        _ => u64::MAX,
    };
    let deadline = match fate {
        Fate::AfterMillis(ms) => Some(tokio::time::Instant::now() + Duration::from_millis(ms)),
        _ => None,
    };
    let mut sent = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    let cut = loop {
        let read = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, sr.read(&mut buf)).await.ok(),
                None => Some(sr.read(&mut buf).await),
            }
        };
        let n = tokio::select! {
            r = read => match r {
                None => break true,                 // time is up
                Some(Ok(0)) | Some(Err(_)) => break false, // the server ended it
                Some(Ok(n)) => n,
            },
            _ = cut_all.changed() => break true,
        };
        if first_line.is_none() {
            let line = buf[..n].split(|&b| b == b'\r').next().unwrap_or_default();
            first_line = Some(String::from_utf8_lossy(line).into_owned());
        }
        let allowed = (budget - sent).min(n as u64) as usize;
        if cw.write_all(&buf[..allowed]).await.is_err() {
            break false;
        }
        sent += allowed as u64;
        if sent >= budget {
            break true;
        }
    };
    let ms = start.elapsed().as_millis();
    if !cut {
        let _ = cw.shutdown().await;
        upstream_copy.abort();
        stats.note(format!(
            "#{index} {fate:?}: {first_line:?}, server ended after {sent} bytes, {ms} ms"
        ));
        return;
    }
    stats.note(format!(
        "#{index} {fate:?}: {first_line:?}, cut after {sent} bytes, {ms} ms, reset {}",
        reset || matches!(fate, Fate::StallAfterBytes(..))
    ));
    if let Fate::StallAfterBytes(_, ms) = fate {
        stats.stalls.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = cut_all.changed() => {}
        }
    }
    upstream_copy.abort();
    let reset = reset || matches!(fate, Fate::StallAfterBytes(..));
    if reset {
        stats.resets.fetch_add(1, Ordering::Relaxed);
        // Closing with zero linger sends RST instead of FIN.
        let _ = AsRef::<TcpStream>::as_ref(&cw).set_zero_linger();
        drop(cw);
    } else {
        stats.closes.fetch_add(1, Ordering::Relaxed);
        let _ = cw.shutdown().await;
    }
}
