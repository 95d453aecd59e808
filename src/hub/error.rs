//! Why the hub refuses an operation: [`HubError`].

use std::fmt;

use crate::core::{InvalidTopic, TopicName};
use crate::store::StoreError;

/// Why the hub refused an operation.
#[derive(Debug)]
#[non_exhaustive]
pub enum HubError {
    /// The topic name is not 1-128 characters of letters, digits, `-_.:`.
    InvalidTopic,
    /// Topics whose name starts with `ds:` hold Durable Streams (served
    /// under `/v1/stream/`), and `mercure:` the Mercure hub's updates
    /// (`/.well-known/mercure`): they take no events and no event streams.
    ReservedTopic(TopicName),
    /// The topic does not exist, the hub holds its maximum of topics, and
    /// every one of them has subscribers (for a stream of several topics:
    /// too few of them are idle to make room for its new topics). This
    /// passes when subscribers leave.
    TooManyTopics,
    /// A stream of several topics names more topics than the hub holds at
    /// most ([`HubConfig::max_topics`](crate::hub::HubConfig::max_topics)): it can never be served.
    StreamTooWide {
        /// The topics of the stream.
        topics: usize,
        /// The most topics the hub holds.
        max: usize,
    },
    /// The hub was closed.
    Closed,
    /// The storage failed (see the source).
    Storage(StoreError),
    /// The event (or batch) is larger than the hub retains in all
    /// ([`HubConfig::max_total_bytes`](crate::hub::HubConfig::max_total_bytes)): it could never be delivered.
    TooLarge,
    /// The idempotency key was already used on this topic for a different
    /// request (see [`Hub::publish_idempotent`](crate::Hub::publish_idempotent)): nothing was published.
    KeyReused,
    /// A stream of several topics was asked for with none.
    NoTopics,
    /// A stream of several topics names this topic twice.
    DuplicateTopic(TopicName),
    /// The last event id of a stream of several topics is not the
    /// [`MultiId`](crate::core::MultiId) of its topics.
    InvalidLastEventId(crate::core::MultiIdError),
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HubError::InvalidTopic => {
                "invalid topic name (1-128 characters from A-Z a-z 0-9 - _ . :)"
            }
            HubError::ReservedTopic(t) => {
                return write!(
                    f,
                    "topic {t} is reserved: topics starting with ds: hold Durable Streams (/v1/stream/...), mercure: the Mercure hub's updates (/.well-known/mercure)"
                );
            }
            HubError::TooManyTopics => "too many topics",
            HubError::StreamTooWide { topics, max } => {
                return write!(
                    f,
                    "the stream names {topics} topics; the server holds at most {max} (--max-topics)"
                );
            }
            HubError::Closed => "hub is shutting down",
            HubError::Storage(_) => "storage failed",
            HubError::TooLarge => "event is larger than the server retains (--max-total-bytes)",
            HubError::KeyReused => {
                "Idempotency-Key already used for a different request on this topic"
            }
            HubError::NoTopics => "no topic",
            HubError::DuplicateTopic(t) => return write!(f, "topic {t} is named twice"),
            HubError::InvalidLastEventId(e) => return write!(f, "invalid last event id: {e}"),
        })
    }
}

impl From<InvalidTopic> for HubError {
    fn from(_: InvalidTopic) -> Self {
        HubError::InvalidTopic
    }
}

impl std::error::Error for HubError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HubError::Storage(e) => Some(e),
            HubError::InvalidLastEventId(e) => Some(e),
            _ => None,
        }
    }
}
