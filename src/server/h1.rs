//! The HTTP/1.1 fast path for event streams.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for the whole
//! life of a connection; an event stream lives for hours, and each buffer
//! keeps at least one resident page: a bare hyper server holding idle
//! streams measured 11.5 KB per connection here, the same socket held by a
//! plain task 2.6 KB. So [`Server`](crate::Server) reads HTTP/1.1 request
//! heads itself (with `httparse`, hyper's own parser). A `GET` of an event
//! stream is answered by the same [`SseService`], and its body is written as
//! chunks straight to the socket by [`Pump`], which holds no buffer between
//! events. Every other request (HTTP/2, `POST`, `HEAD`, a body, an upgrade,
//! anything unusual) goes to hyper with the bytes already read replayed, so
//! hyper stays the HTTP implementation and this file only frames one kind of
//! response.
//!
//! ## Limits and pipelining
//!
//! The limits are hyper's: at most 100 headers, and a head no longer than
//! hyper's read buffer (`max_header_bytes`, at least 8 KiB). The bytes read
//! and not yet answered never exceed that limit, so a head found in them
//! is never longer; one not complete within it goes to hyper, which answers
//! `431`. A head is parsed when hyper would parse it: on its first read,
//! then only once its end may have arrived. While a response is written,
//! the client's side is read only until something of a next request
//! arrives (one read of at most `MAX_PIPELINED` bytes), as hyper does: a
//! close is noticed meanwhile, and a client that pipelines more is pushed
//! back by TCP, its requests answered in order once the response is
//! complete. `server::testing::differential` checks all of this against hyper
//! alone.
//!
//! About 750 lines, one concern: parsing a request head, deciding, and
//! pumping the stream share the connection's buffers and state machine;
//! split, each part would reach into the others.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version};
use http_body::Body;
use http_body_util::Empty;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::serve::{RequestBody, Serve};
use crate::http::PeerAddr;

/// Most headers in a request head.
const MAX_HEADERS: usize = 100;

/// Most client bytes read while a response is written: one read of the
/// start of a pipelined next request (see [`Pump`]).
const MAX_PIPELINED: usize = 256;

/// How much one read of a request head takes: a typical head in one read.
/// (hyper's reads are larger; that moves only the moment at which a
/// malformed head that has not ended is refused.) 8 KiB made the reconnect
/// storm test measurably slower.
pub(crate) const HEAD_READ: usize = 1 << 10;

/// Whether bytes read since `prev_len` (the length at the last look) may
/// end a request head: hyper's `is_complete_fast`, so that the fast path
/// parses a head at the same moments as hyper (on the first read, then
/// only once an end of head may have arrived), and a head sent a byte at
/// a time is not parsed again at every byte.
pub(crate) fn may_end_head(buf: &[u8], prev_len: usize) -> bool {
    let bytes = &buf[prev_len.saturating_sub(3).min(buf.len())..];
    for (i, &b) in bytes.iter().enumerate() {
        let after = &bytes[i + 1..];
        if (b == b'\r' && after.starts_with(b"\n\r\n"))
            || (b == b'\n' && (after.starts_with(b"\n") || after.starts_with(b"\r\n")))
        {
            return true;
        }
    }
    false
}

/// What reading a request head found.
// Built once per request and matched at once: boxing would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Head {
    /// An event stream request this path answers: the parsed request and
    /// how many bytes of the buffer it used.
    Stream(Request<Empty<Bytes>>, usize),
    /// Anything else: hyper's.
    Other,
    /// Not complete yet.
    Partial,
}

/// Parses the request head at the start of `buf`.
pub(crate) fn parse_head(buf: &[u8], service: &impl Serve) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    if req.method != Some("GET") || req.version != Some(1) {
        return Head::Other;
    }
    let Some(path) = req.path else {
        return Head::Other;
    };
    let (route, query) = match path.split_once('?') {
        Some((route, query)) => (route, Some(query)),
        None => (path, None),
    };
    if !service.is_stream_request(route, query) {
        return Head::Other;
    }
    let mut map = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        // A body, an upgrade or an expectation: leave it all to hyper.
        if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
            || (name.eq_ignore_ascii_case(b"content-length") && h.value.trim_ascii() != b"0")
        {
            return Head::Other;
        }
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Head::Other;
        };
        map.append(name, value);
    }
    let mut request = match Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11)
        .body(Empty::new())
    {
        Ok(r) => r,
        Err(_) => return Head::Other,
    };
    *request.headers_mut() = map;
    Head::Stream(request, len)
}

/// How a fast-path exchange ended.
pub(crate) enum Outcome {
    /// The response is complete and the connection may serve another
    /// request; `pipelined` holds what the client already sent.
    KeepAlive { pipelined: BytesMut },
    /// The connection is done.
    Close,
}

/// Answers one event stream request on `io`. `read_ahead`: nothing of the
/// client's next request is buffered yet, so its side may be read
/// meanwhile (to notice a close).
pub(crate) async fn respond<I, S>(
    io: &mut I,
    service: &S,
    peer: Option<std::net::SocketAddr>,
    secure: bool,
    request: Request<Empty<Bytes>>,
    read_ahead: bool,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> io::Result<Outcome>
where
    I: AsyncRead + AsyncWrite + Unpin,
    S: Serve,
{
    // A future keeps every local that was ever borrowed until its scope
    // ends, and this one is resident for the life of the stream: what only
    // the request and the response's head need lives in blocks that end
    // before the stream is pumped (about 700 bytes per idle connection).
    let (response, close_requested) = {
        let request = request;
        // As hyper reads it: a `close` token in any `Connection` line, and
        // a line that is not all visible ASCII says nothing.
        let close_requested = request
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("close"));
        let mut request = request.map(|_| RequestBody::empty());
        if let Some(peer) = peer {
            request.extensions_mut().insert(PeerAddr(peer));
        }
        if secure {
            request.extensions_mut().insert(crate::http::Secure);
        }
        (service.serve(request), close_requested)
    };
    let response = response.await;
    let (head, mut body, chunked) = {
        let (parts, body) = response.into_parts();
        let exact = body.size_hint().exact();
        // Nothing of the response but its body stays for the life of a
        // stream.
        (
            response_head(&parts, exact, close_requested),
            body,
            exact.is_none(),
        )
    };
    let mut pump = Pump {
        io,
        body: &mut body,
        chunked,
        out: Gather::default(),
        pipelined: BytesMut::new(),
        read_ahead,
        state: State::Streaming,
    };
    pump.out.push(Piece::plain(head));
    let finished = (&mut pump).await?;
    let pipelined = std::mem::take(&mut pump.pipelined);
    // Once the server shuts down, a finished exchange is the last one.
    if finished && !close_requested && !*stopping.borrow() {
        Ok(Outcome::KeepAlive { pipelined })
    } else {
        Ok(Outcome::Close)
    }
}

/// The status line and headers of a response.
fn response_head(parts: &http::response::Parts, exact: Option<u64>, close: bool) -> Bytes {
    let mut h = BytesMut::with_capacity(256);
    h.extend_from_slice(b"HTTP/1.1 ");
    h.extend_from_slice(parts.status.as_str().as_bytes());
    h.extend_from_slice(b" ");
    h.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    h.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        h.extend_from_slice(name.as_str().as_bytes());
        h.extend_from_slice(b": ");
        h.extend_from_slice(value.as_bytes());
        h.extend_from_slice(b"\r\n");
    }
    match exact {
        Some(n) => {
            h.extend_from_slice(b"content-length: ");
            h.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            h.extend_from_slice(b"\r\n");
        }
        None => h.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    if close {
        h.extend_from_slice(b"connection: close\r\n");
    }
    h.extend_from_slice(b"date: ");
    with_date(|d| h.extend_from_slice(d));
    h.extend_from_slice(b"\r\n\r\n");
    h.freeze()
}

/// One piece to write: a chunk's size line, its data and its CRLF, or a
/// plain buffer (the head, a fixed-length body, the last chunk).
struct Piece {
    size_line: [u8; 18],
    size_len: u8,
    size_at: u8,
    data: Bytes,
    crlf: bool,
    crlf_at: u8,
}

impl Piece {
    fn plain(data: Bytes) -> Self {
        Piece {
            size_line: [0; 18],
            size_len: 0,
            size_at: 0,
            data,
            crlf: false,
            crlf_at: 0,
        }
    }

    fn chunk(data: Bytes) -> Self {
        let mut size_line = [0u8; 18];
        let mut n = data.len();
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[n % 16];
            n /= 16;
            if n == 0 {
                break;
            }
        }
        let len = digits.len() - i;
        size_line[..len].copy_from_slice(&digits[i..]);
        size_line[len..len + 2].copy_from_slice(b"\r\n");
        Piece {
            size_line,
            size_len: (len + 2) as u8,
            size_at: 0,
            data,
            crlf: true,
            crlf_at: 0,
        }
    }

    fn last_chunk() -> Self {
        Piece::plain(Bytes::from_static(b"0\r\n\r\n"))
    }

    fn is_done(&self) -> bool {
        self.size_at == self.size_len && self.data.is_empty() && (!self.crlf || self.crlf_at == 2)
    }

    /// Puts the unwritten parts into `out`; returns how many.
    fn slices<'s>(&'s self, out: &mut [IoSlice<'s>]) -> usize {
        let mut n = 0;
        let size = &self.size_line[self.size_at as usize..self.size_len as usize];
        for part in [
            size,
            &self.data[..],
            if self.crlf {
                &b"\r\n"[self.crlf_at as usize..]
            } else {
                &[]
            },
        ] {
            if !part.is_empty() {
                out[n] = IoSlice::new(part);
                n += 1;
            }
        }
        n
    }

    /// Marks up to `n` written bytes; returns what is left of `n`.
    fn advance(&mut self, mut n: usize) -> usize {
        let a = n.min((self.size_len - self.size_at) as usize);
        self.size_at += a as u8;
        n -= a;
        let b = n.min(self.data.len());
        let _ = self.data.split_to(b);
        n -= b;
        if self.crlf {
            let c = n.min(2 - self.crlf_at as usize);
            self.crlf_at += c as u8;
            n -= c;
        }
        n
    }
}

/// Writes up to this size are copied into one buffer and written plainly.
const SMALL: usize = 512;

/// Pieces gathered into one vectored write: the head, the frames the body
/// had ready, the last chunk. A replay-and-close response is one `writev`.
const GATHER: usize = 4;

#[derive(Default)]
struct Gather {
    pieces: [Option<Piece>; GATHER],
}

impl Gather {
    fn is_full(&self) -> bool {
        self.pieces.iter().all(Option::is_some)
    }

    fn is_empty(&self) -> bool {
        self.pieces.iter().all(Option::is_none)
    }

    /// Everything left, copied into one buffer, if it is small.
    fn flatten_small(&self) -> Option<([u8; SMALL], usize)> {
        let mut slices = [IoSlice::new(&[]); 3 * GATHER];
        let mut used = 0;
        for p in self.pieces.iter().flatten() {
            used += p.slices(&mut slices[used..]);
        }
        let total: usize = slices[..used].iter().map(|s| s.len()).sum();
        if total > SMALL {
            return None;
        }
        let mut buf = [0u8; SMALL];
        let mut at = 0;
        for s in &slices[..used] {
            buf[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        Some((buf, at))
    }

    fn push(&mut self, p: Piece) {
        if let Some(slot) = self.pieces.iter_mut().find(|s| s.is_none()) {
            *slot = Some(p);
        }
    }

    /// Writes as much as the socket takes.
    fn poll_write<I: AsyncWrite + Unpin>(
        &mut self,
        io: &mut I,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let n = if let Some((small, len)) = self.flatten_small() {
                // A typical live event: one plain write of a few hundred
                // bytes costs the kernel less than a writev of three slices.
                ready!(Pin::new(&mut *io).poll_write(cx, &small[..len]))?
            } else {
                let mut slices = [IoSlice::new(&[]); 3 * GATHER];
                let mut used = 0;
                for p in self.pieces.iter().flatten() {
                    used += p.slices(&mut slices[used..]);
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..used]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let mut left = n;
            for slot in &mut self.pieces {
                if let Some(p) = slot {
                    left = p.advance(left);
                    if p.is_done() {
                        *slot = None;
                    }
                }
            }
            // Keep the unfinished pieces first, in order.
            self.pieces.sort_by_key(Option::is_none);
        }
        Poll::Ready(Ok(()))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Streaming,
    /// The body ended; its last piece is queued.
    Ended,
}

/// Moves frames from the body to the socket and, until the client sends
/// more, watches the socket for it going away. Frames that are ready
/// together leave in one write; nothing is buffered while the stream is
/// idle, and of a pipelined next request at most one small read.
struct Pump<'a, I, B> {
    io: &'a mut I,
    body: &'a mut B,
    chunked: bool,
    out: Gather,
    /// Bytes the client sent meanwhile (the next pipelined request).
    pipelined: BytesMut,
    /// The client's side may be read while `pipelined` is empty.
    read_ahead: bool,
    state: State,
}

impl<I, B> Future for Pump<'_, I, B>
where
    I: AsyncRead + AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
{
    /// `true` if the response was sent completely.
    type Output = io::Result<bool>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let this = self.get_mut();
        // The client's side, while nothing of its next request is buffered
        // (hyper's rule too): EOF means it is gone; bytes are its next
        // request, answered after this response. Once some are buffered,
        // nothing more is read (nor a close noticed) until the response is
        // complete: the client is pushed back by TCP, not cut off.
        if this.read_ahead && this.pipelined.is_empty() {
            let mut scratch = [0u8; MAX_PIPELINED];
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *this.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(false)),
                Poll::Ready(Ok(())) => this.pipelined.extend_from_slice(buf.filled()),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(false)),
                Poll::Pending => {}
            }
        }
        loop {
            // Gather what the body has ready.
            while this.state == State::Streaming && !this.out.is_full() {
                match Pin::new(&mut *this.body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            this.out.push(if this.chunked {
                                Piece::chunk(data)
                            } else {
                                Piece::plain(data)
                            });
                        }
                    }
                    Poll::Ready(None) => {
                        this.state = State::Ended;
                        if this.chunked {
                            this.out.push(Piece::last_chunk());
                        }
                    }
                    // A failed body cannot be finished: the connection
                    // ends without the last chunk, as with hyper.
                    Poll::Ready(Some(Err(_))) => return Poll::Ready(Ok(false)),
                    Poll::Pending => break,
                }
            }
            if this.out.is_empty() {
                return match this.state {
                    State::Ended => Poll::Ready(Ok(true)),
                    // The body registered the wake-up.
                    State::Streaming => Poll::Pending,
                };
            }
            ready!(this.out.poll_write(this.io, cx))?;
            ready!(Pin::new(&mut *this.io).poll_flush(cx))?;
        }
    }
}

/// Calls `f` with the current `Date` header value, formatted once a second.
fn with_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, http_date(secs));
        }
        f(&c.1);
    });
}

/// IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT` (hyper's own formatter).
fn http_date(secs: u64) -> [u8; 29] {
    let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
    let mut out = [0u8; 29];
    out.copy_from_slice(&text.as_bytes()[..29]);
    out
}

/// An IO that first yields bytes already read from it, for hyper.
pub(crate) struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    pub(crate) fn new(prefix: Bytes, io: I) -> Self {
        Prefixed { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Hub;

    /// Regression guard (issue 19): the future that pumps a stream is
    /// resident for the life of every connection. It kept the request, the
    /// request given to the service and the response's head (every local
    /// that was ever borrowed stays until its scope ends): 1,488 bytes,
    /// most of the growth of idle bytes per connection from 2,719 to 3,288.
    #[tokio::test]
    async fn the_stream_future_keeps_neither_request_nor_head() {
        let (mut io, _client) = tokio::io::duplex(64);
        let service = crate::SseService::new(Hub::new());
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        let request = Request::builder()
            .uri("/events?topic=a")
            .body(Empty::new())
            .unwrap();
        let future = respond(&mut io, &service, None, false, request, true, stopping);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 900, "{size} bytes");
    }

    #[test]
    fn dates() {
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn chunk_size_lines() {
        let o = Piece::chunk(Bytes::from(vec![0; 0x1a2b]));
        assert_eq!(&o.size_line[..o.size_len as usize], b"1a2b\r\n");
        let o = Piece::chunk(Bytes::from_static(b"x"));
        assert_eq!(&o.size_line[..o.size_len as usize], b"1\r\n");
    }

    /// A socket that takes at most `max` bytes per write.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn partial_writes_keep_every_byte_in_order() {
        for max in [1, 2, 3, 5, 7, 64] {
            let mut g = Gather::default();
            g.push(Piece::plain(Bytes::from_static(b"HEAD\r\n\r\n")));
            g.push(Piece::chunk(Bytes::from_static(b"data: a\n\n")));
            g.push(Piece::chunk(Bytes::from(vec![b'x'; 300])));
            g.push(Piece::last_chunk());
            let mut io = Trickle {
                out: Vec::new(),
                max,
            };
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(g.poll_write(&mut io, &mut cx).is_ready());
            let mut want = b"HEAD\r\n\r\n9\r\ndata: a\n\n\r\n12c\r\n".to_vec();
            want.extend_from_slice(&[b'x'; 300]);
            want.extend_from_slice(b"\r\n0\r\n\r\n");
            assert_eq!(io.out, want, "max {max}");
            assert!(g.is_empty());
        }
    }

    #[test]
    fn an_end_of_head_is_seen_in_the_new_bytes_only() {
        assert!(may_end_head(b"GET / HTTP/1.1\r\n\r\n", 0));
        assert!(may_end_head(b"GET / HTTP/1.1\n\n", 0));
        assert!(may_end_head(b"GET / HTTP/1.1\n\r\n", 0));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHost: x\r\n", 0));
        // An end that straddles the last look is found.
        assert!(may_end_head(b"GET / HTTP/1.1\r\n\r\n", 15));
        assert!(may_end_head(b"GET / HTTP/1.1\r\n\r\n", 17));
        // One entirely before it is not looked at again.
        assert!(!may_end_head(b"a\r\n\r\nbcdefgh", 10));
        assert!(!may_end_head(b"abc", 3));
    }

    #[test]
    fn only_plain_stream_gets_are_taken() {
        let service = crate::http::SseService::new(Hub::new());
        let take = |raw: &[u8]| matches!(parse_head(raw, &service), Head::Stream(..));
        assert!(take(b"GET /events/t HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(take(
            b"GET /stream?lastEventId=a-1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!take(b"GET /events/t HTTP/1.0\r\nHost: x\r\n\r\n"));
        assert!(!take(b"POST /events/t HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!take(b"HEAD /events/t HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!take(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!take(
            b"GET /events/t HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        ));
        assert!(!take(
            b"GET /events/t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(!take(
            b"GET /events/t HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"
        ));
        assert!(!take(b"GET /events/t HTTP/1.1\r\nBad Header: x\r\n\r\n"));
        assert!(matches!(
            parse_head(b"GET /events/t HTTP/1.1\r\nHost:", &service),
            Head::Partial
        ));
    }
}
