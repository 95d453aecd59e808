//! `loom` models of the wake-up protocol between publishing and streams.
//!
//! Run with
//! `RUSTFLAGS="--cfg ssehub_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --lib --no-default-features loom_`
//! (`.ci/run` does; the filter matters: the lib's other tests do not run
//! under `loom`). The hub's locks, atomics and `Notify` are then `loom`'s
//! (see `src/hub/sync`), and each model runs the real `Hub`, `Topic` and
//! `EventStream` code under every interleaving `loom` explores, up to
//! [`PREEMPTIONS`] preemptions (`LOOM_MAX_PREEMPTIONS` overrides it). A
//! stream is driven by `loom::future::block_on`: a wake-up that never comes
//! parks it for ever, which `loom` reports as a deadlock. Keep-alive, expiry
//! and the retry hint are off, so no tokio timer and no randomness is
//! involved.
//!
//! A lost wake-up shows as `deadlock; threads = [...]`; `loom` then
//! aborts the test binary (its objects panic while the stack unwinds), so
//! run a failing model alone, by name, to see the others' results.
//!
//! Each model was run against bugs planted on purpose (one line or one
//! ordering each), and these failed it:
//!
//! | model | proves | planted bugs that fail it |
//! |---|---|---|
//! | [`loom_a_publish_wakes_a_stream_about_to_wait`] | a stream never misses an event | arming the wait after reading the ring; waking before taking the ring's lock |
//! | [`loom_two_publishers_deliver_in_order_exactly_once`] | order, no loss, no duplicate, re-arming after a read | (same) |
//! | [`loom_a_resume_racing_a_publish_gets_the_event_once`] | replay and live meet with no gap and no duplicate | (same) |
//! | [`loom_close_ends_a_waiting_stream`] | a stream ends when its hub closes | reading `closed` before arming the wait (was in the code); `close` waking before it sets the flag; arming after reading the ring |
//! | [`loom_close_racing_a_new_topic_ends_its_stream`] | a topic created while the hub closes is closed too | (same), and not re-checking the hub's flag after inserting the topic |
//! | [`loom_retire_never_closes_a_topic_under_a_subscriber`] | retire refuses, or the subscriber looks the topic up again | counting the subscriber after the ring's lock is released; `retire` reading the count before taking the lock |
//! | [`loom_eviction_is_announced_with_the_exact_count`] | no overwritten event is skipped silently | the cursor taken from the read that found the lag, not from the ring the count came from; arming after reading; waking before taking the lock |
//! | [`loom_a_trim_is_announced_with_the_exact_count`] | a trim that empties the ring, before, between or after two reads, is counted exactly | none of the planted bugs (it needs no wake-up: every event is published before it starts) |
//! | [`loom_the_total_bound_trims_under_a_reader_with_the_exact_count`] | the same through a publish over the hub's byte bound | arming after reading; waking before taking the lock |
//! | [`loom_a_new_history_racing_a_lagging_stream`] | a `lagged` resync is about the history the stream reads | a `lagged` resync built without checking the epoch (was in the code); the stale cursor above; `ingest` not waking; arming after reading |
//! | [`loom_a_deferred_stream_starts_when_primed`] | `prime` and `ingest` wake a stream waiting for its history | `prime` not waking; `ingest` not waking; arming after reading |
//!
//! Waking while still holding the ring's lock (tokio's broadcast avoids it
//! for speed) fails none: it is slower, not wrong.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::BodyExt;
use loom::future::block_on;
use loom::thread;

use crate::core::event::Event;
use crate::core::id::{Epoch, EventId};
use crate::core::ring::RingLimits;
use crate::core::topic_name::TopicName;
use crate::hub::stream::{EventStream, StreamParams};
use crate::hub::sync::Arc;
use crate::hub::topic::{Counters, Topic};
use crate::hub::{Hub, HubBuilder, HubError, Subscribe};

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

fn epoch(name: &str) -> Epoch {
    name.parse().unwrap()
}

fn id(epoch_name: &str, seq: u64) -> EventId {
    EventId::new(epoch(epoch_name), seq)
}

/// A hub with no timers, no random hint, and the epoch `e`.
fn hub(builder: HubBuilder) -> Hub {
    builder
        .retry(None)
        .retry_jitter(0.0)
        .keep_alive(None)
        .epoch(epoch("e"))
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
    /// An id-only event: where a fresh stream starts.
    Checkpoint(EventId),
    Event {
        id: EventId,
        data: String,
    },
    /// A `resync`: after `requested`, the stream goes on after `at`.
    Resync {
        reason: String,
        requested: EventId,
        missed: Option<u64>,
        at: EventId,
    },
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
                    ("id", v) => id = Some(v.parse::<EventId>().unwrap()),
                    _ => panic!("{line:?}"),
                }
            }
            let at = id.expect("every event has an id");
            match (event, data) {
                (None, None) => Item::Checkpoint(at),
                (None, Some(data)) => Item::Event {
                    id: at,
                    data: data.to_owned(),
                },
                (Some("resync"), Some(json)) => {
                    let v: serde_json::Value = serde_json::from_str(json).unwrap();
                    Item::Resync {
                        reason: v["reason"].as_str().unwrap().to_owned(),
                        requested: v["requested"].as_str().unwrap().parse().unwrap(),
                        missed: v["missed"].as_u64(),
                        at,
                    }
                }
                _ => panic!("{block:?}"),
            }
        })
        .collect()
}

/// Reads until the stream's position is `until`.
fn follow(stream: &mut EventStream, until: EventId) -> Vec<Item> {
    let mut items = Vec::new();
    while stream.position() != until {
        let frame = next(stream).expect("the stream goes on");
        items.extend(parse(&frame));
    }
    items
}

/// What [`walk`] found.
#[derive(Debug, Default)]
struct Walked {
    events: Vec<EventId>,
    lagged: usize,
    epochs: usize,
}

/// Checks that `items`, read by a stream that was at `from`, account for
/// every event after it, exactly once and in order: each event is the next
/// one of the history the stream reads (its data is its number, maybe
/// padded), or is
/// counted in a `lagged` resync whose `missed` is exact and whose ids are
/// of that history; a history replaced is announced by an `epoch` resync
/// from where the stream was. Returns what it saw; `to` is where it must
/// end.
fn walk(items: &[Item], from: EventId, to: EventId) -> Walked {
    let mut at = from;
    let mut walked = Walked::default();
    for item in items {
        match item {
            Item::Event { id, data } => {
                assert_eq!(*id, EventId::new(at.epoch(), at.seq() + 1), "{items:?}");
                assert_eq!(data.trim_start(), id.seq().to_string(), "{items:?}");
                walked.events.push(*id);
                at = *id;
            }
            Item::Resync {
                reason,
                requested,
                missed,
                at: to,
            } => {
                assert_eq!(*requested, at, "where the stream was: {items:?}");
                match reason.as_str() {
                    "lagged" => {
                        let missed = missed.expect("a lagged resync counts");
                        assert!(missed > 0, "{items:?}");
                        assert_eq!(
                            *to,
                            EventId::new(at.epoch(), at.seq() + missed),
                            "the count is exact, in the stream's history: {items:?}"
                        );
                        walked.lagged += 1;
                    }
                    "epoch" => {
                        assert_ne!(to.epoch(), at.epoch(), "{items:?}");
                        walked.epochs += 1;
                    }
                    _ => panic!("{items:?}"),
                }
                at = *to;
            }
            Item::Checkpoint(_) => panic!("only a greeting is a checkpoint: {items:?}"),
        }
    }
    assert_eq!(at, to, "{items:?}");
    walked
}

/// A fresh stream on `topic`, past its greeting (which needs no wake-up).
fn subscribe(hub: &Hub, topic: &str, options: Subscribe) -> EventStream {
    let mut stream = hub.subscribe(topic, options).unwrap();
    let at = stream.position();
    assert_eq!(next(&mut stream), Some(format!("id: {at}\n\n")));
    stream
}

/// (a) A publish racing a stream that is about to wait: the stream either
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
        assert_eq!(publisher.join().unwrap(), id("e", 1));
    });
}

/// (a') Two publishers and a stream: the stream re-arms after each read,
/// and both events arrive, in the order of their ids, once each.
#[test]
fn loom_two_publishers_deliver_in_order_exactly_once() {
    check(|| {
        let hub = hub(Hub::builder());
        let mut stream = subscribe(&hub, "t", Subscribe::new().limit(2));
        let publishers: Vec<_> = ["1", "2"]
            .into_iter()
            .map(|data| {
                let hub = hub.clone();
                thread::spawn(move || publish(&hub, "t", data).unwrap())
            })
            .collect();
        let mut items = Vec::new();
        while let Some(frame) = next(&mut stream) {
            items.extend(parse(&frame));
        }
        let mut ids: Vec<_> = publishers.into_iter().map(|p| p.join().unwrap()).collect();
        ids.sort_unstable_by_key(EventId::seq);
        assert_eq!(ids, [id("e", 1), id("e", 2)]);
        // The data says which publisher got which id; the stream's order is
        // the ids' order.
        let got: Vec<_> = items
            .iter()
            .map(|item| match item {
                Item::Event { id, .. } => *id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, ids, "{items:?}");
        assert_eq!(stream.position(), id("e", 2));
    });
}

/// (b) A client resuming from before an event that is being published (to
/// a topic that may not exist yet: both create it): it gets the event
/// exactly once, from the replay if the publish came first, live if not.
/// A second event, published once both are done, comes right after it, so
/// a duplicate would show.
#[test]
fn loom_a_resume_racing_a_publish_gets_the_event_once() {
    static REPLAYED: AtomicUsize = AtomicUsize::new(0);
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    check(|| {
        let hub = hub(Hub::builder());
        let publisher = {
            let hub = hub.clone();
            thread::spawn(move || publish(&hub, "t", "1").unwrap())
        };
        let options = Subscribe::new().last_event_id("e-0");
        let mut stream = hub.subscribe("t", options).unwrap();
        assert_eq!(stream.position(), id("e", 0), "a resume starts at its id");
        let first = follow(&mut stream, id("e", 1));
        assert_eq!(publisher.join().unwrap(), id("e", 1));
        assert_eq!(publish(&hub, "t", "2").unwrap(), id("e", 2));
        let mut items = first;
        items.extend(follow(&mut stream, id("e", 2)));
        let walked = walk(&items, id("e", 0), id("e", 2));
        assert_eq!(walked.events, [id("e", 1), id("e", 2)], "{items:?}");

        let stats = hub.stats();
        assert_eq!(stats.delivered, 2);
        match stats.replayed {
            1 => REPLAYED.fetch_add(1, Ordering::Relaxed),
            0 => LIVE.fetch_add(1, Ordering::Relaxed),
            n => panic!("{n} replayed"),
        };
    });
    // Both sides of the race were explored.
    assert!(REPLAYED.load(Ordering::Relaxed) > 0);
    assert!(LIVE.load(Ordering::Relaxed) > 0);
}

/// (c) Closing the hub while a stream waits (or is about to): it ends.
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

/// (c') Closing the hub while a subscription creates its topic: either the
/// subscription is refused, or its stream ends; a publish then is refused.
#[test]
fn loom_close_racing_a_new_topic_ends_its_stream() {
    static REFUSED: AtomicUsize = AtomicUsize::new(0);
    static ENDED: AtomicUsize = AtomicUsize::new(0);
    check(|| {
        let hub = hub(Hub::builder());
        let closer = {
            let hub = hub.clone();
            thread::spawn(move || hub.close())
        };
        match hub.subscribe("t", Subscribe::new()) {
            Ok(mut stream) => {
                assert_eq!(next(&mut stream).as_deref(), Some("id: e-0\n\n"));
                assert_eq!(next(&mut stream), None);
                ENDED.fetch_add(1, Ordering::Relaxed);
            }
            Err(HubError::Closed) => {
                REFUSED.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("{e}"),
        }
        closer.join().unwrap();
        assert!(matches!(publish(&hub, "t", "1"), Err(HubError::Closed)));
    });
    assert!(REFUSED.load(Ordering::Relaxed) > 0);
    assert!(ENDED.load(Ordering::Relaxed) > 0);
}

/// (d) A subscriber racing the retirement of its idle topic (a full hub
/// making room for another): either it was counted before the retire
/// looked (and the retire refuses), or it finds the topic closed and looks
/// it up again. Either way it ends up on the hub's live topic, and gets
/// what is published there next.
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
        let mut stream = hub.subscribe("a", Subscribe::new().limit(1)).unwrap();
        let published = retirer.join().unwrap();

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

/// (e) The ring evicting, by count, events a stream has not read while the
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
        let items = follow(&mut stream, id("e", 3));
        let walked = walk(&items, id("e", 0), id("e", 3));
        RESYNCS.fetch_add(walked.lagged, Ordering::Relaxed);
        publisher.join().unwrap();
    });
    assert!(RESYNCS.load(Ordering::Relaxed) > 0);
}

/// (e') The same with the hub's byte bound: a trim empties the ring while
/// a stream reads it an event at a time.
#[test]
fn loom_a_trim_is_announced_with_the_exact_count() {
    static DELIVERED: [AtomicUsize; 3] = [const { AtomicUsize::new(0) }; 3];
    check(|| {
        let hub = hub(Hub::builder().max_frame_bytes(1));
        let mut stream = subscribe(&hub, "t", Subscribe::new());
        publish(&hub, "t", "1").unwrap();
        publish(&hub, "t", "2").unwrap();
        let topic = hub.topic(&TopicName::new("t").unwrap()).unwrap();
        let trimmer = thread::spawn(move || topic.trim_to(0));
        let items = follow(&mut stream, id("e", 2));
        let walked = walk(&items, id("e", 0), id("e", 2));
        DELIVERED[walked.events.len()].fetch_add(1, Ordering::Relaxed);
        trimmer.join().unwrap();
    });
    // The trim came before, between and after the stream's two reads.
    for (n, runs) in DELIVERED.iter().enumerate() {
        assert!(runs.load(Ordering::Relaxed) > 0, "{n} delivered");
    }
}

/// (e'') The hub's byte bound at work: a publish takes the total over it,
/// and the same publisher trims the oldest event while a stream reads an
/// event at a time (and waits for the new one).
#[test]
fn loom_the_total_bound_trims_under_a_reader_with_the_exact_count() {
    static LAGGED: AtomicUsize = AtomicUsize::new(0);
    // Each frame is 56 bytes (`data: ` and 40 bytes, `id: e-1`): two fit in
    // 120, a third takes the total to 168 and the trim back to at most 113
    // (15/16) drops event 1. (The bound must also hold the longest frame
    // an event could have, 90 bytes, or the publish is refused.)
    const FRAME: usize = 56;
    let data = |seq: u64| Event::new(format!("{seq:>40}"));
    check(move || {
        let hub = hub(Hub::builder().max_total_bytes(120).max_frame_bytes(1));
        let mut stream = subscribe(&hub, "t", Subscribe::new());
        block_on(hub.publish("t", data(1))).unwrap();
        block_on(hub.publish("t", data(2))).unwrap();
        let publisher = {
            let hub = hub.clone();
            thread::spawn(move || block_on(hub.publish("t", data(3))).unwrap())
        };
        let items = follow(&mut stream, id("e", 3));
        let walked = walk(&items, id("e", 0), id("e", 3));
        LAGGED.fetch_add(walked.lagged, Ordering::Relaxed);
        publisher.join().unwrap();
        assert_eq!(hub.stats().retained_bytes, 2 * FRAME);
    });
    assert!(LAGGED.load(Ordering::Relaxed) > 0);
}

/// (e''') A stream that lags behind racing a new history of its topic (what
/// a Redis stream recreated, or a damaged disk history, does to the ring):
/// a `lagged` resync counts events of the history the stream was reading,
/// and the change of history is announced by an `epoch` resync.
#[test]
fn loom_a_new_history_racing_a_lagging_stream() {
    check(|| {
        let hub = hub(Hub::builder().buffer(1));
        let mut stream = subscribe(&hub, "t", Subscribe::new());
        // 1 is gone: the stream lags.
        publish(&hub, "t", "1").unwrap();
        publish(&hub, "t", "2").unwrap();
        let topic = hub.topic(&TopicName::new("t").unwrap()).unwrap();
        let ingester = thread::spawn(move || {
            topic.ingest(
                epoch("f"),
                [(1, Bytes::from_static(b"data: 1\nid: f-1\n\n"))],
            );
        });
        let items = follow(&mut stream, id("f", 1));
        let walked = walk(&items, id("e", 0), id("f", 1));
        assert_eq!(walked.epochs, 1, "{items:?}");
        assert_eq!(walked.events.last(), Some(&id("f", 1)));
        ingester.join().unwrap();
    });
}

/// (f) A client resuming on a topic whose history is still loading
/// (Redis): its stream waits until `prime` loads the history, replays from
/// it, then follows what `ingest` appends, each waking the stream.
#[test]
fn loom_a_deferred_stream_starts_when_primed() {
    check(|| {
        let limits = RingLimits {
            max_events: 4,
            max_bytes: 1 << 10,
        };
        let counters = Arc::new(Counters::default());
        let topic = Arc::new(Topic::new("t", epoch("e"), limits, counters, false));
        topic.add_subscriber();
        let params = StreamParams {
            retry_ms: None,
            keep_alive: None,
            max_frame_bytes: 1 << 10,
            limit: None,
            expires_at: None,
        };
        let resume = Some("e-0".to_owned());
        let mut stream = EventStream::deferred(topic.clone(), resume, 0, params);
        let frame = |seq: u64| (seq, Bytes::from(format!("data: {seq}\nid: e-{seq}\n\n")));
        let loader = {
            let topic = topic.clone();
            thread::spawn(move || topic.prime(epoch("e"), 2, vec![frame(1)]))
        };
        let mut items = follow(&mut stream, id("e", 1));
        loader.join().unwrap();
        let appender = thread::spawn(move || topic.ingest(epoch("e"), [frame(2)]));
        items.extend(follow(&mut stream, id("e", 2)));
        let walked = walk(&items, id("e", 0), id("e", 2));
        assert_eq!(walked.events, [id("e", 1), id("e", 2)], "{items:?}");
        appender.join().unwrap();
    });
}
