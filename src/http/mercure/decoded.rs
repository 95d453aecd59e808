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

/// Updates kept decoded for the subscribers that read them next.
const CACHE: usize = 4096;

/// A stored update, decoded once for every subscriber.
pub(crate) struct Decoded {
    pub(super) update: Update,
    pub(super) frame: Bytes,
    /// Whether a template selector matches one of the topics, by
    /// selector: computed once per update.
    matches: Mutex<HashMap<Box<str>, bool>>,
}

impl Decoded {
    fn new(update: Update) -> Self {
        Decoded {
            frame: update.frame(),
            update,
            matches: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one of `selectors` matches one of the update's topics.
    pub(super) fn matches_any(&self, selectors: &[Selector]) -> bool {
        selectors.iter().any(|s| {
            if !s.is_pattern() {
                return self.update.topics.iter().any(|t| s.matches(t));
            }
            let mut memo = self.matches.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(&m) = memo.get(s.as_str()) {
                return m;
            }
            let m = self.update.topics.iter().any(|t| s.matches(t));
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
}

impl DecodeCache {
    /// The update of the event with native id `id` and JSON `data`.
    pub(super) fn get(&self, id: &Bytes, data: &[u8]) -> Option<Arc<Decoded>> {
        if let Some(d) = self.lock().by_id.get(id) {
            return Some(d.clone());
        }
        let decoded = Arc::new(Decoded::new(Update::from_json(data)?));
        let mut recent = self.lock();
        if recent.by_id.insert(id.clone(), decoded.clone()).is_none() {
            recent.order.push_back(id.clone());
            while recent.order.len() > CACHE {
                if let Some(old) = recent.order.pop_front() {
                    recent.by_id.remove(&old);
                }
            }
        }
        Some(decoded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
