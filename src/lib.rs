//! ssehub: a [Server-Sent Events] hub on hyper 1.x that does not lose events.
//!
//! Browsers' `EventSource` reconnects by itself after a network drop and
//! sends `Last-Event-ID`. ssehub gives every event a monotonically increasing
//! id, keeps the recent events of each topic in a bounded ring, and answers a
//! reconnect with exactly the events the client missed, in order, once; when
//! that is impossible it says so in-band with a `resync` event. The same hub
//! also serves the Durable Streams protocol (`/v1/stream/...`).
//!
//! # The map
//!
//! The only map of `src/`; each folder's `mod.rs` is a table of contents of
//! its own files. The folders are the layers: each only uses the ones above
//! it in this table, and no file depends on itself through others
//! (`tests/layers.rs` parses the imports and checks both).
//!
//! | module | what lives there |
//! |---|---|
//! | [`core`] | the model, no I/O: `event.rs` ([`Event`]s and their wire encoding), `id.rs` (epochs and [`EventId`]s), `topic_name.rs`, `ring.rs` (the bounded ring of encoded events), `resync.rs` (where a subscription starts), `idempotency.rs`, `multi_id.rs` (the ids of streams of several topics), `durable/` (the model of Durable Streams: offsets, paths -> `ds:` topics, a stream's metadata and the rules that admit its writes, its records as stores keep them, JSON messages, cursors) |
//! | [`store`] | where history lives: `mod.rs` ([`Storage`], the seam every store shares; the only place the `redis` and `disk` features are gated), `error.rs`, `sink.rs` (what a store reports to the hub), `streams.rs` (the writes of Durable Streams a store decides and commits), `disk/` (`--data-dir`, feature `disk`: the store, its shared `state.rs`, the writer's group commit `writer.rs`, `layout.rs`, `marks.rs`, `retention.rs`), `redis.rs` (feature `redis`) |
//! | [`hub`] | the fan-out: `mod.rs` (its table of contents), `handle.rs` ([`Hub`]), `publish.rs`, `subscribe.rs` and `subscribe_multi.rs`, `topics.rs` (topics by name, their retirement), `budget.rs` (the memory budget), `config.rs`, `error.rs` ([`HubError`]), `stats.rs`, `sink.rs`, `topic.rs` (a ring behind a lock, waking subscribers), `durable.rs` (Durable Streams on topics: create, append, close, delete, fork, read, wait, expiry), `stream/` (the bodies: one driver `driver.rs` and one cursor per topic `cursor.rs` under [`EventStream`] `single.rs` and [`MultiEventStream`] `multi.rs`), `sync/` (the locks, swapped for `loom`'s in the models of `testing/loom.rs`) |
//! | [`http`] | HTTP meaning, shared by every protocol: `service.rs` ([`SseService`], its settings), `routing.rs` (which path goes where; a mount per protocol), `native/` (ssehub's own API: the stream and publish endpoints, [`stream_response`](http::stream_response) for handlers, the page), `durable/` (Durable Streams under `/v1/stream/`: create, append, reads, long-poll, SSE), `request_body.rs` (request bodies, bounded in size and time), `responses.rs` (a leaf: texts, headers, the one `HubError` -> status table), `future.rs`, `body.rs`, `auth.rs` ([`Authorize`](http::Authorize)), `tokens.rs` (the publish token, loopback rule), `jwt.rs` (feature `jwt`), `cors.rs`, `refusal.rs` (refusals that pass), `connections.rs`, `metrics.rs` (feature `metrics`) |
//! | [`server`] | sockets: `mod.rs` ([`Server`]: the accept loop, shutdown), `config.rs` (`ServerConfig`, with the table of deadlines), `limits.rs`, `conn.rs` (one connection), `serve.rs` (what a server runs, any service through `ServiceAdapter`), `deadline.rs` (body deadlines, idle connections), `h1.rs` (the HTTP/1.1 fast path), `tls.rs` (feature `tls`), `testing/` (harnesses: `differential.rs`, `fuzzing.rs`; tests and `cargo fuzz` only) |
//! | `bin/ssehub/` | the binary: the flags as typed (`args.rs`), then the library (`main.rs`); the demo ticker (`ticker.rs`) |
//!
//! The root re-exports the handful of types most programs need. An
//! [`EventStream`] is a plain [`http_body::Body`] with `Data = Bytes`, so it
//! fits any hyper, axum or tower stack; [`SseService`] serves the endpoints
//! from any of them (a `tower` service: axum's `Router::nest_service`);
//! [`http::stream_response`] answers one stream request inside a handler
//! that does its own routing; [`Server`] runs any of them on its own.
//! `examples/embed.rs` (hyper) and `examples/axum.rs` (axum, with the
//! app's own auth deciding what a stream may see) show both ways.
//!
//! # Features
//!
//! With `default-features = false` the crate is the hub, the body, the
//! service (token auth, CORS) and the server in cleartext (HTTP/1.1 and
//! h2c), with history in memory. Each capability with heavy dependencies
//! is a feature; the default turns all of them on.
//!
//! | feature | enables | pulls in |
//! |---|---|---|
//! | `tls` | HTTPS with ALPN `h2`: `server::TlsConfig`, `ServerConfig::tls` | `tokio-rustls` (rustls, ring), `rustls-pki-types` |
//! | `jwt` | JWTs granting topics: `http::JwtKey`, `http::Grants`, `SseServiceBuilder::jwt_key` | `jsonwebtoken` |
//! | `metrics` | `GET /metrics` (else `404`) | `prometheus-client` |
//! | `redis` | topics shared by several nodes: `store::RedisStore` | `redis` |
//! | `disk` | history in a directory: `store::DiskStore` | `fjall` |
//! | `cli` | the `ssehub` binary; turns on all of the above | `clap`, `tracing-subscriber` |
//!
//! # Example
//!
//! ```
//! use http_body_util::BodyExt;
//! use ssehub::{Event, Hub, Subscribe};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::builder().retry_jitter(0.0).build();
//! let first = hub.publish("news", Event::new("one")).await?;
//! hub.publish("news", Event::new("two")).await?;
//!
//! // A client that saw `first` reconnects: it gets exactly what it missed.
//! let mut stream = hub.subscribe("news", Subscribe::new().last_event_id(first.to_string()).limit(1))?;
//! let mut body = Vec::new();
//! while let Some(frame) = stream.frame().await {
//!     body.extend_from_slice(&frame?.into_data().unwrap());
//! }
//! let body = String::from_utf8(body)?;
//! assert_eq!(body, format!("retry: 3000\ndata: two\nid: {}-2\n\n", hub.epoch()));
//! # Ok(())
//! # }
//! ```
//!
//! [Server-Sent Events]: https://html.spec.whatwg.org/multipage/server-sent-events.html

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod core;
pub mod http;
pub mod hub;
pub mod server;
pub mod store;

// Built for `cargo fuzz` (`--cfg fuzzing`), and in tests to run the seeds.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub use crate::server::testing::fuzzing;

pub use crate::core::{Event, EventId};
pub use crate::http::SseService;
pub use crate::hub::{EventStream, Hub, HubError, MultiEventStream, Subscribe};
pub use crate::server::Server;
pub use crate::store::Storage;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ResponseBody, ResponseFuture};
    use crate::server::BodyTimeout;

    fn send_sync<T: Send + Sync>() {}
    fn clone_send_sync<T: Clone + Send + Sync>() {}

    #[test]
    fn handles_are_shareable() {
        clone_send_sync::<Hub>();
        clone_send_sync::<SseService>();
        send_sync::<EventStream>();
        send_sync::<MultiEventStream>();
        send_sync::<ResponseBody>();
        send_sync::<BodyTimeout<hyper::body::Incoming>>();
        send_sync::<Server>();
        fn send<T: Send>() {}
        send::<ResponseFuture>();
    }
}
