//! [`Retention`]: how much history a disk store keeps.

use std::time::Duration;

/// How much history a [`DiskStore`](crate::store::DiskStore) keeps.
///
/// | setting | default | flag |
/// |---|---|---|
/// | [`events`](Retention::events) per topic | 100,000 | `--retain-events` |
/// | [`bytes`](Retention::bytes) per topic | 256 MiB | `--retain-bytes` |
/// | [`age`](Retention::age) | none | `--retain-age` |
/// | [`total_bytes`](Retention::total_bytes) of all topics | 4 GiB | `--max-disk-bytes` |
///
/// Bytes are the events' own bytes; the directory takes more (the engine's
/// journal, and space it reclaims by compacting in the background).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ssehub::store::Retention;
///
/// let r = Retention::default().events(10_000).age(Some(Duration::from_secs(86_400)));
/// assert_eq!(r.events, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use]
pub struct Retention {
    /// Most events kept per topic.
    pub events: u64,
    /// Most bytes kept per topic (the newest event is kept even if larger).
    pub bytes: u64,
    /// Events older than this are dropped (`None`: no age limit).
    pub age: Option<Duration>,
    /// Most bytes kept by all topics together.
    pub total_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            events: 100_000,
            bytes: 256 << 20,
            age: None,
            total_bytes: 4 << 30,
        }
    }
}

impl Retention {
    /// Most events kept per topic (at least 1).
    pub fn events(mut self, events: u64) -> Self {
        self.events = events.max(1);
        self
    }

    /// Most bytes kept per topic.
    pub fn bytes(mut self, bytes: u64) -> Self {
        self.bytes = bytes;
        self
    }

    /// Drop events older than `age`.
    pub fn age(mut self, age: Option<Duration>) -> Self {
        self.age = age.filter(|a| !a.is_zero());
        self
    }

    /// Most bytes kept by all topics together.
    pub fn total_bytes(mut self, bytes: u64) -> Self {
        self.total_bytes = bytes;
        self
    }
}
