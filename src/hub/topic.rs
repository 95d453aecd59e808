//! A topic: one ring behind a lock, and the wake-up of its subscribers.
//!
//! Publishing appends under the lock and wakes every waiting subscriber
//! after releasing it (`Notify::notify_waiters` wakes in batches, outside its
//! own lock). Subscribers never get a per-subscriber queue: each keeps only a
//! cursor and reads the shared ring when woken, so a slow subscriber costs a
//! cursor, not a backlog.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::core::event::Encoded;
use crate::core::id::{Epoch, EventId};
use crate::core::idempotency::{Fingerprint, IdempotencyKey, KeyRecord, Keyed};
use crate::core::ring::{Read, Ring, RingLimits};
use crate::hub::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Notify};
use crate::store::History;

/// State shared by every topic of a hub: counters and the byte total.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) subscribers: AtomicUsize,
    pub(crate) retained_bytes: AtomicUsize,
    /// Publishes answered from an earlier one with the same idempotency key.
    pub(crate) idempotent_replays: AtomicU64,
    /// Publishes refused: their key was used for a different request.
    pub(crate) idempotent_conflicts: AtomicU64,
    /// Durable Streams that exist (soft-deleted ones too).
    pub(crate) durable_streams: AtomicUsize,
    /// Durable Streams writes accepted (appends and closes).
    pub(crate) durable_appends: AtomicU64,
    /// Durable Streams writes answered as duplicates, changing nothing.
    pub(crate) durable_duplicates: AtomicU64,
    /// Durable Streams reads waiting for data (long-poll, SSE).
    pub(crate) durable_live_reads: AtomicUsize,
    /// Mercure updates published.
    pub(crate) mercure_updates: AtomicU64,
    /// Mercure updates refused: their id is in history.
    pub(crate) mercure_duplicates: AtomicU64,
    /// Mercure subscribers connected now.
    pub(crate) mercure_subscribers: AtomicUsize,
    /// A logical clock: ticks on every publish and subscription change, so
    /// topics can be ordered by their last activity.
    activity: AtomicU64,
    /// Topics with at least one subscriber (the others may be retired).
    pub(crate) busy_topics: AtomicUsize,
    /// Topics that lost their last subscriber while out of the hub's
    /// retirement order: the hub puts them back in it when it next looks.
    pub(crate) idle_again: Mutex<Vec<Box<str>>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            subscribers: AtomicUsize::new(0),
            retained_bytes: AtomicUsize::new(0),
            idempotent_replays: AtomicU64::new(0),
            idempotent_conflicts: AtomicU64::new(0),
            durable_streams: AtomicUsize::new(0),
            durable_appends: AtomicU64::new(0),
            durable_duplicates: AtomicU64::new(0),
            durable_live_reads: AtomicUsize::new(0),
            mercure_updates: AtomicU64::new(0),
            mercure_duplicates: AtomicU64::new(0),
            mercure_subscribers: AtomicUsize::new(0),
            activity: AtomicU64::new(0),
            busy_topics: AtomicUsize::new(0),
            idle_again: Mutex::new(Vec::new()),
        }
    }
}

impl Counters {
    fn tick(&self) -> u64 {
        self.activity.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub(crate) struct Topic {
    name: Box<str>,
    ring: Mutex<Ring>,
    notify: Arc<Notify>,
    /// Set when the hub closes or the topic is retired; streams end.
    closed: AtomicBool,
    /// The ring holds the topic's current history. Always true in memory;
    /// with Redis, set once this node has loaded the stream's tail.
    primed: AtomicBool,
    subscribers: AtomicUsize,
    /// The ring's byte count, readable without the lock.
    bytes: AtomicUsize,
    /// Last publish or subscription change, on the hub's logical clock.
    last_active: AtomicU64,
    /// In the hub's retirement order, or queued to go back in it: a topic
    /// with subscribers leaves it when the hub finds it there, and its last
    /// subscriber's departure queues it (see [`Counters::idle_again`]).
    /// Whoever turns this from false to true puts the topic back, so it is
    /// there at most once.
    in_order: AtomicBool,
    counters: Arc<Counters>,
    /// The history its store keeps beyond the ring, if any (disk).
    history: Option<History>,
}

/// Ids given to a batch of published events: consecutive in one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) epoch: Epoch,
    pub(crate) first: u64,
    pub(crate) count: u64,
}

impl Published {
    pub(crate) fn ids(&self) -> impl Iterator<Item = EventId> + use<> {
        let epoch = self.epoch;
        (self.first..self.first + self.count).map(move |s| EventId::new(epoch, s))
    }
}

impl Topic {
    pub(crate) fn new(
        name: &str,
        epoch: Epoch,
        limits: RingLimits,
        counters: Arc<Counters>,
        primed: bool,
    ) -> Self {
        let now = counters.tick();
        Topic {
            name: name.into(),
            ring: Mutex::new(Ring::new(epoch, limits)),
            notify: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            primed: AtomicBool::new(primed),
            subscribers: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            last_active: AtomicU64::new(now),
            in_order: AtomicBool::new(true),
            counters,
            history: None,
        }
    }

    /// A topic whose store keeps its history beyond the ring: the ring
    /// starts empty at `next`, and older events are read from `history`.
    pub(crate) fn with_history(mut self, next: u64, history: History) -> Self {
        let ring = self.ring.get_mut().unwrap_or_else(PoisonError::into_inner);
        let epoch = ring.epoch();
        ring.restart(epoch, next);
        self.history = Some(history);
        self
    }

    /// The history its store keeps beyond the ring, if any.
    pub(crate) fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// The first event of the history kept beyond the ring, if any.
    pub(crate) fn durable_first(&self) -> Option<u64> {
        self.history.as_ref().map(History::first)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Locks the ring. Nothing panics while holding it, but if something
    /// ever did, the ring is still consistent between statements, so the
    /// poison is ignored rather than spread to every subscriber.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends events in order, all under one lock, then wakes subscribers.
    /// A closed topic hands the events back untouched.
    pub(crate) fn publish(&self, events: Vec<Encoded>) -> Result<Published, Vec<Encoded>> {
        let published = {
            let mut ring = self.lock();
            if self.is_closed() {
                return Err(events);
            }
            self.append_locked(&mut ring, events)
        };
        self.published(published);
        Ok(published)
    }

    /// Like [`Topic::publish`], under an idempotency key (the memory store:
    /// the ring keeps the keys). A key the ring remembers publishes
    /// nothing: the same fingerprint gets the first publish's ids, another
    /// one is a conflict. A free key is remembered with the events, in the
    /// same critical section, so concurrent duplicates publish once.
    pub(crate) fn publish_keyed(
        &self,
        events: Vec<Encoded>,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
    ) -> Result<Keyed<Published>, Vec<Encoded>> {
        let published = {
            let mut ring = self.lock();
            if self.is_closed() {
                return Err(events);
            }
            if let Some(known) = ring.key(key.as_str()) {
                return Ok(if known.fingerprint == fingerprint {
                    Keyed::Replayed(Published {
                        epoch: ring.epoch(),
                        first: known.first,
                        count: known.count,
                    })
                } else {
                    Keyed::Conflict
                });
            }
            let published = self.append_locked(&mut ring, events);
            let (added, evicted) = ring.remember(
                key.clone(),
                KeyRecord {
                    fingerprint,
                    first: published.first,
                    count: published.count,
                },
            );
            self.bytes.store(ring.bytes(), Ordering::Relaxed);
            self.account(added, evicted);
            published
        };
        self.published(published);
        Ok(Keyed::Fresh(published))
    }

    /// Appends encoded events to the locked ring and accounts for them.
    fn append_locked(&self, ring: &mut Ring, events: Vec<Encoded>) -> Published {
        let epoch = ring.epoch();
        let first = ring.next_seq();
        let (mut added, mut evicted) = (0, 0);
        for enc in events {
            let frame = enc.finish(&EventId::new(epoch, ring.next_seq()));
            added += frame.len();
            evicted += ring.push(frame);
        }
        self.bytes.store(ring.bytes(), Ordering::Relaxed);
        // The hub-wide total moves with the ring, under its lock, so a
        // concurrent retire or trim never subtracts what is not added.
        self.account(added, evicted);
        self.touch();
        let count = ring.next_seq() - first;
        Published {
            epoch,
            first,
            count,
        }
    }

    /// Counts published events and wakes subscribers (after the lock).
    fn published(&self, published: Published) {
        self.counters
            .published
            .fetch_add(published.count, Ordering::Relaxed);
        if published.count > 0 {
            self.notify.notify_waiters();
        }
    }

    /// Appends a Durable Stream's frames to the locked ring and accounts
    /// for them; returns how many. Wake the readers with [`Topic::wake`]
    /// once the lock is released.
    pub(crate) fn push_locked(
        &self,
        ring: &mut Ring,
        frames: impl IntoIterator<Item = Bytes>,
    ) -> u64 {
        let before = ring.next_seq();
        let (added, evicted) = ring.push_all(frames);
        self.bytes.store(ring.bytes(), Ordering::Relaxed);
        self.account(added, evicted);
        self.touch();
        let count = ring.next_seq() - before;
        self.counters.published.fetch_add(count, Ordering::Relaxed);
        count
    }

    /// Empties the locked ring, whose next event will be `next` (a Durable
    /// Stream deleted, or created at a fork point).
    pub(crate) fn clear_locked(&self, ring: &mut Ring, next: u64) {
        let epoch = ring.epoch();
        let freed = ring.restart(epoch, next);
        self.bytes.store(0, Ordering::Relaxed);
        self.account(0, freed);
    }

    /// Wakes every reader waiting on the topic (after a change made under
    /// the lock, once it is released).
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Drops the oldest events until at most `max_bytes` remain. Subscribers
    /// that had not read them get `resync`.
    pub(crate) fn trim_to(&self, max_bytes: usize) -> usize {
        let mut ring = self.lock();
        if self.is_closed() {
            return 0;
        }
        let freed = ring.trim_to_bytes(max_bytes);
        self.bytes.store(ring.bytes(), Ordering::Relaxed);
        self.account(0, freed);
        freed
    }

    /// Drops the events of history `epoch` before `first` (the store no
    /// longer keeps them). Subscribers that had not read them get
    /// `resync`.
    #[cfg_attr(not(feature = "disk"), allow(dead_code))]
    pub(crate) fn drop_before(&self, epoch: Epoch, first: u64) {
        let mut ring = self.lock();
        if self.is_closed() || ring.epoch() != epoch {
            return;
        }
        self.drop_locked(&mut ring, first);
    }

    /// [`Topic::drop_before`] on the locked ring.
    pub(crate) fn drop_locked(&self, ring: &mut Ring, first: u64) {
        let freed = ring.drop_before(first);
        self.bytes.store(ring.bytes(), Ordering::Relaxed);
        self.account(0, freed);
    }

    /// Moves the hub-wide byte total; call with the ring locked.
    fn account(&self, added: usize, freed: usize) {
        let total = &self.counters.retained_bytes;
        total.fetch_add(added, Ordering::Relaxed);
        total.fetch_sub(freed, Ordering::Relaxed);
    }

    /// Reads what is ready for a subscriber at `cursor` of `epoch`.
    pub(crate) fn read(
        &self,
        epoch: Epoch,
        cursor: u64,
        max_events: u64,
        max_bytes: usize,
    ) -> Read {
        let ring = self.lock();
        if ring.epoch() != epoch {
            return Read::Reset;
        }
        ring.read(cursor, max_events, max_bytes)
    }

    /// Like [`Topic::read`], for a reader that needs each event's own
    /// frame (a multi-topic stream): clones of the shared frames of at
    /// most `out.len()` events (and `max_bytes`, unless the first alone is
    /// more) into `out`; `Ok` with how many and whether more follow, else
    /// what the reader finds instead (`Empty`, `Lagged`, `Reset`). The
    /// frames leave the lock as references, never copied.
    pub(crate) fn read_frames(
        &self,
        epoch: Epoch,
        cursor: u64,
        max_bytes: usize,
        out: &mut [Bytes],
    ) -> Result<(usize, bool), Read> {
        let ring = self.lock();
        if ring.epoch() != epoch {
            return Err(Read::Reset);
        }
        ring.frames(cursor, out, max_bytes)
    }

    /// Whether the ring holds the topic's history (see `primed`).
    pub(crate) fn is_primed(&self) -> bool {
        self.primed.load(Ordering::Acquire)
    }

    /// Waits until the topic is loaded and, if a client resumes from
    /// `wanted`, this node has read up to it (or the topic is closed).
    pub(crate) async fn caught_up(&self, wanted: Option<EventId>) {
        loop {
            let notified = self.notify().notified();
            if self.is_closed() {
                return;
            }
            if self.is_primed() {
                let ring = self.lock();
                let behind = wanted
                    .is_some_and(|id| id.epoch() == ring.epoch() && id.seq() >= ring.next_seq());
                if !behind {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Replaces the ring's content with a history loaded from storage:
    /// `events` (in order, consecutive) of `epoch`, whose next event is
    /// `next`. Wakes everyone: subscribers waiting for the topic to be
    /// primed, and streams whose epoch it replaced.
    pub(crate) fn prime(&self, epoch: Epoch, next: u64, events: Vec<(u64, Bytes)>) {
        {
            let mut ring = self.lock();
            if self.is_closed() {
                return;
            }
            let start = events.first().map_or(next, |e| e.0);
            let mut freed = ring.restart(epoch, start);
            let mut added = 0;
            for (seq, frame) in events {
                if seq != ring.next_seq() {
                    freed += ring.restart(epoch, seq);
                }
                added += frame.len();
                freed += ring.push(frame);
            }
            if ring.next_seq() != next {
                freed += ring.restart(epoch, next);
            }
            self.bytes.store(ring.bytes(), Ordering::Relaxed);
            self.account(added, freed);
            self.primed.store(true, Ordering::Release);
        }
        self.notify.notify_waiters();
    }

    /// Appends events published elsewhere (read back from storage), in
    /// order. Events this ring already has are skipped; a gap or another
    /// epoch starts the ring over, and subscribers behind it get `resync`.
    pub(crate) fn ingest(&self, epoch: Epoch, events: impl IntoIterator<Item = (u64, Bytes)>) {
        let count = {
            let mut ring = self.lock();
            if self.is_closed() {
                return;
            }
            let (mut added, mut freed, mut count) = (0, 0, 0u64);
            for (seq, frame) in events {
                if ring.epoch() == epoch && seq < ring.next_seq() {
                    continue;
                }
                if ring.epoch() != epoch || seq != ring.next_seq() {
                    freed += ring.restart(epoch, seq);
                }
                added += frame.len();
                freed += ring.push(frame);
                count += 1;
            }
            self.bytes.store(ring.bytes(), Ordering::Relaxed);
            self.account(added, freed);
            count
        };
        if count > 0 {
            self.touch();
            self.notify.notify_waiters();
        }
    }

    /// The handle subscribers wait on.
    pub(crate) fn notify(&self) -> &Arc<Notify> {
        &self.notify
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Ends every stream of the topic and refuses new events.
    pub(crate) fn close(&self) {
        // Flipped under the lock so no publish or subscribe is half done.
        let ring = self.lock();
        self.closed.store(true, Ordering::Release);
        drop(ring);
        self.notify.notify_waiters();
    }

    /// Closes the topic if nobody is subscribed; returns the bytes it held,
    /// or `None` if it has subscribers.
    ///
    /// Subscriptions register under the ring's lock, so a subscriber either
    /// registered before this check or finds the topic closed and looks it
    /// up again.
    #[cfg(test)]
    pub(crate) fn retire(&self) -> Option<usize> {
        let ring = self.lock();
        if self.subscriber_count() > 0 {
            return None;
        }
        Some(self.retire_locked(ring))
    }

    /// Closes the topic, whose lock the caller holds (`ring`) after
    /// checking that it has no subscriber; returns the bytes it held.
    pub(crate) fn retire_locked(&self, mut ring: MutexGuard<'_, Ring>) -> usize {
        self.closed.store(true, Ordering::Release);
        let epoch = ring.epoch();
        let next = ring.next_seq();
        let bytes = ring.restart(epoch, next);
        self.bytes.store(0, Ordering::Relaxed);
        self.account(0, bytes);
        drop(ring);
        self.notify.notify_waiters();
        bytes
    }

    /// Bytes retained, without taking the lock.
    pub(crate) fn retained_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// When the topic was last published to or (un)subscribed.
    pub(crate) fn last_active(&self) -> u64 {
        self.last_active.load(Ordering::Relaxed)
    }

    fn touch(&self) {
        self.last_active
            .store(self.counters.tick(), Ordering::Relaxed);
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    /// Counts a new subscriber. Call with the ring locked (see `retire`).
    pub(crate) fn add_subscriber(&self) {
        self.attach();
        self.counters.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove_subscriber(&self) {
        self.detach();
        self.counters.subscribers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Counts a stream that follows this topic among others (the hub
    /// counts the stream once). Call with the ring locked (see `retire`).
    pub(crate) fn attach(&self) {
        if self.subscribers.fetch_add(1, Ordering::SeqCst) == 0 {
            self.counters.busy_topics.fetch_add(1, Ordering::Relaxed);
        }
        self.touch();
    }

    /// Undoes [`Topic::attach`].
    pub(crate) fn detach(&self) {
        self.touch();
        if self.subscribers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.counters.busy_topics.fetch_sub(1, Ordering::Relaxed);
            if !self.in_order.swap(true, Ordering::SeqCst) {
                // Idle again: the hub may retire it once it puts it back
                // in the order (see `in_order`).
                self.counters
                    .idle_again
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(self.name.clone());
            }
        }
    }

    /// Marks the topic as in the hub's retirement order, or out of it;
    /// returns whether it was in it.
    pub(crate) fn set_in_order(&self, yes: bool) -> bool {
        self.in_order.swap(yes, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(epoch: &str, seq: u64) -> (u64, Bytes) {
        (
            seq,
            Bytes::from(format!("data: {seq}\nid: {epoch}-{seq}\n\n")),
        )
    }

    fn len(frames: &[(u64, Bytes)]) -> usize {
        frames.iter().map(|f| f.1.len()).sum()
    }

    /// The hub-wide total and the ring's count move together through what
    /// storage does to a ring: loading, appending, restarting after a gap
    /// or in another epoch, and retiring.
    #[test]
    fn the_hub_total_follows_prime_ingest_and_retire() {
        let counters = Arc::new(Counters::default());
        let total = || counters.retained_bytes.load(Ordering::Relaxed);
        let (a, b): (Epoch, Epoch) = ("a".parse().unwrap(), "b".parse().unwrap());
        let limits = RingLimits {
            max_events: 3,
            max_bytes: 1 << 20,
        };
        let t = Topic::new("t", a, limits, counters.clone(), false);
        let check = |want: &[(u64, Bytes)]| {
            assert_eq!(t.lock().bytes(), len(want));
            assert_eq!(t.retained_bytes(), len(want));
            assert_eq!(total(), len(want));
        };

        // Loading four events into a ring of three keeps the last three.
        t.prime(a, 5, (1..=4).map(|s| frame("a", s)).collect());
        check(&[frame("a", 2), frame("a", 3), frame("a", 4)]);
        // Known events are skipped, new ones evict the oldest.
        t.ingest(a, (4..=6).map(|s| frame("a", s)));
        check(&[frame("a", 4), frame("a", 5), frame("a", 6)]);
        // A gap starts the ring over.
        t.ingest(a, [frame("a", 10)]);
        check(&[frame("a", 10)]);
        // So does another epoch.
        t.ingest(b, [frame("b", 1), frame("b", 2)]);
        check(&[frame("b", 1), frame("b", 2)]);
        // Loading again replaces everything, here with nothing.
        t.prime(a, 7, Vec::new());
        check(&[]);
        t.ingest(a, [frame("a", 7)]);
        check(&[frame("a", 7)]);
        assert_eq!(t.retire(), Some(frame("a", 7).1.len()));
        check(&[]);
    }
}
