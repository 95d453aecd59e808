//! Event ids: `<epoch>-<sequence>`, e.g. `k3f9x2ab-1042`.
//!
//! The *epoch* names one history of a topic: a server run for the in-memory
//! store. An id from another epoch is recognised as such, so a client that
//! resumes after a restart is told (`resync`) instead of being handed events
//! of a different history that happen to carry the same number.
//!
//! The *sequence* counts the events of one topic in one epoch: the first is 1
//! and each next event is exactly 1 more. Sequence 0 means "before the first
//! event", so `<epoch>-0` is a valid position to resume from.

use std::fmt;
use std::str::FromStr;

use bytes::{BufMut, BytesMut};

/// The longest epoch, in characters.
pub const MAX_EPOCH_LEN: usize = 16;

/// The longest id: an epoch, `-`, and 20 digits.
pub(crate) const MAX_ID_LEN: usize = MAX_EPOCH_LEN + 1 + 20;

/// The characters of epochs, in base-36 order.
const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// The length of generated epochs: 8 base-36 characters, about 41 bits, so
/// two runs picking the same epoch is a one-in-trillions event.
const GENERATED_EPOCH_LEN: usize = 8;

/// The name of one history of a topic: 1 to 16 characters from `0-9a-z`.
///
/// # Examples
///
/// ```
/// use ssehub::core::Epoch;
///
/// let a = Epoch::generate();
/// let b = Epoch::generate();
/// assert_ne!(a, b);
/// assert_eq!("k3f9".parse::<Epoch>().unwrap().as_str(), "k3f9");
/// assert!("K3F9".parse::<Epoch>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch {
    bytes: [u8; MAX_EPOCH_LEN],
    len: u8,
}

impl Epoch {
    /// A fresh, random epoch (from the operating system's randomness).
    pub fn generate() -> Self {
        let mut n = match getrandom::u64() {
            Ok(n) => n,
            // No OS randomness (a sandbox without getrandom(2) or
            // /dev/urandom): the time and a counter still make every epoch of
            // a process differ, and runs rarely start in the same nanosecond.
            Err(_) => {
                use std::sync::atomic::{AtomicU64, Ordering};
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(48)
            }
        };
        let mut bytes = [0u8; MAX_EPOCH_LEN];
        for b in bytes.iter_mut().take(GENERATED_EPOCH_LEN) {
            *b = DIGITS[(n % 36) as usize];
            n /= 36;
        }
        Epoch {
            bytes,
            len: GENERATED_EPOCH_LEN as u8,
        }
    }

    /// The epoch as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII alphanumerics are ever stored.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    /// Stands in for the epoch of a stream that has not started yet.
    pub(crate) fn placeholder() -> Epoch {
        Epoch {
            bytes: [b'0'; MAX_EPOCH_LEN],
            len: 1,
        }
    }

    /// The epoch of the `n`th re-creation of a topic: this epoch followed
    /// by `n` in base 36 (unchanged for `n == 0`), cut to fit 16 characters.
    pub(crate) fn incarnation(self, n: u64) -> Epoch {
        if n == 0 {
            return self;
        }
        let mut suffix = [0u8; 13];
        let mut i = suffix.len();
        let mut n = n;
        while n > 0 {
            i -= 1;
            suffix[i] = DIGITS[(n % 36) as usize];
            n /= 36;
        }
        let suffix = &suffix[i..];
        let keep = (self.len as usize).min(MAX_EPOCH_LEN - suffix.len());
        let mut bytes = [0u8; MAX_EPOCH_LEN];
        bytes[..keep].copy_from_slice(&self.bytes[..keep]);
        bytes[keep..keep + suffix.len()].copy_from_slice(suffix);
        Epoch {
            bytes,
            len: (keep + suffix.len()) as u8,
        }
    }

    #[cfg(test)]
    pub(crate) fn from_str_unchecked(s: &str) -> Self {
        s.parse().expect("valid test epoch")
    }
}

impl FromStr for Epoch {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > MAX_EPOCH_LEN {
            return Err(IdError::BadEpoch);
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        {
            return Err(IdError::BadEpoch);
        }
        let mut bytes = [0u8; MAX_EPOCH_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Epoch {
            bytes,
            len: b.len() as u8,
        })
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({})", self.as_str())
    }
}

/// The id of one event in one topic: an [`Epoch`] and a sequence number.
///
/// Clients should treat ids as opaque strings; servers parse them to find
/// where a reconnecting client left off.
///
/// # Examples
///
/// ```
/// use ssehub::EventId;
///
/// let id: EventId = "k3f9-1042".parse()?;
/// assert_eq!(id.epoch().as_str(), "k3f9");
/// assert_eq!(id.seq(), 1042);
/// assert_eq!(id.to_string(), "k3f9-1042");
///
/// // Only the canonical spelling is an id.
/// assert!("k3f9-01042".parse::<EventId>().is_err());
/// # Ok::<(), ssehub::core::IdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId {
    epoch: Epoch,
    seq: u64,
}

impl EventId {
    /// The id of event number `seq` of `epoch`.
    pub fn new(epoch: Epoch, seq: u64) -> Self {
        EventId { epoch, seq }
    }

    /// The epoch: which history of the topic this id belongs to.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The sequence number: 1 for the first event of an epoch, 0 for
    /// "before the first event".
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Parses an id.
    ///
    /// # Errors
    ///
    /// [`IdError`] says which part is wrong.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        s.parse()
    }

    pub(crate) fn write_to(&self, buf: &mut BytesMut) {
        buf.put_slice(self.epoch.as_str().as_bytes());
        buf.put_u8(b'-');
        buf.put_slice(itoa::Buffer::new().format(self.seq).as_bytes());
    }
}

impl FromStr for EventId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        if s.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        let (epoch, seq) = s.rsplit_once('-').ok_or(IdError::MissingSeparator)?;
        let epoch = epoch.parse()?;
        let seq = parse_seq(seq)?;
        Ok(EventId { epoch, seq })
    }
}

/// A sequence number in its only spelling: decimal digits, no sign, no
/// leading zero (but `0` itself), within a `u64`.
pub(crate) fn parse_seq(seq: &str) -> Result<u64, IdError> {
    let digits = seq.as_bytes();
    let canonical = match digits {
        [] => false,
        [b'0'] => true,
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return Err(IdError::BadSeq);
    }
    seq.parse().map_err(|_| IdError::BadSeq)
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

/// Why a string is not an [`EventId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdError {
    /// Longer than any id can be.
    TooLong,
    /// No `-` between epoch and sequence.
    MissingSeparator,
    /// The epoch is empty, too long, or has characters other than `0-9a-z`.
    BadEpoch,
    /// The sequence is not a canonical decimal `u64`.
    BadSeq,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdError::TooLong => "event id is too long",
            IdError::MissingSeparator => "event id has no `-` separator",
            IdError::BadEpoch => "event id has an invalid epoch",
            IdError::BadSeq => "event id has an invalid sequence number",
        })
    }
}

impl std::error::Error for IdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for s in ["a-0", "k3f9-1042", "zzzzzzzzzzzzzzzz-18446744073709551615"] {
            assert_eq!(s.parse::<EventId>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed() {
        use IdError::*;
        let cases = [
            ("", MissingSeparator),
            ("1042", MissingSeparator),
            ("-1", BadEpoch),
            ("K3F9-1", BadEpoch),
            ("k3 f9-1", BadEpoch),
            ("k3f9-", BadSeq),
            ("k3f9-+1", BadSeq),
            ("k3f9-01", BadSeq),
            ("k3f9-1a", BadSeq),
            ("k3f9--1", BadEpoch),
            ("k3f9-18446744073709551616", BadSeq),
            ("abcdefghijklmnopq-1", BadEpoch),
            ("é-1", BadEpoch),
        ];
        for (input, err) in cases {
            assert_eq!(input.parse::<EventId>(), Err(err), "{input:?}");
        }
        assert_eq!("a".repeat(300).parse::<EventId>(), Err(TooLong));
    }

    #[test]
    fn generated_epochs_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let e = Epoch::generate();
            assert_eq!(e.as_str().parse::<Epoch>(), Ok(e));
            assert!(seen.insert(e));
        }
    }

    #[test]
    fn incarnations_differ_and_stay_valid() {
        let e = Epoch::from_str_unchecked("k3f9x2ab");
        assert_eq!(e.incarnation(0), e);
        assert_eq!(e.incarnation(1).as_str(), "k3f9x2ab1");
        assert_eq!(e.incarnation(36).as_str(), "k3f9x2ab10");
        let long = Epoch::from_str_unchecked("abcdefghijklmnop");
        let inc = long.incarnation(u64::MAX);
        assert_eq!(inc.as_str().len(), 16);
        assert_eq!(inc.as_str().parse::<Epoch>(), Ok(inc));
        assert_ne!(long.incarnation(1), long.incarnation(2));
    }

    #[test]
    fn write_to_matches_display() {
        let id = EventId::new(Epoch::from_str_unchecked("k3f9"), 1042);
        let mut buf = BytesMut::new();
        id.write_to(&mut buf);
        assert_eq!(&buf[..], id.to_string().as_bytes());
    }
}
