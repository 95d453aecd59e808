//! The tail of a stream, read and encoded once for all its `live=sse`
//! readers.
//!
//! While a stream has readers at its tail, one task (its pump) waits for
//! its messages, reads each new batch once and encodes it once, as the
//! `event: data` and `event: control` every reader at the batch's start
//! sends as is; it publishes the last few batches in a `watch` channel.
//! A reader at a batch's start only clones its bytes: it neither reads the
//! stream nor encodes. Anything else (behind the pump, a cursor of its
//! own, another generation, the pump gone) the reader handles itself, as
//! it would without a pump (see `sse.rs`), so the pump only ever saves
//! work and never decides what a reader sees.
//!
//! The pump ends when its last reader goes (its channel then has no
//! receiver), when the stream closes, or when reading it fails (deleted,
//! the hub closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::core::TopicName;
use crate::core::durable::offset::{Offset, Start};
use crate::http::durable::events::{Format, MAX_READ_BYTES, closed, control, data, next_cursor};
use crate::hub::Hub;
use crate::hub::durable::{Chunk, Waited};

/// Batches a pump keeps published: a reader that was not polled between
/// two batches still finds the first.
pub(crate) const RECENT: usize = 8;

/// The pumps of the streams that have live readers, by topic.
#[derive(Clone, Default)]
pub(crate) struct Followers(Arc<Mutex<HashMap<TopicName, Weak<Follow>>>>);

/// A stream's pump, as its readers hold it: the pump runs while one does.
pub(crate) struct Follow {
    rx: watch::Receiver<Arc<Tail>>,
}

impl Follow {
    /// A receiver of the pump's tail, for one reader.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Tail>> {
        self.rx.clone()
    }
}

/// What a pump published last.
#[derive(Clone, Default)]
pub(crate) struct Tail {
    /// The last batches read, oldest first, each starting where the one
    /// before ends.
    batches: Vec<Arc<Batch>>,
    /// Where the pump stands (after its last batch; at first, where its
    /// first reader was); `None` only in a default tail.
    at: Option<Offset>,
    /// The stream is closed at `at`.
    closed: bool,
    /// The pump stopped (the stream is gone, or the hub closed): readers
    /// wait and read on their own.
    ended: bool,
}

/// One batch, encoded.
pub(crate) struct Batch {
    /// Where it starts.
    after: Offset,
    /// Where it ends.
    pub(crate) next: Offset,
    /// The stream is closed after it: its control event says so, and is
    /// the last.
    pub(crate) closed: bool,
    /// It ends at the stream's tail (as read).
    up_to_date: bool,
    /// The cursor its control event carries.
    cursor: u64,
    /// The data event and the control event.
    whole: Bytes,
    /// How much of `whole` is the data event.
    data_len: usize,
}

impl Batch {
    fn encode(after: Offset, chunk: &Chunk, format: Format) -> Self {
        let mut buf = BytesMut::new();
        data(&mut buf, &chunk.frames, format);
        let data_len = buf.len();
        let closed_now = chunk.closed && chunk.up_to_date;
        let cursor = next_cursor(None);
        if closed_now {
            closed(&mut buf, chunk.next);
        } else {
            control(&mut buf, chunk.next, cursor, chunk.up_to_date);
        }
        Batch {
            after,
            next: chunk.next,
            closed: closed_now,
            up_to_date: chunk.up_to_date,
            cursor,
            whole: buf.freeze(),
            data_len,
        }
    }

    /// The events to send a reader that echoed the cursor `client`: the
    /// shared ones, unless the reader's cursor must move past the shared
    /// one's (then its own control event).
    pub(crate) fn events(&self, client: Option<&str>) -> Bytes {
        let own = !self.closed
            && client
                .and_then(|c| c.parse::<u64>().ok())
                .is_some_and(|c| c >= self.cursor);
        if !own {
            return self.whole.clone();
        }
        let mut buf = BytesMut::with_capacity(self.whole.len() + 32);
        buf.extend_from_slice(&self.whole[..self.data_len]);
        control(&mut buf, self.next, next_cursor(client), self.up_to_date);
        buf.freeze()
    }
}

/// What a reader at `at` does next, given the pump's tail.
pub(crate) enum Step {
    /// Send this batch, which starts at `at`.
    Send(Arc<Batch>),
    /// The pump is past `at` with no batch starting there: read on its
    /// own from `at`.
    Behind,
    /// The stream is closed at `at`.
    Closed,
    /// Nothing after `at` yet: wait for the tail to change.
    Wait,
    /// The pump cannot help (it ended, or follows another generation of
    /// the stream): wait and read on its own.
    Alone,
}

impl Tail {
    pub(crate) fn step(&self, at: Offset) -> Step {
        if let Some(b) = self.batches.iter().find(|b| b.after == at) {
            return Step::Send(b.clone());
        }
        match self.at {
            Some(p) if p.generation != at.generation => Step::Alone,
            Some(p) if p.seq > at.seq => Step::Behind,
            Some(p) if p.seq == at.seq && self.closed => Step::Closed,
            _ if self.ended => Step::Alone,
            _ => Step::Wait,
        }
    }
}

impl Followers {
    /// The pump of `topic`, started at `at` (a reader's place at the
    /// tail) if it has none.
    pub(crate) fn follow(
        &self,
        hub: &Hub,
        topic: &TopicName,
        at: Offset,
        idle: Duration,
    ) -> Arc<Follow> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = map.get(topic).and_then(Weak::upgrade) {
            return f;
        }
        let tail = Tail {
            at: Some(at),
            ..Tail::default()
        };
        let (tx, rx) = watch::channel(Arc::new(tail.clone()));
        let follow = Arc::new(Follow { rx });
        map.insert(topic.clone(), Arc::downgrade(&follow));
        let pump = Pump {
            hub: hub.clone(),
            topic: topic.clone(),
            tx,
            idle,
            tail,
        };
        let followers = self.clone();
        let me = Arc::downgrade(&follow);
        tokio::spawn(async move {
            let mut pump = pump;
            pump.run(at).await;
            // Out of the map first: a reader that comes now starts a new
            // pump; one that found this one sees it ended.
            followers.forget(&pump.topic, &me);
            pump.tail.ended = true;
            pump.publish();
        });
        follow
    }

    fn forget(&self, topic: &TopicName, me: &Weak<Follow>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(topic).is_some_and(|w| w.ptr_eq(me)) {
            map.remove(topic);
        }
    }
}

struct Pump {
    hub: Hub,
    topic: TopicName,
    tx: watch::Sender<Arc<Tail>>,
    idle: Duration,
    tail: Tail,
}

impl Pump {
    fn publish(&self) {
        self.tx.send_replace(Arc::new(self.tail.clone()));
    }

    async fn run(&mut self, mut at: Offset) {
        loop {
            let deadline = Instant::now() + self.idle;
            let waited = tokio::select! {
                w = self.hub.wait_stream(&self.topic, at, deadline) => w,
                () = self.tx.closed() => return,
            };
            match waited {
                Ok(Waited::Data) => {}
                Ok(Waited::TimedOut) => continue,
                Ok(Waited::Closed) => {
                    self.tail.closed = true;
                    self.publish();
                    return;
                }
                Err(_) => return,
            }
            let Ok(chunk) = self
                .hub
                .read_stream(&self.topic, Start::At(at), MAX_READ_BYTES)
                .await
            else {
                return;
            };
            if chunk.frames.is_empty() {
                // Not expected after `Data`; readers manage alone.
                return;
            }
            let batch = Batch::encode(at, &chunk, Format::of(&chunk.content_type));
            at = batch.next;
            let closed = batch.closed;
            if self.tail.batches.len() == RECENT {
                self.tail.batches.remove(0);
            }
            self.tail.batches.push(Arc::new(batch));
            self.tail.at = Some(at);
            self.tail.closed = closed;
            self.publish();
            if closed {
                return;
            }
        }
    }
}
