//! The ring: a topic's most recent encoded events, bounded by count and bytes.
//!
//! Entries are addressed by sequence number. The oldest retained event has
//! sequence `first`, the next one to be published gets `next`, and entry `i`
//! of the deque holds event `first + i`, so finding where a client resumes is
//! one subtraction. Entries stay until the bounds push them out: a ring keeps
//! history for replay whether or not anyone is subscribed.
//!
//! In memory, the ring also keeps the idempotency keys of its history
//! ([`Keys`]): a key is forgotten with the last event it published, and its
//! bytes count with the frames', so the ring's byte bounds cover both.
//!
//! The ring knows nothing of locks, wakers or HTTP; the topic wraps it.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::core::durable::StreamMeta;
use crate::core::id::Epoch;
use crate::core::idempotency::{IdempotencyKey, KeyRecord, Keys};

/// Bounds of one ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingLimits {
    /// Most events retained. At least 1.
    pub(crate) max_events: usize,
    /// Most bytes of encoded frames (and idempotency keys) retained. The
    /// newest event is always retained, even when it alone is larger.
    pub(crate) max_bytes: usize,
}

/// What a reader at some position finds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Events `from .. from + count`, as one frame.
    Ready {
        /// The encoded events, back to back.
        frame: Bytes,
        /// How many events the frame holds.
        count: u64,
    },
    /// Nothing after `from` yet.
    Empty,
    /// The topic's history was replaced by another epoch (the storage lost
    /// it, e.g. Redis restarted without persistence).
    Reset,
    /// Events from `from` on were overwritten before this reader got them;
    /// the oldest retained event is `oldest` (or, if the ring is empty, the
    /// next to be published).
    Lagged {
        /// Where the reader can continue.
        oldest: u64,
    },
}

#[derive(Debug)]
pub(crate) struct Ring {
    epoch: Epoch,
    frames: VecDeque<Bytes>,
    first: u64,
    next: u64,
    /// Bytes of the frames and of the keys.
    bytes: usize,
    limits: RingLimits,
    /// Idempotency keys of the retained events (memory store only).
    keys: Keys,
    /// The Durable Stream this ring holds, if it holds one: its metadata
    /// changes under the same lock as its messages.
    stream: Option<Box<StreamMeta>>,
}

impl Ring {
    /// An empty ring for a new history: its first event will be number 1.
    pub(crate) fn new(epoch: Epoch, limits: RingLimits) -> Self {
        Ring {
            epoch,
            frames: VecDeque::new(),
            first: 1,
            next: 1,
            bytes: 0,
            limits: RingLimits {
                max_events: limits.max_events.max(1),
                max_bytes: limits.max_bytes,
            },
            keys: Keys::default(),
            stream: None,
        }
    }

    /// The Durable Stream this ring holds, if any.
    pub(crate) fn stream(&self) -> Option<&StreamMeta> {
        self.stream.as_deref()
    }

    pub(crate) fn stream_mut(&mut self) -> Option<&mut StreamMeta> {
        self.stream.as_deref_mut()
    }

    /// Makes the ring hold a Durable Stream (bounded by bytes only: a
    /// stream keeps every message its byte bound allows), or none.
    pub(crate) fn set_stream(&mut self, meta: Option<StreamMeta>) {
        self.stream = meta.map(Box::new);
        if self.stream.is_some() {
            self.limits.max_events = usize::MAX;
        }
    }

    /// Takes the Durable Stream's metadata out of the ring.
    pub(crate) fn take_stream(&mut self) -> Option<StreamMeta> {
        self.stream.take().map(|b| *b)
    }

    /// Appends frames of a Durable Stream (see [`Ring::push`]); returns the
    /// bytes added and evicted.
    pub(crate) fn push_all(&mut self, frames: impl IntoIterator<Item = Bytes>) -> (usize, usize) {
        let (mut added, mut evicted) = (0, 0);
        for f in frames {
            added += f.len();
            evicted += self.push(f);
        }
        (added, evicted)
    }

    pub(crate) fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The sequence number the next event gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    /// The oldest retained event, `None` when nothing is retained.
    pub(crate) fn oldest(&self) -> Option<u64> {
        (!self.frames.is_empty()).then_some(self.first)
    }

    /// The newest event ever published in this epoch (0 if none).
    pub(crate) fn latest(&self) -> u64 {
        self.next - 1
    }

    /// Bytes of encoded frames retained, and of the idempotency keys.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events retained.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Appends the frame of event `next_seq()`, evicting the oldest events
    /// the bounds no longer allow. Returns the bytes evicted.
    pub(crate) fn push(&mut self, frame: Bytes) -> usize {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        self.next += 1;
        self.evict()
    }

    /// Evicts the oldest events the bounds no longer allow; returns the
    /// bytes freed.
    fn evict(&mut self) -> usize {
        let mut evicted = 0;
        while self.frames.len() > self.limits.max_events
            || (self.bytes > self.limits.max_bytes && self.frames.len() > 1)
        {
            evicted += self.pop_front();
        }
        evicted
    }

    /// What idempotency key `key` was remembered with, if it still is.
    pub(crate) fn key(&self, key: &str) -> Option<&KeyRecord> {
        self.keys.get(key)
    }

    /// Remembers `key` for events `record.first..` (just pushed, so the
    /// last of them is retained) until the last of them is evicted. Returns
    /// the bytes the key added, and the bytes of events evicted to make
    /// room for it.
    pub(crate) fn remember(&mut self, key: IdempotencyKey, record: KeyRecord) -> (usize, usize) {
        debug_assert!(record.first + record.count <= self.next);
        let added = self.keys.insert(key, record);
        self.bytes += added;
        (added, self.evict())
    }

    /// Idempotency keys held.
    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Drops the oldest events until at most `max_bytes` remain (possibly
    /// none). Returns the bytes freed.
    pub(crate) fn trim_to_bytes(&mut self, max_bytes: usize) -> usize {
        let mut freed = 0;
        while self.bytes > max_bytes {
            freed += self.pop_front();
        }
        freed
    }

    /// Drops the events before `first`. Returns the bytes freed.
    #[cfg_attr(not(feature = "disk"), allow(dead_code))]
    pub(crate) fn drop_before(&mut self, first: u64) -> usize {
        let mut freed = 0;
        while self.first < first && !self.frames.is_empty() {
            freed += self.pop_front();
        }
        freed
    }

    /// Starts over at event `next` of `epoch`, dropping everything: a new
    /// history, or the same one continuing after events this ring never
    /// got. Returns the bytes freed.
    pub(crate) fn restart(&mut self, epoch: Epoch, next: u64) -> usize {
        let freed = self.bytes;
        self.frames.clear();
        self.keys.clear();
        self.bytes = 0;
        self.epoch = epoch;
        self.first = next;
        self.next = next;
        freed
    }

    /// Drops the oldest event, and the keys whose last event it was.
    fn pop_front(&mut self) -> usize {
        let freed = match self.frames.pop_front() {
            Some(f) => {
                self.first += 1;
                f.len()
            }
            // Keys never outlive their events; this only keeps the byte
            // count (and `trim_to_bytes`' loop) honest if they did.
            None => return self.forget_all_keys(),
        };
        let keys = if self.keys.is_empty() {
            0
        } else {
            self.keys.forget_before(self.first)
        };
        self.bytes -= freed + keys;
        freed + keys
    }

    fn forget_all_keys(&mut self) -> usize {
        let freed = self.keys.clear();
        self.bytes -= freed;
        freed
    }

    /// Reads from event `from` on: at most `max_events` events and, unless
    /// the first event alone is larger, at most `max_bytes` bytes.
    ///
    /// One ready event is handed on as the shared frame itself; several are
    /// copied back to back into one frame, so the body writes them at once.
    pub(crate) fn read(&self, from: u64, max_events: u64, max_bytes: usize) -> Read {
        if from >= self.next {
            return Read::Empty;
        }
        if from < self.first {
            return Read::Lagged { oldest: self.first };
        }
        let start = (from - self.first) as usize;
        let avail = self.frames.len() - start;
        let want = avail.min(usize::try_from(max_events).unwrap_or(usize::MAX).max(1));

        let first = &self.frames[start];
        let mut total = first.len();
        let mut count = 1;
        while count < want {
            let len = self.frames[start + count].len();
            if total + len > max_bytes {
                break;
            }
            total += len;
            count += 1;
        }
        if count == 1 {
            return Read::Ready {
                frame: first.clone(),
                count: 1,
            };
        }
        let mut buf = BytesMut::with_capacity(total);
        for f in self.frames.range(start..start + count) {
            buf.extend_from_slice(f);
        }
        Read::Ready {
            frame: buf.freeze(),
            count: count as u64,
        }
    }
}

impl Ring {
    /// Like [`Ring::read`], but puts each event's own shared frame into
    /// `out` (at most `out.len()` events) instead of copying them into one:
    /// `Ok` with how many, and whether more events follow them; `Err` with
    /// `Empty` or `Lagged`.
    pub(crate) fn frames(
        &self,
        from: u64,
        out: &mut [Bytes],
        max_bytes: usize,
    ) -> Result<(usize, bool), Read> {
        if from >= self.next {
            return Err(Read::Empty);
        }
        if from < self.first {
            return Err(Read::Lagged { oldest: self.first });
        }
        let start = (from - self.first) as usize;
        let mut total = 0;
        let mut count = 0;
        for (slot, frame) in out.iter_mut().zip(self.frames.range(start..)) {
            if count > 0 && total + frame.len() > max_bytes {
                break;
            }
            total += frame.len();
            *slot = frame.clone();
            count += 1;
        }
        Ok((count, from + (count as u64) < self.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(max_events: usize, max_bytes: usize) -> Ring {
        Ring::new(
            "e".parse().unwrap(),
            RingLimits {
                max_events,
                max_bytes,
            },
        )
    }

    fn push_n(r: &mut Ring, n: usize) {
        for _ in 0..n {
            let seq = r.next_seq();
            r.push(Bytes::from(format!("<{seq}>")));
        }
    }

    #[test]
    fn starts_empty_at_one() {
        let r = ring(4, 1 << 20);
        assert_eq!((r.next_seq(), r.latest(), r.oldest()), (1, 0, None));
        assert_eq!(r.read(1, 10, 100), Read::Empty);
    }

    #[test]
    fn keeps_events_without_readers_and_evicts_by_count() {
        let mut r = ring(4, 1 << 20);
        push_n(&mut r, 10);
        assert_eq!((r.oldest(), r.latest(), r.len()), (Some(7), 10, 4));
        assert_eq!(r.read(3, 10, 100), Read::Lagged { oldest: 7 });
        assert_eq!(
            r.read(7, 10, 100),
            Read::Ready {
                frame: Bytes::from_static(b"<7><8><9><10>"),
                count: 4
            }
        );
        assert_eq!(r.read(11, 10, 100), Read::Empty);
    }

    #[test]
    fn evicts_by_bytes_but_keeps_the_newest() {
        let mut r = ring(100, 10);
        push_n(&mut r, 5); // "<1>".."<5>": 3 bytes each
        assert_eq!(r.bytes(), 9);
        assert_eq!(r.oldest(), Some(3));
        r.push(Bytes::from(vec![b'x'; 50]));
        assert_eq!((r.oldest(), r.len(), r.bytes()), (Some(6), 1, 50));
    }

    #[test]
    fn trim_to_bytes_can_empty_the_ring() {
        let mut r = ring(100, 1 << 20);
        push_n(&mut r, 5); // 3 bytes each
        assert_eq!(r.trim_to_bytes(7), 9);
        assert_eq!((r.oldest(), r.bytes()), (Some(4), 6));
        assert_eq!(r.trim_to_bytes(0), 6);
        assert_eq!(
            (r.oldest(), r.len(), r.next_seq(), r.latest()),
            (None, 0, 6, 5)
        );
        assert_eq!(r.read(6, 10, 100), Read::Empty);
        assert_eq!(r.read(5, 10, 100), Read::Lagged { oldest: 6 });
    }

    #[test]
    fn restart_continues_at_a_later_position() {
        let mut r = ring(10, 1 << 20);
        push_n(&mut r, 3);
        assert_eq!(r.restart("f".parse().unwrap(), 50), 9);
        assert_eq!(
            (r.next_seq(), r.latest(), r.oldest(), r.len()),
            (50, 49, None, 0)
        );
        assert_eq!(r.read(3, 10, 100), Read::Lagged { oldest: 50 });
        r.push(Bytes::from_static(b"<50>"));
        assert_eq!(r.oldest(), Some(50));
        assert_eq!(r.epoch().as_str(), "f");
    }

    #[test]
    fn read_respects_event_and_byte_caps() {
        let mut r = ring(100, 1 << 20);
        push_n(&mut r, 5);
        assert_eq!(
            r.read(2, 2, 100),
            Read::Ready {
                frame: Bytes::from_static(b"<2><3>"),
                count: 2
            }
        );
        assert_eq!(
            r.read(2, 100, 7),
            Read::Ready {
                frame: Bytes::from_static(b"<2><3>"),
                count: 2
            }
        );
        // The first event always goes, even over the byte cap.
        assert_eq!(
            r.read(2, 100, 1),
            Read::Ready {
                frame: Bytes::from_static(b"<2>"),
                count: 1
            }
        );
    }

    #[test]
    fn frames_hands_out_each_shared_frame() {
        let mut r = ring(4, 1 << 20);
        push_n(&mut r, 6); // retains 3..=6
        let mut out: [Bytes; 3] = Default::default();
        assert_eq!(r.frames(2, &mut out, 100), Err(Read::Lagged { oldest: 3 }));
        assert_eq!(r.frames(7, &mut out, 100), Err(Read::Empty));
        assert_eq!(r.frames(3, &mut out, 100), Ok((3, true)));
        assert_eq!(out, [&b"<3>"[..], b"<4>", b"<5>"]);
        assert_eq!(r.frames(5, &mut out, 100), Ok((2, false)));
        assert_eq!(&out[..2], [&b"<5>"[..], b"<6>"]);
        // The byte cap, but always one event.
        assert_eq!(r.frames(3, &mut out, 6), Ok((2, true)));
        assert_eq!(r.frames(3, &mut out, 1), Ok((1, true)));
        assert_eq!(out[0].as_ptr(), r.frames[0].as_ptr(), "shared, not copied");
        assert_eq!(r.frames(6, &mut out, 1), Ok((1, false)));
    }

    #[test]
    fn a_single_event_is_the_shared_frame() {
        let mut r = ring(4, 1 << 20);
        let frame = Bytes::from_static(b"data: x\n\n");
        r.push(frame.clone());
        match r.read(1, 10, 100) {
            Read::Ready { frame: f, count: 1 } => assert_eq!(f.as_ptr(), frame.as_ptr()),
            other => panic!("{other:?}"),
        }
    }

    fn record(first: u64, count: u64) -> KeyRecord {
        KeyRecord {
            fingerprint: crate::core::idempotency::Fingerprint([7; 16]),
            first,
            count,
        }
    }

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::new(s).unwrap()
    }

    const K: usize = crate::core::idempotency::IDEMPOTENCY_KEY_OVERHEAD;

    #[test]
    fn keys_go_with_the_last_event_they_published() {
        let mut r = ring(3, 1 << 20);
        push_n(&mut r, 1); // <1>
        assert_eq!(r.remember(key("a"), record(1, 1)), (1 + K, 0));
        push_n(&mut r, 2); // <2> <3>, one batch
        r.remember(key("bc"), record(2, 2));
        assert_eq!(r.bytes(), 9 + 1 + K + 2 + K);
        assert_eq!(r.key_count(), 2);
        // <4> evicts <1>, and "a" with it.
        assert_eq!(r.push(Bytes::from_static(b"<4>")), 3 + 1 + K);
        assert!(r.key("a").is_none());
        // <5> evicts <2>: "bc" stays with <3>.
        assert_eq!(r.push(Bytes::from_static(b"<5>")), 3);
        assert_eq!(r.key("bc"), Some(&record(2, 2)));
        assert_eq!(r.push(Bytes::from_static(b"<6>")), 3 + 2 + K);
        assert_eq!((r.key_count(), r.bytes()), (0, 9));
    }

    #[test]
    fn keys_count_against_the_byte_bound() {
        // Room for three 3-byte frames, or two and a 1-byte key.
        let mut r = ring(100, 9 + 1 + K - 3);
        push_n(&mut r, 3);
        assert_eq!(r.oldest(), Some(1));
        // The key pushes the ring over its bound: the oldest event goes,
        // never the key's own.
        let (added, evicted) = r.remember(key("c"), record(3, 1));
        assert_eq!((added, evicted), (1 + K, 3));
        assert_eq!((r.oldest(), r.bytes()), (Some(2), 6 + 1 + K));
        // Trimming everything forgets the key too.
        assert_eq!(r.trim_to_bytes(0), 6 + 1 + K);
        assert_eq!((r.key_count(), r.bytes(), r.len()), (0, 0, 0));
    }

    #[test]
    fn a_new_history_has_no_keys() {
        let mut r = ring(10, 1 << 20);
        push_n(&mut r, 2);
        r.remember(key("x"), record(2, 1));
        assert_eq!(r.restart("f".parse().unwrap(), 1), 6 + 1 + K);
        assert!(r.key("x").is_none());
        assert_eq!(r.bytes(), 0);
    }
}
