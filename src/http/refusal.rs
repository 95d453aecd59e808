//! Transient refusals of a stream request, answered so that a browser
//! keeps trying.
//!
//! An `EventSource` that gets any status but `200`, or a `Content-Type`
//! other than `text/event-stream`, fails for good: it never reconnects
//! (WHATWG HTML, "server-sent events", the fail-the-connection step). So a
//! refusal that will pass (a connection limit, a restart, every topic slot
//! taken, storage out of reach) must not be a `503` to a browser. A request
//! that accepts `text/event-stream` (every `EventSource` sends
//! `Accept: text/event-stream`) gets `200`, a comment saying why, a
//! jittered `retry:` hint and the end of the stream: the `EventSource`
//! reconnects after the hint with its `Last-Event-ID`, and no `id:` line
//! touches the id it holds. Other clients (curl, load tools, scripts) get
//! `503` with `Retry-After`, which they understand. Permanent refusals
//! (`400`, `401`, `403`, `404`) are not made here: they must stop a
//! browser.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::http::body::ResponseBody;
use crate::http::cors::CorsOrigins;
use crate::http::responses::text;
use crate::hub::HubError;

/// Why a stream request was refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over `--max-connections`.
    Connections,
    /// Over `--max-connections-per-ip`.
    ConnectionsPerIp,
    /// The server is shutting down (a restart, usually).
    ShuttingDown,
    /// Every topic slot is taken by topics with subscribers.
    Topics,
    /// The storage cannot be reached.
    Storage,
}

impl Refusal {
    // The metric's side (feature `metrics`) reads the counts by label.
    #[cfg(any(test, feature = "metrics"))]
    const ALL: [Refusal; 5] = [
        Refusal::Connections,
        Refusal::ConnectionsPerIp,
        Refusal::ShuttingDown,
        Refusal::Topics,
        Refusal::Storage,
    ];

    /// The refusal a hub error is, if it will pass.
    pub(crate) fn of(e: &HubError) -> Option<Refusal> {
        match e {
            HubError::Closed => Some(Refusal::ShuttingDown),
            HubError::TooManyTopics => Some(Refusal::Topics),
            HubError::Storage(_) => Some(Refusal::Storage),
            _ => None,
        }
    }

    /// The `reason` label of the refusal metric.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Connections => "connections",
            Refusal::ConnectionsPerIp => "connections_per_ip",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::Topics => "topics",
            Refusal::Storage => "storage",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Refusal::Connections => "server is at its connection limit",
            Refusal::ConnectionsPerIp => "too many connections from this address",
            Refusal::ShuttingDown => "server is shutting down",
            Refusal::Topics => "too many topics",
            Refusal::Storage => "storage unavailable",
        }
    }

    /// The range the `retry:` hint is drawn from, in milliseconds, for a
    /// server whose streams suggest `retry_ms` (`--retry`, 3,000 by
    /// default, which gives 1-4 s for a restart, 2-8 s for storage, 5-15 s
    /// for topics and 5-20 s for connections): short for a restart, long
    /// when the server is full, so that the clients it turned away come
    /// back spread out, not in one wave. `retry_ms` counts as at least
    /// [`MIN_REFUSAL_BASE_MS`] (a refused fleet told to come back within
    /// milliseconds would hammer the server it is meant to spare) and at
    /// most [`MAX_REFUSAL_BASE_MS`]; every value, `u64::MAX` included,
    /// gives a valid range.
    pub(crate) fn retry_range_ms(self, retry_ms: u64) -> (u64, u64) {
        let (lo, hi) = match self {
            Refusal::ShuttingDown => (1, 4),
            Refusal::Storage => (2, 8),
            Refusal::Topics => (5, 15),
            Refusal::Connections | Refusal::ConnectionsPerIp => (5, 20),
        };
        let third = retry_ms.clamp(MIN_REFUSAL_BASE_MS, MAX_REFUSAL_BASE_MS) / 3;
        (lo * third, hi * third)
    }

    /// A hint drawn at random from [`Self::retry_range_ms`].
    fn retry_hint_ms(self, retry_ms: u64) -> u64 {
        let (lo, hi) = self.retry_range_ms(retry_ms);
        fastrand::u64(lo..=hi)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How a refusal was answered (the `answer` label of the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// `200`, a `retry:` hint and the end: the client reconnects.
    Retry,
    /// `503` with `Retry-After`.
    Unavailable,
}

impl Answer {
    #[cfg(feature = "metrics")]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Answer::Retry => "retry",
            Answer::Unavailable => "503",
        }
    }
}

/// Refusals counted by reason and answer, the `retry:` hint they are
/// scaled from, and the service's CORS policy (the server's own refusals,
/// at a connection limit, answer before any service sees the request).
#[derive(Debug)]
pub(crate) struct Refusals {
    counts: [[AtomicU64; 2]; 5],
    retry_ms: AtomicU64,
    cors: std::sync::OnceLock<CorsOrigins>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            counts: Default::default(),
            retry_ms: AtomicU64::new(DEFAULT_RETRY_MS),
            cors: std::sync::OnceLock::new(),
        }
    }
}

/// The hint refusals are scaled from when the streams send none.
const DEFAULT_RETRY_MS: u64 = 3_000;

/// The least stream hint refusals are scaled from: a restart is then
/// answered 100-400 ms, a full server at least 500 ms.
pub(crate) const MIN_REFUSAL_BASE_MS: u64 = 300;

/// The most: an hour (a full server then answers 100-400 min at most).
pub(crate) const MAX_REFUSAL_BASE_MS: u64 = 3_600_000;

impl Refusals {
    /// Scales the hints from the streams' `retry:` hint.
    pub(crate) fn set_retry(&self, retry: Option<std::time::Duration>) {
        let ms = retry.map_or(DEFAULT_RETRY_MS, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
        });
        self.retry_ms.store(ms, Ordering::Relaxed);
    }

    /// The CORS policy of the service these refusals are counted for.
    pub(crate) fn set_cors(&self, cors: CorsOrigins) {
        let _ = self.cors.set(cors);
    }

    /// Adds the service's CORS headers to a refusal the server made (none
    /// without a service that set its policy).
    pub(crate) fn decorate(&self, request: &HeaderMap, res: &mut Response<ResponseBody>) {
        if let Some(cors) = self.cors.get() {
            cors.decorate(request.get(header::ORIGIN), res.headers_mut());
        }
    }

    fn count(&self, why: Refusal, answer: Answer) {
        self.counts[why.index()][answer as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every (reason, answer, count), zeros included.
    #[cfg(any(test, feature = "metrics"))]
    pub(crate) fn all(&self) -> impl Iterator<Item = (Refusal, Answer, u64)> + '_ {
        Refusal::ALL.into_iter().flat_map(move |why| {
            [Answer::Retry, Answer::Unavailable]
                .into_iter()
                .map(move |a| {
                    (
                        why,
                        a,
                        self.counts[why.index()][a as usize].load(Ordering::Relaxed),
                    )
                })
        })
    }
}

/// Whether the request takes an event stream: its `Accept` names
/// `text/event-stream` with a quality above zero.
pub(crate) fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("text/event-stream")
                && !parts.any(|p| {
                    let p = p.trim();
                    p.len() > 2
                        && p[..2].eq_ignore_ascii_case("q=")
                        && p[2..].trim().parse::<f32>().is_ok_and(|q| q <= 0.0)
                })
        })
}

/// The answer to a stream request refused for `why` (its headers are
/// `request`), counted in `counts`.
///
/// It carries no CORS headers: the service's policy adds them, as to every
/// response (the service's `with_cors`, or [`Refusals::decorate`] for the
/// server's own refusals). A page of an origin the policy does not list
/// sees a network error, as it would for the stream itself; a listed one
/// sees a stream that ends.
pub(crate) fn refuse(
    why: Refusal,
    request: &HeaderMap,
    counts: Option<&Refusals>,
) -> Response<ResponseBody> {
    let retry_ms = counts.map_or(DEFAULT_RETRY_MS, |c| c.retry_ms.load(Ordering::Relaxed));
    let browser = wants_event_stream(request);
    let answer = if browser {
        Answer::Retry
    } else {
        Answer::Unavailable
    };
    if let Some(counts) = counts {
        counts.count(why, answer);
    }
    if browser {
        let ms = why.retry_hint_ms(retry_ms);
        let mut body = Vec::with_capacity(80);
        body.extend_from_slice(b": ");
        body.extend_from_slice(why.text().as_bytes());
        body.extend_from_slice(b"\nretry: ");
        body.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
        body.push(b'\n');
        let mut res = Response::new(ResponseBody::full(Bytes::from(body)));
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        res
    } else {
        let mut res = text(StatusCode::SERVICE_UNAVAILABLE, why.text());
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn what_takes_an_event_stream() {
        assert!(wants_event_stream(&accept("text/event-stream")));
        assert!(wants_event_stream(&accept("Text/Event-Stream")));
        assert!(wants_event_stream(&accept(
            "text/html, text/event-stream;q=0.5"
        )));
        assert!(!wants_event_stream(&accept("text/event-stream;q=0")));
        assert!(!wants_event_stream(&accept("text/event-stream; q=0.0")));
        assert!(!wants_event_stream(&accept("*/*")));
        assert!(!wants_event_stream(&accept("text/event-streamer")));
        assert!(!wants_event_stream(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn a_browser_gets_a_retry_hint_in_range_and_the_end() {
        use http_body_util::BodyExt;
        let counts = Refusals::default();
        for why in Refusal::ALL {
            let res = refuse(why, &accept("text/event-stream"), Some(&counts));
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let body = std::str::from_utf8(&body).unwrap();
            let ms: u64 = body
                .lines()
                .find_map(|l| l.strip_prefix("retry: "))
                .unwrap()
                .parse()
                .unwrap();
            let (lo, hi) = why.retry_range_ms(3_000);
            assert!((lo..=hi).contains(&ms), "{why:?}: {ms}");
            assert!(
                !body.contains("\nid:") && !body.starts_with("id:"),
                "{body}"
            );
            // No blank line either: nothing is dispatched.
            assert!(body.ends_with(&format!("\nretry: {ms}\n")), "{body}");
        }
        // The policy's CORS headers, none of its own (see
        // `server_refusals_follow_the_services_cors_policy`).
        let mut from_page = accept("text/event-stream");
        from_page.insert(header::ORIGIN, HeaderValue::from_static("null"));
        let res = refuse(Refusal::ShuttingDown, &from_page, None);
        assert!(
            !res.headers()
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{:?}",
            res.headers()
        );
        let plain = refuse(Refusal::Topics, &accept("*/*"), Some(&counts));
        assert_eq!(plain.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(plain.headers()[header::RETRY_AFTER], "5");
        let counted: Vec<_> = counts.all().filter(|c| c.2 > 0).collect();
        assert_eq!(counted.len(), 6);
        assert!(counted.contains(&(Refusal::Topics, Answer::Unavailable, 1)));
        assert!(counted.contains(&(Refusal::Topics, Answer::Retry, 1)));
    }

    #[test]
    fn hints_scale_with_the_streams_hint() {
        assert_eq!(Refusal::ShuttingDown.retry_range_ms(3_000), (1_000, 4_000));
        assert_eq!(Refusal::Connections.retry_range_ms(3_000), (5_000, 20_000));
        assert_eq!(Refusal::Topics.retry_range_ms(300), (500, 1_500));
        assert_eq!(Refusal::Storage.retry_range_ms(0), (200, 800));
        assert_eq!(Refusal::Storage.retry_range_ms(299), (200, 800));
        let counts = Refusals::default();
        counts.set_retry(Some(std::time::Duration::from_millis(600)));
        assert_eq!(counts.retry_ms.load(Ordering::Relaxed), 600);
    }

    /// Regression: `--retry 3000000000000000000` overflowed `20 * third`
    /// into a range whose start passed its end, and every refusal of a
    /// browser panicked ("empty range") and dropped the connection.
    #[test]
    fn any_streams_hint_gives_a_valid_range_and_a_hint() {
        let extremes = [
            0,
            1,
            2,
            3,
            299,
            300,
            3_600_000,
            3_600_001,
            3_000_000_000_000_000_000,
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX / 3,
            u64::MAX / 5 + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        for why in Refusal::ALL {
            for retry in extremes {
                let (lo, hi) = why.retry_range_ms(retry);
                assert!(lo >= 100 && lo < hi, "{why:?} {retry}: {lo}..{hi}");
                assert!(hi <= 20 * MAX_REFUSAL_BASE_MS / 3, "{why:?} {retry}");
                let ms = why.retry_hint_ms(retry);
                assert!((lo..=hi).contains(&ms));
            }
        }
        let counts = Refusals::default();
        for d in [
            std::time::Duration::ZERO,
            std::time::Duration::from_millis(u64::MAX),
            std::time::Duration::MAX,
        ] {
            counts.set_retry(Some(d));
            let res = refuse(
                Refusal::Connections,
                &accept("text/event-stream"),
                Some(&counts),
            );
            assert_eq!(res.status(), StatusCode::OK);
        }
    }

    #[test]
    fn hints_are_spread_over_their_range() {
        for why in Refusal::ALL {
            let hints: std::collections::HashSet<_> =
                (0..100).map(|_| why.retry_hint_ms(3_000) / 500).collect();
            let (lo, hi) = why.retry_range_ms(3_000);
            // 100 draws over ranges of at least six 500 ms buckets.
            assert!(
                hints.len() >= ((hi - lo) / 500) as usize / 2,
                "{why:?}: {hints:?}"
            );
        }
    }
}
