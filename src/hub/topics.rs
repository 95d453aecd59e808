//! The hub's topics by name: finding and creating them, attaching a
//! stream to several at once (all or none), and retiring idle ones, least
//! recently active first, when the hub holds its maximum.

use std::cmp::Reverse;

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use crate::core::TopicName;
use crate::core::id::Epoch;
use crate::core::ring::RingLimits;
use crate::hub::registry::{Stamped, Topics};
use crate::hub::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};
use crate::hub::topic::Topic;
use crate::hub::{Hub, HubError};

impl Hub {
    pub(super) fn read_topics(&self) -> RwLockReadGuard<'_, Topics> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_topics(&self) -> RwLockWriteGuard<'_, Topics> {
        self.inner
            .topics
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Finds or creates a topic.
    pub(super) fn topic(&self, name: &TopicName) -> Result<Arc<Topic>, HubError> {
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        if let Some(t) = self.read_topics().get(name)
            && !t.is_closed()
        {
            return Ok(t.clone());
        }
        let mut topics = self.write_topics();
        self.create_all(&mut topics, std::slice::from_ref(name))?;
        topics.get(name).cloned().ok_or(HubError::Closed)
    }

    /// Finds or creates every topic of `names` and counts a stream on each
    /// (see [`Topic::attach`]), all or nothing: if the hub cannot hold them
    /// all, it fails without creating, retiring or attaching anything.
    pub(super) fn attach_all(&self, names: &[TopicName]) -> Result<Vec<Arc<Topic>>, HubError> {
        self.check_width(names.len())?;
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        // Topics are retired under the write lock only: under either lock,
        // none of them can be retired before it is attached.
        {
            let topics = self.read_topics();
            let found: Option<Vec<_>> = names
                .iter()
                .map(|n| topics.get(n).filter(|t| !t.is_closed()))
                .collect();
            if let Some(found) = found {
                return Ok(attach_each(found));
            }
        }
        let mut topics = self.write_topics();
        self.create_all(&mut topics, names)?;
        let found: Option<Vec<_>> = names.iter().map(|n| topics.get(n)).collect();
        match found {
            Some(found) if !self.is_closed() => Ok(attach_each(found)),
            _ => Err(HubError::Closed),
        }
    }

    /// Refuses a stream of more topics than the hub can ever hold at once.
    fn check_width(&self, topics: usize) -> Result<(), HubError> {
        let max = self.inner.config.max_topics;
        if topics > max {
            return Err(HubError::StreamTooWide { topics, max });
        }
        Ok(())
    }

    /// Whether the hub could hold every topic of `names` now (retiring
    /// idle topics to make room), without changing anything: what
    /// [`Hub::attach_all`] would find, but for a race with other requests.
    pub(super) fn could_hold(&self, names: &[TopicName]) -> Result<(), HubError> {
        self.check_width(names.len())?;
        if self.is_closed() {
            return Err(HubError::Closed);
        }
        let topics = self.read_topics();
        let missing = names.iter().filter(|n| !topics.contains_key(*n)).count();
        let need = (topics.len() + missing).saturating_sub(self.inner.config.max_topics);
        if need == 0 {
            return Ok(());
        }
        let busy = self.inner.counters.busy_topics.load(Ordering::Relaxed);
        let kept_idle = names
            .iter()
            .filter_map(|n| topics.get(n))
            .filter(|t| t.subscriber_count() == 0)
            .count();
        let idle = topics.len().saturating_sub(busy).saturating_sub(kept_idle);
        if idle >= need {
            Ok(())
        } else {
            Err(HubError::TooManyTopics)
        }
    }

    /// The epoch a topic created now gets, if the hub chooses it (memory).
    pub(super) fn next_epoch(&self) -> Epoch {
        self.inner
            .epoch
            .incarnation(self.inner.retired.load(Ordering::Relaxed))
    }

    /// Creates the topics of `names` that do not exist, retiring as many
    /// idle topics (none of `names`) as they need room for; all or
    /// nothing: without room for all, nothing changes.
    fn create_all(&self, topics: &mut Topics, names: &[TopicName]) -> Result<(), HubError> {
        let mut missing = Vec::new();
        for name in names {
            match topics.map.get(name) {
                Some(t) if !t.is_closed() || self.is_closed() => {}
                Some(_) => {
                    topics.map.remove(name);
                    missing.push(name);
                }
                None => missing.push(name),
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let config = &self.inner.config;
        let need = (topics.map.len() + missing.len()).saturating_sub(config.max_topics);
        if need > 0 {
            self.retire_idle(topics, need, names)?;
        }
        let limits = RingLimits {
            max_events: config.buffer,
            max_bytes: config.max_topic_bytes,
        };
        for name in missing {
            let counters = self.inner.counters.clone();
            let topic = Arc::new(match self.store().open_topic(name) {
                // The store keeps the history: it says where it stands.
                Some((epoch, next, history)) => {
                    Topic::new(name, epoch, limits, counters, true).with_history(next, history)
                }
                None => {
                    let primed = !self.store().loads_topics();
                    Topic::new(name, self.next_epoch(), limits, counters, primed)
                }
            });
            topics.map.insert(name.clone(), topic.clone());
            topics.push(topic.clone());
            self.store().follow(name);
            // A close that ran before the insert did not see this topic.
            if self.is_closed() {
                topic.close();
            }
        }
        Ok(())
    }

    /// Makes room for `need` topics: retires the least recently active
    /// topics that have no subscribers and are not in `keep`, all or none.
    /// Their history is dropped; clients that resume from it later get
    /// `resync` (its epoch is gone), never another history.
    fn retire_idle(
        &self,
        topics: &mut Topics,
        need: usize,
        keep: &[TopicName],
    ) -> Result<(), HubError> {
        // Topics that lost their last subscriber go back in the order.
        let again = std::mem::take(
            &mut *self
                .inner
                .counters
                .idle_again
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for name in again {
            if let Some(t) = topics.map.get(&*name).cloned() {
                topics.push(t);
            }
        }
        // Entries taken out that stay: candidates and kept topics.
        let mut aside: Vec<Stamped> = Vec::new();
        let mut chosen: Vec<Arc<Topic>> = Vec::new();
        let retired = loop {
            while chosen.len() < need {
                let Some(Reverse(entry)) = topics.order.pop() else {
                    break;
                };
                let t = &entry.1;
                let current = topics.map.get(t.name()).is_some_and(|m| Arc::ptr_eq(m, t));
                if !current || t.is_closed() {
                    continue; // retired or replaced: the entry is stale
                }
                let now = t.last_active();
                if now != entry.0 {
                    topics.order.push(Reverse(Stamped(now, entry.1)));
                } else if keep.iter().any(|k| k.as_str() == t.name()) {
                    aside.push(entry);
                } else if t.subscriber_count() > 0 {
                    // Out of the order until its last subscriber leaves;
                    // if that happened meanwhile, it stays in.
                    t.set_in_order(false);
                    if t.subscriber_count() == 0 && !t.set_in_order(true) {
                        aside.push(entry);
                    }
                } else if !chosen.iter().any(|c| Arc::ptr_eq(c, t)) {
                    chosen.push(entry.1);
                }
            }
            if chosen.len() < need {
                break false;
            }
            // Every candidate locked at once: a subscriber registers under
            // the lock, so none can come between the check and the close.
            let rings: Vec<_> = chosen.iter().map(|t| t.lock()).collect();
            if chosen.iter().all(|t| t.subscriber_count() == 0) {
                for (t, ring) in chosen.iter().zip(rings) {
                    t.retire_locked(ring);
                }
                break true;
            }
            drop(rings);
            // One was subscribed meanwhile: put it aside, look further.
            let (busy, idle): (Vec<_>, Vec<_>) = std::mem::take(&mut chosen)
                .into_iter()
                .partition(|t| t.subscriber_count() > 0);
            chosen = idle;
            aside.extend(busy.into_iter().map(|t| Stamped(t.last_active(), t)));
        };
        for entry in aside {
            topics.order.push(Reverse(entry));
        }
        if !retired {
            for t in chosen {
                topics.push(t);
            }
            return Err(HubError::TooManyTopics);
        }
        for topic in chosen {
            topics.map.remove(topic.name());
            self.store().forget(topic.name());
            self.inner.retired.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(topic = topic.name(), "retired idle topic to make room");
        }
        Ok(())
    }
}

/// Counts a stream on each topic, under its lock (see `Topic::retire`).
fn attach_each(topics: Vec<&Arc<Topic>>) -> Vec<Arc<Topic>> {
    topics
        .into_iter()
        .map(|t| {
            let ring = t.lock();
            t.attach();
            drop(ring);
            t.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::core::event::Event;
    use crate::hub::{Hub, HubError, Subscribe};

    #[tokio::test]
    async fn a_full_hub_retires_the_least_recently_active_idle_topic() {
        let hub = Hub::builder().max_topics(3).build();
        hub.publish("a", Event::new("1")).await.unwrap();
        let _held = hub.subscribe("b", Subscribe::new()).unwrap();
        hub.publish("c", Event::new("1")).await.unwrap();
        hub.publish("a", Event::new("2")).await.unwrap(); // a is now more recent than c
        hub.publish("d", Event::new("1")).await.unwrap(); // retires c
        assert!(hub.topic_info("c").is_none());
        assert_eq!(hub.stats().topics_retired, 1);
        // Re-created, c starts a new history with a new epoch.
        let id = hub.publish("c", Event::new("again")).await.unwrap();
        assert_eq!(id.seq(), 1);
        assert_ne!(id.epoch(), hub.epoch());
        assert!(
            hub.topic_info("b").is_some(),
            "topics with subscribers stay"
        );
    }

    /// The retirement order follows activity through subscriptions: a
    /// topic found subscribed leaves it, and comes back when its last
    /// subscriber leaves (the order is kept lazily, not sorted).
    #[tokio::test]
    async fn a_topic_whose_last_subscriber_left_can_be_retired_again() {
        let hub = Hub::builder().max_topics(3).build();
        let held = hub.subscribe("a", Subscribe::new()).unwrap();
        hub.publish("b", Event::new("1")).await.unwrap();
        hub.publish("c", Event::new("1")).await.unwrap();
        hub.publish("d", Event::new("1")).await.unwrap(); // a is held: retires b
        assert!(hub.topic_info("b").is_none());
        drop(held); // a is idle again, and now the least recently active but c
        hub.publish("c", Event::new("2")).await.unwrap();
        hub.publish("d", Event::new("2")).await.unwrap();
        hub.publish("e", Event::new("1")).await.unwrap(); // retires a
        assert!(hub.topic_info("a").is_none());
        hub.publish("f", Event::new("1")).await.unwrap(); // retires c
        assert!(hub.topic_info("c").is_none());
        assert_eq!(hub.stats().topics_retired, 3);
        assert_eq!(hub.stats().topics, 3);
    }

    /// A stream of several topics is all or nothing: without room for
    /// every new topic, nothing is retired, created or subscribed; and a
    /// topic it names is not retired to make room for another.
    #[tokio::test]
    async fn a_stream_without_room_for_all_its_topics_changes_nothing() {
        let hub = Hub::builder().max_topics(4).build();
        let _held = hub.subscribe("held", Subscribe::new()).unwrap();
        for t in ["x", "y", "z"] {
            hub.publish(t, Event::new("1")).await.unwrap();
        }
        // Five topics where the hub holds four: never.
        assert!(matches!(
            hub.subscribe_multi(["n1", "n2", "n3", "n4", "n5"], Subscribe::new()),
            Err(HubError::StreamTooWide { topics: 5, max: 4 })
        ));
        // Four new topics need four idle ones; three are.
        assert!(matches!(
            hub.subscribe_multi(["n1", "n2", "n3", "n4"], Subscribe::new()),
            Err(HubError::TooManyTopics)
        ));
        let stats = hub.stats();
        assert_eq!((stats.topics, stats.topics_retired), (4, 0));
        assert_eq!(stats.subscribers, 1);
        // x is the least recently active, but it is on the stream: y and z
        // make room.
        let s = hub
            .subscribe_multi(["x", "n1", "n2"], Subscribe::new())
            .unwrap();
        assert_eq!(hub.topic_info("x").unwrap().retained_events, 1);
        assert!(hub.topic_info("y").is_none() && hub.topic_info("z").is_none());
        drop(s);
    }

    #[tokio::test]
    async fn a_hub_full_of_subscribed_topics_refuses_new_ones() {
        let hub = Hub::builder().max_topics(2).build();
        let _a = hub.subscribe("a", Subscribe::new()).unwrap();
        let _b = hub.subscribe("b", Subscribe::new()).unwrap();
        assert!(matches!(
            hub.publish("c", Event::new("x")).await,
            Err(HubError::TooManyTopics)
        ));
        assert!(matches!(
            hub.subscribe("c", Subscribe::new()),
            Err(HubError::TooManyTopics)
        ));
    }
}
