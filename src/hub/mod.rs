//! The fan-out: topics by name, each with a ring of encoded events, and the
//! streams that read them.
//!
//! A [`Hub`] (`handle.rs`) is built from a [`HubConfig`] by a
//! [`HubBuilder`] (`config.rs`). It publishes (`publish.rs`) into its
//! topics (`topics.rs`: found or created by name, retired when idle to stay
//! under the maximum, in the `registry.rs`; each a `topic.rs`, a ring behind a lock and the
//! wake-up of its readers), and keeps the bytes they retain under its
//! budget (`budget.rs`). Subscribing (`subscribe.rs` for one topic,
//! `subscribe_multi.rs` for several) opens a stream (`stream/`: one driver
//! and one cursor per topic under [`EventStream`] and [`MultiEventStream`]),
//! the response body that reads the rings. A store reports to the hub
//! through its sink (in `handle.rs`); what the hub counts is in `stats.rs`, why
//! it refuses in `error.rs`. Every lock, atomic and wake-up comes from
//! `sync/`, so that the `loom` models (`testing/loom.rs`) can swap them.

mod budget;
mod config;
pub(crate) mod durable;
mod error;
mod handle;
#[cfg(feature = "mercure")]
pub(crate) mod mercure;
mod publish;
mod registry;
mod stats;
pub(crate) mod stream;
mod subscribe;
mod subscribe_multi;
mod sync;
pub(crate) mod topic;
mod topics;

#[cfg(all(test, ssehub_loom))]
mod testing;

pub use self::config::{HubBuilder, HubConfig};
pub use self::error::HubError;
pub use self::handle::Hub;
pub use self::publish::Receipt;
pub use self::stats::{HubStats, TopicInfo};
pub use self::stream::{EventStream, MultiEventStream};
pub use self::subscribe::Subscribe;
pub(crate) use self::subscribe::Subscribing;
