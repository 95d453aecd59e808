//! The `ssehub` binary: parses flags, then runs the library's server.

mod args;
mod ticker;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ssehub::http::{CorsOrigins, DEFAULT_STREAM_TOPIC, Grants, JwtKey};
use ssehub::server::{ServerConfig, TlsConfig, shutdown_signal};
use ssehub::store::{DiskStore, RedisStore, Retention};
use ssehub::{Hub, Server, SseService};

use crate::args::{Args, Command, ServeArgs, TokenArgs};

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ssehub: {}", chain(&*e));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, Error> {
    let args = Args::parse();
    match args.command {
        Some(Command::Token(t)) => token(t),
        None => serve(args.serve),
    }
}

fn token(args: TokenArgs) -> Result<ExitCode, Error> {
    if args.subscribe.is_empty() && args.publish.is_empty() {
        return Err("a token needs --subscribe or --publish topics".into());
    }
    let mut grants = Grants::new();
    for t in args.subscribe {
        grants = grants.subscribe(t)?;
    }
    for t in args.publish {
        grants = grants.publish(t)?;
    }
    let key = JwtKey::hs256(args.key.as_bytes());
    println!("{}", key.issue(&grants, Duration::from_secs(args.ttl))?);
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> Result<ExitCode, Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ssehub=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr on a full disk) is lost;
        // reporting it with `eprintln!` would panic whatever thread logged.
        .log_internal_errors(false)
        .init();

    let tick = Duration::try_from_secs_f64(args.tick)
        .map_err(|_| format!("invalid --tick {}", args.tick))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut builder = Hub::builder()
        .buffer(usize::try_from(args.buffer)?)
        .max_topic_bytes(usize::try_from(args.max_topic_bytes)?)
        .max_total_bytes(usize::try_from(args.max_total_bytes)?)
        .max_topics(args.max_topics)
        .retry(Some(Duration::from_millis(args.retry)))
        .retry_jitter(args.retry_jitter)
        .keep_alive(Some(Duration::from_secs(args.keep_alive)));
    if let Some(url) = args.redis.as_deref().filter(|u| !u.is_empty()) {
        let store = runtime
            .block_on(RedisStore::connect(url))
            .map_err(|e| format!("--redis {url}: {}", chain(&e)))?;
        builder = builder.storage(store);
    }
    if let Some(dir) = args
        .data_dir
        .as_deref()
        .filter(|d| !d.as_os_str().is_empty())
    {
        let age = Duration::try_from_secs_f64(args.retain_age)
            .map_err(|_| format!("invalid --retain-age {}", args.retain_age))?;
        let retention = Retention::default()
            .events(args.retain_events)
            .bytes(args.retain_bytes)
            .age(Some(age))
            .total_bytes(args.max_disk_bytes);
        let store =
            DiskStore::open(dir, retention).map_err(|e| format!("--data-dir: {}", chain(&e)))?;
        builder = builder.storage(store);
    }
    let hub = builder.build();
    let mut service = SseService::builder(hub.clone())
        .max_body_bytes(args.max_body_bytes)
        .max_topics_per_stream(args.max_topics_per_stream as usize)
        .cors(CorsOrigins::from_list(&args.cors_origin));
    if let Some(token) = args.publish_token.filter(|t| !t.is_empty()) {
        service = service.publish_token(token);
    }
    if let Some(key) = args.jwt_key.filter(|k| !k.is_empty()) {
        service = service.jwt_key(JwtKey::hs256(key.as_bytes()));
    }
    let service = service.build();

    let mut config = ServerConfig::default();
    config.shutdown_timeout = Duration::from_secs(args.shutdown_timeout);
    config.header_read_timeout = deadline("--header-timeout", args.header_timeout)?;
    config.body_read_timeout = deadline("--body-timeout", args.body_timeout)?;
    config.idle_timeout = deadline("--idle-timeout", args.idle_timeout)?;
    config.max_connections = args.max_connections;
    config.max_connections_per_ip =
        (args.max_connections_per_ip > 0).then_some(args.max_connections_per_ip);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(TlsConfig::from_pem_files(cert, key)?);
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };

    runtime.block_on(async move {
        let server = Server::bind(args.listen, service).await?.config(config);
        let addr = server.local_addr()?;
        // Tests and scripts read this line to find the port.
        println!("ssehub listening on {scheme}://{addr}");
        tracing::info!(%addr, epoch = %hub.epoch(), "listening");
        if !tick.is_zero() {
            ticker::spawn_ticker(hub.clone(), DEFAULT_STREAM_TOPIC, tick);
        }
        server.run_until(shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok::<_, Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// An error and its causes, one after the other.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A deadline flag in seconds: fractions allowed, zero not (it would close
/// every connection at once), nor more than a year (far beyond any use, and
/// it keeps deadline arithmetic away from overflow).
fn deadline(flag: &str, secs: f64) -> Result<Duration, Error> {
    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() && d <= YEAR => Ok(d),
        _ => Err(format!("invalid {flag} {secs}: expected seconds above 0, at most a year").into()),
    }
}
