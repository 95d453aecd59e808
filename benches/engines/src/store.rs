//! One interface over both engines, shaped like what ssehub's `--data-dir` store does:
//! events keyed by (topic id, seq), per-topic metadata updated in the same commit.
//!
//! Layout (identical for both engines):
//! - `events`: key = topic (u64 BE) ++ seq (u64 BE) (fjall) / `(u64, u64)` (redb), value = payload
//! - `meta`:   key = topic (u64), value = encoded [`Meta`]

use std::path::{Path, PathBuf};

pub type R<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Cache given to both engines (fjall's default is 32 MiB, redb's 1 GiB; equalised here).
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Fjall,
    /// redb with default commits (1-phase commit, full repair after a crash)
    Redb,
    /// redb with `set_quick_repair(true)` on every commit (2-phase commit, instant recovery)
    RedbQr,
}

impl Engine {
    pub fn name(self) -> &'static str {
        match self {
            Engine::Fjall => "fjall",
            Engine::Redb => "redb",
            Engine::RedbQr => "redb-qr",
        }
    }
    pub fn parse(s: &str) -> Option<Engine> {
        match s {
            "fjall" => Some(Engine::Fjall),
            "redb" => Some(Engine::Redb),
            "redb-qr" | "redbqr" => Some(Engine::RedbQr),
            _ => None,
        }
    }
    /// Both redb variants use the same on-disk format.
    pub fn family(self) -> &'static str {
        match self {
            Engine::Fjall => "fjall",
            Engine::Redb | Engine::RedbQr => "redb",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    pub epoch: String,
    /// First retained seq.
    pub first_seq: u64,
    /// Next seq to assign (events are first_seq..next_seq).
    pub next_seq: u64,
    /// Payload bytes retained.
    pub bytes: u64,
}

impl Meta {
    pub fn new(epoch: &str) -> Meta {
        Meta {
            epoch: epoch.to_string(),
            first_seq: 1,
            next_seq: 1,
            bytes: 0,
        }
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(25 + self.epoch.len());
        v.push(self.epoch.len() as u8);
        v.extend_from_slice(self.epoch.as_bytes());
        v.extend_from_slice(&self.first_seq.to_le_bytes());
        v.extend_from_slice(&self.next_seq.to_le_bytes());
        v.extend_from_slice(&self.bytes.to_le_bytes());
        v
    }
    pub fn decode(b: &[u8]) -> Option<Meta> {
        let n = *b.first()? as usize;
        if b.len() != 1 + n + 24 {
            return None;
        }
        let epoch = std::str::from_utf8(&b[1..1 + n]).ok()?.to_string();
        let u =
            |i: usize| u64::from_le_bytes(b[1 + n + i * 8..1 + n + i * 8 + 8].try_into().unwrap());
        Some(Meta {
            epoch,
            first_seq: u(0),
            next_seq: u(1),
            bytes: u(2),
        })
    }
}

/// One group commit.
#[derive(Default)]
pub struct Commit<'a> {
    pub appends: Vec<(u64, u64, &'a [u8])>,
    /// (topic, from, to_exclusive): delete events from..to.
    pub trims: Vec<(u64, u64, u64)>,
    pub meta: Vec<(u64, Meta)>,
    /// Topics whose events and metadata are removed entirely: (topic, first, next).
    pub retire: Vec<(u64, u64, u64)>,
    /// fsync before returning (fjall: PersistMode::SyncAll; redb: Durability::Immediate).
    pub sync: bool,
}

pub trait Store: Send {
    fn commit(&mut self, c: &Commit) -> R<()>;
    /// Read up to `max` events of `topic` with seq >= `from` (one bounded chunk, own snapshot).
    fn read_chunk(&self, topic: u64, from: u64, max: usize, out: &mut Vec<(u64, Vec<u8>)>)
    -> R<()>;
    fn all_meta(&self) -> R<Vec<(u64, Meta)>>;
    /// Make the store's steady state explicit (fjall: flush memtables to tables; redb: nothing).
    fn flush(&self) -> R<()>;
    /// Engine specific state, for the report (file/table counts...).
    fn info(&self) -> String;
    fn close(self: Box<Self>) -> R<()>;
}

pub fn open(engine: Engine, dir: &Path) -> R<Box<dyn Store>> {
    std::fs::create_dir_all(dir)?;
    Ok(match engine {
        Engine::Fjall => Box::new(FjallStore::open(dir)?),
        Engine::Redb | Engine::RedbQr => Box::new(RedbStore::open(dir, engine == Engine::RedbQr)?),
    })
}

/// The file a redb store lives in (a directory is used for both engines).
pub fn redb_file(dir: &Path) -> PathBuf {
    dir.join("events.redb")
}

fn ekey(topic: u64, seq: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&topic.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

// ---------------------------------------------------------------- fjall

pub struct FjallStore {
    db: fjall::Database,
    events: fjall::Keyspace,
    meta: fjall::Keyspace,
}

impl FjallStore {
    pub fn open(dir: &Path) -> R<FjallStore> {
        let mut b = fjall::Database::builder(dir).cache_size(CACHE_BYTES);
        // optional tuning, e.g. to stop the small `meta` keyspace from pinning old journals
        if let Some(mb) = std::env::var("ENGINES_FJALL_MAX_JOURNAL_MB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            b = b.max_journaling_size(mb << 20);
        }
        let db = b.open()?;
        let events = db.keyspace("events", fjall::KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", fjall::KeyspaceCreateOptions::default)?;
        Ok(FjallStore { db, events, meta })
    }
}

impl Store for FjallStore {
    fn commit(&mut self, c: &Commit) -> R<()> {
        let mut b = self.db.batch().durability(Some(if c.sync {
            fjall::PersistMode::SyncAll
        } else {
            fjall::PersistMode::Buffer
        }));
        for &(t, s, p) in &c.appends {
            b.insert(&self.events, ekey(t, s), p);
        }
        // No range delete in fjall 3: one point tombstone per trimmed event.
        for &(t, from, to) in c.trims.iter().chain(c.retire.iter()) {
            for s in from..to {
                b.remove(&self.events, ekey(t, s));
            }
        }
        for (t, m) in &c.meta {
            b.insert(&self.meta, t.to_be_bytes(), m.encode());
        }
        for &(t, _, _) in &c.retire {
            b.remove(&self.meta, t.to_be_bytes());
        }
        b.commit()?;
        Ok(())
    }

    fn read_chunk(
        &self,
        topic: u64,
        from: u64,
        max: usize,
        out: &mut Vec<(u64, Vec<u8>)>,
    ) -> R<()> {
        for kv in self
            .events
            .range(ekey(topic, from)..=ekey(topic, u64::MAX))
            .take(max)
        {
            let (k, v) = kv.into_inner()?;
            let seq = u64::from_be_bytes(k[8..16].try_into()?);
            out.push((seq, v.to_vec()));
        }
        Ok(())
    }

    fn all_meta(&self) -> R<Vec<(u64, Meta)>> {
        let mut v = Vec::new();
        for kv in self.meta.iter() {
            let (k, val) = kv.into_inner()?;
            let t = u64::from_be_bytes(k[..].try_into()?);
            v.push((t, Meta::decode(&val).ok_or("undecodable meta record")?));
        }
        Ok(v)
    }

    fn flush(&self) -> R<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        self.events.rotate_memtable_and_wait()?;
        self.meta.rotate_memtable_and_wait()?;
        Ok(())
    }

    fn info(&self) -> String {
        format!(
            "journals={} events_tables={} (L0={}) meta_tables={}",
            self.db.journal_count(),
            self.events.table_count(),
            self.events.l0_table_count(),
            self.meta.table_count()
        )
    }

    fn close(self: Box<Self>) -> R<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}

// ---------------------------------------------------------------- redb

const EVENTS: redb::TableDefinition<(u64, u64), &[u8]> = redb::TableDefinition::new("events");
const META: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("meta");

pub struct RedbStore {
    db: Option<redb::Database>,
    quick_repair: bool,
}

impl RedbStore {
    pub fn open(dir: &Path, quick_repair: bool) -> R<RedbStore> {
        let mut b = redb::Builder::new();
        b.set_cache_size(CACHE_BYTES as usize);
        let db = b.create(redb_file(dir))?;
        // make sure both tables exist
        let mut w = db.begin_write()?;
        w.set_quick_repair(quick_repair);
        w.open_table(EVENTS)?;
        w.open_table(META)?;
        w.commit()?;
        Ok(RedbStore {
            db: Some(db),
            quick_repair,
        })
    }
    fn db(&self) -> &redb::Database {
        self.db.as_ref().unwrap()
    }
}

impl Store for RedbStore {
    fn commit(&mut self, c: &Commit) -> R<()> {
        let mut w = self.db().begin_write()?;
        w.set_durability(if c.sync {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })?;
        w.set_quick_repair(self.quick_repair);
        {
            let mut ev = w.open_table(EVENTS)?;
            for &(t, s, p) in &c.appends {
                ev.insert((t, s), p)?;
            }
            for &(t, from, to) in c.trims.iter().chain(c.retire.iter()) {
                // Range delete: walks the range once, no per-key lookups.
                ev.retain_in((t, from)..(t, to), |_, _| false)?;
            }
            let mut me = w.open_table(META)?;
            for (t, m) in &c.meta {
                me.insert(*t, m.encode().as_slice())?;
            }
            for &(t, _, _) in &c.retire {
                me.remove(t)?;
            }
        }
        w.commit()?;
        Ok(())
    }

    fn read_chunk(
        &self,
        topic: u64,
        from: u64,
        max: usize,
        out: &mut Vec<(u64, Vec<u8>)>,
    ) -> R<()> {
        use redb::ReadableDatabase;
        let r = self.db().begin_read()?;
        let ev = r.open_table(EVENTS)?;
        for kv in ev.range((topic, from)..=(topic, u64::MAX))?.take(max) {
            let (k, v) = kv?;
            out.push((k.value().1, v.value().to_vec()));
        }
        Ok(())
    }

    fn all_meta(&self) -> R<Vec<(u64, Meta)>> {
        use redb::{ReadableDatabase, ReadableTable};
        let r = self.db().begin_read()?;
        let me = r.open_table(META)?;
        let mut v = Vec::new();
        for kv in me.iter()? {
            let (k, val) = kv?;
            v.push((
                k.value(),
                Meta::decode(val.value()).ok_or("undecodable meta record")?,
            ));
        }
        Ok(v)
    }

    fn flush(&self) -> R<()> {
        Ok(())
    }

    fn info(&self) -> String {
        match self
            .db()
            .begin_write()
            .map_err(|e| e.to_string())
            .and_then(|w| {
                let s = w.stats().map_err(|e| e.to_string())?;
                let _ = w.abort();
                Ok(s)
            }) {
            Ok(s) => format!(
                "tree_height={} allocated_pages={} stored={}MB fragmented={}MB",
                s.tree_height(),
                s.allocated_pages(),
                s.stored_bytes() >> 20,
                s.fragmented_bytes() >> 20
            ),
            Err(e) => format!("stats error: {e}"),
        }
    }

    fn close(mut self: Box<Self>) -> R<()> {
        if let Some(db) = self.db.take() {
            db.close()?;
        }
        Ok(())
    }
}
