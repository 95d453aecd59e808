//! The model of Durable Streams (the protocol served under `/v1/stream/`),
//! with no I/O: offsets, stream paths and their topics, the metadata of a
//! stream and the rules that admit its writes, JSON messages.
//!
//! | file | concern |
//! |---|---|
//! | `offset.rs` | offsets (`G_S`), where reads start, the generations a stream accepts |
//! | `path.rs` | stream paths -> `ds:` topics |
//! | `meta.rs` | [`StreamMeta`]: configuration, expiry, closure, producers; `admit` |
//! | `json.rs` | JSON messages: flattening appends, array reads |
//! | `cursor.rs` | `Stream-Cursor` values for long-poll and SSE |
//! | `record.rs` | a stream's metadata as stores keep it |

pub(crate) mod cursor;
pub(crate) mod json;
pub(crate) mod meta;
pub(crate) mod offset;
pub(crate) mod path;
// What stores keep: the disk and Redis stores hold streams outside memory.
#[cfg(any(feature = "disk", feature = "redis"))]
pub(crate) mod record;

pub(crate) use self::meta::StreamMeta;
