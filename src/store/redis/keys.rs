//! The names of a topic's keys, and the error for what this code did not
//! write.

use crate::store::{ErrorKind, StoreError};

/// The key `what` of `topic`: `ssehub:{topic}:what`. The hash tag keeps a
/// topic's keys in one slot of a cluster.
pub(super) fn key_of(topic: &str, what: &str) -> String {
    format!("ssehub:{{{topic}}}:{what}")
}

/// A key holds what this code would not have written.
pub(super) fn corrupt(what: String) -> StoreError {
    StoreError::new(ErrorKind::Corrupt, format!("redis: {what}"))
}
