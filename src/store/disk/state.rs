//! What the writer thread (`writer.rs`), the store's handles and its
//! readers (`mod.rs`) share: the engine's handles, the index of topics,
//! the counters; and two helpers both sides use.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use super::layout::Meta;
use super::marks::{Marked, Marks};
use super::retention::Retention;
use crate::core::durable::StreamMeta;
use crate::store::{ErrorKind, Sink};

/// What the writer thread, the store's handles and readers share.
pub(super) struct State {
    pub(super) dir: PathBuf,
    pub(super) retention: Retention,
    /// `None` while the engine is being reopened after a failed write.
    pub(super) engine: RwLock<Option<Engine>>,
    /// Every topic's history as committed (plus new topics not yet
    /// written): the writer assigns sequence numbers from here.
    pub(super) index: Mutex<HashMap<Box<str>, Entry>>,
    /// Bytes of the events of all topics.
    pub(super) total_bytes: AtomicU64,
    /// Commits that synced appends (see [`DiskStore::syncs`]).
    pub(super) syncs: AtomicU64,
    /// The Durable Streams as committed: the writer decides their writes
    /// on these (see `store::streams`).
    pub(super) streams: Mutex<HashMap<Box<str>, StreamMeta>>,
    pub(super) sink: Mutex<Option<Arc<dyn Sink>>>,
    /// Where each topic's history was last committed, outside the engine
    /// (see `marks`): written by the writer after each commit.
    pub(super) marks: Mutex<Marks>,
    /// Held for the life of the store: another process cannot open the
    /// directory meanwhile.
    pub(super) _lock: File,
}

pub(super) struct Entry {
    pub(super) meta: Meta,
    /// The first retained sequence number, shared with readers.
    pub(super) first: Arc<AtomicU64>,
}

/// The engine's handles.
#[derive(Clone)]
pub(super) struct Engine {
    pub(super) db: fjall::Database,
    pub(super) events: fjall::Keyspace,
    pub(super) meta: fjall::Keyspace,
    /// Idempotency keys by key (see `layout`).
    pub(super) keys: fjall::Keyspace,
    /// Idempotency keys by the last event they published.
    pub(super) key_order: fjall::Keyspace,
    /// Durable Streams' records, by topic.
    pub(super) streams: fjall::Keyspace,
    /// Their producers' records.
    pub(super) producers: fjall::Keyspace,
}

/// The journal is rotated (and old journals dropped once flushed) at this
/// size: it bounds both the journal's share of the directory and the work
/// of replaying it at startup.
const MAX_JOURNAL_BYTES: u64 = 64 << 20;

/// The engine's block cache.
const CACHE_BYTES: u64 = 64 << 20;

impl Engine {
    pub(super) fn open(dir: &Path) -> Result<Engine, fjall::Error> {
        let db = fjall::Database::builder(dir.join("db"))
            .cache_size(CACHE_BYTES)
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()?;
        let events = db.keyspace("events", fjall::KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
        let keys = db.keyspace("keys", fjall::KeyspaceCreateOptions::default)?;
        let key_order = db.keyspace("key_order", fjall::KeyspaceCreateOptions::default)?;
        let streams = db.keyspace("streams", fjall::KeyspaceCreateOptions::default)?;
        let producers = db.keyspace("producers", fjall::KeyspaceCreateOptions::default)?;
        Ok(Engine {
            db,
            events,
            meta,
            keys,
            key_order,
            streams,
            producers,
        })
    }
}

impl State {
    pub(super) fn index(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, StreamMeta>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn engine(&self) -> Option<Engine> {
        self.engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records (and syncs) the positions a commit wrote, before anything
    /// of it is delivered or answered. A failure is logged: the events are
    /// committed, only a later loss of them would go unnoticed; the next
    /// commit rewrites the whole file.
    pub(super) fn mark(&self, changes: &[(Box<str>, Option<Marked>)]) {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = marks.record(changes.iter().map(|(t, m)| (&**t, *m))) {
            tracing::error!(error = %e, dir = %self.dir.display(), "cannot write the marks");
        }
    }

    pub(super) fn sink(&self) -> Option<Arc<dyn Sink>> {
        self.sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(super) use crate::core::now_ms;

/// What kind of trouble an engine error is.
pub(super) fn kind_of(e: &fjall::Error) -> ErrorKind {
    fn is_full(e: &std::io::Error) -> bool {
        e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
    }
    match e {
        fjall::Error::Io(io) if is_full(io) => ErrorKind::Full,
        fjall::Error::Storage(fjall::LsmError::Io(io)) if is_full(io) => ErrorKind::Full,
        fjall::Error::Io(_) | fjall::Error::Poisoned | fjall::Error::Locked => {
            ErrorKind::Unavailable
        }
        fjall::Error::Storage(fjall::LsmError::Io(_)) => ErrorKind::Unavailable,
        _ => ErrorKind::Corrupt,
    }
}
