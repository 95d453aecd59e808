//! Streams read through the hub, as a subscriber gets them (beside
//! `single.rs`, which the hub's subscribing uses: a test there that
//! subscribes would make a circle).

use std::time::Duration;

use http_body_util::BodyExt;

use crate::core::event::Event;
use crate::hub::{EventStream, Hub, Subscribe};

/// The next frame's text; fails at once if none is ready (the clock is
/// paused, so the timeout elapses as soon as nothing else can run).
async fn next_frame(stream: &mut EventStream) -> String {
    let frame = tokio::time::timeout(Duration::from_secs(1), stream.frame())
        .await
        .expect("a frame is ready")
        .expect("the stream goes on")
        .unwrap();
    String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap()
}

/// Regression guard (issue 19): a stream is resident for as long as its
/// client is connected, inside the connection's future; what only a
/// few streams need (a limit, an expiry, a history loading) is boxed
/// apart. It was 184 bytes before.
#[test]
fn a_stream_carries_only_what_every_stream_needs() {
    let size = std::mem::size_of::<EventStream>();
    assert!(size <= 152, "{size} bytes");
}

/// Regression guard: a live subscriber whose unsent events were
/// overwritten must be told in-band, with the exact count, and continue
/// with the oldest retained event (dropping the `lagged` resync was
/// caught only by an RSS-measuring test).
#[tokio::test(start_paused = true)]
async fn a_lagging_subscriber_gets_the_exact_lagged_resync_then_the_ring() {
    let hub = Hub::builder()
        .buffer(4)
        .retry(Some(Duration::from_millis(1000)))
        .retry_jitter(0.0)
        .build();
    let e = hub.epoch();
    let mut stream = hub.subscribe("t", Subscribe::new()).unwrap();
    assert_eq!(
        next_frame(&mut stream).await,
        format!("retry: 1000\nid: {e}-0\n\n")
    );
    for i in 1..=2 {
        hub.publish("t", Event::new(format!("e{i}"))).await.unwrap();
    }
    assert_eq!(
        next_frame(&mut stream).await,
        format!("data: e1\nid: {e}-1\n\ndata: e2\nid: {e}-2\n\n")
    );
    // Ten more while the subscriber does not read: the ring keeps 9..=12,
    // so 3..=8 are lost to it.
    for i in 3..=12 {
        hub.publish("t", Event::new(format!("e{i}"))).await.unwrap();
    }
    assert_eq!(
        next_frame(&mut stream).await,
        format!(
            "event: resync\ndata: {{\"reason\":\"lagged\",\"requested\":\"{e}-2\",\
             \"oldest\":\"{e}-9\",\"latest\":\"{e}-12\",\"missed\":6}}\nid: {e}-8\n\n"
        )
    );
    let ring: String = (9..=12)
        .map(|i| format!("data: e{i}\nid: {e}-{i}\n\n"))
        .collect();
    assert_eq!(next_frame(&mut stream).await, ring);
    hub.publish("t", Event::new("e13")).await.unwrap();
    assert_eq!(
        next_frame(&mut stream).await,
        format!("data: e13\nid: {e}-13\n\n")
    );
    let stats = hub.stats();
    assert_eq!((stats.resyncs, stats.delivered, stats.replayed), (1, 7, 0));
    // Then nothing but the keep-alive, 15 s after the last frame.
    let start = tokio::time::Instant::now();
    let keep_alive = stream.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(
        (&keep_alive[..], start.elapsed()),
        (&b": keep-alive\n\n"[..], Duration::from_secs(15))
    );
}

/// Reads frames until one carries `data`, failing after a thousand (a
/// keep-alive of a nanosecond may come before each).
async fn frame_with<B>(stream: &mut B, data: &str) -> String
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    for _ in 0..1000 {
        let frame = tokio::time::timeout(Duration::from_secs(1), stream.frame())
            .await
            .expect("a frame is ready")
            .expect("the stream goes on")
            .unwrap();
        let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
        if text.contains(data) {
            return text;
        }
    }
    panic!("no frame with {data:?}");
}

/// Regression (issue 20, finding 6): a keep-alive period the clock
/// cannot add (`--keep-alive 9223372036854775807`) panicked in every
/// stream on its first idle poll. Property over extreme settings (0, 1
/// ns, 1 ms, i64::MAX and i64::MAX + 1 s, u64::MAX s, `Duration::MAX`
/// as retry hint and keep-alive; NaN, ±inf, 2, -1 as jitter): a single
/// and a many-topic stream greet, idle, and deliver without a panic,
/// and the `retry:` hint is a number.
#[tokio::test(start_paused = true)]
async fn extreme_durations_and_jitters_never_panic_a_stream() {
    let durations = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
        Duration::from_secs(i64::MAX as u64),
        Duration::from_secs(i64::MAX as u64 + 1),
        Duration::from_secs(u64::MAX),
        Duration::MAX,
    ];
    let jitters = [
        0.0,
        1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        2.0,
        -1.0,
    ];
    for d in durations {
        for jitter in jitters {
            let hub = Hub::builder()
                .retry(Some(d))
                .retry_jitter(jitter)
                .keep_alive(Some(d))
                .build();
            let mut one = hub.subscribe("t", Subscribe::new()).unwrap();
            let mut many = hub.subscribe_multi(["a", "b"], Subscribe::new()).unwrap();
            for greeting in [
                frame_with(&mut one, "retry: ").await,
                frame_with(&mut many, "retry: ").await,
            ] {
                let ms = greeting
                    .strip_prefix("retry: ")
                    .and_then(|r| r.split('\n').next())
                    .unwrap();
                assert!(ms.parse::<u64>().is_ok(), "{d:?} {jitter}: {greeting}");
            }
            // Idle: the keep-alive timer is armed (a long one does not
            // fire within this).
            for _ in 0..2 {
                let _ = tokio::time::timeout(Duration::from_millis(5), one.frame()).await;
                let _ = tokio::time::timeout(Duration::from_millis(5), many.frame()).await;
            }
            hub.publish("t", Event::new("x")).await.unwrap();
            hub.publish("b", Event::new("y")).await.unwrap();
            frame_with(&mut one, "data: x").await;
            frame_with(&mut many, "data: y").await;
        }
    }
}
