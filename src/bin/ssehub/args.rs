//! The command line as typed: flags and their `SSEHUB_*` environment twins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    #[arg(long, env = "SSEHUB_JWT_KEY", hide_env_values = true, value_parser = secret("SSEHUB_JWT_KEY"))]
    pub(crate) key: String,

    /// Topics the holder may subscribe to (a name, `prefix*`, or `*`).
    #[arg(long, num_args = 1.., value_name = "TOPIC")]
    pub(crate) subscribe: Vec<String>,

    /// Topics the holder may publish to (a name, `prefix*`, or `*`).
    #[arg(long, num_args = 1.., value_name = "TOPIC")]
    pub(crate) publish: Vec<String>,

    /// Seconds until the token expires (1 to 315,360,000: ten years).
    #[arg(long, default_value_t = 3600, value_parser = int(1, MAX_TTL, None))]
    pub(crate) ttl: u64,
}

#[derive(Debug, ClapArgs)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SSEHUB_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: SocketAddr,

    /// Events retained per topic for replay.
    #[arg(long, env = "SSEHUB_BUFFER", default_value_t = 1024, value_parser = int(1, 10_000_000, Some("SSEHUB_BUFFER")))]
    pub(crate) buffer: u64,

    /// Bytes of events retained per topic.
    #[arg(long, env = "SSEHUB_MAX_TOPIC_BYTES", default_value_t = 16 << 20, value_parser = int(1024, TIB, Some("SSEHUB_MAX_TOPIC_BYTES")))]
    pub(crate) max_topic_bytes: u64,

    /// Bytes of events retained by all topics together.
    #[arg(long, env = "SSEHUB_MAX_TOTAL_BYTES", default_value_t = 256 << 20, value_parser = int(1024, TIB, Some("SSEHUB_MAX_TOTAL_BYTES")))]
    pub(crate) max_total_bytes: u64,

    /// Reconnection delay suggested to clients, in milliseconds (`retry:`).
    #[arg(long, env = "SSEHUB_RETRY", default_value_t = 3000, value_parser = int(100, 3_600_000, Some("SSEHUB_RETRY")))]
    pub(crate) retry: u64,

    /// Spread of the `retry:` hint: each stream gets `--retry` times a random
    /// factor in [1 - J, 1 + J] (0 to 1; 0 sends the same hint to everyone).
    #[arg(long, env = "SSEHUB_RETRY_JITTER", default_value_t = 0.5, value_parser = real(0.0, 1.0, "SSEHUB_RETRY_JITTER"))]
    pub(crate) retry_jitter: f64,

    /// Seconds of silence after which a stream sends a keep-alive comment
    /// (0: never; else 1 to 86,400).
    #[arg(long, env = "SSEHUB_KEEP_ALIVE", default_value_t = 15, value_parser = int(0, DAY, Some("SSEHUB_KEEP_ALIVE")))]
    pub(crate) keep_alive: u64,

    /// Seconds between the demo messages published to `/stream` (0: off;
    /// else 0.001 to 86,400).
    #[arg(long, env = "SSEHUB_TICK", default_value = "1", value_parser = seconds(true, DAY, "SSEHUB_TICK"))]
    pub(crate) tick: Duration,

    /// Seconds a Durable Streams long-poll (`/v1/stream/...?live=long-poll`)
    /// waits for data before it answers `204`; also how often an idle
    /// `live=sse` read gets a control event (0.001 to 3,600).
    #[arg(long, env = "SSEHUB_LONG_POLL_TIMEOUT", default_value = "20", value_parser = seconds(false, 3600, "SSEHUB_LONG_POLL_TIMEOUT"))]
    pub(crate) long_poll_timeout: Duration,

    /// Most topics.
    #[arg(long, env = "SSEHUB_MAX_TOPICS", default_value_t = 10_000, value_parser = int(1, 10_000_000, Some("SSEHUB_MAX_TOPICS")))]
    pub(crate) max_topics: u64,

    /// Most topics one stream may follow (`GET /events?topic=a&topic=b`).
    #[arg(long, env = "SSEHUB_MAX_TOPICS_PER_STREAM", default_value_t = 64, value_parser = int(1, 4096, Some("SSEHUB_MAX_TOPICS_PER_STREAM")))]
    pub(crate) max_topics_per_stream: u64,

    /// Largest publish body, in bytes.
    #[arg(long, env = "SSEHUB_MAX_BODY_BYTES", default_value_t = 1 << 20, value_parser = int(1, 1 << 30, Some("SSEHUB_MAX_BODY_BYTES")))]
    pub(crate) max_body_bytes: u64,

    /// Most open connections; more get `503`.
    #[arg(long, env = "SSEHUB_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = int(1, 10_000_000, Some("SSEHUB_MAX_CONNECTIONS")))]
    pub(crate) max_connections: u64,

    /// Most open connections from one IP address (0: no such limit).
    #[arg(long, env = "SSEHUB_MAX_CONNECTIONS_PER_IP", default_value_t = 0, value_parser = int(0, 10_000_000, Some("SSEHUB_MAX_CONNECTIONS_PER_IP")))]
    pub(crate) max_connections_per_ip: u64,

    /// Require `Authorization: Bearer TOKEN` to publish. Without it, only
    /// loopback clients may publish without credentials.
    #[arg(long, env = "SSEHUB_PUBLISH_TOKEN", hide_env_values = true, value_parser = secret("SSEHUB_PUBLISH_TOKEN"))]
    pub(crate) publish_token: Option<String>,

    /// Require a JWT (HS256, signed with this secret) to subscribe; tokens
    /// with publish grants may also publish. See `ssehub token`.
    #[arg(long, env = "SSEHUB_JWT_KEY", hide_env_values = true, value_parser = secret("SSEHUB_JWT_KEY"))]
    pub(crate) jwt_key: Option<String>,

    /// Serve a Mercure hub at `/.well-known/mercure`: publishers and
    /// subscribers present JWTs (HS256) signed with this secret.
    #[arg(long, env = "SSEHUB_MERCURE_JWT_KEY", hide_env_values = true, value_parser = secret("SSEHUB_MERCURE_JWT_KEY"))]
    pub(crate) mercure_jwt_key: Option<String>,

    /// Let Mercure subscribers without a token receive public updates
    /// (without it they get `401`).
    #[arg(long, env = "SSEHUB_MERCURE_ANONYMOUS", requires = "mercure_jwt_key", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = switch("SSEHUB_MERCURE_ANONYMOUS"))]
    pub(crate) mercure_anonymous: bool,

    /// Publish Mercure subscription events and serve the subscriptions API
    /// (`/.well-known/mercure/subscriptions`).
    #[arg(long, env = "SSEHUB_MERCURE_SUBSCRIPTIONS", requires = "mercure_jwt_key", num_args = 0..=1, default_missing_value = "true", default_value = "false", value_parser = switch("SSEHUB_MERCURE_SUBSCRIPTIONS"))]
    pub(crate) mercure_subscriptions: bool,

    /// An origin allowed to read streams with credentials and to publish
    /// (repeatable; `*` for any). Without it, streams are readable from any
    /// page and cross-origin publishing is refused.
    #[arg(long, env = "SSEHUB_CORS_ORIGIN", value_delimiter = ',', value_parser = origin)]
    pub(crate) cors_origin: Vec<String>,

    /// PEM certificate chain: serve HTTPS (HTTP/2 through ALPN).
    #[arg(long, env = "SSEHUB_TLS_CERT", requires = "tls_key", value_parser = path("SSEHUB_TLS_CERT"))]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM private key for `--tls-cert`.
    #[arg(long, env = "SSEHUB_TLS_KEY", requires = "tls_cert", value_parser = path("SSEHUB_TLS_KEY"))]
    pub(crate) tls_key: Option<PathBuf>,

    /// Keep topics in this directory: history survives restarts (graceful or
    /// not) and can be deeper than memory; `201` means the event is synced
    /// to disk. Created if missing; one ssehub per directory.
    #[arg(long, env = "SSEHUB_DATA_DIR", conflicts_with = "redis", value_parser = path("SSEHUB_DATA_DIR"))]
    pub(crate) data_dir: Option<PathBuf>,

    /// With --data-dir: most events kept on disk per topic.
    #[arg(long, env = "SSEHUB_RETAIN_EVENTS", default_value_t = 100_000, value_parser = int(1, 1_000_000_000_000, Some("SSEHUB_RETAIN_EVENTS")))]
    pub(crate) retain_events: u64,

    /// With --data-dir: most bytes kept on disk per topic.
    #[arg(long, env = "SSEHUB_RETAIN_BYTES", default_value_t = 256 << 20, value_parser = int(1024, PIB, Some("SSEHUB_RETAIN_BYTES")))]
    pub(crate) retain_bytes: u64,

    /// With --data-dir: events older than this many seconds are dropped
    /// (0: no age limit; else 0.001 to 3,153,600,000: a century).
    #[arg(long, env = "SSEHUB_RETAIN_AGE", default_value = "0", value_parser = seconds(true, CENTURY, "SSEHUB_RETAIN_AGE"))]
    pub(crate) retain_age: Duration,

    /// With --data-dir: most bytes kept on disk by all topics together.
    #[arg(long, env = "SSEHUB_MAX_DISK_BYTES", default_value_t = 4 << 30, value_parser = int(1024, PIB, Some("SSEHUB_MAX_DISK_BYTES")))]
    pub(crate) max_disk_bytes: u64,

    /// Keep topics in Redis Streams (e.g. redis://127.0.0.1:6379/), shared by
    /// every ssehub started with the same URL: same ids, same history.
    #[arg(long, env = "SSEHUB_REDIS", hide_env_values = true, value_parser = secret("SSEHUB_REDIS"))]
    pub(crate) redis: Option<String>,

    /// Seconds shutdown waits for connections to finish (0 to 86,400).
    #[arg(long, env = "SSEHUB_SHUTDOWN_TIMEOUT", default_value_t = 5, value_parser = int(0, DAY, Some("SSEHUB_SHUTDOWN_TIMEOUT")))]
    pub(crate) shutdown_timeout: u64,

    /// Seconds a client may take to send its first bytes, to finish the TLS
    /// handshake, and to send each HTTP/1.1 request head (also the longest
    /// wait for the next request on a kept-alive HTTP/1.1 connection).
    #[arg(
        long,
        env = "SSEHUB_HEADER_TIMEOUT",
        default_value = "10",
        value_name = "SECS",
        value_parser = seconds(false, YEAR, "SSEHUB_HEADER_TIMEOUT")
    )]
    pub(crate) header_timeout: Duration,

    /// Longest silence, in seconds, between bytes of a request body (then
    /// `408`); after that long, a body must also average 1 KiB/s.
    #[arg(
        long,
        env = "SSEHUB_BODY_TIMEOUT",
        default_value = "10",
        value_name = "SECS",
        value_parser = seconds(false, YEAR, "SSEHUB_BODY_TIMEOUT")
    )]
    pub(crate) body_timeout: Duration,

    /// Seconds a connection may have no request in progress before it is
    /// closed (HTTP/2: `GOAWAY`). Event streams are requests in progress.
    #[arg(
        long,
        env = "SSEHUB_IDLE_TIMEOUT",
        default_value = "10",
        value_name = "SECS",
        value_parser = seconds(false, YEAR, "SSEHUB_IDLE_TIMEOUT")
    )]
    pub(crate) idle_timeout: Duration,
}

// Every numeric flag has a range, checked as it is parsed: a value outside
// it is an error that names the flag, its variable and the range, never a
// silent clamp, a panic on first use, or a limit that refuses everything.
// The README's Flags table states the same ranges (tests/server/defaults.rs holds
// it to them).

/// A tebibyte and a pebibyte, in bytes.
const TIB: u64 = 1 << 40;
const PIB: u64 = 1 << 50;
/// Seconds in a day, a year and a century.
const DAY: u64 = 24 * 3600;
const YEAR: u64 = 365 * DAY;
const CENTURY: u64 = 100 * YEAR;
/// The longest `ssehub token --ttl`: ten years.
const MAX_TTL: u64 = 10 * YEAR;

/// `n` with thousands separators, as the README writes it.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Where the value may also come from, for error messages.
/// A switch: `true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`); the
/// flag alone is `true`.
fn switch(
    env: &'static str,
) -> impl Fn(&str) -> Result<bool, String> + Clone + Send + Sync + 'static {
    move |s| match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "expected true or false (also 1/0, yes/no, on/off){}",
            also(Some(env))
        )),
    }
}

fn also(env: Option<&str>) -> String {
    env.map(|e| format!(" (flag or {e})")).unwrap_or_default()
}

/// An integer in `lo..=hi`.
fn int(
    lo: u64,
    hi: u64,
    env: Option<&'static str>,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |s| {
        s.parse::<u64>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| {
                format!(
                    "expected an integer from {} to {}{}",
                    grouped(lo),
                    grouped(hi),
                    also(env)
                )
            })
    }
}

/// A real number in `lo..=hi` (never NaN or infinite).
fn real(
    lo: f64,
    hi: f64,
    env: &'static str,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s| {
        s.parse::<f64>()
            .ok()
            .filter(|x| (lo..=hi).contains(x))
            .ok_or_else(|| format!("expected a number from {lo} to {hi}{}", also(Some(env))))
    }
}

/// Seconds, fractions allowed: 0.001 to `hi`, or 0 too if `zero` (off).
fn seconds(
    zero: bool,
    hi: u64,
    env: &'static str,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| {
        let ok = |x: &f64| (zero && *x == 0.0) || (0.001..=hi as f64).contains(x);
        s.parse::<f64>()
            .ok()
            .filter(ok)
            .and_then(|x| Duration::try_from_secs_f64(x).ok())
            .ok_or_else(|| {
                format!(
                    "expected seconds{} from 0.001 to {}{}",
                    if zero { ": 0 (off), or" } else { "" },
                    grouped(hi),
                    also(Some(env))
                )
            })
    }
}

/// A secret, a URL or a name: an empty one would turn its feature off
/// without a word (an empty `--jwt-key` would let anyone subscribe).
fn secret(
    env: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |s| {
        if s.is_empty() {
            Err(format!("must not be empty{}", also(Some(env))))
        } else {
            Ok(s.to_owned())
        }
    }
}

/// A path: an empty one would silently mean none (an empty `--data-dir`
/// would keep history in memory, and `201` would no longer mean durable).
fn path(
    env: &'static str,
) -> impl Fn(&str) -> Result<PathBuf, String> + Clone + Send + Sync + 'static {
    let secret = secret(env);
    move |s| secret(s).map(PathBuf::from)
}

/// An origin (`scheme://host[:port]`) or `*`.
fn origin(s: &str) -> Result<String, String> {
    ssehub::http::CorsOrigins::parse_origin(s)
        .map_err(|e| format!("{e} (flag or SSEHUB_CORS_ORIGIN, comma-separated)"))
}
