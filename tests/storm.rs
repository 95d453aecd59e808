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
        storm.resumed.push(ms(log.connects[1]));
    }
    storm.attempts.sort_by(f64::total_cmp);
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
    // Without jitter everyone waits the same hint; with it, the returns
    // spread over about [0.5, 1.5] x the hint.
    let spread = |s: &Storm| pct(&s.attempts, 0.99) - pct(&s.attempts, 0.01);
    assert!(pct(&plain.attempts, 0.01) >= RETRY_MS as f64 - 5.0);
    assert!(
        spread(&jittered) > 0.8 * RETRY_MS as f64,
        "jittered spread {:.0}",
        spread(&jittered)
    );
    assert!(spread(&jittered) > 3.0 * spread(&plain));
    assert!(peak(&jittered.attempts) * 4 < peak(&plain.attempts));
}
