//! Offsets of Durable Streams: where a reader stands in a stream.
//!
//! An offset is `GGGGGGGGGGGGGGGG_SSSSSSSSSSSSSSSS`: two numbers of 16
//! digits. `G` is the stream's **generation**, fresh for every create (a
//! re-created path never repeats an offset of the old one); `S` is how many
//! messages precede the position, so `S` is also the hub sequence number of
//! the last message read. Offsets of one stream sort as strings in the
//! order of the stream, as the protocol requires.
//!
//! A fork answers its own generation, and also accepts its source's
//! offsets up to the fork point: they name the same positions (see
//! [`Generations`]).

use std::fmt;

/// The widest number in an offset, in digits.
const DIGITS: usize = 16;

/// A position in a stream: after message `seq` of generation `gen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Offset {
    pub(crate) generation: u64,
    pub(crate) seq: u64,
}

impl Offset {
    /// `0000000000000000_0000000000000000`: before the first message of
    /// any stream.
    pub(crate) const ZERO: Offset = Offset {
        generation: 0,
        seq: 0,
    };

    /// Parses `G_S` (1 to 16 digits each).
    pub(crate) fn parse(s: &str) -> Option<Offset> {
        let (g, s) = s.split_once('_')?;
        Some(Offset {
            generation: number(g)?,
            seq: number(s)?,
        })
    }
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016}_{:016}", self.generation, self.seq)
    }
}

/// Where a read starts, from its `offset` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// `-1`, the zero offset, or no parameter: the oldest retained message.
    Beginning,
    /// `now`: the tail.
    Now,
    /// After a message.
    At(Offset),
}

impl Start {
    /// Parses an `offset` parameter.
    pub(crate) fn parse(s: &str) -> Option<Start> {
        match s {
            "-1" => Some(Start::Beginning),
            "now" => Some(Start::Now),
            _ => match Offset::parse(s)? {
                Offset::ZERO => Some(Start::Beginning),
                o => Some(Start::At(o)),
            },
        }
    }
}

/// The generations whose offsets a stream accepts: its own (any seq), and
/// for a fork each ancestor's up to where the fork left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generations {
    /// The stream's own.
    pub(crate) own: u64,
    /// `(generation, last seq)` of the streams it was forked from, nearest
    /// first.
    pub(crate) inherited: Vec<(u64, u64)>,
}

/// Why an offset names no position of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OffsetError {
    /// From an older incarnation of the path, or older than retention
    /// keeps: `410 Gone`.
    Gone,
    /// Never given by this stream (a later generation, past the end):
    /// `400`.
    Unknown,
}

impl Generations {
    pub(crate) fn new(own: u64) -> Self {
        Generations {
            own,
            inherited: Vec::new(),
        }
    }

    /// A fork of a stream with these generations, at `seq`: its own
    /// generation `own`, and every ancestor's offsets up to `seq`.
    pub(crate) fn fork(&self, own: u64, seq: u64) -> Self {
        let mut inherited = vec![(self.own, seq)];
        inherited.extend(self.inherited.iter().map(|&(g, last)| (g, last.min(seq))));
        Generations { own, inherited }
    }

    /// The sequence number an offset stands after, in a stream whose last
    /// message is `last` and whose oldest retained one is `first`
    /// (`last + 1` if none is).
    pub(crate) fn resolve(
        &self,
        offset: Offset,
        first: u64,
        last: u64,
    ) -> Result<u64, OffsetError> {
        let known = offset.generation == self.own
            || self
                .inherited
                .iter()
                .any(|&(g, upto)| g == offset.generation && offset.seq <= upto);
        if !known {
            return Err(if offset.generation < self.own {
                OffsetError::Gone
            } else {
                OffsetError::Unknown
            });
        }
        if offset.seq > last {
            return Err(OffsetError::Unknown);
        }
        if offset.seq + 1 < first {
            return Err(OffsetError::Gone);
        }
        Ok(offset.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_print_as_sortable_fixed_width_strings() {
        let a = Offset {
            generation: 17,
            seq: 9,
        };
        let b = Offset {
            generation: 17,
            seq: 10,
        };
        assert_eq!(a.to_string(), "0000000000000017_0000000000000009");
        assert!(a.to_string() < b.to_string());
        assert_eq!(Offset::parse(&a.to_string()), Some(a));
        assert_eq!(
            Offset::ZERO.to_string(),
            "0000000000000000_0000000000000000"
        );
    }

    #[test]
    fn malformed_offsets_are_refused() {
        for bad in [
            "",
            "_",
            "1_",
            "_1",
            "1__1",
            "a_1",
            "1_1_1",
            " 1_1",
            "1_1 ",
            "1/1",
            "1,1",
            "../1_1",
            "-2",
            "NOW",
            "12345678901234567_1",
            "1_\n1",
            "1_\u{0}1",
        ] {
            assert_eq!(Start::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Start::parse("-1"), Some(Start::Beginning));
        assert_eq!(Start::parse("now"), Some(Start::Now));
        assert_eq!(
            Start::parse("0000000000000000_0000000000000000"),
            Some(Start::Beginning)
        );
        assert_eq!(
            Start::parse("9999999999999999_9999999999999999"),
            Some(Start::At(Offset {
                generation: 9_999_999_999_999_999,
                seq: 9_999_999_999_999_999
            }))
        );
    }

    #[test]
    fn an_offset_resolves_only_in_its_generation_and_range() {
        let g = Generations::new(100);
        let at = |generation, seq| Offset { generation, seq };
        assert_eq!(g.resolve(at(100, 3), 1, 5), Ok(3));
        assert_eq!(g.resolve(at(100, 5), 1, 5), Ok(5));
        assert_eq!(g.resolve(at(100, 6), 1, 5), Err(OffsetError::Unknown));
        assert_eq!(g.resolve(at(99, 1), 1, 5), Err(OffsetError::Gone));
        assert_eq!(g.resolve(at(101, 1), 1, 5), Err(OffsetError::Unknown));
        // Retention dropped messages 1..=3: offset 2 would need 3.
        assert_eq!(g.resolve(at(100, 2), 4, 5), Err(OffsetError::Gone));
        assert_eq!(g.resolve(at(100, 3), 4, 5), Ok(3));
    }

    #[test]
    fn a_fork_accepts_its_ancestors_offsets_up_to_the_fork_point() {
        let source = Generations::new(10);
        let fork = source.fork(20, 4);
        let grandchild = fork.fork(30, 6);
        let at = |generation, seq| Offset { generation, seq };
        assert_eq!(fork.resolve(at(10, 4), 1, 9), Ok(4));
        assert_eq!(fork.resolve(at(10, 5), 1, 9), Err(OffsetError::Gone));
        assert_eq!(grandchild.resolve(at(20, 6), 1, 9), Ok(6));
        assert_eq!(grandchild.resolve(at(10, 4), 1, 9), Ok(4));
        assert_eq!(grandchild.resolve(at(10, 5), 1, 9), Err(OffsetError::Gone));
    }
}
