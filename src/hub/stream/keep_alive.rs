//! The clocks of a stream: the keep-alive comment after a silence, and the
//! expiry of the credentials it was opened with.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use crate::core::event::KEEP_ALIVE_FRAME;

/// When a stream sends `: keep-alive`: after `period` without a frame.
pub(crate) struct KeepAlive {
    period: Duration,
    last_sent: Instant,
    /// Created on the first idle poll and reset only when it fires, so a busy
    /// stream costs no timer operations.
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The longest keep-alive period: a longer one counts as this. A period of
/// `Duration::MAX` (or `--keep-alive 9223372036854775807`) overflowed the
/// clock when added to it, a panic on every stream.
pub(crate) const MAX_KEEP_ALIVE: Duration = Duration::from_secs(365 * 24 * 3600);

impl KeepAlive {
    pub(crate) fn new(period: Duration) -> Self {
        KeepAlive {
            period: period.min(MAX_KEEP_ALIVE),
            last_sent: Instant::now(),
            sleep: None,
        }
    }

    /// A frame went out now.
    pub(crate) fn sent(&mut self) {
        self.last_sent = Instant::now();
    }

    /// The keep-alive comment once `period` passed without a frame.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let (period, last_sent) = (self.period, self.last_sent);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(last_sent + period)));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            let due = self.last_sent + self.period;
            if now >= due {
                self.last_sent = now;
                sleep.as_mut().reset(now + self.period);
                return Poll::Ready(Some(Bytes::from_static(KEEP_ALIVE_FRAME)));
            }
            // Something was sent since the timer was set: wait out the rest.
            sleep.as_mut().reset(due);
        }
    }
}

/// When a stream's credentials expire: a timer, created with the stream.
pub(crate) fn expiry_timer(at: std::time::SystemTime) -> Pin<Box<Sleep>> {
    let left = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Box::pin(tokio::time::sleep(left))
}
