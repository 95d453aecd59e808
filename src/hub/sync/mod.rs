//! The synchronization primitives of the hub, in one place, so that the
//! `loom` models can swap them (after tokio's `src/loom/`).
//!
//! In every build but the models these are plain re-exports of `std` and
//! tokio: no wrapper, no indirection, the same code as naming them
//! directly. The lib's unit tests built with `--cfg ssehub_loom` get
//! `loom`'s mutexes and atomics instead, and a [`Notify`] built on them (see
//! `notify.rs`), so `loom` can run every interleaving of the hub's locks,
//! atomics and wake-ups (`src/hub/testing/loom.rs`).
//!
//! `Arc` stays `std`'s in both: `loom`'s has no `Weak` (the hub's store sink
//! holds one) and cannot be a method receiver (`notified_owned(self:
//! Arc<Self>)`), and a reference count is no part of the wake-up protocol.

pub(crate) use std::sync::Arc;

#[cfg(not(all(test, ssehub_loom)))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
#[cfg(not(all(test, ssehub_loom)))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(all(test, ssehub_loom)))]
pub(crate) use tokio::sync::Notify;
#[cfg(not(all(test, ssehub_loom)))]
pub(crate) use tokio::sync::futures::OwnedNotified;

#[cfg(all(test, ssehub_loom))]
mod notify;

#[cfg(all(test, ssehub_loom))]
pub(crate) use self::notify::{Notify, OwnedNotified};
#[cfg(all(test, ssehub_loom))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
#[cfg(all(test, ssehub_loom))]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
