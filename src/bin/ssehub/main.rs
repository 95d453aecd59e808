//! The `ssehub` binary: parses flags, then runs the library's server.

mod args;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ssehub::{Hub, Server, ServerConfig, SseService};

use crate::args::Args;

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ssehub: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ssehub=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let tick = Duration::try_from_secs_f64(args.tick)
        .map_err(|_| format!("invalid --tick {}", args.tick))?;
    let hub = Hub::builder()
        .buffer(usize::try_from(args.buffer)?)
        .max_topic_bytes(usize::try_from(args.max_topic_bytes)?)
        .max_topics(args.max_topics)
        .retry(Some(Duration::from_millis(args.retry)))
        .keep_alive(Some(Duration::from_secs(args.keep_alive)))
        .build();
    let service = SseService::builder(hub.clone())
        .max_body_bytes(args.max_body_bytes)
        .build();
    let mut config = ServerConfig::default();
    config.shutdown_timeout = Duration::from_secs(args.shutdown_timeout);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = Server::bind(args.listen, service).await?.config(config);
        let addr = server.local_addr()?;
        // Tests and scripts read this line to find the port.
        println!("ssehub listening on http://{addr}");
        tracing::info!(%addr, epoch = %hub.epoch(), "listening");
        if !tick.is_zero() {
            ssehub::spawn_ticker(hub.clone(), ssehub::DEFAULT_STREAM_TOPIC, tick);
        }
        server.run_until(ssehub::shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
