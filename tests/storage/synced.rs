//! "`201` means durable" (README, "Durable history"), seen from the
//! kernel: the real binary runs under `strace`, one event is published,
//! and the trace must show, in this order, the request read from the
//! socket, the event written to the engine's journal, the journal synced
//! (`fsync`/`fdatasync`/`sync_file_range` returned), and only then the
//! `201` written to the socket.
//!
//! Needs `strace` (Debian's package; `.ci/run` installs it). Missing, the
//! test fails and says so: a test that did not run never passes.

use crate::support;

use std::path::Path;
use std::process::Stdio;

use support::process::{Answer, publish};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// The syscalls traced: syncs, and the reads and writes of sockets and
/// files.
const TRACED: &str = "trace=fsync,fdatasync,sync_file_range,syncfs,\
    read,readv,recvfrom,recvmsg,write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg";

fn strace_available() -> bool {
    std::process::Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One line of an `strace -f` trace: its index, the process, and the rest.
struct Line<'a> {
    at: usize,
    pid: &'a str,
    text: &'a str,
}

fn lines(trace: &str) -> Vec<Line<'_>> {
    trace
        .lines()
        .enumerate()
        .filter_map(|(at, l)| {
            let (pid, text) = l.split_once(' ')?;
            Some(Line {
                at,
                pid,
                text: text.trim_start(),
            })
        })
        .collect()
}

fn is_call(text: &str, names: &[&str]) -> bool {
    names.iter().any(|n| {
        text.strip_prefix(n).is_some_and(|r| r.starts_with('('))
            || text
                .strip_prefix("<... ")
                .and_then(|r| r.strip_prefix(n))
                .is_some_and(|r| r.starts_with(" resumed>"))
    })
}

const READS: &[&str] = &["read", "readv", "recvfrom", "recvmsg"];
const WRITES: &[&str] = &[
    "write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto", "sendmsg",
];
const SYNCS: &[&str] = &["fsync", "fdatasync", "sync_file_range", "syncfs"];

/// Where, in the trace, the publish of `marker` was read, written to the
/// journal, synced and answered: checks the order, or says what is wrong.
fn check_order(trace: &str, marker: &str) -> Result<[usize; 4], String> {
    let all = lines(trace);
    let after = |from: usize| all.iter().filter(move |l| l.at > from);
    let read = all
        .iter()
        .find(|l| l.text.contains(marker))
        .ok_or("the request is not in the trace")?;
    if !is_call(read.text, READS) {
        return Err(format!("first seen in: {}", read.text));
    }
    let written = after(read.at)
        .find(|l| is_call(l.text, WRITES) && l.text.contains(".jnl>") && l.text.contains(marker))
        .ok_or("the event is never written to the journal")?;
    let sync = after(written.at)
        .find(|l| is_call(l.text, SYNCS) && l.text.contains(".jnl>"))
        .ok_or("the journal is never synced after the event is written")?;
    // Done when it returns: on its line, or on its `resumed` line.
    let returned = |sync: &Line<'_>, what: &str| -> Result<usize, String> {
        let done = if sync.text.contains("<unfinished ...>") {
            all.iter()
                .filter(|l| l.at > sync.at)
                .find(|l| {
                    l.pid == sync.pid && l.text.starts_with("<... ") && is_call(l.text, SYNCS)
                })
                .ok_or(format!("{what}'s sync never returns"))?
        } else {
            sync
        };
        if !done.text.contains("= 0") {
            return Err(format!("{what}'s sync failed: {}", done.text));
        }
        Ok(done.at)
    };
    let synced = returned(sync, "the journal")?;
    // The commit's marks (`marks`, see the disk store): written and synced
    // before the answer too, beside the journal or after it.
    let marks_written = after(read.at)
        .find(|l| is_call(l.text, WRITES) && l.text.contains("/marks>"))
        .ok_or("the marks are never written")?;
    let marks_sync = after(marks_written.at)
        .find(|l| is_call(l.text, SYNCS) && l.text.contains("/marks>"))
        .ok_or("the marks are never synced after they are written")?;
    let marks_synced = returned(marks_sync, "the marks")?;
    let answered = after(read.at)
        .find(|l| {
            is_call(l.text, WRITES) && l.text.contains("HTTP/1.1 201") && l.text.contains("TCP:")
        })
        .ok_or("no 201 is written to a socket")?;
    if answered.at < synced {
        return Err(format!(
            "the 201 (line {}) is written before the journal's sync returns (line {})",
            answered.at + 1,
            synced + 1
        ));
    }
    if answered.at < marks_synced {
        return Err(format!(
            "the 201 (line {}) is written before the marks' sync returns (line {})",
            answered.at + 1,
            marks_synced + 1
        ));
    }
    Ok([read.at, written.at, synced.max(marks_synced), answered.at])
}

/// Runs the binary on `dir` under strace (trace in `out`), publishes
/// `marker` once, stops it, and returns the trace.
async fn traced_publish(dir: &Path, out: &Path, marker: &str) -> String {
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-yy", "-s", "256", "-e", TRACED, "-o"])
        .arg(out)
        .arg(env!("CARGO_BIN_EXE_ssehub"))
        .args(["--listen", "127.0.0.1:0", "--tick", "0", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn strace");
    let stdout = strace.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(
        support::WAIT * 3,
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("ssehub starts under strace")
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ssehub listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no listening line: {line:?}"));
    // The topic exists first, so the traced publish is an append only.
    assert!(matches!(
        publish(addr, "t", "warm-up").await,
        Answer::Created(_)
    ));
    match publish(addr, "t", marker).await {
        Answer::Created(_) => {}
        other => panic!("the traced publish: {other:?}"),
    }
    // SIGTERM to ssehub (strace's child); strace exits with it.
    let strace_pid = strace.id().expect("strace runs");
    let children =
        std::fs::read_to_string(format!("/proc/{strace_pid}/task/{strace_pid}/children")).unwrap();
    let ssehub = children.split_whitespace().next().expect("ssehub runs");
    let status = std::process::Command::new("kill")
        .args(["-TERM", ssehub])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(support::WAIT * 3, strace.wait())
        .await
        .expect("ssehub stops under strace")
        .unwrap();
    std::fs::read_to_string(out).unwrap()
}

/// The order of one publish's syscalls: read, journal write, journal sync
/// returned, then `201`. A store that answered before its sync (or never
/// synced) fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_201_is_written_only_after_the_journal_and_marks_syncs_return() {
    assert!(
        strace_available(),
        "cannot run: strace is missing (apt-get install strace, or bash .ci/run)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = tmp.path().join("trace");
    let marker = format!(
        "synced-probe-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let trace = traced_publish(&dir, &out, &marker).await;
    match check_order(&trace, &marker) {
        Ok(at) => println!("read, journal write, sync, 201 at trace lines {at:?}"),
        Err(why) => {
            let keep =
                std::env::temp_dir().join(format!("ssehub-synced-{}.trace", std::process::id()));
            let _ = std::fs::write(&keep, &trace);
            panic!("{why} (trace kept in {})", keep.display());
        }
    }
}

/// The checker itself, on traces written by hand: it refuses a `201`
/// before the sync returns, and a sync before the journal write.
#[test]
fn the_order_check_refuses_an_answer_before_the_sync() {
    let read = r#"10 read(9<TCP:[127.0.0.1:1->127.0.0.1:2]>, "POST /events/t ...\r\n\r\nMARK", 8192) = 90"#;
    let write = r#"11 write(12</d/db/0.jnl>, "\2\0...MARK", 60) = 60"#;
    let sync_start = r#"11 fdatasync(12</d/db/0.jnl> <unfinished ...>"#;
    let sync_done = r#"11 <... fdatasync resumed>) = 0"#;
    let marks = r#"13 write(14</d/marks>, "\1t...", 30) = 30"#;
    let marks_sync = r#"13 fdatasync(14</d/marks>) = 0"#;
    let answer =
        r#"10 write(9<TCP:[127.0.0.1:1->127.0.0.1:2]>, "HTTP/1.1 201 Created\r\n", 100) = 100"#;
    let good = [
        read, write, sync_start, marks, marks_sync, sync_done, answer,
    ]
    .join("\n");
    assert_eq!(check_order(&good, "MARK"), Ok([0, 1, 5, 6]));
    let early = [
        read, write, sync_start, marks, marks_sync, answer, sync_done,
    ]
    .join("\n");
    assert!(
        check_order(&early, "MARK")
            .unwrap_err()
            .contains("before the journal's sync")
    );
    let marks_late = [
        read, write, sync_start, sync_done, marks, answer, marks_sync,
    ]
    .join("\n");
    assert!(
        check_order(&marks_late, "MARK")
            .unwrap_err()
            .contains("before the marks' sync")
    );
    let unmarked = [read, write, sync_start, sync_done, answer].join("\n");
    assert!(check_order(&unmarked, "MARK").is_err());
    let unsynced = [read, sync_start, sync_done, write, answer].join("\n");
    assert!(check_order(&unsynced, "MARK").is_err());
    let failed = [
        read,
        write,
        sync_start,
        marks,
        marks_sync,
        "11 <... fdatasync resumed>) = -1 EIO",
        answer,
    ]
    .join("\n");
    assert!(check_order(&failed, "MARK").unwrap_err().contains("failed"));
}
