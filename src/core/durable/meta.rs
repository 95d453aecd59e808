//! What a Durable Stream is besides its messages: its configuration, its
//! lifetime, whether it is closed, and the producers and `Stream-Seq` that
//! make appends idempotent. Every rule that admits or refuses a write is
//! here, as pure functions of the metadata and the request, so each one is
//! written once and tested without a server.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::TopicName;
use crate::core::durable::offset::Generations;

/// How long producer state is kept after a producer's last append (the
/// protocol's suggestion: 7 days).
pub(crate) const PRODUCER_STATE_TTL_MS: u64 = 7 * 24 * 3600 * 1000;

/// The most producers a stream remembers at once; the least recently seen
/// one is forgotten to make room (it then has to start a new epoch).
pub(crate) const MAX_PRODUCERS: usize = 1024;

/// The longest `Producer-Id` and `Stream-Seq`, in bytes.
pub(crate) const MAX_TOKEN_LEN: usize = 256;

/// When a stream expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expiry {
    Never,
    /// `Stream-TTL`: this many seconds after the last read or write.
    Ttl(u64),
    /// `Stream-Expires-At`: at this instant (ms since the Unix epoch); the
    /// header's text is kept to answer it back as given.
    At {
        ms: u64,
        text: Box<str>,
    },
}

/// A stream's configuration as a create (`PUT`) states it: a repeated
/// create with the same configuration is a no-op, another one a conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Config {
    /// As given (parameters and case kept); compared by media type. Shared:
    /// every read hands it on.
    pub(crate) content_type: Arc<str>,
    pub(crate) expiry: Expiry,
    /// The path it was forked from, the offset (as given) and sub-offset.
    pub(crate) fork: Option<ForkPoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForkPoint {
    /// As the create named it (a URL path).
    pub(crate) source: Box<str>,
    /// The topic that holds it.
    pub(crate) topic: TopicName,
    /// `None` when the create named no offset (the source's tail then).
    pub(crate) offset: Option<Box<str>>,
    pub(crate) sub_offset: u64,
}

/// The media type of a `Content-Type`: before any `;`, trimmed, lowercase.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether messages of this content type are JSON values (arrays are
/// flattened on append, reads answer an array).
pub(crate) fn is_json(content_type: &str) -> bool {
    media_type(content_type) == "application/json"
}

/// Whether SSE sends this content type as text (else base64).
pub(crate) fn is_text(content_type: &str) -> bool {
    let m = media_type(content_type);
    m.starts_with("text/") || m == "application/json"
}

/// A producer's place: its epoch and the last sequence number accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Producer {
    pub(crate) epoch: u64,
    pub(crate) last_seq: u64,
    /// When it last appended (ms since the Unix epoch).
    pub(crate) seen_ms: u64,
}

/// The producer headers of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProducerClaim {
    pub(crate) id: Box<str>,
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

/// Everything about a stream but its messages.
#[derive(Debug, Clone)]
pub(crate) struct StreamMeta {
    pub(crate) config: Config,
    /// Which offsets name positions of this stream.
    pub(crate) generations: Generations,
    /// Set once closed: who closed it, if a producer did (a retry of that
    /// close is a duplicate, not a conflict).
    pub(crate) closed: Option<Option<ProducerClaim>>,
    /// The last `Stream-Seq` accepted (compared bytewise).
    pub(crate) stream_seq: Option<Box<[u8]>>,
    pub(crate) producers: HashMap<Box<str>, Producer>,
    /// Last read or write (ms since the Unix epoch), for a sliding TTL.
    pub(crate) touched_ms: u64,
    /// The stream it was forked from, which counts it among its forks.
    pub(crate) parent: Option<TopicName>,
    /// Live forks of this stream.
    pub(crate) forks: u32,
    /// Deleted while forks still read through it: gone to clients, kept
    /// until the last fork goes.
    pub(crate) soft_deleted: bool,
}

impl StreamMeta {
    pub(crate) fn new(config: Config, generations: Generations, closed: bool, now_ms: u64) -> Self {
        StreamMeta {
            config,
            generations,
            closed: closed.then_some(None),
            stream_seq: None,
            producers: HashMap::new(),
            touched_ms: now_ms,
            parent: None,
            forks: 0,
            soft_deleted: false,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    pub(crate) fn is_json(&self) -> bool {
        is_json(&self.config.content_type)
    }

    /// Whether the stream has expired at `now_ms`.
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        match self.config.expiry {
            Expiry::Never => false,
            Expiry::Ttl(secs) => {
                now_ms >= self.touched_ms.saturating_add(secs.saturating_mul(1000))
            }
            Expiry::At { ms, .. } => now_ms >= ms,
        }
    }

    /// What a create with `config` (and `closed`) finds on this stream:
    /// `true` if it asks for exactly this stream.
    pub(crate) fn same_as(&self, config: &Config, closed: bool) -> bool {
        let c = &self.config;
        let fork_matches = match (&c.fork, &config.fork) {
            (None, None) => true,
            (Some(a), Some(b)) => {
                a.source == b.source
                    && a.sub_offset == b.sub_offset
                    && (b.offset.is_none() || a.offset == b.offset)
            }
            _ => false,
        };
        media_type(&c.content_type) == media_type(&config.content_type)
            && c.expiry == config.expiry
            && self.is_closed() == closed
            && fork_matches
    }

    /// Decides an append (or a close) before it happens; nothing changes
    /// until [`StreamMeta::commit`].
    pub(crate) fn admit(&self, write: &Write<'_>, now_ms: u64) -> Verdict {
        if let Some(closer) = &self.closed {
            return match (&write.producer, closer) {
                (Some(p), Some(c)) if p == c => Verdict::Duplicate { last_seq: p.seq },
                // Closing a closed stream (no data, no producer) is a no-op.
                (None, _) if write.close && !write.has_body => Verdict::Duplicate { last_seq: 0 },
                _ => Verdict::Refused(Refusal::Closed),
            };
        }
        if let Some(ct) = write.content_type
            && write.has_body
            && media_type(ct) != media_type(&self.config.content_type)
        {
            return Verdict::Refused(Refusal::ContentType);
        }
        let mut accepted = None;
        if let Some(p) = &write.producer {
            match self.live_producer(&p.id, now_ms) {
                None if p.seq != 0 => {
                    return Verdict::Refused(Refusal::Gap {
                        expected: 0,
                        received: p.seq,
                    });
                }
                Some(s) if p.epoch < s.epoch => {
                    return Verdict::Refused(Refusal::StaleEpoch { current: s.epoch });
                }
                Some(s) if p.epoch > s.epoch && p.seq != 0 => {
                    return Verdict::Refused(Refusal::NewEpochNotAtZero);
                }
                Some(s) if p.epoch == s.epoch && p.seq <= s.last_seq => {
                    return Verdict::Duplicate {
                        last_seq: s.last_seq,
                    };
                }
                Some(s) if p.epoch == s.epoch && p.seq != s.last_seq + 1 => {
                    return Verdict::Refused(Refusal::Gap {
                        expected: s.last_seq + 1,
                        received: p.seq,
                    });
                }
                _ => accepted = Some(p.clone()),
            }
        }
        if let Some(seq) = write.stream_seq
            && self.stream_seq.as_deref().is_some_and(|last| seq <= last)
        {
            return Verdict::Refused(Refusal::StreamSeq);
        }
        Verdict::Accepted { producer: accepted }
    }

    fn live_producer(&self, id: &str, now_ms: u64) -> Option<&Producer> {
        self.producers
            .get(id)
            .filter(|p| now_ms.saturating_sub(p.seen_ms) <= PRODUCER_STATE_TTL_MS)
    }

    /// Records an accepted write (see [`StreamMeta::admit`]). Returns the
    /// producer forgotten to make room for a new one, if any.
    pub(crate) fn commit(
        &mut self,
        write: &Write<'_>,
        producer: Option<ProducerClaim>,
        now_ms: u64,
    ) -> Option<Box<str>> {
        let mut forgotten = None;
        if let Some(seq) = write.stream_seq {
            self.stream_seq = Some(seq.into());
        }
        if let Some(p) = &producer {
            if !self.producers.contains_key(&p.id) && self.producers.len() >= MAX_PRODUCERS {
                forgotten = self.forget_oldest_producer();
            }
            self.producers.insert(
                p.id.clone(),
                Producer {
                    epoch: p.epoch,
                    last_seq: p.seq,
                    seen_ms: now_ms,
                },
            );
        }
        if write.close {
            self.closed = Some(producer);
        }
        self.touched_ms = now_ms;
        forgotten
    }

    fn forget_oldest_producer(&mut self) -> Option<Box<str>> {
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(_, p)| p.seen_ms)
            .map(|(id, _)| id.clone())?;
        self.producers.remove(&oldest);
        Some(oldest)
    }
}

/// A write as the metadata rules see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Write<'a> {
    pub(crate) content_type: Option<&'a str>,
    pub(crate) has_body: bool,
    pub(crate) stream_seq: Option<&'a [u8]>,
    pub(crate) producer: Option<ProducerClaim>,
    /// `Stream-Closed: true`: close with (or without) this append.
    pub(crate) close: bool,
}

impl Write<'_> {
    /// The write, owning its parts (to send it to a store's writer).
    pub(crate) fn to_owned(&self) -> OwnedWrite {
        OwnedWrite {
            content_type: self.content_type.map(Into::into),
            has_body: self.has_body,
            stream_seq: self.stream_seq.map(Into::into),
            producer: self.producer.clone(),
            close: self.close,
        }
    }
}

/// A [`Write`] that owns its parts.
#[derive(Debug, Clone, Default)]
pub(crate) struct OwnedWrite {
    content_type: Option<Box<str>>,
    has_body: bool,
    stream_seq: Option<Box<[u8]>>,
    producer: Option<ProducerClaim>,
    close: bool,
}

impl OwnedWrite {
    pub(crate) fn as_write(&self) -> Write<'_> {
        Write {
            content_type: self.content_type.as_deref(),
            has_body: self.has_body,
            stream_seq: self.stream_seq.as_deref(),
            producer: self.producer.clone(),
            close: self.close,
        }
    }
}

/// What [`StreamMeta::admit`] decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go ahead; commit with this producer's new place, if any.
    Accepted {
        producer: Option<ProducerClaim>,
    },
    /// Nothing to do, answer success: a producer's retry of a write
    /// already made (`last_seq`: the highest sequence it had accepted), or
    /// a plain close of a closed stream.
    Duplicate {
        last_seq: u64,
    },
    Refused(Refusal),
}

/// Why a write is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `409` with `Stream-Closed: true`.
    Closed,
    /// `409`: the body's content type is not the stream's.
    ContentType,
    /// `409`: `Stream-Seq` not above the last one.
    StreamSeq,
    /// `403` with the current `Producer-Epoch`: a fenced (zombie) producer.
    StaleEpoch { current: u64 },
    /// `400`: a new epoch must start at sequence 0.
    NewEpochNotAtZero,
    /// `409` with `Producer-Expected-Seq` and `Producer-Received-Seq`.
    Gap { expected: u64, received: u64 },
}

/// Parses an RFC 3339 timestamp (`2026-12-07T16:00:00Z`,
/// `...T16:00:00.123+01:00`) into ms since the Unix epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        ms = frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = digits(i + 1..i + 3)? * 60 + digits(i + 4..i + 6)?;
            if *sign == b'+' { m } else { -m }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    u64::try_from(secs * 1000 + ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> StreamMeta {
        StreamMeta::new(
            Config {
                content_type: "text/plain".into(),
                expiry: Expiry::Never,
                fork: None,
            },
            Generations::new(1),
            false,
            0,
        )
    }

    fn claim(id: &str, epoch: u64, seq: u64) -> ProducerClaim {
        ProducerClaim {
            id: id.into(),
            epoch,
            seq,
        }
    }

    fn write(producer: Option<ProducerClaim>) -> Write<'static> {
        Write {
            content_type: Some("text/plain"),
            has_body: true,
            producer,
            ..Write::default()
        }
    }

    /// Admits and commits like a store does; returns the verdict.
    fn append(m: &mut StreamMeta, w: &Write<'_>) -> Verdict {
        let v = m.admit(w, 0);
        if let Verdict::Accepted { producer } = &v {
            m.commit(w, producer.clone(), 0);
        }
        v
    }

    #[test]
    fn producers_are_fenced_deduplicated_and_kept_in_order() {
        let mut m = meta();
        let ok = |p| Verdict::Accepted { producer: Some(p) };
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 0, 1)))),
            Verdict::Refused(Refusal::Gap {
                expected: 0,
                received: 1
            })
        );
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 0, 0)))),
            ok(claim("p", 0, 0))
        );
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 0, 1)))),
            ok(claim("p", 0, 1))
        );
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 0, 0)))),
            Verdict::Duplicate { last_seq: 1 }
        );
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 0, 3)))),
            Verdict::Refused(Refusal::Gap {
                expected: 2,
                received: 3
            })
        );
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 1, 5)))),
            Verdict::Refused(Refusal::NewEpochNotAtZero)
        );
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 1, 0)))),
            ok(claim("p", 1, 0))
        );
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 0, 2)))),
            Verdict::Refused(Refusal::StaleEpoch { current: 1 })
        );
        // Another producer has its own sequence.
        assert_eq!(
            append(&mut m, &write(Some(claim("q", 7, 0)))),
            ok(claim("q", 7, 0))
        );
    }

    #[test]
    fn a_closed_stream_refuses_all_but_its_closers_retry() {
        let mut m = meta();
        let close = Write {
            close: true,
            ..write(Some(claim("p", 0, 0)))
        };
        assert!(matches!(append(&mut m, &close), Verdict::Accepted { .. }));
        assert!(m.is_closed());
        assert_eq!(append(&mut m, &close), Verdict::Duplicate { last_seq: 0 });
        assert_eq!(
            append(&mut m, &write(Some(claim("p", 0, 1)))),
            Verdict::Refused(Refusal::Closed)
        );
        assert_eq!(
            append(&mut m, &write(None)),
            Verdict::Refused(Refusal::Closed)
        );
    }

    #[test]
    fn stream_seq_must_grow_bytewise_and_content_types_match_by_media_type() {
        let mut m = meta();
        let seq = |s: &'static str| Write {
            stream_seq: Some(s.as_bytes()),
            ..write(None)
        };
        assert!(matches!(
            append(&mut m, &seq("001")),
            Verdict::Accepted { .. }
        ));
        assert!(matches!(
            append(&mut m, &seq("002")),
            Verdict::Accepted { .. }
        ));
        assert_eq!(
            append(&mut m, &seq("002")),
            Verdict::Refused(Refusal::StreamSeq)
        );
        assert_eq!(
            append(&mut m, &seq("1")),
            Verdict::Accepted { producer: None }
        );
        let other = Write {
            content_type: Some("application/json"),
            ..write(None)
        };
        assert_eq!(m.admit(&other, 0), Verdict::Refused(Refusal::ContentType));
        let same = Write {
            content_type: Some("TEXT/PLAIN; charset=utf-8"),
            ..write(None)
        };
        assert_eq!(m.admit(&same, 0), Verdict::Accepted { producer: None });
    }

    #[test]
    fn a_ttl_slides_with_use_and_expires_at_does_not() {
        let mut m = meta();
        m.config.expiry = Expiry::Ttl(2);
        assert!(!m.is_expired(1999));
        assert!(m.is_expired(2000));
        m.commit(&write(None), None, 1500);
        assert!(!m.is_expired(3000));
        m.config.expiry = Expiry::At {
            ms: 1000,
            text: "".into(),
        };
        assert!(m.is_expired(1000));
    }

    #[test]
    fn rfc3339_timestamps_parse_with_zones_and_fractions() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_rfc3339("2026-12-07T16:00:00.123Z"),
            Some(1_796_659_200_123)
        );
        assert_eq!(
            parse_rfc3339("2026-12-07T17:00:00.123+01:00"),
            parse_rfc3339("2026-12-07T16:00:00.123Z")
        );
        for bad in [
            "not-a-timestamp",
            "2026-12-07",
            "2026-13-01T00:00:00Z",
            "2026-12-07T16:00:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
