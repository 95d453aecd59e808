//! A subscriber that stops reading costs the server its cursor, not a
//! backlog: memory stays flat while 100k events go by, and when it reads
//! again it is told what it missed (`resync`, reason `lagged`).
//!
//! Alone in its own test binary because it measures the process's RSS.

mod support;

use ssehub::{Event, Hub};
use support::{Item, SseClient, TestServer, seq};
use tokio::net::TcpSocket;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_keeps_memory_flat_and_gets_resync() {
    const EVENTS: u64 = 100_000;
    let payload = "p".repeat(1000);
    let server = TestServer::start(Hub::new()).await; // ring: 1024 events
    let hub = server.hub.clone();

    // A client with a small receive buffer that reads the head, then stops.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 << 10).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let mut c = SseClient::get_on(stream, "/events/slow", &[]).await;
    assert!(support::is_default_retry(c.next_item().await));
    assert!(matches!(c.next_item().await, Some(Item::IdOnly(_))));

    // Warm up allocator pools so the measurement sees growth, not setup.
    for _ in 0..2000 {
        hub.publish("slow", Event::new(payload.clone()))
            .await
            .unwrap();
    }
    let before = rss_bytes();
    for _ in 2000..EVENTS {
        hub.publish("slow", Event::new(payload.clone()))
            .await
            .unwrap();
    }
    let grown = rss_bytes().saturating_sub(before);
    // 100 MB went by; buffering them for the client would show here.
    assert!(grown < 24 << 20, "RSS grew by {grown} bytes");
    let retained = hub.stats().retained_bytes;
    assert!(retained < 2 << 20, "ring holds {retained} bytes");

    // Reading again: events are contiguous except where a `lagged` resync
    // says exactly how many were skipped; nothing is lost silently. (While
    // the publisher runs flat out, the server side of this connection can
    // lag several times before the socket fills; each time is announced.)
    let mut expect = 1;
    let (mut delivered, mut missed, mut resyncs) = (0, 0, 0);
    while expect <= EVENTS {
        let ev = c.next_event().await;
        if ev.event_type == "resync" {
            resyncs += 1;
            let j: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
            assert_eq!(j["reason"], "lagged");
            let oldest = seq(j["oldest"].as_str().unwrap());
            assert!(oldest > expect);
            assert_eq!(j["missed"].as_u64(), Some(oldest - expect));
            assert_eq!(seq(j["requested"].as_str().unwrap()), expect - 1);
            assert_eq!(seq(&ev.last_event_id), oldest - 1);
            missed += oldest - expect;
            expect = oldest;
            continue;
        }
        assert_eq!(seq(&ev.last_event_id), expect);
        assert_eq!(ev.data.len(), 1000);
        delivered += 1;
        expect += 1;
    }
    assert!(resyncs >= 1);
    assert_eq!(delivered + missed, EVENTS);
    // The end of the ring was delivered in full after the last resync.
    assert!(delivered >= 1024);
}
