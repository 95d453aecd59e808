//! The bookkeeping of a stream of several topics taking turns: which topics
//! were woken ([`WakeSet`], each topic's waker marks its bit), which are to
//! be looked at, round robin ([`Marks`]), and the frame their turns build
//! ([`Out`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Wake, Waker};

use atomic_waker::AtomicWaker;
use bytes::{BufMut, Bytes, BytesMut};

use crate::hub::sync::Arc;

/// The topics woken since the stream last looked, and the stream's task.
pub(crate) struct WakeSet {
    marks: Box<[AtomicU64]>,
    task: AtomicWaker,
}

impl WakeSet {
    pub(crate) fn new(n: usize) -> Arc<Self> {
        Arc::new(WakeSet {
            marks: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            task: AtomicWaker::new(),
        })
    }

    /// The waker of topic `index`: marks it, then wakes the stream's task.
    pub(crate) fn waker(self: &Arc<Self>, index: usize) -> Waker {
        Waker::from(std::sync::Arc::new(TopicWake {
            set: self.clone(),
            index,
        }))
    }

    /// The task that polled last is the one to wake.
    pub(crate) fn register(&self, task: &Waker) {
        self.task.register(task);
    }
}

struct TopicWake {
    set: Arc<WakeSet>,
    index: usize,
}

impl Wake for TopicWake {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.set.marks[self.index / 64].fetch_or(1 << (self.index % 64), Ordering::AcqRel);
        self.set.task.wake();
    }
}

/// The topics to look at: woken, or left with events after their turn.
pub(crate) struct Marks {
    bits: Box<[u64]>,
    n: usize,
}

impl Marks {
    /// Every one of `n` topics marked: each looks at its ring once at the
    /// start.
    pub(crate) fn all(n: usize) -> Self {
        let mut bits: Box<[u64]> = vec![0; n.div_ceil(64)].into_boxed_slice();
        for i in 0..n {
            bits[i / 64] |= 1 << (i % 64);
        }
        Marks { bits, n }
    }

    /// Adds the topics woken since the last look.
    pub(crate) fn take_woken(&mut self, woken: &WakeSet) {
        for (mine, w) in self.bits.iter_mut().zip(woken.marks.iter()) {
            *mine |= w.swap(0, Ordering::AcqRel);
        }
    }

    /// The next marked topic from `from` on (round robin), if any.
    pub(crate) fn next(&self, from: usize) -> Option<usize> {
        let words = self.bits.len();
        // Two passes over the words: from `from` to the end, then the start.
        for step in 0..=words {
            let w = (from / 64 + step) % words;
            let mut bits = self.bits[w];
            if step == 0 {
                bits &= u64::MAX << (from % 64);
            } else if step == words {
                bits &= !(u64::MAX << (from % 64));
            }
            if bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                if i < self.n {
                    return Some(i);
                }
            }
        }
        None
    }

    pub(crate) fn unmark(&mut self, i: usize) {
        self.bits[i / 64] &= !(1 << (i % 64));
    }
}

/// The frame being built from the topics' turns.
pub(crate) struct Out {
    buf: BytesMut,
    /// Finished pieces when a large event's data goes out uncopied.
    pieces: Vec<Bytes>,
    pub(crate) len: usize,
    /// An event did not fit: the frame is as large as it gets.
    pub(crate) full: bool,
}

impl Out {
    pub(crate) fn new() -> Self {
        Out {
            buf: BytesMut::new(),
            pieces: Vec::new(),
            len: 0,
            full: false,
        }
    }

    pub(crate) fn reserve(&mut self, additional: usize) {
        self.buf.reserve(additional);
    }

    pub(crate) fn put(&mut self, bytes: &[u8]) {
        self.buf.put_slice(bytes);
        self.len += bytes.len();
    }

    /// Hands on `shared` as its own piece.
    pub(crate) fn share(&mut self, shared: Bytes) {
        if !self.buf.is_empty() {
            self.pieces.push(self.buf.split().freeze());
        }
        self.len += shared.len();
        self.pieces.push(shared);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first piece of the frame; the others are queued in `rest`.
    pub(crate) fn finish(mut self, rest: &mut impl Extend<Bytes>) -> Option<Bytes> {
        if self.is_empty() {
            return None;
        }
        if self.pieces.is_empty() {
            return Some(self.buf.freeze());
        }
        if !self.buf.is_empty() {
            self.pieces.push(self.buf.freeze());
        }
        let mut pieces = self.pieces.into_iter();
        let first = pieces.next();
        rest.extend(pieces);
        first
    }
}
