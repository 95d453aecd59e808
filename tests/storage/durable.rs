//! The promises of `--data-dir` (README, "Durable history") kept by the
//! real binary, on real files, over real sockets: restarts (SIGTERM and
//! SIGKILL) under load with reconnecting clients and Chromium behind a
//! chaos proxy, SIGKILL during heavy concurrent publishing, the directory
//! lock, damaged tables and journals, and a full disk.

use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::chaos::{Chaos, ChaosProxy, Rng};
use support::flaky::{Seen, check_gaps_announced};
use support::node::{NodeRun, pairs, seen};
use support::process::{Answer, Ssehub, latest, publish, read_history, until};
use support::resume_client::ResumingClient;
use support::{Item, STALL, SseClient, until_progress};
use tokio::sync::watch;

/// The sequence number of an id.
fn seq(id: &str) -> u64 {
    support::seq(id)
}

fn epoch_of(id: &str) -> &str {
    id.rsplit_once('-').expect("an id").0
}

/// A seed that differs between runs, printed so a failure can be replayed.
fn seed(name: &str) -> u64 {
    let seed = std::env::var("SSEHUB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("{name}: SSEHUB_SEED={seed}");
    seed
}

/// What the publishers were told: `201` ids with their data, and the data
/// of every publish attempted (answered or not).
#[derive(Debug, Default)]
struct Ledger {
    acked: BTreeMap<u64, String>,
    epochs: HashSet<String>,
    attempted: HashSet<String>,
    /// Answers other than `201` and "no answer", with the data refused.
    other: Vec<(u16, String, String)>,
}

impl Ledger {
    fn record(&mut self, data: &str, answer: &Answer) {
        self.attempted.insert(data.to_owned());
        match answer {
            Answer::Created(id) => {
                self.epochs.insert(epoch_of(id).to_owned());
                let old = self.acked.insert(seq(id), data.to_owned());
                assert!(old.is_none(), "{id} acknowledged twice: {old:?} and {data}");
            }
            Answer::Status(s, body) => self.other.push((*s, body.clone(), data.to_owned())),
            Answer::Failed => {}
        }
    }

    /// Whether `data` was refused with an answer (it must then be nowhere).
    fn refused(&self, data: &str) -> bool {
        self.other.iter().any(|(.., d)| d == data)
    }

    /// Checks that the only answers other than `201` were `503`s of a
    /// server shutting down (SIGTERM), if `shutdown` allows them.
    fn check_answers(&self, shutdown: bool) {
        for (status, body, _) in &self.other {
            let ok = shutdown && *status == 503 && body.trim() == "hub is shutting down";
            assert!(
                ok,
                "answered {status} {body:?}; all answers: {:?}",
                self.other
            );
        }
    }

    fn last_acked(&self) -> u64 {
        self.acked.keys().next_back().copied().unwrap_or(0)
    }

    fn epoch(&self) -> String {
        assert_eq!(
            self.epochs.len(),
            1,
            "acknowledged epochs {:?}",
            self.epochs
        );
        self.epochs.iter().next().unwrap().clone()
    }
}

/// `publishers` tasks publishing to wherever `addr` says the server is,
/// each one event at a time with data `<prefix><task>-<n>`, until `stop`;
/// one that is not answered is not tried again (its data is not reused).
struct Publishers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Publishers {
    fn start(
        publishers: usize,
        prefix: &str,
        addr: watch::Receiver<SocketAddr>,
        ledger: Arc<Mutex<Ledger>>,
        stop_on_failure: bool,
        pause: Duration,
    ) -> Publishers {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..publishers)
            .map(|p| {
                let (stop, addr, ledger) = (stop.clone(), addr.clone(), ledger.clone());
                let prefix = prefix.to_owned();
                tokio::spawn(async move {
                    for n in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let data = format!("{prefix}{p}-{n}");
                        let to = *addr.borrow();
                        let answer = publish(to, "t", &data).await;
                        ledger.lock().unwrap().record(&data, &answer);
                        if answer == Answer::Failed {
                            if stop_on_failure {
                                return;
                            }
                            // The server is down: wait for it, briefly.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Publishers { stop, tasks }
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            tokio::time::timeout(support::WAIT, t)
                .await
                .expect("publishers stop in time")
                .unwrap();
        }
    }
}

/// Checks one client's record against what was acknowledged: first that
/// every gap was announced (so a failure tells a lost event from an
/// announced one), then no `resync` at all, ids of the acknowledged epoch,
/// consecutive (no gap, no duplicate) up to the end, and every event the
/// data it was acknowledged with. Events that were never answered (a
/// publish under way at SIGKILL may be durable) must agree across clients:
/// `unanswered` collects them. Returns the first sequence number received.
fn check_client(
    who: &str,
    seen: &[Seen],
    ledger: &Ledger,
    end: u64,
    unanswered: &mut HashMap<u64, String>,
) -> u64 {
    check_gaps_announced(who, seen).unwrap();
    let epoch = ledger.epoch();
    let mut events = Vec::new();
    for s in seen {
        match s {
            Seen::Resync(r) => panic!("{who}: resync {r}"),
            Seen::Event(id, data) => events.push((id.clone(), data.clone())),
        }
    }
    let first = seq(&events
        .first()
        .unwrap_or_else(|| panic!("{who}: no events"))
        .0);
    for (i, (id, data)) in events.iter().enumerate() {
        assert_eq!(epoch_of(id), epoch, "{who}: {id} of another epoch");
        let s = seq(id);
        assert_eq!(s, first + i as u64, "{who}: ids not consecutive at {id}");
        match ledger.acked.get(&s) {
            Some(want) => assert_eq!(data, want, "{who}: {id} carries other data"),
            None => {
                assert!(
                    ledger.attempted.contains(data),
                    "{who}: {id} carries {data:?}, never published"
                );
                assert!(
                    !ledger.refused(data),
                    "{who}: {id} carries {data:?}, refused"
                );
                let other = unanswered.entry(s).or_insert_with(|| data.clone());
                assert_eq!(other, data, "{who}: {id} differs between clients");
            }
        }
    }
    assert_eq!(
        first + events.len() as u64 - 1,
        end,
        "{who}: did not reach the end"
    );
    first
}

/// Restart under load: twenty reconnecting Rust clients and Chromium, all
/// through chaos proxies, while events are published continuously over
/// HTTP; the server is stopped with SIGTERM and started again on the same
/// directory, then killed with SIGKILL and started again (each time on a
/// new port, which the proxies and the publisher follow). The ring is far
/// smaller than what a client misses across a restart (and a new process
/// starts with an empty ring), so resumes are served from disk; disk
/// retention holds the whole run. Every client must get every
/// acknowledged event exactly once, in order, with consecutive ids of one
/// epoch and no `resync`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_under_load_lose_nothing_and_resync_no_one() {
    const CLIENTS: usize = 20;
    let seed = seed("restarts_under_load");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = [
        "--retry",
        "150",
        "--retry-jitter",
        "0",
        "--buffer",
        "16",
        "--keep-alive",
        "1",
        "--shutdown-timeout",
        "2",
    ];
    let server = Ssehub::start(&dir, &args).await;
    let rust_proxy = ChaosProxy::start(server.addr, Chaos::flaky(seed)).await;
    // Chromium's EventSource closes for good when a response ends before
    // its head is complete (a connection reset before any response, as a
    // proxy whose server is down does, or a cut inside the 197 bytes of the
    // head): its proxy waits for a restarting server, and cuts streams
    // only once their head is through.
    let hold = Some(Duration::from_secs(10));
    let browser_proxy = ChaosProxy::start(
        server.addr,
        Chaos {
            bytes: (256, 2500),
            millis: (250, 600),
            hold_while_down: hold,
            ..Chaos::flaky(seed ^ 1)
        },
    )
    .await;
    // The page itself comes through a proxy that does not break things, so
    // that its origin outlives the server's port.
    let page_proxy = ChaosProxy::start(
        server.addr,
        Chaos {
            hold_while_down: hold,
            ..Chaos::none(seed)
        },
    )
    .await;
    let proxies = [&rust_proxy, &browser_proxy, &page_proxy];

    let (addr_tx, addr_rx) = watch::channel(server.addr);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let publishers = Publishers::start(
        1,
        "",
        addr_rx,
        ledger.clone(),
        false,
        Duration::from_millis(4),
    );
    // The first event exists before anyone subscribes, so that every client
    // has a position in the topic's epoch from its first connection.
    until("the first acknowledged event", support::WAIT, || {
        ledger.lock().unwrap().last_acked() > 0
    })
    .await;

    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| ResumingClient::spawn(rust_proxy.addr, "/events/t".into(), "end"))
        .collect();
    let mut node = NodeRun::start(serde_json::json!({
        "scenario": "follow",
        "pageUrl": format!("http://{}/?topic=t&server=http://{}", page_proxy.addr, browser_proxy.addr),
        "end": "end",
        "timeoutMs": 45_000,
    }));
    let connected = node.next(Duration::from_secs(60)).await;
    assert_eq!(connected["step"], "connected");

    // Every Rust client has received what was acknowledged by now.
    let caught_up = |what: &'static str| {
        let target = ledger.lock().unwrap().last_acked();
        let logs: Vec<_> = clients.iter().map(|c| c.log.clone()).collect();
        async move {
            until_progress(what, STALL, || {
                let at: Vec<u64> = logs
                    .iter()
                    .map(|l| {
                        l.lock()
                            .unwrap()
                            .events
                            .last()
                            .map_or(0, |e| seq(&e.last_event_id))
                    })
                    .collect();
                (at.iter().all(|&s| s >= target), at)
            })
            .await;
        }
    };
    let acked_since = |n: u64| {
        let from = ledger.lock().unwrap().acked.len() as u64;
        let ledger = ledger.clone();
        async move {
            until(
                "events acknowledged by the new process",
                support::WAIT,
                || ledger.lock().unwrap().acked.len() as u64 >= from + n,
            )
            .await;
        }
    };
    acked_since(30).await;
    caught_up("the clients before the first restart").await;
    let before_restarts = ledger.lock().unwrap().last_acked();

    // SIGTERM, and the same directory again.
    println!("SIGTERM after {}", ledger.lock().unwrap().last_acked());
    server.stop().await;
    let server = Ssehub::start(&dir, &args).await;
    for p in proxies {
        p.set_upstream(server.addr);
    }
    addr_tx.send(server.addr).unwrap();
    acked_since(30).await;
    caught_up("the clients after SIGTERM").await;

    // SIGKILL, and the same directory again.
    println!("SIGKILL after {}", ledger.lock().unwrap().last_acked());
    server.kill().await;
    let server = Ssehub::start(&dir, &args).await;
    for p in proxies {
        p.set_upstream(server.addr);
    }
    addr_tx.send(server.addr).unwrap();
    acked_since(30).await;
    caught_up("the clients after SIGKILL").await;

    publishers.finish().await;
    let end = match publish(server.addr, "t", "end").await {
        Answer::Created(id) => seq(&id),
        other => panic!("the end event: {other:?}"),
    };
    until_progress("every Rust client reaches the end", STALL, || {
        let received: usize = clients
            .iter()
            .map(|c| c.log.lock().unwrap().events.len())
            .sum();
        (clients.iter().all(|c| c.is_done()), received)
    })
    .await;
    let report = tokio::spawn(node.report(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}; the browser's last connections:\n{}",
                browser_proxy.stats.recent().join("\n")
            )
        });

    let mut ledger = std::mem::take(&mut *ledger.lock().unwrap());
    ledger.acked.insert(end, "end".into());
    ledger.attempted.insert("end".into());
    ledger.check_answers(true);
    let mut unanswered = HashMap::new();
    for (i, c) in clients.iter().enumerate() {
        let log = c.log.lock().unwrap();
        let who = format!("rust client {i}");
        let first = check_client(&who, &log.seen, &ledger, end, &mut unanswered);
        assert!(first <= before_restarts, "{who} started after the restarts");
    }
    let browser_seen = seen(&report["seen"]);
    let first = check_client("chromium", &browser_seen, &ledger, end, &mut unanswered);
    assert!(
        first <= before_restarts,
        "chromium started after the restarts"
    );
    assert_eq!(pairs(&report["events"]).len() as u64, end - first + 1);
    // No data under two ids.
    let mut by_data = HashMap::new();
    for (s, d) in ledger.acked.iter().chain(unanswered.iter()) {
        if let Some(other) = by_data.insert(d.clone(), *s) {
            panic!("{d:?} published under {other} and {s}");
        }
    }
    let cuts = rust_proxy.stats.cuts() + browser_proxy.stats.cuts();
    println!(
        "restarts under load: {} events acknowledged, {} durable but unanswered, \
         {CLIENTS} Rust clients and Chromium ({} opens) exact through {cuts} cuts",
        ledger.acked.len(),
        unanswered.len(),
        report["opens"]
    );
    server.stop().await;
}

/// SIGKILL at a random moment while sixteen publishers publish as fast as
/// they can, three times over on one directory; subscribers record every
/// event they get. After the last restart the whole history is read back:
/// ids consecutive from 1, every acknowledged event there with its data,
/// every event any subscriber received there with the same data, no data
/// twice (a failed append leaves nothing behind), one epoch throughout
/// (subscribers that resume across the crashes get no `resync`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_publishing_keeps_every_acknowledged_event() {
    const ROUNDS: usize = 3;
    const PUBLISHERS: usize = 16;
    let mut rng = Rng::new(seed("sigkill_during_publishing"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = ["--retry", "100", "--retry-jitter", "0", "--buffer", "64"];
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    let mut server = Ssehub::start(&dir, &args).await;
    // The topic and its epoch exist before the subscribers come.
    let first = publish(server.addr, "t", "first").await;
    ledger.lock().unwrap().record("first", &first);
    let proxy = ChaosProxy::start(server.addr, Chaos::none(1)).await;
    let subscribers: Vec<_> = (0..3)
        .map(|_| ResumingClient::spawn(proxy.addr, "/events/t".into(), "never sent"))
        .collect();
    for round in 0..ROUNDS {
        let (_addr_tx, addr_rx) = watch::channel(server.addr);
        let publishers = Publishers::start(
            PUBLISHERS,
            &format!("r{round}-"),
            addr_rx,
            ledger.clone(),
            true,
            Duration::ZERO,
        );
        let acked = ledger.lock().unwrap().acked.len();
        until("publishing to start", support::WAIT, || {
            ledger.lock().unwrap().acked.len() > acked
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.range((50, 600)))).await;
        server.kill().await;
        publishers.finish().await;
        server = Ssehub::start(&dir, &args).await;
        proxy.set_upstream(server.addr);
    }

    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    ledger.check_answers(false);
    let epoch = ledger.epoch();
    let (now, n) = latest(server.addr, "t").await;
    assert_eq!(now, epoch, "the epoch survived");
    let history = read_history(server.addr, "t", &epoch, n).await;
    let ids: Vec<u64> = history.iter().map(|(id, _)| seq(id)).collect();
    assert_eq!(ids, (1..=n).collect::<Vec<_>>(), "ids are consecutive");
    let mut datas = HashSet::new();
    for (id, data) in &history {
        assert_eq!(epoch_of(id), epoch);
        assert!(
            ledger.attempted.contains(data),
            "{id}: {data:?} never published"
        );
        assert!(!ledger.refused(data), "{id}: {data:?} was refused");
        assert!(datas.insert(data.clone()), "{data:?} is there twice");
    }
    for (s, data) in &ledger.acked {
        let (id, got) = history
            .get(*s as usize - 1)
            .unwrap_or_else(|| panic!("acknowledged {epoch}-{s} is gone"));
        assert_eq!(got, data, "{id}");
    }
    until_progress("the subscribers to catch up", STALL, || {
        let at: Vec<u64> = subscribers
            .iter()
            .map(|c| {
                c.log
                    .lock()
                    .unwrap()
                    .events
                    .last()
                    .map_or(0, |e| seq(&e.last_event_id))
            })
            .collect();
        (at.iter().all(|&s| s == n), at)
    })
    .await;
    for (i, c) in subscribers.iter().enumerate() {
        let log = c.log.lock().unwrap();
        let who = format!("subscriber {i}");
        check_gaps_announced(&who, &log.seen).unwrap();
        assert!(log.resyncs.is_empty(), "{who}: {:?}", log.resyncs);
        for e in &log.events {
            let (_, data) = &history[seq(&e.last_event_id) as usize - 1];
            assert_eq!(&e.data, data, "{who}: {}", e.last_event_id);
        }
    }
    println!(
        "sigkill during publishing: {ROUNDS} kills, {} acknowledged, {} in the history \
         ({} durable but unanswered), {} attempted",
        ledger.acked.len(),
        n,
        n as usize - ledger.acked.len(),
        ledger.attempted.len()
    );
    server.stop().await;
}

/// One ssehub per directory: a second one exits at once, non-zero, naming
/// the directory and the holder; the first one goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ssehub_on_the_same_directory_exits_and_the_first_serves_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = Ssehub::start(&dir, &[]).await;
    assert!(matches!(
        publish(first.addr, "t", "one").await,
        Answer::Created(_)
    ));
    let (status, stderr) = Ssehub::run_to_exit(&dir, &[]).await;
    assert!(!status.success(), "{status}: {stderr}");
    let want = format!(
        "data directory {} is in use by another ssehub (pid {})",
        dir.display(),
        first.pid()
    );
    assert!(stderr.contains(&want), "{stderr}");
    let Answer::Created(id) = publish(first.addr, "t", "two").await else {
        panic!("the first one stopped publishing")
    };
    assert_eq!(seq(&id), 2);
    let history = read_history(first.addr, "t", epoch_of(&id), 2).await;
    let datas: Vec<_> = history.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(datas, ["one", "two"]);
    first.stop().await;
}

/// Every file under `dir`, recursively, with its size.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    out.sort();
    out
}

/// Flips the bits of the byte at `at` of `path`.
fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

/// Publishes `n` events with distinct, recognisable data, in order.
async fn publish_numbered(addr: SocketAddr, n: u64, data: impl Fn(u64) -> String) -> String {
    let mut epoch = String::new();
    for i in 1..=n {
        match publish(addr, "t", &data(i)).await {
            Answer::Created(id) => {
                assert_eq!(seq(&id), i);
                epoch = epoch_of(&id).to_owned();
            }
            other => panic!("publish {i}: {other:?}"),
        }
    }
    epoch
}

/// A damaged table, found when a topic's events are read (a graceful stop
/// flushes every table, so the history is in `db/keyspaces/<n>/tables/*`
/// and the journal holds nothing of it). What fjall does: every block of
/// a table carries an xxh3 checksum, checked each time the block is read
/// from the file; a flipped byte inside a data block gives
/// `ChecksumMismatch` when the block is read (opening the database does
/// not read data blocks, so startup succeeds). The store answers it by
/// giving the topic a new epoch: a client that resumes from an old id gets
/// `resync` (`epoch`), never an event with wrong data under an old id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_table_is_a_resync_never_wrong_data() {
    const EVENTS: u64 = 300;
    let data = |i: u64| format!("table-{i:04}-{}", "x".repeat(600));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = ["--retry", "100", "--retry-jitter", "0", "--buffer", "16"];
    let server = Ssehub::start(&dir, &args).await;
    let epoch = publish_numbered(server.addr, EVENTS, data).await;
    server.stop().await;

    let tables: Vec<_> = files(&dir.join("db"))
        .into_iter()
        .filter(|(p, _)| p.parent().is_some_and(|d| d.ends_with("tables")))
        .collect();
    let (table, len) = tables
        .iter()
        .max_by_key(|(_, len)| *len)
        .unwrap_or_else(|| panic!("no table files: {:?}", files(&dir)));
    assert!(*len > 100_000, "the events' table: {tables:?}");
    // In the middle of the file: a data block (the index and the other
    // metadata blocks are at its end).
    flip(table, *len as usize / 2);

    let server = Ssehub::start(&dir, &args).await;
    let mut c = SseClient::get(
        server.addr,
        "/events/t",
        &[("Last-Event-ID", &format!("{epoch}-5"))],
    )
    .await;
    assert_eq!(c.status, 200);
    let mut resyncs = Vec::new();
    let mut next = 6;
    while resyncs.is_empty() {
        let ev = c.next_event().await;
        if ev.event_type == "resync" {
            resyncs.push(serde_json::from_str::<serde_json::Value>(&ev.data).unwrap());
            continue;
        }
        assert_eq!(ev.last_event_id, format!("{epoch}-{next}"), "in order");
        assert!(ev.data == data(next), "{}: wrong data", ev.last_event_id);
        next += 1;
    }
    assert!(next <= EVENTS, "the damage was not found");
    let resync = &resyncs[0];
    assert_eq!(resync["reason"], "epoch", "{resync}");
    assert_eq!(
        resync["requested"],
        format!("{epoch}-{}", next - 1),
        "{resync}"
    );
    let new_epoch = epoch_of(resync["latest"].as_str().unwrap()).to_owned();
    assert_ne!(new_epoch, epoch);
    assert_eq!(resync["latest"], format!("{new_epoch}-0"), "{resync}");
    assert_eq!(resync["oldest"], serde_json::Value::Null, "{resync}");
    // The topic goes on in its new epoch, for this client and new ones.
    let Answer::Created(id) = publish(server.addr, "t", "after").await else {
        panic!("publishing after the damage")
    };
    assert_eq!(id, format!("{new_epoch}-1"));
    let ev = c.next_event().await;
    assert_eq!(
        (ev.last_event_id.as_str(), ev.data.as_str()),
        (id.as_str(), "after")
    );
    let mut late = SseClient::get(
        server.addr,
        "/events/t",
        &[("Last-Event-ID", &format!("{epoch}-100"))],
    )
    .await;
    let ev = late.next_event().await;
    assert_eq!(ev.event_type, "resync");
    let resync: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(resync["reason"], "epoch", "{resync}");
    let ev = late.next_event().await;
    assert_eq!(
        (ev.last_event_id.as_str(), ev.data.as_str()),
        (id.as_str(), "after")
    );
    assert!(
        server.log_text().contains("cannot read history: new epoch"),
        "{}",
        server.log_text()
    );
    println!(
        "damaged table: {} events served before the damage, then resync {resync}",
        next - 6
    );
    server.stop().await;
}

/// A damaged journal: events acknowledged and then SIGKILL, so they are in
/// the journal only (no table was flushed), and a byte of one event's data
/// flipped. What fjall does: the journal is a sequence of batches (a start
/// marker with the item count, the items, an end marker with an xxh3
/// checksum of the items); a batch whose checksum does not match fails
/// recovery with `JournalRecovery(ChecksumMismatch)`, so the database does
/// not open and ssehub exits non-zero naming the directory, every time it
/// is started, until the operator moves the directory aside.
///
/// Not covered here, because fjall does not report it: a flipped byte in a
/// batch's framing (an entry's tag, the value type, the key length) makes
/// an entry that does not decode, and fjall's recovery
/// (`RecoveryMode::TolerateCorruptTail`) takes that for a torn last write:
/// it truncates the journal there, silently, and every later batch is gone
/// (in a debug build a damaged value length trips a `debug_assert` in
/// fjall and the process panics instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_stops_startup_naming_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Ssehub::start(&dir, &[]).await;
    publish_numbered(server.addr, 50, |i| format!("journal-{i:04}-payload")).await;
    server.kill().await;

    let marker = b"journal-0030-payload";
    let journal = files(&dir)
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| {
            p.extension().is_some_and(|e| e == "jnl")
                && std::fs::read(p)
                    .unwrap()
                    .windows(marker.len())
                    .any(|w| w == marker)
        })
        .unwrap_or_else(|| panic!("no journal holds the events: {:?}", files(&dir)));
    let bytes = std::fs::read(&journal).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .unwrap();
    // A digit of the event's data.
    flip(&journal, at + 10);

    for _ in 0..2 {
        let (status, stderr) = Ssehub::run_to_exit(&dir, &[]).await;
        assert_eq!(status.code(), Some(1), "{stderr}");
        let want = format!("cannot open the store in data directory {}", dir.display());
        assert!(stderr.contains(&want), "{stderr}");
        assert!(stderr.contains("ChecksumMismatch"), "{stderr}");
    }
}

/// A small tmpfs mounted for one test, unmounted (lazily, so even with a
/// process still holding a file) when dropped, panic or not.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Panics, saying what is missing, where this process may not mount
    /// (not root, no `CAP_SYS_ADMIN`): a test that did not run never
    /// passes. CI runs the tests as root.
    fn mount(size: &str) -> Tmpfs {
        let uid = std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("id -u");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "cannot run: mounting a small tmpfs (a disk to fill) needs root"
        );
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "cannot run: mounting a tmpfs failed (no CAP_SYS_ADMIN?): {status:?}"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes to `path` until the file system has no room left.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// Publishes `data(k)` for k = 0, 1, ... on a disk kept full until one is
/// refused with `507 storage full: nothing was published`; those that still
/// found room in the journal's last page go to `acked`.
async fn until_refused(
    addr: SocketAddr,
    topup: &Path,
    data: &dyn Fn(u64) -> String,
    acked: &mut Vec<(String, String)>,
) {
    for k in 0..200 {
        fill(topup);
        let data = data(k);
        match publish(addr, "t", &data).await {
            Answer::Created(id) => acked.push((id, data)),
            Answer::Status(507, body) => {
                assert_eq!(body.trim(), "storage full: nothing was published");
                return;
            }
            other => panic!("on a full disk: {other:?}"),
        }
    }
    panic!("the disk never filled up");
}

/// Durable Streams on a full disk: an append is refused `507` and changes
/// nothing (no offset used, the producer's place not moved: its retry is
/// refused again on the full disk, and taken, not a duplicate, once there
/// is room), the stream still reads back exactly what was acknowledged,
/// and writes come back by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_stream_appends_and_changes_nothing() {
    let fs = Tmpfs::mount("24m");
    let mut rng = Rng::new(seed("full_disk_streams"));
    // Random (the journal compresses), larger than what the engine frees
    // when it reopens after a failed write.
    let mut body = || -> String {
        (0..240_000)
            .map(|_| char::from(b'a' + (rng.next_u64() % 26) as u8))
            .collect()
    };
    let dir = fs.path().join("data");
    let (filler, topup) = (fs.path().join("filler"), fs.path().join("topup"));
    let server = Ssehub::start(&dir, &[]).await;
    let path = "/v1/stream/full";
    let (status, _) = support::request(
        server.addr,
        "PUT",
        path,
        &[("Content-Type", "text/plain")],
        b"",
    )
    .await;
    assert_eq!(status, 201);
    let append = |seq: u64, data: String| async move {
        let seq = seq.to_string();
        support::request_full(
            server.addr,
            "POST",
            path,
            &[
                ("Content-Type", "text/plain"),
                ("Producer-Id", "p"),
                ("Producer-Epoch", "0"),
                ("Producer-Seq", &seq),
            ],
            data.as_bytes(),
        )
        .await
    };
    let mut acked = String::new();
    fill(&filler);
    let mut seq = 0;
    let refused = loop {
        assert!(seq < 200, "the disk never filled up");
        fill(&topup);
        let data = body();
        let (status, _, answer) = append(seq, data.clone()).await;
        match status {
            200 => acked.push_str(&data),
            507 => break data,
            other => panic!("on a full disk: {other} {answer}"),
        }
        seq += 1;
    };
    let tail_before = latest_offset(server.addr, path).await;
    let (status, stored) =
        support::request(server.addr, "GET", &format!("{path}?offset=-1"), &[], b"").await;
    assert_eq!((status, stored.len()), (200, acked.len()));
    assert!(
        stored == acked,
        "the stream holds exactly what was acknowledged"
    );

    // The retry: refused while the disk stays full (the engine, reopened
    // after the failed write, may free a little: then it is taken), and
    // taken once there is room; either way `200`, never `204`: the refused
    // append never landed, and it gets the next position.
    let end = tokio::time::Instant::now() + support::WAIT;
    let mut attempts = 0;
    let next = loop {
        attempts += 1;
        if attempts == 5 {
            std::fs::remove_file(&filler).unwrap();
            std::fs::remove_file(&topup).unwrap();
        } else if attempts < 5 {
            fill(&topup);
        }
        let (status, h, answer) = append(seq, refused.clone()).await;
        if status == 200 {
            break support::header(&h, "stream-next-offset")
                .unwrap()
                .to_owned();
        }
        assert!(
            status == 507 || status == 503,
            "the retry of a refused append: {status} {answer}"
        );
        if status == 507 {
            assert_eq!(answer.trim(), "storage full: nothing was published");
            assert_eq!(latest_offset(server.addr, path).await, tail_before);
        }
        assert!(
            tokio::time::Instant::now() < end,
            "appends did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (before, after) = (seq_of(&tail_before), seq_of(&next));
    assert_eq!(after, before + 1, "no offset was used by a refused append");
    acked.push_str(&refused);
    let (_, stored) =
        support::request(server.addr, "GET", &format!("{path}?offset=-1"), &[], b"").await;
    assert!(stored == acked, "and after the restart of writes");
    server.stop().await;
}

/// The tail offset of a stream (`HEAD`).
async fn latest_offset(addr: SocketAddr, path: &str) -> String {
    let (status, h, _) = support::request_full(addr, "HEAD", path, &[], b"").await;
    assert_eq!(status, 200);
    support::header(&h, "stream-next-offset")
        .unwrap()
        .to_owned()
}

/// The position part of an offset `G_S`.
fn seq_of(offset: &str) -> u64 {
    offset.rsplit('_').next().unwrap().parse().unwrap()
}

/// A full disk: publishing answers `507 storage full: nothing was
/// published` (and uses no id), an open stream goes on (keep-alives) with
/// its events intact, nothing acknowledged is lost, and once there is room
/// again publishing works by itself (the writer reopens the engine, which
/// refuses writes after a failed one). Then a graceful stop on a full disk
/// exits (it cannot flush the tables; the journal has everything) and loses
/// nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_publishes_keeps_streams_and_recovers_by_itself() {
    let fs = Tmpfs::mount("24m");
    let pad = "y".repeat(3000);
    // Larger than the few pages the engine frees when it reopens after a
    // failed write (it drops superseded files, a few per keyspace: seven
    // keyspaces free more than 60 KB), so a full disk stays full; and
    // random, as the journal compresses values.
    let mut rng = Rng::new(seed("full_disk"));
    let big: String = (0..240_000)
        .map(|_| char::from(b'a' + (rng.next_u64() % 26) as u8))
        .collect();
    let dir = fs.path().join("data");
    let (filler, topup) = (fs.path().join("filler"), fs.path().join("topup"));
    let args = ["--keep-alive", "1", "--buffer", "8", "--retry", "100"];
    // The log on the same disk, as `2>> /var/log/ssehub.log` would have it.
    let log = fs.path().join("ssehub.log");
    let server = Ssehub::start_logging_to(&dir, &args, &log).await;
    let mut acked: Vec<(String, String)> = Vec::new();
    for i in 1..=20 {
        let data = format!("before-{i}-{pad}");
        let Answer::Created(id) = publish(server.addr, "t", &data).await else {
            panic!("publish {i}")
        };
        acked.push((id, data));
    }
    let epoch = epoch_of(&acked[0].0).to_owned();
    let mut stream = SseClient::get(
        server.addr,
        &format!("/events/t?lastEventId={epoch}-0"),
        &[],
    )
    .await;

    // Full: every publish is refused (once the last page the journal had
    // is used up). The disk is topped up before each attempt.
    fill(&filler);
    let refused = |k: u64| format!("full-{k}-{big}");
    until_refused(server.addr, &topup, &refused, &mut acked).await;
    // Meanwhile, streams read the history from disk, again and again: each
    // refused publish has the writer reopen the engine, and a read must
    // wait for it, not take the moment for events gone (a `resync`).
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, acked, epoch, addr) = (stop.clone(), acked.clone(), epoch.clone(), server.addr);
        let last = seq(&acked.last().unwrap().0);
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(read_history(addr, "t", &epoch, last).await, acked);
                reads += 1;
            }
            reads
        })
    };
    for k in 1000..1020 {
        fill(&topup);
        match publish(server.addr, "t", &refused(k)).await {
            Answer::Status(507, body) => {
                assert_eq!(body.trim(), "storage full: nothing was published");
            }
            other => panic!("on a full disk: {other:?}\n{}", server.log_text()),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.expect("history read back on a full disk");

    // The open stream: everything acknowledged, then keep-alives.
    let mut got = Vec::new();
    let end = tokio::time::Instant::now() + support::WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < end,
            "no keep-alive after {got:?}"
        );
        match stream.next_item_within(Duration::from_secs(5)).await {
            Some(Item::Event(e)) => got.push((e.last_event_id, e.data)),
            Some(Item::Comment(c)) if c.trim() == "keep-alive" && got.len() >= acked.len() => break,
            Some(_) => {}
            None => panic!("the stream ended on a full disk"),
        }
    }
    assert_eq!(got, acked, "the stream's events");
    let last = seq(&acked.last().unwrap().0);
    assert_eq!(read_history(server.addr, "t", &epoch, last).await, acked);

    // Room again: publishing comes back by itself, with the next id.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&topup).unwrap();
    let mut meanwhile = Vec::new();
    let end = tokio::time::Instant::now() + support::WAIT;
    let id = loop {
        assert!(
            tokio::time::Instant::now() < end,
            "publishing did not come back: {meanwhile:?}"
        );
        match publish(server.addr, "t", "after").await {
            Answer::Created(id) => break id,
            other => meanwhile.push(other),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        id,
        format!("{epoch}-{}", last + 1),
        "no id was used by a refused publish"
    );
    let ev = stream.next_event().await;
    assert_eq!(
        (ev.last_event_id.as_str(), ev.data.as_str()),
        (id.as_str(), "after")
    );
    acked.push((id, "after".into()));

    // Full again, with an event that still found room in the journal but
    // that the engine cannot flush into a table: SIGTERM exits anyway (the
    // journal has everything), and everything is there after a restart.
    fill(&filler);
    until_refused(
        server.addr,
        &topup,
        &|k| format!("again-{k}-{big}"),
        &mut acked,
    )
    .await;
    let mut small = 0;
    let id = loop {
        small += 1;
        assert!(small < 50, "not even a small event fits");
        let data = format!("small-{small}");
        match publish(server.addr, "t", &data).await {
            Answer::Created(id) => {
                acked.push((id.clone(), data));
                break id;
            }
            Answer::Status(507, _) => {}
            other => panic!("on a full disk: {other:?}"),
        }
    };
    assert_eq!(seq(&id), seq(&acked[acked.len() - 2].0) + 1);
    fill(&topup);
    server.stop().await;
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&topup).unwrap();
    let server = Ssehub::start_logging_to(&dir, &args, &log).await;
    let count = seq(&acked.last().unwrap().0);
    assert_eq!(read_history(server.addr, "t", &epoch, count).await, acked);
    println!(
        "full disk: {} acknowledged, 507 after that, {reads} reads meanwhile, \
         back after {} refused attempts",
        acked.len(),
        meanwhile.len()
    );
    server.stop().await;
}

/// Publishes `batches` JSON batches of `per` events to `topic`, with data
/// `data(seq)`; returns the epoch.
async fn publish_batches(
    addr: SocketAddr,
    topic: &str,
    batches: u64,
    per: u64,
    data: impl Fn(u64) -> String,
) -> String {
    let mut epoch = String::new();
    for b in 0..batches {
        let events: Vec<_> = (1..=per)
            .map(|i| serde_json::json!({ "data": data(b * per + i) }))
            .collect();
        let body = serde_json::Value::Array(events).to_string();
        let (status, answer) = support::request(
            addr,
            "POST",
            &format!("/events/{topic}"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let ids = v["ids"].as_array().expect("ids");
        let last = ids.last().unwrap().as_str().unwrap();
        assert_eq!(seq(last), (b + 1) * per, "{answer}");
        epoch = epoch_of(last).to_owned();
    }
    epoch
}

/// The directory of the engine's keyspace that holds the events: the
/// largest under `db/keyspaces`.
fn events_keyspace(dir: &Path) -> PathBuf {
    let keyspaces = dir.join("db").join("keyspaces");
    std::fs::read_dir(&keyspaces)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .max_by_key(|p| files(p).iter().map(|(_, len)| len).sum::<u64>())
        .unwrap_or_else(|| panic!("no keyspace: {:?}", files(dir)))
}

/// What a stream that must resync once then go live got: its `resync`
/// events (JSON) and its other events (id, data), read until `live` (an
/// event of the new epoch) arrives, within a bounded time and byte count.
async fn until_live(
    c: &mut SseClient,
    live: &str,
) -> (Vec<serde_json::Value>, Vec<(String, String)>) {
    let (mut resyncs, mut events) = (Vec::new(), Vec::new());
    let end = tokio::time::Instant::now() + support::WAIT;
    loop {
        assert!(
            c.raw.len() < 64 * 1024,
            "{} bytes, {} resyncs so far: {:?}",
            c.raw.len(),
            resyncs.len(),
            resyncs.iter().take(3).collect::<Vec<_>>()
        );
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match c.next_item_within(left).await {
            Some(Item::Event(e)) if e.event_type == "resync" => {
                resyncs.push(serde_json::from_str(&e.data).unwrap());
            }
            Some(Item::Event(e)) => {
                let done = e.data == live;
                events.push((e.last_event_id, e.data));
                if done {
                    return (resyncs, events);
                }
            }
            Some(_) => {}
            None => panic!("the stream ended: {resyncs:?} {events:?}"),
        }
    }
}

/// Four topics of 3,500 events each, stopped (so the events are in tables):
/// the epochs by topic.
async fn four_topics(dir: &Path) -> Vec<String> {
    let server = Ssehub::start(dir, &["--buffer", "64"]).await;
    let mut epochs = Vec::new();
    for t in 0..4 {
        let topic = format!("c{t}");
        epochs.push(publish_batches(server.addr, &topic, 7, 500, |i| format!("{topic}-{i}")).await);
    }
    server.stop().await;
    epochs
}

/// Resumes on damaged history, from a single-topic stream, `?rewind=`,
/// and a stream of two topics: each topic must be one `resync` (`epoch`)
/// per stream, then live events of the new epoch (published after the
/// streams opened), and the log must name each damaged topic.
async fn check_one_resync_then_live(dir: &Path, epochs: &[String]) {
    let server = Ssehub::start(dir, &["--buffer", "64", "--retry", "100"]).await;
    let resume = format!("{}-3499", epochs[0]);
    let mut single = SseClient::get(server.addr, "/events/c0", &[("Last-Event-ID", &resume)]).await;
    let mut rewind = SseClient::get(server.addr, "/events/c1?rewind=5", &[]).await;
    // A stream's id opens with a check of its topics (what HEAD answers).
    let check = support::multi::check_of(server.addr, &["c2", "c3"]).await;
    let both = format!("{check}{}-3499.{}-3499", epochs[2], epochs[3]);
    let mut multi = SseClient::get(
        server.addr,
        "/events?topic=c2&topic=c3",
        &[("Last-Event-ID", &both)],
    )
    .await;
    for c in [&single, &rewind, &multi] {
        assert_eq!(c.status, 200);
    }
    // The streams meet the damage before anything new is published.
    let mut new_epochs = Vec::new();
    for (c, topic) in [(&mut single, "c0"), (&mut rewind, "c1")] {
        let ev = c.next_event().await;
        assert_eq!(ev.event_type, "resync", "{topic}: {ev:?}");
        let r: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
        assert_eq!(r["reason"], "epoch", "{topic}: {r}");
        new_epochs.push(epoch_of(r["latest"].as_str().unwrap()).to_owned());
    }
    assert_ne!(new_epochs[0], epochs[0]);
    assert_ne!(new_epochs[1], epochs[1]);
    let mut live = Vec::new();
    for (t, old_epoch) in epochs.iter().enumerate() {
        let topic = format!("c{t}");
        let data = format!("{topic}-live");
        let Answer::Created(id) = publish(server.addr, &topic, &data).await else {
            panic!("publishing to {topic} after the damage")
        };
        assert_eq!(seq(&id), 1, "{topic}: {id}");
        assert_ne!(
            epoch_of(&id),
            old_epoch,
            "{topic}: an id of the lost history"
        );
        live.push((id, data));
    }
    for (c, t) in [(&mut single, 0usize), (&mut rewind, 1)] {
        let (resyncs, events) = until_live(c, &live[t].1).await;
        assert!(resyncs.is_empty(), "c{t}: more resyncs: {resyncs:?}");
        assert_eq!(events, [live[t].clone()], "c{t}");
    }
    // The stream of c2 and c3: one resync each, then both live events.
    let mut per_topic: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    let mut got = Vec::new();
    let end = tokio::time::Instant::now() + support::WAIT;
    while got.len() < 2 {
        assert!(multi.raw.len() < 64 * 1024, "{per_topic:?}");
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match multi.next_item_within(left).await {
            Some(Item::Event(e)) if e.event_type == "resync" => {
                let r: serde_json::Value = serde_json::from_str(&e.data).unwrap();
                let topic = r["topic"].as_str().unwrap().to_owned();
                per_topic.entry(topic).or_default().push(r);
            }
            Some(Item::Event(e)) => got.push((e.event_type, e.data)),
            Some(_) => {}
            None => panic!("the stream of two topics ended"),
        }
    }
    for topic in ["c2", "c3"] {
        let rs = &per_topic[topic];
        assert_eq!(rs.len(), 1, "{topic}: {rs:?}");
        assert_eq!(rs[0]["reason"], "epoch", "{topic}: {rs:?}");
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("c2".to_owned(), "c2-live".to_owned()),
            ("c3".to_owned(), "c3-live".to_owned())
        ]
    );
    let log = server.log_text();
    for t in 0..4 {
        assert!(
            log.lines()
                .any(|l| l.contains("cannot read history: new epoch")
                    && l.contains(&format!("c{t}"))),
            "c{t} not named:\n{log}"
        );
    }
    server.stop().await;
}

/// Regression (issue 20): with the events keyspace deleted (the topic
/// records survive), a client resuming from an id older than the ring got
/// about 80,000 `resync` (`lagged`, `missed: 0`) in 3 s, forever: the read
/// found nothing, which the stream took for trimmed history, so it went
/// back to the oldest event, which was not there either. Now a read that
/// does not find events the store's records say are there is damage: the
/// topic gets a new epoch once, and the streams go live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_events_keyspace_is_one_resync_per_topic_then_live() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let epochs = four_topics(&dir).await;
    let keyspace = events_keyspace(&dir);
    std::fs::remove_dir_all(&keyspace).unwrap();
    check_one_resync_then_live(&dir, &epochs).await;
}

/// Fifty events acknowledged then SIGKILL (so they are in the journal
/// only): the epoch, and the journal that holds them.
async fn fifty_in_the_journal(dir: &Path) -> (String, PathBuf) {
    let server = Ssehub::start(dir, &[]).await;
    let epoch = publish_numbered(server.addr, 50, |i| format!("journal-{i:04}-payload")).await;
    server.kill().await;
    let marker = b"journal-0050-payload";
    let journal = files(dir)
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| {
            p.extension().is_some_and(|e| e == "jnl")
                && std::fs::read(p)
                    .unwrap()
                    .windows(marker.len())
                    .any(|w| w == marker)
        })
        .unwrap_or_else(|| panic!("no journal holds the events: {:?}", files(dir)));
    (epoch, journal)
}

/// After journal damage that the engine's recovery silently cuts at:
/// startup goes on, the log names the topic, a client resuming from an id
/// of the lost history gets one `resync` (`epoch`) and the next event
/// gets `<new epoch>-1`: no id names two events.
async fn check_rewound_history_is_a_new_epoch(dir: &Path, epoch: &str) {
    let server = Ssehub::start(dir, &["--retry", "100"]).await;
    let log = server.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("lost acknowledged events") && l.contains("topic=\"t\"")),
        "{log}"
    );
    let mut c = SseClient::get(
        server.addr,
        "/events/t",
        &[("Last-Event-ID", &format!("{epoch}-20"))],
    )
    .await;
    let ev = c.next_event().await;
    assert_eq!(ev.event_type, "resync", "{ev:?}");
    let r: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
    assert_eq!(r["reason"], "epoch", "{r}");
    let Answer::Created(id) = publish(server.addr, "t", "after").await else {
        panic!("publishing after the damage")
    };
    assert_ne!(
        epoch_of(&id),
        epoch,
        "{id} names an event of the lost history"
    );
    assert_eq!(seq(&id), 1);
    let (resyncs, events) = until_live(&mut c, "after").await;
    assert!(resyncs.is_empty(), "{resyncs:?}");
    assert_eq!(events, [(id, "after".to_owned())]);
    server.stop().await;
    // And it stays so: a restart keeps the new epoch.
    let server = Ssehub::start(dir, &[]).await;
    assert!(!server.log_text().contains("lost acknowledged events"));
    let (latest_epoch, latest_seq) = latest(server.addr, "t").await;
    assert_ne!(latest_epoch, epoch);
    assert_eq!(latest_seq, 1);
    server.stop().await;
}

/// Regression (issue 20): a damaged journal frame (the tag byte of one
/// event's entry) after SIGKILL. fjall cannot decode the entry, takes it
/// for a write torn by a crash (`RecoveryMode::TolerateCorruptTail`, its
/// only mode), cuts the journal there and opens: events 30..=50, all
/// acknowledged, were gone and the next publish got id 30 again. The
/// marks (each topic's committed position, synced outside the journal)
/// show the history rewound: the topic gets a new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_journal_frame_is_a_new_epoch_never_a_reused_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (epoch, journal) = fifty_in_the_journal(&dir).await;
    // The entry of event 30: a tag byte (2, an item), its value type, its
    // compression, its keyspace (8 bytes), key length (2), value lengths
    // (4 and 4), then the key `t 0x00 <epoch> 0x00 <seq>`.
    let mut key = format!("t\0{epoch}\0").into_bytes();
    key.extend_from_slice(&30u64.to_be_bytes());
    let bytes = std::fs::read(&journal).unwrap();
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("event 30")
        - 21;
    assert_eq!(bytes[at], 2, "an item's tag");
    flip(&journal, at);
    check_rewound_history_is_a_new_epoch(&dir, &epoch).await;
}

/// Regression (issue 20): a journal cut short (acknowledged events 26..=50
/// gone) started silently, and new events got their ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_journal_is_a_new_epoch_never_a_reused_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (epoch, journal) = fifty_in_the_journal(&dir).await;
    // Cut in the middle of event 26 (the file may be longer than what
    // it holds: half its length may cut nothing).
    let marker = b"journal-0026-payload";
    let bytes = std::fs::read(&journal).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("event 26");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(at as u64 + 5)
        .unwrap();
    check_rewound_history_is_a_new_epoch(&dir, &epoch).await;
}
