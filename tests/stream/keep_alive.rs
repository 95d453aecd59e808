//! Keep-alive comments, timed on a paused clock: one after each full period
//! of silence, never while events flow.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use ssehub::{Event, EventStream, Hub, Subscribe};
use tokio::time::{Instant, timeout};

async fn next(stream: &mut EventStream) -> Bytes {
    stream
        .frame()
        .await
        .expect("stream goes on")
        .unwrap()
        .into_data()
        .unwrap()
}

/// Whether a frame arrives within `d` (the clock advances by `d` if not).
async fn silent_for(stream: &mut EventStream, d: Duration) -> bool {
    timeout(d, stream.frame()).await.is_err()
}

#[tokio::test(start_paused = true)]
async fn comment_after_each_idle_period() {
    let hub = Hub::builder()
        .keep_alive(Some(Duration::from_secs(15)))
        .build();
    let mut s = hub.subscribe("t", Subscribe::new()).unwrap();
    let start = Instant::now();
    assert!(next(&mut s).await.starts_with(b"retry: "));

    assert!(silent_for(&mut s, Duration::from_millis(14_999)).await);
    assert_eq!(next(&mut s).await, ": keep-alive\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(15));

    assert!(silent_for(&mut s, Duration::from_millis(14_999)).await);
    assert_eq!(next(&mut s).await, ": keep-alive\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn events_postpone_the_comment() {
    let hub = Hub::builder()
        .keep_alive(Some(Duration::from_secs(15)))
        .build();
    let mut s = hub.subscribe("t", Subscribe::new()).unwrap();
    let start = Instant::now();
    next(&mut s).await; // retry + checkpoint

    // An event at 10 s: the next comment is due at 25 s, not 15 s.
    assert!(silent_for(&mut s, Duration::from_secs(10)).await);
    hub.publish("t", Event::new("x")).await.unwrap();
    assert!(next(&mut s).await.starts_with(b"data: x\n"));
    assert!(silent_for(&mut s, Duration::from_millis(14_999)).await);
    assert_eq!(next(&mut s).await, ": keep-alive\n\n");
    assert_eq!(start.elapsed(), Duration::from_secs(25));
}

#[tokio::test(start_paused = true)]
async fn no_comment_when_disabled() {
    let hub = Hub::builder().keep_alive(None).build();
    let mut s = hub.subscribe("t", Subscribe::new()).unwrap();
    next(&mut s).await;
    assert!(silent_for(&mut s, Duration::from_secs(3600)).await);
}
