//! Subscribing to one topic: [`Hub::subscribe`] and its kin, the options
//! of a subscription ([`Subscribe`]), and where a client resuming from an
//! id stands ([`Hub::position`]).

use std::time::Duration;

use crate::core::id::EventId;
use crate::core::resync::locate;
use crate::core::{IntoTopic, TopicName};
use crate::hub::registry::LOOKUP_ATTEMPTS;
use crate::hub::registry::event_topic;
use crate::hub::stream::StreamParams;
use crate::hub::{EventStream, Hub, HubError};
use crate::store::StoreError;

impl Hub {
    /// Subscribes to `topic`, resuming after `options`' last event id if any.
    ///
    /// The returned body is ready to be a response body (see
    /// [`EventStream`]). With Redis, a topic this node has not loaded yet
    /// starts when it is loaded; answer with [`Hub::subscribe_ready`] instead,
    /// so that the start is fixed before the client gets its response.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidTopic`], [`HubError::TooManyTopics`],
    /// [`HubError::Closed`].
    pub fn subscribe(
        &self,
        topic: impl IntoTopic,
        options: Subscribe,
    ) -> Result<EventStream, HubError> {
        self.subscribe_name(&event_topic(topic)?, options)
    }

    /// [`Hub::subscribe`] to any topic, reserved ones too (for the
    /// protocols that keep their events in them).
    fn subscribe_name(
        &self,
        topic: &TopicName,
        options: Subscribe,
    ) -> Result<EventStream, HubError> {
        let params = self.stream_params(&options);
        for _ in 0..LOOKUP_ATTEMPTS {
            let topic = self.topic(topic)?;
            let ring = topic.lock();
            if topic.is_closed() {
                // Retired between the lookup and the lock: look again.
                continue;
            }
            topic.add_subscriber();
            if !topic.is_primed() {
                // The storage is still loading the topic's history.
                drop(ring);
                return Ok(EventStream::deferred(
                    topic,
                    options.last_event_id,
                    options.rewind,
                    params,
                ));
            }
            let start = locate(
                &ring,
                options.last_event_id.as_deref(),
                options.rewind,
                topic.durable_first(),
            );
            let replay_end = ring.next_seq();
            drop(ring);
            return Ok(EventStream::new(topic, start, replay_end, params));
        }
        Err(HubError::Closed)
    }

    /// How a stream with `options` is set up.
    pub(super) fn stream_params(&self, options: &Subscribe) -> StreamParams {
        let config = &self.inner.config;
        StreamParams {
            retry_ms: config.retry.map(|d| jittered_ms(d, config.retry_jitter)),
            keep_alive: config.keep_alive,
            max_frame_bytes: config.max_frame_bytes,
            limit: options.limit,
            expires_at: options.expires_at,
        }
    }

    /// Like [`Hub::subscribe`], but with Redis, first waits (at most
    /// `patience`) until this node has loaded the topic's history, so the
    /// stream's start is fixed before the caller answers the client: an
    /// event published after the client got its response is never taken
    /// for history. In memory there is nothing to wait for.
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe`].
    pub async fn subscribe_ready(
        &self,
        topic: impl IntoTopic,
        options: Subscribe,
        patience: Duration,
    ) -> Result<EventStream, HubError> {
        self.subscribe_ready_name(&event_topic(topic)?, options, patience)
            .await
    }

    /// [`Hub::subscribe_ready`] to any topic, reserved ones too.
    pub(crate) async fn subscribe_ready_name(
        &self,
        topic: &TopicName,
        options: Subscribe,
        patience: Duration,
    ) -> Result<EventStream, HubError> {
        if self.store().loads_topics() {
            // Wait until the topic is loaded and, for a resume, until this
            // node has read up to the client's id: a node behind the others
            // must not answer `future` (and replay) for an id that exists.
            let t = self.topic(topic)?;
            let wanted = options
                .last_event_id
                .as_deref()
                .and_then(|id| id.parse::<EventId>().ok());
            // If the storage is down, the stream starts when it is back.
            let _ = tokio::time::timeout(patience, t.caught_up(wanted)).await;
        }
        let mut stream = self.subscribe_name(topic, options)?;
        if stream.is_deferred() {
            stream.start_if_primed();
        }
        Ok(stream)
    }

    /// Subscribes for an HTTP response: at once when the topic's start is
    /// known (always in memory), else after [`Hub::subscribe_ready`]'s wait.
    pub(crate) fn subscribe_for_response(
        &self,
        topic: &TopicName,
        options: Subscribe,
        patience: Duration,
    ) -> Subscribing {
        if !self.store().loads_topics() {
            return Subscribing::Ready(self.subscribe(topic, options));
        }
        let hub = self.clone();
        let topic = topic.clone();
        Subscribing::Waiting(Box::pin(async move {
            hub.subscribe_ready(topic, options, patience).await
        }))
    }

    /// The id of `topic`'s newest event (sequence 0 when it has none): where
    /// a stream that starts right after a snapshot must resume from. A
    /// server-rendered page reads it with the data it renders, then opens
    /// its stream with `?lastEventId=` set to it, and misses nothing in
    /// between. With Redis, waits (at most `patience`) for this node to
    /// load the topic.
    ///
    /// It changes nothing: a topic that does not exist is not created (nor
    /// another retired to make room). Its position is sequence 0 of the
    /// epoch the hub would create it with now, so a stream that resumes
    /// from it misses nothing; if the topic gets another epoch (the hub
    /// retired a topic meanwhile, or the disk store chose it), that stream
    /// starts with `resync` (`epoch`) and replays everything it has. With
    /// Redis a topic this node has not loaded is loaded (Redis has its
    /// history).
    ///
    /// # Errors
    ///
    /// As [`Hub::subscribe`]: [`HubError::TooManyTopics`] if a stream of it
    /// would be refused so.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use ssehub::{Event, Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// hub.publish("prices", Event::new("41")).await?;
    /// let seen = hub.position("prices", Duration::from_secs(2)).await?;
    /// hub.publish("prices", Event::new("42")).await?; // after the snapshot
    /// let stream = hub.subscribe("prices", Subscribe::new().last_event_id(seen.to_string()))?;
    /// assert_eq!(stream.position(), seen, "42 comes first");
    ///
    /// // A topic that does not exist stays so.
    /// let empty = hub.position("quiet", Duration::from_secs(2)).await?;
    /// assert_eq!(empty.seq(), 0);
    /// assert!(hub.topic_info("quiet").is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn position(
        &self,
        topic: impl IntoTopic,
        patience: Duration,
    ) -> Result<EventId, HubError> {
        let name = event_topic(topic)?;
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let existing = self
            .read_topics()
            .get(&name)
            .filter(|t| !t.is_closed())
            .cloned();
        let t = match existing {
            Some(t) => t,
            // Only Redis knows where the topic stands.
            None if self.store().loads_topics() => self.topic(&name)?,
            None => {
                self.could_hold(std::slice::from_ref(&name))?;
                return Ok(EventId::new(self.next_epoch(), 0));
            }
        };
        if !t.is_primed() {
            let primed = async {
                loop {
                    let notified = t.notify().notified();
                    if t.is_primed() || t.is_closed() {
                        return;
                    }
                    notified.await;
                }
            };
            if tokio::time::timeout(patience, primed).await.is_err() || t.is_closed() {
                return Err(HubError::Storage(StoreError::new(
                    crate::store::ErrorKind::Unavailable,
                    "the topic's history is not loaded yet",
                )));
            }
        }
        let ring = t.lock();
        Ok(EventId::new(ring.epoch(), ring.latest()))
    }
}

/// A retry hint for one connection: `retry` scaled by a random factor in
/// `[1 - jitter, 1 + jitter]`, so that clients cut at the same moment do not
/// all come back in the same millisecond.
fn jittered_ms(retry: Duration, jitter: f64) -> u64 {
    let ms = u64::try_from(retry.as_millis()).unwrap_or(u64::MAX);
    if jitter <= 0.0 || ms == 0 {
        return ms;
    }
    let unit = fastrand::f64(); // [0, 1)
    let factor = 1.0 - jitter + 2.0 * jitter * unit;
    (ms as f64 * factor).round() as u64
}

/// Options of one subscription.
///
/// # Examples
///
/// ```
/// use ssehub::Subscribe;
///
/// // Resume after the last event the client saw, and end after 100 events.
/// let opts = Subscribe::new().last_event_id("k3f9x2ab-1042").limit(100);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct Subscribe {
    pub(super) last_event_id: Option<String>,
    pub(super) limit: Option<u64>,
    pub(super) rewind: u64,
    pub(super) expires_at: Option<std::time::SystemTime>,
}

impl Subscribe {
    /// A live subscription from now on, without limit.
    pub fn new() -> Self {
        Subscribe::default()
    }

    /// Resumes strictly after this id: the value of the client's
    /// `Last-Event-ID`, taken as is (anything that is not a current id
    /// leads to a `resync` event, never to an error).
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = Some(id.into());
        self
    }

    /// The last event id set, if any.
    pub(crate) fn requested_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// Ends the stream after `n` events (replayed events count, `resync`
    /// does not).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// A fresh subscription (without [`last_event_id`](Self::last_event_id))
    /// starts with the last `n` retained events, then goes live: a page
    /// shows recent history without a snapshot of its own. Fewer are sent
    /// if fewer are retained; a resume ignores it.
    ///
    /// ```
    /// use ssehub::{Event, Hub, Subscribe};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// for i in 1..=5 {
    ///     hub.publish("feed", Event::new(i.to_string())).await?;
    /// }
    /// let stream = hub.subscribe("feed", Subscribe::new().rewind(2))?;
    /// assert_eq!(stream.position().seq(), 3, "starts after event 3: 4 and 5 come first");
    /// # Ok(())
    /// # }
    /// ```
    pub fn rewind(mut self, n: u64) -> Self {
        self.rewind = n;
        self
    }

    /// Ends the stream at `at` (when the credentials it was opened with
    /// expire): it sends an event of type `reauth` (see
    /// [`REAUTH_EVENT_TYPE`](crate::core::REAUTH_EVENT_TYPE)) whose data is
    /// `{"reason":"expired","lastEventId":"<its position>"}`, then ends. The
    /// client gets new credentials and resumes from that id.
    pub fn expires_at(mut self, at: std::time::SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }
}

/// A subscription being made for a response (see
/// `Hub::subscribe_for_response`).
pub(crate) enum Subscribing<S = EventStream> {
    Ready(Result<S, HubError>),
    Waiting(std::pin::Pin<Box<dyn std::future::Future<Output = Result<S, HubError>> + Send>>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_jitter_stays_in_range_and_spreads() {
        let base = Duration::from_millis(3000);
        assert_eq!(jittered_ms(base, 0.0), 3000);
        let hints: Vec<u64> = (0..10_000).map(|_| jittered_ms(base, 0.5)).collect();
        assert!(hints.iter().all(|&h| (1500..=4500).contains(&h)));
        let low = hints.iter().filter(|&&h| h < 2250).count();
        let high = hints.iter().filter(|&&h| h > 3750).count();
        // A quarter of the range each: about 2,500 of 10,000.
        assert!(
            (2000..3000).contains(&low) && (2000..3000).contains(&high),
            "{low} {high}"
        );
    }
}
