//! The command line as typed: flags and their `SSEHUB_*` environment twins.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

/// ssehub: a Server-Sent Events hub with ids, replay and exact resumption.
///
/// Subscribe with `GET /events/{topic}` (or `GET /stream`), publish with
/// `POST /events/{topic}`. Every flag can also be set through the
/// environment variable named next to it.
#[derive(Debug, Parser)]
#[command(name = "ssehub", version, about, long_about)]
pub(crate) struct Args {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print a JWT granting topics, for servers run with `--jwt-key`.
    Token(TokenArgs),
}

#[derive(Debug, ClapArgs)]
pub(crate) struct TokenArgs {
    /// The secret the server was given with `--jwt-key`.
    #[arg(long, env = "SSEHUB_JWT_KEY", hide_env_values = true)]
    pub(crate) key: String,

    /// Topics the holder may subscribe to (a name, `prefix*`, or `*`).
    #[arg(long, num_args = 1.., value_name = "TOPIC")]
    pub(crate) subscribe: Vec<String>,

    /// Topics the holder may publish to (a name, `prefix*`, or `*`).
    #[arg(long, num_args = 1.., value_name = "TOPIC")]
    pub(crate) publish: Vec<String>,

    /// Seconds until the token expires.
    #[arg(long, default_value_t = 3600)]
    pub(crate) ttl: u64,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SSEHUB_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,

    /// Events retained per topic for replay.
    #[arg(long, env = "SSEHUB_BUFFER", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) buffer: u64,

    /// Bytes of events retained per topic.
    #[arg(long, env = "SSEHUB_MAX_TOPIC_BYTES", default_value_t = 16 << 20)]
    pub(crate) max_topic_bytes: u64,

    /// Bytes of events retained by all topics together.
    #[arg(long, env = "SSEHUB_MAX_TOTAL_BYTES", default_value_t = 256 << 20)]
    pub(crate) max_total_bytes: u64,

    /// Reconnection delay suggested to clients, in milliseconds (`retry:`).
    #[arg(long, env = "SSEHUB_RETRY", default_value_t = 3000)]
    pub(crate) retry: u64,

    /// Spread of the `retry:` hint: each stream gets `--retry` times a random
    /// factor in [1 - J, 1 + J] (0 to 1; 0 sends the same hint to everyone).
    #[arg(long, env = "SSEHUB_RETRY_JITTER", default_value_t = 0.5)]
    pub(crate) retry_jitter: f64,

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

    /// Most topics one stream may follow (`GET /events?topic=a&topic=b`).
    #[arg(long, env = "SSEHUB_MAX_TOPICS_PER_STREAM", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub(crate) max_topics_per_stream: u64,

    /// Largest publish body, in bytes.
    #[arg(long, env = "SSEHUB_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    pub(crate) max_body_bytes: usize,

    /// Most open connections; more get `503`.
    #[arg(long, env = "SSEHUB_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub(crate) max_connections: usize,

    /// Most open connections from one IP address (0: no such limit).
    #[arg(long, env = "SSEHUB_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub(crate) max_connections_per_ip: usize,

    /// Require `Authorization: Bearer TOKEN` to publish. Without it, only
    /// loopback clients may publish without credentials.
    #[arg(long, env = "SSEHUB_PUBLISH_TOKEN", hide_env_values = true)]
    pub(crate) publish_token: Option<String>,

    /// Require a JWT (HS256, signed with this secret) to subscribe; tokens
    /// with publish grants may also publish. See `ssehub token`.
    #[arg(long, env = "SSEHUB_JWT_KEY", hide_env_values = true)]
    pub(crate) jwt_key: Option<String>,

    /// An origin allowed to read streams with credentials and to publish
    /// (repeatable; `*` for any). Without it, streams are readable from any
    /// page and cross-origin publishing is refused.
    #[arg(long, env = "SSEHUB_CORS_ORIGIN", value_delimiter = ',')]
    pub(crate) cors_origin: Vec<String>,

    /// PEM certificate chain: serve HTTPS (HTTP/2 through ALPN).
    #[arg(long, env = "SSEHUB_TLS_CERT", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "SSEHUB_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,

    /// Keep topics in this directory: history survives restarts (graceful or
    /// not) and can be deeper than memory; `201` means the event is synced
    /// to disk. Created if missing; one ssehub per directory.
    #[arg(long, env = "SSEHUB_DATA_DIR", conflicts_with = "redis")]
    pub(crate) data_dir: Option<PathBuf>,

    /// With --data-dir: most events kept on disk per topic.
    #[arg(long, env = "SSEHUB_RETAIN_EVENTS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) retain_events: u64,

    /// With --data-dir: most bytes kept on disk per topic.
    #[arg(long, env = "SSEHUB_RETAIN_BYTES", default_value_t = 256 << 20)]
    pub(crate) retain_bytes: u64,

    /// With --data-dir: events older than this many seconds are dropped
    /// (0: no age limit).
    #[arg(long, env = "SSEHUB_RETAIN_AGE", default_value_t = 0.0)]
    pub(crate) retain_age: f64,

    /// With --data-dir: most bytes kept on disk by all topics together.
    #[arg(long, env = "SSEHUB_MAX_DISK_BYTES", default_value_t = 4 << 30)]
    pub(crate) max_disk_bytes: u64,

    /// Keep topics in Redis Streams (e.g. redis://127.0.0.1:6379/), shared by
    /// every ssehub started with the same URL: same ids, same history.
    #[arg(long, env = "SSEHUB_REDIS", hide_env_values = true)]
    pub(crate) redis: Option<String>,

    /// Seconds shutdown waits for connections to finish.
    #[arg(long, env = "SSEHUB_SHUTDOWN_TIMEOUT", default_value_t = 5)]
    pub(crate) shutdown_timeout: u64,

    /// Seconds a client may take to send its first bytes, to finish the TLS
    /// handshake, and to send each HTTP/1.1 request head (also the longest
    /// wait for the next request on a kept-alive HTTP/1.1 connection).
    #[arg(
        long,
        env = "SSEHUB_HEADER_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECS"
    )]
    pub(crate) header_timeout: f64,

    /// Longest silence, in seconds, between bytes of a request body (then
    /// `408`); after that long, a body must also average 1 KiB/s.
    #[arg(
        long,
        env = "SSEHUB_BODY_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECS"
    )]
    pub(crate) body_timeout: f64,

    /// Seconds a connection may have no request in progress before it is
    /// closed (HTTP/2: `GOAWAY`). Event streams are requests in progress.
    #[arg(
        long,
        env = "SSEHUB_IDLE_TIMEOUT",
        default_value_t = 10.0,
        value_name = "SECS"
    )]
    pub(crate) idle_timeout: f64,
}
