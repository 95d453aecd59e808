//! JSON streams: each message is a JSON value; an append of an array adds
//! its elements, and a read answers one array of everything it covers.
//!
//! A message is stored as its value's text followed by `,`, exactly as
//! sent (no re-serialisation: numbers, key order and escapes survive), so
//! a read of any run of messages is `[` + their frames, less the last `,`,
//! + `]`, with no parsing.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

/// Why a JSON append is refused (`400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    Invalid,
    /// `[]` adds nothing: refused, except on create.
    EmptyArray,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JsonError::Invalid => "invalid JSON",
            JsonError::EmptyArray => "empty arrays are not allowed",
        })
    }
}

/// The frame a JSON body appends, or `None` for `[]` on create.
pub(crate) fn frame(body: &[u8], creating: bool) -> Result<Option<Bytes>, JsonError> {
    let value: &RawValue = serde_json::from_slice(body).map_err(|_| JsonError::Invalid)?;
    let text = value.get();
    let mut out = BytesMut::with_capacity(text.len() + 1);
    if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(|_| JsonError::Invalid)?;
        if items.is_empty() {
            return if creating {
                Ok(None)
            } else {
                Err(JsonError::EmptyArray)
            };
        }
        for item in items {
            out.put_slice(item.get().as_bytes());
            out.put_u8(b',');
        }
    } else {
        out.put_slice(text.as_bytes());
        out.put_u8(b',');
    }
    Ok(Some(out.freeze()))
}

/// The JSON array of messages whose frames are `frames` (back to back).
pub(crate) fn array(frames: &[u8]) -> Bytes {
    let inner = frames.strip_suffix(b",").unwrap_or(frames);
    let mut out = BytesMut::with_capacity(inner.len() + 2);
    out.put_u8(b'[');
    out.put_slice(inner);
    out.put_u8(b']');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_flatten_one_level_and_values_keep_their_text() {
        let f = |s: &str| frame(s.as_bytes(), false).map(|o| o.map(|b| b.to_vec()));
        assert_eq!(
            f(r#"{"b":1, "a":2}"#),
            Ok(Some(br#"{"b":1, "a":2},"#.to_vec()))
        );
        assert_eq!(
            f(" [1, [2,3] ,\"x\"] "),
            Ok(Some(b"1,[2,3],\"x\",".to_vec()))
        );
        assert_eq!(
            f("1.000000000000000000001"),
            Ok(Some(b"1.000000000000000000001,".to_vec()))
        );
        assert_eq!(f("[]"), Err(JsonError::EmptyArray));
        assert_eq!(frame(b"[]", true), Ok(None));
        assert_eq!(f("{"), Err(JsonError::Invalid));
        assert_eq!(f("1 2"), Err(JsonError::Invalid));
        assert_eq!(f(""), Err(JsonError::Invalid));
    }

    #[test]
    fn a_read_is_one_array() {
        assert_eq!(&array(b"1,{\"a\":2},")[..], b"[1,{\"a\":2}]");
        assert_eq!(&array(b"")[..], b"[]");
    }
}
