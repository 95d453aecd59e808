//! ssehub: a [Server-Sent Events] hub on hyper 1.x that does not lose events.
//!
//! Browsers' `EventSource` reconnects by itself after a network drop and
//! sends `Last-Event-ID`. ssehub gives every event a monotonically increasing
//! id, keeps the recent events of each topic in a bounded ring, and answers a
//! reconnect with exactly the events the client missed, in order, once; when
//! that is impossible it says so in-band with a `resync` event.
//!
//! The parts, each usable on its own:
//! - [`Hub`]: topics, publishing and subscribing; a cheap cloneable handle.
//! - [`EventStream`]: one subscriber's response body, a plain
//!   [`http_body::Body`] with `Data = Bytes`, so it fits any hyper, axum or
//!   tower stack.
//! - [`SseService`]: a hyper service with the HTTP endpoints (`GET /stream`,
//!   `GET|POST /events/{topic}`), mountable under a path prefix.
//! - [`Server`]: the accept loop with HTTP/1.1 and h2c on one port, a
//!   deadline for every connection state, and graceful shutdown.
//! - [`BodyTimeout`]: a request body that fails when its client stalls or
//!   trickles, for services run by other servers.
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

mod auth;
mod body;
mod cors;
mod deadline;
mod event;
// Built for `cargo fuzz` (`--cfg fuzzing`), and in tests to run the seeds.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
mod h1;
mod hub;
mod id;
mod metrics;
mod publish;
mod resync;
mod ring;
mod server;
mod service;
pub mod store;
mod stream;
mod tick;
mod tls;
mod topic;

pub use crate::auth::{AuthError, Grants, JWT_LEEWAY, JwtKey, TOKEN_COOKIE};
pub use crate::body::ResponseBody;
pub use crate::cors::CorsOrigins;
pub use crate::deadline::BodyTimeout;
pub use crate::event::{
    Event, EventError, MAX_EVENT_TYPE_LEN, REAUTH_EVENT_TYPE, RESYNC_EVENT_TYPE,
};
pub use crate::hub::{
    Hub, HubBuilder, HubConfig, HubError, HubStats, MAX_TOPIC_LEN, Subscribe, TopicInfo,
    validate_topic,
};
pub use crate::id::{Epoch, EventId, IdError, MAX_EPOCH_LEN};
pub use crate::publish::BodyError;
pub use crate::resync::ResyncReason;
pub use crate::server::{IDLE_GRACE, LISTEN_BACKLOG, Server, ServerConfig, shutdown_signal};
pub use crate::service::{
    DEFAULT_STREAM_TOPIC, PeerAddr, ResponseFuture, ServiceConfig, SseService, SseServiceBuilder,
};
#[cfg(feature = "redis")]
pub use crate::store::RedisStore;
pub use crate::store::{Storage, StoreError};
pub use crate::stream::EventStream;
pub use crate::tick::spawn_ticker;
pub use crate::tls::{TlsConfig, TlsError};

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn clone_send_sync<T: Clone + Send + Sync>() {}

    #[test]
    fn handles_are_shareable() {
        clone_send_sync::<Hub>();
        clone_send_sync::<SseService>();
        send_sync::<EventStream>();
        send_sync::<ResponseBody>();
        send_sync::<BodyTimeout<hyper::body::Incoming>>();
        send_sync::<Server>();
        fn send<T: Send>() {}
        send::<ResponseFuture>();
    }
}
