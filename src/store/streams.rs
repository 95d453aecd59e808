//! What the hub asks of a store for a Durable Stream (the protocol under
//! `/v1/stream/`): each write is one [`StreamOp`], decided by the store's
//! own copy of the stream's metadata and written with its messages in one
//! atomic step, so that concurrent producers see one order and a crash
//! keeps a write's messages and its producer state together, or neither.
//!
//! The hub keeps a copy of each stream's metadata beside its ring, for
//! reads. The store decides writes on its copy (the rules are
//! `StreamMeta::admit`, written once in `core`), and once the write is
//! durable hands the outcome to the write's [`StreamDeliver`], in commit
//! order, which applies the same change to the hub's copy and ring; then
//! it answers.

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::core::durable::StreamMeta;
use crate::core::durable::meta::{OwnedWrite, Verdict};
use crate::store::{ErrorKind, StoreError};

/// A Durable Stream as a node loads it from a store shared with others
/// (Redis).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug)]
pub(crate) struct LoadedStream {
    /// With its live forks, hidden flag and last use as the store has them.
    pub(crate) meta: StreamMeta,
    pub(crate) first: u64,
    pub(crate) last: u64,
    /// The newest messages, oldest first; the last is message `last`.
    pub(crate) tail: Vec<Bytes>,
}

/// A write to a stream.
// Only the disk and Redis stores decide stream writes (memory writes in
// the rings).
#[cfg_attr(not(any(feature = "disk", feature = "redis")), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum StreamOp {
    /// Creates the stream unless the store has it: its metadata, and its
    /// first messages, the first of which is position `first`.
    Create {
        meta: Box<StreamMeta>,
        first: u64,
        frames: Vec<Bytes>,
    },
    /// Appends `frame` (none: a close without data) if the stream's rules
    /// admit `write` at `now_ms`.
    Append {
        write: OwnedWrite,
        frame: Option<Bytes>,
        now_ms: u64,
    },
    /// Hides the stream (deleted while forks read through it).
    Hide,
    /// Deletes the stream and its messages.
    Delete,
}

/// What a [`StreamOp`] did.
// Only the disk and Redis stores decide stream writes (memory writes in
// the rings).
#[cfg_attr(not(any(feature = "disk", feature = "redis")), allow(dead_code))]
#[derive(Debug)]
pub(crate) enum StreamDone {
    /// Created (its messages start at the position the op gave).
    Created,
    /// A create found the stream (an earlier write created it).
    Exists,
    /// What the rules decided of an append; the position of its message
    /// (`Accepted` with a frame), or of the stream's last message; the
    /// stream's generation, and whether it is closed now.
    Appended {
        verdict: Verdict,
        seq: u64,
        generation: u64,
        closed: bool,
    },
    /// Hidden or deleted.
    Done,
    /// The store has no such stream.
    NotFound,
}

/// Applies a committed [`StreamOp`] to the hub (see the module
/// documentation); called once, in commit order, before the answer.
pub(crate) type StreamDeliver = Box<dyn FnOnce(&StreamDone) + Send>;

/// Where a store answers a [`StreamOp`].
pub(crate) type StreamAnswer = oneshot::Receiver<Result<StreamDone, StoreError>>;

/// The answer to a [`StreamOp`] sent to a store: it comes once the write
/// is durable (and delivered).
#[derive(Debug)]
pub(crate) struct StreamReply(pub(super) Result<StreamAnswer, StoreError>);

impl StreamReply {
    pub(crate) async fn wait(self) -> Result<StreamDone, StoreError> {
        match self.0 {
            Ok(answer) => answer.await.unwrap_or_else(|_| {
                Err(StoreError::new(
                    ErrorKind::Unavailable,
                    "the writer stopped",
                ))
            }),
            Err(e) => Err(e),
        }
    }
}
