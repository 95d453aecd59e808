//! Prometheus metrics (feature `metrics`): the hub's counters and the
//! server's connections, read at scrape time (nothing on the hot path but
//! the atomics that exist anyway).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::http::connections::ConnectionStats;
use crate::hub::Hub;

/// The metrics registry of a service.
pub(crate) struct Metrics {
    registry: Registry,
}

/// The service answers `GET /metrics`.
pub(crate) const SERVED: bool = true;

impl Metrics {
    pub(crate) fn new(hub: Hub, connections: Arc<ConnectionStats>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(HubCollector { hub, connections }));
        Metrics { registry }
    }

    /// The OpenMetrics text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

struct HubCollector {
    hub: Hub,
    connections: Arc<ConnectionStats>,
}

impl fmt::Debug for HubCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubCollector").finish_non_exhaustive()
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

/// `name` without `_total`: the encoder appends it to counters.
fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

impl Collector for HubCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let s = self.hub.stats();
        let c = &self.connections;
        gauge(
            &mut enc,
            "ssehub_subscribers",
            "Open event streams.",
            s.subscribers as u64,
        )?;
        gauge(
            &mut enc,
            "ssehub_topics",
            "Topics that exist.",
            s.topics as u64,
        )?;
        gauge(
            &mut enc,
            "ssehub_retained_bytes",
            "Bytes of encoded events retained by all topics.",
            s.retained_bytes as u64,
        )?;
        gauge(
            &mut enc,
            "ssehub_connections",
            "Open client connections.",
            c.open.load(Ordering::Relaxed) as u64,
        )?;
        counter(
            &mut enc,
            "ssehub_events_published",
            "Events published.",
            s.published,
        )?;
        counter(
            &mut enc,
            "ssehub_events_delivered",
            "Events handed to subscribers' streams, replays included.",
            s.delivered,
        )?;
        counter(
            &mut enc,
            "ssehub_events_replayed",
            "Events delivered that were published before the subscription.",
            s.replayed,
        )?;
        counter(&mut enc, "ssehub_resyncs", "resync events sent.", s.resyncs)?;
        counter(
            &mut enc,
            "ssehub_topics_retired",
            "Idle topics retired to make room for new ones.",
            s.topics_retired,
        )?;
        counter(
            &mut enc,
            "ssehub_idempotent_replays",
            "Publishes answered with the ids of an earlier request with the same Idempotency-Key, publishing nothing.",
            s.idempotent_replays,
        )?;
        counter(
            &mut enc,
            "ssehub_idempotent_conflicts",
            "Publishes refused (409): their Idempotency-Key was used for a different request.",
            s.idempotent_conflicts,
        )?;
        counter(
            &mut enc,
            "ssehub_connections_accepted",
            "Client connections accepted.",
            c.accepted.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "ssehub_connections_rejected",
            "Client connections refused at a connection limit.",
            c.rejected.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut enc,
            "ssehub_durable_streams",
            "Durable Streams that exist (/v1/stream/).",
            s.durable_streams as u64,
        )?;
        gauge(
            &mut enc,
            "ssehub_durable_live_reads",
            "Durable Streams reads waiting for data (long-poll and SSE).",
            s.durable_live_reads as u64,
        )?;
        counter(
            &mut enc,
            "ssehub_durable_appends",
            "Durable Streams writes accepted (appends and closes).",
            s.durable_appends,
        )?;
        counter(
            &mut enc,
            "ssehub_durable_duplicates",
            "Durable Streams writes answered as duplicates (a producer's retry), changing nothing.",
            s.durable_duplicates,
        )?;
        gauge(
            &mut enc,
            "ssehub_mercure_subscribers",
            "Mercure subscribers connected (/.well-known/mercure).",
            s.mercure_subscribers as u64,
        )?;
        counter(
            &mut enc,
            "ssehub_mercure_updates",
            "Mercure updates published.",
            s.mercure_updates,
        )?;
        counter(
            &mut enc,
            "ssehub_mercure_duplicates",
            "Mercure updates refused because their id is in history (409).",
            s.mercure_duplicates,
        )?;
        let refusals = ConstCounter::new(0u64);
        let mut family = enc.encode_descriptor(
            "ssehub_refusals",
            "Requests refused for a reason that will pass, by reason and by answer \
             (retry: 200 with a retry hint, for EventSource; 503: others).",
            None,
            refusals.metric_type(),
        )?;
        for (why, answer, n) in c.refusals.all() {
            let labels = [("reason", why.label()), ("answer", answer.label())];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
