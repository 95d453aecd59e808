//! Idempotency keys: a publisher's name for one logical publish, so that
//! retrying it after a lost answer publishes nothing new.
//!
//! A publisher sends the same [`IdempotencyKey`] with every attempt of one
//! publish (`Idempotency-Key` over HTTP, after
//! [draft-ietf-httpapi-idempotency-key-header]). The first attempt that
//! succeeds publishes and its key is remembered with the request's
//! [`Fingerprint`] and the ids it got; a later attempt with the same key and
//! the same fingerprint gets those ids again and publishes nothing, one with
//! another fingerprint is refused.
//!
//! Keys belong to a topic's history: a key is remembered at least as long
//! as the events it published are retained, and forgotten with the last of
//! them. In memory they are kept by the ring ([`Keys`]), so they count
//! against its bounds; the disk and Redis stores keep them next to the
//! events, written in the same atomic step.
//!
//! [draft-ietf-httpapi-idempotency-key-header]: https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::core::event::Event;

/// The longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// What the memory store counts for one remembered key beyond the key's
/// own bytes: its record, its index entry and its place in the eviction
/// order, with the tables' growth slack and the allocator's rounding (a
/// unit test computes the real footprint from the tables' capacities and
/// checks that this covers it).
pub const IDEMPOTENCY_KEY_OVERHEAD: usize = 192;

/// A validated idempotency key: 1 to 255 visible ASCII characters
/// (`!` to `~`; no spaces, no control characters).
///
/// Cheap to clone.
///
/// # Examples
///
/// ```
/// use ssehub::core::IdempotencyKey;
///
/// let key = IdempotencyKey::new("8e03978e-40d5-43e8-bc93-6894a57f9324")?;
/// // The header accepts the draft's quoted form and a bare token alike.
/// assert_eq!(IdempotencyKey::from_header(br#""8e03978e-40d5-43e8-bc93-6894a57f9324""#)?, key);
/// assert_eq!(IdempotencyKey::from_header(b"8e03978e-40d5-43e8-bc93-6894a57f9324")?, key);
/// assert!(IdempotencyKey::new("two words").is_err());
/// # Ok::<(), ssehub::core::InvalidIdempotencyKey>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    /// Validates `key`.
    ///
    /// # Errors
    ///
    /// [`InvalidIdempotencyKey`] if it is empty, longer than
    /// [`MAX_IDEMPOTENCY_KEY_LEN`], or has a character that is not visible
    /// ASCII.
    pub fn new(key: &str) -> Result<Self, InvalidIdempotencyKey> {
        if key.is_empty() {
            return Err(InvalidIdempotencyKey::Empty);
        }
        if key.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(InvalidIdempotencyKey::TooLong);
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidIdempotencyKey::Character);
        }
        Ok(IdempotencyKey(key.into()))
    }

    /// Reads the value of an `Idempotency-Key` header: a Structured Field
    /// string (`"..."`, RFC 8941, with `\"` and `\\` escapes) as the draft
    /// specifies, or the key bare (as `curl -H 'Idempotency-Key: abc'`
    /// sends it). Spaces and tabs around the value are ignored. Both forms
    /// name the same key: `"abc"` and `abc` are one key.
    ///
    /// # Errors
    ///
    /// [`InvalidIdempotencyKey`]: a quoted string that is not well formed,
    /// or a key [`IdempotencyKey::new`] refuses.
    pub fn from_header(value: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        let value = value.trim_ascii();
        let Some(quoted) = value.strip_prefix(b"\"") else {
            let key = std::str::from_utf8(value).map_err(|_| InvalidIdempotencyKey::Character)?;
            return IdempotencyKey::new(key);
        };
        let mut key = Vec::with_capacity(quoted.len());
        let mut bytes = quoted.iter();
        loop {
            match bytes.next() {
                Some(b'\\') => match bytes.next() {
                    Some(&c @ (b'"' | b'\\')) => key.push(c),
                    _ => return Err(InvalidIdempotencyKey::Quoting),
                },
                Some(b'"') if bytes.as_slice().is_empty() => break,
                Some(b'"') | None => return Err(InvalidIdempotencyKey::Quoting),
                // A string may hold spaces; a key may not (refused below).
                Some(&c) if c == b' ' || c.is_ascii_graphic() => key.push(c),
                Some(_) => return Err(InvalidIdempotencyKey::Character),
            }
        }
        // Only ASCII was pushed.
        let key = String::from_utf8(key).map_err(|_| InvalidIdempotencyKey::Character)?;
        IdempotencyKey::new(&key)
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// `Hash` agrees with `Borrow<str>`: a map of keys is searched with a `&str`.
impl Hash for IdempotencyKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Borrow<str> for IdempotencyKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for IdempotencyKey {
    type Err = InvalidIdempotencyKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdempotencyKey::new(s)
    }
}

/// Why an idempotency key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidIdempotencyKey {
    /// The key is empty.
    Empty,
    /// The key is longer than [`MAX_IDEMPOTENCY_KEY_LEN`].
    TooLong,
    /// A character that is not visible ASCII (a space, a control
    /// character, anything beyond ASCII).
    Character,
    /// A quoted form that is not a well-formed Structured Field string.
    Quoting,
}

impl fmt::Display for InvalidIdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidIdempotencyKey::Empty => "invalid Idempotency-Key: empty",
            InvalidIdempotencyKey::TooLong => "invalid Idempotency-Key: longer than 255 characters",
            InvalidIdempotencyKey::Character => {
                "invalid Idempotency-Key: only visible ASCII characters are allowed"
            }
            InvalidIdempotencyKey::Quoting => "invalid Idempotency-Key: malformed quoted string",
        })
    }
}

impl std::error::Error for InvalidIdempotencyKey {}

/// What a publish request publishes, hashed: two attempts with the same
/// key are the same request when their fingerprints are equal.
///
/// It covers exactly what changes the outcome: whether the request was
/// one event or a batch (which shapes the answer), and each event's type
/// and data, in order. It is stable across processes and versions (the
/// disk and Redis stores keep it): the first 16 bytes of a SHA-256 over a
/// versioned, length-prefixed encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Fingerprint(pub(crate) [u8; 16]);

impl Fingerprint {
    /// The fingerprint of publishing `events`, as one event (`batch ==
    /// false`, exactly one event) or as a batch.
    pub(crate) fn of(batch: bool, events: &[Event]) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(b"ssehub idempotency v1\0");
        h.update([u8::from(batch)]);
        h.update((events.len() as u64).to_be_bytes());
        for e in events {
            match e.event_type() {
                Some(t) => {
                    h.update([1]);
                    h.update((t.len() as u64).to_be_bytes());
                    h.update(t.as_bytes());
                }
                None => h.update([0]),
            }
            h.update((e.data().len() as u64).to_be_bytes());
            h.update(e.data().as_bytes());
        }
        let digest = h.finalize();
        let mut out = [0; 16];
        out.copy_from_slice(&digest[..16]);
        Fingerprint(out)
    }

    /// Lowercase hex, as Redis keeps it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn to_hex(self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            s.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        s
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

/// What a store found for a publish with an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyed<T> {
    /// The key was free: the events were published now.
    Fresh(T),
    /// The key was used for the same request: nothing was published now,
    /// and this is what the first one got.
    Replayed(T),
    /// The key was used for a different request: nothing was published.
    Conflict,
}

/// What a key was remembered with: the request's fingerprint and the ids
/// its events got (`first..first + count` of the history's epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyRecord {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) first: u64,
    pub(crate) count: u64,
}

impl KeyRecord {
    /// The last event the key published.
    fn last(&self) -> u64 {
        (self.first + self.count).saturating_sub(1)
    }
}

/// The keys of one in-memory history, forgotten with the last event each
/// published (the ring calls [`Keys::forget_before`] as it evicts).
///
/// Every key costs its length plus [`IDEMPOTENCY_KEY_OVERHEAD`] bytes in
/// [`Keys::bytes`], which the ring counts with its frames, so the ring's
/// byte bounds cover its keys too. At most one key per retained event.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    records: HashMap<IdempotencyKey, KeyRecord>,
    /// Keys by the last event they published, oldest first (publishes
    /// come in order, so this is insertion order).
    order: VecDeque<(u64, IdempotencyKey)>,
    bytes: usize,
}

impl Keys {
    /// What one key costs.
    pub(crate) fn cost(key: &IdempotencyKey) -> usize {
        key.as_str().len() + IDEMPOTENCY_KEY_OVERHEAD
    }

    pub(crate) fn get(&self, key: &str) -> Option<&KeyRecord> {
        self.records.get(key)
    }

    /// Remembers `key` (not yet known) for events `record.first..`; returns
    /// the bytes it costs. A record of no events is not kept.
    pub(crate) fn insert(&mut self, key: IdempotencyKey, record: KeyRecord) -> usize {
        if record.count == 0 {
            return 0;
        }
        if self.records.contains_key(key.as_str()) {
            // The caller looks first; the first record stays.
            return 0;
        }
        let cost = Keys::cost(&key);
        self.order.push_back((record.last(), key.clone()));
        self.records.insert(key, record);
        self.bytes += cost;
        cost
    }

    /// Forgets the keys whose last event is before `first`; returns the
    /// bytes freed.
    pub(crate) fn forget_before(&mut self, first: u64) -> usize {
        let mut freed = 0;
        while let Some((last, _)) = self.order.front() {
            if *last >= first {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.records.remove(key.as_str());
                freed += Keys::cost(&key);
            }
        }
        self.bytes -= freed;
        // Tables do not shrink by themselves: give back what a past peak
        // left once it is mostly unused (amortised: it takes as many
        // evictions as the table has room for).
        let len = self.records.len();
        if self.records.capacity() > 64 && len * 4 < self.records.capacity() {
            self.records.shrink_to(len * 2);
            self.order.shrink_to(len * 2);
        }
        freed
    }

    /// Forgets every key; returns the bytes freed.
    pub(crate) fn clear(&mut self) -> usize {
        let freed = self.bytes;
        *self = Keys::default();
        freed
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Bytes counted for the keys held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> IdempotencyKey {
        IdempotencyKey::new(s).unwrap()
    }

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert_eq!(key("a").as_str(), "a");
        assert!(IdempotencyKey::new(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::new("!~{}\"\\").is_ok());
        use InvalidIdempotencyKey::*;
        assert_eq!(IdempotencyKey::new(""), Err(Empty));
        assert_eq!(IdempotencyKey::new(&"k".repeat(256)), Err(TooLong));
        for bad in ["a b", "a\tb", "\u{7f}", "é", "a\0", "a\n"] {
            assert_eq!(IdempotencyKey::new(bad), Err(Character), "{bad:?}");
        }
    }

    #[test]
    fn the_header_takes_a_structured_field_string_or_a_bare_key() {
        let h = |v: &[u8]| IdempotencyKey::from_header(v);
        assert_eq!(h(b"abc").unwrap(), key("abc"));
        assert_eq!(h(br#""abc""#).unwrap(), key("abc"));
        assert_eq!(h(b"  \"abc\"\t").unwrap(), key("abc"));
        assert_eq!(h(br#""a\"b\\c""#).unwrap(), key(r#"a"b\c"#));
        // A bare key may contain quotes and backslashes after its start.
        assert_eq!(h(br#"a"b\c"#).unwrap(), key(r#"a"b\c"#));
        use InvalidIdempotencyKey::*;
        for (bad, why) in [
            (&b""[..], Empty),
            (b"\"\"", Empty),
            (b"\"abc", Quoting),
            (b"\"abc\"def", Quoting),
            (b"\"a\"b\"", Quoting),
            (br#""a\nb""#, Quoting),
            (b"\"a\\", Quoting),
            (b"\"a b\"", Character),
            (b"\"a\x01\"", Character),
            (b"a b", Character),
            (b"\xff", Character),
            (b"\"\xc3\xa9\"", Character),
        ] {
            assert_eq!(h(bad), Err(why), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("\"{}\"", "k".repeat(256));
        assert_eq!(h(long.as_bytes()), Err(TooLong));
        for e in [Empty, TooLong, Character, Quoting] {
            assert!(e.to_string().starts_with("invalid Idempotency-Key: "));
        }
    }

    #[test]
    fn fingerprints_cover_shape_types_data_and_order() {
        let a = Event::new("a");
        let b = Event::new("b");
        let typed = Event::new("a").with_type("t").unwrap();
        let one = |e: &Event| Fingerprint::of(false, std::slice::from_ref(e));
        let fp = Fingerprint::of;
        assert_eq!(one(&a), one(&Event::new("a")));
        assert_ne!(one(&a), fp(true, std::slice::from_ref(&a)), "shape");
        assert_ne!(one(&a), one(&typed), "type");
        assert_ne!(one(&a), one(&b), "data");
        assert_ne!(
            fp(true, &[a.clone(), b.clone()]),
            fp(true, &[b.clone(), a.clone()]),
            "order"
        );
        // Lengths are framed: moving bytes between fields changes it.
        let ab = Event::new("ab");
        assert_ne!(
            fp(true, &[a.clone(), b.clone()]),
            fp(true, &[ab, Event::new("")])
        );
        // Stable across runs and versions (stores keep it): a golden value.
        // (computed independently: sha256 of the encoding, in Python)
        assert_eq!(
            fp(false, &[typed]).to_hex(),
            "bffec44c23581a6ee2a9b1f9c85f1252"
        );
    }

    /// What `keys` takes on the heap, from the tables' capacities and the
    /// key allocations, rounded as glibc's malloc rounds (8 bytes of
    /// header, 16-byte steps, 32 at least).
    fn footprint(keys: &Keys) -> usize {
        let alloc = |n: usize| ((n + 8).div_ceil(16) * 16).max(32);
        let entry = std::mem::size_of::<(IdempotencyKey, KeyRecord)>();
        // hashbrown: one control byte per bucket, plus a group's worth;
        // capacity() is 7/8 of the buckets (or buckets - 1 when small).
        let buckets = (keys.records.capacity() * 8 / 7).next_power_of_two();
        let map = alloc(buckets * (entry + 1) + 16);
        let order = alloc(keys.order.capacity() * std::mem::size_of::<(u64, IdempotencyKey)>());
        let strings: usize = keys
            .order
            .iter()
            .map(|(_, k)| alloc(16 + k.as_str().len()))
            .sum();
        map + order + strings
    }

    #[test]
    fn the_overhead_covers_what_keys_really_take() {
        for len in [4, 36, 255] {
            let mut keys = Keys::default();
            let mut worst: f64 = 0.0;
            for n in 1..=5000u64 {
                let k = IdempotencyKey::new(&format!("{n:0>len$}")).unwrap();
                let record = KeyRecord {
                    fingerprint: Fingerprint([0; 16]),
                    first: n,
                    count: 1,
                };
                keys.insert(k, record);
                assert_eq!(keys.bytes(), n as usize * (len + IDEMPOTENCY_KEY_OVERHEAD));
                // Tiny tables cost their minimum whatever they hold.
                if n >= 8 {
                    let real = footprint(&keys);
                    assert!(
                        real <= keys.bytes(),
                        "{n} keys of {len}: {real} > {}",
                        keys.bytes()
                    );
                    worst = worst.max(real as f64 / n as f64 - len as f64);
                }
            }
            assert!(
                worst > IDEMPOTENCY_KEY_OVERHEAD as f64 * 0.75,
                "{worst}: too generous"
            );
        }
    }

    #[test]
    fn keys_are_forgotten_with_their_last_event() {
        let mut keys = Keys::default();
        let rec = |first, count| KeyRecord {
            fingerprint: Fingerprint([0; 16]),
            first,
            count,
        };
        let added = keys.insert(key("one"), rec(1, 1));
        assert_eq!(added, 3 + IDEMPOTENCY_KEY_OVERHEAD);
        keys.insert(key("batch"), rec(2, 3)); // events 2, 3, 4
        keys.insert(key("five"), rec(5, 1));
        assert_eq!(keys.insert(key("none"), rec(6, 0)), 0, "no events");
        assert!(keys.get("none").is_none());
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.forget_before(2), 3 + IDEMPOTENCY_KEY_OVERHEAD);
        assert!(keys.get("one").is_none());
        // Part of the batch evicted: the key stays with its last event.
        assert_eq!(keys.forget_before(4), 0);
        assert_eq!(keys.get("batch"), Some(&rec(2, 3)));
        assert_eq!(keys.forget_before(5), 5 + IDEMPOTENCY_KEY_OVERHEAD);
        assert_eq!(keys.bytes(), 4 + IDEMPOTENCY_KEY_OVERHEAD);
        assert_eq!(keys.clear(), 4 + IDEMPOTENCY_KEY_OVERHEAD);
        assert!(keys.is_empty());
        assert_eq!(keys.bytes(), 0);
    }

    #[test]
    fn tables_shrink_when_a_peak_has_passed() {
        let mut keys = Keys::default();
        for n in 1..=4096 {
            let record = KeyRecord {
                fingerprint: Fingerprint([0; 16]),
                first: n,
                count: 1,
            };
            keys.insert(IdempotencyKey::new(&n.to_string()).unwrap(), record);
        }
        let peak = footprint(&keys);
        keys.forget_before(4000);
        assert_eq!(keys.len(), 97);
        assert!(
            footprint(&keys) < peak / 20,
            "{} of {peak}",
            footprint(&keys)
        );
        assert!(footprint(&keys) <= keys.bytes() * 2);
        assert!(keys.get("4000").is_some() && keys.get("3999").is_none());
    }
}
