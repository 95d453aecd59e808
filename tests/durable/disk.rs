//! Durable Streams on the disk store (`--data-dir`), over real sockets,
//! across restarts of the hub on the same directory: what a stream is
//! (messages, closure, producers, forks, deletions) comes back whole; reads
//! older than memory come from disk; a generation is never given twice.

use std::path::Path;
use std::time::Duration;

use ssehub::store::{DiskStore, Retention};
use ssehub::{Hub, SseService};

use crate::support::{TestServer, header, request, request_full};

/// A hub on `dir` whose rings keep little (`ring_bytes` per topic), so
/// that reads go to disk.
async fn start(dir: &Path, ring_bytes: usize) -> TestServer {
    let store = DiskStore::open(dir, Retention::default()).expect("open the store");
    let hub = Hub::builder()
        .max_topic_bytes(ring_bytes)
        .storage(store)
        .build();
    let service = SseService::builder(hub)
        .long_poll_timeout(Duration::from_millis(300))
        .build();
    TestServer::start_service(service).await
}

/// Stops the server and waits until its hub (and store) are gone: the
/// directory is free for the next start.
async fn restart(server: TestServer, dir: &Path, ring_bytes: usize) -> TestServer {
    server.stop().await;
    // The store's last handle goes with the hub's tasks; opening again
    // fails while it lives.
    let deadline = tokio::time::Instant::now() + crate::support::WAIT;
    loop {
        match DiskStore::open(dir, Retention::default()) {
            Ok(store) => {
                drop(store);
                return start(dir, ring_bytes).await;
            }
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Option<String>, String) {
    let (status, h, body) = request_full(server.addr, method, path, headers, body.as_bytes()).await;
    let next = header(&h, "stream-next-offset").map(str::to_owned);
    (status, next, body)
}

/// Reads the whole stream from `offset`, following `Stream-Next-Offset`.
async fn read_all(server: &TestServer, path: &str, offset: &str) -> (String, usize) {
    let (mut text, mut reads, mut offset) = (String::new(), 0, offset.to_owned());
    loop {
        let (status, h, body) = request_full(
            server.addr,
            "GET",
            &format!("{path}?offset={offset}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        text.push_str(&body);
        reads += 1;
        offset = header(&h, "stream-next-offset").unwrap().to_owned();
        if header(&h, "stream-up-to-date") == Some("true") {
            return (text, reads);
        }
        assert!(reads < 10_000, "no end");
    }
}

fn producer<'a>(id: &'a str, seq: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("Content-Type", "text/plain"),
        ("Producer-Id", id),
        ("Producer-Epoch", "0"),
        ("Producer-Seq", seq),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_comes_back_whole_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 1 << 20).await;
    let path = "/v1/stream/app/log";
    let (status, _, _) = send(&server, "PUT", path, &[("Content-Type", "text/plain")], "a").await;
    assert_eq!(status, 201);
    for seq in 0..3u64 {
        let seq = seq.to_string();
        let (status, _, body) = send(&server, "POST", path, &producer("p", &seq), &seq).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, before, _) = send(&server, "HEAD", path, &[], "").await;
    assert_eq!(status, 200);
    let server = restart(server, dir.path(), 1 << 20).await;

    let (status, after, _) = send(&server, "HEAD", path, &[], "").await;
    assert_eq!((status, &after), (200, &before), "the same tail");
    assert_eq!(read_all(&server, path, "-1").await.0, "a012");
    // The producer's place survived: its retry is a duplicate, its next
    // append is taken, a gap is refused.
    let (status, _, _) = send(&server, "POST", path, &producer("p", "2"), "2").await;
    assert_eq!(status, 204, "a retry after the restart is a duplicate");
    let (status, _, _) = send(&server, "POST", path, &producer("p", "5"), "5").await;
    assert_eq!(status, 409, "a gap");
    let (status, _, _) = send(&server, "POST", path, &producer("p", "3"), "3").await;
    assert_eq!(status, 200);
    // Closed, and still closed after another restart.
    let (status, _, _) = send(
        &server,
        "POST",
        path,
        &[("Content-Type", "text/plain"), ("Stream-Closed", "true")],
        "",
    )
    .await;
    assert_eq!(status, 204);
    let server = restart(server, dir.path(), 1 << 20).await;
    let (status, _, _) = send(
        &server,
        "POST",
        path,
        &[("Content-Type", "text/plain")],
        "x",
    )
    .await;
    assert_eq!(status, 409, "closed for good");
    assert_eq!(read_all(&server, path, "-1").await.0, "a0123");

    // Deleted: gone after a restart too, and created again it never
    // repeats an offset.
    let (status, _, _) = send(&server, "DELETE", path, &[], "").await;
    assert_eq!(status, 204);
    let server = restart(server, dir.path(), 1 << 20).await;
    let (status, _, _) = send(&server, "HEAD", path, &[], "").await;
    assert_eq!(status, 404);
    let (status, _, _) = send(&server, "PUT", path, &[("Content-Type", "text/plain")], "b").await;
    assert_eq!(status, 201);
    let (status, again, _) = send(&server, "HEAD", path, &[], "").await;
    assert_eq!(status, 200);
    assert!(again > before, "{again:?} after {before:?}");
    let (status, _, _) = send(
        &server,
        "GET",
        &format!("{path}?offset={}", before.unwrap()),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 410, "an offset of the deleted stream");
    server.stop().await;
}

/// A ring of 4 KiB holds about 40 of the 3,000 messages: the rest is read
/// from disk, in pages of at most 4,096 messages, before and after a
/// restart (when the ring starts empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_older_than_memory_come_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), 4096).await;
    let path = "/v1/stream/deep";
    let (status, _, _) = send(&server, "PUT", path, &[("Content-Type", "text/plain")], "").await;
    assert_eq!(status, 201);
    let mut all = String::new();
    let mut offsets = Vec::new();
    for i in 0..3000 {
        let message = format!("{i:04}:{}\n", "x".repeat(90));
        let (status, next, _) = send(
            &server,
            "POST",
            path,
            &[("Content-Type", "text/plain")],
            &message,
        )
        .await;
        assert_eq!(status, 204);
        all.push_str(&message);
        offsets.push(next.unwrap());
    }
    let (text, reads) = read_all(&server, path, "-1").await;
    assert_eq!(text, all);
    println!("3,000 messages in {reads} reads");
    // From a position in the middle (on disk only).
    let (text, _) = read_all(&server, path, &offsets[999]).await;
    assert_eq!(text, all[1000 * 96..]);
    let server = restart(server, dir.path(), 4096).await;
    assert_eq!(read_all(&server, path, "-1").await.0, all);
    assert_eq!(
        read_all(&server, path, &offsets[2500]).await.0,
        all[2501 * 96..]
    );
    // A fork at a position only the disk has, with a sub-offset.
    let (status, _, body) = send(
        &server,
        "PUT",
        "/v1/stream/deep-fork",
        &[
            ("Content-Type", "text/plain"),
            ("Stream-Forked-From", path),
            ("Stream-Fork-Offset", &offsets[9]),
            ("Stream-Fork-Sub-Offset", "4"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (fork, _) = read_all(&server, "/v1/stream/deep-fork", "-1").await;
    assert_eq!(fork, format!("{}0010", &all[..10 * 96]));
    // The fork and the source's deletion under it survive a restart: the
    // source is gone (410) until the fork goes, then not found.
    let (status, _, _) = send(&server, "DELETE", path, &[], "").await;
    assert_eq!(status, 204);
    let server = restart(server, dir.path(), 4096).await;
    let (status, _, _) = send(&server, "HEAD", path, &[], "").await;
    assert_eq!(status, 410, "hidden under its fork");
    assert_eq!(
        read_all(&server, "/v1/stream/deep-fork", "-1").await.0,
        fork
    );
    let (status, _, _) = send(&server, "DELETE", "/v1/stream/deep-fork", &[], "").await;
    assert_eq!(status, 204);
    let (status, _, _) = send(&server, "HEAD", path, &[], "").await;
    assert_eq!(status, 404, "gone with its last fork");
    let server = restart(server, dir.path(), 4096).await;
    let (status, _) = request(server.addr, "HEAD", path, &[], b"").await;
    assert_eq!(status, 404);
    server.stop().await;
}
