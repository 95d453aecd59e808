//! Reconnect storms: thousands of subscribers cut at the same moment come
//! back and resume with nothing lost, and the jittered `retry:` hint spreads
//! their return instead of bringing them back in the same millisecond.

mod support;

use std::time::Duration;

use ssehub::Hub;
use support::TestServer;
use support::chaos::{Chaos, ChaosProxy};
use support::flaky::{check_exactly_once, check_gaps_announced, publish_until};
use support::resume_client::ResumingClient;
use tokio::time::Instant;

const CLIENTS: usize = 2000;
const RETRY_MS: u64 = 1000;

struct Storm {
    /// When each client started reconnecting, in ms after the cut.
    attempts: Vec<f64>,
    /// The `retry:` hint each client had been given, in ms.
    hints: Vec<f64>,
    /// When each client had its stream back.
    resumed: Vec<f64>,
    events: u64,
}

async fn storm(jitter: f64) -> Storm {
    let hub = Hub::builder()
        .buffer(10_000)
        .retry(Some(Duration::from_millis(RETRY_MS)))
        .retry_jitter(jitter)
        .build();
    let server = TestServer::start(hub).await;
    let proxy = ChaosProxy::start(server.addr, Chaos::none(7)).await;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| ResumingClient::spawn(proxy.addr, "/events/storm".into(), "end"))
        .collect();

    let hub = server.hub.clone();
    let publisher = tokio::spawn(async move {
        let started = Instant::now();
        publish_until(&hub, "storm", Duration::from_millis(100), move || {
            started.elapsed() > Duration::from_secs(8)
        })
        .await
    });
    // Everyone connected and receiving.
    tokio::time::timeout(Duration::from_secs(30), async {
        while !clients
            .iter()
            .all(|c| !c.log.lock().unwrap().events.is_empty())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("all clients connected");

    let cut = Instant::now();
    proxy.cut_all();
    let end = publisher.await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !clients.iter().all(ResumingClient::is_done) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("all clients reach the end");

    let ms = |t: Instant| t.saturating_duration_since(cut).as_secs_f64() * 1000.0;
    let mut storm = Storm {
        attempts: Vec::new(),
        hints: Vec::new(),
        resumed: Vec::new(),
        events: 0,
    };
    for (i, c) in clients.iter().enumerate() {
        let log = c.log.lock().unwrap();
        let received: Vec<_> = log
            .events
            .iter()
            .map(|e| (e.last_event_id.clone(), e.data.clone()))
            .collect();
        check_gaps_announced(&format!("client {i}"), &log.seen).unwrap();
        storm.events += check_exactly_once(&format!("client {i}"), &received, end).unwrap();
        assert!(log.resyncs.is_empty());
        assert_eq!(log.connects.len(), 2, "client {i}: one cut, one reconnect");
        storm.attempts.push(ms(log.attempts[1]));
        let hint = log.hints[0] as f64;
        // The client waits its hint: what spreads the herd is the server's
        // jitter, however slowly a loaded machine runs the clients.
        assert!(
            ms(log.attempts[1]) >= hint - 5.0,
            "client {i} came back early"
        );
        storm.hints.push(hint);
        storm.resumed.push(ms(log.connects[1]));
    }
    storm.attempts.sort_by(f64::total_cmp);
    storm.hints.sort_by(f64::total_cmp);
    storm.resumed.sort_by(f64::total_cmp);
    storm
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The most reconnects that landed within any 10 ms.
fn peak(sorted: &[f64]) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] > 10.0 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_cut_at_once_resume_with_nothing_lost_and_jitter_spreads_them() {
    let plain = storm(0.0).await;
    let jittered = storm(0.5).await;
    for (name, s) in [("no jitter", &plain), ("jitter 0.5", &jittered)] {
        println!(
            "{name}: {CLIENTS} clients, {} events exactly once; reconnect started p1 {:.0} p50 {:.0} p99 {:.0} ms \
             (spread p99-p1 {:.0} ms, peak {} per 10 ms); stream back p50 {:.0} p99 {:.0} max {:.0} ms",
            s.events,
            pct(&s.attempts, 0.01),
            pct(&s.attempts, 0.5),
            pct(&s.attempts, 0.99),
            pct(&s.attempts, 0.99) - pct(&s.attempts, 0.01),
            peak(&s.attempts),
            pct(&s.resumed, 0.5),
            pct(&s.resumed, 0.99),
            s.resumed[s.resumed.len() - 1],
        );
    }
    // Without jitter every client is told the same hint; with it, the
    // hints are spread uniformly over [0.5, 1.5] x the hint. That is the
    // product's part, and what is asserted exactly. When the clients come
    // back also depends on how fast this machine runs 2,000 of them, so
    // their arrival is only compared loosely (and printed).
    let r = RETRY_MS as f64;
    assert!(
        plain.hints.iter().all(|&h| h == r),
        "{:?}",
        &plain.hints[..5]
    );
    let hints = &jittered.hints;
    assert!(hints[0] >= 0.5 * r && hints[hints.len() - 1] <= 1.5 * r);
    assert!(
        pct(hints, 0.99) - pct(hints, 0.01) > 0.9 * r,
        "jittered hints spread {:.0}..{:.0}",
        pct(hints, 0.01),
        pct(hints, 0.99)
    );
    let below_median = hints.iter().filter(|&&h| h < r).count();
    assert!(
        (800..1200).contains(&below_median),
        "{below_median} of 2000 below the hint"
    );
    assert!(pct(&plain.attempts, 0.01) >= r - 5.0);
    let spread = |s: &Storm| pct(&s.attempts, 0.99) - pct(&s.attempts, 0.01);
    assert!(
        spread(&jittered) > spread(&plain),
        "jittered arrivals spread {:.0} ms, plain {:.0} ms",
        spread(&jittered),
        spread(&plain)
    );
}
