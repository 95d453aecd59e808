//! A Mercure subscriber on a really broken connection: behind a chaos
//! proxy that cuts it mid-event, by reset or clean close, or after a stall,
//! at least [`MIN_CUTS`] times, a client that reconnects with the last
//! Mercure id it got (`Last-Event-ID`, like `EventSource`) receives every
//! matching update exactly once and in order. History holds the whole run,
//! so exactly-once is the product's, not the machine's speed.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ssehub::Hub;

use crate::common::{post, publisher, service, subscriber};
use crate::support::chaos::{Chaos, ChaosProxy, all_cut};
use crate::support::flaky::{Goal, MAX_EVENTS, PAUSE_AFTER, whole_run_hub};
use crate::support::resume_client::ResumingClient;
use crate::support::{STALL, TestServer, until_progress};

const MIN_CUTS: u64 = 25;

const TOPIC: &str = "https://example.com/chaos/1";

fn id(n: u64) -> String {
    format!("urn:chaos:{n}")
}

/// Publishes updates on [`TOPIC`] (data: their number; ids `urn:chaos:n`)
/// with one on another topic every third, one every `period`, until `goal`
/// is reached; then `"end"`. Returns the number of `"end"`. Publishing
/// waits while the goal's progress stands still (a client kept offline by
/// a starved machine), and fails after [`STALL`] of that.
async fn publish_until(server: &TestServer, period: Duration, goal: impl Goal) -> u64 {
    let token = publisher();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    let mut last = goal.progress();
    let mut since = (0u64, Instant::now());
    loop {
        tick.tick().await;
        let done = goal.reached();
        let now = goal.progress();
        if now != last {
            last = now;
            since = (0, Instant::now());
        } else {
            assert!(
                since.1.elapsed() < STALL,
                "no progress for {STALL:?}: {}",
                goal.explain()
            );
            if since.0 >= PAUSE_AFTER && !done {
                continue;
            }
        }
        since.0 += 1;
        n += 1;
        if done && n.is_multiple_of(3) {
            n += 1;
        }
        assert!(
            n < MAX_EVENTS,
            "{n} updates and still not done: {}",
            goal.explain()
        );
        if n.is_multiple_of(3) && !done {
            let (status, _, body) = post(
                server.addr,
                Some(&token),
                &[
                    ("topic", "https://example.com/elsewhere/1"),
                    ("id", &format!("urn:other:{n}")),
                ],
            )
            .await;
            assert_eq!(status, 200, "{body}");
            continue;
        }
        let data = if done {
            "end".to_owned()
        } else {
            n.to_string()
        };
        let (status, _, body) = post(
            server.addr,
            Some(&token),
            &[("topic", TOPIC), ("id", &id(n)), ("data", &data)],
        )
        .await;
        assert_eq!((status, body.as_str()), (200, id(n).as_str()));
        if done {
            return n;
        }
    }
}

/// The numbers of `received` (id, data) are consecutive matching updates
/// (every third is another topic's) from the first one up to `end`, each
/// once, with its data.
fn check_exactly_once(received: &[(String, String)], end: u64) -> Result<usize, String> {
    let mut expect: Option<u64> = None;
    for (i, (got_id, data)) in received.iter().enumerate() {
        let n: u64 = got_id
            .strip_prefix("urn:chaos:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("#{i}: an id that is not an update of the topic: {got_id:?}"))?;
        if let Some(want) = expect
            && n != want
        {
            let what = if n < want { "duplicate" } else { "gap" };
            return Err(format!("#{i}: {what}: expected {want}, got {n}"));
        }
        let want_data = if n == end {
            "end".to_owned()
        } else {
            n.to_string()
        };
        if *data != want_data {
            return Err(format!("#{i}: update {n} carries {data:?}"));
        }
        let mut next = n + 1;
        if next.is_multiple_of(3) {
            next += 1;
        }
        expect = Some(next);
        if n == end {
            return if i + 1 == received.len() {
                Ok(received.len())
            } else {
                Err(format!("updates after the end: {:?}", &received[i + 1..]))
            };
        }
    }
    Err(format!("the end ({end}) never came; stopped at {expect:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_subscriber_through_chaos_gets_every_update_once_in_order() {
    let hub: Hub = whole_run_hub(Duration::from_millis(120));
    let server = TestServer::start_service(service(hub, false)).await;
    let proxy = ChaosProxy::start(server.addr, Chaos::flaky(0x3E2C_0E15)).await;
    // The token travels in the query (a client that cannot set headers);
    // the client sends `Last-Event-ID` when it reconnects.
    let t = subscriber(&[]);
    let path = crate::common::path(
        &["https://example.com/chaos/{id}"],
        &[("authorization", &t)],
    );
    let client = ResumingClient::spawn(proxy.addr, path, "end");

    let log = client.log.clone();
    let received = log.clone();
    let goal = all_cut(std::slice::from_ref(&proxy), MIN_CUTS)
        .and(move || !received.lock().unwrap().events.is_empty());
    let end = publish_until(&server, Duration::from_millis(4), goal).await;
    until_progress("the client reaches the end", STALL, || {
        (client.is_done(), log.lock().unwrap().events.len())
    })
    .await;

    let log = client.log.lock().unwrap();
    assert!(log.resyncs.is_empty(), "{:?}", log.resyncs);
    let received: Vec<_> = log
        .events
        .iter()
        .map(|e| (e.last_event_id.clone(), e.data.clone()))
        .collect();
    let n = check_exactly_once(&received, end).unwrap();
    let s = &proxy.stats;
    println!(
        "mercure client: {n} updates, {} connections, {} cuts ({} resets, {} closes, {} stalls)",
        s.connections.load(Ordering::Relaxed),
        s.cuts(),
        s.resets.load(Ordering::Relaxed),
        s.closes.load(Ordering::Relaxed),
        s.stalls.load(Ordering::Relaxed)
    );
    assert!(s.cuts() >= MIN_CUTS);
    assert!(
        log.connects.len() as u64 > MIN_CUTS / 2,
        "{}",
        log.connects.len()
    );
}

#[test]
fn the_check_finds_gaps_duplicates_and_strangers() {
    let ev = |n: u64| (id(n), n.to_string());
    let end = |n: u64| (id(n), "end".to_owned());
    assert_eq!(check_exactly_once(&[ev(1), ev(2), ev(4), end(5)], 5), Ok(4));
    assert_eq!(check_exactly_once(&[ev(4), end(5)], 5), Ok(2));
    assert!(check_exactly_once(&[ev(1), ev(4), end(5)], 5).is_err());
    assert!(check_exactly_once(&[ev(1), ev(2), ev(2), ev(4), end(5)], 5).is_err());
    assert!(check_exactly_once(&[ev(1), ev(2), ev(4)], 5).is_err());
    assert!(check_exactly_once(&[("urn:other:3".into(), "x".into()), end(5)], 5).is_err());
    assert!(check_exactly_once(&[ev(4), ("k3f9-5".into(), "end".into())], 5).is_err());
}
