//! The Mercure hub at `/.well-known/mercure`, over real sockets: what a
//! publisher and a subscriber see (`protocol.rs`, in-process), tokens that
//! expire mid-stream (`expiry.rs`), the binary's flags (`binary.rs`), the binary on a data directory killed
//! and restarted (`durable.rs`), two nodes on one Redis (`redis.rs`), a
//! reconnecting subscriber behind a chaos proxy (`chaos.rs`) and headless
//! Chromium's `EventSource` with the token in a cookie (`browser.rs`).
//!
//! `redis.rs` needs `redis-server`; `browser.rs` needs Debian's Chromium,
//! Node.js and `npm ci` in `tests/browser` (what `.ci/run` installs).
//! Modules that run the binary need the `cli` feature; all need `mercure`.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "mercure")]
mod common;

#[cfg(all(feature = "mercure", feature = "cli"))]
mod binary;
#[cfg(feature = "mercure")]
mod browser;
#[cfg(feature = "mercure")]
mod chaos;
#[cfg(all(feature = "mercure", feature = "cli"))]
mod durable;
#[cfg(feature = "mercure")]
mod expiry;
#[cfg(feature = "mercure")]
mod protocol;
#[cfg(all(feature = "mercure", feature = "cli"))]
mod redis;
