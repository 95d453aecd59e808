//! A topic: one ring behind a lock, and the wake-up of its subscribers.
//!
//! Publishing appends under the lock and wakes every waiting subscriber
//! after releasing it (`Notify::notify_waiters` wakes in batches, outside its
//! own lock). Subscribers never get a per-subscriber queue: each keeps only a
//! cursor and reads the shared ring when woken, so a slow subscriber costs a
//! cursor, not a backlog.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::event::Encoded;
use crate::id::{Epoch, EventId};
use crate::ring::{Read, Ring, RingLimits};

/// Counters shared by every topic of a hub.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) subscribers: AtomicUsize,
    pub(crate) retained_bytes: AtomicUsize,
}

#[derive(Debug)]
pub(crate) struct Topic {
    name: Box<str>,
    ring: Mutex<Ring>,
    notify: Arc<Notify>,
    closed: AtomicBool,
    subscribers: AtomicUsize,
    counters: Arc<Counters>,
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

/// The topic no longer accepts events: the hub was closed.
#[derive(Debug)]
pub(crate) struct Closed;

impl Topic {
    pub(crate) fn new(
        name: &str,
        epoch: Epoch,
        limits: RingLimits,
        counters: Arc<Counters>,
    ) -> Self {
        Topic {
            name: name.into(),
            ring: Mutex::new(Ring::new(epoch, limits)),
            notify: Arc::new(Notify::new()),
            closed: AtomicBool::new(false),
            subscribers: AtomicUsize::new(0),
            counters,
        }
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
    pub(crate) fn publish(
        &self,
        events: impl IntoIterator<Item = Encoded>,
    ) -> Result<Published, Closed> {
        let (published, added, evicted) = {
            let mut ring = self.lock();
            if self.is_closed() {
                return Err(Closed);
            }
            let epoch = ring.epoch();
            let first = ring.next_seq();
            let (mut added, mut evicted) = (0, 0);
            for enc in events {
                let frame = enc.finish(&EventId::new(epoch, ring.next_seq()));
                added += frame.len();
                evicted += ring.push(frame);
            }
            let count = ring.next_seq() - first;
            (
                Published {
                    epoch,
                    first,
                    count,
                },
                added,
                evicted,
            )
        };
        let c = &self.counters;
        c.published.fetch_add(published.count, Ordering::Relaxed);
        c.retained_bytes.fetch_add(added, Ordering::Relaxed);
        c.retained_bytes.fetch_sub(evicted, Ordering::Relaxed);
        if published.count > 0 {
            self.notify.notify_waiters();
        }
        Ok(published)
    }

    /// Reads what is ready for a subscriber at `cursor` of `epoch`.
    pub(crate) fn read(&self, cursor: u64, max_events: u64, max_bytes: usize) -> Read {
        self.lock().read(cursor, max_events, max_bytes)
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
        // Taken under the lock so no publish is half done when it flips.
        let _ring = self.lock();
        self.closed.store(true, Ordering::Release);
        drop(_ring);
        self.notify.notify_waiters();
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }

    pub(crate) fn add_subscriber(&self) {
        self.subscribers.fetch_add(1, Ordering::Relaxed);
        self.counters.subscribers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove_subscriber(&self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
        self.counters.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}
