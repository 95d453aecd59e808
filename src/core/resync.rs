//! Where a subscription starts, and the `resync` signal for when events are
//! gone.
//!
//! A client that asks to resume from an id gets exactly the retained events
//! after it. When that is impossible (the id is older than the ring, from
//! another epoch, in the future, or not an id at all) or when a live
//! subscriber falls so far behind that the ring overwrote events it had not
//! been sent, the stream carries one `resync` event before it continues with
//! everything retained. Its data is a small JSON object:
//!
//! ```json
//! {"reason":"evicted","requested":"k3f9x2ab-3","oldest":"k3f9x2ab-40","latest":"k3f9x2ab-1100","missed":36}
//! ```

use std::fmt;

use crate::core::id::{Epoch, EventId};
use crate::core::ring::Ring;

/// Why a stream sent `resync`: events the client asked for cannot be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResyncReason {
    /// The requested id is older than the oldest retained event.
    Evicted,
    /// The requested id belongs to another epoch (e.g. a previous server run).
    Epoch,
    /// The requested id is newer than any event of the topic.
    Future,
    /// The requested id is not an id.
    Malformed,
    /// The subscriber fell so far behind that unsent events were overwritten.
    Lagged,
}

impl ResyncReason {
    /// The `reason` string in the JSON payload.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResyncReason::Evicted => "evicted",
            ResyncReason::Epoch => "epoch",
            ResyncReason::Future => "future",
            ResyncReason::Malformed => "malformed",
            ResyncReason::Lagged => "lagged",
        }
    }
}

impl fmt::Display for ResyncReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The longest requested id echoed back in a `resync`, in bytes.
const MAX_ECHO: usize = 256;

/// One `resync` signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resync {
    pub(crate) reason: ResyncReason,
    /// What the client asked for (its last id), as text.
    pub(crate) requested: String,
    pub(crate) oldest: Option<EventId>,
    pub(crate) latest: EventId,
    /// How many events are known to be lost, when that can be known.
    pub(crate) missed: Option<u64>,
}

impl Resync {
    /// The compact JSON payload (no line breaks).
    pub(crate) fn to_json(&self) -> String {
        self.json(None)
    }

    /// The payload on a stream of several topics: the same, naming the
    /// topic first (`{"topic":"chat","reason":...}`); the ids in it are
    /// that topic's.
    pub(crate) fn to_json_for(&self, topic: &str) -> String {
        self.json(Some(topic))
    }

    fn json(&self, topic: Option<&str>) -> String {
        let mut out = String::with_capacity(160);
        if let Some(topic) = topic {
            // Topic names need no escaping (letters, digits, `-_.:`).
            out.push_str("{\"topic\":\"");
            out.push_str(topic);
            out.push_str("\",\"reason\":\"");
        } else {
            out.push_str("{\"reason\":\"");
        }
        out.push_str(self.reason.as_str());
        out.push_str("\",\"requested\":");
        // serde_json escapes control characters, quotes and line breaks.
        out.push_str(&serde_json::Value::from(self.requested.as_str()).to_string());
        out.push_str(",\"oldest\":");
        match self.oldest {
            Some(id) => {
                out.push('"');
                out.push_str(&id.to_string());
                out.push('"');
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"latest\":\"");
        out.push_str(&self.latest.to_string());
        out.push('"');
        if let Some(n) = self.missed {
            out.push_str(",\"missed\":");
            out.push_str(&n.to_string());
        }
        out.push('}');
        out
    }

    /// The signal for a live subscriber whose unsent events were overwritten:
    /// it had been sent everything before `cursor`.
    pub(crate) fn lagged(ring: &Ring, cursor: u64, durable: Option<u64>) -> Resync {
        let retained = oldest_retained(ring, durable);
        let oldest = retained.unwrap_or(ring.next_seq());
        Resync {
            reason: ResyncReason::Lagged,
            requested: EventId::new(ring.epoch(), cursor.saturating_sub(1)).to_string(),
            oldest: retained.map(|s| EventId::new(ring.epoch(), s)),
            latest: EventId::new(ring.epoch(), ring.latest()),
            missed: Some(oldest.saturating_sub(cursor)),
        }
    }
}

/// Where a new subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Start {
    /// The first sequence number to send.
    pub(crate) cursor: u64,
    /// The epoch the cursor belongs to.
    pub(crate) epoch: Epoch,
    /// What to tell the client before any event.
    pub(crate) greeting: Greeting,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// A fresh subscription: an id-only checkpoint at the current position,
    /// so a client that drops before the next event resumes from here.
    Checkpoint,
    /// A valid resume: the client's id already says where it is.
    Resume,
    /// The requested events cannot all be sent.
    Resync(Resync),
}

/// The oldest event a topic still has: in its ring, or in the history its
/// store keeps beyond the ring (`durable`: that history's first event).
pub(crate) fn oldest_retained(ring: &Ring, durable: Option<u64>) -> Option<u64> {
    let next = ring.next_seq();
    let oldest = ring
        .oldest()
        .unwrap_or(next)
        .min(durable.unwrap_or(u64::MAX));
    (oldest < next).then_some(oldest)
}

/// Finds where a subscription starts, given the client's last event id
/// (`None` for a fresh subscription, which starts `rewind` events back, as
/// far as they are retained) and the first event of the history kept
/// beyond the ring, if any.
pub(crate) fn locate(
    ring: &Ring,
    last_event_id: Option<&str>,
    rewind: u64,
    durable: Option<u64>,
) -> Start {
    let epoch = ring.epoch();
    let next = ring.next_seq();
    let Some(raw) = last_event_id else {
        let oldest = oldest_retained(ring, durable).unwrap_or(next);
        return Start {
            cursor: next.saturating_sub(rewind).max(oldest),
            epoch,
            greeting: Greeting::Checkpoint,
        };
    };
    let retained = oldest_retained(ring, durable);
    let oldest = retained.unwrap_or(next);
    let resync = |reason, missed| {
        let mut requested = raw.to_owned();
        if requested.len() > MAX_ECHO {
            let mut cut = MAX_ECHO;
            while !requested.is_char_boundary(cut) {
                cut -= 1;
            }
            requested.truncate(cut);
        }
        Start {
            cursor: oldest,
            epoch,
            greeting: Greeting::Resync(Resync {
                reason,
                requested,
                oldest: retained.map(|s| EventId::new(epoch, s)),
                latest: EventId::new(epoch, ring.latest()),
                missed,
            }),
        }
    };
    let id = match raw.parse::<EventId>() {
        Ok(id) => id,
        Err(_) => return resync(ResyncReason::Malformed, None),
    };
    if id.epoch() != epoch {
        return resync(ResyncReason::Epoch, None);
    }
    if id.seq() >= next {
        return resync(ResyncReason::Future, None);
    }
    let wanted = id.seq() + 1;
    if wanted < oldest {
        return resync(ResyncReason::Evicted, Some(oldest - wanted));
    }
    Start {
        cursor: wanted,
        epoch,
        greeting: Greeting::Resume,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ring::RingLimits;
    use bytes::Bytes;

    fn ring_with(n: u64, keep: usize) -> Ring {
        let mut r = Ring::new(
            "ep".parse().unwrap(),
            RingLimits {
                max_events: keep,
                max_bytes: 1 << 20,
            },
        );
        for _ in 0..n {
            r.push(Bytes::from_static(b"x"));
        }
        r
    }

    fn reason(s: &Start) -> Option<ResyncReason> {
        match &s.greeting {
            Greeting::Resync(r) => Some(r.reason),
            _ => None,
        }
    }

    #[test]
    fn fresh_starts_at_next_with_checkpoint() {
        let r = ring_with(5, 10);
        let s = locate(&r, None, 0, None);
        assert_eq!((s.cursor, &s.greeting), (6, &Greeting::Checkpoint));
    }

    #[test]
    fn resume_starts_strictly_after_the_id() {
        let r = ring_with(100, 1000);
        let s = locate(&r, Some("ep-40"), 0, None);
        assert_eq!((s.cursor, &s.greeting), (41, &Greeting::Resume));
        // Up to date: nothing to replay, no resync.
        assert_eq!(
            locate(&r, Some("ep-100"), 0, None).greeting,
            Greeting::Resume
        );
        // Before the first event.
        assert_eq!(locate(&r, Some("ep-0"), 0, None).cursor, 1);
    }

    #[test]
    fn resume_at_the_edge_of_the_ring_is_exact() {
        let r = ring_with(100, 10); // retains 91..=100
        assert_eq!(
            locate(&r, Some("ep-90"), 0, None).greeting,
            Greeting::Resume
        );
        let s = locate(&r, Some("ep-89"), 0, None);
        assert_eq!((reason(&s), s.cursor), (Some(ResyncReason::Evicted), 91));
        match s.greeting {
            Greeting::Resync(r) => assert_eq!(r.missed, Some(1)),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_resync_case() {
        let r = ring_with(100, 10);
        for (id, want) in [
            ("ep-3", ResyncReason::Evicted),
            ("other-50", ResyncReason::Epoch),
            ("ep-101", ResyncReason::Future),
            ("garbage", ResyncReason::Malformed),
            ("", ResyncReason::Malformed),
        ] {
            let s = locate(&r, Some(id), 0, None);
            assert_eq!(reason(&s), Some(want), "{id}");
            assert_eq!(s.cursor, 91, "continues with everything retained");
        }
    }

    #[test]
    fn json_payload() {
        let r = ring_with(100, 10);
        let Greeting::Resync(rs) = locate(&r, Some("ep-3"), 0, None).greeting else {
            unreachable!()
        };
        assert_eq!(
            rs.to_json(),
            r#"{"reason":"evicted","requested":"ep-3","oldest":"ep-91","latest":"ep-100","missed":87}"#
        );
        let Greeting::Resync(rs) = locate(&r, Some("a\"b\nc"), 0, None).greeting else {
            unreachable!()
        };
        assert_eq!(
            rs.to_json(),
            r#"{"reason":"malformed","requested":"a\"b\nc","oldest":"ep-91","latest":"ep-100"}"#
        );
    }

    #[test]
    fn echo_is_truncated_on_a_char_boundary() {
        let r = ring_with(1, 10);
        let long = "é".repeat(300);
        let Greeting::Resync(rs) = locate(&r, Some(&long), 0, None).greeting else {
            unreachable!()
        };
        assert!(rs.requested.len() <= MAX_ECHO);
        assert!(long.starts_with(&rs.requested));
    }

    #[test]
    fn rewind_starts_a_fresh_subscription_that_far_back() {
        let r = ring_with(100, 10); // retains 91..=100
        let s = locate(&r, None, 3, None);
        assert_eq!((s.cursor, &s.greeting), (98, &Greeting::Checkpoint));
        // No further back than what is retained, in the ring or beyond.
        assert_eq!(locate(&r, None, 50, None).cursor, 91);
        assert_eq!(locate(&r, None, 50, Some(20)).cursor, 51);
        assert_eq!(locate(&r, None, 500, Some(20)).cursor, 20);
        // A resume ignores it.
        assert_eq!(locate(&r, Some("ep-95"), 3, None).cursor, 96);
        assert_eq!(locate(&ring_with(0, 10), None, 5, None).cursor, 1);
    }

    #[test]
    fn history_beyond_the_ring_counts_as_retained() {
        // The ring holds 91..=100; the store beyond it has everything from 20.
        let r = ring_with(100, 10);
        let s = locate(&r, Some("ep-30"), 0, Some(20));
        assert_eq!((s.cursor, &s.greeting), (31, &Greeting::Resume));
        assert_eq!(
            locate(&r, Some("ep-19"), 0, Some(20)).greeting,
            Greeting::Resume
        );
        let s = locate(&r, Some("ep-3"), 0, Some(20));
        let Greeting::Resync(rs) = s.greeting else {
            unreachable!()
        };
        assert_eq!(s.cursor, 20);
        assert_eq!(
            rs.to_json(),
            r#"{"reason":"evicted","requested":"ep-3","oldest":"ep-20","latest":"ep-100","missed":16}"#
        );
        // A fresh subscription still starts at the end.
        assert_eq!(locate(&r, None, 0, Some(20)).cursor, 101);
        // An empty ring after a restart: everything is in the store.
        let mut restarted = ring_with(0, 10);
        restarted.restart("ep".parse().unwrap(), 101);
        assert_eq!(locate(&restarted, Some("ep-50"), 0, Some(1)).cursor, 51);
        assert_eq!(oldest_retained(&restarted, Some(1)), Some(1));
        assert_eq!(oldest_retained(&restarted, None), None);
        assert_eq!(oldest_retained(&restarted, Some(101)), None);
        let lag = Resync::lagged(&r, 5, Some(20));
        assert_eq!(
            (lag.missed, lag.oldest.map(|i| i.seq())),
            (Some(15), Some(20))
        );
    }

    #[test]
    fn empty_topic() {
        let r = ring_with(0, 10);
        let Greeting::Resync(rs) = locate(&r, Some("ep-5"), 0, None).greeting else {
            unreachable!()
        };
        assert_eq!(rs.reason, ResyncReason::Future);
        assert_eq!(
            rs.to_json(),
            r#"{"reason":"future","requested":"ep-5","oldest":null,"latest":"ep-0"}"#
        );
    }
}
