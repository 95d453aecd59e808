//! tokio's `Notify`, the part the hub uses, on `loom`'s primitives.
//!
//! The semantics are tokio's for `notify_waiters`: every future created
//! (by `notified` or `notified_owned`) *before* a call completes, whether
//! or not it was polled yet; a future created after it waits for the next
//! call. No permit is stored, and there is no `notify_one` (the hub does
//! not use it).
//!
//! A counter of calls does it: a future remembers the count it saw when it
//! was created and is done once the count moved. Its waker is registered,
//! and the count compared, under the lock that `notify_waiters` bumps the
//! count under, so a call either finds the waker or the poll finds the new
//! count; wakers are called after the lock is released, like tokio's.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::task::{Context, Poll, Waker};

use loom::sync::Mutex;
use loom::sync::atomic::AtomicUsize;

pub(crate) struct Notify {
    /// Calls of `notify_waiters` so far; bumped under `waiters`' lock, read
    /// without it when a future is created (tokio reads its state with
    /// `SeqCst` there too).
    calls: AtomicUsize,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_key: usize,
    /// The wakers of futures that were polled and are not done, by key.
    wakers: Vec<(usize, Waker)>,
}

impl Notify {
    pub(crate) fn new() -> Self {
        Notify {
            calls: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// Completes every future created before this call.
    pub(crate) fn notify_waiters(&self) {
        let wakers = {
            let mut waiters = self.waiters.lock().unwrap();
            self.calls.fetch_add(1, SeqCst);
            std::mem::take(&mut waiters.wakers)
        };
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// A future that completes at the next `notify_waiters`.
    pub(crate) fn notified(&self) -> Notified<'_> {
        Notified(Waiting::new(self))
    }

    /// Like `notified`, holding the `Notify` itself.
    pub(crate) fn notified_owned(self: Arc<Self>) -> OwnedNotified {
        OwnedNotified(Waiting::new(self))
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify").finish_non_exhaustive()
    }
}

/// One future's registration; `N` is how it holds the `Notify`.
struct Waiting<N: Deref<Target = Notify>> {
    notify: N,
    /// The count of calls when the future was created.
    seen: usize,
    /// Its key among the registered wakers, once polled.
    key: Option<usize>,
}

impl<N: Deref<Target = Notify>> Waiting<N> {
    fn new(notify: N) -> Self {
        let seen = notify.calls.load(SeqCst);
        Waiting {
            notify,
            seen,
            key: None,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut waiters = self.notify.waiters.lock().unwrap();
        if self.notify.calls.load(SeqCst) != self.seen {
            // `notify_waiters` took the waker, if it was registered.
            self.key = None;
            return Poll::Ready(());
        }
        match self.key {
            Some(key) => {
                if let Some(slot) = waiters.wakers.iter_mut().find(|(k, _)| *k == key) {
                    slot.1.clone_from(cx.waker());
                }
            }
            None => {
                let key = waiters.next_key;
                waiters.next_key += 1;
                waiters.wakers.push((key, cx.waker().clone()));
                self.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl<N: Deref<Target = Notify>> Drop for Waiting<N> {
    fn drop(&mut self) {
        // A dropped future must not leave a waker behind: a stale wake-up
        // would re-poll its task and hide a wake-up that was really missed.
        if let Some(key) = self.key {
            let mut waiters = self.notify.waiters.lock().unwrap();
            waiters.wakers.retain(|(k, _)| *k != key);
        }
    }
}

/// The future of `Notify::notified`.
pub(crate) struct Notified<'a>(Waiting<&'a Notify>);

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().0.poll(cx)
    }
}

impl fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notified").finish_non_exhaustive()
    }
}

/// The future of `Notify::notified_owned`.
pub(crate) struct OwnedNotified(Waiting<Arc<Notify>>);

impl Future for OwnedNotified {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().0.poll(cx)
    }
}

impl fmt::Debug for OwnedNotified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedNotified").finish_non_exhaustive()
    }
}
