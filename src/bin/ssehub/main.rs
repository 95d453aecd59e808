//! The `ssehub` binary: parses flags, then runs the library's server.

mod args;
mod ticker;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ssehub::http::{CorsOrigins, DEFAULT_STREAM_TOPIC, Grants, JwtKey, MercureConfig, TokenPolicy};
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
    let key = JwtKey::try_hs256(args.key.as_bytes())?;
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut builder = Hub::builder()
        .buffer(usize::try_from(args.buffer)?)
        .max_topic_bytes(usize::try_from(args.max_topic_bytes)?)
        .max_total_bytes(usize::try_from(args.max_total_bytes)?)
        .max_topics(usize::try_from(args.max_topics)?)
        .retry(Some(Duration::from_millis(args.retry)))
        .retry_jitter(args.retry_jitter)
        // 0 is never (the builder's `None`).
        .keep_alive(Some(Duration::from_secs(args.keep_alive)));
    if let Some(url) = args.redis.as_deref() {
        let store = runtime
            .block_on(RedisStore::connect(url))
            .map_err(|e| format!("--redis {url}: {}", chain(&e)))?;
        builder = builder.storage(store);
    }
    if let Some(dir) = args.data_dir.as_deref() {
        let retention = Retention::default()
            .events(args.retain_events)
            .bytes(args.retain_bytes)
            // 0 is no age limit (the builder's `None`).
            .age(Some(args.retain_age))
            .total_bytes(args.max_disk_bytes);
        let store =
            DiskStore::open(dir, retention).map_err(|e| format!("--data-dir: {}", chain(&e)))?;
        builder = builder.storage(store);
    }
    let hub = builder.build();
    // Neither can be empty: the flags refuse it (an empty secret must
    // never turn its check off).
    let mut tokens = TokenPolicy::new();
    if let Some(token) = args.publish_token {
        tokens = tokens.publish_token(token);
    }
    if let Some(key) = args.jwt_key {
        tokens = tokens.jwt(JwtKey::try_hs256(key.as_bytes())?);
    }
    let mut service = SseService::builder(hub.clone());
    if let Some(key) = args.mercure_jwt_key {
        let mercure = MercureConfig::try_hs256(key.as_bytes())?
            .anonymous(args.mercure_anonymous)
            .subscriptions(args.mercure_subscriptions);
        service = service.mercure(mercure);
    }
    let service = service
        .max_body_bytes(usize::try_from(args.max_body_bytes)?)
        .long_poll_timeout(args.long_poll_timeout)
        .max_topics_per_stream(usize::try_from(args.max_topics_per_stream)?)
        // Each origin was checked as the flag was parsed.
        .cors(CorsOrigins::try_from_list(&args.cors_origin)?)
        .tokens(tokens)
        .build();

    let mut config = ServerConfig::default();
    config.shutdown_timeout = Duration::from_secs(args.shutdown_timeout);
    config.header_read_timeout = args.header_timeout;
    config.body_read_timeout = args.body_timeout;
    config.idle_timeout = args.idle_timeout;
    config.max_connections = usize::try_from(args.max_connections)?;
    config.max_connections_per_ip = match args.max_connections_per_ip {
        0 => None,
        n => Some(usize::try_from(n)?),
    };
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls = Some(TlsConfig::from_pem_files(cert, key)?);
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };

    runtime.block_on(async move {
        let server = Server::bind(args.listen, service)
            .await?
            .with_config(config);
        let addr = server.local_addr()?;
        // Tests and scripts read this line to find the port.
        println!("ssehub listening on {scheme}://{addr}");
        tracing::info!(%addr, epoch = %hub.epoch(), "listening");
        if !args.tick.is_zero() {
            ticker::spawn_ticker(hub.clone(), DEFAULT_STREAM_TOPIC, args.tick);
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
