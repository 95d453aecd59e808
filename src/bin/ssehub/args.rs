//! The command line as typed: flags and their `SSEHUB_*` environment twins.

use std::net::SocketAddr;

use clap::Parser;

/// ssehub: a Server-Sent Events hub with ids, replay and exact resumption.
///
/// Subscribe with `GET /events/{topic}` (or `GET /stream`), publish with
/// `POST /events/{topic}`. Every flag can also be set through the
/// environment variable named next to it.
#[derive(Debug, Parser)]
#[command(name = "ssehub", version, about, long_about)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, env = "SSEHUB_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,

    /// Events retained per topic for replay.
    #[arg(long, env = "SSEHUB_BUFFER", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) buffer: u64,

    /// Bytes of events retained per topic.
    #[arg(long, env = "SSEHUB_MAX_TOPIC_BYTES", default_value_t = 16 << 20)]
    pub(crate) max_topic_bytes: u64,

    /// Reconnection delay suggested to clients, in milliseconds (`retry:`).
    #[arg(long, env = "SSEHUB_RETRY", default_value_t = 3000)]
    pub(crate) retry: u64,

    /// Seconds of silence after which a stream sends a keep-alive comment
    /// (0: never).
    #[arg(long, env = "SSEHUB_KEEP_ALIVE", default_value_t = 15)]
    pub(crate) keep_alive: u64,

    /// Seconds between the demo messages published to `/stream` (0: off).
    #[arg(long, env = "SSEHUB_TICK", default_value_t = 1.0)]
    pub(crate) tick: f64,

    /// Most topics.
    #[arg(long, env = "SSEHUB_MAX_TOPICS", default_value_t = 10_000)]
    pub(crate) max_topics: usize,

    /// Largest publish body, in bytes.
    #[arg(long, env = "SSEHUB_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub(crate) max_body_bytes: usize,

    /// Seconds shutdown waits for connections to finish.
    #[arg(long, env = "SSEHUB_SHUTDOWN_TIMEOUT", default_value_t = 5)]
    pub(crate) shutdown_timeout: u64,
}
