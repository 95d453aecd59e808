//! Events and their `text/event-stream` encoding.
//!
//! An [`Event`] is encoded once, when it is published, into a frame of bytes
//! that every subscriber shares. The rules come from the WHATWG HTML standard,
//! section [server-sent events]:
//!
//! - every data line is written as `data: ` *with* the space, so data that
//!   starts with a space survives the parser's removal of one leading space;
//! - data is split on CRLF, lone CR and lone LF (CRLF is one line break), one
//!   `data:` line per line, so `"a\n"` becomes `data: a` and `data: `;
//! - empty data is a single `data: ` line and still fires an event with `""`;
//! - the event type may not contain CR or LF: that is an error, never a
//!   silent rewrite;
//! - the `id:` line comes last, then the empty line that dispatches the event.
//!
//! [server-sent events]: https://html.spec.whatwg.org/multipage/server-sent-events.html

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::core::id::EventId;
use crate::core::multi_id::MultiIdText;

/// The longest event type accepted, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;

/// The event type ssehub itself uses to announce that events were lost.
///
/// Publishers may not use it, so a client can trust every `resync` it sees.
pub const RESYNC_EVENT_TYPE: &str = "resync";

/// The event type ssehub uses to end a stream whose credentials expired:
/// the client should get new ones and reconnect from the event's id.
///
/// Publishers may not use it either.
pub const REAUTH_EVENT_TYPE: &str = "reauth";

/// One event to publish: UTF-8 data and an optional event type.
///
/// The id is not part of the event: the [`Hub`](crate::Hub) assigns it when
/// the event is published.
///
/// # Examples
///
/// ```
/// use ssehub::Event;
///
/// let plain = Event::new("hello");
/// assert_eq!(plain.data(), "hello");
/// assert_eq!(plain.event_type(), None);
///
/// let typed = Event::new("{\"x\":1}").with_type("update")?;
/// assert_eq!(typed.event_type(), Some("update"));
///
/// // A line break in the type would corrupt the stream: it is refused.
/// assert!(Event::new("x").with_type("a\nb").is_err());
/// # Ok::<(), ssehub::core::EventError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    /// Valid UTF-8, checked at construction.
    data: Bytes,
    /// Empty means the default type, `message`.
    event_type: Bytes,
}

impl Event {
    /// Creates an unnamed event (type `message`) carrying `data`.
    pub fn new(data: impl Into<String>) -> Self {
        Event {
            data: Bytes::from(data.into()),
            event_type: Bytes::new(),
        }
    }

    /// Creates an event from bytes that must be valid UTF-8, without copying them.
    ///
    /// # Errors
    ///
    /// [`EventError::InvalidUtf8`] if `data` is not UTF-8.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use ssehub::Event;
    /// use ssehub::core::EventError;
    ///
    /// assert!(Event::from_utf8(Bytes::from_static(b"ok")).is_ok());
    /// assert_eq!(
    ///     Event::from_utf8(Bytes::from_static(b"\xff")),
    ///     Err(EventError::InvalidUtf8)
    /// );
    /// ```
    pub fn from_utf8(data: Bytes) -> Result<Self, EventError> {
        std::str::from_utf8(&data).map_err(|_| EventError::InvalidUtf8)?;
        Ok(Event {
            data,
            event_type: Bytes::new(),
        })
    }

    /// Sets the event type, which browsers dispatch to
    /// `addEventListener(type, ...)` instead of `onmessage`.
    ///
    /// An empty type means the default, `message`.
    ///
    /// # Errors
    ///
    /// The type may not contain CR or LF ([`EventError::LineBreakInType`]), be
    /// longer than [`MAX_EVENT_TYPE_LEN`] bytes ([`EventError::TypeTooLong`]),
    /// or be one of the reserved [`RESYNC_EVENT_TYPE`] and [`REAUTH_EVENT_TYPE`]
    /// ([`EventError::ReservedType`]).
    pub fn with_type(mut self, event_type: impl AsRef<str>) -> Result<Self, EventError> {
        let ty = event_type.as_ref();
        validate_type(ty)?;
        self.event_type = Bytes::copy_from_slice(ty.as_bytes());
        Ok(self)
    }

    /// The event's data.
    pub fn data(&self) -> &str {
        // Checked to be UTF-8 by every constructor.
        std::str::from_utf8(&self.data).unwrap_or_default()
    }

    /// The event's type, `None` for the default `message`.
    pub fn event_type(&self) -> Option<&str> {
        if self.event_type.is_empty() {
            None
        } else {
            std::str::from_utf8(&self.event_type).ok()
        }
    }

    /// The complete `text/event-stream` frame of this event with `id`:
    /// `event:` (if typed), `data:` lines, `id:`, and the dispatching empty
    /// line. The hub does this once per published event; it is public for
    /// those who write their own bodies.
    ///
    /// ```
    /// use ssehub::{Event, EventId};
    ///
    /// let id: EventId = "k3f9-7".parse()?;
    /// let frame = Event::new("a\r\nb").with_type("t")?.to_frame(&id);
    /// assert_eq!(frame, "event: t\ndata: a\ndata: b\nid: k3f9-7\n\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_frame(&self, id: &EventId) -> Bytes {
        self.encode().finish(id)
    }

    /// Encodes everything but the id: the `event:` and `data:` lines.
    pub(crate) fn encode(&self) -> Encoded {
        Encoded::new(&self.event_type, &self.data)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("event_type", &self.event_type())
            .field("data", &self.data())
            .finish()
    }
}

/// Checks an event type: no CR or LF, at most [`MAX_EVENT_TYPE_LEN`] bytes,
/// not the reserved `resync`.
pub(crate) fn validate_type(ty: &str) -> Result<(), EventError> {
    if ty.len() > MAX_EVENT_TYPE_LEN {
        return Err(EventError::TypeTooLong);
    }
    if memchr::memchr2(b'\r', b'\n', ty.as_bytes()).is_some() {
        return Err(EventError::LineBreakInType);
    }
    if ty == RESYNC_EVENT_TYPE || ty == REAUTH_EVENT_TYPE {
        return Err(EventError::ReservedType);
    }
    Ok(())
}

/// Why an [`Event`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The data is not valid UTF-8.
    InvalidUtf8,
    /// The event type contains CR or LF.
    LineBreakInType,
    /// The event type is longer than [`MAX_EVENT_TYPE_LEN`] bytes.
    TypeTooLong,
    /// The event type is reserved for ssehub's own signals (`resync`).
    ReservedType,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EventError::InvalidUtf8 => "event data is not valid utf-8",
            EventError::LineBreakInType => "event type contains a line break",
            EventError::TypeTooLong => "event type is longer than 128 bytes",
            EventError::ReservedType => "event types `resync` and `reauth` are reserved",
        })
    }
}

impl std::error::Error for EventError {}

/// An event encoded up to, but not including, its `id:` line.
///
/// The id is known only once the event takes its place in a topic, so the
/// expensive part (copying and splitting the data) happens before, and
/// [`Encoded::finish`] only appends a few bytes.
#[derive(Debug)]
pub(crate) struct Encoded {
    buf: BytesMut,
}

/// Room for `id: ` + an id + `\n\n`.
const ID_LINE_RESERVE: usize = 4 + crate::core::id::MAX_ID_LEN + 2;

impl Encoded {
    fn new(event_type: &[u8], data: &[u8]) -> Self {
        let lines = 1 + memchr::memchr2_iter(b'\r', b'\n', data).count();
        let mut buf = BytesMut::with_capacity(
            7 + event_type.len() + lines * 7 + data.len() + ID_LINE_RESERVE,
        );
        if !event_type.is_empty() {
            buf.put_slice(b"event: ");
            buf.put_slice(event_type);
            buf.put_u8(b'\n');
        }
        put_data_lines(&mut buf, b"data: ", data);
        Encoded { buf }
    }

    /// The event's lines (`event:` and `data:`), without the id.
    #[cfg_attr(not(feature = "disk"), allow(dead_code))]
    pub(crate) fn lines(&self) -> &[u8] {
        &self.buf
    }

    /// The length of the finished frame with the longest possible id: an
    /// upper bound of what it will retain.
    pub(crate) fn max_frame_len(&self) -> usize {
        self.buf.len() + ID_LINE_RESERVE
    }

    /// Appends `id: <id>` and the dispatching empty line.
    pub(crate) fn finish(mut self, id: &EventId) -> Bytes {
        self.buf.put_slice(b"id: ");
        id.write_to(&mut self.buf);
        self.buf.put_slice(b"\n\n");
        self.buf.freeze()
    }
}

/// Writes `data` as `data:` lines, each starting with `prefix` (`data: `
/// here, `data:` for Durable Streams): one per line of `data`, split on
/// CRLF, lone CR and lone LF (CRLF is one break), so no byte of the data
/// can end a line, or an event, early. A parser drops one space after
/// `data:`, so a prefix without it gets it before a line that starts with
/// a space: that space survives.
pub(crate) fn put_data_lines(buf: &mut BytesMut, prefix: &[u8], data: &[u8]) {
    let spaced = prefix.ends_with(b" ");
    let mut rest = data;
    loop {
        buf.put_slice(prefix);
        if !spaced && rest.first() == Some(&b' ') {
            buf.put_u8(b' ');
        }
        match memchr::memchr2(b'\r', b'\n', rest) {
            Some(i) => {
                buf.put_slice(&rest[..i]);
                buf.put_u8(b'\n');
                // CRLF is one line break, not two.
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = &rest[i + skip..];
            }
            None => {
                buf.put_slice(rest);
                buf.put_u8(b'\n');
                break;
            }
        }
    }
}

/// Encodes an event read back from storage (its type and data were
/// checked when it was published).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn encode_parts(event_type: &[u8], data: &[u8]) -> Encoded {
    Encoded::new(event_type, data)
}

/// What the control frames can carry as their id: one topic's [`EventId`],
/// or the text of a multi-topic id.
pub(crate) trait FrameId {
    /// Appends the id's text.
    fn write_id(&self, buf: &mut BytesMut);
    /// The length of its text, at most.
    fn max_len(&self) -> usize;
}

impl FrameId for EventId {
    fn write_id(&self, buf: &mut BytesMut) {
        self.write_to(buf);
    }

    fn max_len(&self) -> usize {
        crate::core::id::MAX_ID_LEN
    }
}

impl FrameId for MultiIdText {
    fn write_id(&self, buf: &mut BytesMut) {
        self.write_to(buf);
    }

    fn max_len(&self) -> usize {
        self.as_bytes().len()
    }
}

/// An id-only frame: sets the client's last event id without firing an event.
pub(crate) fn checkpoint_frame(retry_ms: Option<u64>, id: &impl FrameId) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + 6 + id.max_len());
    put_retry(&mut buf, retry_ms);
    buf.put_slice(b"id: ");
    id.write_id(&mut buf);
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// A `reauth` event: the stream's credentials expired at its position `id`
/// (also its `id:`, so the client's last event id is exactly it).
pub(crate) fn reauth_frame(id: &impl FrameId) -> Bytes {
    let mut buf = BytesMut::with_capacity(96 + 2 * (6 + id.max_len()));
    buf.put_slice(b"event: reauth\ndata: {\"reason\":\"expired\",\"lastEventId\":\"");
    id.write_id(&mut buf);
    buf.put_slice(b"\"}\nid: ");
    id.write_id(&mut buf);
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// A `resync` event: the JSON payload, and the id from which the stream
/// continues, so a client that drops right after it resumes from there.
pub(crate) fn resync_frame(retry_ms: Option<u64>, json: &str, id: &impl FrameId) -> Bytes {
    let mut buf = BytesMut::with_capacity(48 + json.len() + 6 + id.max_len());
    put_retry(&mut buf, retry_ms);
    buf.put_slice(b"event: resync\ndata: ");
    // The payload is compact JSON: no raw line breaks inside.
    debug_assert!(memchr::memchr2(b'\r', b'\n', json.as_bytes()).is_none());
    buf.put_slice(json.as_bytes());
    buf.put_slice(b"\nid: ");
    id.write_id(&mut buf);
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// Where the parts of an event's frame (as [`Encoded::finish`] writes it)
/// are: its type (empty for the default) and its `data:` lines, each ended
/// by LF, between the `event:` line and the `id:` line. A multi-topic
/// stream writes its own `event:` and `id:` lines around the data lines,
/// which it shares with every other subscriber instead of copying them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrameParts {
    pub(crate) event_type: std::ops::Range<usize>,
    pub(crate) data: std::ops::Range<usize>,
}

/// Finds the parts of `frame`, looking only at its first and last lines
/// (never through the data); `None` if it is not an event's frame.
pub(crate) fn frame_parts(frame: &[u8]) -> Option<FrameParts> {
    let body = frame.strip_suffix(b"\n\n")?;
    let event_type = match body.strip_prefix(b"event: ") {
        Some(rest) => 7..7 + memchr::memchr(b'\n', rest)?,
        None => 0..0,
    };
    let data_start = if event_type.is_empty() {
        0
    } else {
        event_type.end + 1
    };
    // The `id:` line is the last one: the LF before it ends the data.
    let data_end = memchr::memrchr(b'\n', body)? + 1;
    if data_end <= data_start
        || !body[data_end..].starts_with(b"id: ")
        || !body[data_start..].starts_with(b"data: ")
    {
        return None;
    }
    Some(FrameParts {
        event_type,
        data: data_start..data_end,
    })
}

/// A comment that keeps idle connections (and proxies) alive.
pub(crate) const KEEP_ALIVE_FRAME: &[u8] = b": keep-alive\n\n";

/// A `retry:` line alone: the reconnection hint of a stream that starts
/// without a checkpoint or a `resync` to carry it (a resume).
pub(crate) fn retry_line(ms: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(28);
    put_retry(&mut buf, Some(ms));
    buf.freeze()
}

fn put_retry(buf: &mut BytesMut, retry_ms: Option<u64>) {
    if let Some(ms) = retry_ms {
        buf.put_slice(b"retry: ");
        buf.put_slice(itoa::Buffer::new().format(ms).as_bytes());
        buf.put_u8(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_that_starts_with_a_space_keeps_it_without_the_spaced_prefix() {
        let mut buf = BytesMut::new();
        put_data_lines(&mut buf, b"data:", b" lead\nsecond\r\n  two\n");
        assert_eq!(&buf[..], b"data:  lead\ndata:second\ndata:   two\ndata:\n");
        let mut buf = BytesMut::new();
        put_data_lines(&mut buf, b"data: ", b" lead");
        assert_eq!(&buf[..], b"data:  lead\n");
    }
    use crate::core::id::Epoch;

    fn frame(ev: &Event) -> Bytes {
        let id = EventId::new(Epoch::from_str_unchecked("k3f9"), 7);
        ev.encode().finish(&id)
    }

    #[test]
    fn plain_event() {
        assert_eq!(frame(&Event::new("hi")), &b"data: hi\nid: k3f9-7\n\n"[..]);
    }

    #[test]
    fn retry_line_is_the_hint_in_milliseconds_alone() {
        assert_eq!(retry_line(3000), &b"retry: 3000\n"[..]);
        assert_eq!(retry_line(u64::MAX), &b"retry: 18446744073709551615\n"[..]);
    }

    #[test]
    fn typed_event() {
        let ev = Event::new("x").with_type("update").unwrap();
        assert_eq!(frame(&ev), &b"event: update\ndata: x\nid: k3f9-7\n\n"[..]);
    }

    #[test]
    fn empty_data_is_one_empty_data_line() {
        assert_eq!(frame(&Event::new("")), &b"data: \nid: k3f9-7\n\n"[..]);
    }

    #[test]
    fn leading_space_survives() {
        assert_eq!(frame(&Event::new(" a")), &b"data:  a\nid: k3f9-7\n\n"[..]);
    }

    #[test]
    fn crlf_is_one_line_break() {
        assert_eq!(
            frame(&Event::new("a\r\nb")),
            &b"data: a\ndata: b\nid: k3f9-7\n\n"[..]
        );
    }

    #[test]
    fn lone_cr_and_lf_break_lines() {
        assert_eq!(
            frame(&Event::new("a\rb\nc\n\rd")),
            &b"data: a\ndata: b\ndata: c\ndata: \ndata: d\nid: k3f9-7\n\n"[..]
        );
    }

    #[test]
    fn trailing_line_break_keeps_an_empty_line() {
        assert_eq!(
            frame(&Event::new("a\n")),
            &b"data: a\ndata: \nid: k3f9-7\n\n"[..]
        );
        assert_eq!(
            frame(&Event::new("\r\n")),
            &b"data: \ndata: \nid: k3f9-7\n\n"[..]
        );
    }

    #[test]
    fn colons_and_field_names_in_data_are_data() {
        assert_eq!(
            frame(&Event::new("id: 5\nevent: x\n: y")),
            &b"data: id: 5\ndata: event: x\ndata: : y\nid: k3f9-7\n\n"[..]
        );
    }

    #[test]
    fn bad_types_are_refused() {
        assert_eq!(
            Event::new("").with_type("a\rb"),
            Err(EventError::LineBreakInType)
        );
        assert_eq!(
            Event::new("").with_type("a\nb"),
            Err(EventError::LineBreakInType)
        );
        assert_eq!(
            Event::new("").with_type("x".repeat(129)),
            Err(EventError::TypeTooLong)
        );
        assert!(Event::new("").with_type("x".repeat(128)).is_ok());
        for reserved in ["resync", "reauth"] {
            assert_eq!(
                Event::new("").with_type(reserved),
                Err(EventError::ReservedType)
            );
        }
    }

    #[test]
    fn reauth_frame_carries_the_position_twice() {
        let id: EventId = "k3f9-41".parse().unwrap();
        assert_eq!(
            reauth_frame(&id),
            "event: reauth\ndata: {\"reason\":\"expired\",\"lastEventId\":\"k3f9-41\"}\nid: k3f9-41\n\n"
        );
    }

    #[test]
    fn frame_parts_find_the_type_and_the_data_lines() {
        for ev in [
            Event::new("hi"),
            Event::new("").with_type("t").unwrap(),
            Event::new("a\nid: 3\n\nevent: x")
                .with_type("up/date")
                .unwrap(),
            Event::new("\n"),
        ] {
            let f = frame(&ev);
            let parts = frame_parts(&f).unwrap();
            assert_eq!(
                &f[parts.event_type.clone()],
                ev.event_type().unwrap_or("").as_bytes()
            );
            let mut data = f[parts.data.clone()].to_vec();
            // What is left around the data lines is the event and id lines.
            assert!(data.ends_with(b"\n") && data.starts_with(b"data: "));
            data.truncate(data.len() - 1);
            let lines: Vec<_> = data.split(|&b| b == b'\n').collect();
            let want: Vec<_> = ev.data().split('\n').collect();
            assert_eq!(lines.len(), want.len());
            assert_eq!(&f[parts.data.end..], b"id: k3f9-7\n\n");
        }
        for not_a_frame in [
            &b""[..],
            b"data: x\n",
            b"id: 1\n\n",
            b"event: t\nid: 1\n\n",
            b": hi\n\n",
        ] {
            assert_eq!(frame_parts(not_a_frame), None, "{not_a_frame:?}");
        }
    }

    #[test]
    fn empty_type_is_the_default() {
        let ev = Event::new("x").with_type("").unwrap();
        assert_eq!(ev.event_type(), None);
        assert_eq!(frame(&ev), &b"data: x\nid: k3f9-7\n\n"[..]);
    }

    #[test]
    fn control_frames() {
        let id = EventId::new(Epoch::from_str_unchecked("ab"), 0);
        assert_eq!(
            checkpoint_frame(Some(3000), &id),
            &b"retry: 3000\nid: ab-0\n\n"[..]
        );
        assert_eq!(
            resync_frame(None, "{\"reason\":\"lagged\"}", &id),
            &b"event: resync\ndata: {\"reason\":\"lagged\"}\nid: ab-0\n\n"[..]
        );
    }
}
