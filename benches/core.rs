//! Micro-benchmarks of the core: encoding, publishing into the ring, replay
//! from an id, fan-out of one event to N subscribers, framing a batch, and
//! one event delivered on a stream of 64 topics against a stream of one.
//!
//! ```sh
//! cargo bench --bench core
//! ```

use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http_body::Body;
use ssehub::{Event, EventId, EventStream, Hub, MultiEventStream, Subscribe};

/// Polls a future that completes without waiting (the in-memory hub's).
fn now<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("the in-memory hub never waits"),
    }
}

/// One frame if one is ready.
fn poll_frame(s: &mut EventStream) -> Option<Bytes> {
    match Pin::new(s).poll_frame(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(Ok(f))) => f.into_data().ok(),
        _ => None,
    }
}

/// One frame of a multi-topic stream, if one is ready.
fn poll_multi(s: &mut MultiEventStream) -> Option<Bytes> {
    match Pin::new(s).poll_frame(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Some(Ok(f))) => f.into_data().ok(),
        _ => None,
    }
}

fn drain(s: &mut EventStream) -> usize {
    let mut n = 0;
    while let Some(f) = poll_frame(s) {
        n += f.len();
    }
    n
}

fn hub() -> Hub {
    Hub::builder().keep_alive(None).build()
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    let id: EventId = "k3f9x2ab-1042".parse().unwrap();
    let cases = [
        ("small", Event::new("{\"price\":42.5,\"sym\":\"ACME\"}")),
        ("1KiB", Event::new("x".repeat(1024))),
        (
            "1KiB_32_lines",
            Event::new(
                "y".repeat(31)
                    .repeat(32)
                    .chars()
                    .enumerate()
                    .map(|(i, ch)| if i % 32 == 31 { '\n' } else { ch })
                    .collect::<String>(),
            ),
        ),
        ("typed", Event::new("hello").with_type("greeting").unwrap()),
    ];
    for (name, ev) in cases {
        g.throughput(Throughput::Bytes(ev.data().len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(ev.to_frame(&id))));
    }
    g.finish();
}

fn publish(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(1));
    // A full ring: every publish also evicts the oldest event.
    let h = hub();
    for _ in 0..2048 {
        now(h.publish("t", Event::new("warm"))).unwrap();
    }
    g.bench_function("into_full_ring_no_subscribers", |b| {
        b.iter(|| now(h.publish("t", Event::new("{\"price\":42.5}"))).unwrap())
    });
    let mut subs: Vec<_> = (0..100)
        .map(|_| h.subscribe("t", Subscribe::new()).unwrap())
        .collect();
    for s in &mut subs {
        drain(s);
    }
    g.bench_function("with_100_waiting_subscribers", |b| {
        b.iter(|| {
            now(h.publish("t", Event::new("{\"price\":42.5}"))).unwrap();
            // Re-arm them so each publish has waiters to wake.
            for s in &mut subs {
                drain(s);
            }
        })
    });
    drop(subs);
    // Under an idempotency key: a new key each time (looked up, then kept
    // with the event; a full ring forgets the oldest key as it evicts),
    // and a retry (looked up, answered, nothing published).
    let h = hub();
    let key = |n: u64| ssehub::core::IdempotencyKey::new(&format!("{n:036}")).unwrap();
    for n in 0..2048 {
        now(h.publish_idempotent("t", &key(n), Event::new("warm"))).unwrap();
    }
    let mut n = 2048;
    g.bench_function("idempotent_new_key_into_full_ring", |b| {
        b.iter(|| {
            n += 1;
            now(h.publish_idempotent("t", &key(n), Event::new("{\"price\":42.5}"))).unwrap()
        })
    });
    let retried = key(n);
    g.bench_function("idempotent_retry", |b| {
        b.iter(|| {
            let r = now(h.publish_idempotent("t", &retried, Event::new("{\"price\":42.5}")));
            assert!(r.unwrap().replayed);
        })
    });
    g.finish();
}

fn replay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("replay");
    let h = hub();
    for i in 0..1024 {
        now(h.publish(
            "t",
            Event::new(format!("{{\"n\":{i},\"pad\":\"0123456789abcdef\"}}")),
        ))
        .unwrap();
    }
    let latest = h.topic_info("t").unwrap().latest;
    for back in [1u64, 100, 1000] {
        let from = EventId::new(latest.epoch(), latest.seq() - back).to_string();
        g.throughput(Throughput::Elements(back));
        g.bench_with_input(
            BenchmarkId::new("subscribe_and_drain", back),
            &from,
            |b, from| {
                b.iter(|| {
                    let mut s = h
                        .subscribe("t", Subscribe::new().last_event_id(from.as_str()))
                        .unwrap();
                    black_box(drain(&mut s))
                })
            },
        );
    }
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("fanout");
    for n in [100usize, 1_000, 10_000] {
        let h = hub();
        let mut subs: Vec<_> = (0..n)
            .map(|_| h.subscribe("t", Subscribe::new()).unwrap())
            .collect();
        for s in &mut subs {
            drain(s);
        }
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("one_event_to", n), |b| {
            b.iter(|| {
                now(h.publish("t", Event::new("{\"price\":42.5,\"sym\":\"ACME\"}"))).unwrap();
                for s in &mut subs {
                    black_box(poll_frame(s));
                    // Back to waiting, as after hyper's next poll.
                    poll_frame(s);
                }
            })
        });
    }
    g.finish();
}

fn batch(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("batch");
    let h = hub();
    let mut s = h.subscribe("t", Subscribe::new()).unwrap();
    drain(&mut s);
    let events: Vec<_> = (0..64)
        .map(|i| Event::new(format!("{{\"n\":{i},\"pad\":\"0123456789abcdef\"}}")))
        .collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("publish_64_then_one_frame", |b| {
        b.iter(|| {
            now(h.publish_batch("t", events.iter().cloned())).unwrap();
            let frame = poll_frame(&mut s).unwrap();
            assert!(frame.len() > 64 * 40);
            poll_frame(&mut s);
        })
    });
    g.finish();
}

/// What a client following 64 topics costs per event: one stream of 64
/// topics, or 64 streams of one (each event goes to one of them). Both
/// include the publish.
fn multi(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("multi");
    g.throughput(Throughput::Elements(1));
    let topics: Vec<String> = (0..64).map(|i| format!("t{i}")).collect();
    let data = "{\"price\":42.5,\"sym\":\"ACME\"}";

    let h = hub();
    let mut singles: Vec<_> = topics
        .iter()
        .map(|t| h.subscribe(t, Subscribe::new()).unwrap())
        .collect();
    // Positions in the thousands: ids as long as on a busy server.
    for t in &topics {
        now(h.publish_batch(t, (0..1000).map(|_| Event::new(data)))).unwrap();
    }
    for s in &mut singles {
        drain(s);
    }
    let mut k = 0;
    g.bench_function("one_event_on_64_single_topic_streams", |b| {
        b.iter(|| {
            k = (k + 1) % 64;
            now(h.publish(&topics[k], Event::new(data))).unwrap();
            black_box(poll_frame(&mut singles[k]).unwrap());
            poll_frame(&mut singles[k]);
        })
    });

    let h = hub();
    let mut multi = h.subscribe_multi(&topics, Subscribe::new()).unwrap();
    while poll_multi(&mut multi).is_some() {}
    for t in &topics {
        now(h.publish_batch(t, (0..1000).map(|_| Event::new(data)))).unwrap();
    }
    while poll_multi(&mut multi).is_some() {}
    let mut k = 0;
    g.bench_function("one_event_on_a_64_topic_stream", |b| {
        b.iter(|| {
            k = (k + 1) % 64;
            now(h.publish(&topics[k], Event::new(data))).unwrap();
            black_box(poll_multi(&mut multi).unwrap());
            poll_multi(&mut multi);
        })
    });
    g.finish();
}

criterion_group!(benches, encode, publish, replay, fanout, batch, multi);
criterion_main!(benches);
