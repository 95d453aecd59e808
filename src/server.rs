//! The server loop: accept, serve HTTP/1.1 and h2c on one port, shut down
//! gracefully.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::service::SseService;

/// Serves an [`SseService`] on a TCP listener.
///
/// HTTP/1.1 and HTTP/2 with prior knowledge (h2c) share the port;
/// `TCP_NODELAY` is set on every connection. On shutdown the server stops
/// accepting, closes the hub (which ends every event stream, so clients
/// reconnect elsewhere with their last id), and waits for connections to
/// finish their responses, at most [`ServerConfig::shutdown_timeout`].
///
/// # Examples
///
/// ```no_run
/// use ssehub::{Hub, Server, SseService};
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let server = Server::bind("127.0.0.1:8080", SseService::new(Hub::new())).await?;
/// server.run_until(ssehub::shutdown_signal()).await
/// # }
/// ```
pub struct Server {
    listener: TcpListener,
    service: SseService,
    config: ServerConfig,
}

/// The settings of a [`Server`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How long shutdown waits for connections to finish.
    pub shutdown_timeout: Duration,
    /// How long a client may take to send a request's headers (slow-loris
    /// defence); the connection is closed after it.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); larger ones get
    /// `431`.
    pub max_header_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shutdown_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
        }
    }
}

impl Server {
    /// A server on an already bound listener.
    pub fn new(listener: TcpListener, service: SseService) -> Self {
        Server {
            listener,
            service,
            config: ServerConfig::default(),
        }
    }

    /// Binds `addr` and makes a server on it.
    ///
    /// # Errors
    ///
    /// If the address cannot be bound.
    pub async fn bind(addr: impl ToSocketAddrs, service: SseService) -> io::Result<Self> {
        Ok(Server::new(TcpListener::bind(addr).await?, service))
    }

    /// Replaces the settings.
    #[must_use]
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// The address the server listens on.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    ///
    /// # Errors
    ///
    /// Only errors of the listener that are not about one connection.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> io::Result<()> {
        let Server {
            listener,
            service,
            config,
        } = self;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_read_timeout)
            // hyper answers 431 when the head outgrows the read buffer.
            .max_buf_size(config.max_header_bytes.max(8192));
        builder.http2().timer(TokioTimer::new());

        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        if is_connection_error(&e) {
                            continue;
                        }
                        // Out of file descriptors or memory: back off rather
                        // than spin; existing connections keep being served.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "set_nodelay failed");
            }
            let conn = builder
                .serve_connection(TokioIo::new(stream), service.clone())
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }

        drop(listener);
        tracing::info!("shutting down: ending streams");
        service.hub().close();
        if tokio::time::timeout(config.shutdown_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                "connections still open after {:?}; closing them",
                config.shutdown_timeout
            );
        }
        Ok(())
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("service", &self.service)
            .field("config", &self.config)
            .finish()
    }
}

/// Errors of `accept` that concern one connection only.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
