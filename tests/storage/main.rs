//! History kept outside the process: the disk store in process and behind
//! the binary (restarts, crashes, damage, a full disk, retention, `201`
//! meaning synced), and several nodes sharing topics through Redis.
//!
//! Needs what `.ci/run` installs: `strace` (`synced`), `redis-server`
//! (`redis_nodes`), and root to mount a small tmpfs (`durable`'s full disk).
//! Modules that run the binary need the `cli` feature.

#[path = "../support/mod.rs"]
mod support;

#[cfg(feature = "disk")]
mod disk;
#[cfg(feature = "cli")]
mod durable;
#[cfg(feature = "redis")]
mod redis_nodes;
#[cfg(feature = "cli")]
mod retention;
#[cfg(feature = "cli")]
mod synced;
