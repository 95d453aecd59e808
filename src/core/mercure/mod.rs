//! The model of Mercure (the SSE hub protocol served at
//! `/.well-known/mercure`), with no I/O: topic selectors and updates.
//!
//! | file | concern |
//! |---|---|
//! | `selector.rs` | topic selectors: `*`, exact strings, URI templates |
//! | `update.rs` | an update: validation, how it is kept, its frame |

pub(crate) mod selector;
pub(crate) mod update;

/// The hub's well-known path.
pub(crate) const HUB_PATH: &str = "/.well-known/mercure";
