//! Performance scenarios: commit, publish (+ Redis reference), replay, startup, trim, retire.

use crate::store::{self, Commit, Engine, R, Store};
use crate::util::*;
use crate::workload::{Topics, bulk_load};
use crate::{Opts, child_results, run_child};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOPICS: u64 = 10;

// ================================================================== commit

/// Fixed group-commit sizes, one synced commit each time.
pub fn commit(o: &Opts) -> R<()> {
    let sizes = [1usize, 16, 64];
    let n = if o.quick { 60 } else { 400 };
    let prefill = if o.quick { 5_000 } else { 50_000 };
    println!(
        "## commit: synced group commits of B x 1 KB events spread over {TOPICS} topics + their metadata ({n} commits per engine and size, engines interleaved commit by commit, stores prefilled with {prefill} events)\n"
    );
    // (size, engine) -> per rep [p50, p99, max, events/s]
    let mut res: BTreeMap<(usize, &str), Vec<[f64; 4]>> = BTreeMap::new();
    for rep in 0..o.reps {
        let mut open: Vec<(Engine, Box<dyn Store>, Topics, PathBuf)> = Vec::new();
        for &e in &o.engines {
            let dir = o.base.join(format!("commit-{}", e.name()));
            rm_rf(&dir);
            let mut s = store::open(e, &dir)?;
            let mut tp = Topics::new(TOPICS);
            bulk_load(s.as_mut(), &mut tp, prefill, None)?;
            s.flush()?;
            open.push((e, s, tp, dir));
        }
        settle();
        for &b in &sizes {
            // Interleaved commit by commit (engine order rotated each round), so every engine
            // sees the same disk/neighbour conditions: fsync latency on this shared VM is bimodal.
            let idx: Vec<usize> = (0..open.len()).collect();
            let mut lat: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); open.len()];
            for round in 0..n + 10 {
                for i in rotated(&idx, round + rep) {
                    let (_, s, tp, _) = &mut open[i];
                    let spec = tp.spread(b);
                    let d = tp.commit(s.as_mut(), &spec, None, true)?.0;
                    if round >= 10 {
                        lat[i].push(d); // first 10 rounds are warm-up
                    }
                }
            }
            for (i, mut lat) in lat.into_iter().enumerate() {
                let e = open[i].0;
                let total: Duration = lat.iter().sum();
                lat.sort();
                let r = [
                    ms(pct(&lat, 0.5)),
                    ms(pct(&lat, 0.99)),
                    ms(*lat.last().unwrap()),
                    (b * n) as f64 / total.as_secs_f64(),
                ];
                eprintln!(
                    "  rep {rep} B={b:<3} {:<8} p50 {:.2} ms p99 {:.2} ms max {:.2} ms {:.0} ev/s",
                    e.name(),
                    r[0],
                    r[1],
                    r[2],
                    r[3]
                );
                res.entry((b, e.name())).or_default().push(r);
            }
        }
        for (_, s, _, dir) in open {
            s.close()?;
            rm_rf(&dir);
        }
    }
    let mut rows = Vec::new();
    for &b in &sizes {
        let f = res
            .get(&(b, "fjall"))
            .map(|v| median(&v.iter().map(|r| r[3]).collect::<Vec<_>>()));
        for &e in &o.engines {
            let v = &res[&(b, e.name())];
            let col = |i: usize| v.iter().map(|r| r[i]).collect::<Vec<_>>();
            let evps = median(&col(3));
            rows.push(vec![
                b.to_string(),
                e.name().to_string(),
                fmt_reps(&col(0)),
                fmt_reps(&col(1)),
                fmt_reps(&col(2)),
                fmt_reps(&col(3)),
                f.map(|f| ratio(evps, f)).unwrap_or_default(),
            ]);
        }
    }
    print_table(
        &[
            "batch",
            "engine",
            "commit p50 ms",
            "commit p99 ms",
            "commit max ms",
            "events/s",
            "events/s vs fjall",
        ],
        &rows,
    );
    Ok(())
}

// ================================================================== publish

struct Req {
    topic: u64,
    payload: Vec<u8>,
    ack: mpsc::Sender<Result<(), String>>,
}

pub struct PubResult {
    pub evps: f64,
    pub p50: f64,
    pub p99: f64,
    pub avg_batch: f64,
}

/// `conc` publisher threads each publish `total/conc` events and wait for durability; one writer
/// thread group-commits whatever is queued.
fn run_publish(s: &mut dyn Store, tp: &mut Topics, conc: usize, total: usize) -> R<PubResult> {
    let per = total / conc;
    let (tx, rx) = mpsc::channel::<Req>();
    let t0 = Instant::now();
    let mut commits = 0usize;
    let lats = std::thread::scope(|sc| -> R<Vec<Duration>> {
        let mut hs = Vec::new();
        for i in 0..conc {
            let tx = tx.clone();
            hs.push(sc.spawn(move || {
                let topic = i as u64 % TOPICS;
                let body = payload(topic, i as u64);
                let (atx, arx) = mpsc::channel();
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    tx.send(Req {
                        topic,
                        payload: body.clone(),
                        ack: atx.clone(),
                    })
                    .unwrap();
                    arx.recv().unwrap().unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        drop(tx);
        let mut done = 0;
        let mut batch = Vec::with_capacity(conc);
        while done < per * conc {
            batch.clear();
            batch.push(rx.recv()?);
            while let Ok(r) = rx.try_recv() {
                batch.push(r);
            }
            // assign seqs, update metadata, one synced commit
            let mut metas = BTreeMap::new();
            let mut appends = Vec::with_capacity(batch.len());
            for r in &batch {
                let m = metas
                    .entry(r.topic)
                    .or_insert_with(|| tp.metas[&r.topic].clone());
                appends.push((r.topic, m.next_seq, r.payload.as_slice()));
                m.next_seq += 1;
                m.bytes += r.payload.len() as u64;
            }
            let c = Commit {
                appends,
                meta: metas.iter().map(|(t, m)| (*t, m.clone())).collect(),
                sync: true,
                ..Default::default()
            };
            let res = s.commit(&c).map_err(|e| e.to_string());
            let n_appended = c.appends.len();
            drop(c);
            if res.is_ok() {
                for (t, m) in metas {
                    tp.metas.insert(t, m);
                }
            }
            for r in batch.drain(..) {
                let _ = r.ack.send(res.clone());
            }
            commits += 1;
            done += n_appended;
            res?;
        }
        let mut all = Vec::new();
        for h in hs {
            all.extend(h.join().unwrap());
        }
        Ok(all)
    })?;
    let el = t0.elapsed();
    let mut lats = lats;
    lats.sort();
    Ok(PubResult {
        evps: lats.len() as f64 / el.as_secs_f64(),
        p50: ms(pct(&lats, 0.5)),
        p99: ms(pct(&lats, 0.99)),
        avg_batch: lats.len() as f64 / commits as f64,
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `redis-server --appendonly yes --appendfsync <mode>` + `redis-benchmark` XADD of the same
/// payload from `conc` connections.
pub struct Redis {
    srv: std::process::Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    /// `redis-server --appendonly yes --appendfsync <mode>` with its files in `base`.
    pub fn start(base: &Path, mode: &str) -> R<Redis> {
        let dir = base.join(format!("redis-{mode}"));
        rm_rf(&dir);
        std::fs::create_dir_all(&dir)?;
        let port = free_port();
        let mut srv = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--appendfsync",
                mode,
            ])
            .arg("--dir")
            .arg(&dir)
            .args(["--save", "", "--logfile", "", "--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .spawn()?;
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = srv.kill();
                return Err("redis-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        Ok(Redis { srv, port, dir })
    }

    /// `redis-benchmark` XADD of the same 1 KB payload from `conc` connections.
    pub fn bench(&self, conc: usize, n: usize) -> R<PubResult> {
        let p = payload(0, 1);
        let data = String::from_utf8_lossy(&p[1 + EVENT_TYPE.len()..]).to_string();
        let out = std::process::Command::new("redis-benchmark")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-c",
                &conc.to_string(),
                "-n",
                &n.to_string(),
                "-P",
                "1",
                "--csv",
            ])
            .args(["XADD", "s", "*", "t", EVENT_TYPE, "d", &data])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        let line = text
            .lines()
            .filter(|l| l.starts_with('"') && !l.starts_with("\"test\""))
            .last()
            .ok_or_else(|| {
                format!(
                    "no csv from redis-benchmark: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })?;
        let f: Vec<f64> = line
            .rsplitn(8, ',')
            .map(|x| x.trim_matches('"').parse::<f64>().unwrap_or(f64::NAN))
            .collect();
        // rsplitn yields from the end: max, p99, p95, p50, min, avg, rps, test
        Ok(PubResult {
            evps: f[6],
            p50: f[3],
            p99: f[1],
            avg_batch: f64::NAN,
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.srv.kill();
        let _ = self.srv.wait();
        rm_rf(&self.dir);
    }
}

pub fn publish(o: &Opts) -> R<()> {
    let concs = [1usize, 16, 64];
    let n = if o.quick { 2_000 } else { 20_000 };
    let prefill = if o.quick { 5_000 } else { 50_000 };
    let redis = o.redis && which("redis-server") && which("redis-benchmark");
    // one publisher is fsync-bound (~1 commit per event): fewer events there
    let n_for = |c: usize| if c == 1 { n / 10 } else { n };
    println!(
        "## publish: C concurrent publishers, each waits until its 1 KB event is durable; one group-committing writer ({n} events per cell, {} with 1 publisher; each cell run as 4 slices, stores interleaved slice by slice; Redis servers started once per repetition)\n",
        n / 10
    );
    let mut names: Vec<String> = o.engines.iter().map(|e| e.name().to_string()).collect();
    if redis {
        names.push("redis-always".into());
        names.push("redis-everysec".into());
    }
    let mut res: BTreeMap<(usize, String), Vec<PubResult>> = BTreeMap::new();
    const SLICES: usize = 4;
    for rep in 0..o.reps {
        let mut open: Vec<(Engine, Box<dyn Store>, Topics, PathBuf)> = Vec::new();
        for &e in &o.engines {
            let dir = o.base.join(format!("publish-{}", e.name()));
            rm_rf(&dir);
            let mut s = store::open(e, &dir)?;
            let mut tp = Topics::new(TOPICS);
            bulk_load(s.as_mut(), &mut tp, prefill, None)?;
            s.flush()?;
            open.push((e, s, tp, dir));
        }
        settle();
        let servers: Vec<(String, Redis)> = if redis {
            vec![
                ("redis-always".into(), Redis::start(&o.base, "always")?),
                ("redis-everysec".into(), Redis::start(&o.base, "everysec")?),
            ]
        } else {
            Vec::new()
        };
        for &c in &concs {
            // each cell in SLICES slices, stores interleaved slice by slice
            let mut acc: BTreeMap<String, (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>, f64)> =
                BTreeMap::new();
            for slice in 0..SLICES {
                for name in rotated(
                    &names.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    rep + slice,
                ) {
                    let m = n_for(c) / SLICES;
                    let t0 = Instant::now();
                    let r = if let Some((_, srv)) = servers.iter().find(|(n, _)| n == name) {
                        srv.bench(c, m)?
                    } else {
                        let (_, s, tp, _) = open.iter_mut().find(|x| x.0.name() == name).unwrap();
                        run_publish(s.as_mut(), tp, c, m)?
                    };
                    let el = t0.elapsed().as_secs_f64();
                    let a = acc.entry(name.to_string()).or_default();
                    a.0.push(r.evps);
                    a.1.push(r.p50);
                    a.2.push(r.p99);
                    a.3.push(r.avg_batch);
                    a.4 += m as f64 / r.evps.max(1e-9);
                    let _ = el;
                }
            }
            for (name, (evps, p50, p99, batch, secs)) in acc {
                // throughput over the whole cell; latency percentiles: median of the slices'
                let r = PubResult {
                    evps: (n_for(c) / SLICES * SLICES) as f64 / secs,
                    p50: median(&p50),
                    p99: median(&p99),
                    avg_batch: median(&batch),
                };
                eprintln!(
                    "  rep {rep} C={c:<3} {name:<15} {:>8.0} ev/s  p50 {:.2} ms  p99 {:.2} ms  batch {:.1}  (slices: {:?})",
                    r.evps,
                    r.p50,
                    r.p99,
                    r.avg_batch,
                    evps.iter().map(|x| x.round()).collect::<Vec<_>>()
                );
                res.entry((c, name)).or_default().push(r);
            }
        }
        drop(servers);
        for (_, s, _, dir) in open {
            s.close()?;
            rm_rf(&dir);
        }
    }
    let mut rows = Vec::new();
    for &c in &concs {
        let med = |name: &str| {
            res.get(&(c, name.to_string()))
                .map(|v| median(&v.iter().map(|r| r.evps).collect::<Vec<_>>()))
                .unwrap_or(f64::NAN)
        };
        let (f, ra) = (med("fjall"), med("redis-always"));
        for name in &names {
            let v = &res[&(c, name.clone())];
            let col = |g: fn(&PubResult) -> f64| v.iter().map(g).collect::<Vec<_>>();
            let evps = median(&col(|r| r.evps));
            rows.push(vec![
                c.to_string(),
                name.clone(),
                fmt_reps(&col(|r| r.evps)),
                fmt_reps(&col(|r| r.p50)),
                fmt_reps(&col(|r| r.p99)),
                fmt_f(median(&col(|r| r.avg_batch))),
                ratio(evps, f),
                ratio(evps, ra),
            ]);
        }
    }
    print_table(
        &[
            "publishers",
            "store",
            "events/s",
            "publish p50 ms",
            "publish p99 ms",
            "avg events/commit",
            "vs fjall",
            "vs redis-always",
        ],
        &rows,
    );
    Ok(())
}

fn which(bin: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

// ================================================================== dataset / replay / startup

pub fn per_topic(o: &Opts) -> usize {
    if o.quick { 10_000 } else { 100_000 }
}

/// The big store: 10 topics x 100,000 events of 1 KB (~1 GB), built once per engine family.
pub fn ensure_dataset(o: &Opts, e: Engine) -> R<PathBuf> {
    let dir = o.base.join(format!("big-{}-{}", e.family(), per_topic(o)));
    let marker = o
        .base
        .join(format!("big-{}-{}.complete", e.family(), per_topic(o)));
    if marker.exists() {
        return Ok(dir);
    }
    rm_rf(&dir);
    eprintln!("  building dataset {} ...", dir.display());
    let mut s = store::open(e, &dir)?;
    let mut tp = Topics::new(TOPICS);
    let d = bulk_load(s.as_mut(), &mut tp, per_topic(o) * TOPICS as usize, None)?;
    let t1 = Instant::now();
    s.flush()?;
    let info = s.info();
    s.close()?;
    let (bytes, files) = du(&dir);
    let msg = format!(
        "{}: loaded {} events in {:.1} s ({:.0} events/s, synced 1000-event commits), flush {:.1} s, {:.0} MB on disk in {} files, {}",
        e.family(),
        per_topic(o) * TOPICS as usize,
        d.as_secs_f64(),
        (per_topic(o) * TOPICS as usize) as f64 / d.as_secs_f64(),
        t1.elapsed().as_secs_f64(),
        mb(bytes),
        files,
        info
    );
    eprintln!("  {msg}");
    std::fs::write(&marker, msg)?;
    Ok(dir)
}

pub fn replay(o: &Opts) -> R<()> {
    let count = per_topic(o);
    println!(
        "## replay: resume {count} events back on one topic, chunks of 256 (new snapshot per chunk), fresh process, store of {} topics x {count} events\n",
        TOPICS
    );
    let mut res: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let fams: Vec<Engine> = families(o);
    for e in &fams {
        let dir = ensure_dataset(o, *e)?;
        eprintln!(
            "  {}",
            std::fs::read_to_string(o.base.join(format!(
                "big-{}-{}.complete",
                e.family(),
                per_topic(o)
            )))?
        );
        let _ = dir;
    }
    for rep in 0..o.reps {
        for &e in &rotated(&fams, rep) {
            let dir = ensure_dataset(o, e)?;
            drop_cache(&dir);
            let r = child_results(run_child(
                &[
                    "child-replay",
                    e.name(),
                    dir.to_str().unwrap(),
                    "3",
                    &count.to_string(),
                    "256",
                ],
                600,
            )?)?;
            eprintln!("  rep {rep} {:<6} {r:?}", e.family());
            for k in [
                "cold_evps",
                "warm_evps",
                "cold_ms",
                "warm_ms",
                "rss_mb",
                "hwm_mb",
                "open_ms",
                "bad",
            ] {
                res.entry((e.family(), k))
                    .or_default()
                    .push(r.get(k).copied().unwrap_or(f64::NAN));
            }
        }
    }
    let mut rows = Vec::new();
    for e in &fams {
        let g = |k: &str| res[&(e.family(), k)].clone();
        rows.push(vec![
            e.family().to_string(),
            fmt_reps(&g("cold_evps")),
            fmt_reps(&g("cold_ms")),
            fmt_reps(&g("warm_evps")),
            fmt_reps(&g("warm_ms")),
            fmt_reps(&g("rss_mb")),
            fmt_reps(&g("hwm_mb")),
            fmt_f(g("bad").iter().sum()),
        ]);
    }
    if fams.len() == 2 {
        let r = |k: &str| ratio(median(&res[&("redb", k)]), median(&res[&("fjall", k)]));
        rows.push(vec![
            "redb/fjall".into(),
            r("cold_evps"),
            r("cold_ms"),
            r("warm_evps"),
            r("warm_ms"),
            r("rss_mb"),
            r("hwm_mb"),
            "".into(),
        ]);
    }
    print_table(
        &[
            "engine",
            "cold events/s",
            "cold ms",
            "warm events/s",
            "warm ms",
            "RSS after MB",
            "peak RSS MB",
            "bad payloads",
        ],
        &rows,
    );
    Ok(())
}

fn families(o: &Opts) -> Vec<Engine> {
    let mut v = Vec::new();
    if o.engines.contains(&Engine::Fjall) {
        v.push(Engine::Fjall);
    }
    if o.engines.iter().any(|e| e.family() == "redb") {
        v.push(Engine::Redb);
    }
    v
}

/// child: open, read metadata, replay `count` events of `topic` cold then warm.
pub fn child_replay(args: &[String]) -> R<()> {
    let e = Engine::parse(&args[0]).ok_or("engine")?;
    let dir = PathBuf::from(&args[1]);
    let topic: u64 = args[2].parse()?;
    let count: u64 = args[3].parse()?;
    let chunk: usize = args[4].parse()?;
    let t0 = Instant::now();
    let s = store::open(e, &dir)?;
    let open_ms = ms(t0.elapsed());
    let meta = s
        .all_meta()?
        .into_iter()
        .find(|(t, _)| *t == topic)
        .ok_or("topic missing")?
        .1;
    let from = meta.next_seq.saturating_sub(count).max(meta.first_seq);
    let mut out = Vec::new();
    let mut pass = |verify: bool| -> R<(f64, u64, u64)> {
        let t = Instant::now();
        let (mut n, mut bad, mut next) = (0u64, 0u64, from);
        while n < count {
            out.clear();
            s.read_chunk(topic, next, chunk, &mut out)?;
            if out.is_empty() {
                break;
            }
            for (seq, p) in &out {
                if *seq != next || (verify && seq % 97 == 0 && *p != payload(topic, *seq)) {
                    bad += 1;
                }
                next = seq + 1;
            }
            n += out.len() as u64;
        }
        Ok((ms(t.elapsed()), n, bad))
    };
    let (cold_ms, n, bad) = pass(true)?;
    let (warm_ms, _, _) = pass(false)?;
    let (rss, hwm) = rss_mb();
    println!(
        "RESULT open_ms={open_ms} cold_ms={cold_ms} warm_ms={warm_ms} events={n} cold_evps={} warm_evps={} rss_mb={rss} hwm_mb={hwm} bad={bad}",
        n as f64 / cold_ms * 1000.0,
        n as f64 / warm_ms * 1000.0
    );
    s.close()?;
    Ok(())
}

/// child: open the store, read only the metadata, report time and memory.
pub fn child_open(args: &[String]) -> R<()> {
    let e = Engine::parse(&args[0]).ok_or("engine")?;
    let dir = PathBuf::from(&args[1]);
    let verify = args.get(2).is_some_and(|a| a == "verify");
    let (rss0, _) = rss_mb();
    let t0 = Instant::now();
    if verify {
        // redb's own full verification (every page checksum) before the normal open
        let mut b = redb::Builder::new();
        b.set_cache_size(store::CACHE_BYTES as usize);
        b.set_check_integrity_on_open(true);
        b.open(store::redb_file(&dir))?.close()?;
    }
    let s = store::open(e, &dir)?;
    let open_ms = ms(t0.elapsed());
    let t1 = Instant::now();
    let metas = s.all_meta()?;
    let meta_ms = ms(t1.elapsed());
    let events: u64 = metas.iter().map(|(_, m)| m.next_seq - m.first_seq).sum();
    let (rss, hwm) = rss_mb();
    let threads = thread_count();
    let t2 = Instant::now();
    s.close()?;
    println!(
        "RESULT open_ms={open_ms} meta_ms={meta_ms} topics={} events={events} rss_mb={rss} hwm_mb={hwm} base_rss_mb={rss0} threads={threads} close_ms={}",
        metas.len(),
        ms(t2.elapsed())
    );
    Ok(())
}

/// child: live traffic (synced 64-event commits with retention at the current size) until killed.
pub fn child_churn(args: &[String]) -> R<()> {
    let e = Engine::parse(&args[0]).ok_or("engine")?;
    let dir = PathBuf::from(&args[1]);
    let events: usize = args[2].parse()?;
    let mut s = store::open(e, &dir)?;
    let mut tp = Topics::from_store(s.as_ref())?;
    let cap = tp.retained(0);
    let mut left = events;
    while left > 0 {
        let spec = tp.spread(64.min(left));
        tp.commit(s.as_mut(), &spec, Some((cap, 64)), true)?;
        left -= 64.min(left);
    }
    println!("DONE");
    use std::io::Write;
    std::io::stdout().flush()?;
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

pub fn startup(o: &Opts) -> R<()> {
    let churn = if o.quick { 3_000 } else { 30_000 };
    println!(
        "## startup: open a store of {TOPICS} topics x {} events and read only the metadata (fresh process each time)\n",
        per_topic(o)
    );
    println!(
        "`crash` = the previous process was SIGKILLed after {churn} events of synced live traffic (64-event commits with retention); `cold` = store files evicted from the page cache first.\n"
    );
    let mut res: BTreeMap<(String, &str), Vec<f64>> = BTreeMap::new();
    let mut info: BTreeMap<String, String> = BTreeMap::new();
    for rep in 0..o.reps {
        for &e in &rotated(&o.engines, rep) {
            let dir = ensure_dataset(o, e)?;
            // live traffic, then SIGKILL
            let mut ch = spawn_child(&[
                "child-churn",
                e.name(),
                dir.to_str().unwrap(),
                &churn.to_string(),
            ])?;
            wait_line(&mut ch, "DONE", 600)?;
            ch.kill()?;
            let _ = ch.wait();
            for (case, cold) in [
                ("crash, cold", true),
                ("clean, cold", true),
                ("clean, warm", false),
                ("clean, cold, redb integrity check", true),
            ] {
                let verify = case.contains("integrity");
                if verify && e != Engine::Redb {
                    continue;
                }
                if cold {
                    drop_cache(&dir);
                }
                let mut args = vec!["child-open", e.name(), dir.to_str().unwrap()];
                if verify {
                    args.push("verify");
                }
                let r = child_results(run_child(&args, 900)?)?;
                eprintln!("  rep {rep} {:<8} {case:<12} {r:?}", e.name());
                for k in [
                    "open_ms", "meta_ms", "rss_mb", "hwm_mb", "threads", "events",
                ] {
                    res.entry((format!("{}|{case}", e.name()), k))
                        .or_default()
                        .push(r.get(k).copied().unwrap_or(f64::NAN));
                }
            }
            let (bytes, files) = du(&dir);
            info.insert(
                e.name().to_string(),
                format!("{:.0} MB in {files} files", mb(bytes)),
            );
        }
    }
    let mut rows = Vec::new();
    for case in [
        "crash, cold",
        "clean, cold",
        "clean, warm",
        "clean, cold, redb integrity check",
    ] {
        for &e in &o.engines {
            let key = format!("{}|{case}", e.name());
            if !res.contains_key(&(key.clone(), "open_ms")) {
                continue;
            }
            let g = |k: &str| res[&(key.clone(), k)].clone();
            rows.push(vec![
                case.to_string(),
                e.name().to_string(),
                fmt_reps(&g("open_ms")),
                fmt_reps(&g("meta_ms")),
                fmt_reps(&g("rss_mb")),
                fmt_reps(&g("hwm_mb")),
                fmt_f(median(&g("threads"))),
                info[e.name()].clone(),
            ]);
        }
        if let (Some(f), Some(r)) = (
            res.get(&(format!("fjall|{case}"), "open_ms")),
            res.get(&(format!("redb|{case}"), "open_ms")),
        ) {
            if case.contains("integrity") {
                continue;
            }
            rows.push(vec![
                case.to_string(),
                "redb/fjall".into(),
                ratio(median(r), median(f)),
                "".into(),
                ratio(
                    median(&res[&(format!("redb|{case}"), "rss_mb")]),
                    median(&res[&(format!("fjall|{case}"), "rss_mb")]),
                ),
                "".into(),
                "".into(),
                "".into(),
            ]);
        }
    }
    print_table(
        &[
            "case",
            "engine",
            "open ms",
            "metadata read ms",
            "RSS after open MB",
            "peak RSS MB",
            "threads",
            "store",
        ],
        &rows,
    );
    Ok(())
}

pub fn spawn_child(args: &[&str]) -> R<std::process::Child> {
    Ok(std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()?)
}

/// Read the child's stdout until a line equal to `want`.
pub fn wait_line(ch: &mut std::process::Child, want: &str, _timeout_s: u64) -> R<()> {
    use std::io::BufRead;
    let out = ch.stdout.as_mut().ok_or("no stdout")?;
    let mut r = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(format!("child exited before printing {want}").into());
        }
        if line.trim() == want {
            return Ok(());
        }
    }
}

// ================================================================== trim

pub fn trim(o: &Opts) -> R<()> {
    let cap: u64 = if o.quick { 5_000 } else { 50_000 };
    let (na, nb) = if o.quick { (200, 600) } else { (1_000, 5_000) };
    let churn = (cap * 4) as usize;
    println!(
        "## trim: one topic capped at {cap} events; synced commits of 16 x 1 KB events; phase A = {na} commits without trimming, phase B = {nb} commits where a commit that takes the topic over the cap also deletes its oldest 1,000 events; phase C = {churn} more events in synced 1000-event commits with the same retention (space reuse)\n"
    );
    let mut res: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut infos: BTreeMap<&str, String> = BTreeMap::new();
    for rep in 0..o.reps {
        for &e in &rotated(&o.engines, rep) {
            let dir = o.base.join(format!("trim-{}", e.name()));
            rm_rf(&dir);
            let mut s = store::open(e, &dir)?;
            let mut tp = Topics::new(1);
            bulk_load(s.as_mut(), &mut tp, (cap - 16 * na as u64) as usize, None)?;
            s.flush()?;
            settle();
            let mut a = Vec::new();
            for _ in 0..na {
                a.push(tp.commit(s.as_mut(), &[(0, 16)], None, true)?.0);
            }
            let du_a = du(&dir).0;
            let (mut b, mut bt) = (Vec::new(), Vec::new());
            let mut du_max = du_a;
            for i in 0..nb {
                let (d, trimmed) = tp.commit(s.as_mut(), &[(0, 16)], Some((cap, 1000)), true)?;
                b.push(d);
                if trimmed {
                    bt.push(d);
                }
                if i % 250 == 0 {
                    du_max = du_max.max(du(&dir).0);
                }
            }
            let du_b = du(&dir).0;
            let mut left = churn;
            while left > 0 {
                tp.commit(s.as_mut(), &[(0, 1000)], Some((cap, 1000)), true)?;
                left -= 1000;
                if left % 20_000 == 0 {
                    du_max = du_max.max(du(&dir).0);
                }
            }
            let c0 = Commit {
                meta: vec![(0, tp.metas[&0].clone())],
                sync: true,
                ..Default::default()
            };
            s.commit(&c0)?;
            let du_c = du(&dir).0;
            std::thread::sleep(Duration::from_secs(3));
            let du_c2 = du(&dir).0;
            infos.insert(e.name(), s.info());
            s.close()?;
            rm_rf(&dir);
            a.sort();
            b.sort();
            bt.sort();
            let mut push = |k: &'static str, v: f64| res.entry((e.name(), k)).or_default().push(v);
            push("a50", ms(pct(&a, 0.5)));
            push("a99", ms(pct(&a, 0.99)));
            push("amax", ms(*a.last().unwrap()));
            push("b50", ms(pct(&b, 0.5)));
            push("b99", ms(pct(&b, 0.99)));
            push("bmax", ms(*b.last().unwrap()));
            push("bslow", b.iter().filter(|d| ms(**d) > 5.0).count() as f64);
            push("bt50", ms(pct(&bt, 0.5)));
            push("btmax", ms(bt.last().copied().unwrap_or_default()));
            push("du_a", mb(du_a));
            push("du_b", mb(du_b));
            push("du_c", mb(du_c));
            push("du_c2", mb(du_c2));
            push("du_max", mb(du_max));
            eprintln!(
                "  rep {rep} {:<8} A p50/p99/max {:.2}/{:.2}/{:.2}  B {:.2}/{:.2}/{:.2}  trim-commits p50/max {:.2}/{:.2} ({} of them)  du MB A {:.0} B {:.0} C {:.0} C+3s {:.0} max {:.0}",
                e.name(),
                ms(pct(&a, 0.5)),
                ms(pct(&a, 0.99)),
                ms(*a.last().unwrap()),
                ms(pct(&b, 0.5)),
                ms(pct(&b, 0.99)),
                ms(*b.last().unwrap()),
                ms(pct(&bt, 0.5)),
                ms(bt.last().copied().unwrap_or_default()),
                bt.len(),
                mb(du_a),
                mb(du_b),
                mb(du_c),
                mb(du_c2),
                mb(du_max)
            );
        }
    }
    let mut rows = Vec::new();
    for &e in &o.engines {
        let g = |k: &str| fmt_reps(&res[&(e.name(), k)]);
        rows.push(vec![
            e.name().into(),
            g("a50"),
            g("a99"),
            g("amax"),
            g("b50"),
            g("b99"),
            g("bmax"),
            g("bslow"),
            g("bt50"),
            g("btmax"),
        ]);
    }
    print_table(
        &[
            "engine",
            "A p50 ms",
            "A p99 ms",
            "A max ms",
            "B p50 ms",
            "B p99 ms",
            "B max ms",
            "B commits > 5 ms",
            "trim commit p50 ms",
            "trim commit max ms",
        ],
        &rows,
    );
    let mut rows = Vec::new();
    for &e in &o.engines {
        let g = |k: &str| fmt_reps(&res[&(e.name(), k)]);
        rows.push(vec![
            e.name().into(),
            g("du_a"),
            g("du_b"),
            g("du_c"),
            g("du_c2"),
            g("du_max"),
            infos[e.name()].clone(),
        ]);
    }
    println!(
        "Disk use (MB, allocated blocks; live data ≈ {:.0} MB):\n",
        mb(cap * 1008)
    );
    print_table(
        &[
            "engine",
            "end of A",
            "end of B",
            "end of C",
            "C + 3 s idle",
            "max seen",
            "engine state at end",
        ],
        &rows,
    );
    Ok(())
}

// ================================================================== retire

pub fn retire(o: &Opts) -> R<()> {
    let n = per_topic(o);
    println!(
        "## retire: delete a whole topic of {n} events (+ its metadata) in one synced commit; store holds 2 topics; then append {n} events to the other topic\n"
    );
    let mut res: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut infos: BTreeMap<&str, String> = BTreeMap::new();
    for rep in 0..o.reps {
        for &e in &rotated(&o.engines, rep) {
            let dir = o.base.join(format!("retire-{}", e.name()));
            rm_rf(&dir);
            let mut s = store::open(e, &dir)?;
            let mut tp = Topics::new(2);
            bulk_load(s.as_mut(), &mut tp, 2 * n, None)?;
            s.flush()?;
            let du0 = du(&dir).0;
            let m = tp.metas[&0].clone();
            let t0 = Instant::now();
            s.commit(&Commit {
                retire: vec![(0, m.first_seq, m.next_seq)],
                sync: true,
                ..Default::default()
            })?;
            let d = t0.elapsed();
            tp.metas.remove(&0);
            let mut out = Vec::new();
            let t1 = Instant::now();
            s.read_chunk(0, 0, 256, &mut out)?;
            let read_after = t1.elapsed();
            if !out.is_empty() || s.all_meta()?.iter().any(|(t, _)| *t == 0) {
                return Err("retired topic still visible".into());
            }
            let du1 = du(&dir).0;
            let mut left = n;
            while left > 0 {
                tp.commit(s.as_mut(), &[(1, 1000.min(left))], None, true)?;
                left -= 1000.min(left);
            }
            s.commit(&Commit {
                meta: vec![(1, tp.metas[&1].clone())],
                sync: true,
                ..Default::default()
            })?;
            let du2 = du(&dir).0;
            std::thread::sleep(Duration::from_secs(3));
            let du3 = du(&dir).0;
            infos.insert(e.name(), s.info());
            s.close()?;
            rm_rf(&dir);
            eprintln!(
                "  rep {rep} {:<8} retire {:.1} ms, first read after {:.2} ms, du MB before {:.0} after {:.0} after refill {:.0} +3s {:.0}",
                e.name(),
                ms(d),
                ms(read_after),
                mb(du0),
                mb(du1),
                mb(du2),
                mb(du3)
            );
            let mut push = |k: &'static str, v: f64| res.entry((e.name(), k)).or_default().push(v);
            push("ms", ms(d));
            push("read", ms(read_after));
            push("du0", mb(du0));
            push("du1", mb(du1));
            push("du2", mb(du2));
            push("du3", mb(du3));
        }
    }
    let mut rows = Vec::new();
    for &e in &o.engines {
        let g = |k: &str| fmt_reps(&res[&(e.name(), k)]);
        rows.push(vec![
            e.name().into(),
            g("ms"),
            g("read"),
            g("du0"),
            g("du1"),
            g("du2"),
            g("du3"),
            infos[e.name()].clone(),
        ]);
    }
    if let (Some(f), Some(r)) = (res.get(&("fjall", "ms")), res.get(&("redb", "ms"))) {
        rows.push(vec![
            "redb/fjall".into(),
            ratio(median(r), median(f)),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
        ]);
    }
    print_table(
        &[
            "engine",
            "retire commit ms",
            "read of retired topic ms",
            "MB before",
            "MB after retire",
            "MB after refill",
            "refill + 3 s",
            "engine state at end",
        ],
        &rows,
    );
    Ok(())
}
