//! Publishing: [`Hub::publish`] and its kin (batches, idempotency keys),
//! in memory or through a store, and what an idempotent publish returns.

use std::sync::atomic::Ordering;

use crate::core::event::Event;
use crate::core::id::EventId;
use crate::core::idempotency::{Fingerprint, IdempotencyKey, Keyed};
use crate::core::{IntoTopic, TopicName};
use crate::hub::registry::LOOKUP_ATTEMPTS;
use crate::hub::registry::event_topic;
use crate::hub::topic::Published;
use crate::hub::{Hub, HubError};

impl Hub {
    /// Publishes one event to `topic` and returns the id it was given.
    ///
    /// # Errors
    ///
    /// [`HubError::InvalidTopic`], [`HubError::TooManyTopics`] if the topic
    /// is new and the hub is full, [`HubError::TooLarge`] if the event alone
    /// is larger than [`HubConfig::max_total_bytes`](crate::hub::HubConfig::max_total_bytes), [`HubError::Closed`]
    /// after [`Hub::close`], [`HubError::Storage`] if the storage failed.
    pub async fn publish(&self, topic: impl IntoTopic, event: Event) -> Result<EventId, HubError> {
        let topic = &event_topic(topic)?;
        let published = if self.store().is_memory() {
            let encoded = vec![event.encode()];
            self.check_size(&encoded)?;
            self.publish_encoded(topic, encoded)?
        } else {
            fresh(self.append(topic, vec![event], None).await?)?
        };
        Ok(EventId::new(published.epoch, published.first))
    }

    /// Refuses events that the hub could not keep until a subscriber reads
    /// them: more bytes than [`HubConfig::max_total_bytes`](crate::hub::HubConfig::max_total_bytes) would evict
    /// themselves, so a publisher would be told they were published while
    /// every subscriber got `resync` instead.
    fn check_size(&self, encoded: &[crate::core::event::Encoded]) -> Result<(), HubError> {
        let bytes: usize = encoded.iter().map(|e| e.max_frame_len()).sum();
        if bytes > self.inner.config.max_total_bytes {
            Err(HubError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Publishes events to `topic` in order, as one batch: they get
    /// consecutive ids and subscribers never see part of the batch without
    /// the events before it.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`] ([`HubError::TooLarge`] counts the whole batch);
    /// on error nothing is published.
    pub async fn publish_batch(
        &self,
        topic: impl IntoTopic,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<Vec<EventId>, HubError> {
        let topic = &event_topic(topic)?;
        let published = if self.store().is_memory() {
            // Encode before taking the topic's lock.
            let encoded: Vec<_> = events.into_iter().map(|e| e.encode()).collect();
            self.check_size(&encoded)?;
            self.publish_encoded(topic, encoded)?
        } else {
            fresh(
                self.append(topic, events.into_iter().collect(), None)
                    .await?,
            )?
        };
        Ok(published.ids().collect())
    }

    /// Publishes one event to `topic` under an idempotency key: the first
    /// call with `key` publishes; a later one with the same key and the same
    /// event publishes nothing and gets the same id (a [`Receipt`] marked
    /// `replayed`); one with the same key and a different event fails with
    /// [`HubError::KeyReused`].
    ///
    /// A key is remembered at least as long as the event it published is
    /// retained, and survives what the topic's history survives: a restart
    /// with the disk store (it is written in the same atomic batch as the
    /// event), other nodes with Redis (the same script appends and records
    /// it). Keys are per topic. Only publishes that succeed are remembered:
    /// after an error the key is free. Calls with the same key that overlap
    /// never both publish: in memory and on disk a later one waits for the
    /// earlier one's outcome; with Redis, the one whose script runs first
    /// publishes and the others replay.
    ///
    /// An event and a batch of that one event are different requests (they
    /// are answered differently over HTTP).
    ///
    /// # Errors
    ///
    /// As [`Hub::publish`], and [`HubError::KeyReused`].
    ///
    /// # Examples
    ///
    /// ```
    /// use ssehub::core::IdempotencyKey;
    /// use ssehub::{Event, Hub, HubError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = Hub::new();
    /// let key = IdempotencyKey::new("order-1042-shipped")?;
    /// let first = hub.publish_idempotent("orders", &key, Event::new("shipped")).await?;
    /// // The answer was lost; the publisher tries again.
    /// let again = hub.publish_idempotent("orders", &key, Event::new("shipped")).await?;
    /// assert_eq!((again.ids, again.replayed), (first.ids, true));
    /// assert_eq!(hub.topic_info("orders").unwrap().retained_events, 1);
    /// let other = hub.publish_idempotent("orders", &key, Event::new("lost")).await;
    /// assert!(matches!(other, Err(HubError::KeyReused)));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn publish_idempotent(
        &self,
        topic: impl IntoTopic,
        key: &IdempotencyKey,
        event: Event,
    ) -> Result<Receipt<EventId>, HubError> {
        let topic = &event_topic(topic)?;
        let receipt = self.publish_keyed(topic, key, vec![event], false).await?;
        Ok(Receipt {
            ids: EventId::new(receipt.ids.epoch, receipt.ids.first),
            replayed: receipt.replayed,
        })
    }

    /// [`Hub::publish_batch`] under an idempotency key, as
    /// [`Hub::publish_idempotent`]: the same key and the same events in the
    /// same order get the same ids and publish nothing.
    ///
    /// # Errors
    ///
    /// As [`Hub::publish_batch`], and [`HubError::KeyReused`].
    pub async fn publish_batch_idempotent(
        &self,
        topic: impl IntoTopic,
        key: &IdempotencyKey,
        events: impl IntoIterator<Item = Event>,
    ) -> Result<Receipt<Vec<EventId>>, HubError> {
        let topic = &event_topic(topic)?;
        let events = events.into_iter().collect();
        let receipt = self.publish_keyed(topic, key, events, true).await?;
        Ok(Receipt {
            ids: receipt.ids.ids().collect(),
            replayed: receipt.replayed,
        })
    }

    pub(super) async fn publish_keyed(
        &self,
        topic: &TopicName,
        key: &IdempotencyKey,
        events: Vec<Event>,
        batch: bool,
    ) -> Result<Receipt<Published>, HubError> {
        let fingerprint = Fingerprint::of(batch, &events);
        let outcome = if self.store().is_memory() {
            let encoded: Vec<_> = events.iter().map(Event::encode).collect();
            self.check_size(&encoded)?;
            self.publish_encoded_keyed(topic, encoded, key, fingerprint)?
        } else {
            self.append(topic, events, Some((key, fingerprint))).await?
        };
        let counters = &self.inner.counters;
        match outcome {
            Keyed::Fresh(ids) => Ok(Receipt {
                ids,
                replayed: false,
            }),
            Keyed::Replayed(ids) => {
                counters.idempotent_replays.fetch_add(1, Ordering::Relaxed);
                Ok(Receipt {
                    ids,
                    replayed: true,
                })
            }
            Keyed::Conflict => {
                counters
                    .idempotent_conflicts
                    .fetch_add(1, Ordering::Relaxed);
                Err(HubError::KeyReused)
            }
        }
    }

    /// Appends through a store other than memory: the store gives the ids
    /// (and, under a key, may find that they were given already).
    async fn append(
        &self,
        name: &TopicName,
        events: Vec<Event>,
        key: Option<(&IdempotencyKey, Fingerprint)>,
    ) -> Result<Keyed<Published>, HubError> {
        let encoded: Vec<_> = events.iter().map(Event::encode).collect();
        self.check_size(&encoded)?;
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        // A store that keeps history on this machine hands the durable
        // frames back, in order, for the topic's ring; Redis delivers what
        // its reader reads, on every node alike.
        let deliver: crate::store::Deliver = if self.store().loads_topics() {
            Box::new(|_, _, _| {})
        } else {
            let topic = self.topic(name)?;
            let hub = self.clone();
            Box::new(move |epoch, first, frames| {
                // Counted here, not after the answer: a publisher that went
                // away (its request's future dropped) published all the same.
                let count = frames.len() as u64;
                topic.ingest(epoch, (first..).zip(frames));
                hub.inner
                    .counters
                    .published
                    .fetch_add(count, Ordering::Relaxed);
                hub.enforce_total_bytes();
            })
        };
        let outcome = self
            .store()
            .append(name, &events, encoded, deliver, key)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, topic = name.as_str(), "append failed");
                HubError::Storage(e)
            })?;
        let count = events.len() as u64;
        let published = |a: crate::store::Appended| Published {
            epoch: a.epoch,
            first: a.first,
            count,
        };
        Ok(match outcome {
            Keyed::Fresh(appended) => {
                if self.store().loads_topics() {
                    // Redis: the outcome is known only here.
                    self.inner
                        .counters
                        .published
                        .fetch_add(count, Ordering::Relaxed);
                }
                Keyed::Fresh(published(appended))
            }
            Keyed::Replayed(appended) => Keyed::Replayed(published(appended)),
            Keyed::Conflict => Keyed::Conflict,
        })
    }

    fn publish_encoded(
        &self,
        name: &TopicName,
        mut encoded: Vec<crate::core::event::Encoded>,
    ) -> Result<Published, HubError> {
        for _ in 0..LOOKUP_ATTEMPTS {
            let topic = self.topic(name)?;
            match topic.publish(encoded) {
                Ok(published) => {
                    self.enforce_total_bytes();
                    return Ok(published);
                }
                // Retired between the lookup and the lock: look again.
                Err(back) if !self.is_closed() => encoded = back,
                Err(_) => break,
            }
        }
        Err(HubError::Closed)
    }

    /// [`Hub::publish_encoded`] under an idempotency key, in memory.
    fn publish_encoded_keyed(
        &self,
        name: &TopicName,
        mut encoded: Vec<crate::core::event::Encoded>,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<Keyed<Published>, HubError> {
        for _ in 0..LOOKUP_ATTEMPTS {
            let topic = self.topic(name)?;
            match topic.publish_keyed(encoded, key, fingerprint) {
                Ok(outcome) => {
                    if matches!(outcome, Keyed::Fresh(_)) {
                        self.enforce_total_bytes();
                    }
                    return Ok(outcome);
                }
                // Retired between the lookup and the lock: look again.
                Err(back) if !self.is_closed() => encoded = back,
                Err(_) => break,
            }
        }
        Err(HubError::Closed)
    }
}

/// What an idempotent publish did (see [`Hub::publish_idempotent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Receipt<T> {
    /// The ids of the events: given now, or, if `replayed`, given to the
    /// first publish with the key.
    pub ids: T,
    /// The key was used before for the same request: nothing was
    /// published now.
    pub replayed: bool,
}

/// The ids of an append that was not under a key (which only a key can
/// make a replay or a conflict).
fn fresh(outcome: Keyed<Published>) -> Result<Published, HubError> {
    match outcome {
        Keyed::Fresh(p) | Keyed::Replayed(p) => Ok(p),
        Keyed::Conflict => Err(HubError::KeyReused),
    }
}
