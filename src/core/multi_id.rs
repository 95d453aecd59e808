//! The id of an event on a stream of several topics: one position per
//! topic, so that one `Last-Event-ID` resumes every topic of the stream.
//!
//! A multi-topic stream follows its topics in the order the client listed
//! them. The id of each of its events holds a check of that list, then,
//! for every topic, the id of the last event of that topic the stream has
//! sent (or of the position it started from): `<epoch>-<seq>` as in a
//! single-topic id, the parts joined by `.`, and the epoch written only
//! where it differs from the part before:
//!
//! ```text
//! 0x7k2_k3f9x2ab-1041.17.0.k3f9x2ab1-5.9
//! ```
//!
//! is the stream of five topics whose list checks as `0x7k2`: topic 1 at
//! `k3f9x2ab-1041`, topic 2 at `k3f9x2ab-17`, topic 3 at `k3f9x2ab-0`
//! (before its first event), topic 4 at `k3f9x2ab1-5` (a topic re-created
//! under another epoch) and topic 5 at `k3f9x2ab1-9`. The check is
//! [`CHECK_LEN`] base-36 characters of a hash of the topics' names in the
//! stream's order: an id used with another list of topics, or with the
//! same topics in another order, is told apart (but for a chance of one in
//! 60 million) instead of resuming each topic from another topic's
//! position. The id of a stream of one topic is a plain [`EventId`]. Only
//! this spelling is an id: an epoch repeated where it could be left out, a
//! sequence with a leading zero, or a number of parts other than the
//! number of topics is refused.

use std::fmt;

use bytes::{BufMut, BytesMut};

use crate::core::id::{Epoch, EventId, IdError, MAX_ID_LEN, parse_seq};

/// The id of an event on a stream of several topics: an [`EventId`] per
/// topic, in the order of the stream's topics.
///
/// # Examples
///
/// ```
/// use ssehub::core::{MultiId, MultiIdError};
///
/// let topics = ["a", "b", "c", "d"];
/// let ids = ["k3f9-12", "k3f9-0", "abc-7", "abc-8"].map(|i| i.parse().unwrap());
/// let id = MultiId::new(&topics, ids.to_vec());
/// let text = id.to_string();
/// assert!(text.ends_with("_k3f9-12.0.abc-7.8"), "{text}");
/// assert_eq!(MultiId::parse(&text, &topics)?, id);
///
/// // The id of other topics, or of these in another order, is refused.
/// let swapped = ["b", "a", "c", "d"];
/// assert_eq!(MultiId::parse(&text, &swapped), Err(MultiIdError::OtherTopics));
/// # Ok::<(), ssehub::core::MultiIdError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MultiId {
    /// The check of the stream's list of topics (see [`topics_check`]).
    check: u32,
    ids: Vec<EventId>,
}

/// The length of the check of a list of topics at the start of the id of
/// a stream of several topics.
pub(crate) const CHECK_LEN: usize = 5;

/// 36 to the power of [`CHECK_LEN`].
const CHECK_RANGE: u64 = 36u64.pow(CHECK_LEN as u32);

/// The check of a list of topic names, in order: FNV-1a over the names,
/// each followed by a newline (which no topic name contains), folded into
/// [`CHECK_LEN`] base-36 characters.
pub(crate) fn topics_check<T: AsRef<str>>(topics: &[T]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in topics {
        for &b in t.as_ref().as_bytes().iter().chain(b"\n") {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // The high bits of FNV-1a mix best.
    ((h >> 16) % CHECK_RANGE) as u32
}

/// The characters of the check, in base-36 order.
const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn write_check(check: u32, out: &mut Vec<u8>) {
    let mut buf = [0u8; CHECK_LEN];
    let mut n = check;
    for b in buf.iter_mut().rev() {
        *b = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    out.extend_from_slice(&buf);
}

/// The check of `topics` and the `_` that follows it, as ids start.
#[cfg(test)]
pub(crate) fn check_prefix<T: AsRef<str>>(topics: &[T]) -> String {
    let mut out = Vec::new();
    write_check(topics_check(topics), &mut out);
    out.push(b'_');
    String::from_utf8(out).unwrap_or_default()
}

fn read_check(s: &str) -> Option<u32> {
    if s.len() != CHECK_LEN {
        return None;
    }
    s.bytes().try_fold(0u32, |n, b| {
        let d = DIGITS.iter().position(|&c| c == b)? as u32;
        Some(n * 36 + d)
    })
}

impl MultiId {
    /// The id of the stream of `topics` (in the stream's order) at these
    /// positions, one per topic.
    ///
    /// # Panics
    ///
    /// If `ids` is empty (a stream has at least one topic), or if there
    /// are not as many `ids` as `topics`.
    #[track_caller]
    pub fn new<T: AsRef<str>>(topics: &[T], ids: Vec<EventId>) -> Self {
        assert!(!ids.is_empty(), "a multi-topic id has at least one part");
        assert_eq!(topics.len(), ids.len(), "one position per topic");
        MultiId {
            check: topics_check(topics),
            ids,
        }
    }

    /// Parses the id of the stream of `topics`, in the stream's order.
    ///
    /// # Errors
    ///
    /// [`MultiIdError`] says what is wrong: the length, the check of the
    /// topics, the number of parts, or which part.
    pub fn parse<T: AsRef<str>>(s: &str, topics: &[T]) -> Result<Self, MultiIdError> {
        let n = topics.len();
        if s.len() > max_len(n) {
            return Err(MultiIdError::TooLong);
        }
        let check = topics_check(topics);
        let s = if n > 1 {
            let Some((written, rest)) = s.split_once('_') else {
                return Err(MultiIdError::NoCheck);
            };
            if read_check(written) != Some(check) {
                return Err(MultiIdError::OtherTopics);
            }
            rest
        } else {
            s
        };
        let topics = n;
        let found = s.split('.').count();
        if found != topics {
            return Err(MultiIdError::Count {
                expected: topics,
                found,
            });
        }
        let mut ids: Vec<EventId> = Vec::with_capacity(topics);
        for (index, part) in s.split('.').enumerate() {
            let bad = |error| MultiIdError::Part { index, error };
            let id = match (part.contains('-'), ids.last()) {
                (true, prev) => {
                    let id = part.parse::<EventId>().map_err(bad)?;
                    if prev.is_some_and(|p| p.epoch() == id.epoch()) {
                        return Err(MultiIdError::RepeatedEpoch { index });
                    }
                    id
                }
                (false, Some(prev)) => EventId::new(prev.epoch(), parse_seq(part).map_err(bad)?),
                (false, None) => return Err(bad(IdError::MissingSeparator)),
            };
            ids.push(id);
        }
        Ok(MultiId { check, ids })
    }

    /// The position of each topic, in the stream's order.
    pub fn ids(&self) -> &[EventId] {
        &self.ids
    }

    /// Its parts: the positions.
    pub fn into_ids(self) -> Vec<EventId> {
        self.ids
    }
}

/// The longest id of a stream of `topics` topics: every part with an
/// epoch of its own, of the longest kind, and a sequence number of 20
/// digits, and the check.
pub(crate) fn max_len(topics: usize) -> usize {
    let parts = topics.saturating_mul(MAX_ID_LEN + 1);
    if topics > 1 {
        parts.saturating_add(CHECK_LEN)
    } else {
        parts.saturating_sub(1)
    }
}

impl fmt::Display for MultiId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = MultiIdText::with_check(self.check, self.ids.iter().copied());
        // Only ASCII digits, letters, `-` and `.` are ever written.
        f.write_str(std::str::from_utf8(text.as_bytes()).unwrap_or_default())
    }
}

impl fmt::Debug for MultiId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MultiId({self})")
    }
}

/// Why a string is not the [`MultiId`] of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MultiIdError {
    /// Longer than any id of a stream of that many topics can be.
    TooLong,
    /// The id of a stream of several topics without the check of its
    /// topics (as ids were written before the check was added).
    NoCheck,
    /// The id of another list of topics, or of these in another order.
    OtherTopics,
    /// It has another number of parts than the stream has topics.
    Count {
        /// The number of topics of the stream.
        expected: usize,
        /// The number of `.`-separated parts.
        found: usize,
    },
    /// Part `index` (from 0) is not an id, or, after the first, a sequence
    /// number.
    Part {
        /// Which part.
        index: usize,
        /// What is wrong with it.
        error: IdError,
    },
    /// Part `index` names the epoch of the part before, which the only
    /// spelling of the id leaves out.
    RepeatedEpoch {
        /// Which part.
        index: usize,
    },
}

impl fmt::Display for MultiIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MultiIdError::TooLong => f.write_str("id is too long for the stream's topics"),
            MultiIdError::NoCheck => f.write_str("id has no check of the stream's topics"),
            MultiIdError::OtherTopics => {
                f.write_str("id is of another list of topics (or of these topics in another order)")
            }
            MultiIdError::Count { expected, found } => write!(
                f,
                "id has {found} part{} for {expected} topic{}",
                if *found == 1 { "" } else { "s" },
                if *expected == 1 { "" } else { "s" }
            ),
            MultiIdError::Part { index, error } => write!(f, "part {}: {error}", index + 1),
            MultiIdError::RepeatedEpoch { index } => {
                write!(
                    f,
                    "part {}: repeats the epoch of the part before",
                    index + 1
                )
            }
        }
    }
}

impl std::error::Error for MultiIdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MultiIdError::Part { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The text of a multi-topic id, kept up to date as the positions move: a
/// stream writes it after every event, and between two events only one
/// topic's sequence number changes, so only those digits are rewritten.
#[derive(Debug, Clone)]
pub(crate) struct MultiIdText {
    text: Vec<u8>,
    /// The check of the stream's topics (written if there are several).
    check: u32,
    /// Where the sequence digits of each part are in `text`.
    seqs: Box<[(u32, u32)]>,
}

impl MultiIdText {
    /// The text of the stream of `topics` at these positions.
    pub(crate) fn new<T: AsRef<str>>(
        topics: &[T],
        ids: impl ExactSizeIterator<Item = EventId>,
    ) -> Self {
        Self::with_check(topics_check(topics), ids)
    }

    fn with_check(check: u32, ids: impl ExactSizeIterator<Item = EventId>) -> Self {
        let mut text = MultiIdText {
            text: Vec::new(),
            check,
            seqs: vec![(0, 0); ids.len()].into_boxed_slice(),
        };
        text.render(ids);
        text
    }

    /// Writes the whole text again (after an epoch changed).
    pub(crate) fn render(&mut self, ids: impl Iterator<Item = EventId>) {
        self.text.clear();
        if self.seqs.len() > 1 {
            write_check(self.check, &mut self.text);
            self.text.push(b'_');
        }
        let mut prev: Option<Epoch> = None;
        for (i, id) in ids.enumerate() {
            if i > 0 {
                self.text.push(b'.');
            }
            if prev != Some(id.epoch()) {
                self.text.extend_from_slice(id.epoch().as_str().as_bytes());
                self.text.push(b'-');
            }
            prev = Some(id.epoch());
            let start = self.text.len();
            self.text
                .extend_from_slice(itoa::Buffer::new().format(id.seq()).as_bytes());
            self.seqs[i] = (start as u32, self.text.len() as u32);
        }
    }

    /// Sets the sequence number of part `i`, whose epoch is unchanged.
    pub(crate) fn set_seq(&mut self, i: usize, seq: u64) {
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(seq).as_bytes();
        let (start, end) = self.seqs[i];
        let (start, end) = (start as usize, end as usize);
        if digits.len() == end - start {
            self.text[start..end].copy_from_slice(digits);
            return;
        }
        self.text.splice(start..end, digits.iter().copied());
        let shift = digits.len() as i64 - (end - start) as i64;
        self.seqs[i].1 = (start + digits.len()) as u32;
        for span in &mut self.seqs[i + 1..] {
            span.0 = (span.0 as i64 + shift) as u32;
            span.1 = (span.1 as i64 + shift) as u32;
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    /// Appends the text to `buf`.
    pub(crate) fn write_to(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> EventId {
        s.parse().unwrap()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    /// `text` with the check of `n` topics `t0`, `t1`... in front.
    fn checked(text: &str, n: usize) -> String {
        if n < 2 {
            return text.to_owned();
        }
        let mut out = Vec::new();
        write_check(topics_check(&names(n)), &mut out);
        format!("{}_{text}", String::from_utf8(out).unwrap())
    }

    #[test]
    fn round_trip_and_epochs_written_once() {
        let cases: &[(&[&str], &str)] = &[
            (&["a-0"], "a-0"),
            (&["k3f9-12", "k3f9-0", "k3f9-5"], "k3f9-12.0.5"),
            (&["a-1", "b-2", "b-3", "a-4"], "a-1.b-2.3.a-4"),
            (
                &[
                    "zzzzzzzzzzzzzzzz-18446744073709551615",
                    "zzzzzzzzzzzzzzzz-1",
                ],
                "zzzzzzzzzzzzzzzz-18446744073709551615.1",
            ),
        ];
        for (parts, text) in cases {
            let topics = names(parts.len());
            let m = MultiId::new(&topics, parts.iter().map(|p| id(p)).collect());
            let text = checked(text, parts.len());
            assert_eq!(m.to_string(), text);
            assert_eq!(MultiId::parse(&text, &topics), Ok(m));
        }
    }

    #[test]
    fn rejects_what_is_not_the_id_of_the_stream() {
        use IdError::*;
        use MultiIdError::*;
        let cases = [
            (
                "",
                1,
                Part {
                    index: 0,
                    error: MissingSeparator,
                },
            ),
            (
                "",
                2,
                Count {
                    expected: 2,
                    found: 1,
                },
            ),
            (
                "a-1",
                2,
                Count {
                    expected: 2,
                    found: 1,
                },
            ),
            (
                "a-1.2.3",
                2,
                Count {
                    expected: 2,
                    found: 3,
                },
            ),
            (
                "a-1.",
                2,
                Part {
                    index: 1,
                    error: BadSeq,
                },
            ),
            (
                ".1",
                2,
                Part {
                    index: 0,
                    error: MissingSeparator,
                },
            ),
            (
                "5.6",
                2,
                Part {
                    index: 0,
                    error: MissingSeparator,
                },
            ),
            (
                "a-1.02",
                2,
                Part {
                    index: 1,
                    error: BadSeq,
                },
            ),
            (
                "a-1.+2",
                2,
                Part {
                    index: 1,
                    error: BadSeq,
                },
            ),
            (
                "a-1.x",
                2,
                Part {
                    index: 1,
                    error: BadSeq,
                },
            ),
            (
                "a-1.B-2",
                2,
                Part {
                    index: 1,
                    error: BadEpoch,
                },
            ),
            ("a-1.a-2", 2, RepeatedEpoch { index: 1 }),
            ("a-1.b-2.b-3", 3, RepeatedEpoch { index: 2 }),
            (
                "a-1.18446744073709551616",
                2,
                Part {
                    index: 1,
                    error: BadSeq,
                },
            ),
        ];
        for (input, topics, want) in cases {
            let input = checked(input, topics);
            assert_eq!(
                MultiId::parse(&input, &names(topics)),
                Err(want),
                "{input:?}"
            );
        }
        let long = format!("a-1{}", ".1".repeat(40));
        assert_eq!(MultiId::parse(&long, &names(1)), Err(MultiIdError::TooLong));
        let long41 = checked(&long, 41);
        assert_eq!(MultiId::parse(&long41, &names(41)).unwrap().ids().len(), 41);
        // Ids of two topics or more carry the check of their list.
        assert_eq!(MultiId::parse("a-1.2", &names(2)), Err(NoCheck));
        assert_eq!(
            MultiId::parse(&checked("a-1.2", 2), &["t1", "t0"]),
            Err(OtherTopics)
        );
        assert_eq!(
            MultiId::parse(&checked("a-1.2", 2), &["t0", "t2"]),
            Err(OtherTopics)
        );
        assert_eq!(MultiId::parse("zzzzz_a-1.2", &names(2)), Err(OtherTopics));
    }

    #[test]
    fn errors_say_which_part() {
        let e = MultiId::parse(&checked("a-1.x", 2), &names(2)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "part 2: event id has an invalid sequence number"
        );
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            MultiId::parse(&checked("a-1", 3), &names(3))
                .unwrap_err()
                .to_string(),
            "id has 1 part for 3 topics"
        );
    }

    /// Rewriting one part at a time gives the text of the whole id.
    #[test]
    fn set_seq_keeps_the_text_of_the_positions() {
        let mut ids = vec![id("ab-9"), id("ab-0"), id("cd-99"), id("cd-5")];
        let topics = names(4);
        let mut text = MultiIdText::new(&topics, ids.iter().copied());
        let mut rng = 0x9e3779b97f4a7c15u64;
        for _ in 0..2000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let i = (rng % 4) as usize;
            let seq = match rng % 3 {
                0 => ids[i].seq() + 1,
                1 => (rng >> 8) % 1_000_000,
                _ => (rng >> 8) % 12,
            };
            ids[i] = EventId::new(ids[i].epoch(), seq);
            text.set_seq(i, seq);
            assert_eq!(
                text.as_bytes(),
                MultiId::new(&topics, ids.clone()).to_string().as_bytes()
            );
        }
    }

    /// The longest id of a stream is within [`max_len`]: every topic with
    /// an epoch of its own of 16 characters and the largest sequence.
    #[test]
    fn the_worst_id_is_max_len_long() {
        for n in [1, 2, 3, 64, 200] {
            let ids: Vec<EventId> = (0..n)
                .map(|i| {
                    let epoch = format!("{:a>16}", i % 2);
                    EventId::new(epoch.parse().unwrap(), u64::MAX)
                })
                .collect();
            let text = MultiId::new(&names(n), ids).to_string();
            assert_eq!(text.len(), max_len(n), "{n} topics");
            assert!(MultiId::parse(&text, &names(n)).is_ok());
        }
    }
}
