//! `loom` models of the wake-up protocol between publishing and streams.
//!
//! Run with `RUSTFLAGS="--cfg ssehub_loom" cargo test --release --lib loom`
//! (`.ci/run` does). The hub's locks, atomics and `Notify` are then
//! `loom`'s (see `src/hub/sync`), and each model runs the real `Hub`,
//! `Topic` and `EventStream` code under every interleaving `loom` explores,
//! up to [`PREEMPTIONS`] preemptions (`LOOM_MAX_PREEMPTIONS` overrides it).
//! A stream is driven by `loom::future::block_on`: a wake-up that never
//! comes parks it for ever, which `loom` reports as a deadlock. Keep-alive
//! and expiry are off, so no tokio timer is involved.
//!
//! Each model was checked against a bug planted on purpose:
//!
//! | model | proves | a bug it catches |
//! |---|---|---|
//! | [`loom_a_publish_wakes_a_stream_about_to_wait`] | a stream never misses an event | arming the wait after reading the ring; `publish` not waking |
//! | [`loom_close_ends_a_waiting_stream`] | a stream ends when its topic closes | checking `closed` before arming the wait (was in the code); `close` not waking |
//! | [`loom_retire_never_closes_a_topic_under_a_subscriber`] | retire refuses, or the subscriber looks the topic up again | counting the subscriber after the ring's lock is released |
//! | [`loom_eviction_is_announced_with_the_exact_count`] | no freed position is skipped silently | a `lagged` count from an earlier look at the ring than the cursor |
//! | [`loom_a_trim_is_announced_with_the_exact_count`] | the same for the hub's byte bound | (same) |
//! | [`loom_two_publishers_deliver_in_order_exactly_once`] | order, no loss, no duplicate | arming after reading; re-reading from a stale cursor |
//! | [`loom_a_deferred_stream_starts_when_primed`] | prime and ingest wake a stream waiting for its history | `prime` not waking |

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use loom::future::block_on;
use loom::thread;

use super::stream::{EventStream, StreamParams};
use super::sync::Arc;
use super::topic::{Counters, Topic};
use super::{Hub, HubBuilder, HubError, Subscribe};
use crate::core::event::Event;
use crate::core::id::{Epoch, EventId};
use crate::core::ring::RingLimits;
use crate::core::topic_name::TopicName;

/// Enough for the races here (each is one or two preemptions deep), and
/// keeps the whole set in seconds.
const PREEMPTIONS: usize = 2;

/// Runs `model` under every interleaving within the bound; prints how many
/// there were (`--nocapture` shows it).
fn check(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTIONS);
    }
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        model();
    });
    let name = std::thread::current().name().unwrap_or("model").to_owned();
    eprintln!("{name}: {} executions", runs.load(Ordering::Relaxed));
}

fn epoch() -> Epoch {
    "e".parse().unwrap()
}

/// A hub with no timers, no random hint, and a known epoch.
fn hub(builder: HubBuilder) -> Hub {
    builder
        .retry(None)
        .retry_jitter(0.0)
        .keep_alive(None)
        .epoch(epoch())
        .build()
}

fn publish(hub: &Hub, topic: &str, data: &str) -> Result<EventId, HubError> {
    block_on(hub.publish(topic, Event::new(data)))
}

/// The next frame, `None` once the stream ended.
fn next(stream: &mut EventStream) -> Option<String> {
    let frame = block_on(stream.frame())?.unwrap();
    Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
}

/// What a frame says, event by event.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    /// An id-only event: where the stream starts.
    Checkpoint(u64),
    Event {
        seq: u64,
        data: String,
    },
    /// A `lagged` resync: after `requested`, `missed` events are gone and
    /// the stream goes on after `at`.
    Lagged {
        requested: u64,
        missed: u64,
        at: u64,
    },
}

fn seq_of(id: &str) -> u64 {
    let (e, seq) = id.rsplit_once('-').unwrap();
    assert_eq!(e, "e", "{id}");
    seq.parse().unwrap()
}

fn parse(frame: &str) -> Vec<Item> {
    assert!(frame.ends_with("\n\n"), "{frame:?}");
    frame
        .split_terminator("\n\n")
        .map(|block| {
            let (mut event, mut data, mut id) = (None, None, None);
            for line in block.lines() {
                match line.split_once(": ").unwrap() {
                    ("event", v) => event = Some(v),
                    ("data", v) => data = Some(v),
                    ("id", v) => id = Some(seq_of(v)),
                    _ => panic!("{line:?}"),
                }
            }
            let at = id.expect("every event has an id");
            match (event, data) {
                (None, None) => Item::Checkpoint(at),
                (None, Some(data)) => Item::Event {
                    seq: at,
                    data: data.to_owned(),
                },
                (Some("resync"), Some(json)) => {
                    let v: serde_json::Value = serde_json::from_str(json).unwrap();
                    assert_eq!(v["reason"], "lagged", "{json}");
                    Item::Lagged {
                        requested: seq_of(v["requested"].as_str().unwrap()),
                        missed: v["missed"].as_u64().unwrap(),
                        at,
                    }
                }
                _ => panic!("{block:?}"),
            }
        })
        .collect()
}

/// Reads until the stream's position is `until`.
fn follow(stream: &mut EventStream, until: u64) -> Vec<Item> {
    let mut items = Vec::new();
    while stream.position().seq() < until {
        let frame = next(stream).expect("the stream goes on");
        items.extend(parse(&frame));
    }
    assert_eq!(stream.position().seq(), until);
    items
}

/// Events `from..=to`, whose data is their number, each either delivered
/// or counted in a `lagged` resync, in order, exactly once. Returns how
/// many resyncs there were.
fn assert_accounted(items: &[Item], from: u64, to: u64) -> usize {
    let mut expected = from;
    let mut resyncs = 0;
    for item in items {
        match item {
            Item::Event { seq, data } => {
                assert_eq!(*seq, expected, "{items:?}");
                assert_eq!(*data, seq.to_string());
                expected += 1;
            }
            Item::Lagged {
                requested,
                missed,
                at,
            } => {
                assert_eq!(*requested, expected - 1, "{items:?}");
                assert!(*missed > 0, "{items:?}");
                assert_eq!(*at, requested + missed, "the count is exact: {items:?}");
                expected = at + 1;
                resyncs += 1;
            }
            Item::Checkpoint(_) => panic!("{items:?}"),
        }
    }
    assert_eq!(expected, to + 1, "{items:?}");
    resyncs
}

/// A fresh stream on `topic`, past its greeting (which needs no wake-up).
fn subscribe(hub: &Hub, topic: &str, options: Subscribe) -> EventStream {
    let mut stream = hub.subscribe(topic, options).unwrap();
    let at = stream.position().seq();
    assert_eq!(next(&mut stream), Some(format!("id: e-{at}\n\n")));
    stream
}

/// (1) A publish racing a stream that is about to wait: the stream either
/// reads the event or is woken for it.
#[test]
fn loom_a_publish_wakes_a_stream_about_to_wait() {
    check(|| {
        let hub = hub(Hub::builder());
        let mut stream = subscribe(&hub, "t", Subscribe::new().limit(1));
        let publisher = {
            let hub = hub.clone();
            thread::spawn(move || publish(&hub, "t", "1").unwrap())
        };
        assert_eq!(next(&mut stream).as_deref(), Some("data: 1\nid: e-1\n\n"));
        assert_eq!(next(&mut stream), None, "the limit ends it");
        assert_eq!(publisher.join().unwrap().seq(), 1);
    });
}

/// (2) Closing the hub while a stream waits (or is about to): it ends.
#[test]
fn loom_close_ends_a_waiting_stream() {
    check(|| {
        let hub = hub(Hub::builder());
        let mut stream = subscribe(&hub, "t", Subscribe::new());
        let closer = {
            let hub = hub.clone();
            thread::spawn(move || hub.close())
        };
        assert_eq!(next(&mut stream), None);
        closer.join().unwrap();
    });
}

/// (3) A subscriber racing the retirement of its idle topic (a full hub
/// making room for another): either it was counted before the retire
/// looked (and the retire refuses), or it finds the topic closed and looks
/// it up again. Either way it ends up on the hub's live topic.
#[test]
fn loom_retire_never_closes_a_topic_under_a_subscriber() {
    static REFUSED: AtomicUsize = AtomicUsize::new(0);
    static LOOKED_AGAIN: AtomicUsize = AtomicUsize::new(0);
    check(|| {
        let hub = hub(Hub::builder().max_topics(1));
        publish(&hub, "a", "0").unwrap();
        let old = hub.topic(&TopicName::new("a").unwrap()).unwrap();
        let retirer = {
            let hub = hub.clone();
            // "b" is new and the hub holds one topic: it retires "a" if it can.
            thread::spawn(move || publish(&hub, "b", "x").is_ok())
        };
        let subscribed = hub.subscribe("a", Subscribe::new().limit(1));
        let published = retirer.join().unwrap();
        let mut stream = match subscribed {
            Ok(stream) => stream,
            // Gave up after looking again several times: holds nothing.
            Err(HubError::Closed) => return,
            Err(e) => panic!("{e}"),
        };

        let info = hub.topic_info("a").expect("a subscribed topic stays");
        assert_eq!(info.subscribers, 1);
        assert_eq!(hub.stats().subscribers, 1);
        if old.is_closed() {
            LOOKED_AGAIN.fetch_add(1, Ordering::Relaxed);
        } else {
            assert!(!published, "the retire must have refused");
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        // And the stream is live: it gets what is published to "a" next.
        let greeting = next(&mut stream).unwrap();
        let id = publish(&hub, "a", "1").unwrap();
        assert_eq!(greeting, format!("id: {}-{}\n\n", id.epoch(), id.seq() - 1));
        assert_eq!(next(&mut stream), Some(format!("data: 1\nid: {id}\n\n")));
        assert_eq!(next(&mut stream), None);
    });
    // Both sides of the race were explored.
    assert!(REFUSED.load(Ordering::Relaxed) > 0);
    assert!(LOOKED_AGAIN.load(Ordering::Relaxed) > 0);
}

/// (4) The ring evicting, by count, events a stream has not read while the
/// stream reads: every event is delivered, or counted in a `lagged`
/// resync, exactly.
#[test]
fn loom_eviction_is_announced_with_the_exact_count() {
    static RESYNCS: AtomicUsize = AtomicUsize::new(0);
    check(|| {
        let hub = hub(Hub::builder().buffer(1));
        let mut stream = subscribe(&hub, "t", Subscribe::new());
        // 1 is gone already; 2 goes while the stream reads.
        publish(&hub, "t", "1").unwrap();
        publish(&hub, "t", "2").unwrap();
        let publisher = {
            let hub = hub.clone();
            thread::spawn(move || publish(&hub, "t", "3").unwrap())
        };
        let items = follow(&mut stream, 3);
        RESYNCS.fetch_add(assert_accounted(&items, 1, 3), Ordering::Relaxed);
        publisher.join().unwrap();
    });
    assert!(RESYNCS.load(Ordering::Relaxed) > 0);
}

/// (4') The same with the hub's byte bound: a trim empties the ring while
/// a stream reads it an event at a time.
#[test]
fn loom_a_trim_is_announced_with_the_exact_count() {
    check(|| {
        let hub = hub(Hub::builder().max_frame_bytes(1));
        let mut stream = subscribe(&hub, "t", Subscribe::new());
        publish(&hub, "t", "1").unwrap();
        publish(&hub, "t", "2").unwrap();
        let topic = hub.topic(&TopicName::new("t").unwrap()).unwrap();
        let trimmer = thread::spawn(move || topic.trim_to(0));
        let items = follow(&mut stream, 2);
        assert_accounted(&items, 1, 2);
        trimmer.join().unwrap();
    });
}

/// (5) Two publishers and a stream: both events arrive, in the order of
/// their ids, once each.
#[test]
fn loom_two_publishers_deliver_in_order_exactly_once() {
    check(|| {
        let hub = hub(Hub::builder());
        let mut stream = subscribe(&hub, "t", Subscribe::new().limit(2));
        let publishers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|data| {
                let hub = hub.clone();
                thread::spawn(move || (publish(&hub, "t", data).unwrap().seq(), data))
            })
            .collect();
        let mut items = Vec::new();
        while let Some(frame) = next(&mut stream) {
            items.extend(parse(&frame));
        }
        let mut want: Vec<_> = publishers
            .into_iter()
            .map(|p| p.join().unwrap())
            .collect();
        want.sort_unstable();
        let want: Vec<_> = want
            .into_iter()
            .map(|(seq, data)| Item::Event {
                seq,
                data: data.to_owned(),
            })
            .collect();
        assert_eq!(items, want);
        assert_eq!(stream.position().seq(), 2);
    });
}

/// (6) A stream on a topic whose history is still loading (Redis) waits
/// for `prime`, then follows `ingest`: it starts, and misses nothing after
/// its start.
#[test]
fn loom_a_deferred_stream_starts_when_primed() {
    check(|| {
        let limits = RingLimits {
            max_events: 4,
            max_bytes: 1 << 10,
        };
        let counters = Arc::new(Counters::default());
        let topic = Arc::new(Topic::new("t", epoch(), limits, counters, false));
        topic.add_subscriber();
        let params = StreamParams {
            retry_ms: None,
            keep_alive: None,
            max_frame_bytes: 1 << 10,
            limit: None,
            expires_at: None,
        };
        let mut stream = EventStream::deferred(topic.clone(), None, 0, params);
        let loader = thread::spawn(move || {
            topic.prime(epoch(), 1, Vec::new());
            topic.ingest(epoch(), [(1, Bytes::from_static(b"data: 1\nid: e-1\n\n"))]);
        });
        let items = follow(&mut stream, 1);
        let want = [
            vec![
                Item::Checkpoint(0),
                Item::Event {
                    seq: 1,
                    data: "1".into(),
                },
            ],
            vec![Item::Checkpoint(1)],
        ];
        assert!(want.contains(&items), "{items:?}");
        loader.join().unwrap();
    });
}
