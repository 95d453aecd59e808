//! The `ssehub` binary as a user runs it: the demo ticker on `/stream`, and
//! SIGTERM with thousands of open streams ends them all and exits 0 quickly.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Item, SseClient, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary on an ephemeral port and returns it with its address.
async fn start(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ssehub");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("listening line in time")
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ssehub listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn stream_ticks_unnamed_events() {
    let (child, addr) = start(&["--tick", "0.05"]).await;
    let mut c = SseClient::get(addr, "/stream", &[]).await;
    assert_eq!(c.status, 200);
    let mut last = 0;
    for _ in 0..3 {
        let ev = c.next_event().await;
        assert_eq!(ev.event_type, "message");
        // RFC 3339 UTC with milliseconds.
        assert_eq!(ev.data.len(), 24, "{:?}", ev.data);
        assert!(ev.data.ends_with('Z') && ev.data.as_bytes()[10] == b'T');
        let n = support::seq(&ev.last_event_id);
        assert!(n > last);
        last = n;
    }
    sigterm(&child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_thousands_of_streams_exits_zero_quickly() {
    const STREAMS: usize = 2000;
    let (mut child, addr) = start(&["--tick", "0.2"]).await;

    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/stream".to_owned()
            } else {
                format!("/events/t{}", i % 50)
            };
            let mut c = SseClient::get(addr, &path, &[]).await;
            assert_eq!(c.status, 200);
            assert_eq!(c.next_item().await, Some(Item::Retry(3000)));
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }

    let t0 = Instant::now();
    sigterm(&child);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(4), "took {took:?}");

    // Every stream ended with a complete response, so clients reconnect.
    for c in &mut clients {
        c.expect_end().await;
        assert!(c.ended_cleanly());
    }
}
