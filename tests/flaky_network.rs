//! Real clients on a really broken connection: every client gets every
//! event exactly once and in order while a chaos proxy cuts it again and
//! again (mid-event, by reset or clean close, or after a stall).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use ssehub::Hub;
use support::TestServer;
use support::chaos::{Chaos, ChaosProxy};
use support::flaky::{check_exactly_once, publish_until};
use support::resume_client::ResumingClient;

const MIN_CUTS: u64 = 50;

fn fast_retry_hub() -> Hub {
    Hub::builder()
        .buffer(4096)
        .retry(Some(Duration::from_millis(120)))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_through_chaos_gets_every_event_once() {
    let server = TestServer::start(fast_retry_hub()).await;
    let proxy = ChaosProxy::start(server.addr, Chaos::flaky(0xC0FFEE)).await;
    let client = ResumingClient::spawn(proxy.addr, "/events/chaos".into(), "end");

    let stats = proxy.stats.clone();
    let log = client.log.clone();
    let end = publish_until(&server.hub, "chaos", Duration::from_millis(3), || {
        stats.cuts() >= MIN_CUTS && !log.lock().unwrap().events.is_empty()
    })
    .await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while !client.is_done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the client reaches the end");

    let log = client.log.lock().unwrap();
    let received: Vec<_> = log
        .events
        .iter()
        .map(|e| (e.last_event_id.clone(), e.data.clone()))
        .collect();
    let n = check_exactly_once("rust client", &received, end).unwrap();
    assert!(log.resyncs.is_empty(), "{:?}", log.resyncs);
    let s = &proxy.stats;
    println!(
        "rust client: {n} events, {} connections, {} cuts ({} resets, {} closes, {} stalls)",
        s.connections.load(Ordering::Relaxed),
        s.cuts(),
        s.resets.load(Ordering::Relaxed),
        s.closes.load(Ordering::Relaxed),
        s.stalls.load(Ordering::Relaxed)
    );
    assert!(s.cuts() >= MIN_CUTS);
}
