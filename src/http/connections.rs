//! Connection counters: kept by a [`Server`](crate::Server), read by the
//! service's metrics (when the `metrics` feature is on) and by the server's
//! own shutdown.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Connection counters, kept by a [`Server`](crate::Server) and read by
/// the service's metrics.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub(crate) open: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    pub(crate) rejected: AtomicU64,
    /// Stream requests refused for now, by reason and answer.
    pub(crate) refusals: crate::http::refusal::Refusals,
    /// Signalled when `open` drops to zero (shutdown waits for it).
    pub(crate) all_closed: tokio::sync::Notify,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused at a limit since the start.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}
