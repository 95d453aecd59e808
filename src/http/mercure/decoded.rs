//! Stored updates decoded once for all subscribers: their frame, and
//! their matches against each template selector, computed once per update
//! however many subscribers share the selector (a hub with 10,000
//! subscribers on one template runs one match per update).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::core::mercure::selector::{MAX_SELECTOR_LEN, Selector};
use crate::core::mercure::update::Update;

/// Selectors kept compiled for the subscribers that use them next.
const SELECTORS: usize = 10_000;

/// Selectors compiled once for every subscriber that uses them (a
/// template's regex is the largest part of an idle subscriber).
#[derive(Default)]
pub(crate) struct SelectorCache(Mutex<HashMap<Box<str>, Selector>>);

impl SelectorCache {
    /// `text` compiled (see `Selector::new`); shared with the others that
    /// asked for it while it is cached.
    pub(crate) fn get(&self, text: &str) -> Option<Selector> {
        if text.len() > MAX_SELECTOR_LEN {
            return None;
        }
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = map.get(text) {
            return Some(s.clone());
        }
        let s = Selector::new(text)?;
        if map.len() >= SELECTORS {
            // Bounded: the oldest entries are not known, so start again.
            map.clear();
        }
        map.insert(text.into(), s.clone());
        Some(s)
    }
}

/// Updates kept decoded for the subscribers that read them next: at most
/// this many, and at most [`CACHE_BYTES`] of frames.
const CACHE: usize = 4096;

/// The most bytes of frames the decoded updates keep.
const CACHE_BYTES: usize = 64 << 20;

/// A stored update, decoded once for every subscriber: what filtering
/// needs, and the frame it sends (its data is only in the frame).
pub(crate) struct Decoded {
    pub(super) topics: Vec<String>,
    pub(super) private: bool,
    pub(super) frame: Bytes,
    /// Whether a template selector matches one of the topics, by
    /// selector: computed once per update.
    matches: Mutex<HashMap<Box<str>, bool>>,
}

impl Decoded {
    fn new(update: Update) -> Self {
        Decoded {
            frame: update.frame(),
            topics: update.topics,
            private: update.private,
            matches: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one of `selectors` matches one of the update's topics.
    pub(super) fn matches_any(&self, selectors: &[Selector]) -> bool {
        selectors.iter().any(|s| {
            if !s.is_pattern() {
                return self.topics.iter().any(|t| s.matches(t));
            }
            let mut memo = self.matches.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(&m) = memo.get(s.as_str()) {
                return m;
            }
            let m = self.topics.iter().any(|t| s.matches(t));
            memo.insert(s.as_str().into(), m);
            m
        })
    }
}

/// The updates decoded lately, by their native id (`epoch-seq`).
#[derive(Default)]
pub(crate) struct DecodeCache(Mutex<Recent>);

/// Decoded updates by native id, and their ids oldest first.
#[derive(Default)]
struct Recent {
    by_id: HashMap<Bytes, Arc<Decoded>>,
    order: VecDeque<Bytes>,
    /// The bytes of the frames in `by_id`.
    bytes: usize,
}

impl DecodeCache {
    /// The update of the event with native id `id` and JSON `data`.
    pub(super) fn get(&self, id: &[u8], data: &[u8]) -> Option<Arc<Decoded>> {
        if let Some(d) = self.lock().by_id.get(id) {
            return Some(d.clone());
        }
        let decoded = Arc::new(Decoded::new(Update::from_json(data)?));
        // The key is copied: a slice would keep the whole stored frame.
        let id = Bytes::copy_from_slice(id);
        let mut recent = self.lock();
        if recent.by_id.insert(id.clone(), decoded.clone()).is_none() {
            recent.bytes += decoded.frame.len();
            recent.order.push_back(id);
            while recent.order.len() > CACHE || recent.bytes > CACHE_BYTES {
                let Some(old) = recent.order.pop_front() else {
                    break;
                };
                if let Some(gone) = recent.by_id.remove(&old) {
                    recent.bytes -= gone.frame.len();
                }
            }
        }
        Some(decoded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(id: &str, data_len: usize) -> String {
        Update {
            id: id.into(),
            topics: vec!["t".into()],
            private: false,
            event_type: None,
            retry: None,
            data: "x".repeat(data_len),
        }
        .to_json()
    }

    #[test]
    fn the_cache_is_bounded_by_count_and_by_bytes() {
        let cache = DecodeCache::default();
        for i in 0..100 {
            let id = format!("e-{i}");
            let d = cache
                .get(id.as_bytes(), json(&id, 1 << 20).as_bytes())
                .unwrap();
            assert!(d.frame.len() > 1 << 20);
        }
        let recent = cache.lock();
        assert!(recent.bytes <= CACHE_BYTES, "{}", recent.bytes);
        assert!(recent.by_id.len() < 64, "{}", recent.by_id.len());
        assert_eq!(recent.by_id.len(), recent.order.len());
        let held: usize = recent.by_id.values().map(|d| d.frame.len()).sum();
        assert_eq!(held, recent.bytes);
        drop(recent);
        for i in 0..(CACHE + 10) {
            let id = format!("s-{i}");
            cache.get(id.as_bytes(), json(&id, 1).as_bytes()).unwrap();
        }
        assert_eq!(cache.lock().by_id.len(), CACHE);
        // A cached update is the same one for every subscriber.
        let a = cache.get(b"s-4000", b"{}");
        let b = cache.get(b"s-4000", b"not json");
        assert!(Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
    }
}
