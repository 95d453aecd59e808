//! Fault scenarios: SIGKILL during appends, on-disk damage, full disk.

use crate::store::{self, Engine, R, Store};
use crate::util::*;
use crate::workload::Topics;
use crate::{Opts, run_child, run_child_raw};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const TOPICS: u64 = 10;

pub fn install_panic_printer() {
    std::panic::set_hook(Box::new(|info| {
        let loc = info.location().map(|l| l.to_string()).unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        println!("PANIC {} at {loc}", msg.replace('\n', " "));
        let _ = std::io::stdout().flush();
    }));
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

/// Read every event of every topic in 256-event chunks and compare with the expected payloads.
/// A read error skips the rest of that topic. Returns (events, bad payloads, gaps/out-of-range,
/// topics with a read error, first error).
fn scan(s: &dyn Store, ranges: &BTreeMap<u64, (u64, u64)>) -> (u64, u64, u64, u64, Option<String>) {
    let (mut n, mut bad, mut gaps, mut errs) = (0u64, 0u64, 0u64, 0u64);
    let mut first_err = None;
    let mut out = Vec::new();
    for (&t, &(first, next)) in ranges {
        let mut want = first;
        // start from 0: anything below `first` is an orphan
        let mut from = 0;
        loop {
            out.clear();
            if let Err(e) = s.read_chunk(t, from, 256, &mut out) {
                errs += 1;
                first_err.get_or_insert_with(|| format!("topic {t} seq>={from}: {}", one_line(e)));
                want = next;
                break;
            }
            if out.is_empty() {
                break;
            }
            for (seq, p) in &out {
                if *seq != want || *seq >= next {
                    gaps += 1;
                }
                if *p != payload(t, *seq) {
                    bad += 1;
                }
                want = seq + 1;
                from = seq + 1;
                n += 1;
            }
        }
        if want < next {
            gaps += 1;
        }
    }
    (n, bad, gaps, errs, first_err)
}

// ================================================================== crash

/// child: append forever in synced group commits of random size, printing what was acknowledged.
pub fn child_crash_writer(args: &[String]) -> R<()> {
    let e = Engine::parse(&args[0]).ok_or("engine")?;
    let dir = PathBuf::from(&args[1]);
    let mut seed: u64 = args[2].parse()?;
    let mut s = store::open(e, &dir)?;
    let mut tp = Topics::from_store(s.as_ref())?;
    if tp.metas.is_empty() {
        tp = Topics::new(TOPICS);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "READY")?;
    out.flush()?;
    loop {
        let k = 1 + (rand_u64(&mut seed) % 64) as usize;
        let spec = tp.spread(k);
        tp.commit(s.as_mut(), &spec, Some((20_000, 1000)), true)?;
        for (t, _) in &spec {
            write!(out, "A {t} {}\n", tp.metas[t].next_seq)?;
        }
        out.flush()?;
    }
}

/// child: reopen and verify against the acknowledged positions in `acked_file`.
pub fn child_verify(args: &[String]) -> R<()> {
    install_panic_printer();
    let e = Engine::parse(&args[0]).ok_or("engine")?;
    let dir = PathBuf::from(&args[1]);
    let acked: BTreeMap<u64, u64> = std::fs::read_to_string(&args[2])?
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    let t0 = Instant::now();
    let s = match store::open(e, &dir) {
        Ok(s) => s,
        Err(err) => {
            println!("RESULT open_ok=0 open_ms={}", ms(t0.elapsed()));
            println!("ERROR open: {}", one_line(err));
            return Ok(());
        }
    };
    let open_ms = ms(t0.elapsed());
    let metas: BTreeMap<u64, store::Meta> = s.all_meta()?.into_iter().collect();
    let mut lost = 0u64; // acknowledged but missing (meta behind, or event absent)
    let mut behind = 0u64;
    let mut ranges = BTreeMap::new();
    for (&t, &a) in &acked {
        match metas.get(&t) {
            None => {
                behind += 1;
                lost += a.saturating_sub(1);
            }
            Some(m) => {
                if m.next_seq < a {
                    behind += 1;
                    lost += a - m.next_seq;
                }
            }
        }
    }
    for (&t, m) in &metas {
        ranges.insert(t, (m.first_seq, m.next_seq));
    }
    let (n, bad, gaps, _errs, err) = scan(s.as_ref(), &ranges);
    let unacked_extra: u64 = metas
        .iter()
        .map(|(t, m)| m.next_seq.saturating_sub(*acked.get(t).unwrap_or(&1)))
        .sum();
    println!(
        "RESULT open_ok=1 open_ms={open_ms} events={n} lost_acked={lost} meta_behind={behind} bad={bad} gaps={gaps} read_errors={} unacked_but_present={unacked_extra}",
        err.is_some() as u8
    );
    if let Some(e) = err {
        println!("ERROR read: {e}");
    }
    s.close()?;
    Ok(())
}

pub fn crash(o: &Opts) -> R<()> {
    let iters = if o.quick { 3 } else { 10 };
    println!(
        "## crash: child appends (synced group commits of 1..64 events over {TOPICS} topics, retention 20,000/topic trimmed 1,000 at a time) and prints acknowledged seqs; SIGKILL at a random moment 0.2–2.5 s after it is ready; reopen + verify every acknowledged event; {iters} kills per engine on the same store\n"
    );
    let mut seed = seed_from_time();
    let mut agg: BTreeMap<&str, Vec<BTreeMap<String, f64>>> = BTreeMap::new();
    let mut errors: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for &e in &o.engines {
        rm_rf(&o.base.join(format!("crash-{}", e.name())));
    }
    for it in 0..iters {
        for &e in &rotated(&o.engines, it) {
            let dir = o.base.join(format!("crash-{}", e.name()));
            let mut ch = crate::perf::spawn_child(&[
                "child-crash-writer",
                e.name(),
                dir.to_str().unwrap(),
                &(rand_u64(&mut seed) | 1).to_string(),
            ])?;
            let stdout = ch.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line == "READY" {
                        let _ = tx.send(());
                        continue;
                    }
                    let mut it = line.split_whitespace().skip(1);
                    if let (Some(Ok(t)), Some(Ok(n))) = (
                        it.next().map(str::parse::<u64>),
                        it.next().map(str::parse::<u64>),
                    ) {
                        let v = acked.entry(t).or_insert(0);
                        *v = (*v).max(n);
                    }
                }
                acked
            });
            rx.recv_timeout(Duration::from_secs(300))
                .map_err(|_| "writer never became ready")?;
            let delay = 200 + rand_u64(&mut seed) % 2300;
            std::thread::sleep(Duration::from_millis(delay));
            ch.kill()?; // SIGKILL
            let status = ch.wait()?;
            let acked = reader.join().unwrap();
            let acked_file = o.base.join(format!("crash-{}.acked", e.name()));
            // acknowledged positions accumulate over runs (a topic's ack never goes backwards)
            let mut all: BTreeMap<u64, u64> = std::fs::read_to_string(&acked_file)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut it = l.split_whitespace();
                    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
                })
                .collect();
            let this_run: u64 = acked
                .iter()
                .map(|(t, n)| n.saturating_sub(*all.get(t).unwrap_or(&1)))
                .sum();
            for (t, n) in &acked {
                let v = all.entry(*t).or_insert(0);
                *v = (*v).max(*n);
            }
            std::fs::write(
                &acked_file,
                all.iter()
                    .map(|(t, n)| format!("{t} {n}\n"))
                    .collect::<String>(),
            )?;
            let out = run_child(
                &[
                    "child-verify",
                    e.name(),
                    dir.to_str().unwrap(),
                    acked_file.to_str().unwrap(),
                ],
                900,
            )?;
            let r = crate::child_results(out.clone()).unwrap_or_default();
            for l in out.lines().filter(|l| {
                l.starts_with("ERROR") || l.starts_with("PANIC") || l.starts_with("EXIT")
            }) {
                errors.entry(e.name()).or_default().push(l.to_string());
            }
            eprintln!(
                "  kill {it} {:<8} after {delay} ms ({status}), {this_run} events acknowledged in this run: {r:?}",
                e.name()
            );
            agg.entry(e.name()).or_default().push(r);
        }
    }
    let mut rows = Vec::new();
    for &e in &o.engines {
        let v = &agg[e.name()];
        let col = |k: &str| {
            v.iter()
                .map(|r| r.get(k).copied().unwrap_or(f64::NAN))
                .collect::<Vec<_>>()
        };
        let sum = |k: &str| col(k).iter().filter(|x| !x.is_nan()).sum::<f64>();
        let open_ms = col("open_ms");
        rows.push(vec![
            e.name().into(),
            v.len().to_string(),
            format!("{}/{}", sum("open_ok"), v.len()),
            fmt_f(sum("lost_acked")),
            fmt_f(sum("bad")),
            fmt_f(sum("gaps")),
            fmt_f(sum("read_errors")),
            format!(
                "{} / {}",
                fmt_f(median(&open_ms)),
                fmt_f(open_ms.iter().copied().fold(0.0, f64::max))
            ),
            fmt_f(median(&col("events"))),
            errors
                .get(e.name())
                .map(|v| v.join("; "))
                .unwrap_or_default(),
        ]);
        rm_rf(&o.base.join(format!("crash-{}", e.name())));
        let _ = std::fs::remove_file(o.base.join(format!("crash-{}.acked", e.name())));
    }
    print_table(
        &[
            "engine",
            "kills",
            "reopened",
            "acked events lost",
            "corrupt payloads",
            "gaps/orphans",
            "read errors",
            "reopen ms median / max",
            "events in store (median)",
            "errors",
        ],
        &rows,
    );
    Ok(())
}

// ================================================================== damage

fn build_damage_src(e: Engine, dir: &Path, events: usize) -> R<BTreeMap<u64, (u64, u64)>> {
    rm_rf(dir);
    let mut s = store::open(e, dir)?;
    let mut tp = Topics::new(TOPICS);
    crate::workload::bulk_load(s.as_mut(), &mut tp, events, None)?;
    s.flush()?; // fjall: data now in tables
    for _ in 0..100 {
        let spec = tp.spread(16);
        tp.commit(s.as_mut(), &spec, None, true)?; // fjall: this tail lives only in the journal
    }
    s.close()?;
    Ok(tp
        .metas
        .iter()
        .map(|(t, m)| (*t, (m.first_seq, m.next_seq)))
        .collect())
}

fn flip_byte(f: &Path, off: u64) -> R<()> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().read(true).write(true).open(f)?;
    let mut b = [0u8];
    file.read_exact_at(&mut b, off)?;
    b[0] ^= 0x5a;
    file.write_all_at(&b, off)?;
    file.sync_all()?;
    Ok(())
}

fn truncate_by(f: &Path, n: u64) -> R<()> {
    let file = std::fs::OpenOptions::new().write(true).open(f)?;
    let len = file.metadata()?.len();
    file.set_len(len.saturating_sub(n))?;
    file.sync_all()?;
    Ok(())
}

/// End of the non-zero data (fjall preallocates journals with zeros).
fn data_end(f: &Path) -> u64 {
    let data = std::fs::read(f).unwrap_or_default();
    data.iter()
        .rposition(|b| *b != 0)
        .map(|p| p as u64 + 1)
        .unwrap_or(0)
}

/// Offset of the first occurrence of `needle` in the file, if stored in clear.
fn find_in(f: &Path, needle: &[u8]) -> Option<u64> {
    let data = std::fs::read(f).ok()?;
    data.windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p as u64)
}

/// child: open a (possibly damaged) store, read metadata and every event, report what happened.
pub fn child_check(args: &[String]) -> R<()> {
    install_panic_printer();
    let e = Engine::parse(&args[0]).ok_or("engine")?;
    let dir = PathBuf::from(&args[1]);
    let expected: BTreeMap<u64, (u64, u64)> = std::fs::read_to_string(&args[2])?
        .lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            Some((*v.first()?, (*v.get(1)?, *v.get(2)?)))
        })
        .collect();
    let want: u64 = expected.values().map(|(a, b)| b - a).sum();
    let t0 = Instant::now();
    let s = match catch_unwind(AssertUnwindSafe(|| store::open(e, &dir))) {
        Ok(Ok(s)) => {
            println!("OPEN ok ({:.0} ms)", ms(t0.elapsed()));
            s
        }
        Ok(Err(err)) => {
            println!("OPEN error: {}", one_line(err));
            return Ok(());
        }
        Err(_) => {
            println!("OPEN panicked");
            return Ok(());
        }
    };
    let metas = match catch_unwind(AssertUnwindSafe(|| s.all_meta())) {
        Ok(Ok(m)) => m,
        Ok(Err(err)) => {
            println!("META error: {}", one_line(err));
            Vec::new()
        }
        Err(_) => {
            println!("META panicked");
            Vec::new()
        }
    };
    let meta_ok = metas.len() as u64 == TOPICS
        && metas
            .iter()
            .all(|(t, m)| expected.get(t) == Some(&(m.first_seq, m.next_seq)));
    println!("META {} topics, matches expected: {meta_ok}", metas.len());
    match catch_unwind(AssertUnwindSafe(|| scan(s.as_ref(), &expected))) {
        Ok((n, bad, gaps, errs, err)) => {
            println!(
                "SCAN read {n}/{want} events, corrupt payloads returned: {bad}, gaps: {gaps}, topics with read errors: {errs}, first error: {}",
                err.unwrap_or_else(|| "none".into())
            );
        }
        Err(_) => println!("SCAN panicked"),
    }
    let _ = catch_unwind(AssertUnwindSafe(|| s.close()));
    if e.family() == "redb" {
        let r = catch_unwind(AssertUnwindSafe(|| -> R<bool> {
            let mut db = redb::Database::open(store::redb_file(&dir))?;
            Ok(db.check_integrity()?)
        }));
        match r {
            Ok(Ok(ok)) => println!("CHECK_INTEGRITY {ok}"),
            Ok(Err(err)) => println!("CHECK_INTEGRITY error: {}", one_line(err)),
            Err(_) => println!("CHECK_INTEGRITY panicked"),
        }
    }
    Ok(())
}

pub fn damage(o: &Opts) -> R<()> {
    let events = if o.quick { 5_000 } else { 40_000 };
    println!(
        "## damage: store with {events} events flushed + 1,600 events in 100 synced commits after the flush; closed cleanly, then damaged; a fresh process opens it, reads the metadata and every event (payloads compared with what was written)\n"
    );
    let mut rows = Vec::new();
    let fams: Vec<Engine> = {
        let mut v = Vec::new();
        if o.engines.contains(&Engine::Fjall) {
            v.push(Engine::Fjall);
        }
        if o.engines.iter().any(|e| e.family() == "redb") {
            v.push(Engine::Redb);
        }
        v
    };
    for e in fams {
        let src = o.base.join(format!("damage-src-{}", e.family()));
        let expected = build_damage_src(e, &src, events)?;
        let exp_file = o.base.join(format!("damage-{}.expected", e.family()));
        std::fs::write(
            &exp_file,
            expected
                .iter()
                .map(|(t, (a, b))| format!("{t} {a} {b}\n"))
                .collect::<String>(),
        )?;
        let files = files_under(&src);
        eprintln!(
            "  {} files: {:?}",
            e.family(),
            files
                .iter()
                .map(|f| (
                    f.strip_prefix(&src).unwrap().display().to_string(),
                    std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)
                ))
                .collect::<Vec<_>>()
        );
        let size = |f: &PathBuf| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
        let rel = |f: &Path| f.strip_prefix(&src).unwrap().display().to_string();
        // the main data file: redb's only file, fjall's largest table
        let data = files
            .iter()
            .filter(|f| {
                e != Engine::Fjall || f.strip_prefix(&src).unwrap().starts_with("keyspaces")
            })
            .max_by_key(|f| size(f))
            .unwrap()
            .clone();
        let needle = payload(5, 500);
        // cases: (description, file, action)
        let mut cases: Vec<(String, PathBuf, &str)> = Vec::new();
        cases.push((
            format!("flip 1 byte mid-file of `{}`", rel(&data)),
            data.clone(),
            "flip-mid",
        ));
        cases.push((
            format!(
                "flip 1 byte inside the stored payload of topic 5 seq 500 in `{}`",
                rel(&data)
            ),
            data.clone(),
            "flip-payload",
        ));
        if e == Engine::Fjall {
            let journal = files
                .iter()
                .filter(|f| f.extension().is_some_and(|x| x == "jnl"))
                .max_by_key(|f| size(f))
                .cloned();
            if let Some(j) = journal {
                cases.push((
                    format!(
                        "flip 1 byte mid-data of journal `{}` (batches already flushed to tables)",
                        rel(&j)
                    ),
                    j.clone(),
                    "flip-jmid",
                ));
                cases.push((format!("flip 1 byte near the end of journal `{}` (unflushed tail: last synced commits)", rel(&j)), j.clone(), "flip-jtail"));
                cases.push((
                    format!(
                        "truncate journal `{}` data by 100 bytes (torn tail)",
                        rel(&j)
                    ),
                    j.clone(),
                    "trunc-jdata",
                ));
            }
            cases.push((
                format!("truncate table `{}` by 100 bytes", rel(&data)),
                data.clone(),
                "trunc-100",
            ));
        } else {
            cases.push((
                format!("truncate `{}` by 100 bytes", rel(&data)),
                data.clone(),
                "trunc-100",
            ));
            cases.push((
                format!("truncate `{}` by 1 MiB", rel(&data)),
                data.clone(),
                "trunc-1m",
            ));
            cases.push((
                format!("flip 1 byte in the header of `{}` (offset 100)", rel(&data)),
                data.clone(),
                "flip-100",
            ));
        }
        cases.push(("no damage (control)".into(), data.clone(), "none"));
        for (i, (desc, file, action)) in cases.iter().enumerate() {
            let case_dir = o.base.join(format!("damage-{}-{i}", e.family()));
            rm_rf(&case_dir);
            let st = std::process::Command::new("cp")
                .arg("-a")
                .arg(&src)
                .arg(&case_dir)
                .status()?;
            if !st.success() {
                return Err("cp failed".into());
            }
            let f = case_dir.join(file.strip_prefix(&src).unwrap());
            let len = std::fs::metadata(&f)?.len();
            let applied = match *action {
                "flip-mid" => flip_byte(&f, len / 2).map(|_| format!("offset {}", len / 2)),
                "flip-100" => flip_byte(&f, 100).map(|_| "offset 100".to_string()),
                "flip-jmid" => flip_byte(&f, data_end(&f) / 2)
                    .map(|_| format!("offset {} of {} data bytes", data_end(&f) / 2, data_end(&f))),
                "flip-jtail" => {
                    let end = data_end(&f);
                    flip_byte(&f, end.saturating_sub(50_000)).map(|_| {
                        format!("offset {} of {end} data bytes", end.saturating_sub(50_000))
                    })
                }
                "trunc-jdata" => {
                    let end = data_end(&f);
                    truncate_by(&f, len - end + 100)
                        .map(|_| format!("{len} (data {end}) -> {}", end - 100))
                }
                "flip-payload" => match find_in(&f, &needle[200..264]) {
                    Some(off) => flip_byte(&f, off + 10).map(|_| format!("offset {}", off + 10)),
                    None => Ok("payload not stored in clear: skipped".to_string()),
                },
                "trunc-100" => truncate_by(&f, 100).map(|_| format!("{len} -> {}", len - 100)),
                "trunc-1m" => truncate_by(&f, 1 << 20)
                    .map(|_| format!("{len} -> {}", len.saturating_sub(1 << 20))),
                _ => Ok(String::new()),
            };
            let applied = applied.unwrap_or_else(|e| format!("could not apply: {e}"));
            if applied.contains("skipped") {
                rows.push(vec![
                    e.family().into(),
                    desc.clone(),
                    applied,
                    "".into(),
                    "".into(),
                    "".into(),
                ]);
                rm_rf(&case_dir);
                continue;
            }
            let (out, status) = run_child_raw(
                &[
                    "child-check",
                    e.name(),
                    case_dir.to_str().unwrap(),
                    exp_file.to_str().unwrap(),
                ],
                600,
            )?;
            let pick = |p: &str| {
                out.lines()
                    .filter(|l| l.starts_with(p))
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            let panics = pick("PANIC");
            eprintln!(
                "  {} | {desc} | {applied}\n{out}  status: {status}",
                e.family()
            );
            rows.push(vec![
                e.family().into(),
                desc.clone(),
                applied,
                pick("OPEN"),
                format!("{} {}", pick("META"), pick("SCAN")),
                format!(
                    "{} {}{}",
                    pick("CHECK_INTEGRITY"),
                    if panics.is_empty() {
                        String::new()
                    } else {
                        format!("panic: {panics} ")
                    },
                    if status.success() {
                        String::new()
                    } else {
                        format!("exit: {status}")
                    }
                ),
            ]);
            rm_rf(&case_dir);
        }
        rm_rf(&src);
        let _ = std::fs::remove_file(&exp_file);
    }
    print_table(
        &[
            "engine",
            "damage",
            "applied",
            "open",
            "metadata + full read",
            "integrity check / panics / exit",
        ],
        &rows,
    );
    Ok(())
}

// ================================================================== full disk

/// child: append until the disk is full, then free space and try again without reopening.
pub fn child_fulldisk(args: &[String]) -> R<()> {
    install_panic_printer();
    let e = Engine::parse(&args[0]).ok_or("engine")?;
    let dir = PathBuf::from(&args[1]);
    let filler = PathBuf::from(&args[2]);
    let mut s = store::open(e, &dir)?;
    let mut tp = Topics::new(TOPICS);
    let mut acked = tp.clone();
    let mut n = 0u64;
    let try_commit = |s: &mut Box<dyn Store>, tp: &mut Topics| -> Result<(), String> {
        let spec = tp.spread(16);
        match catch_unwind(AssertUnwindSafe(|| {
            tp.commit(s.as_mut(), &spec, None, true)
        })) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(one_line(e)),
            Err(_) => Err("PANICKED".into()),
        }
    };
    loop {
        match try_commit(&mut s, &mut tp) {
            Ok(()) => {
                n += 16;
                acked = tp.clone();
            }
            Err(err) => {
                println!(
                    "FULL after {n} acknowledged events ({:.1} MB of payload): {err}",
                    n as f64 * 1008.0 / 1048576.0
                );
                break;
            }
        }
        if n > 200_000 {
            println!("never filled up");
            return Ok(());
        }
    }
    tp = acked.clone();
    let e2 = try_commit(&mut s, &mut tp)
        .err()
        .unwrap_or_else(|| "ok".into());
    tp = acked.clone();
    println!("RETRY while full: {e2}");
    std::fs::remove_file(&filler)?;
    println!("FREED {}", filler.display());
    let mut ok_after = 0;
    let mut last_err = String::new();
    for _ in 0..5 {
        match try_commit(&mut s, &mut tp) {
            Ok(()) => {
                ok_after += 1;
                acked = tp.clone();
            }
            Err(e) => {
                last_err = e;
                tp = acked.clone();
            }
        }
    }
    println!(
        "AFTER_FREE without reopen: {ok_after}/5 commits ok{}",
        if last_err.is_empty() {
            String::new()
        } else {
            format!("; error: {last_err}")
        }
    );
    if ok_after == 0 {
        let t0 = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| s.close())) {
            Ok(r) => println!(
                "CLOSE {}",
                r.map(|_| "ok".to_string())
                    .unwrap_or_else(|e| format!("error: {}", one_line(e)))
            ),
            Err(_) => println!("CLOSE panicked"),
        }
        s = match store::open(e, &dir) {
            Ok(s) => s,
            Err(err) => {
                println!("REOPEN error: {}", one_line(err));
                return Ok(());
            }
        };
        let mut ok = 0;
        tp = Topics::from_store(s.as_ref())?;
        for _ in 0..5 {
            if try_commit(&mut s, &mut tp).is_ok() {
                ok += 1;
            }
        }
        println!(
            "REOPEN ok in {:.0} ms; {ok}/5 commits ok after reopen",
            ms(t0.elapsed())
        );
    }
    // every acknowledged event must be there
    let ranges: BTreeMap<u64, (u64, u64)> = acked
        .metas
        .iter()
        .map(|(t, m)| (*t, (m.first_seq, m.next_seq)))
        .collect();
    let stored: BTreeMap<u64, store::Meta> = s.all_meta()?.into_iter().collect();
    let behind = ranges
        .iter()
        .filter(|(t, (_, next))| stored.get(t).map(|m| m.next_seq < *next).unwrap_or(true))
        .count();
    let (nread, bad, _gaps, _errs, err) = scan(s.as_ref(), &ranges);
    let acked_n: u64 = ranges.values().map(|(a, b)| b - a).sum();
    println!(
        "VERIFY acked events {acked_n}, read back {nread} (incl. later commits), corrupt {bad}, topics with meta behind ack {behind}, read error: {}",
        err.unwrap_or_else(|| "none".into())
    );
    let _ = s.close();
    Ok(())
}

pub fn fulldisk(o: &Opts) -> R<()> {
    let mnt = PathBuf::from(std::env::var("ENGINES_TMPFS").unwrap_or_else(|_| "/mnt/x".into()));
    println!(
        "## full disk: 20 MiB tmpfs at {}, a 4 MiB filler file, synced 16-event commits until the engine reports an error; then the filler is deleted and appends are retried on the same handle\n",
        mnt.display()
    );
    let mut rows = Vec::new();
    for &e in &o.engines {
        std::fs::create_dir_all(&mnt)?;
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=20m", "tmpfs"])
            .arg(&mnt)
            .status()?;
        if !st.success() {
            return Err("mount failed (needs root)".into());
        }
        let filler = mnt.join("filler");
        std::fs::write(&filler, vec![7u8; 4 << 20])?;
        let res = run_child_raw(
            &[
                "child-fulldisk",
                e.name(),
                mnt.join("db").to_str().unwrap(),
                filler.to_str().unwrap(),
            ],
            600,
        );
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        let (out, status) = res?;
        eprintln!("  {}:\n{out}  status: {status}", e.name());
        let pick = |p: &str| {
            out.lines()
                .filter(|l| l.starts_with(p))
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" / ")
        };
        rows.push(vec![
            e.name().into(),
            pick("FULL"),
            pick("RETRY"),
            pick("AFTER_FREE"),
            format!("{} {}", pick("CLOSE"), pick("REOPEN")),
            pick("VERIFY"),
            format!(
                "{}{}",
                pick("PANIC"),
                if status.success() {
                    String::new()
                } else {
                    format!(" exit: {status}")
                }
            ),
        ]);
    }
    print_table(
        &[
            "engine",
            "first error",
            "retry while full",
            "after freeing space (same handle)",
            "close / reopen",
            "verify acknowledged",
            "panics",
        ],
        &rows,
    );
    Ok(())
}
