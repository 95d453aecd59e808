//! Shared pieces of the flaky-network tests: a publisher that runs until
//! told to stop, and the two checks of what a client saw.
//!
//! The tests size the ring for everything they can publish, so exactly-once
//! is a property of the product, not of how fast the machine reconnects.
//! `check_gaps_announced` runs first and separately: if a run ever lost
//! events (a premise broken, say a ring too small for a very slow machine),
//! it tells an announced gap (a `resync` whose `missed` matches) from a
//! silent one (a bug).

use std::time::{Duration, Instant};

use ssehub::{Event, Hub};

/// The most events `publish_until` publishes, and what the rings of the
/// tests that use it are sized for: at one every 3 ms, ten minutes, several
/// times what a run takes even on a machine with its cores taken by others.
pub const MAX_EVENTS: u64 = 200_000;

/// A hub whose ring holds a whole run of `publish_until` and whose clients
/// reconnect after `retry`.
pub fn whole_run_hub(retry: Duration) -> Hub {
    Hub::builder()
        .buffer(MAX_EVENTS as usize + 1)
        .max_topic_bytes(64 << 20)
        .retry(Some(retry))
        .build()
}

/// What a publisher under chaos runs until.
pub trait Goal {
    /// Whether the run may end.
    fn reached(&self) -> bool;
    /// A measure that grows while the clients still get somewhere (the
    /// cuts still needed, say), or `None` when there is none: with one,
    /// publishing pauses once [`PAUSE_AFTER`] events went out without it
    /// moving, and fails after [`STALL`](super::STALL) of no movement.
    fn progress(&self) -> Option<u64> {
        None
    }
    /// Where things stand, for a failure message.
    fn explain(&self) -> String {
        String::new()
    }
}

impl<F: Fn() -> bool> Goal for F {
    fn reached(&self) -> bool {
        self()
    }
}

/// How many events a publisher with a [`Goal::progress`] sends without it
/// moving before it waits: on a machine whose cores others take, the
/// clients get their cuts later, and the run waits for them instead of
/// running through the ring that was sized for it.
pub const PAUSE_AFTER: u64 = 2_000;

/// Publishes events whose data is their sequence number, one every
/// `period` (or slower, when the machine is), until `goal` is reached;
/// then publishes `"end"`. Returns the sequence number of `"end"`.
///
/// # Panics
///
/// After [`MAX_EVENTS`] (a ring of that size holds the whole run), or when
/// the goal's progress stands still for [`STALL`](super::STALL).
pub async fn publish_until(hub: &Hub, topic: &str, period: Duration, goal: impl Goal) -> u64 {
    publish_until_many(hub, &[topic.to_owned()], period, goal).await[0]
}

/// [`publish_until`] over several topics: each tick publishes the next
/// event (data: its sequence number) of one topic, topic 0 every other
/// tick (a busy topic) and the others in turn; once the goal is reached,
/// `"end"` to every topic. Returns the sequence number of each topic's
/// `"end"`.
pub async fn publish_until_many(
    hub: &Hub,
    topics: &[String],
    period: Duration,
    goal: impl Goal,
) -> Vec<u64> {
    let mut tick = tokio::time::interval(period);
    // A starved publisher publishes less, rather than catching up in bursts.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut k = 0usize;
    let mut last = goal.progress();
    let mut since = (0u64, Instant::now());
    loop {
        tick.tick().await;
        if goal.reached() {
            let mut ends = Vec::with_capacity(topics.len());
            for t in topics {
                ends.push(hub.publish(t, Event::new("end")).await.unwrap().seq());
            }
            return ends;
        }
        let now = goal.progress();
        if now != last {
            last = now;
            since = (0, Instant::now());
        } else if now.is_some() {
            assert!(
                since.1.elapsed() < super::STALL,
                "no progress for {:?} after {} events: {}",
                super::STALL,
                since.0,
                goal.explain()
            );
            if since.0 >= PAUSE_AFTER {
                continue;
            }
        }
        since.0 += 1;
        let t = if k.is_multiple_of(2) || topics.len() == 1 {
            &topics[0]
        } else {
            &topics[1 + (k / 2) % (topics.len() - 1)]
        };
        k += 1;
        let next = hub.topic_info(t).map_or(1, |i| i.latest.seq() + 1);
        assert!(
            next < MAX_EVENTS,
            "{t}: {MAX_EVENTS} events published and the goal still not reached: {}",
            goal.explain()
        );
        let id = hub.publish(t, Event::new(next.to_string())).await.unwrap();
        assert_eq!(id.seq(), next);
    }
}

/// One thing a client saw, in order.
#[derive(Debug, Clone)]
pub enum Seen {
    /// An event: its id and data.
    Event(String, String),
    /// A `resync` event's JSON.
    Resync(serde_json::Value),
}

/// Checks that every gap in the sequence numbers a client saw follows a
/// `resync` whose `missed` is the size of the gap, and that no event came
/// twice (an `epoch` resync starts a new sequence).
pub fn check_gaps_announced(who: &str, seen: &[Seen]) -> Result<(), String> {
    let mut expect: Option<u64> = None;
    let mut resync: Option<&serde_json::Value> = None;
    for item in seen {
        match item {
            Seen::Resync(r) => {
                if r["reason"] == "epoch" {
                    expect = None;
                }
                resync = Some(r);
            }
            Seen::Event(id, data) => {
                let seq: u64 = id
                    .rsplit_once('-')
                    .and_then(|(_, s)| s.parse().ok())
                    .ok_or_else(|| format!("{who}: bad id {id:?}"))?;
                if let Some(want) = expect {
                    if seq < want {
                        return Err(format!("{who}: duplicate: expected {want}, got {seq}"));
                    }
                    if seq > want {
                        let gap = seq - want;
                        match resync {
                            Some(r) if r["missed"].as_u64() == Some(gap) => {}
                            Some(r) => {
                                return Err(format!(
                                    "{who}: a gap of {gap} before {seq} ({data:?}) announced as {r}"
                                ));
                            }
                            None => {
                                return Err(format!(
                                    "{who}: silent gap: expected {want}, got {seq} ({data:?})"
                                ));
                            }
                        }
                    }
                }
                expect = Some(seq + 1);
                resync = None;
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64) -> Seen {
        Seen::Event(format!("e-{seq}"), seq.to_string())
    }

    #[test]
    fn gaps_must_be_announced_with_their_size() {
        let resync =
            |missed: u64| Seen::Resync(serde_json::json!({"reason": "evicted", "missed": missed}));
        assert!(check_gaps_announced("t", &[ev(1), ev(2), ev(3)]).is_ok());
        assert!(check_gaps_announced("t", &[ev(1), resync(3), ev(5)]).is_ok());
        let silent = check_gaps_announced("t", &[ev(1), ev(5)]).unwrap_err();
        assert!(silent.contains("silent gap"), "{silent}");
        let wrong = check_gaps_announced("t", &[ev(1), resync(2), ev(5)]).unwrap_err();
        assert!(wrong.contains("announced as"), "{wrong}");
        let twice = check_gaps_announced("t", &[ev(1), ev(2), ev(2)]).unwrap_err();
        assert!(twice.contains("duplicate"), "{twice}");
        let epoch = Seen::Resync(serde_json::json!({"reason": "epoch"}));
        assert!(check_gaps_announced("t", &[ev(7), epoch, ev(1)]).is_ok());
    }
}
