//! Side-by-side benchmark of fjall and redb for ssehub's durable event store.
//!
//! `cargo run --release --manifest-path benches/engines/Cargo.toml -- <scenario> [options]`
//! See README.md.

mod faults;
mod perf;
mod store;
mod util;
mod workload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use store::{Engine, R};

pub struct Opts {
    pub engines: Vec<Engine>,
    pub reps: usize,
    pub base: PathBuf,
    pub quick: bool,
    pub redis: bool,
}

const USAGE: &str = "usage: ssehub-engine-bench <scenario> [--engines fjall,redb,redb-qr] [--reps 3] [--dir /work/engine-data] [--quick] [--no-redis]
scenarios:
  commit    per-commit latency of synced group commits of 1/16/64 events
  publish   1/16/64 concurrent publishers + group-committing writer, vs redis-server AOF always/everysec
  replay    replay 100,000 events of one topic from disk (cold and warm), store of 10 x 100,000 events
  startup   open the 1 GB store + read metadata: time and RSS (after crash, clean cold, clean warm)
  trim      append latency while trimming the oldest 1,000 events per commit; disk space reuse
  retire    delete a whole topic of 100,000 events; disk space afterwards
  crash     SIGKILL a writer at random moments, verify every acknowledged event
  damage    flip a byte / truncate files, see what open and reads do
  fulldisk  20 MiB tmpfs: append until full, free space, append again (needs root)
  all       everything above, in that order
  clean     remove the benchmark's data directories";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first().cloned() else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    // child processes spawned by the scenarios
    let child: Option<fn(&[String]) -> R<()>> = match cmd.as_str() {
        "child-replay" => Some(perf::child_replay),
        "child-open" => Some(perf::child_open),
        "child-churn" => Some(perf::child_churn),
        "child-crash-writer" => Some(faults::child_crash_writer),
        "child-verify" => Some(faults::child_verify),
        "child-check" => Some(faults::child_check),
        "child-fulldisk" => Some(faults::child_fulldisk),
        _ => None,
    };
    if let Some(f) = child {
        if let Err(e) = f(&args[1..]) {
            println!("ERROR {}", e.to_string().replace('\n', " "));
            std::process::exit(1);
        }
        return;
    }
    let mut o = Opts {
        engines: vec![Engine::Fjall, Engine::Redb, Engine::RedbQr],
        reps: 3,
        base: PathBuf::from("/work/engine-data"),
        quick: false,
        redis: true,
    };
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--engines" => {
                i += 1;
                o.engines = args[i]
                    .split(',')
                    .map(|s| Engine::parse(s).unwrap_or_else(|| panic!("unknown engine {s}")))
                    .collect();
            }
            "--reps" => {
                i += 1;
                o.reps = args[i].parse().expect("--reps N");
            }
            "--dir" => {
                i += 1;
                o.base = PathBuf::from(&args[i]);
            }
            "--quick" => o.quick = true,
            "--no-redis" => o.redis = false,
            a => {
                eprintln!("unknown argument {a}\n{USAGE}");
                std::process::exit(2);
            }
        }
        i += 1;
    }
    std::fs::create_dir_all(&o.base).expect("create --dir");
    let scenarios: Vec<(&str, fn(&Opts) -> R<()>)> = vec![
        ("commit", perf::commit),
        ("publish", perf::publish),
        ("replay", perf::replay),
        ("startup", perf::startup),
        ("trim", perf::trim),
        ("retire", perf::retire),
        ("crash", faults::crash),
        ("damage", faults::damage),
        ("fulldisk", faults::fulldisk),
    ];
    if cmd == "clean" {
        for e in std::fs::read_dir(&o.base).into_iter().flatten().flatten() {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
        return;
    }
    let selected: Vec<_> = scenarios
        .iter()
        .filter(|(n, _)| cmd == "all" || cmd == *n)
        .collect();
    if selected.is_empty() {
        eprintln!("unknown scenario {cmd}\n{USAGE}");
        std::process::exit(2);
    }
    println!(
        "fjall {} / redb {} (exact versions pinned in Cargo.toml); engines: {}; reps: {}; dir: {}{}\n",
        "3.1.13",
        "4.6.0",
        o.engines
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
            .join(","),
        o.reps,
        o.base.display(),
        if o.quick {
            " (QUICK: reduced sizes)"
        } else {
            ""
        }
    );
    let mut failed = false;
    for (name, f) in selected {
        let t0 = Instant::now();
        println!("load before `{name}`: {}\n", util::uptime());
        if let Err(e) = f(&o) {
            println!("**{name} failed: {e}**\n");
            failed = true;
        }
        println!(
            "load after `{name}` ({:.0} s): {}\n",
            t0.elapsed().as_secs_f64(),
            util::uptime()
        );
    }
    if failed {
        std::process::exit(1);
    }
}

/// Run a child of this binary; stdout is returned, stderr passes through. Fails on non-zero exit.
pub fn run_child(args: &[&str], timeout_s: u64) -> R<String> {
    let (out, status) = run_child_raw(args, timeout_s)?;
    if !status.success() {
        return Err(format!("child {args:?} failed ({status}): {out}").into());
    }
    Ok(out)
}

pub fn run_child_raw(args: &[&str], timeout_s: u64) -> R<(String, std::process::ExitStatus)> {
    use std::io::Read;
    let mut ch = std::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    let mut stdout = ch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = ch.try_wait()? {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(timeout_s) {
            let _ = ch.kill();
            let st = ch.wait()?;
            let out = reader.join().unwrap();
            return Ok((format!("{out}EXIT timeout after {timeout_s} s\n"), st));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = reader.join().unwrap();
    if !status.success() {
        out.push_str(&format!("EXIT {status}\n"));
    }
    Ok((out, status))
}

/// Parse `RESULT k=v k=v` from a child's stdout.
pub fn child_results(out: String) -> R<BTreeMap<String, f64>> {
    let line = out
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .ok_or_else(|| format!("no RESULT line in: {out}"))?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}
