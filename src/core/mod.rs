//! The model, with no I/O: event ids and epochs, events and their
//! `text/event-stream` encoding, topic names, the ring of encoded events,
//! where a subscription starts (the `resync` signal), idempotency keys, and
//! the ids of streams of several topics, and the model of Durable Streams
//! (`durable/`).
//!
//! Everything above builds on these: stores keep [`Event`]s under
//! [`EventId`]s, the hub keeps encoded frames in rings, streams send them.

pub(crate) mod durable;
pub(crate) mod event;
pub(crate) mod id;
pub(crate) mod idempotency;
#[cfg(feature = "mercure")]
pub(crate) mod mercure;
pub(crate) mod multi_id;
pub(crate) mod resync;
pub(crate) mod ring;
pub(crate) mod topic_name;

/// Milliseconds since the Unix epoch (0 before it): the clock of TTLs,
/// expiries and publish times, read in one place.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub use self::event::{
    Event, EventError, MAX_EVENT_TYPE_LEN, REAUTH_EVENT_TYPE, RESYNC_EVENT_TYPE,
};
pub use self::id::{Epoch, EventId, IdError, MAX_EPOCH_LEN};
pub use self::idempotency::{
    IDEMPOTENCY_KEY_OVERHEAD, IdempotencyKey, InvalidIdempotencyKey, MAX_IDEMPOTENCY_KEY_LEN,
};
pub use self::multi_id::{MultiId, MultiIdError};
pub use self::resync::ResyncReason;
pub use self::topic_name::{IntoTopic, InvalidTopic, MAX_TOPIC_LEN, TopicName};
