//! [`ServerConfig`]: the settings of a [`Server`](crate::Server), with the
//! table of its deadlines.

use std::time::Duration;

use crate::server::tls::TlsConfig;

/// The settings of a [`Server`](crate::Server).
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
    /// breaks either rule fails with an [`io::Error`](std::io::Error) of kind
    /// [`TimedOut`](std::io::ErrorKind::TimedOut), which the service answers
    /// with `408` (default 10 s; see [`BodyTimeout`](crate::server::BodyTimeout)).
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
    pub(crate) fn capped(mut self) -> Self {
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
    pub(crate) fn tls_config(&self) -> Option<TlsConfig> {
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
