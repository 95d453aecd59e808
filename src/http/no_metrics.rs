//! Metrics compiled out (the `metrics` feature is off): `GET /metrics` is
//! an unknown path (`404`), and nothing is registered.
//!
//! The same crate-private names as `metrics.rs`, so the service reads the
//! same with the feature on or off.

use std::sync::Arc;

use crate::http::connections::ConnectionStats;
use crate::hub::Hub;

/// No registry.
#[derive(Debug)]
pub(crate) struct Metrics(());

/// The service does not answer `GET /metrics`.
pub(crate) const SERVED: bool = false;

impl Metrics {
    pub(crate) fn new(_: Hub, _: Arc<ConnectionStats>) -> Self {
        Metrics(())
    }

    /// Never called: the route does not exist.
    pub(crate) fn render(&self) -> String {
        String::new()
    }
}
