//! How the disk store lays out its records in the engine's two keyspaces.
//!
//! - `events`: key `<topic> 0x00 <epoch> 0x00 <seq: u64 big-endian>`, value
//!   `<published at: u64 ms big-endian> <the event's lines>`: the frame
//!   without its `id:` line, so a replay appends the id and sends it as is.
//!   Each history (epoch) of a topic has its own key prefix, and keys sort by
//!   sequence within it, so a replay is one range scan from a position, and
//!   the deletion markers a retired history leaves are never scanned again.
//! - `meta`: key `<topic>`, value: a version byte, then the topic's epoch,
//!   first retained and next sequence numbers, and retained bytes. It is
//!   written in the same commit as the events it counts.
//! - `keys`: the idempotency keys of a history, looked up when a publish
//!   names one: key `<topic> 0x00 <epoch> 0x00 <idempotency key>`, value a
//!   version byte, the request's fingerprint (16 bytes), and the first
//!   sequence number and count of the events it published (u64
//!   big-endian). Written in the same commit as those events.
//! - `key_order`: the same keys by the last event each published, so that
//!   trimming a history's oldest events finds the keys to forget with one
//!   range scan: key `<topic> 0x00 <epoch> 0x00 <last seq: u64
//!   big-endian>`, value the idempotency key.
//!
//! - `streams`: the Durable Streams, key `<topic>`, value the stream's
//!   record (`core::durable::record`); its messages are the topic's events
//!   (values: the publish time and the message's bytes as appended).
//! - `producers`: their producers, key `<topic> 0x00 <producer id>`, value
//!   the producer's record. A write's event, stream and producer records
//!   are in one commit.
//!
//! Topic names and epochs never contain `0x00` (they are validated ASCII),
//! nor do idempotency keys (visible ASCII).

use crate::core::id::Epoch;
use crate::core::idempotency::{Fingerprint, KeyRecord};

/// The version of the `meta` records this code writes.
const META_VERSION: u8 = 1;

/// The version of the `keys` records this code writes.
const KEY_VERSION: u8 = 1;

/// What the store knows of one topic's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) epoch: Epoch,
    /// The oldest retained event (`== next` when none is).
    pub(super) first: u64,
    /// The sequence number the next event gets.
    pub(super) next: u64,
    /// Bytes of the retained events' values.
    pub(super) bytes: u64,
}

impl Meta {
    /// A new, empty history.
    pub(super) fn new(epoch: Epoch) -> Self {
        Meta {
            epoch,
            first: 1,
            next: 1,
            bytes: 0,
        }
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let epoch = self.epoch.as_str().as_bytes();
        let mut v = Vec::with_capacity(2 + epoch.len() + 24);
        v.push(META_VERSION);
        v.push(epoch.len() as u8);
        v.extend_from_slice(epoch);
        v.extend_from_slice(&self.first.to_be_bytes());
        v.extend_from_slice(&self.next.to_be_bytes());
        v.extend_from_slice(&self.bytes.to_be_bytes());
        v
    }

    pub(super) fn decode(v: &[u8]) -> Option<Meta> {
        let (&version, rest) = v.split_first()?;
        if version != META_VERSION {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let (epoch, rest) = rest.split_at_checked(len as usize)?;
        let epoch: Epoch = std::str::from_utf8(epoch).ok()?.parse().ok()?;
        let [first, next, bytes] = [0, 8, 16].map(|at| {
            rest.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        });
        let meta = Meta {
            epoch,
            first: first?,
            next: next?,
            bytes: bytes?,
        };
        (rest.len() == 24 && meta.first >= 1 && meta.first <= meta.next).then_some(meta)
    }
}

/// The key prefix of one history of a topic.
pub(super) fn history_prefix(topic: &str, epoch: Epoch) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + epoch.as_str().len() + 10);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(epoch.as_str().as_bytes());
    k.push(0);
    k
}

/// The key of event `seq` of a topic's history.
pub(super) fn event_key(topic: &str, epoch: Epoch, seq: u64) -> Vec<u8> {
    let mut k = history_prefix(topic, epoch);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of an event key.
pub(super) fn key_seq(key: &[u8]) -> Option<u64> {
    let at = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key[at..].try_into().ok()?))
}

/// The key of idempotency key `key`'s record in a topic's history.
pub(super) fn key_record_key(topic: &str, epoch: Epoch, key: &str) -> Vec<u8> {
    let mut k = history_prefix(topic, epoch);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The key of a stream's producer `id` (`id` is a header value: no
/// `0x00`).
pub(super) fn producer_key(topic: &str, id: &str) -> Vec<u8> {
    let mut k = producers_prefix(topic);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The prefix of every producer key of a stream.
pub(super) fn producers_prefix(topic: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 32);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k
}

/// An idempotency key's record.
pub(super) fn key_record_value(record: &KeyRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(33);
    v.push(KEY_VERSION);
    v.extend_from_slice(&record.fingerprint.0);
    v.extend_from_slice(&record.first.to_be_bytes());
    v.extend_from_slice(&record.count.to_be_bytes());
    v
}

pub(super) fn parse_key_record(v: &[u8]) -> Option<KeyRecord> {
    let (&version, rest) = v.split_first()?;
    if version != KEY_VERSION || rest.len() != 32 {
        return None;
    }
    let fingerprint = Fingerprint(rest[..16].try_into().ok()?);
    let first = u64::from_be_bytes(rest[16..24].try_into().ok()?);
    let count = u64::from_be_bytes(rest[24..].try_into().ok()?);
    (first >= 1 && count >= 1).then_some(KeyRecord {
        fingerprint,
        first,
        count,
    })
}

/// An event's value: when it was published, and its lines.
pub(super) fn event_value(published_ms: u64, lines: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + lines.len());
    v.extend_from_slice(&published_ms.to_be_bytes());
    v.extend_from_slice(lines);
    v
}

/// The publish time (ms since the Unix epoch) and lines of an event value.
pub(super) fn parse_event_value(v: &[u8]) -> Option<(u64, &[u8])> {
    let (ts, lines) = v.split_at_checked(8)?;
    Some((u64::from_be_bytes(ts.try_into().ok()?), lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_garbage() {
        let m = Meta {
            epoch: "k3f9x2ab".parse().unwrap(),
            first: 41,
            next: 1001,
            bytes: 123_456,
        };
        assert_eq!(Meta::decode(&m.encode()), Some(m));
        let mut bad = m.encode();
        bad[0] = 9;
        assert_eq!(Meta::decode(&bad), None, "unknown version");
        assert_eq!(Meta::decode(&m.encode()[..10]), None, "truncated");
        let mut long = m.encode();
        long.push(0);
        assert_eq!(Meta::decode(&long), None, "trailing bytes");
        let inverted = Meta {
            first: 5,
            next: 4,
            ..m
        };
        assert_eq!(Meta::decode(&inverted.encode()), None);
    }

    #[test]
    fn keys_sort_by_sequence_within_a_history() {
        let e: Epoch = "ab".parse().unwrap();
        let mut keys: Vec<_> = [300u64, 2, 1 << 40, 1]
            .iter()
            .map(|&s| event_key("t", e, s))
            .collect();
        keys.sort();
        let seqs: Vec<_> = keys.iter().map(|k| key_seq(k).unwrap()).collect();
        assert_eq!(seqs, [1, 2, 300, 1 << 40]);
        // Another topic whose name extends this one's never falls inside.
        let other = event_key("t0", e, 0);
        assert!(!other.starts_with(&history_prefix("t", e)));
        assert!(event_key("t", e, 7).starts_with(&history_prefix("t", e)));
    }

    #[test]
    fn key_records_round_trip_and_reject_garbage() {
        let r = KeyRecord {
            fingerprint: Fingerprint([9; 16]),
            first: 41,
            count: 3,
        };
        let v = key_record_value(&r);
        assert_eq!(v.len(), 33);
        assert_eq!(parse_key_record(&v), Some(r));
        assert_eq!(parse_key_record(&v[..32]), None, "truncated");
        let mut bad = v.clone();
        bad[0] = 2;
        assert_eq!(parse_key_record(&bad), None, "unknown version");
        let none = KeyRecord { count: 0, ..r };
        assert_eq!(parse_key_record(&key_record_value(&none)), None);
        // A key's record sits under its history's prefix, and the key
        // (visible ASCII) cannot reach into another history.
        let e: Epoch = "ab".parse().unwrap();
        assert!(key_record_key("t", e, "k").starts_with(&history_prefix("t", e)));
        assert_eq!(key_record_key("t", e, "k"), b"t\0ab\0k");
    }

    #[test]
    fn event_values() {
        let v = event_value(1_700_000_000_123, b"data: x\n");
        assert_eq!(
            parse_event_value(&v),
            Some((1_700_000_000_123, &b"data: x\n"[..]))
        );
        assert_eq!(parse_event_value(b"short"), None);
    }
}
