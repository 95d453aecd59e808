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
//!
//! Topic names and epochs never contain `0x00` (they are validated ASCII).

use crate::core::id::Epoch;

/// The version of the `meta` records this code writes.
const META_VERSION: u8 = 1;

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
    fn event_values() {
        let v = event_value(1_700_000_000_123, b"data: x\n");
        assert_eq!(
            parse_event_value(&v),
            Some((1_700_000_000_123, &b"data: x\n"[..]))
        );
        assert_eq!(parse_event_value(b"short"), None);
    }
}
