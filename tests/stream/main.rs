//! What a subscriber receives, over real sockets and on the hub's own
//! streams: resumption and its `resync` cases, a first connect with backlog,
//! keep-alive comments, the encoding of any data, and many topics on one
//! stream.

#[path = "../support/mod.rs"]
mod support;

mod backlog;
mod encoding;
mod keep_alive;
mod many_topics;
mod resume;
