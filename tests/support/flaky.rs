//! Shared pieces of the flaky-network tests: a publisher that runs until
//! told to stop, and the exactly-once check.

use std::time::Duration;

use ssehub::{Event, Hub};

/// Publishes events whose data is their sequence number, one every
/// `period`, until `stop()` is true; then publishes `"end"`. Returns the
/// sequence number of `"end"`.
pub async fn publish_until(
    hub: &Hub,
    topic: &str,
    period: Duration,
    stop: impl Fn() -> bool,
) -> u64 {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        if stop() {
            let id = hub.publish(topic, Event::new("end")).await.unwrap();
            return id.seq();
        }
        let next = hub.topic_info(topic).map_or(1, |i| i.latest.seq() + 1);
        let id = hub
            .publish(topic, Event::new(next.to_string()))
            .await
            .unwrap();
        assert_eq!(id.seq(), next);
    }
}

/// Checks that `received` (id, data) is every event from the first one
/// received up to `end`, exactly once and in order. Returns how many.
pub fn check_exactly_once(
    who: &str,
    received: &[(String, String)],
    end: u64,
) -> Result<u64, String> {
    let seq = |id: &str| -> Result<u64, String> {
        id.rsplit_once('-')
            .and_then(|(_, s)| s.parse().ok())
            .ok_or_else(|| format!("{who}: bad id {id:?}"))
    };
    let Some((first, _)) = received.first() else {
        return Err(format!("{who}: received nothing"));
    };
    let mut expect = seq(first)?;
    for (id, data) in received {
        let got = seq(id)?;
        if got != expect {
            let what = if got < expect { "duplicate" } else { "gap" };
            return Err(format!(
                "{who}: {what}: expected {expect}, got {got} ({data:?})"
            ));
        }
        let want = if got == end {
            "end".to_owned()
        } else {
            got.to_string()
        };
        if *data != want {
            return Err(format!("{who}: event {got} carries {data:?}"));
        }
        expect += 1;
    }
    if expect != end + 1 {
        return Err(format!(
            "{who}: stopped at {} before the end ({end})",
            expect - 1
        ));
    }
    Ok(received.len() as u64)
}
