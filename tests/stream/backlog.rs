//! A first connect with backlog (`?rewind=N`), and the position read
//! (`HEAD` answers the topic's newest id), over real sockets.

use crate::support;

use ssehub::{Event, Hub};
use support::{Item, TestServer, events, header, request_full, seq};

async fn publish_n(hub: &Hub, topic: &str, n: u64) {
    for i in 1..=n {
        hub.publish(topic, Event::new(format!("e{i}")))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rewind_starts_a_first_connect_with_the_last_events_then_goes_live() {
    let server = TestServer::start(Hub::builder().retry_jitter(0.0).build()).await;
    let e = server.hub.epoch();
    publish_n(&server.hub, "t", 10).await;
    let mut c = server.subscribe("/events/t?rewind=3").await;
    assert_eq!(c.next_item().await, Some(Item::Retry(3000)));
    // The checkpoint says where the backlog starts: a client that drops
    // before it arrives resumes there.
    assert_eq!(c.next_item().await, Some(Item::IdOnly(format!("{e}-7"))));
    for i in 8..=10 {
        let ev = c.next_event().await;
        assert_eq!(
            (ev.last_event_id, ev.data),
            (format!("{e}-{i}"), format!("e{i}"))
        );
    }
    server.hub.publish("t", Event::new("live")).await.unwrap();
    let ev = c.next_event().await;
    assert_eq!((seq(&ev.last_event_id), ev.data.as_str()), (11, "live"));
    assert_eq!(server.hub.stats().replayed, 3);
}

#[tokio::test]
async fn rewind_gives_what_is_retained_and_a_resume_ignores_it() {
    let server = TestServer::start(Hub::builder().buffer(5).build()).await;
    let e = server.hub.epoch();
    publish_n(&server.hub, "t", 10).await;
    let mut c = server.subscribe("/events/t?rewind=100&limit=5").await;
    let evs = events(&c.until_end().await);
    let seqs: Vec<_> = evs.iter().map(|e| seq(&e.last_event_id)).collect();
    assert_eq!(
        seqs,
        [6, 7, 8, 9, 10],
        "no resync: nothing the client knew is lost"
    );
    let mut c = server
        .subscribe(&format!("/events/t?rewind=3&lastEventId={e}-9&limit=1"))
        .await;
    let evs = events(&c.until_end().await);
    assert_eq!(evs.len(), 1);
    assert_eq!(seq(&evs[0].last_event_id), 10);
    for bad in ["-1", "x", "", "1.5", "18446744073709551616"] {
        let (status, _, body) = request_full(
            server.addr,
            "GET",
            &format!("/events/t?rewind={bad}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (400, "invalid rewind: expected an integer from 0\n"),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn head_answers_the_position_a_snapshot_resumes_from() {
    let server = TestServer::start(Hub::new()).await;
    let e = server.hub.epoch();
    publish_n(&server.hub, "t", 10).await;
    let (status, headers, body) = request_full(
        server.addr,
        "HEAD",
        "/events/t",
        &[("Origin", "http://app.example")],
        b"",
    )
    .await;
    assert_eq!((status, body.as_str()), (200, ""));
    let at = header(&headers, "last-event-id").unwrap().to_owned();
    assert_eq!(at, format!("{e}-10"));
    assert_eq!(
        header(&headers, "access-control-expose-headers"),
        Some("Last-Event-ID")
    );
    // Published after the snapshot: the stream starts exactly there.
    server.hub.publish("t", Event::new("after")).await.unwrap();
    let mut c = server
        .subscribe(&format!("/events/t?lastEventId={at}&limit=1"))
        .await;
    let evs = events(&c.until_end().await);
    assert_eq!(evs.len(), 1);
    assert_eq!(
        (seq(&evs[0].last_event_id), evs[0].data.as_str()),
        (11, "after")
    );

    // A topic that does not exist: the HEAD does not create it, and its
    // position is sequence 0 of the epoch it is then created with, so the
    // first event comes right after it.
    let (_, headers, _) = request_full(server.addr, "HEAD", "/events/new", &[], b"").await;
    let at = header(&headers, "last-event-id").unwrap().to_owned();
    assert_eq!(at, format!("{e}-0"));
    assert!(server.hub.topic_info("new").is_none(), "not created");
    let id = server
        .hub
        .publish("new", Event::new("first"))
        .await
        .unwrap();
    assert_eq!(id.to_string(), format!("{e}-1"));
    assert_eq!(server.hub.stats().subscribers, 0, "no stream was opened");
}
