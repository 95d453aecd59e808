//! Disk retention as the binary applies it (`--retain-events`,
//! `--retain-age`, `--max-disk-bytes`), on a real data directory, over
//! real sockets: one rule whatever layer (the in-memory ring or the disk)
//! serves an event, applied to idle topics too, from startup on.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::process::{Answer, Ssehub, publish};
use support::{Item, SseClient};

fn epoch_of(id: &str) -> &str {
    id.rsplit_once('-').expect("an id").0
}

/// Publishes `data(1..=n)` to `t` in order; returns the epoch.
async fn publish_each(addr: SocketAddr, n: u64, data: impl Fn(u64) -> String) -> String {
    let mut epoch = String::new();
    for i in 1..=n {
        let Answer::Created(id) = publish(addr, "t", &data(i)).await else {
            panic!("publish {i}")
        };
        assert_eq!(support::seq(&id), i);
        epoch = epoch_of(&id).to_owned();
    }
    epoch
}

/// What a client resuming from before the first event of `epoch` gets
/// first: `Ok((id, data))` of an event, or `Err(resync JSON)`.
async fn first_from_start(
    addr: SocketAddr,
    epoch: &str,
) -> Result<(String, String), serde_json::Value> {
    let mut c = SseClient::get(addr, &format!("/events/t?lastEventId={epoch}-0"), &[]).await;
    assert_eq!(c.status, 200);
    let ev = c.next_event().await;
    if ev.event_type == "resync" {
        Err(serde_json::from_str(&ev.data).unwrap())
    } else {
        Ok((ev.last_event_id, ev.data))
    }
}

/// The events a first connect with `?rewind=10` replays: every event it
/// sends before `marker` (published after the stream opened).
async fn rewound(addr: SocketAddr, marker: &str) -> Vec<String> {
    let mut c = SseClient::get(addr, "/events/t?rewind=10", &[]).await;
    assert_eq!(c.status, 200);
    // The stream is open (its head arrived): the marker comes after what
    // it replays.
    let Answer::Created(_) = publish(addr, "t", marker).await else {
        panic!("publishing the marker")
    };
    let mut got = Vec::new();
    loop {
        match c.next_item().await {
            Some(Item::Event(e)) if e.data == marker => return got,
            Some(Item::Event(e)) => got.push(e.data),
            Some(_) => {}
            None => panic!("the stream ended"),
        }
    }
}

/// Regression (issue 20): with `--retain-age 1`, an event older than the
/// limit was still served from the ring (a `?rewind=` replayed it) until
/// a restart, when the disk no longer had it. Now the ring drops what the
/// store trims. Also kills a binary that reads `--retain-age` as
/// milliseconds: the event must stay served for the whole limit, not
/// vanish at the writer's first age check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_age_drops_old_events_from_memory_too_and_counts_seconds() {
    const AGE: Duration = Duration::from_secs(3);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let args = ["--retain-age", "3", "--buffer", "100"];
    let server = Ssehub::start(&dir, &args).await;
    let before = Instant::now();
    let epoch = publish_each(server.addr, 1, |_| "old".into()).await;
    // Served (from the ring) until the limit, then never again.
    let mut polls = 0;
    let gone = loop {
        polls += 1;
        match first_from_start(server.addr, &epoch).await {
            Ok(ev) => assert_eq!(ev, (format!("{epoch}-1"), "old".to_owned())),
            Err(resync) => {
                // `lagged` if the trim came between the start and the read.
                assert!(
                    resync["reason"] == "evicted" || resync["reason"] == "lagged",
                    "{resync}"
                );
                break before.elapsed();
            }
        }
        assert!(
            before.elapsed() < AGE + support::WAIT,
            "still served after {:?}",
            before.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(gone >= AGE, "dropped after {gone:?}, under the limit");
    assert!(polls > 1);
    assert_eq!(rewound(server.addr, "new").await, Vec::<String>::new());
    server.stop().await;
    // The disk agrees (`new` may be gone too by now).
    let server = Ssehub::start(&dir, &args).await;
    let ev = first_from_start(server.addr, &epoch).await;
    assert!(
        !matches!(&ev, Ok((_, d)) if d == "old"),
        "after a restart: {ev:?}"
    );
    server.stop().await;
}

/// Regression (issue 20): a lowered `--retain-events` was applied to an
/// idle topic only at its next publish. Now at startup: nothing is
/// published after the restart, and the topic keeps its newest 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowered_retain_events_applies_at_startup_to_idle_topics() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Ssehub::start(&dir, &[]).await;
    let epoch = publish_each(server.addr, 50, |i| format!("e{i}")).await;
    server.stop().await;

    let server = Ssehub::start(&dir, &["--retain-events", "10"]).await;
    let end = Instant::now() + support::WAIT;
    let resync = loop {
        match first_from_start(server.addr, &epoch).await {
            // A stream that began before the trim and lost its events to it
            // while reading them: `lagged`, counting exactly what it lost.
            Err(resync) if resync["reason"] == "lagged" => {
                assert_eq!(resync["oldest"], format!("{epoch}-41"), "{resync}");
                assert_eq!(resync["missed"], 40, "{resync}");
            }
            Err(resync) => break resync,
            Ok(ev) => assert_eq!(ev, (format!("{epoch}-1"), "e1".to_owned())),
        }
        assert!(Instant::now() < end, "never trimmed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(resync["reason"], "evicted", "{resync}");
    assert_eq!(resync["oldest"], format!("{epoch}-41"), "{resync}");
    server.stop().await;
}

/// Kills a binary that does not hand `--max-disk-bytes` to the store:
/// 100 events of 1 KB under a bound of 20,000 bytes keep the newest that
/// fit (with the ring, which holds all 100, agreeing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_disk_bytes_bounds_what_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Ssehub::start(&dir, &["--max-disk-bytes", "20000", "--buffer", "1000"]).await;
    let pad = "z".repeat(1000);
    let epoch = publish_each(server.addr, 100, |i| format!("{i:03}-{pad}")).await;
    let resync = first_from_start(server.addr, &epoch)
        .await
        .expect_err("the oldest events are gone");
    assert_eq!(resync["reason"], "evicted", "{resync}");
    let oldest = support::seq(resync["oldest"].as_str().unwrap());
    // At most 20,000 bytes, and the store cuts to 15/16 of it: 17 to 19
    // events of a little over 1,000 bytes.
    assert!((81..=84).contains(&oldest), "{resync}");
    server.stop().await;
}
