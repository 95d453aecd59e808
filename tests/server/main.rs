//! The HTTP server and the binary as a client meets them: the HTTP surface
//! and its fast path, deadlines on every connection state, the drop-in
//! backend (publishing, bounds, CORS, TLS, limits, metrics), idempotent
//! publishing, refusals a browser retries, the embedding API (plain hyper
//! and axum), and the `ssehub` binary with the defaults the README promises.
//!
//! Modules that run the binary need the `cli` feature.

#[path = "../support/mod.rs"]
mod support;

mod axum_app;
mod backend;
#[cfg(feature = "cli")]
mod binary;
mod deadlines;
#[cfg(feature = "cli")]
mod defaults;
mod embed;
mod fast_path;
mod http_surface;
#[cfg(feature = "cli")]
mod idempotency;
#[cfg(feature = "cli")]
mod refusals;
