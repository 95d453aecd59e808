//! One topic's position in a stream, and the rules that move it: where it
//! starts, what a change of history or a lag announces and where it goes
//! on from, what a delivery counts, when the store is read instead of the
//! ring. A stream of one topic has one cursor, a stream of several one per
//! topic; both announce what these return in their own words.

use std::sync::atomic::Ordering;

use crate::core::id::{Epoch, EventId};
use crate::core::resync::{Greeting, Resync, ResyncReason, Start, locate, oldest_retained};
use crate::core::ring::{Read, Ring};
use crate::hub::sync::Arc;
use crate::hub::topic::Topic;

/// Where a stream is in one topic's history.
pub(crate) struct Cursor {
    pub(crate) topic: Arc<Topic>,
    /// The history `next` belongs to.
    pub(crate) epoch: Epoch,
    /// The next event to send.
    pub(crate) next: u64,
    /// Events before this one were published before the subscription.
    pub(crate) replay_end: u64,
}

impl Cursor {
    /// A cursor whose start is not known yet (its topic is loading).
    pub(crate) fn unstarted(topic: Arc<Topic>) -> Self {
        Cursor {
            topic,
            epoch: Epoch::placeholder(),
            next: 1,
            replay_end: 0,
        }
    }

    /// The id of the last event handed on (or of the start).
    pub(crate) fn position(&self) -> EventId {
        EventId::new(self.epoch, self.next - 1)
    }

    /// Moves to `start` (computed under the topic's lock, whose next event
    /// was `replay_end`) and returns what the client must hear first; a
    /// `resync` is counted.
    pub(crate) fn start(&mut self, start: Start, replay_end: u64) -> Greeting {
        if let Greeting::Resync(_) = start.greeting {
            self.count_resync();
        }
        self.epoch = start.epoch;
        self.next = start.cursor;
        self.replay_end = replay_end;
        start.greeting
    }

    /// Finds where a client that last saw `requested` (or, fresh, wants
    /// `rewind` events back) starts in the topic's ring, and moves there.
    pub(crate) fn locate(&mut self, requested: Option<&str>, rewind: u64) -> Greeting {
        let (start, replay_end) = {
            let ring = self.topic.lock();
            let start = locate(&ring, requested, rewind, self.topic.durable_first());
            (start, ring.next_seq())
        };
        self.start(start, replay_end)
    }

    /// The `resync` (`epoch`) for a cursor whose topic got another history.
    pub(crate) fn reset(&mut self) -> Resync {
        let topic = Arc::clone(&self.topic);
        let ring = topic.lock();
        self.reset_to(&ring)
    }

    /// [`reset`](Self::reset), with the ring locked: moves to the oldest
    /// event of the ring's history.
    fn reset_to(&mut self, ring: &Ring) -> Resync {
        let retained = oldest_retained(ring, self.topic.durable_first());
        let resync = Resync {
            reason: ResyncReason::Epoch,
            requested: self.position().to_string(),
            oldest: retained.map(|s| EventId::new(ring.epoch(), s)),
            latest: EventId::new(ring.epoch(), ring.latest()),
            missed: None,
        };
        self.epoch = ring.epoch();
        self.next = retained.unwrap_or(ring.next_seq());
        self.count_resync();
        resync
    }

    /// The `resync` (`lagged`) for a cursor whose unsent events were
    /// overwritten: moves to the oldest retained event.
    pub(crate) fn lagged(&mut self) -> Resync {
        let topic = Arc::clone(&self.topic);
        let ring = topic.lock();
        // The read that found the cursor behind has released the lock: the
        // ring may hold another history by now. Counting what was missed in
        // it would mix the two (a `missed` of the new history, the id of
        // the old): the change of history is what the client must hear.
        if ring.epoch() != self.epoch {
            return self.reset_to(&ring);
        }
        let durable = self.topic.durable_first();
        let resync = Resync::lagged(&ring, self.next, durable);
        self.next = oldest_retained(&ring, durable).unwrap_or(ring.next_seq());
        drop(ring);
        self.count_resync();
        resync
    }

    fn count_resync(&self) {
        self.topic
            .counters()
            .resyncs
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the `count` events just handed on; the cursor is past them.
    pub(crate) fn delivered(&self, count: u64) {
        let c = self.topic.counters();
        c.delivered.fetch_add(count, Ordering::Relaxed);
        let replayed = self
            .replay_end
            .min(self.next)
            .saturating_sub(self.next - count);
        if replayed > 0 {
            c.replayed.fetch_add(replayed, Ordering::Relaxed);
        }
    }

    /// A read of the store for a cursor the ring found behind it
    /// (`Read::Lagged`), if the store keeps the history the ring dropped.
    pub(crate) fn read_store(
        &self,
        max_events: u64,
        max_bytes: usize,
    ) -> Option<tokio::task::JoinHandle<Read>> {
        let history = self.topic.history()?;
        (history.first() <= self.next)
            .then(|| history.read(self.epoch, self.next, max_events, max_bytes))
    }
}

/// What a finished read of the store found: a read that failed finds
/// nothing, and nothing is announced as gone (`Lagged`; the store gives the
/// topic a new epoch if its history is damaged).
pub(crate) fn store_read(result: Result<Read, tokio::task::JoinError>) -> Read {
    match result.unwrap_or(Read::Empty) {
        Read::Empty => Read::Lagged { oldest: 0 },
        read => read,
    }
}
