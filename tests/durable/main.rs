//! The Durable Streams protocol at `/v1/stream/{path}`: the published
//! conformance suite run against the binary (`conformance.rs`), what
//! ssehub adds around it (`protocol.rs`), streams on the disk store across
//! restarts (`disk.rs`), streams shared by two nodes on one Redis and kept
//! there across restarts (`redis.rs`), and the official TypeScript and
//! Python clients reading and writing through a chaos proxy (`clients.rs`).
//!
//! Needs Node.js (>= 20), Python 3 and what `.ci/run` installs: `npm ci` in
//! `tests/durable/conformance` and `tests/durable/clients`, and the
//! virtualenv `tests/durable/clients/.venv`; `redis-server` for the runs
//! on Redis. Runs the binary, so needs the `cli` feature.

#[path = "../support/mod.rs"]
mod support;

/// The conformance suite runs alone (`write`), the client tests side by
/// side (`read`): they keep both cores of a small machine busy, and under
/// such load Node's `fetch` gets `EPIPE` instead of ssehub's early `413` to
/// the suite's 10 MiB `POST` ("should handle large payload
/// appropriately").
#[cfg(feature = "cli")]
static HEAVY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

#[cfg(feature = "cli")]
mod clients;
#[cfg(feature = "cli")]
mod conformance;
#[cfg(feature = "disk")]
mod disk;
mod protocol;
#[cfg(feature = "cli")]
mod redis;
