//! Two `ssehub --redis` nodes on one `redis-server` are one Mercure hub:
//! an update published on one reaches subscribers of the other, a
//! subscriber resumes on one by an id published on the other, and an id
//! used on one is refused on the other.

use std::collections::HashSet;

use crate::common::{
    KEY, assert_only_mercure_ids, events_through, ids, post, publish_one, publisher, subscribe,
};
use crate::support::process::Ssehub;
use crate::support::redis::Redis;
use crate::support::{Item, SseClient, SseEvent};

fn id(i: u32) -> String {
    format!("urn:redis:{i}")
}

#[tokio::test]
async fn two_nodes_on_one_redis_are_one_hub() {
    let redis = Redis::start(false);
    let url = redis.url();
    let args = ["--redis", &url, "--mercure-jwt-key", KEY];
    let a = Ssehub::start_in_memory("mercure-redis-a", &args).await;
    let b = Ssehub::start_in_memory("mercure-redis-b", &args).await;
    let topic = "https://example.com/books/1";
    let token = publisher();

    let mut on_b = subscribe(b.addr, &[topic], Some(&token), &[]).await;
    assert_eq!(on_b.status, 200);
    for i in 1..=6 {
        publish_one(a.addr, topic, &id(i), &i.to_string()).await;
        publish_one(
            a.addr,
            "https://example.com/other",
            &format!("urn:redis:other:{i}"),
            "other",
        )
        .await;
    }
    let got = events_through(&mut on_b, &id(6)).await;
    assert_eq!(ids(&got), (1..=6).map(id).collect::<Vec<_>>());

    // Resuming on B by an id published on A.
    let mut resumed = subscribe(b.addr, &[topic], Some(&token), &[("Last-Event-ID", &id(3))]).await;
    assert_eq!(resumed.status, 200);
    assert_eq!(resumed.header("last-event-id"), Some(id(3).as_str()));
    assert_eq!(
        ids(&events_through(&mut resumed, &id(6)).await),
        [id(4), id(5), id(6)]
    );

    // An id used on A is taken on B: nothing is dispatched.
    let (status, _, body) = post(
        b.addr,
        Some(&token),
        &[("topic", topic), ("id", &id(2)), ("data", "again")],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // And one used on B is taken on A.
    publish_one(b.addr, topic, &id(7), "7").await;
    let (status, _, body) = post(
        a.addr,
        Some(&token),
        &[("topic", topic), ("id", &id(7)), ("data", "again")],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    publish_one(a.addr, topic, &id(8), "8").await;
    let mut on_a = subscribe(a.addr, &[topic], Some(&token), &[("Last-Event-ID", &id(6))]).await;
    for c in [&mut on_b, &mut resumed, &mut on_a] {
        let got = events_through(c, &id(8)).await;
        assert_eq!(ids(&got), [id(7), id(8)]);
        assert_eq!(got[0].data, "7");
    }
    let mut published: HashSet<String> = (1..=8).map(id).collect();
    published.extend((1..=6).map(|i| format!("urn:redis:other:{i}")));
    for c in [&on_b, &resumed, &on_a] {
        assert_only_mercure_ids(&c.raw, &published);
    }
    a.stop().await;
    b.stop().await;
}

/// A node resuming by an id another node published a moment ago (its own
/// reader of Redis may not have it yet) sends exactly the updates after
/// it.
#[tokio::test]
async fn a_resume_by_an_id_just_published_on_the_other_node_is_exact() {
    let redis = Redis::start(false);
    let url = redis.url();
    let args = ["--redis", &url, "--mercure-jwt-key", KEY];
    let a = Ssehub::start_in_memory("mercure-redis-race-a", &args).await;
    let b = Ssehub::start_in_memory("mercure-redis-race-b", &args).await;
    let topic = "https://example.com/books/1";
    let token = publisher();
    for round in 0..10 {
        let (x, y, z) = (
            format!("urn:race:{round}:x"),
            format!("urn:race:{round}:y"),
            format!("urn:race:{round}:z"),
        );
        publish_one(a.addr, topic, &x, "x").await;
        publish_one(a.addr, topic, &y, "y").await;
        let mut c = subscribe(b.addr, &[topic], Some(&token), &[("Last-Event-ID", &x)]).await;
        assert_eq!(c.header("last-event-id"), Some(x.as_str()), "round {round}");
        publish_one(a.addr, topic, &z, "z").await;
        assert_eq!(
            ids(&events_through(&mut c, &z).await),
            [y, z.clone()],
            "round {round}"
        );
    }
    a.stop().await;
    b.stop().await;
}

/// Both nodes racing to publish one id: one update, one `409`.
#[tokio::test]
async fn two_nodes_racing_with_one_id_make_one_update() {
    let redis = Redis::start(false);
    let url = redis.url();
    let args = ["--redis", &url, "--mercure-jwt-key", KEY];
    let a = Ssehub::start_in_memory("mercure-redis-dup-a", &args).await;
    let b = Ssehub::start_in_memory("mercure-redis-dup-b", &args).await;
    let topic = "https://example.com/books/1";
    let token = publisher();
    let mut sub = subscribe(b.addr, &[topic], Some(&token), &[]).await;
    for round in 0..10 {
        let id = format!("urn:dup:{round}");
        let fields_a = [("topic", topic), ("id", id.as_str()), ("data", "a")];
        let fields_b = [("topic", topic), ("id", id.as_str()), ("data", "b")];
        let (ra, rb) = tokio::join!(
            post(a.addr, Some(&token), &fields_a),
            post(b.addr, Some(&token), &fields_b)
        );
        let mut statuses = [ra.0, rb.0];
        statuses.sort();
        assert_eq!(statuses, [200, 409], "round {round}: {ra:?} {rb:?}");
        let end = format!("urn:dup:end:{round}");
        publish_one(a.addr, topic, &end, "end").await;
        let got = events_through(&mut sub, &end).await;
        assert_eq!(ids(&got), [id, end.clone()], "round {round}");
        let winner = if ra.0 == 200 { "a" } else { "b" };
        assert_eq!(got[0].data, winner, "round {round}");
    }
    a.stop().await;
    b.stop().await;
}

/// The events `c` gets until the one with id `last`, or until the stream
/// ends: with whether `last` came.
async fn until_or_end(c: &mut SseClient, last: &str) -> (Vec<SseEvent>, bool) {
    let mut got = Vec::new();
    while let Some(item) = c.next_item().await {
        if let Item::Event(e) = item {
            let done = e.last_event_id == last;
            got.push(e);
            if done {
                return (got, true);
            }
        }
    }
    (got, false)
}

/// Redis keeps more updates than a node's ring (`--buffer 4`). A
/// subscriber resuming after an id that Redis still has but the ring no
/// longer does must get somewhere: either exactly the updates after it
/// (`Last-Event-ID` answered with that id), or, as for an id history
/// dropped, the oldest retained on (`earliest`). A stream that ends with
/// no update at all is a trap: `EventSource` reconnects with the same id
/// and gets the same empty answer, forever.
#[tokio::test]
async fn a_resume_beyond_the_ring_gets_somewhere() {
    let redis = Redis::start(false);
    let url = redis.url();
    let args = ["--redis", &url, "--mercure-jwt-key", KEY, "--buffer", "4"];
    let a = Ssehub::start_in_memory("mercure-redis-ring-a", &args).await;
    let b = Ssehub::start_in_memory("mercure-redis-ring-b", &args).await;
    let topic = "https://example.com/books/1";
    let token = publisher();
    for i in 1..=10 {
        publish_one(a.addr, topic, &id(i), &i.to_string()).await;
    }
    let all: Vec<String> = (1..=10).map(id).collect();
    for (name, node) in [("a", &a), ("b", &b)] {
        // `earliest`: a suffix of the history, at least the ring.
        let mut earliest = subscribe(
            node.addr,
            &[topic],
            Some(&token),
            &[("Last-Event-ID", "earliest")],
        )
        .await;
        let (got, reached) = until_or_end(&mut earliest, &id(10)).await;
        assert!(
            reached,
            "earliest on {name}: the stream ended after {got:?}"
        );
        let got = ids(&got);
        assert!(
            got.len() >= 4 && all.ends_with(&got),
            "earliest on {name}: {got:?}"
        );

        // After an id only Redis has.
        let mut resumed = subscribe(
            node.addr,
            &[topic],
            Some(&token),
            &[("Last-Event-ID", &id(2))],
        )
        .await;
        assert_eq!(resumed.status, 200);
        let header = resumed.header("last-event-id").map(str::to_owned);
        let (got, reached) = until_or_end(&mut resumed, &id(10)).await;
        assert!(
            reached,
            "node {name}, Last-Event-ID {}: answered with Last-Event-ID {header:?}, then the \
             stream ended after {} updates ({:?}) without reaching {}; raw:\n{}",
            id(2),
            got.len(),
            ids(&got),
            id(10),
            String::from_utf8_lossy(&resumed.raw)
        );
        let got = ids(&got);
        match header.as_deref() {
            Some("earliest") => assert!(all.ends_with(&got), "{name}: {got:?}"),
            Some(h) if h == id(2) => assert_eq!(got, all[2..], "{name}"),
            other => panic!("{name}: Last-Event-ID {other:?}"),
        }
    }
    a.stop().await;
    b.stop().await;
}
