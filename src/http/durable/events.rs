//! What reads answer with: message bodies, cursors, the size of a chunk,
//! and the events of `live=sse` (`event: data`, `event: control`). A leaf
//! of the durable adapter (core and hub only), shared by `sse.rs` and the
//! pumps of `live.rs`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::core::durable::cursor;
use crate::core::durable::json;
use crate::core::durable::meta::{is_json, is_text};
use crate::core::durable::offset::Offset;
use crate::core::event::put_data_lines;
use crate::hub::durable::now_ms;

/// The most bytes of messages one catch-up or long-poll answer carries.
pub(crate) const MAX_READ_BYTES: usize = 1 << 20;

/// The `Stream-Cursor` answered to a request that echoed `client`.
pub(crate) fn next_cursor(client: Option<&str>) -> u64 {
    cursor::next(client, now_ms(), fastrand::u64(..))
}

/// The body of `frames`: their bytes back to back, or for JSON one array.
pub(crate) fn body_of(frames: &[Bytes], json_stream: bool) -> Bytes {
    let joined = match frames {
        [one] if !json_stream => return one.clone(),
        _ => {
            let mut buf = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum());
            for f in frames {
                buf.extend_from_slice(f);
            }
            buf.freeze()
        }
    };
    if json_stream {
        json::array(&joined)
    } else {
        joined
    }
}

/// How a stream's messages go into `event: data`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Format {
    json: bool,
    /// Not text: the data is base64 (and the response says so).
    pub(crate) base64: bool,
}

impl Format {
    pub(crate) fn of(content_type: &str) -> Self {
        Format {
            json: is_json(content_type),
            base64: !is_text(content_type),
        }
    }
}

/// The `event: data` of `frames` (none for no frames).
pub(crate) fn data(buf: &mut BytesMut, frames: &[Bytes], format: Format) {
    if frames.is_empty() {
        return;
    }
    let body = body_of(frames, format.json);
    buf.put_slice(b"event: data\n");
    if format.base64 {
        put_data_lines(buf, b"data:", base64(&body).as_bytes());
    } else {
        put_data_lines(buf, b"data:", &body);
    }
    buf.put_u8(b'\n');
}

/// A control event: the offset after what was sent, a cursor, and
/// whether that is the tail.
pub(crate) fn control(buf: &mut BytesMut, next: Offset, cursor: u64, up_to_date: bool) {
    let up = if up_to_date { ",\"upToDate\":true" } else { "" };
    let json = format!("{{\"streamNextOffset\":\"{next}\",\"streamCursor\":\"{cursor}\"{up}}}");
    buf.put_slice(b"event: control\n");
    put_data_lines(buf, b"data:", json.as_bytes());
    buf.put_u8(b'\n');
}

/// The last control event of a closed stream read to its end.
pub(crate) fn closed(buf: &mut BytesMut, next: Offset) {
    let json = format!("{{\"streamNextOffset\":\"{next}\",\"streamClosed\":true}}");
    buf.put_slice(b"event: control\n");
    put_data_lines(buf, b"data:", json.as_bytes());
    buf.put_u8(b'\n');
}

/// Standard base64 with padding (RFC 4648, section 4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }
}
