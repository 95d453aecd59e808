//! The server loop: accept, limit, serve HTTP/1.1 and HTTP/2 (h2c, or TLS
//! with ALPN) on one port, shut down gracefully.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | [`Server`], [`ServerConfig`] (its docs hold the table of deadlines), the accept loop, connection limits |
//! | `serve.rs` | what a server runs: [`Serve`], [`ServiceAdapter`]; each request of a connection hyper serves |
//! | `deadline.rs` | the deadlines hyper lacks ([`BodyTimeout`], idle connections), and where each deadline is enforced |
//! | `h1.rs` | the HTTP/1.1 fast path of event streams |
//! | `tls.rs` | HTTPS (feature `tls`; `no_tls.rs` stands in without it) |
//! | `differential.rs`, `fuzzing.rs` | test harnesses, built for tests and `cargo fuzz` only |

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::Response;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};

use self::h1::{Head, Outcome, Prefixed};
use crate::http::body::ResponseBody;
use crate::http::connections::ConnectionStats;
use crate::http::refusal::{Refusal, refuse};
use crate::http::service::SseService;
use crate::server::deadline::{Activity, BodyLimits};
use crate::server::serve::Deadlines;

pub(crate) mod deadline;
#[cfg(any(test, fuzzing))]
pub(crate) mod differential;
// Built for `cargo fuzz` (`--cfg fuzzing`), and in tests to run the seeds.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod h1;
pub(crate) mod serve;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
pub(crate) mod tls;

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

/// The settings of a [`Server`].
///
/// # Deadlines
///
/// Every state of a connection has a deadline, on every protocol (HTTP/1.1,
/// h2c, and both over TLS), except one: a response in progress. An event
/// stream lasts as long as its client wants, and its keep-alive comments
/// show that the client still reads (a client that stops reading costs
/// bounded memory, see the README).
///
/// | state | deadline | then |
/// |---|---|---|
/// | accepted, nothing received | [`header_read_timeout`](Self::header_read_timeout) | closed |
/// | TLS handshake | [`header_read_timeout`](Self::header_read_timeout) | closed |
/// | HTTP/1.1 request head, including the wait for the next request on a kept-alive connection | [`header_read_timeout`](Self::header_read_timeout) | closed |
/// | no request in progress on a connection served by hyper: the HTTP/2 preface and SETTINGS, an HTTP/2 connection without a stream (PINGs do not count), a head in HTTP/2 frames | [`idle_timeout`](Self::idle_timeout) | shut down gracefully (HTTP/2: `GOAWAY`), closed 1 s later if still open and idle |
/// | request body: silence between bytes | [`body_read_timeout`](Self::body_read_timeout) | `408` |
/// | request body: average rate once `body_read_timeout` has passed | [`min_body_rate`](Self::min_body_rate) | `408` |
/// | answering `503` to a connection over the limits | twice the shorter of `header_read_timeout` and 5 s | closed |
/// | shutdown | [`shutdown_timeout`](Self::shutdown_timeout) | closed |
///
/// A request is in progress from the moment its head is complete until its
/// response has been sent (or its stream reset). HTTP/1.1 connections that
/// hyper serves (every request but event streams) are watched by both the
/// head deadline and the idle rule; the shorter wins. The `408` of a body
/// that is too slow closes an HTTP/1.1 connection (`Connection: close`) and
/// ends only the stream on HTTP/2.
///
/// A deadline longer than a year counts as a year: added to the clock,
/// `Duration::MAX` would overflow it (a panic on every connection).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How long shutdown waits for connections to finish (default 5 s).
    pub shutdown_timeout: Duration,
    /// How long a client may take to send its first bytes, to finish the
    /// TLS handshake, and to send each HTTP/1.1 request head, counted from
    /// the end of the previous response on a kept-alive connection
    /// (slow-loris defence); the connection is closed after it (default
    /// 10 s). Must not be zero.
    pub header_read_timeout: Duration,
    /// Longest silence between two bytes of a request body; also the grace
    /// before [`min_body_rate`](Self::min_body_rate) applies. A body that
    /// breaks either rule fails with an [`io::Error`] of kind
    /// [`TimedOut`](io::ErrorKind::TimedOut), which the service answers
    /// with `408` (default 10 s; see [`BodyTimeout`]).
    /// Must not be zero.
    pub body_read_timeout: Duration,
    /// Slowest average rate of a request body, in bytes per second, once
    /// [`body_read_timeout`](Self::body_read_timeout) has passed since the
    /// body started (default 1024; `0` turns the rule off).
    pub min_body_rate: u64,
    /// How long a connection may have no request in progress before it is
    /// shut down: `GOAWAY` on HTTP/2, then closed at most a second
    /// later (sooner if this timeout is shorter) unless a request came in
    /// meanwhile (default 10 s). Applies to every connection served through
    /// hyper, whatever it is doing, so it also bounds the HTTP/2 preface and
    /// an HTTP/2 request head. Must not be zero.
    pub idle_timeout: Duration,
    /// Largest request head (request line and headers); larger ones get
    /// `431`.
    pub max_header_bytes: usize,
    /// Most open connections.
    pub max_connections: usize,
    /// Most open connections from one IP address (`None`: no such limit).
    pub max_connections_per_ip: Option<usize>,
    /// Serve HTTPS instead of cleartext.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub tls: Option<TlsConfig>,
    /// Write HTTP/1.1 event streams straight to the socket instead of
    /// through hyper's connection, which keeps 16 KiB of buffers per
    /// connection for as long as a stream lasts (see the README).
    pub stream_fast_path: bool,
}

/// The longest deadline: a year (see [`ServerConfig`]).
const MAX_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

impl ServerConfig {
    /// These settings with every deadline at most [`MAX_DEADLINE`].
    fn capped(mut self) -> Self {
        for d in [
            &mut self.shutdown_timeout,
            &mut self.header_read_timeout,
            &mut self.body_read_timeout,
            &mut self.idle_timeout,
        ] {
            *d = (*d).min(MAX_DEADLINE);
        }
        self
    }
}

impl ServerConfig {
    /// The TLS settings, if the server serves HTTPS.
    fn tls_config(&self) -> Option<self::tls::TlsConfig> {
        #[cfg(feature = "tls")]
        return self.tls.clone();
        #[cfg(not(feature = "tls"))]
        None
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            shutdown_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            min_body_rate: 1024,
            idle_timeout: Duration::from_secs(10),
            max_header_bytes: 16 << 10,
            max_connections: 10_000,
            max_connections_per_ip: None,
            #[cfg(feature = "tls")]
            tls: None,
            stream_fast_path: true,
        }
    }
}

/// How long an idle connection may take to close after it was asked to
/// (HTTP/2: after `GOAWAY`, the time for the client's answer to the PING that
/// follows it) before it is dropped; at most
/// [`ServerConfig::idle_timeout`].
pub(crate) const IDLE_GRACE: Duration = Duration::from_secs(1);

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

/// Connections being refused at once; more are closed without an answer.
const MAX_REJECTING: usize = 256;

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

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn http_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper answers 431 when the head outgrows the read buffer.
        .max_buf_size(head_limit(config.max_header_bytes));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The largest request head on HTTP/1.1: `max_header_bytes`, but at least
/// the smallest read buffer hyper accepts.
fn head_limit(max_header_bytes: usize) -> usize {
    max_header_bytes.max(8192)
}

/// One accepted connection and what serving it needs.
struct Conn<S> {
    service: S,
    /// The client, told to the service in each request's extensions.
    peer: Option<SocketAddr>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stopping: tokio::sync::watch::Receiver<bool>,
    /// First bytes, TLS handshake, HTTP/1.1 head.
    timeout: Duration,
    idle_timeout: Duration,
    body: BodyLimits,
    max_head: usize,
    fast_path: bool,
}

impl<S: Serve> Conn<S> {
    fn new(
        service: S,
        builder: Arc<auto::Builder<TokioExecutor>>,
        stopping: tokio::sync::watch::Receiver<bool>,
        config: &ServerConfig,
    ) -> Self {
        Conn {
            service,
            peer: None,
            builder,
            stopping,
            timeout: config.header_read_timeout,
            idle_timeout: config.idle_timeout,
            body: BodyLimits {
                silence: config.body_read_timeout,
                min_rate: config.min_body_rate,
            },
            max_head: config.max_header_bytes,
            fast_path: config.stream_fast_path,
        }
    }

    /// Serves HTTP/1.1 event streams on the fast path (see `h1.rs`) and
    /// hands the connection to hyper at the first other request.
    async fn serve<I>(self, mut io: I) -> Result<(), BoxError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if !self.fast_path {
            return Box::pin(self.hyper(io)).await;
        }
        let mut buf = BytesMut::new();
        // A response was written here: what follows is HTTP/1.1 only.
        let mut answered = false;
        loop {
            let deadline = tokio::time::Instant::now() + self.timeout;
            // Look for a head in what is buffered, then, as hyper does, only
            // when a read may have brought the end of one.
            let mut look = true;
            let (request, len) = loop {
                if look && !buf.is_empty() {
                    match h1::parse_head(&buf, &self.service) {
                        Head::Stream(request, len) => break (request, len),
                        Head::Other => {
                            return Box::pin(self.hand_off(answered, buf, io)).await;
                        }
                        Head::Partial => {}
                    }
                }
                // The client's bytes not yet answered never exceed the head
                // limit, so a head found in them is never longer; one not
                // complete within it goes to hyper, which answers 431.
                let room = head_limit(self.max_head).saturating_sub(buf.len());
                if room == 0 {
                    return Box::pin(self.hand_off(answered, buf, io)).await;
                }
                buf.reserve(room.min(h1::HEAD_READ));
                let mut window = (&mut buf).limit(room);
                let mut stopping = self.stopping.clone();
                let n = tokio::select! {
                    read = tokio::time::timeout_at(deadline, io.read_buf(&mut window)) => match read {
                        Ok(Ok(n)) if n > 0 => n,
                        // Closed, failed, or too slow to send a request.
                        _ => return Ok(()),
                    },
                    _ = stopping.wait_for(|stop| *stop) => return Ok(()),
                };
                look = buf.len() == n || h1::may_end_head(&buf, buf.len() - n);
            };
            // Keep only what follows the head; free the rest while streaming.
            let rest = Bytes::copy_from_slice(&buf[len..]);
            buf = BytesMut::new();
            // Shutdown closes the hub, which ends the stream cleanly.
            let stopping = self.stopping.clone();
            let answered_here = h1::respond(
                &mut io,
                &self.service,
                self.peer,
                request,
                rest.is_empty(),
                stopping,
            );
            match answered_here.await? {
                Outcome::KeepAlive { pipelined } => {
                    answered = true;
                    buf.extend_from_slice(&rest);
                    buf.extend_from_slice(&pipelined);
                }
                Outcome::Close => return Ok(()),
            }
        }
    }

    /// Gives the connection to hyper with the bytes already read. After a
    /// response of the fast path, only as HTTP/1.1: hyper alone would not
    /// look for the HTTP/2 preface in the middle of a connection either.
    async fn hand_off<I>(mut self, answered: bool, buf: BytesMut, io: I) -> Result<(), BoxError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if answered {
            self.builder = Arc::new((*self.builder).clone().http1_only());
        }
        self.hyper(Prefixed::new(buf.freeze(), io)).await
    }

    async fn serve_tls(
        mut self,
        tls: self::tls::TlsConfig,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<(), BoxError> {
        let mut stopping = self.stopping.clone();
        let handshake = tokio::select! {
            h = tokio::time::timeout(self.timeout, tls.accept(stream)) => h,
            _ = stopping.wait_for(|stop| *stop) => return Ok(()),
        };
        match handshake {
            Ok(Ok((stream, h2))) => {
                // ALPN `h2` binds the client to HTTP/2 (RFC 9113, 3.2):
                // hyper's HTTP/2 alone. Otherwise HTTP/1.1, on the fast
                // path (a client that sends the HTTP/2 preface anyway is
                // handed to hyper there).
                if h2 {
                    self.builder = Arc::new((*self.builder).clone().http2_only());
                    self.hyper(stream).await
                } else {
                    self.serve(stream).await
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// Serves the connection with hyper, HTTP/1.1 or HTTP/2 by its first
    /// bytes, and shuts it down once it has been idle for `idle_timeout`
    /// (see [`ServerConfig`]'s deadlines).
    async fn hyper<I>(self, io: I) -> Result<(), BoxError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let service = Deadlines::new(self.service, self.peer, activity.clone(), self.body);
        let conn = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stopping = self.stopping;
        let idle = tokio::select! {
            done = conn.as_mut() => return done,
            _ = stopping.wait_for(|stop| *stop) => false,
            () = activity.idle_for(self.idle_timeout) => true,
        };
        if !idle {
            // Finish the response in progress (streams end with the hub),
            // then close.
            conn.as_mut().graceful_shutdown();
            return conn.await;
        }
        // Idle: refuse new requests (HTTP/2 `GOAWAY`; an unfinished
        // preface or head is abandoned) and close. A request that raced the
        // `GOAWAY` in is answered; a client that does not let the
        // connection close is dropped.
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::trace!(error = %e, "idle connection closed with an error");
                }
            }
            () = activity.idle_for(IDLE_GRACE.min(self.idle_timeout)) => {}
        }
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

/// Waits until the client sends something; `false` if it does not within
/// `timeout` or closes the connection first.
async fn first_bytes_within(
    stream: &TcpStream,
    timeout: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> bool {
    let mut byte = [0u8; 1];
    tokio::select! {
        peeked = tokio::time::timeout(timeout, stream.peek(&mut byte)) => matches!(peeked, Ok(Ok(n)) if n > 0),
        _ = stopping.wait_for(|stop| *stop) => false,
    }
}

/// Answers a connection over a limit and closes it, unless too many are
/// being refused already: a browser's `EventSource` gets `200` with a
/// `retry:` hint (it keeps trying), other clients `503` (see
/// [`refusal`](crate::http::refusal)).
fn reject(
    stream: TcpStream,
    why: Refusal,
    config: &ServerConfig,
    stats: &Arc<ConnectionStats>,
    rejecting: &Arc<AtomicUsize>,
) {
    if rejecting.fetch_add(1, Ordering::Relaxed) >= MAX_REJECTING {
        rejecting.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let rejecting = rejecting.clone();
    let stats = stats.clone();
    let tls = config.tls_config();
    let timeout = config.header_read_timeout.min(Duration::from_secs(5));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    tokio::spawn(async move {
        let svc = service_fn(|req: Request| {
            let mut res = refuse(why, req.headers(), Some(&stats.refusals));
            stats.refusals.decorate(req.headers(), &mut res);
            async { Ok::<Response<ResponseBody>, Infallible>(res) }
        });
        let work = async {
            match tls {
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
                Some(tls) => {
                    if let Ok((stream, _)) = tls.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(timeout * 2, work).await;
        rejecting.fetch_sub(1, Ordering::Relaxed);
    });
}

type Request = http::Request<Incoming>;

/// Counts open connections, in total and per IP address.
struct Limiter {
    max: usize,
    per_ip: Option<usize>,
    stats: Arc<ConnectionStats>,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Limiter {
    fn new(config: &ServerConfig, stats: Arc<ConnectionStats>) -> Self {
        Limiter {
            max: config.max_connections,
            per_ip: config.max_connections_per_ip,
            stats,
            by_ip: Mutex::new(HashMap::new()),
        }
    }

    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        if self.stats.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.stats.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::Connections);
        }
        if let Some(per_ip) = self.per_ip {
            let mut by_ip = self.by_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = by_ip.entry(ip).or_insert(0);
            if *n >= per_ip {
                drop(by_ip);
                self.stats.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refusal::ConnectionsPerIp);
            }
            *n += 1;
        }
        Ok(Permit {
            limiter: self.clone(),
            ip,
        })
    }
}

/// One open connection; released on drop.
struct Permit {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let l = &self.limiter;
        if l.per_ip.is_some() {
            let mut by_ip = l.by_ip.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = by_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&self.ip);
                }
            }
        }
        if l.stats.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            l.stats.all_closed.notify_waiters();
        }
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
        let said = format!("dropped {} s later", IDLE_GRACE.as_secs());
        assert!(readme.contains(&said), "README.md: {said:?}");
    }
}
