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
}

/// The ids a store gave an appended batch: `first` and the ones after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    pub(crate) epoch: Epoch,
    pub(crate) first: u64,
}
