//! Real clients through broken connections: headless Chromium, the Node
//! `eventsource` package and ssehub's own Rust client behind a chaos proxy,
//! the page at `/` in Chromium, and storms of thousands of reconnecting
//! clients.
//!
//! Needs what `.ci/run` installs: Chromium, Node.js and `npm ci` in
//! `tests/browser`.

#[path = "../support/mod.rs"]
mod support;

mod flaky_network;
mod page;
mod storm;
