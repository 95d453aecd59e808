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

/// Two nodes behind one chaos proxy that sends each new connection to one
/// node or the other (a load balancer), updates published on both in
/// turn: a subscriber reconnecting with the last Mercure id it got, now to
/// one node, now to the other, receives every update exactly once, in
/// order. The rings hold the whole run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_moving_between_nodes_through_chaos_gets_every_update_once() {
    use std::time::Duration;

    use crate::support::chaos::{Chaos, ChaosProxy};
    use crate::support::resume_client::ResumingClient;
    use crate::support::{STALL, until_progress};

    const MIN_CUTS: u64 = 20;
    let redis = Redis::start(false);
    let url = redis.url();
    let args = [
        "--redis",
        &url,
        "--mercure-jwt-key",
        KEY,
        "--retry",
        "100",
        "--retry-jitter",
        "0",
        "--buffer",
        "100000",
    ];
    let a = Ssehub::start_in_memory("mercure-redis-chaos-a", &args).await;
    let b = Ssehub::start_in_memory("mercure-redis-chaos-b", &args).await;
    let nodes = [a.addr, b.addr];
    let proxy = ChaosProxy::start(a.addr, Chaos::flaky(0xB0_0B1E5)).await;
    let t = crate::common::subscriber(&[]);
    let path = crate::common::path(&["https://example.com/lb/{n}"], &[("authorization", &t)]);
    let client = ResumingClient::spawn(proxy.addr, path, "end");
    let log = client.log.clone();
    let received = || log.lock().unwrap().events.len();
    let token = publisher();

    let mut tick = tokio::time::interval(Duration::from_millis(4));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut n, mut flips) = (0u64, 0u64);
    let end = loop {
        tick.tick().await;
        n += 1;
        assert!(
            n < 60_000,
            "{n} updates: {} cuts, {flips} flips, {} received",
            proxy.stats.cuts(),
            received()
        );
        let done = flips >= 6 && proxy.stats.cuts() >= MIN_CUTS && received() > 0;
        let data = if done {
            "end".to_owned()
        } else {
            n.to_string()
        };
        let on = nodes[(n % 2) as usize];
        let (status, _, body) = post(
            on,
            Some(&token),
            &[
                ("topic", "https://example.com/lb/1"),
                ("id", &format!("urn:lb:{n}")),
                ("data", &data),
            ],
        )
        .await;
        assert_eq!((status, body), (200, format!("urn:lb:{n}")));
        if done {
            break n;
        }
        if n.is_multiple_of(150) {
            flips += 1;
            proxy.set_upstream(nodes[(flips % 2) as usize]);
        }
    };
    until_progress("the client reaches the end", STALL, || {
        (client.is_done(), received())
    })
    .await;
    {
        let log = client.log.lock().unwrap();
        assert!(log.resyncs.is_empty(), "{:?}", log.resyncs);
        let got: Vec<String> = log
            .events
            .iter()
            .map(|e| format!("{} {}", e.last_event_id, e.data))
            .collect();
        let first: u64 = log.events[0]
            .last_event_id
            .strip_prefix("urn:lb:")
            .unwrap()
            .parse()
            .unwrap();
        let want: Vec<String> = (first..=end)
            .map(|i| {
                let data = if i == end {
                    "end".to_owned()
                } else {
                    i.to_string()
                };
                format!("urn:lb:{i} {data}")
            })
            .collect();
        if got != want {
            let at = got.iter().zip(&want).position(|(x, y)| x != y);
            panic!(
                "{} received, {} wanted; first difference at {at:?}: {:?} / {:?}",
                got.len(),
                want.len(),
                at.map(|i| &got[i..(i + 3).min(got.len())]),
                at.map(|i| &want[i..(i + 3).min(want.len())]),
            );
        }
        println!(
            "{} updates from {first} to {end}, {} cuts, {flips} flips",
            got.len(),
            proxy.stats.cuts()
        );
    }
    a.stop().await;
    b.stop().await;
}
