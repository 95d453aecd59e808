//! Runs `tests/browser/clients.mjs` (headless Chromium and the Node
//! `eventsource` package) and reads its JSON report.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Once;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Makes sure Node packages and Chromium are there, with a clear message
/// when they cannot be.
fn prerequisites() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "{chromium} is missing: install Debian's chromium (apt-get install chromium) \
             or run `bash .ci/run`, which does"
        );
        let dir = browser_dir();
        if !dir.join("node_modules/playwright-core").exists()
            || !dir.join("node_modules/eventsource").exists()
        {
            let status = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .expect("npm (Node.js) is needed for the browser tests");
            assert!(status.success(), "npm ci in tests/browser failed");
        }
    });
}

pub struct NodeRun {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl NodeRun {
    pub fn start(config: serde_json::Value) -> NodeRun {
        prerequisites();
        let mut child = Command::new("node")
            .arg("clients.mjs")
            .arg(config.to_string())
            .current_dir(browser_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        NodeRun {
            child,
            stdin,
            stdout,
        }
    }

    /// The next JSON line other than a progress line; panics with the
    /// runner's error if it failed. `stall` is how long it waits while the
    /// clients make no progress: the runner prints `{"progress": n}` (at
    /// most once a second) whenever they received anything, and each such
    /// line starts the wait anew, so a slow machine is waited for.
    pub async fn next(&mut self, stall: Duration) -> serde_json::Value {
        // The runner's own stall limit (`timeoutMs`, the same length) fires
        // first and says which client stopped; this one only catches a
        // runner that hangs.
        let stall = stall + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout(stall, self.stdout.next_line())
                .await
                .unwrap_or_else(|_| panic!("the JS clients made no progress for {stall:?}"))
                .unwrap()
                .expect("the JS clients printed a line");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!(
                    "not JSON ({e}, {} bytes): {}",
                    line.len(),
                    &line[line.len().saturating_sub(300)..]
                )
            });
            if let Some(e) = v.get("error") {
                panic!("the JS clients failed: {}", e.as_str().unwrap_or_default());
            }
            if v.get("progress").is_none() {
                return v;
            }
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The final report (`stall` as in [`NodeRun::next`]).
    pub async fn report(mut self, stall: Duration) -> serde_json::Value {
        let v = self.next(stall).await;
        let _ = self.child.wait().await;
        v["report"].clone()
    }
}

/// The `[id, data]` pairs of a report as tuples.
pub fn pairs(v: &serde_json::Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("an array of events")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The `seen` array of a report: events and resyncs in arrival order
/// (`["event", id, data]` or `["resync", null, json]`).
pub fn seen(v: &serde_json::Value) -> Vec<super::flaky::Seen> {
    v.as_array()
        .expect("an array of items")
        .iter()
        .map(|item| match item[0].as_str() {
            Some("event") => super::flaky::Seen::Event(
                item[1].as_str().unwrap().to_owned(),
                item[2].as_str().unwrap().to_owned(),
            ),
            _ => super::flaky::Seen::Resync(
                serde_json::from_str(item[2].as_str().unwrap()).expect("resync JSON"),
            ),
        })
        .collect()
}
