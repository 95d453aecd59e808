//! One accepted connection ([`Conn`]): the first bytes, TLS, the HTTP/1.1
//! fast path of event streams, then hyper, each under its deadline (see
//! `deadline.rs` for where each is enforced).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::server::config::{IDLE_GRACE, ServerConfig};
use crate::server::deadline::{Activity, BodyLimits};
use crate::server::h1::{self, Head, Outcome, Prefixed};
use crate::server::serve::{Deadlines, Serve};
use crate::server::tls::TlsConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn http_builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
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
pub(crate) fn head_limit(max_header_bytes: usize) -> usize {
    max_header_bytes.max(8192)
}

/// One accepted connection and what serving it needs.
pub(crate) struct Conn<S> {
    pub(crate) service: S,
    /// The client, told to the service in each request's extensions.
    pub(crate) peer: Option<SocketAddr>,
    /// Over TLS (told to the service as [`Secure`](crate::http::Secure)).
    pub(crate) secure: bool,
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    /// First bytes, TLS handshake, HTTP/1.1 head.
    pub(crate) timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) body: BodyLimits,
    pub(crate) max_head: usize,
    pub(crate) fast_path: bool,
}

impl<S: Serve> Conn<S> {
    pub(crate) fn new(
        service: S,
        builder: Arc<auto::Builder<TokioExecutor>>,
        stopping: tokio::sync::watch::Receiver<bool>,
        config: &ServerConfig,
    ) -> Self {
        Conn {
            service,
            peer: None,
            secure: false,
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
    pub(crate) async fn serve<I>(self, mut io: I) -> Result<(), BoxError>
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
                self.secure,
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

    pub(crate) async fn serve_tls(
        mut self,
        tls: TlsConfig,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<(), BoxError> {
        self.secure = true;
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
    pub(crate) async fn hyper<I>(self, io: I) -> Result<(), BoxError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let service = Deadlines::new(
            self.service,
            self.peer,
            self.secure,
            activity.clone(),
            self.body,
        );
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

/// Waits until the client sends something; `false` if it does not within
/// `timeout` or closes the connection first.
pub(crate) async fn first_bytes_within(
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
