//! The Durable Streams protocol at `/v1/stream/{path}`: the published
//! conformance suite run against the binary (`conformance.rs`), and what
//! ssehub adds around it (`protocol.rs`).
//!
//! Needs Node.js (>= 20) and what `.ci/run` installs: `npm ci` in
//! `tests/durable/conformance`. Runs the binary, so needs the `cli` feature.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "cli")]
mod conformance;
mod protocol;
