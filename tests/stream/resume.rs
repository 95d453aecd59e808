//! Resumption over real sockets: replay exactness, the checkpoint frame, every
//! `resync` case, `?limit`, and the seam between replay and live events.

use crate::support;

use std::time::Duration;

use ssehub::{Event, Hub};
use support::{Item, SseClient, TestServer, events, seq};

async fn publish_n(hub: &Hub, topic: &str, n: usize) {
    for i in 0..n {
        hub.publish(topic, Event::new(format!("e{}", i + 1)))
            .await
            .unwrap();
    }
}

fn json(data: &str) -> serde_json::Value {
    serde_json::from_str(data).expect("resync data is JSON")
}

#[tokio::test]
async fn replay_is_exactly_what_followed_the_id_then_live() {
    let server = TestServer::start(Hub::new()).await;
    let hub = &server.hub;
    publish_n(hub, "t", 100).await;
    let fortieth = format!("{}-40", hub.epoch());

    let mut c = SseClient::get(server.addr, "/events/t", &[("Last-Event-ID", &fortieth)]).await;
    assert_eq!(c.status, 200);
    for n in 41..=100 {
        let ev = c.next_event().await;
        assert_eq!(ev.data, format!("e{n}"));
        assert_eq!(ev.last_event_id, format!("{}-{n}", hub.epoch()));
        assert_eq!(ev.event_type, "message");
    }
    // Then live events, with no gap at the seam.
    for n in 101..=103 {
        hub.publish("t", Event::new(format!("e{n}"))).await.unwrap();
        let ev = c.next_event().await;
        assert_eq!((ev.data, seq(&ev.last_event_id)), (format!("e{n}"), n));
    }
    // Nothing was sent twice and no resync was needed.
    let raw = String::from_utf8(c.raw.clone()).unwrap();
    assert_eq!(raw.matches("data: ").count(), 63);
    assert!(!raw.contains("resync"));
}

#[tokio::test]
async fn query_parameter_resumes_and_the_header_wins() {
    let server = TestServer::start(Hub::new()).await;
    publish_n(&server.hub, "t", 100).await;
    let e = server.hub.epoch();

    let mut c = server
        .subscribe(&format!("/events/t?lastEventId={e}-97&limit=3"))
        .await;
    let got: Vec<_> = events(&c.until_end().await)
        .iter()
        .map(|e| seq(&e.last_event_id))
        .collect();
    assert_eq!(got, vec![98, 99, 100]);

    let mut c = SseClient::get(
        server.addr,
        &format!("/events/t?lastEventId={e}-50&limit=2"),
        &[("Last-Event-ID", &format!("{e}-95"))],
    )
    .await;
    let got: Vec<_> = events(&c.until_end().await)
        .iter()
        .map(|e| seq(&e.last_event_id))
        .collect();
    assert_eq!(got, vec![96, 97]);
}

#[tokio::test]
async fn fresh_subscription_starts_with_retry_and_checkpoint() {
    let server = TestServer::start(Hub::new()).await;
    let e = server.hub.epoch();

    // An empty topic: the checkpoint is the position before the first event,
    // so a client that drops before anything arrives still misses nothing.
    let mut c = server.subscribe("/events/empty").await;
    assert!(support::is_default_retry(c.next_item().await));
    assert_eq!(c.next_item().await, Some(Item::IdOnly(format!("{e}-0"))));

    publish_n(&server.hub, "t", 5).await;
    let mut c = server.subscribe("/events/t").await;
    assert!(support::is_default_retry(c.next_item().await));
    assert_eq!(c.next_item().await, Some(Item::IdOnly(format!("{e}-5"))));
    assert_eq!(c.parser.last_event_id, format!("{e}-5"));
    server.hub.publish("t", Event::new("six")).await.unwrap();
    let ev = c.next_event().await;
    assert_eq!((ev.data.as_str(), seq(&ev.last_event_id)), ("six", 6));
}

#[tokio::test]
async fn every_resync_case_is_signalled_then_everything_retained_follows() {
    let server = TestServer::start(Hub::builder().buffer(10).build()).await;
    publish_n(&server.hub, "t", 100).await; // retains 91..=100
    let e = server.hub.epoch();

    let long = "x".repeat(300);
    let cases = [
        (format!("{e}-3"), "evicted", Some(87)),
        ("zz9-50".to_owned(), "epoch", None),
        (format!("{e}-101"), "future", None),
        ("garbage".to_owned(), "malformed", None),
        (long.clone(), "malformed", None),
    ];
    for (requested, reason, missed) in cases {
        for via_query in [false, true] {
            let mut c = if via_query {
                let q: String = form_urlencoded::byte_serialize(requested.as_bytes()).collect();
                server
                    .subscribe(&format!("/events/t?lastEventId={q}&limit=10"))
                    .await
            } else {
                SseClient::get(
                    server.addr,
                    "/events/t?limit=10",
                    &[("Last-Event-ID", &requested)],
                )
                .await
            };
            let evs = events(&c.until_end().await);
            assert_eq!(evs.len(), 11, "{reason}: one resync and ten events");
            let r = &evs[0];
            assert_eq!(r.event_type, "resync");
            let j = json(&r.data);
            assert_eq!(j["reason"], reason);
            let echoed = j["requested"].as_str().unwrap();
            assert!(requested.starts_with(echoed) && echoed.len() <= 256);
            assert_eq!(j["oldest"], format!("{e}-91"));
            assert_eq!(j["latest"], format!("{e}-100"));
            assert_eq!(j["missed"].as_u64(), missed);
            // The resync carries the id the stream continues after.
            assert_eq!(r.last_event_id, format!("{e}-90"));
            let seqs: Vec<_> = evs[1..].iter().map(|e| seq(&e.last_event_id)).collect();
            assert_eq!(seqs, (91..=100).collect::<Vec<_>>());
        }
    }
    assert_eq!(server.hub.stats().resyncs, 10);
}

#[tokio::test]
async fn resume_at_the_oldest_retained_boundary_needs_no_resync() {
    let server = TestServer::start(Hub::builder().buffer(10).build()).await;
    publish_n(&server.hub, "t", 100).await;
    let e = server.hub.epoch();
    let mut c = SseClient::get(
        server.addr,
        "/events/t?limit=10",
        &[("Last-Event-ID", &format!("{e}-90"))],
    )
    .await;
    let evs = events(&c.until_end().await);
    assert!(evs.iter().all(|e| e.event_type == "message"));
    assert_eq!(seq(&evs[0].last_event_id), 91);
    assert_eq!(evs.len(), 10);
}

#[tokio::test]
async fn limit_ends_a_complete_response_and_keeps_the_connection() {
    let server = TestServer::start(Hub::new()).await;
    publish_n(&server.hub, "t", 100).await;
    let e = server.hub.epoch();

    let path = format!("/events/t?lastEventId={e}-0&limit=5");
    let mut c = server.subscribe(&path).await;
    let evs = events(&c.until_end().await);
    assert_eq!(evs.len(), 5);
    assert!(c.ended, "the chunked body was terminated");

    // The same connection serves the next request (what oha relies on).
    let stream = c.into_stream();
    let mut again = SseClient::get_on(stream, &path, &[]).await;
    assert_eq!(events(&again.until_end().await).len(), 5);

    // Live events count too.
    let mut live = server.subscribe("/events/t?limit=2").await;
    assert!(support::is_default_retry(live.next_item().await));
    assert!(matches!(live.next_item().await, Some(Item::IdOnly(_))));
    publish_n(&server.hub, "t", 3).await;
    let evs = events(&live.until_end().await);
    assert_eq!(
        evs.iter()
            .map(|e| seq(&e.last_event_id))
            .collect::<Vec<_>>(),
        vec![101, 102]
    );
}

/// Thousands of events are published while clients connect with a
/// `Last-Event-ID` at random recent points: each gets every event after its
/// id exactly once, in order, across the replay/live seam.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gap_no_duplicate_at_the_seam_under_concurrent_publishing() {
    const TOTAL: u64 = 20_000;
    const CLIENTS: usize = 40;
    let server = TestServer::start(Hub::builder().buffer(50_000).build()).await;
    let hub = server.hub.clone();
    let e = hub.epoch();

    let publisher = tokio::spawn({
        let hub = hub.clone();
        async move {
            for i in 1..=TOTAL {
                hub.publish("seam", Event::new(format!("{i}")))
                    .await
                    .unwrap();
                if i % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }
    });

    let mut clients = Vec::new();
    for k in 0..CLIENTS {
        // Wait until the publisher is somewhere in the middle.
        let latest = loop {
            let latest = hub.topic_info("seam").map_or(0, |i| i.latest.seq());
            if latest >= (k as u64 + 1) * TOTAL / (CLIENTS as u64 + 2) {
                break latest;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let from = latest.saturating_sub((k as u64 * 37) % 400);
        let addr = server.addr;
        clients.push(tokio::spawn(async move {
            let id = format!("{e}-{from}");
            let mut c = SseClient::get(addr, "/events/seam", &[("Last-Event-ID", &id)]).await;
            let mut expect = from + 1;
            while expect <= TOTAL {
                let ev = c.next_event().await;
                assert_eq!(ev.event_type, "message", "no resync expected");
                assert_eq!(seq(&ev.last_event_id), expect, "client from {from}");
                assert_eq!(ev.data, expect.to_string());
                expect += 1;
            }
            TOTAL - from
        }));
    }
    publisher.await.unwrap();
    let mut received = 0;
    for c in clients {
        received += c.await.unwrap();
    }
    assert!(received > 0);
}
