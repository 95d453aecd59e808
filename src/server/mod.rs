//! The server loop: accept, limit, serve HTTP/1.1 and HTTP/2 (h2c, or TLS
//! with ALPN) on one port, shut down gracefully.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | [`Server`]: bind, the accept loop, graceful shutdown |
//! | `config.rs` | [`ServerConfig`], whose docs hold the table of deadlines |
//! | `limits.rs` | connection limits, in total and per IP, and the answer to one over them |
//! | `conn.rs` | one accepted connection: first bytes, TLS, the fast path, then hyper |
//! | `serve.rs` | what a server runs: [`Serve`], [`ServiceAdapter`]; each request of a connection hyper serves |
//! | `deadline.rs` | the deadlines hyper lacks ([`BodyTimeout`], idle connections), and where each deadline is enforced |
//! | `h1.rs` | the HTTP/1.1 fast path of event streams |
//! | `tls.rs` | HTTPS (feature `tls`; `no_tls.rs` stands in without it) |
//! | `testing/` | test harnesses (`differential.rs`: the fast path against hyper; `fuzzing.rs`), built for tests and `cargo fuzz` only |

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, ToSocketAddrs};

use self::conn::{Conn, first_bytes_within, http_builder};
use self::limits::{Limiter, reject};
use crate::http::connections::ConnectionStats;
use crate::http::service::SseService;

mod config;
mod conn;
pub(crate) mod deadline;
// Built for `cargo fuzz` (`--cfg fuzzing`), and in tests to run the seeds.
pub(crate) mod h1;
mod limits;
pub(crate) mod serve;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod testing;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
pub(crate) mod tls;

pub use self::config::ServerConfig;
pub use self::deadline::BodyTimeout;
pub use self::serve::{AdapterBody, RequestBody, Serve, ServeFuture, ServiceAdapter};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use self::tls::{TlsConfig, TlsError};

/// Serves an [`SseService`], or any service wrapped in a [`ServiceAdapter`], on a
/// TCP listener.
///
/// HTTP/1.1 and HTTP/2 share the port: with prior knowledge (h2c) in
/// cleartext, through ALPN with TLS. `TCP_NODELAY` is set on every
/// connection. Connections beyond the limits get `503` with `Retry-After`
/// and are closed; existing ones are untouched. Every state of a connection
/// but a response in progress has a deadline (see [`ServerConfig`]). On
/// shutdown the server stops accepting, tells the service
/// ([`Serve::shutdown`]: [`SseService`] closes its hub, which ends every
/// event stream, so clients reconnect elsewhere with their last id), and
/// waits for connections to finish their responses, at most
/// [`ServerConfig::shutdown_timeout`].
///
/// # Examples
///
/// ```no_run
/// use ssehub::{Hub, Server, SseService};
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let server = Server::bind("127.0.0.1:8080", SseService::new(Hub::new())).await?;
/// server.run_until(ssehub::server::shutdown_signal()).await
/// # }
/// ```
pub struct Server<S = SseService> {
    listener: TcpListener,
    service: S,
    config: ServerConfig,
}

/// The listen backlog [`Server::bind`] asks for.
pub(crate) const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl<S: Serve> Server<S> {
    /// A server on an already bound listener.
    pub fn new(listener: TcpListener, service: S) -> Self {
        Server {
            listener,
            service,
            config: ServerConfig::default(),
        }
    }

    /// Binds `addr` and makes a server on it.
    ///
    /// The listen backlog is 4096 (the kernel caps it at
    /// `net.core.somaxconn`), not the 128 of `TcpListener::bind`: after a
    /// restart or a network blip, thousands of `EventSource`s reconnect
    /// within a second, and connections beyond the backlog are dropped until
    /// their SYN is retried a second or more later.
    ///
    /// # Errors
    ///
    /// If no address of `addr` can be bound.
    pub async fn bind(addr: impl ToSocketAddrs, service: S) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
        for addr in tokio::net::lookup_host(addr).await? {
            match listen(addr) {
                Ok(listener) => return Ok(Server::new(listener, service)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The server with these settings instead of the defaults.
    #[must_use]
    pub fn with_config(mut self, config: ServerConfig) -> Self {
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
        let config = config.capped();
        let builder = Arc::new(http_builder(&config));
        let stats = service.connection_stats().unwrap_or_default();
        let limiter = Arc::new(Limiter::new(&config, stats.clone()));
        let rejecting = Arc::new(AtomicUsize::new(0));
        // Every connection watches this, in every phase, and winds down
        // when it flips: streams end, hyper connections shut down
        // gracefully, idle ones close.
        let (stop, stopping) = tokio::sync::watch::channel(false);
        // Every connection's task, so that shutdown can end the ones that
        // outlive its timeout.
        let mut tasks = tokio::task::JoinSet::new();
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
            let _ = stream.set_nodelay(true);
            let permit = match limiter.try_acquire(peer.ip()) {
                Ok(permit) => permit,
                Err(why) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    reject(stream, why, &config, &stats, &rejecting);
                    continue;
                }
            };
            stats.accepted.fetch_add(1, Ordering::Relaxed);
            let mut conn = Conn::new(service.clone(), builder.clone(), stopping.clone(), &config);
            conn.peer = Some(peer);
            let tls = config.tls_config();
            // Forget the tasks that are done.
            while tasks.try_join_next().is_some() {}
            tasks.spawn(async move {
                let _permit = permit;
                // hyper-util's protocol detection waits for the first bytes
                // without a timeout: bound it here (slow-loris).
                if !first_bytes_within(&stream, conn.timeout, conn.stopping.clone()).await {
                    return;
                }
                // A task future is as large as its largest state, and the
                // whole of it is resident for the life of the connection:
                // the rare, large paths (TLS, hyper) live in their own box.
                let result = match tls {
                    None => conn.serve(stream).await,
                    Some(tls) => Box::pin(conn.serve_tls(tls, stream, peer)).await,
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }

        drop(listener);
        tracing::info!("shutting down: ending streams");
        service.shutdown();
        let _ = stop.send(true);
        let drained = all_closed(&stats);
        if tokio::time::timeout(config.shutdown_timeout, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                "connections still open after {:?}; closing them",
                config.shutdown_timeout
            );
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

/// Completes when every connection has closed.
async fn all_closed(stats: &ConnectionStats) {
    loop {
        let notified = stats.all_closed.notified();
        if stats.open.load(Ordering::Acquire) == 0 {
            return;
        }
        notified.await;
    }
}

impl<S> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("config", &self.config)
            .finish_non_exhaustive()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The grace is private, but the README's table of limits states it.
    #[test]
    fn the_readme_states_the_idle_grace() {
        let readme = include_str!("../../README.md");
        let said = format!("dropped {} s later", config::IDLE_GRACE.as_secs());
        assert!(readme.contains(&said), "README.md: {said:?}");
    }
}
