//! High-water marks: how far each topic's history had been committed, kept
//! outside the engine so that history the engine lost is noticed.
//!
//! The engine's journal recovery cannot tell a write torn by a crash (never
//! acknowledged: dropping it is right) from damage in the middle of the
//! journal (a failing disk, a hand edit): it drops both, and what follows,
//! without an error. Acknowledged events would be gone and their sequence
//! numbers given again, to other events. So after each commit, before
//! anything is delivered or answered, the writer appends the position it
//! committed for every topic the commit changed (its epoch and next
//! sequence number) to the file `marks` and syncs it. At startup, a topic
//! whose recovered history ends before its mark, or is of another epoch,
//! lost acknowledged events: the store gives it a new epoch (see
//! `DiskStore::open`), so no id names two events.
//!
//! The marks are synced beside the journal, not after it (see the writer's
//! `MarksThread`), so a crash between the two syncs leaves a topic's mark
//! one round ahead of its journal: that round was never answered. Each
//! mark therefore also records where the topic stood before the round
//! that wrote it; a history recovered exactly there lost nothing anyone
//! was told of, and keeps its epoch. (Damage that takes exactly the last
//! round's batch, and nothing before it, looks the same and is not
//! caught: a journal damaged in its middle loses everything after.)
//!
//! The file is a log of records, each `<len: u32 LE> <body> <check: the
//! first 8 bytes of the body's SHA-256>`, the body `<tag: 1 position, 2
//! gone, 3 position after a round> <topic len: u8> <topic> [<epoch len:
//! u8> <epoch> <next: u64 BE>]`, and for tag 3 then where the topic stood
//! before the round, `<epoch len: u8> <epoch> <next: u64 BE>`. A later
//! record of a topic replaces an earlier one. Reading stops
//! at the first record that does not check (a torn append: the marks only
//! lag behind the engine then, which hides nothing the engine recovered).
//! When the log has grown well beyond one record per topic, it is
//! rewritten with one (to a new file, synced, renamed over it).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::core::id::Epoch;

/// The file, in the data directory.
pub(super) const FILE: &str = "marks";

/// The log is rewritten when it is larger than this and than
/// [`REWRITE_FACTOR`] times its live records.
const REWRITE_MIN_BYTES: u64 = 1 << 20;
const REWRITE_FACTOR: u64 = 4;

const TAG_AT: u8 = 1;
const TAG_GONE: u8 = 2;
const TAG_ROUND: u8 = 3;

/// A topic's committed position: its epoch and next sequence number.
pub(super) type Mark = (Epoch, u64);

/// A topic's mark: its position after the last round that wrote it, and
/// before that round (`None`: it had none, or it is unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marked {
    pub(super) at: Mark,
    pub(super) before: Option<Mark>,
}

impl Marked {
    /// Whether a history recovered at `recovered` has every event this
    /// mark says was answered: it reaches the mark, or stands exactly
    /// where the mark's round started (a round cut short by a crash
    /// before it was answered).
    pub(super) fn kept_by(&self, recovered: Mark) -> bool {
        let (epoch, next) = self.at;
        (recovered.0 == epoch && recovered.1 >= next) || self.before == Some(recovered)
    }
}

/// The marks file, open for appending.
pub(super) struct Marks {
    path: PathBuf,
    file: File,
    /// The bytes of the log.
    len: u64,
    /// The last mark of every topic that has one.
    live: HashMap<Box<str>, Marked>,
    /// A write failed: the next one rewrites the whole file.
    broken: bool,
}

impl Marks {
    /// Reads the marks in `dir` (none if there is no file yet), and opens
    /// the file for appending.
    pub(super) fn open(dir: &Path) -> io::Result<Marks> {
        let path = dir.join(FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let (live, good) = parse(&bytes);
        if good < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                at = good,
                "the marks file ends with a record that does not check: ignored"
            );
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // What does not check is cut, so that appends follow good records.
        file.set_len(good as u64)?;
        Ok(Marks {
            path,
            file,
            len: good as u64,
            live,
            broken: false,
        })
    }

    /// The last mark of each topic.
    pub(super) fn get(&self) -> &HashMap<Box<str>, Marked> {
        &self.live
    }

    /// Appends (and syncs) the positions a commit wrote: `None` for a
    /// topic whose history it deleted.
    pub(super) fn record<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (&'a str, Option<Marked>)>,
    ) -> io::Result<()> {
        let mut buf = Vec::new();
        for (topic, mark) in changes {
            encode(&mut buf, topic, mark);
            match mark {
                Some(m) => {
                    self.live.insert(topic.into(), m);
                }
                None => {
                    self.live.remove(topic);
                }
            }
        }
        if buf.is_empty() {
            return Ok(());
        }
        let rewrite = self.broken
            || (self.len > REWRITE_MIN_BYTES && self.len > REWRITE_FACTOR * self.live_bytes());
        let result = if rewrite {
            self.rewrite()
        } else {
            self.file
                .write_all(&buf)
                .and_then(|()| self.file.sync_data())
                .map(|()| self.len += buf.len() as u64)
        };
        self.broken = result.is_err();
        result
    }

    /// Replaces the file with one record per topic of `marks`.
    pub(super) fn reset(&mut self, marks: HashMap<Box<str>, Mark>) -> io::Result<()> {
        self.live = marks
            .into_iter()
            .map(|(t, at)| (t, Marked { at, before: None }))
            .collect();
        let result = self.rewrite();
        self.broken = result.is_err();
        result
    }

    /// Bytes of one record per live topic.
    fn live_bytes(&self) -> u64 {
        self.live
            .iter()
            .map(|(t, m)| {
                let before = m.before.map_or(0, |(e, _)| 1 + e.as_str().len() + 8);
                (4 + 3 + t.len() + m.at.0.as_str().len() + 8 + 8 + before) as u64
            })
            .sum()
    }

    /// Writes the live marks to a new file, syncs it and renames it over
    /// the log (then syncs the directory).
    fn rewrite(&mut self) -> io::Result<()> {
        let mut buf = Vec::new();
        for (topic, mark) in &self.live {
            encode(&mut buf, topic, Some(*mark));
        }
        let tmp = self.path.with_extension("new");
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = std::fs::OpenOptions::new().append(true).open(&self.path)?;
        self.len = buf.len() as u64;
        Ok(())
    }
}

fn check(body: &[u8]) -> [u8; 8] {
    let digest = Sha256::digest(body);
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn encode(buf: &mut Vec<u8>, topic: &str, mark: Option<Marked>) {
    let mut body = Vec::with_capacity(3 + topic.len() + 64);
    body.push(match mark {
        None => TAG_GONE,
        Some(Marked { before: None, .. }) => TAG_AT,
        Some(Marked {
            before: Some(_), ..
        }) => TAG_ROUND,
    });
    body.push(topic.len() as u8);
    body.extend_from_slice(topic.as_bytes());
    let positions = mark
        .iter()
        .flat_map(|m| std::iter::once(m.at).chain(m.before));
    for (epoch, next) in positions {
        body.push(epoch.as_str().len() as u8);
        body.extend_from_slice(epoch.as_str().as_bytes());
        body.extend_from_slice(&next.to_be_bytes());
    }
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    buf.extend_from_slice(&check(&body));
}

/// The marks of a log, and how many of its bytes are good records.
fn parse(bytes: &[u8]) -> (HashMap<Box<str>, Marked>, usize) {
    let mut live = HashMap::new();
    let mut at = 0;
    while let Some((topic, mark, len)) = record(&bytes[at..]) {
        match mark {
            Some(m) => {
                live.insert(topic, m);
            }
            None => {
                live.remove(&topic);
            }
        }
        at += len;
    }
    (live, at)
}

/// The record at the start of `bytes`, and its length.
fn record(bytes: &[u8]) -> Option<(Box<str>, Option<Marked>, usize)> {
    let (len, rest) = bytes.split_at_checked(4)?;
    let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    let (body, rest) = rest.split_at_checked(len)?;
    if rest.get(..8)? != check(body) {
        return None;
    }
    let (&tag, body) = body.split_first()?;
    let (&topic_len, body) = body.split_first()?;
    let (topic, body) = body.split_at_checked(topic_len as usize)?;
    let topic: Box<str> = std::str::from_utf8(topic).ok()?.into();
    let mark = match tag {
        TAG_GONE if body.is_empty() => None,
        TAG_AT => {
            let (at, rest) = position(body)?;
            rest.is_empty().then_some(())?;
            Some(Marked { at, before: None })
        }
        TAG_ROUND => {
            let (at, rest) = position(body)?;
            let (before, rest) = position(rest)?;
            rest.is_empty().then_some(())?;
            Some(Marked {
                at,
                before: Some(before),
            })
        }
        _ => return None,
    };
    Some((topic, mark, 4 + len + 8))
}

/// A position `<epoch len> <epoch> <next>` at the start of `body`, and
/// what follows it.
fn position(body: &[u8]) -> Option<(Mark, &[u8])> {
    let (&epoch_len, body) = body.split_first()?;
    let (epoch, body) = body.split_at_checked(epoch_len as usize)?;
    let (next, rest) = body.split_at_checked(8)?;
    let epoch: Epoch = std::str::from_utf8(epoch).ok()?.parse().ok()?;
    Some(((epoch, u64::from_be_bytes(next.try_into().ok()?)), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_survive_reopening_and_a_torn_tail_is_cut() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b): (Epoch, Epoch) = ("aa".parse().unwrap(), "bb".parse().unwrap());
        let mut m = Marks::open(tmp.path()).unwrap();
        assert!(m.get().is_empty());
        m.record([("x", Some(at(a, 5))), ("y", Some(at(a, 2)))])
            .unwrap();
        m.record([("x", Some(at(b, 1))), ("y", None)]).unwrap();
        drop(m);
        let mut m = Marks::open(tmp.path()).unwrap();
        assert_eq!(m.get().len(), 1);
        assert_eq!(m.get()["x"], at(b, 1));
        m.record([("z", Some(at(a, 9)))]).unwrap();
        drop(m);
        // A torn last append: ignored, and cut, so later appends are read.
        let path = tmp.path().join(FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let mut m = Marks::open(tmp.path()).unwrap();
        assert_eq!(m.get().len(), 1, "z's record is torn");
        let round = Marked {
            at: (a, 3),
            before: Some((b, 7)),
        };
        m.record([("w", Some(round))]).unwrap();
        drop(m);
        let m = Marks::open(tmp.path()).unwrap();
        assert_eq!(m.get()["w"], round);
        assert_eq!(m.get()["x"], at(b, 1));
    }

    #[test]
    fn a_flipped_byte_fails_the_check() {
        let mut buf = Vec::new();
        let e: Epoch = "ab".parse().unwrap();
        let round = Marked {
            at: (e, 42),
            before: Some((e, 40)),
        };
        encode(&mut buf, "topic", Some(round));
        assert_eq!(record(&buf).map(|r| r.2), Some(buf.len()));
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            let read = record(&bad).map(|r| (r.0, r.1));
            assert!(read.is_none(), "byte {i}: {read:?}");
        }
    }

    #[test]
    fn the_log_is_rewritten_when_it_outgrows_its_topics() {
        let tmp = tempfile::tempdir().unwrap();
        let e: Epoch = "ab".parse().unwrap();
        let mut m = Marks::open(tmp.path()).unwrap();
        // 1,000 records an append (one sync each), 2 MB in all.
        for round in 0..80u64 {
            m.record((0..1000).map(|i| ("t", Some(at(e, round * 1000 + i)))))
                .unwrap();
        }
        let len = std::fs::metadata(tmp.path().join(FILE)).unwrap().len();
        assert!(len <= REWRITE_MIN_BYTES + 30_000, "{len}");
        drop(m);
        assert_eq!(Marks::open(tmp.path()).unwrap().get()["t"], at(e, 79_999));
    }

    fn at(epoch: Epoch, next: u64) -> Marked {
        Marked {
            at: (epoch, next),
            before: None,
        }
    }

    /// A history that reaches its mark, or stands exactly where the mark's
    /// round started (a crash between the marks' sync and the journal's),
    /// lost nothing answered; anything else did.
    #[test]
    fn a_round_cut_short_by_a_crash_is_not_a_loss() {
        let (a, b): (Epoch, Epoch) = ("aa".parse().unwrap(), "bb".parse().unwrap());
        let round = Marked {
            at: (a, 10),
            before: Some((a, 7)),
        };
        assert!(round.kept_by((a, 10)));
        assert!(round.kept_by((a, 12)));
        assert!(round.kept_by((a, 7)), "the round never reached the journal");
        assert!(!round.kept_by((a, 6)), "an answered round was lost");
        assert!(!round.kept_by((a, 8)), "a batch is whole or absent");
        assert!(!round.kept_by((b, 10)));
        // A stream created again on its topic starts lower.
        let reset = Marked {
            at: (a, 3),
            before: Some((a, 50)),
        };
        assert!(reset.kept_by((a, 3)) && reset.kept_by((a, 50)));
        assert!(!at(a, 10).kept_by((a, 7)), "no round known: strict");
    }
}
