//! The `ssehub` binary as a child process on a data directory: started on
//! an ephemeral port (read from its first stdout line), stopped with
//! SIGTERM or killed with SIGKILL, its log kept in a file for the failure
//! message. Also an HTTP publisher that never panics: a publish that fails
//! because the server is down is an answer too (not a `201`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::WAIT;

/// A running `ssehub`.
pub struct Ssehub {
    pub addr: SocketAddr,
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

/// Distinct log names for the processes of one test run.
static STARTS: AtomicU64 = AtomicU64::new(0);

/// The command line of the binary on `dir` (none: the memory store), its
/// stderr to `log`.
fn command(dir: Option<&Path>, args: &[&str], log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssehub"));
    cmd.args(["--listen", "127.0.0.1:0", "--tick", "0"]);
    if let Some(dir) = dir {
        cmd.arg("--data-dir").arg(dir);
    }
    cmd.args(args)
        .env("RUST_LOG", "ssehub=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("log file"),
        )
        .kill_on_drop(true);
    cmd
}

/// A log file in the system's temporary directory (not next to the data
/// directory, which may be on a file system a test fills up).
fn log_path(dir: &Path) -> PathBuf {
    let n = STARTS.fetch_add(1, Ordering::Relaxed);
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    std::env::temp_dir().join(format!("ssehub-{name}-{}-{n}.log", std::process::id()))
}

impl Ssehub {
    /// Starts the binary on `dir` and waits for its listening line.
    pub async fn start(dir: &Path, args: &[&str]) -> Ssehub {
        match Ssehub::try_start(dir, args).await {
            Ok(server) => server,
            Err((status, log)) => panic!("ssehub did not start ({status:?}), log:\n{log}"),
        }
    }

    /// Starts the binary with the memory store (no `--data-dir`); its log
    /// goes to a file named after `name`.
    pub async fn start_in_memory(name: &str, args: &[&str]) -> Ssehub {
        let log = log_path(Path::new(name));
        match Ssehub::spawn(None, args, log).await {
            Ok(server) => server,
            Err((status, log)) => panic!("ssehub did not start ({status:?}), log:\n{log}"),
        }
    }

    /// Starts the binary on `dir` with its stderr appended to `log`.
    pub async fn start_logging_to(dir: &Path, args: &[&str], log: &Path) -> Ssehub {
        match Ssehub::try_start_logging_to(dir, args, log.to_path_buf()).await {
            Ok(server) => server,
            Err((status, log)) => panic!("ssehub did not start ({status:?}), log:\n{log}"),
        }
    }

    /// Starts the binary on `dir`: running, or how it exited (its status,
    /// if it did, and its stderr).
    pub async fn try_start(
        dir: &Path,
        args: &[&str],
    ) -> Result<Ssehub, (Option<ExitStatus>, String)> {
        Ssehub::try_start_logging_to(dir, args, log_path(dir)).await
    }

    async fn try_start_logging_to(
        dir: &Path,
        args: &[&str],
        log: PathBuf,
    ) -> Result<Ssehub, (Option<ExitStatus>, String)> {
        Ssehub::spawn(Some(dir), args, log).await
    }

    async fn spawn(
        dir: Option<&Path>,
        args: &[&str],
        log: PathBuf,
    ) -> Result<Ssehub, (Option<ExitStatus>, String)> {
        let mut child = command(dir, args, &log).spawn().expect("spawn ssehub");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line)).await;
        let addr = line
            .trim()
            .strip_prefix("ssehub listening on http://")
            .and_then(|a| a.parse().ok());
        if let (Ok(Ok(_)), Some(addr)) = (read, addr) {
            return Ok(Ssehub { addr, child, log });
        }
        let status = tokio::time::timeout(WAIT, child.wait())
            .await
            .ok()
            .and_then(Result::ok);
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        Err((status, stderr))
    }

    /// Runs the binary on `dir` expecting it to exit: its status and stderr.
    pub async fn run_to_exit(dir: &Path, args: &[&str]) -> (ExitStatus, String) {
        let log = log_path(dir);
        let mut child = command(Some(dir), args, &log)
            .spawn()
            .expect("spawn ssehub");
        let status = tokio::time::timeout(WAIT, child.wait())
            .await
            .expect("exits in time")
            .unwrap();
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        (status, stderr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig}");
    }

    /// SIGTERM, then waits for the exit: it must be a success.
    pub async fn stop(mut self) {
        self.signal("-TERM");
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits in time after SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "after SIGTERM: {status}\n{}",
            self.log_text()
        );
        let _ = std::fs::remove_file(&self.log);
    }

    /// SIGKILL, then waits until the process is gone.
    pub async fn kill(mut self) {
        self.signal("-KILL");
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("gone in time after SIGKILL")
            .unwrap();
        let _ = std::fs::remove_file(&self.log);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What a publish got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `201`, with the id.
    Created(String),
    /// Another status, with the body.
    Status(u16, String),
    /// No answer (refused, reset, cut before the response head).
    Failed,
}

/// `POST /events/{topic}` with `data` as the body, once. Never retries and
/// never panics.
pub async fn publish(addr: SocketAddr, topic: &str, data: &str) -> Answer {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "POST /events/{topic} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{data}",
            data.len()
        );
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        // Short bodies: unchunk by hand if needed.
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body.split("\r\n").nth(1).unwrap_or_default().to_owned()
        } else {
            body.to_owned()
        };
        Some((status, body))
    };
    match tokio::time::timeout(WAIT, attempt).await {
        Ok(Some((201, body))) => {
            let v: serde_json::Value = serde_json::from_str(&body).expect("201 carries JSON");
            Answer::Created(v["id"].as_str().expect("an id").to_owned())
        }
        Ok(Some((status, body))) => Answer::Status(status, body),
        Ok(None) | Err(_) => Answer::Failed,
    }
}

/// The `(id, data)` of every event of `topic`'s history, read from the
/// start (`lastEventId=<epoch>-0`): `count` events, which must come
/// without a `resync`.
pub async fn read_history(
    addr: SocketAddr,
    topic: &str,
    epoch: &str,
    count: u64,
) -> Vec<(String, String)> {
    let path = format!("/events/{topic}?lastEventId={epoch}-0&limit={count}");
    let mut c = super::SseClient::get(addr, &path, &[]).await;
    assert_eq!(c.status, 200);
    let items = c.until_end().await;
    super::events(&items)
        .into_iter()
        .map(|e| {
            assert_ne!(e.event_type, "resync", "reading {topic} back: {}", e.data);
            (e.last_event_id, e.data)
        })
        .collect()
}

/// The id of the newest event of `topic` (the checkpoint a fresh
/// subscription starts with), as `(epoch, seq)`.
pub async fn latest(addr: SocketAddr, topic: &str) -> (String, u64) {
    let mut c = super::SseClient::get(addr, &format!("/events/{topic}"), &[]).await;
    assert_eq!(c.status, 200);
    loop {
        match c.next_item().await {
            Some(super::Item::IdOnly(id)) => {
                let (epoch, seq) = id.rsplit_once('-').expect("an id");
                return (epoch.to_owned(), seq.parse().unwrap());
            }
            Some(super::Item::Event(e)) => panic!("an event before the checkpoint: {e:?}"),
            Some(_) => {}
            None => panic!("the stream ended before its checkpoint"),
        }
    }
}

/// Waits (bounded) until `cond` holds, polling every 20 ms.
pub async fn until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let end = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
