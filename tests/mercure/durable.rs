//! Updates on `--data-dir` outlive the process: after `kill -9` and a
//! restart, a subscriber resuming by Mercure id gets exactly the rest, ids
//! already used stay refused, and new updates follow.

use std::collections::HashSet;

use crate::common::{
    KEY, assert_only_mercure_ids, events_through, ids, post, publish_one, publisher, subscribe,
};
use crate::support::process::Ssehub;

fn id(i: u32) -> String {
    format!("urn:durable:{i}")
}

#[tokio::test]
async fn resuming_by_mercure_id_after_kill_9_gets_exactly_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--mercure-jwt-key", KEY];
    let topic = "https://example.com/books/1";
    let first = Ssehub::start(dir.path(), &args).await;
    let mut live = subscribe(first.addr, &[topic], Some(&publisher()), &[]).await;
    assert_eq!(live.status, 200);
    for i in 1..=10 {
        publish_one(first.addr, topic, &id(i), &i.to_string()).await;
        publish_one(
            first.addr,
            "https://example.com/other",
            &format!("urn:durable:other:{i}"),
            "other",
        )
        .await;
    }
    // Everything was acknowledged and delivered before the kill.
    assert_eq!(events_through(&mut live, &id(10)).await.len(), 10);
    first.kill().await;

    let second = Ssehub::start(dir.path(), &args).await;
    let addr = second.addr;
    let want: Vec<String> = (5..=10).map(id).collect();
    let mut resumed = subscribe(
        addr,
        &[topic],
        Some(&publisher()),
        &[("Last-Event-ID", &id(4))],
    )
    .await;
    assert_eq!(resumed.status, 200);
    assert_eq!(resumed.header("last-event-id"), Some(id(4).as_str()));
    let got = events_through(&mut resumed, &id(10)).await;
    assert_eq!(ids(&got), want);
    for (e, i) in got.iter().zip(5..) {
        assert_eq!(e.data, i.to_string());
    }
    // Resuming after an update of another topic works across the restart.
    let mut after_other = subscribe(
        addr,
        &[topic],
        Some(&publisher()),
        &[("Last-Event-ID", "urn:durable:other:8")],
    )
    .await;
    assert_eq!(
        after_other.header("last-event-id"),
        Some("urn:durable:other:8")
    );
    // Earliest replays all ten.
    let mut earliest = subscribe(
        addr,
        &[topic],
        Some(&publisher()),
        &[("Last-Event-ID", "earliest")],
    )
    .await;
    assert_eq!(
        ids(&events_through(&mut earliest, &id(10)).await),
        (1..=10).map(id).collect::<Vec<_>>()
    );

    // The ids are still taken.
    let (status, _, body) = post(
        addr,
        Some(&publisher()),
        &[("topic", topic), ("id", &id(3)), ("data", "again")],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // New updates follow, after exactly the rest.
    publish_one(addr, topic, &id(11), "11").await;
    assert_eq!(ids(&events_through(&mut resumed, &id(11)).await), [id(11)]);
    assert_eq!(
        ids(&events_through(&mut after_other, &id(11)).await),
        [id(9), id(10), id(11)]
    );
    assert_eq!(ids(&events_through(&mut earliest, &id(11)).await), [id(11)]);

    let mut published: HashSet<String> = (1..=11).map(id).collect();
    published.extend((1..=10).map(|i| format!("urn:durable:other:{i}")));
    for c in [&resumed, &after_other, &earliest] {
        assert_only_mercure_ids(&c.raw, &published);
    }
    second.stop().await;
}

/// Checks, on the node at `addr`, what ten updates on `topic` in a ring
/// of four give: a resume by an id only the disk still has, `earliest`,
/// and an id only the disk has still taken.
async fn check_beyond_the_ring(addr: std::net::SocketAddr, topic: &str, when: &str) {
    let token = publisher();
    let mut resumed = subscribe(addr, &[topic], Some(&token), &[("Last-Event-ID", &id(2))]).await;
    assert_eq!(
        resumed.header("last-event-id"),
        Some(id(2).as_str()),
        "{when}"
    );
    assert_eq!(
        ids(&events_through(&mut resumed, &id(10)).await),
        (3..=10).map(id).collect::<Vec<_>>(),
        "{when}"
    );
    let mut earliest = subscribe(
        addr,
        &[topic],
        Some(&token),
        &[("Last-Event-ID", "earliest")],
    )
    .await;
    assert_eq!(
        ids(&events_through(&mut earliest, &id(10)).await),
        (1..=10).map(id).collect::<Vec<_>>(),
        "earliest, {when}"
    );
    let (status, _, _) = post(addr, Some(&token), &[("topic", topic), ("id", &id(1))]).await;
    assert_eq!(status, 409, "an id only the disk has, {when}");
}

/// The ring in memory holds fewer updates than the disk: a resume by an
/// id only the disk still has, and `earliest`, read from the disk, before
/// and after a restart.
#[tokio::test]
async fn a_resume_beyond_the_ring_reads_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--mercure-jwt-key", KEY, "--buffer", "4"];
    let topic = "https://example.com/books/1";
    let first = Ssehub::start(dir.path(), &args).await;
    for i in 1..=10 {
        publish_one(first.addr, topic, &id(i), &i.to_string()).await;
    }
    check_beyond_the_ring(first.addr, topic, "before the restart").await;
    first.kill().await;
    let second = Ssehub::start(dir.path(), &args).await;
    check_beyond_the_ring(second.addr, topic, "after the restart").await;
    second.stop().await;
}

/// Through a chaos proxy (cuts mid-update, resets, stalls) and two
/// `kill -9` restarts of the binary on its data directory, a subscriber
/// that reconnects with the last Mercure id it got receives every
/// acknowledged update of its topic exactly once, in order. The ring holds
/// 64 updates: resumes after a restart read the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_chaos_and_kill_9_restarts_every_update_arrives_once() {
    use std::time::Duration;

    use crate::support::chaos::{Chaos, ChaosProxy};
    use crate::support::resume_client::ResumingClient;
    use crate::support::{STALL, until_progress};

    const MIN_CUTS: u64 = 20;
    const RESTARTS: u32 = 2;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--mercure-jwt-key",
        KEY,
        "--retry",
        "100",
        "--retry-jitter",
        "0",
        "--buffer",
        "64",
    ];
    let topic = "https://example.com/restarts/1";
    let mut server = Ssehub::start(dir.path(), &args).await;
    let proxy = ChaosProxy::start(
        server.addr,
        Chaos {
            hold_while_down: Some(Duration::from_secs(10)),
            ..Chaos::flaky(0x0DD_BA11)
        },
    )
    .await;
    let t = crate::common::subscriber(&[]);
    let path = crate::common::path(
        &["https://example.com/restarts/{n}"],
        &[("authorization", &t)],
    );
    let client = ResumingClient::spawn(proxy.addr, path, "end");
    let log = client.log.clone();
    let received = || log.lock().unwrap().events.len();

    let mut tick = tokio::time::interval(Duration::from_millis(4));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut n, mut restarts, mut since_restart) = (0u64, 0u32, 0u64);
    let end = loop {
        tick.tick().await;
        n += 1;
        since_restart += 1;
        assert!(
            n < 60_000,
            "{n} updates: {} cuts, {restarts} restarts, {} received",
            proxy.stats.cuts(),
            received()
        );
        let done = restarts == RESTARTS && proxy.stats.cuts() >= MIN_CUTS && received() > 0;
        let data = if done {
            "end".to_owned()
        } else {
            n.to_string()
        };
        let (status, _, body) = post(
            server.addr,
            Some(&publisher()),
            &[
                ("topic", topic),
                ("id", &format!("urn:rs:{n}")),
                ("data", &data),
            ],
        )
        .await;
        assert_eq!((status, body), (200, format!("urn:rs:{n}")));
        if done {
            break n;
        }
        if restarts < RESTARTS && since_restart >= 300 && received() > 0 {
            server.kill().await;
            server = Ssehub::start(dir.path(), &args).await;
            proxy.set_upstream(server.addr);
            restarts += 1;
            since_restart = 0;
        }
    };
    until_progress("the client reaches the end", STALL, || {
        (client.is_done(), received())
    })
    .await;

    {
        let log = client.log.lock().unwrap();
        assert!(log.resyncs.is_empty(), "{:?}", log.resyncs);
        let got: Vec<(&str, &str)> = log
            .events
            .iter()
            .map(|e| (e.last_event_id.as_str(), e.data.as_str()))
            .collect();
        let first: u64 = got[0].0.strip_prefix("urn:rs:").unwrap().parse().unwrap();
        let want: Vec<(String, String)> = (first..=end)
            .map(|i| {
                let data = if i == end {
                    "end".to_owned()
                } else {
                    i.to_string()
                };
                (format!("urn:rs:{i}"), data)
            })
            .collect();
        let want: Vec<(&str, &str)> = want.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        if got != want {
            let firstdiff = got.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "{} received, {} wanted; first difference at {firstdiff:?}: {:?} / {:?}",
                got.len(),
                want.len(),
                firstdiff.map(|i| &got[i..(i + 3).min(got.len())]),
                firstdiff.map(|i| &want[i..(i + 3).min(want.len())]),
            );
        }
        println!(
            "{} updates from {first} to {end}, {} connections, {} cuts, {restarts} restarts",
            got.len(),
            proxy
                .stats
                .connections
                .load(std::sync::atomic::Ordering::Relaxed),
            proxy.stats.cuts()
        );
    }
    server.stop().await;
}
