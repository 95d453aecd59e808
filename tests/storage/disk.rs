//! The disk store (`--data-dir`) in process: history survives the store
//! being closed and opened again, resumes older than the ring are served
//! from disk (100,000 events deep, in bounded frames, joining the live
//! stream exactly), the directory lock, retention by count, bytes, age and
//! for all topics together, with the exact `resync` each leaves.

use crate::support;

use std::time::Duration;

use http_body_util::BodyExt;
use ssehub::store::{DiskStore, Retention};
use ssehub::{Event, EventStream, Hub, Subscribe};

fn hub_on(dir: &std::path::Path, buffer: usize) -> Hub {
    let store = DiskStore::open(dir, Retention::default()).expect("open the store");
    Hub::builder()
        .buffer(buffer)
        .retry(None)
        .keep_alive(None)
        .storage(store)
        .build()
}

/// Every event of a stream that ends (it has a limit), as (id, data).
async fn drain(mut stream: EventStream) -> Vec<(String, String)> {
    let mut body = Vec::new();
    while let Some(frame) = tokio::time::timeout(support::WAIT, stream.frame())
        .await
        .expect("the stream goes on")
    {
        body.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let items = support::Parser::new().feed(&body);
    support::events(&items)
        .into_iter()
        .map(|e| {
            assert_ne!(e.event_type, "resync", "{}", e.data);
            (e.last_event_id, e.data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let epoch = {
        let hub = hub_on(dir.path(), 16);
        let mut epoch = None;
        for i in 1..=100 {
            let id = hub
                .publish("news", Event::new(format!("n{i}")))
                .await
                .unwrap();
            assert_eq!(id.seq(), i);
            epoch = Some(id.epoch());
        }
        epoch.unwrap()
    };
    let hub = hub_on(dir.path(), 16);
    let info = hub.topic_info("news").expect("the topic is back");
    assert_eq!(info.latest.to_string(), format!("{epoch}-100"));
    // Resume from before the restart, far older than the ring.
    let stream = hub
        .subscribe(
            "news",
            Subscribe::new()
                .last_event_id(format!("{epoch}-40"))
                .limit(70),
        )
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 101..=110 {
                hub.publish("news", Event::new(format!("n{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let got = drain(stream).await;
    publisher.await.unwrap();
    let want: Vec<_> = (41..=110)
        .map(|i| (format!("{epoch}-{i}"), format!("n{i}")))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = DiskStore::open(dir.path(), Retention::default()).unwrap();
    let err = DiskStore::open(dir.path(), Retention::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("in use"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_count_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), Retention::default().events(50)).unwrap();
    let hub = Hub::builder()
        .buffer(8)
        .retry(None)
        .keep_alive(None)
        .storage(store)
        .build();
    let mut epoch = None;
    for i in 1..=200 {
        epoch = Some(
            hub.publish("t", Event::new(format!("{i}")))
                .await
                .unwrap()
                .epoch(),
        );
    }
    let epoch = epoch.unwrap();
    // Trimming runs with the commits: give it its round.
    hub.publish("t", Event::new("201")).await.unwrap();
    let mut stream = hub
        .subscribe(
            "t",
            Subscribe::new()
                .last_event_id(format!("{epoch}-0"))
                .limit(50),
        )
        .unwrap();
    let mut body = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), stream.frame())
        .await
        .unwrap_or_else(|_| panic!("stuck after {:?}", String::from_utf8_lossy(&body)))
    {
        body.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let items = support::Parser::new().feed(&body);
    let evs = support::events(&items);
    assert_eq!(evs[0].event_type, "resync");
    let resync: serde_json::Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(resync["reason"], "evicted");
    assert_eq!(resync["oldest"], format!("{epoch}-152"));
    assert_eq!(resync["missed"], 151);
    let seqs: Vec<u64> = evs[1..]
        .iter()
        .map(|e| support::seq(&e.last_event_id))
        .collect();
    assert_eq!(seqs, (152..=201).collect::<Vec<_>>());
}

/// A hub on a store with `retention`, its ring `buffer` events deep; the
/// store is returned too, for its byte count.
fn hub_with(dir: &std::path::Path, retention: Retention, buffer: usize) -> (Hub, DiskStore) {
    let store = DiskStore::open(dir, retention).expect("open the store");
    let hub = Hub::builder()
        .buffer(buffer)
        .retry(None)
        .keep_alive(None)
        .storage(store.clone())
        .build();
    (hub, store)
}

/// Resumes `topic` from `<epoch>-0` for `limit` events: the `resync` it
/// starts with (its JSON, exactly as sent), if any, and the events.
async fn from_the_start(
    hub: &Hub,
    topic: &str,
    epoch: &str,
    limit: u64,
) -> (Option<String>, Vec<(String, String)>) {
    let mut stream = hub
        .subscribe(
            topic,
            Subscribe::new()
                .last_event_id(format!("{epoch}-0"))
                .limit(limit),
        )
        .unwrap();
    let mut body = Vec::new();
    while let Some(frame) = tokio::time::timeout(support::WAIT, stream.frame())
        .await
        .unwrap_or_else(|_| panic!("stuck after {:?}", String::from_utf8_lossy(&body)))
    {
        body.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let items = support::Parser::new().feed(&body);
    let mut events = support::events(&items).into_iter().peekable();
    let resync = events.next_if(|e| e.event_type == "resync").map(|e| e.data);
    let events = events
        .map(|e| {
            assert_ne!(e.event_type, "resync", "a second resync: {}", e.data);
            (e.last_event_id, e.data)
        })
        .collect();
    (resync, events)
}

/// Publishes `data(i)` for `i` in `range` to `topic`, one at a time; returns
/// the epoch.
async fn publish_each(
    hub: &Hub,
    topic: &str,
    range: std::ops::RangeInclusive<u64>,
    data: impl Fn(u64) -> String,
) -> String {
    let mut epoch = String::new();
    for i in range {
        let id = hub.publish(topic, Event::new(data(i))).await.unwrap();
        assert_eq!(id.seq(), i);
        epoch = id.epoch().to_string();
    }
    epoch
}

fn evicted(epoch: &str, oldest: u64, latest: u64) -> String {
    format!(
        "{{\"reason\":\"evicted\",\"requested\":\"{epoch}-0\",\"oldest\":\"{epoch}-{oldest}\",\
         \"latest\":\"{epoch}-{latest}\",\"missed\":{}}}",
        oldest - 1
    )
}

/// `(id, data(seq))` for every seq of `range`.
fn expected(
    epoch: &str,
    range: std::ops::RangeInclusive<u64>,
    data: impl Fn(u64) -> String,
) -> Vec<(String, String)> {
    range.map(|i| (format!("{epoch}-{i}"), data(i))).collect()
}

/// What an event of data `d` weighs on disk: its publish time (8 bytes)
/// and its line `data: d`.
fn weight(d: &str) -> u64 {
    8 + "data: \n".len() as u64 + d.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_bytes_keeps_the_newest_that_fit() {
    let data = |i: u64| format!("{i:04}");
    let w = weight(&data(1));
    let dir = tempfile::tempdir().unwrap();
    let (hub, store) = hub_with(dir.path(), Retention::default().bytes(50 * w), 8);
    let epoch = publish_each(&hub, "t", 1..=200, data).await;
    assert_eq!(store.retained_bytes(), 50 * w);
    let (resync, events) = from_the_start(&hub, "t", &epoch, 50).await;
    assert_eq!(resync.as_deref(), Some(&*evicted(&epoch, 151, 200)));
    assert_eq!(events, expected(&epoch, 151..=200, data));
}

/// Events older than the age limit go from disk, even when nothing is
/// published (the writer looks once a second); younger ones stay. (The
/// ring drops what the disk drops: `tests/storage/retention.rs` checks it with a
/// ring that holds everything.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_age_drops_old_events_while_idle() {
    let data = |i: u64| format!("e{i}");
    let dir = tempfile::tempdir().unwrap();
    let age = Duration::from_secs(2);
    let (hub, store) = hub_with(dir.path(), Retention::default().age(Some(age)), 4);
    let epoch = publish_each(&hub, "t", 1..=10, data).await;
    assert!(store.retained_bytes() > 0);
    let end = tokio::time::Instant::now() + age + support::WAIT;
    while store.retained_bytes() > 0 {
        assert!(tokio::time::Instant::now() < end, "never trimmed by age");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Published now: far younger than the limit when read just after.
    publish_each(&hub, "t", 11..=15, data).await;
    let (resync, events) = from_the_start(&hub, "t", &epoch, 5).await;
    assert_eq!(resync.as_deref(), Some(&*evicted(&epoch, 11, 15)));
    assert_eq!(events, expected(&epoch, 11..=15, data));
    let young: u64 = (11..=15).map(|i| weight(&data(i))).sum();
    assert_eq!(store.retained_bytes(), young);
}

/// The level to which the largest of `sizes` must be cut so that together
/// they shed at least `excess`: the rule `Retention::total_bytes` documents
/// ("the largest topics give up their oldest events first").
fn water_level(sizes: &[u64], excess: u64) -> u64 {
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut above = 0;
    for k in 0..sizes.len() {
        above += sizes[k];
        let next = sizes.get(k + 1).copied().unwrap_or(0);
        if above - (k as u64 + 1) * next >= excess {
            return (above - excess) / (k as u64 + 1);
        }
    }
    0
}

/// Over the bound for all topics, the largest topic is cut first, then the
/// largest ones to a common level, down to a sixteenth under the bound;
/// small topics keep everything. The expected cut is computed by a model
/// of that rule, publish by publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_of_all_topics_cuts_the_largest_first() {
    const TOTAL: u64 = 4000;
    let small = |i: u64| format!("s{i:03}");
    let mid = |i: u64| format!("m{i:03}-{}", "x".repeat(102));
    let big = |i: u64| format!("b{i:03}-{}", "y".repeat(110));
    // What the model keeps of each topic: (name, first retained, weights).
    let mut model: Vec<(&str, u64, std::collections::VecDeque<u64>)> = Vec::new();
    let publish = |model: &mut Vec<(&str, u64, std::collections::VecDeque<u64>)>,
                   topic: &'static str,
                   w: u64| {
        match model.iter_mut().find(|(t, ..)| *t == topic) {
            Some((.., kept)) => kept.push_back(w),
            None => model.push((topic, 1, [w].into())),
        }
        let total: u64 = model.iter().flat_map(|(.., k)| k.iter()).sum();
        if total <= TOTAL {
            return;
        }
        let target = TOTAL - TOTAL / 16;
        let sizes: Vec<u64> = model.iter().map(|(.., k)| k.iter().sum()).collect();
        let level = water_level(&sizes, total - target);
        let mut total = total;
        model.sort_by_key(|(.., k)| std::cmp::Reverse(k.iter().sum::<u64>()));
        for (_, first, kept) in model.iter_mut() {
            while total > target && kept.iter().sum::<u64>() > level {
                total -= kept.pop_front().unwrap();
                *first += 1;
            }
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let (hub, store) = hub_with(dir.path(), Retention::default().total_bytes(TOTAL), 4);
    let mut epochs = std::collections::HashMap::new();
    for (topic, n, data) in [
        ("small1", 10, &small as &dyn Fn(u64) -> String),
        ("small2", 10, &small),
        ("mid", 20, &mid),
        ("big", 40, &big),
    ] {
        for i in 1..=n {
            let id = hub.publish(topic, Event::new(data(i))).await.unwrap();
            epochs.insert(topic, id.epoch().to_string());
            publish(&mut model, topic, weight(&data(i)));
        }
    }
    let modelled: u64 = model.iter().flat_map(|(.., k)| k.iter()).sum();
    assert!(modelled <= TOTAL);
    assert_eq!(store.retained_bytes(), modelled);
    for (topic, n, data) in [
        ("small1", 10, &small as &dyn Fn(u64) -> String),
        ("small2", 10, &small),
        ("mid", 20, &mid),
        ("big", 40, &big),
    ] {
        let epoch = &epochs[topic];
        let first = model.iter().find(|(t, ..)| *t == topic).unwrap().1;
        let (resync, events) = from_the_start(&hub, topic, epoch, n - first + 1).await;
        if topic.starts_with("small") {
            assert_eq!(first, 1, "{topic} is cut");
            assert_eq!(resync, None, "{topic}");
        } else {
            assert!(first > 1, "{topic} is not cut");
            assert_eq!(
                resync.as_deref(),
                Some(&*evicted(epoch, first, n)),
                "{topic}"
            );
        }
        assert_eq!(events, expected(epoch, first..=n, data), "{topic}");
        println!("{topic}: keeps {first}..={n}");
    }
}

/// A resume from far older than the ring (100,000 events, a ring of 64) is
/// served from disk in chunks of at most the hub's frame size (plus one
/// event, as the ring's reads), and joins the live stream with no gap and
/// no duplicate while events keep being published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_resume_reads_disk_in_bounded_frames_and_joins_the_live_stream() {
    const HISTORY: u64 = 100_000;
    const LIVE: u64 = 500;
    const FRAME: usize = 4096;
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), Retention::default().events(1_000_000)).unwrap();
    let hub = Hub::builder()
        .buffer(64)
        .max_frame_bytes(FRAME)
        .retry(None)
        .keep_alive(None)
        .storage(store)
        .build();
    let mut epoch = String::new();
    for batch in 0..HISTORY / 1000 {
        let events = (1..=1000).map(|i| Event::new((batch * 1000 + i).to_string()));
        let ids = hub.publish_batch("t", events).await.unwrap();
        epoch = ids[0].epoch().to_string();
    }
    let mut stream = hub
        .subscribe(
            "t",
            Subscribe::new()
                .last_event_id(format!("{epoch}-0"))
                .limit(HISTORY + LIVE),
        )
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in HISTORY + 1..=HISTORY + LIVE {
                let id = hub.publish("t", Event::new(i.to_string())).await.unwrap();
                assert_eq!(id.seq(), i);
            }
        })
    };
    // The largest single event: its data, and its id at the longest.
    let one_event = format!(
        "data: {}\nid: {epoch}-{}\n\n",
        HISTORY + LIVE,
        HISTORY + LIVE
    )
    .len();
    let mut parser = support::Parser::new();
    let mut next = 1;
    let mut frames = 0;
    while let Some(frame) = tokio::time::timeout(support::WAIT, stream.frame())
        .await
        .expect("the stream goes on")
    {
        let frame = frame.unwrap().into_data().unwrap();
        assert!(
            frame.len() <= FRAME + one_event,
            "a frame of {} bytes at {next}",
            frame.len()
        );
        frames += 1;
        for e in support::events(&parser.feed(&frame)) {
            assert_eq!(e.last_event_id, format!("{epoch}-{next}"), "{}", e.data);
            assert_eq!(e.data, next.to_string());
            next += 1;
        }
    }
    publisher.await.unwrap();
    assert_eq!(next, HISTORY + LIVE + 1);
    assert!(
        frames as u64 >= HISTORY * 20 / FRAME as u64,
        "{frames} frames"
    );
    println!("deep resume: {} events in {frames} frames", next - 1);
}

/// A stream of several topics whose id is older than the rings reads each
/// topic's history from disk (after a restart), a topic at a time in
/// turns, then joins the live events: every event of every topic exactly
/// once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_several_topics_resumes_from_disk_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // The id a client had when a was at 15 and b at 5 (each topic has its
    // own epoch on disk).
    let seen = {
        let hub = hub_on(dir.path(), 8);
        let mut seen = None;
        for i in 1..=300u64 {
            hub.publish("a", Event::new(format!("{i}"))).await.unwrap();
            if i % 3 == 0 {
                hub.publish("b", Event::new(format!("{}", i / 3)))
                    .await
                    .unwrap();
            }
            if i == 15 {
                seen = Some(hub.position_multi(["a", "b"], support::WAIT).await.unwrap());
            }
        }
        seen.unwrap().to_string()
    };
    let hub = hub_on(dir.path(), 8);
    let stream = hub
        .subscribe_multi(
            ["a", "b"],
            Subscribe::new().last_event_id(seen).limit(287 + 97),
        )
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 301..=302u64 {
                hub.publish("a", Event::new(format!("{i}"))).await.unwrap();
                hub.publish("b", Event::new(format!("{}", i - 200)))
                    .await
                    .unwrap();
            }
        })
    };
    let mut body = Vec::new();
    let mut stream = stream;
    while let Some(frame) = tokio::time::timeout(support::WAIT, stream.frame())
        .await
        .expect("the stream goes on")
    {
        body.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    publisher.await.unwrap();
    let items: Vec<_> = support::events(&support::Parser::new().feed(&body))
        .into_iter()
        .map(|e| (e.event_type, e.last_event_id, e.data))
        .collect();
    let topics = ["a".to_owned(), "b".to_owned()];
    let per_topic = support::multi::split(&topics, &items);
    let a: Vec<u64> = per_topic[0]
        .events
        .iter()
        .map(|(id, _)| support::seq(id))
        .collect();
    let b: Vec<u64> = per_topic[1]
        .events
        .iter()
        .map(|(id, _)| support::seq(id))
        .collect();
    assert_eq!(a, (16..=302).collect::<Vec<_>>());
    assert_eq!(b, (6..=102).collect::<Vec<_>>());
    for log in &per_topic {
        assert_eq!(log.seen.len(), log.events.len(), "no resync");
        for (id, data) in &log.events {
            assert_eq!(support::seq(id).to_string(), *data);
        }
    }
}

/// Group commit (issue 20): publishers of many topics that publish at the
/// same moment share syncs, and each still gets its own id, in order per
/// topic, with every event kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_of_many_topics_share_syncs() {
    const TOPICS: usize = 16;
    const PER_TOPIC: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let (hub, store) = hub_with(dir.path(), Retention::default(), 1024);
    let go = std::sync::Arc::new(tokio::sync::Barrier::new(TOPICS * PER_TOPIC));
    let tasks: Vec<_> = (0..TOPICS * PER_TOPIC)
        .map(|i| {
            let (hub, go) = (hub.clone(), go.clone());
            tokio::spawn(async move {
                go.wait().await;
                let topic = format!("t{}", i % TOPICS);
                let id = hub.publish(&topic, Event::new(format!("e{i}"))).await;
                (topic, id.expect("published"))
            })
        })
        .collect();
    let mut ids: std::collections::HashMap<String, Vec<u64>> = Default::default();
    for t in tasks {
        let (topic, id) = tokio::time::timeout(support::WAIT, t)
            .await
            .expect("answered")
            .unwrap();
        ids.entry(topic).or_default().push(id.seq());
    }
    for (topic, mut seqs) in ids {
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=PER_TOPIC as u64).collect::<Vec<_>>(), "{topic}");
        let info = hub.topic_info(topic.as_str()).expect("the topic");
        assert_eq!(info.retained_events, PER_TOPIC, "{topic}");
    }
    let syncs = store.syncs();
    assert!(
        (1..=(TOPICS * PER_TOPIC / 2) as u64).contains(&syncs),
        "{} appends took {syncs} syncs",
        TOPICS * PER_TOPIC
    );
}
