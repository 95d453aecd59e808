//! The Durable Streams conformance suite
//! (`@durable-streams/server-conformance-tests`, pinned in
//! `conformance/package.json`) against `ssehub --long-poll-timeout 2`, in
//! memory, with `--data-dir` and with `--redis` (a `redis-server` started
//! by the test): every test that fails must be listed in
//! `conformance/expected-failures.txt`, and every test listed there must
//! fail, so the list only shrinks.
//!
//! Environment variables, for working on the protocol:
//! - `SSEHUB_DS_FILTER=REGEX`: runs only the tests whose full name matches
//!   (vitest's `-t`); the others are left out of the comparison.
//! - `SSEHUB_DS_URL=http://127.0.0.1:PORT`: tests the server already
//!   running there (another implementation, or an ssehub started by hand,
//!   with a long-poll timeout of 2 s) instead of starting the binary.
//! - `SSEHUB_DS_WRITE_EXPECTED=1`: rewrites `expected-failures.txt` with the
//!   failures of this run instead of comparing (not with a filter).

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::process::Ssehub;
use tokio::process::Command;

/// How long the whole suite may take (it takes under a minute).
const SUITE_LIMIT: Duration = Duration::from_secs(600);

/// The header of `expected-failures.txt`, written back by
/// `SSEHUB_DS_WRITE_EXPECTED=1`.
const HEADER: &str = "\
# The Durable Streams conformance tests that ssehub fails today, one a line:
# the names of the test's describe blocks and its own title, joined with
# \" > \" (vitest's JSON report: ancestorTitles, then title). Lines starting
# with # and empty lines are ignored.
#
# `cargo test --test durable` fails when a test not listed here fails, and
# when a test listed here passes or does not run: fix the server, then
# remove the line. To rewrite the list from a run of the whole suite:
#   SSEHUB_DS_WRITE_EXPECTED=1 cargo test --test durable
";

fn suite_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/durable/conformance")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_durable_streams_conformance_suite_passes() {
    passes(Store::Memory).await;
}

/// The same suite with `--data-dir`: every write synced to disk before its
/// answer, and reads older than memory served from there.
#[tokio::test(flavor = "multi_thread")]
async fn the_durable_streams_conformance_suite_passes_on_disk() {
    if std::env::var("SSEHUB_DS_URL").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    passes(Store::Disk(dir.path())).await;
}

/// The same suite with `--redis` (one node on a real `redis-server`):
/// streams kept in Redis behave as in memory and on disk.
#[tokio::test(flavor = "multi_thread")]
async fn the_durable_streams_conformance_suite_passes_on_redis() {
    if std::env::var("SSEHUB_DS_URL").is_ok() {
        return;
    }
    let redis = support::redis::Redis::start(false);
    passes(Store::Redis(&redis.url())).await;
}

/// Where the ssehub under test keeps its streams.
#[derive(Debug, Clone, Copy)]
enum Store<'a> {
    Memory,
    /// `--data-dir` on this directory.
    Disk(&'a Path),
    /// `--redis` on this URL.
    Redis(&'a str),
}

impl Store<'_> {
    /// How the run is named in its summary line.
    fn label(self) -> &'static str {
        match self {
            Store::Memory => "",
            Store::Disk(_) => " (--data-dir)",
            Store::Redis(_) => " (--redis)",
        }
    }
}

/// Runs the suite against ssehub on `store`, or against `SSEHUB_DS_URL`.
async fn passes(store: Store<'_>) {
    let _alone = crate::HEAVY.write().await;
    let dir = suite_dir();
    assert!(
        dir.join("node_modules/@durable-streams/server-conformance-tests")
            .exists()
            && dir.join("node_modules/vitest").exists(),
        "the conformance suite is not installed: run `npm ci` in {} \
         (`bash .ci/run` does)",
        dir.display()
    );
    let filter = std::env::var("SSEHUB_DS_FILTER").ok();
    let write = std::env::var("SSEHUB_DS_WRITE_EXPECTED").as_deref() == Ok("1");
    assert!(
        !(write && filter.is_some()),
        "SSEHUB_DS_WRITE_EXPECTED needs the whole suite: unset SSEHUB_DS_FILTER"
    );

    let (url, server) = match std::env::var("SSEHUB_DS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            // Idle connections are kept 120 s instead of 10: on a starved
            // machine (CI under load, two busy loops) the suite spends
            // more than 10 s between two uses of a pooled connection, the
            // server closes it meanwhile, and Node's fetch, not having
            // seen the close yet, sends its next request there; it may
            // retry a GET but not a POST with a body ("other side
            // closed"). That is HTTP/1.1 keep-alive, not the protocol.
            let mut args = vec![
                "--long-poll-timeout",
                "2",
                "--idle-timeout",
                "120",
                "--header-timeout",
                "120",
            ];
            let server = match store {
                Store::Memory => Ssehub::start_in_memory("durable", &args).await,
                Store::Disk(dir) => Ssehub::start(dir, &args).await,
                Store::Redis(url) => {
                    args.extend(["--redis", url]);
                    let server = Ssehub::start_in_memory("durable-redis", &args).await;
                    // One plain failure rather than hundreds when streams
                    // are not served at all.
                    let path = "/v1/stream/ssehub-probe";
                    let (status, body) =
                        support::request(server.addr, "HEAD", path, &[], b"").await;
                    assert_eq!(
                        status, 404,
                        "ssehub --redis must serve Durable Streams (HEAD {path}: {body:?})"
                    );
                    server
                }
            };
            (format!("http://{}", server.addr), Some(server))
        }
    };
    let report = run_suite(&url, filter.as_deref()).await;
    if let Some(server) = server {
        server.stop().await;
    }

    let tests = tests(&report);
    let count = |status: &str| tests.iter().filter(|t| t.status == status).count();
    let (passed, failed) = (count("passed"), count("failed"));
    println!(
        "durable streams conformance against {url}{}: {passed} passed, {failed} failed, {} skipped",
        store.label(),
        tests.len() - passed - failed
    );
    assert!(passed + failed > 0, "the suite ran no test");

    let listed = dir.join("expected-failures.txt");
    if write && !matches!(store, Store::Memory) {
        // The list is the memory run's; the disk and Redis runs check
        // against it.
        return;
    }
    if write {
        let names: BTreeSet<&str> = tests
            .iter()
            .filter(|t| t.status == "failed")
            .map(|t| t.name.as_str())
            .collect();
        let text: String = names.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(&listed, format!("{HEADER}\n{text}")).unwrap();
        println!("wrote {} names to {}", names.len(), listed.display());
        return;
    }
    let expected = expected_failures(&listed);
    let problems = compare(&tests, &expected, filter.is_some());
    assert!(
        problems.is_empty(),
        "{} differences from {}:\n{}",
        problems.len(),
        listed.display(),
        problems.join("\n")
    );
}

/// Runs the suite against `url` and returns vitest's JSON report.
async fn run_suite(url: &str, filter: Option<&str>) -> Value {
    let out = tempfile::tempdir().unwrap();
    let (report, log) = (
        out.path().join("report.json"),
        out.path().join("vitest.log"),
    );
    let mut cmd = Command::new("npx");
    cmd.args(["vitest", "run", "--reporter=json"])
        .arg(format!("--outputFile={}", report.display()));
    if let Some(regex) = filter {
        cmd.args(["-t", regex]);
    }
    let output = std::fs::File::create(&log).unwrap();
    let mut child = cmd
        .current_dir(suite_dir())
        .env("CONFORMANCE_TEST_URL", url)
        .env("CONFORMANCE_LONG_POLL_MS", "2000")
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        // Its own group, so that a timeout kills vitest's workers too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("npx (Node.js >= 20) is needed for the conformance suite");
    let pid = child.id().unwrap();
    if tokio::time::timeout(SUITE_LIMIT, child.wait())
        .await
        .is_err()
    {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        panic!(
            "the conformance suite ran over {SUITE_LIMIT:?}\n{}",
            tail(&log)
        );
    }
    let text = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("no report from vitest ({e})\n{}", tail(&log)));
    let report: Value = serde_json::from_str(&text).expect("vitest's report is JSON");
    // An error outside any test (the file did not load, a hook failed).
    for file in report["testResults"].as_array().expect("testResults") {
        let message = file["message"].as_str().unwrap_or_default();
        assert!(message.is_empty(), "vitest: {message}\n{}", tail(&log));
    }
    report
}

/// The last lines of a log file.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// One test of the report.
#[derive(Debug)]
struct Test {
    /// Its describe blocks and title, joined with " > ".
    name: String,
    /// vitest's: `passed`, `failed`, `skipped`, `todo`...
    status: String,
    /// The first line of its first failure message.
    error: String,
}

fn tests(report: &Value) -> Vec<Test> {
    let files = report["testResults"].as_array().expect("testResults");
    files
        .iter()
        .flat_map(|file| {
            file["assertionResults"]
                .as_array()
                .expect("assertionResults")
        })
        .map(|t| {
            let mut parts: Vec<&str> = t["ancestorTitles"]
                .as_array()
                .expect("ancestorTitles")
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            parts.push(t["title"].as_str().expect("title"));
            Test {
                name: parts.join(" > "),
                status: t["status"].as_str().expect("status").to_owned(),
                error: t["failureMessages"][0]
                    .as_str()
                    .and_then(|m| m.lines().next())
                    .unwrap_or_default()
                    .to_owned(),
            }
        })
        .collect()
}

/// The names listed in `expected-failures.txt`.
fn expected_failures(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// What differs between the run and the list: a failure not listed, a
/// listed test that passed, and (unless `filtered`, where the tests left
/// out are skipped) a listed test that did not run.
fn compare(tests: &[Test], expected: &BTreeSet<String>, filtered: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for t in tests {
        match (t.status.as_str(), expected.contains(&t.name)) {
            ("failed", false) => problems.push(format!("fails: {}\n    {}", t.name, t.error)),
            ("passed", true) => problems.push(format!(
                "now passes, remove it from expected-failures.txt: {}",
                t.name
            )),
            _ => {}
        }
    }
    if !filtered {
        let ran: BTreeSet<&str> = tests
            .iter()
            .filter(|t| t.status == "failed" || t.status == "passed")
            .map(|t| t.name.as_str())
            .collect();
        for name in expected.iter().filter(|n| !ran.contains(n.as_str())) {
            problems.push(format!("listed but did not run: {name}"));
        }
    }
    problems
}
