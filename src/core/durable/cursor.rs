//! `Stream-Cursor`: a number that long-poll and SSE answers carry and
//! clients echo back (`cursor=`), so that caches in front of the server
//! never collapse two rounds of a live read into one answer.
//!
//! It counts 20-second intervals since 2024-10-09T00:00:00Z (the protocol's
//! reference). An echoed cursor at or past the current interval gets a
//! later one, a random 1 s to 1 h ahead, so the next request's URL differs.

/// The reference instant, in ms since the Unix epoch.
const EPOCH_MS: u64 = 1_728_432_000_000;
const INTERVAL_MS: u64 = 20_000;
const MAX_JITTER_SECS: u64 = 3600;

/// The cursor to answer at `now_ms` to a request that echoed `client`;
/// `random` picks the jitter (any value).
pub(crate) fn next(client: Option<&str>, now_ms: u64, random: u64) -> u64 {
    let current = now_ms.saturating_sub(EPOCH_MS) / INTERVAL_MS;
    match client.and_then(|c| c.parse::<u64>().ok()) {
        Some(c) if c >= current => {
            let jitter_secs = 1 + random % MAX_JITTER_SECS;
            c.saturating_add(jitter_secs.div_ceil(INTERVAL_MS / 1000).max(1))
        }
        _ => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_cursor_always_gets_a_later_one() {
        let now = EPOCH_MS + 10 * INTERVAL_MS + 5;
        assert_eq!(next(None, now, 0), 10);
        assert_eq!(next(Some("3"), now, 0), 10);
        assert_eq!(next(Some("junk"), now, 0), 10);
        for r in [0, 1, 19, 20, 3599, u64::MAX] {
            let n = next(Some("10"), now, r);
            assert!((11..=190).contains(&n), "{r}: {n}");
        }
        assert!(next(Some("500"), now, 7) > 500);
    }
}
