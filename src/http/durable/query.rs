//! What a read asks for (its query: `offset`, `live`, `cursor`). What
//! every read answers with (message bodies, cursors, the size of a chunk)
//! is in `events.rs`, re-exported here.

use crate::core::durable::offset::Start;
pub(crate) use crate::http::durable::events::{MAX_READ_BYTES, body_of, next_cursor};
use crate::http::durable::wire::Refused;

/// How a read waits for data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Live {
    No,
    LongPoll,
    Sse,
}

/// What a read asks for.
pub(crate) struct Query {
    pub(crate) start: Start,
    /// The `offset` parameter as given (`-1` if none), for the `ETag`.
    pub(crate) offset_text: String,
    pub(crate) live: Live,
    pub(crate) cursor: Option<String>,
}

/// Parses the query of a read; a `400` for what the protocol refuses.
pub(crate) fn query(q: Option<&str>) -> Result<Query, Refused> {
    let bad = |msg: &str| Refused::bad(msg.to_owned());
    let (mut offset, mut live, mut cursor) = (None, None, None);
    for (k, v) in form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
        let slot = match &*k {
            "offset" => &mut offset,
            "live" => &mut live,
            "cursor" => &mut cursor,
            _ => continue,
        };
        if slot.replace(v.into_owned()).is_some() {
            return Err(bad(&format!("the {k} parameter is given more than once")));
        }
    }
    let live = match live.as_deref() {
        None => Live::No,
        Some("long-poll") => Live::LongPoll,
        Some("sse") => Live::Sse,
        Some(_) => return Err(bad("live must be long-poll or sse")),
    };
    let start = match offset.as_deref() {
        None if live != Live::No => {
            return Err(bad(
                "a live read needs an offset (-1 for the beginning, now for the tail)",
            ));
        }
        None => Start::Beginning,
        Some(o) => Start::parse(o).ok_or_else(|| {
            bad("offset must be -1, now, or an offset this server gave (digits_digits)")
        })?,
    };
    Ok(Query {
        start,
        offset_text: offset.unwrap_or_else(|| "-1".to_owned()),
        live,
        cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_queries_are_refused() {
        for bad in [
            "offset=",
            "offset=1_1&offset=1_1",
            "offset=..%2F1_1",
            "offset=1%2C1",
            "offset=a%20b",
            "offset=1_1%00",
            "live=sse",
            "live=long-poll",
            "offset=-1&live=forever",
        ] {
            assert!(query(Some(bad)).is_err(), "{bad}");
        }
        let q = query(Some("offset=now&live=long-poll&cursor=7"))
            .ok()
            .unwrap();
        assert_eq!(
            (q.start, q.live, q.cursor.as_deref()),
            (Start::Now, Live::LongPoll, Some("7"))
        );
        let q = query(None).ok().unwrap();
        assert_eq!(
            (q.start, q.live, &*q.offset_text),
            (Start::Beginning, Live::No, "-1")
        );
    }
}
