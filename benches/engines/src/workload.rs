//! ssehub-shaped commits: per-topic seq assignment, metadata in the same commit, retention.

use crate::store::{Commit, Meta, R, Store};
use crate::util::payload;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const EPOCH: &str = "1764600000000";

/// In-memory copy of the per-topic metadata (what ssehub keeps in RAM).
#[derive(Clone, Default)]
pub struct Topics {
    pub metas: BTreeMap<u64, Meta>,
    cursor: u64,
}

/// A commit planned from `Topics`, owning its payloads.
pub struct Planned {
    pub events: Vec<(u64, u64, Vec<u8>)>,
    pub trims: Vec<(u64, u64, u64)>,
    pub new_meta: Vec<(u64, Meta)>,
}

impl Planned {
    pub fn commit(&self, sync: bool) -> Commit<'_> {
        Commit {
            appends: self
                .events
                .iter()
                .map(|(t, s, p)| (*t, *s, p.as_slice()))
                .collect(),
            trims: self.trims.clone(),
            meta: self.new_meta.clone(),
            retire: Vec::new(),
            sync,
        }
    }
}

impl Topics {
    pub fn new(n: u64) -> Topics {
        Topics {
            metas: (0..n).map(|t| (t, Meta::new(EPOCH))).collect(),
            cursor: 0,
        }
    }

    pub fn from_store(s: &dyn Store) -> R<Topics> {
        Ok(Topics {
            metas: s.all_meta()?.into_iter().collect(),
            cursor: 0,
        })
    }

    pub fn retained(&self, t: u64) -> u64 {
        self.metas
            .get(&t)
            .map(|m| m.next_seq - m.first_seq)
            .unwrap_or(0)
    }

    /// `k` events spread round-robin over all topics.
    pub fn spread(&mut self, k: usize) -> Vec<(u64, usize)> {
        let n = self.metas.len() as u64;
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for _ in 0..k {
            *counts.entry(self.cursor % n).or_default() += 1;
            self.cursor += 1;
        }
        counts.into_iter().collect()
    }

    /// Plan appends of `spec` (topic, count); if `cap` is set and a touched topic then holds more
    /// than `cap` events, the oldest `step` events of that topic are trimmed in the same commit.
    pub fn plan(&self, spec: &[(u64, usize)], cap: Option<(u64, u64)>) -> Planned {
        let mut events = Vec::new();
        let mut trims = Vec::new();
        let mut new_meta = Vec::new();
        for &(t, k) in spec {
            let mut m = self
                .metas
                .get(&t)
                .cloned()
                .unwrap_or_else(|| Meta::new(EPOCH));
            for _ in 0..k {
                let p = payload(t, m.next_seq);
                m.bytes += p.len() as u64;
                events.push((t, m.next_seq, p));
                m.next_seq += 1;
            }
            if let Some((cap, step)) = cap {
                if m.next_seq - m.first_seq > cap {
                    let to = (m.first_seq + step).min(m.next_seq);
                    trims.push((t, m.first_seq, to));
                    // every payload has the same length here
                    m.bytes -= (to - m.first_seq) * payload(t, m.first_seq).len() as u64;
                    m.first_seq = to;
                }
            }
            new_meta.push((t, m));
        }
        Planned {
            events,
            trims,
            new_meta,
        }
    }

    pub fn apply(&mut self, p: &Planned) {
        for (t, m) in &p.new_meta {
            self.metas.insert(*t, m.clone());
        }
    }

    /// Plan + commit + apply; returns the time spent inside the engine's commit only.
    pub fn commit(
        &mut self,
        s: &mut dyn Store,
        spec: &[(u64, usize)],
        cap: Option<(u64, u64)>,
        sync: bool,
    ) -> R<(Duration, bool)> {
        let p = self.plan(spec, cap);
        let c = p.commit(sync);
        let t0 = Instant::now();
        s.commit(&c)?;
        let d = t0.elapsed();
        self.apply(&p);
        Ok((d, !p.trims.is_empty()))
    }
}

/// Load `total` events, topics interleaved as live traffic would be, in synced 1000-event commits
/// (synced because redb only reuses pages freed by durable commits: unsynced bulk commits would
/// leave a redb file twice as large as the live data).
pub fn bulk_load(
    s: &mut dyn Store,
    tp: &mut Topics,
    total: usize,
    cap: Option<(u64, u64)>,
) -> R<Duration> {
    let t0 = Instant::now();
    let mut left = total;
    while left > 0 {
        let k = left.min(1000);
        let spec = tp.spread(k);
        tp.commit(s, &spec, cap, true)?;
        left -= k;
    }
    // an empty synced commit: rewrite the metadata durably
    let meta: Vec<(u64, Meta)> = tp.metas.iter().map(|(t, m)| (*t, m.clone())).collect();
    s.commit(&Commit {
        meta,
        sync: true,
        ..Default::default()
    })?;
    Ok(t0.elapsed())
}
