//! Stream paths and the hub topics that hold them.
//!
//! A Durable Streams path (what follows `/v1/stream/`, percent-decoded)
//! becomes the topic `ds:` + an encoding of its bytes: `A-Z a-z 0-9 - _`
//! stay, `/` becomes `:`, and every other byte becomes `.` and two
//! lowercase hex digits. The encoding is injective (`.` and `:` never stand
//! for themselves), so no two paths share a history, and the `ds:` prefix,
//! which the native API refuses, keeps native topics and streams apart.

use crate::core::topic_name::{MAX_TOPIC_LEN, TopicName};

/// The prefix of every topic that holds a Durable Stream.
pub(crate) const TOPIC_PREFIX: &str = "ds:";

/// The longest encoded path: a topic name's limit less the prefix.
pub(crate) const MAX_ENCODED_LEN: usize = MAX_TOPIC_LEN - TOPIC_PREFIX.len();

/// Why a path names no stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    Empty,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// Longer than [`MAX_ENCODED_LEN`] once encoded.
    TooLong,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathError::Empty => "the stream path is empty",
            PathError::BadEscape => "the stream path has a malformed percent escape",
            PathError::TooLong => {
                return write!(
                    f,
                    "the stream path is too long: at most {MAX_ENCODED_LEN} characters once encoded (letters, digits, '-', '_' and '/' count one, any other byte three)"
                );
            }
        })
    }
}

/// The topic of the stream at `path` (raw, as in the URL).
pub(crate) fn topic_of(path: &str) -> Result<TopicName, PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    let mut name = String::with_capacity(TOPIC_PREFIX.len() + path.len());
    name.push_str(TOPIC_PREFIX);
    let raw = path.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let b = if raw[i] == b'%' {
            let hex = raw.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadEscape)?;
            i += 3;
            u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?
        } else {
            i += 1;
            raw[i - 1]
        };
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => name.push(b as char),
            b'/' => name.push(':'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                name.push('.');
                name.push(HEX[usize::from(b >> 4)] as char);
                name.push(HEX[usize::from(b & 15)] as char);
            }
        }
        if name.len() > MAX_TOPIC_LEN {
            return Err(PathError::TooLong);
        }
    }
    Ok(TopicName::new(name).expect("the encoding only writes topic characters"))
}

/// Whether a topic holds a Durable Stream (and is no native topic).
pub(crate) fn is_stream_topic(topic: &str) -> bool {
    topic.starts_with(TOPIC_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_prefixed_topics() {
        assert_eq!(topic_of("chat/room-1").unwrap().as_str(), "ds:chat:room-1");
        assert_eq!(topic_of("a.b").unwrap().as_str(), "ds:a.2eb");
        assert_eq!(topic_of("a:b").unwrap().as_str(), "ds:a.3ab");
        assert_eq!(topic_of("caf%C3%A9").unwrap().as_str(), "ds:caf.c3.a9");
        assert_eq!(topic_of("a%2Fb").unwrap(), topic_of("a/b").unwrap());
        assert_eq!(topic_of(""), Err(PathError::Empty));
        assert_eq!(topic_of("a%2"), Err(PathError::BadEscape));
        assert_eq!(topic_of("a%zz"), Err(PathError::BadEscape));
    }

    #[test]
    fn the_encoding_is_injective_on_tricky_neighbours() {
        let paths = [
            "a.b", "a:b", "a/b", "a.2eb", "a%2Eb", "a.3ab", "a_b", "a-b", "A/b",
        ];
        let topics: std::collections::HashSet<_> = paths
            .iter()
            .filter(|p| **p != "a%2Eb")
            .map(|p| topic_of(p).unwrap())
            .collect();
        assert_eq!(topics.len(), paths.len() - 1);
        // `a%2Eb` is the path `a.b`, percent-encoded: the same stream.
        assert_eq!(topic_of("a%2Eb").unwrap(), topic_of("a.b").unwrap());
    }

    #[test]
    fn the_length_limit_counts_encoded_bytes() {
        assert!(topic_of(&"x".repeat(MAX_ENCODED_LEN)).is_ok());
        assert_eq!(
            topic_of(&"x".repeat(MAX_ENCODED_LEN + 1)),
            Err(PathError::TooLong)
        );
        assert_eq!(topic_of(&"~".repeat(42)), Err(PathError::TooLong));
        assert!(topic_of(&"~".repeat(41)).is_ok());
    }
}
