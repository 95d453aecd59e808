//! Several ssehub nodes sharing topics, ids and history through a real
//! `redis-server` (started by each test on a free loopback port).

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ssehub::store::RedisStore;
use ssehub::{Event, EventId, Hub, Subscribe};
use support::chaos::{Chaos, ChaosProxy};
use support::flaky::check_exactly_once;
use support::redis::{HoldingProxy, Redis};
use support::resume_client::ResumingClient;
use support::{Item, SseClient, TestServer, events, request, seq};

async fn node(redis: &Redis) -> TestServer {
    node_with(redis, Hub::builder()).await
}

async fn node_with(redis: &Redis, builder: ssehub::hub::HubBuilder) -> TestServer {
    node_at(&redis.url(), builder).await
}

async fn node_at(url: &str, builder: ssehub::hub::HubBuilder) -> TestServer {
    let store = RedisStore::connect(url).await.expect("redis");
    let hub = builder
        .retry(Some(Duration::from_millis(100)))
        .keep_alive(Some(Duration::from_millis(500)))
        .storage(store)
        .build();
    TestServer::start(hub).await
}

/// Waits until `cond` holds, for at most 10 s.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn id_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_on_a_received_on_b_in_order_with_the_same_ids() {
    let redis = Redis::start(false);
    let a = node(&redis).await;
    let b = node(&redis).await;

    let mut sub = b.subscribe("/events/shared").await;
    assert!(matches!(sub.next_item().await, Some(Item::Retry(50..=150))));
    // The checkpoint: an id of the shared history, before any event.
    let checkpoint = loop {
        if let Some(Item::IdOnly(id)) = sub.next_item().await {
            break id;
        }
    };
    assert!(checkpoint.ends_with("-0"), "{checkpoint}");
    let epoch = checkpoint.trim_end_matches("-0").to_owned();

    let mut ids = Vec::new();
    for i in 1..=100 {
        let (status, body) = a.post("/events/shared", &format!("event {i}")).await;
        assert_eq!(status, 201, "{body}");
        ids.push(id_of(&body));
    }
    for (i, id) in ids.iter().enumerate() {
        let ev = sub.next_event().await;
        assert_eq!(&ev.last_event_id, id);
        assert_eq!(ev.data, format!("event {}", i + 1));
        assert_eq!(ev.last_event_id, format!("{epoch}-{}", i + 1));
    }
    // Both nodes publish into one sequence.
    let (_, body) = b.post("/events/shared", "from b").await;
    assert_eq!(id_of(&body), format!("{epoch}-101"));
    assert_eq!(sub.next_event().await.data, "from b");

    // A batch from a node keeps its order and consecutive ids everywhere.
    let (status, body) = request(
        a.addr,
        "POST",
        "/events/shared",
        &[("Content-Type", "application/json")],
        br#"[{"data":"x"},{"data":"y","event":"t"}]"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let x = sub.next_event().await;
    let y = sub.next_event().await;
    assert_eq!((seq(&x.last_event_id), seq(&y.last_event_id)), (102, 103));
    assert_eq!((x.data.as_str(), y.event_type.as_str()), ("x", "t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_on_one_node_resumes_on_the_other_under_continuous_publishing() {
    let redis = Redis::start(false);
    let a = node(&redis).await;
    let b = node(&redis).await;
    // Every connection is cut; each new one lands on the other node.
    let proxy = Arc::new(ChaosProxy::start(a.addr, Chaos::flaky(5)).await);
    let flip = tokio::spawn({
        let (proxy, a, b) = (proxy.clone(), a.addr, b.addr);
        async move {
            let mut on_a = true;
            loop {
                tokio::time::sleep(Duration::from_millis(150)).await;
                on_a = !on_a;
                proxy.set_upstream(if on_a { a } else { b });
            }
        }
    });
    let client = ResumingClient::spawn(proxy.addr, "/events/roam".into(), "end");

    // Publish alternately on both nodes until the client was cut 25 times.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let (addr_a, addr_b) = (a.addr, b.addr);
    let mut n = 0u64;
    loop {
        n += 1;
        let addr = if n.is_multiple_of(2) { addr_a } else { addr_b };
        let data = if proxy.stats.cuts() >= 25 && !client.log.lock().unwrap().events.is_empty() {
            "end".to_owned()
        } else {
            n.to_string()
        };
        let (status, body) = request(addr, "POST", "/events/roam", &[], data.as_bytes()).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(seq(&id_of(&body)), n, "one sequence across nodes");
        published.store(n, Ordering::Relaxed);
        if data == "end" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    stop.store(true, Ordering::Relaxed);
    until("the client reaches the end", || client.is_done()).await;
    flip.abort();

    let log = client.log.lock().unwrap();
    let received: Vec<_> = log
        .events
        .iter()
        .map(|e| (e.last_event_id.clone(), e.data.clone()))
        .collect();
    let got = check_exactly_once("roaming client", &received, n).unwrap();
    assert!(log.resyncs.is_empty(), "{:?}", log.resyncs);
    println!(
        "roaming client: {got} events exactly once, {} cuts, two nodes",
        proxy.stats.cuts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_with_persistence_loses_nothing() {
    let mut redis = Redis::start(true);
    let a = node(&redis).await;
    let client = ResumingClient::spawn(a.addr, "/events/durable".into(), "end");
    until("connected", || {
        !client.log.lock().unwrap().connects.is_empty()
    })
    .await;
    for i in 1..=20 {
        assert_eq!(a.post("/events/durable", &i.to_string()).await.0, 201);
    }
    until("20 events", || {
        client.log.lock().unwrap().events.len() == 20
    })
    .await;

    redis.kill();
    // Publishing fails clearly; the stream stays open with its keep-alives.
    let (status, body) = a.post("/events/durable", "lost?").await;
    assert_eq!((status, body.as_str()), (503, "storage unavailable\n"));
    let mut live = a.subscribe("/events/other").await;
    assert!(matches!(
        live.next_item().await,
        Some(Item::Retry(50..=150))
    ));
    let item = live.next_item().await;
    assert!(
        matches!(item, Some(Item::Comment(_))),
        "keep-alive while redis is down: {item:?} {:?}",
        String::from_utf8_lossy(&live.raw)
    );
    redis.restart();

    let mut published = 20;
    for _ in 0..200 {
        // The connection manager reconnects with backoff.
        let (status, _) = a
            .post("/events/durable", &(published + 1).to_string())
            .await;
        if status == 201 {
            published += 1;
            if published == 30 {
                break;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(published, 30, "publishing works again");
    assert_eq!(a.post("/events/durable", "end").await.0, 201);
    until("the client reaches the end", || client.is_done()).await;
    let log = client.log.lock().unwrap();
    let received: Vec<_> = log
        .events
        .iter()
        .map(|e| (e.last_event_id.clone(), e.data.clone()))
        .collect();
    check_exactly_once("durable", &received, 31).unwrap();
    assert!(log.resyncs.is_empty(), "the history survived: no resync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_without_persistence_is_a_resync_never_a_duplicate() {
    let mut redis = Redis::start(false);
    let a = node(&redis).await;
    let client = ResumingClient::spawn(a.addr, "/events/volatile".into(), "end");
    until("connected", || {
        !client.log.lock().unwrap().connects.is_empty()
    })
    .await;
    let mut first_ids = Vec::new();
    for i in 1..=10 {
        let (status, body) = a.post("/events/volatile", &format!("old {i}")).await;
        assert_eq!(status, 201);
        first_ids.push(id_of(&body));
    }
    until("10 events", || {
        client.log.lock().unwrap().events.len() == 10
    })
    .await;

    redis.kill();
    redis.restart(); // empty: the history is gone
    let mut new_ids = Vec::new();
    for _ in 0..200 {
        let (status, body) = a.post("/events/volatile", "new").await;
        if status == 201 {
            new_ids.push(id_of(&body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(new_ids.len(), 1, "publishing works again");
    let old_epoch = first_ids[0].rsplit_once('-').unwrap().0;
    let new_epoch = new_ids[0].rsplit_once('-').unwrap().0;
    assert_ne!(old_epoch, new_epoch, "a new history gets a new epoch");
    assert_eq!(a.post("/events/volatile", "end").await.0, 201);

    until("the client reaches the end", || client.is_done()).await;
    let log = client.log.lock().unwrap();
    assert_eq!(log.resyncs.len(), 1, "{:?}", log.resyncs);
    let j: serde_json::Value = serde_json::from_str(&log.resyncs[0].data).unwrap();
    assert_eq!(j["reason"], "epoch");
    let datas: Vec<_> = log.events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(
        &datas[..10],
        (1..=10)
            .map(|i| format!("old {i}"))
            .collect::<Vec<_>>()
            .as_slice()
    );
    assert_eq!(&datas[10..], ["new", "end"], "each event once");
    assert!(log.events[10].last_event_id.starts_with(new_epoch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_the_history_redis_kept() {
    let redis = Redis::start(false);
    let a = node(&redis).await;
    let b = node(&redis).await;
    for i in 1..=30 {
        assert_eq!(a.post("/events/kept", &i.to_string()).await.0, 201);
    }
    a.stop().await;
    // Published while A was down, on B.
    for i in 31..=40 {
        assert_eq!(b.post("/events/kept", &i.to_string()).await.0, 201);
    }
    // A new process (a new hub, new epoch of its own) on the same Redis.
    let a2 = node(&redis).await;
    let (_, body) = b.post("/events/kept", "41").await;
    let epoch = id_of(&body).rsplit_once('-').unwrap().0.to_owned();
    let mut c = SseClient::get(
        a2.addr,
        "/events/kept?limit=16",
        &[("Last-Event-ID", &format!("{epoch}-25"))],
    )
    .await;
    let evs = events(&c.until_end().await);
    let seqs: Vec<_> = evs.iter().map(|e| seq(&e.last_event_id)).collect();
    assert_eq!(seqs, (26..=41).collect::<Vec<_>>(), "{evs:?}");
    assert!(evs.iter().all(|e| e.event_type == "message"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_topics_across_two_nodes() {
    let redis = Redis::start(false);
    let a = node(&redis).await;
    let b = node(&redis).await;
    let mut subs = Vec::new();
    for t in 0..60 {
        let mut c = b.subscribe(&format!("/events/many.{t}")).await;
        loop {
            if let Some(Item::IdOnly(_)) = c.next_item().await {
                break;
            }
        }
        subs.push(c);
    }
    for round in 0..3 {
        for t in 0..60 {
            assert_eq!(
                a.post(&format!("/events/many.{t}"), &format!("{t}/{round}"))
                    .await
                    .0,
                201
            );
        }
    }
    for (t, c) in subs.iter_mut().enumerate() {
        for round in 0..3 {
            let ev = c.next_event().await;
            assert_eq!(ev.data, format!("{t}/{round}"));
            assert_eq!(seq(&ev.last_event_id), round + 1);
        }
    }
}

/// Regression: the reader checked that a history still existed only when
/// `XREAD` had been idle for a whole block, so while any followed topic was
/// busy, a topic whose keys were deleted restarted at 1 unseen: its events
/// were skipped and later ones got ids of the old epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_history_is_noticed_while_other_topics_are_busy() {
    let redis = Redis::start(false);
    let a = node(&redis).await;
    let busy = tokio::spawn({
        let addr = a.addr;
        async move {
            loop {
                let _ = request(addr, "POST", "/events/busy", &[], b"x").await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let mut busy_sub = a.subscribe("/events/busy").await;
    busy_sub.next_event().await;
    let client = ResumingClient::spawn(a.addr, "/events/wiped".into(), "end");
    until("connected", || {
        !client.log.lock().unwrap().connects.is_empty()
    })
    .await;
    for i in 1..=5 {
        assert_eq!(a.post("/events/wiped", &format!("old {i}")).await.0, 201);
    }
    until("5 events", || client.log.lock().unwrap().events.len() == 5).await;

    // Someone deletes the topic's keys.
    let mut conn = ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: i64 = ::redis::cmd("DEL")
        .arg("ssehub:{wiped}:epoch")
        .arg("ssehub:{wiped}:seq")
        .arg("ssehub:{wiped}:stream")
        .query_async(&mut conn)
        .await
        .unwrap();
    for i in 1..=3 {
        assert_eq!(a.post("/events/wiped", &format!("new {i}")).await.0, 201);
    }
    assert_eq!(a.post("/events/wiped", "end").await.0, 201);
    until("the client reaches the end", || client.is_done()).await;
    busy.abort();
    let log = client.log.lock().unwrap();
    assert_eq!(log.resyncs.len(), 1, "{:?}", log.resyncs);
    let datas: Vec<_> = log.events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(
        datas,
        [
            "old 1", "old 2", "old 3", "old 4", "old 5", "new 1", "new 2", "new 3", "end"
        ]
    );
    let old_epoch = log.events[0].last_event_id.rsplit_once('-').unwrap().0;
    let new_epoch = log.events[5].last_event_id.rsplit_once('-').unwrap().0;
    assert_ne!(old_epoch, new_epoch);
    assert_eq!(seq(&log.events[5].last_event_id), 1);
}

/// Regression: a topic retired to make room and then used again was never
/// followed (the reader still had an entry for the old one), so its new
/// subscribers waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_used_again_after_retirement_is_followed() {
    let redis = Redis::start(false);
    let a = node_with(&redis, Hub::builder().max_topics(1)).await;
    let mut first = a.subscribe("/events/one").await;
    first.next_item().await;
    drop(first.into_stream());
    until("unsubscribed", || a.hub.stats().subscribers == 0).await;
    // Retires `one` to make room for `two`.
    let mut two = a.subscribe("/events/two").await;
    two.next_item().await;
    drop(two.into_stream());
    until("unsubscribed", || a.hub.stats().subscribers == 0).await;
    let mut again = a.subscribe("/events/one").await;
    assert_eq!(a.post("/events/one", "hello again").await.0, 201);
    assert_eq!(again.next_event().await.data, "hello again");
    // `one`, then `two` to make room for `one` again.
    assert_eq!(a.hub.stats().topics_retired, 2);
}

/// Regression: events read back from Redis did not count against the hub's
/// bound on retained bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_holds_for_events_read_from_redis() {
    const BOUND: usize = 64 << 10;
    let redis = Redis::start(false);
    let a = node(&redis).await;
    let b = node_with(&redis, Hub::builder().max_total_bytes(BOUND)).await;
    let mut subs = Vec::new();
    for t in 0..20 {
        let mut c = b.subscribe(&format!("/events/big.{t}")).await;
        c.next_item().await;
        subs.push(c);
    }
    let payload = "p".repeat(1000);
    for round in 0..10 {
        for t in 0..20 {
            assert_eq!(
                a.post(&format!("/events/big.{t}"), &payload).await.0,
                201,
                "round {round}"
            );
        }
    }
    for c in &mut subs {
        for _ in 0..10 {
            let ev = c.next_event().await;
            if ev.event_type == "resync" {
                continue;
            }
        }
    }
    let retained = b.hub.stats().retained_bytes;
    assert!(
        retained <= BOUND + 20 * 1100,
        "node B retains {retained} bytes"
    );
}

/// A plain client of the test's Redis, to look at and change what ssehub
/// keeps there.
async fn redis_conn(redis: &Redis) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn ttl(conn: &mut ::redis::aio::MultiplexedConnection, key: &str) -> i64 {
    ::redis::cmd("TTL")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap()
}

/// The resync JSON of a stream item, or a panic with what came instead.
fn resync_of(item: Option<Item>) -> (String, String) {
    match item {
        Some(Item::Event(e)) if e.event_type == "resync" => (e.data, e.last_event_id),
        other => panic!("expected a resync event, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_trimmed_to_about_the_buffer_and_older_ids_get_evicted() {
    const BUFFER: u64 = 10;
    const EVENTS: u64 = 500;
    let redis = Redis::start(false);
    let a = node_with(&redis, Hub::builder().buffer(BUFFER as usize)).await;
    // In batches (one script run each, every event its own XADD): fewer
    // round trips for a busy machine to delay.
    let mut ids = Vec::new();
    for batch in 0..EVENTS / 50 {
        let events = (1..=50).map(|i| Event::new(format!("e{}", batch * 50 + i)));
        ids.extend(a.hub.publish_batch("trim", events).await.unwrap());
    }
    assert_eq!(ids.last().unwrap().seq(), EVENTS);
    let epoch = ids[0].epoch();

    // `MAXLEN ~` trims whole nodes of (by default) 100 entries, keeping at
    // least BUFFER: the newest, consecutive, each with its epoch.
    let mut conn = redis_conn(&redis).await;
    let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
        .arg("ssehub:{trim}:stream")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let kept = entries.len() as u64;
    assert!((BUFFER..BUFFER + 100).contains(&kept), "Redis kept {kept}");
    let first = EVENTS - kept + 1;
    for (i, (id, fields)) in entries.iter().enumerate() {
        let s = first + i as u64;
        assert_eq!(id, &format!("0-{s}"));
        let want = [("e", epoch.as_str()), ("t", ""), ("d", &*format!("e{s}"))];
        let want: Vec<_> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(fields, &want);
    }

    // A node that loads the topic now keeps the newest BUFFER; a client
    // from before them is told how many it missed, then gets them all.
    let b = node_with(&redis, Hub::builder().buffer(BUFFER as usize)).await;
    let mut c = SseClient::get(
        b.addr,
        &format!("/events/trim?limit={BUFFER}"),
        &[("Last-Event-ID", &format!("{epoch}-0"))],
    )
    .await;
    assert!(matches!(c.next_item().await, Some(Item::Retry(_))));
    let oldest = EVENTS - BUFFER + 1;
    assert!(oldest >= first, "the node holds only what Redis kept");
    assert_eq!(
        resync_of(c.next_item().await),
        (
            format!(
                r#"{{"reason":"evicted","requested":"{epoch}-0","oldest":"{epoch}-{oldest}","latest":"{epoch}-{EVENTS}","missed":{}}}"#,
                oldest - 1
            ),
            format!("{epoch}-{}", oldest - 1)
        )
    );
    let got: Vec<_> = events(&c.until_end().await)
        .into_iter()
        .map(|e| (e.last_event_id, e.data))
        .collect();
    let want: Vec<_> = (oldest..=EVENTS)
        .map(|s| (format!("{epoch}-{s}"), format!("e{s}")))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_a_topic_only_subscribed_to_expire_until_it_is_published_to() {
    const DAY: i64 = 86_400;
    let redis = Redis::start(false);
    let a = node(&redis).await;
    let mut sub = a.subscribe("/events/quiet").await;
    assert!(matches!(sub.next_item().await, Some(Item::Retry(_))));
    let Some(Item::IdOnly(checkpoint)) = sub.next_item().await else {
        panic!("a checkpoint")
    };
    let epoch = checkpoint.strip_suffix("-0").unwrap();

    let mut conn = redis_conn(&redis).await;
    let (e, s): (String, u64) = ::redis::cmd("MGET")
        .arg("ssehub:{quiet}:epoch")
        .arg("ssehub:{quiet}:seq")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((e.as_str(), s), (epoch, 0));
    for key in ["ssehub:{quiet}:epoch", "ssehub:{quiet}:seq"] {
        let t = ttl(&mut conn, key).await;
        assert!((DAY - 60..=DAY).contains(&t), "{key} expires in {t} s");
    }
    assert_eq!(
        ttl(&mut conn, "ssehub:{quiet}:stream").await,
        -2,
        "no stream"
    );

    let (status, body) = a.post("/events/quiet", "at last").await;
    assert_eq!((status, id_of(&body)), (201, format!("{epoch}-1")));
    for key in [
        "ssehub:{quiet}:epoch",
        "ssehub:{quiet}:seq",
        "ssehub:{quiet}:stream",
    ] {
        assert_eq!(ttl(&mut conn, key).await, -1, "{key} is permanent");
    }
    assert_eq!(sub.next_event().await.data, "at last");
}

/// A failover to a replica that was behind: Redis's history of a topic
/// goes back in time within its epoch. The ids after it must not be ids
/// already sent with other data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_goes_back_in_time_gets_a_new_epoch() {
    let redis = Redis::start(false);
    let a = node(&redis).await;
    let mut sub = a.subscribe("/events/rb").await;
    sub.next_item().await;
    for i in 1..=10 {
        assert_eq!(a.post("/events/rb", &format!("old {i}")).await.0, 201);
    }
    let mut old = Vec::new();
    for _ in 1..=10 {
        old.push(sub.next_event().await);
    }
    let e1 = old[0].last_event_id.rsplit_once('-').unwrap().0.to_owned();

    // What the replica holds: events 1-6, sequence 6.
    let mut conn = redis_conn(&redis).await;
    let _: () = ::redis::Script::new(
        r#"
        local kept = redis.call('XRANGE', KEYS[1], '-', '0-6')
        redis.call('DEL', KEYS[1])
        for _, entry in ipairs(kept) do
          redis.call('XADD', KEYS[1], entry[1], unpack(entry[2]))
        end
        redis.call('SET', KEYS[2], 6)
        "#,
    )
    .key("ssehub:{rb}:stream")
    .key("ssehub:{rb}:seq")
    .invoke_async(&mut conn)
    .await
    .unwrap();

    // Within a second or two the node notices and starts a new epoch.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let item = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match sub.next_item_within(left).await {
            // Keep-alives: a comment, then an empty dispatch.
            Some(Item::Comment(_) | Item::IdOnly(_)) => continue,
            other => break other,
        }
    };
    let (json, id) = resync_of(item);
    let e2: String = ::redis::cmd("GET")
        .arg("ssehub:{rb}:epoch")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_ne!(e2, e1);
    assert_eq!(
        (json, id),
        (
            format!(
                r#"{{"reason":"epoch","requested":"{e1}-10","oldest":null,"latest":"{e2}-6"}}"#
            ),
            format!("{e2}-6")
        )
    );
    let (status, body) = a.post("/events/rb", "new 7").await;
    assert_eq!((status, id_of(&body)), (201, format!("{e2}-7")));
    let ev = sub.next_event().await;
    assert_eq!(
        (ev.data.as_str(), ev.last_event_id),
        ("new 7", format!("{e2}-7"))
    );

    // Clients holding old ids, even ones the replica has, are told.
    for last in [format!("{e1}-10"), format!("{e1}-6")] {
        let mut c = SseClient::get(a.addr, "/events/rb?limit=1", &[("Last-Event-ID", &last)]).await;
        c.next_item().await;
        let (json, _) = resync_of(c.next_item().await);
        assert!(json.starts_with(r#"{"reason":"epoch""#), "{json}");
        let ev = c.next_event().await;
        assert_eq!(
            (ev.data.as_str(), ev.last_event_id),
            ("new 7", format!("{e2}-7"))
        );
    }
}

/// Polls a future once.
async fn poll_once<F: std::future::Future>(
    mut f: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(f.as_mut().poll(cx))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_behind_waits_up_to_two_seconds_for_the_id_it_is_asked_for() {
    let redis = Redis::start(false);
    let proxy = HoldingProxy::start(&redis).await;
    let a = node(&redis).await;
    let b = node_at(&proxy.url(), Hub::builder().retry_jitter(0.0)).await;
    let patience = Duration::from_secs(2);
    // B follows the topic.
    b.hub
        .subscribe_ready("lag", Subscribe::new(), patience)
        .await
        .unwrap();
    assert!(b.hub.topic_info("lag").is_some());

    // B stops hearing from Redis while A publishes.
    proxy.hold(true);
    let mut ids: Vec<EventId> = Vec::new();
    for i in 1..=5 {
        ids.push(
            a.hub
                .publish("lag", Event::new(format!("e{i}")))
                .await
                .unwrap(),
        );
    }
    let e = ids[0].epoch();
    assert_eq!(
        b.hub.topic_info("lag").unwrap().latest.seq(),
        0,
        "B is behind"
    );
    let ready = b.hub.subscribe_ready(
        "lag",
        Subscribe::new().last_event_id(ids[2].to_string()),
        patience,
    );
    let mut ready = std::pin::pin!(ready);
    assert!(
        poll_once(ready.as_mut()).await.is_pending(),
        "B waits: it has not read {} yet",
        ids[2]
    );
    proxy.hold(false);
    let mut stream = tokio::time::timeout(support::WAIT, ready)
        .await
        .expect("B catches up")
        .unwrap();
    // Exactly what follows the client's id: no `future` resync.
    let mut text = String::new();
    let want = format!("retry: 100\ndata: e4\nid: {e}-4\n\ndata: e5\nid: {e}-5\n\n");
    while text.len() < want.len() {
        text.push_str(&next_text(&mut stream).await);
    }
    assert_eq!(text, want);
    a.hub.publish("lag", Event::new("e6")).await.unwrap();
    assert_eq!(
        next_text(&mut stream).await,
        format!("data: e6\nid: {e}-6\n\n")
    );

    // If B does not catch up within 2 s, the client is answered anyway.
    proxy.hold(true);
    let seventh = a.hub.publish("lag", Event::new("e7")).await.unwrap();
    let start = tokio::time::Instant::now();
    let mut c = SseClient::get(
        b.addr,
        "/events/lag",
        &[("Last-Event-ID", &seventh.to_string())],
    )
    .await;
    let waited = start.elapsed();
    assert!(
        (patience..patience + Duration::from_secs(3)).contains(&waited),
        "answered after {waited:?}"
    );
    assert_eq!(c.next_item().await, Some(Item::Retry(100)));
    let (json, _) = resync_of(c.next_item().await);
    assert!(json.starts_with(r#"{"reason":"future""#), "{json}");
    proxy.hold(false);
}

async fn next_text(stream: &mut ssehub::EventStream) -> String {
    use http_body_util::BodyExt;
    let frame = tokio::time::timeout(support::WAIT, stream.frame())
        .await
        .expect("a frame in time")
        .unwrap()
        .unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

/// A stream of several topics whose client is cut again and again, each
/// time resuming on the other node with its one id: every node knows every
/// topic's position (the same ids through Redis), so each topic goes on
/// exactly, in order, whichever node serves it and whoever published it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_several_topics_roams_between_nodes_exactly() {
    let redis = Redis::start(false);
    let nodes = [node(&redis).await, node(&redis).await];
    let topics: Vec<String> = ["north", "south", "east"].map(String::from).to_vec();
    let path = "/events?topic=north&topic=south&topic=east";
    const PER_TOPIC: u64 = 60;
    // From before the first event of every topic: the id of a client that
    // rendered them empty (HEAD tells it).
    let (status, headers, _) = support::request_full(nodes[1].addr, "HEAD", path, &[], b"").await;
    assert_eq!(status, 200);
    let mut last = support::header(&headers, "last-event-id")
        .unwrap()
        .to_owned();
    assert!(
        support::multi::topic_ids(&last)
            .iter()
            .all(|id| id.ends_with("-0")),
        "{last}"
    );
    let publisher = {
        let addrs = [nodes[0].addr, nodes[1].addr];
        tokio::spawn(async move {
            for n in 1..=PER_TOPIC {
                for (i, t) in ["north", "south", "east"].iter().enumerate() {
                    let data = if n == PER_TOPIC {
                        "end".to_owned()
                    } else {
                        n.to_string()
                    };
                    let at = addrs[(n as usize + i) % 2];
                    let (status, body) =
                        request(at, "POST", &format!("/events/{t}"), &[], data.as_bytes()).await;
                    assert_eq!(status, 201, "{body}");
                    assert_eq!(seq(&id_of(&body)), n);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut got = Vec::new();
    let mut ended = 0;
    let mut connections = 0usize;
    while ended < topics.len() {
        connections += 1;
        let at = nodes[connections % 2].addr;
        let mut c = SseClient::get(at, path, &[("Last-Event-ID", &last)]).await;
        assert_eq!(c.status, 200);
        for _ in 0..(5 + connections % 7) {
            match c.next_item().await {
                Some(Item::Event(ev)) => {
                    if ev.data == "end" {
                        ended += 1;
                    }
                    last = ev.last_event_id.clone();
                    got.push((ev.event_type, ev.last_event_id, ev.data));
                    if ended == topics.len() {
                        break;
                    }
                }
                Some(Item::IdOnly(id)) => last = id,
                Some(_) => {}
                None => panic!("the stream ended"),
            }
        }
    }
    publisher.await.unwrap();
    let per_topic = support::multi::split(&topics, &got);
    for (t, log) in topics.iter().zip(&per_topic) {
        assert_eq!(log.seen.len(), log.events.len(), "{t}: no resync");
        let received: Vec<_> = log
            .events
            .iter()
            .map(|(id, data)| (id.clone(), data.clone()))
            .collect();
        assert_eq!(seq(&received[0].0), 1, "{t}");
        check_exactly_once(t, &received, PER_TOPIC).unwrap();
    }
    assert!(connections > 10, "{connections}");
}

/// A stream of several topics on a node that cannot load them yet (it
/// does not hear from Redis) is answered after the patience with only the
/// retry hint; it starts once every topic is loaded, from the client's id,
/// with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_several_topics_starts_once_every_topic_is_loaded() {
    let redis = Redis::start(false);
    let proxy = HoldingProxy::start(&redis).await;
    let a = node(&redis).await;
    // Without keep-alives: nothing but the topics' loading wakes the stream.
    let store = RedisStore::connect(&proxy.url()).await.expect("redis");
    let hub = Hub::builder()
        .retry(Some(Duration::from_millis(100)))
        .retry_jitter(0.0)
        .keep_alive(None)
        .storage(store)
        .build();
    let b = TestServer::start(hub).await;
    let path = "/events?topic=p&topic=q";
    let (status, headers, _) = support::request_full(a.addr, "HEAD", path, &[], b"").await;
    assert_eq!(status, 200);
    let from = support::header(&headers, "last-event-id")
        .unwrap()
        .to_owned();

    proxy.hold(true);
    let started = tokio::time::Instant::now();
    let mut c = SseClient::get(b.addr, path, &[("Last-Event-ID", &from)]).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "B waited for the topics"
    );
    assert_eq!(c.status, 200);
    assert_eq!(c.next_item().await, Some(Item::Retry(100)));
    for i in 1..=3 {
        a.hub
            .publish("q", Event::new(format!("q{i}")))
            .await
            .unwrap();
        a.hub
            .publish("p", Event::new(format!("p{i}")))
            .await
            .unwrap();
    }
    proxy.hold(false);
    let mut got = Vec::new();
    while got.len() < 6 {
        match c.next_item().await {
            Some(Item::Event(ev)) => {
                assert_ne!(ev.event_type, "resync", "{}", ev.data);
                got.push((ev.event_type, ev.data, ev.last_event_id));
            }
            Some(Item::Comment(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let topics = ["p".to_owned(), "q".to_owned()];
    let items: Vec<_> = got
        .iter()
        .map(|(t, d, id)| (t.clone(), id.clone(), d.clone()))
        .collect();
    let per_topic = support::multi::split(&topics, &items);
    for (t, log) in topics.iter().zip(&per_topic) {
        let data: Vec<_> = log.events.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(data, [1, 2, 3].map(|i| format!("{t}{i}")), "{t}");
    }
}
