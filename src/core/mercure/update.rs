//! A Mercure update: what a publisher sends (the spec's "Publication"
//! section), how the hub keeps it (one event of its updates topic, whose
//! data is the update as JSON), and the frame subscribers get.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::core::event::put_data_lines;

/// The most topics one update may have.
pub(crate) const MAX_TOPICS: usize = 64;

/// An update, as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Update {
    /// The SSE `id`: the publisher's, or one the hub made.
    pub(crate) id: String,
    /// The canonical topic first, then alternates.
    pub(crate) topics: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) private: bool,
    /// The SSE `event` field.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub(crate) event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) retry: Option<u64>,
    #[serde(default)]
    pub(crate) data: String,
}

/// Why an update is refused (`400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpdateError {
    NoTopic,
    TooManyTopics,
    /// A topic is empty or too long.
    Topic,
    /// The id starts with `#`, is empty or too long, or has a line break.
    Id,
    /// The type has a line break or is too long.
    Type,
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpdateError::NoTopic => "an update needs at least one topic",
            UpdateError::TooManyTopics => "an update has at most 64 topics",
            UpdateError::Topic => "a topic is empty or longer than 2048 bytes",
            UpdateError::Id => {
                "the id must be 1 to 1024 bytes, must not start with # and has no line break"
            }
            UpdateError::Type => "the type must be at most 128 bytes with no line break",
        })
    }
}

/// A new update id: `urn:uuid:` and a random (version 4) UUID.
pub(crate) fn new_id() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

impl Update {
    /// Checks what the publisher chose.
    pub(crate) fn validate(&self) -> Result<(), UpdateError> {
        if self.topics.is_empty() {
            return Err(UpdateError::NoTopic);
        }
        if self.topics.len() > MAX_TOPICS {
            return Err(UpdateError::TooManyTopics);
        }
        let long = super::selector::MAX_SELECTOR_LEN;
        if self.topics.iter().any(|t| t.is_empty() || t.len() > long) {
            return Err(UpdateError::Topic);
        }
        let breaks = |s: &str| s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
        if self.id.is_empty()
            || self.id.len() > 1024
            || self.id.starts_with('#')
            || breaks(&self.id)
        {
            return Err(UpdateError::Id);
        }
        if let Some(t) = &self.event_type
            && (t.len() > crate::core::MAX_EVENT_TYPE_LEN || breaks(t))
        {
            return Err(UpdateError::Type);
        }
        Ok(())
    }

    /// The update as its event's data.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an update serializes")
    }

    pub(crate) fn from_json(data: &[u8]) -> Option<Update> {
        serde_json::from_slice(data).ok()
    }

    /// The frame subscribers get: `event`, `retry`, `data` lines, `id`.
    pub(crate) fn frame(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.data.len() + self.id.len() + 64);
        if let Some(t) = &self.event_type {
            buf.put_slice(b"event: ");
            buf.put_slice(t.as_bytes());
            buf.put_u8(b'\n');
        }
        if let Some(ms) = self.retry {
            buf.put_slice(format!("retry: {ms}\n").as_bytes());
        }
        put_data_lines(&mut buf, b"data: ", self.data.as_bytes());
        buf.put_slice(b"id: ");
        buf.put_slice(self.id.as_bytes());
        buf.put_slice(b"\n\n");
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> Update {
        Update {
            id: "urn:uuid:1".into(),
            topics: vec!["https://example.com/a".into(), "b".into()],
            private: true,
            event_type: Some("t".into()),
            retry: Some(5),
            data: "x\ny".into(),
        }
    }

    #[test]
    fn round_trips_and_frames() {
        let u = update();
        assert_eq!(Update::from_json(u.to_json().as_bytes()), Some(u.clone()));
        assert_eq!(
            &u.frame()[..],
            b"event: t\nretry: 5\ndata: x\ndata: y\nid: urn:uuid:1\n\n"
        );
        assert!(u.validate().is_ok());
    }

    #[test]
    fn refuses_what_the_spec_forbids() {
        let bad = |f: fn(&mut Update)| {
            let mut u = update();
            f(&mut u);
            u.validate().unwrap_err()
        };
        assert_eq!(bad(|u| u.topics.clear()), UpdateError::NoTopic);
        assert_eq!(bad(|u| u.id = "#1".into()), UpdateError::Id);
        assert_eq!(bad(|u| u.id = "a\nb".into()), UpdateError::Id);
        assert_eq!(
            bad(|u| u.event_type = Some("a\rb".into())),
            UpdateError::Type
        );
        assert_eq!(bad(|u| u.topics = vec![String::new()]), UpdateError::Topic);
    }
}
