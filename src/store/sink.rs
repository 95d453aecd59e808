//! What a store hands back to the hub: the ids of an append
//! ([`Appended`]), the frames of a committed batch ([`Deliver`]), and what
//! it learns by itself ([`Sink`], which the hub implements).

use bytes::Bytes;

use crate::core::id::Epoch;

/// Puts a committed batch's frames (ids `first..` of `epoch`) where
/// subscribers read: the hub's ring.
pub(crate) type Deliver = Box<dyn FnOnce(Epoch, u64, Vec<Bytes>) + Send>;

/// Where a store reports what it learns by itself. The hub implements it.
// Only Redis learns of events appended elsewhere.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) trait Sink: Send + Sync {
    /// `topic`'s history is now `epoch`, whose next event will be `next`,
    /// and these are its newest events (in order, consecutive). Returns
    /// `false` if the hub no longer has the topic.
    fn load(&self, topic: &str, epoch: Epoch, next: u64, events: Vec<(u64, Bytes)>) -> bool;

    /// Events of `topic`'s history `epoch` appended elsewhere, in order.
    fn append(&self, topic: &str, epoch: Epoch, events: Vec<(u64, Bytes)>);

    /// The store dropped the events of `topic`'s history `epoch` before
    /// `first` (retention): the ring drops them too, so that an event the
    /// store no longer keeps is not served from memory either.
    #[cfg_attr(not(feature = "disk"), allow(dead_code))]
    fn trimmed(&self, topic: &str, epoch: Epoch, first: u64);

    /// Entries of `topic`'s Durable Stream `generation` written elsewhere
    /// (or caught up with), in order: a position, its message (none for a
    /// close without data), whether it closed the stream. Entries the ring
    /// already has are skipped.
    fn stream_entries(
        &self,
        topic: &str,
        generation: u64,
        entries: Vec<(u64, Option<Bytes>, bool)>,
    );

    /// `topic`'s Durable Stream `generation` changed elsewhere.
    fn stream_changed(&self, topic: &str, generation: u64, change: StreamChange);

    /// Where this node's copy of `topic`'s Durable Stream stands: its
    /// generation and last position.
    fn stream_tail(&self, topic: &str) -> Option<(u64, u64)>;
}

/// What a store learned of a Durable Stream another node changed.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamChange {
    /// Deleted, or deleted and created again.
    Gone,
    /// Deleted while forks live.
    Hidden,
    /// Used at this time (ms since the Unix epoch), for a sliding TTL.
    Touched(u64),
    /// Its messages before this position were dropped (its byte bound).
    Trimmed(u64),
}

/// The ids a store gave an appended batch: `first` and the ones after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub(crate) epoch: Epoch,
    pub(crate) first: u64,
}
