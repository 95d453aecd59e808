//! A stream's metadata as stores keep it: one record for the stream
//! (configuration, generations, closure, `Stream-Seq`, fork parent,
//! soft deletion) and one per producer, so that an append writes only the
//! record of the producer it moved, never all of them.
//!
//! Records are JSON with a version field: small, written once per change,
//! readable with any tool. What a store does not keep: live fork counts
//! (rebuilt from the parents at load) and the last use (a sliding TTL
//! starts again when a store loads the stream).

use serde::{Deserialize, Serialize};

use crate::core::TopicName;
use crate::core::durable::meta::{Config, Expiry, ForkPoint, Producer, ProducerClaim, StreamMeta};
use crate::core::durable::offset::Generations;

/// The version of the records this code writes.
const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Stream {
    v: u8,
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<(u64, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fork: Option<Fork>,
    generation: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    inherited: Vec<(u64, u64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    closed: Option<Closed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream_seq: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    soft_deleted: bool,
}

#[derive(Serialize, Deserialize)]
struct Fork {
    source: String,
    topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<String>,
    sub_offset: u64,
}

/// Who closed the stream (no producer: a plain close).
#[derive(Serialize, Deserialize)]
struct Closed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<Claim>,
}

#[derive(Serialize, Deserialize)]
struct Claim {
    id: String,
    epoch: u64,
    seq: u64,
}

#[derive(Serialize, Deserialize)]
struct ProducerRecord {
    v: u8,
    epoch: u64,
    last_seq: u64,
    seen_ms: u64,
}

/// The stream's record (everything but its producers).
pub(crate) fn encode_stream(meta: &StreamMeta) -> Vec<u8> {
    let c = &meta.config;
    let (ttl, expires_at) = match &c.expiry {
        Expiry::Never => (None, None),
        Expiry::Ttl(secs) => (Some(*secs), None),
        Expiry::At { ms, text } => (None, Some((*ms, text.to_string()))),
    };
    let record = Stream {
        v: VERSION,
        content_type: c.content_type.to_string(),
        ttl,
        expires_at,
        fork: c.fork.as_ref().map(|f| Fork {
            source: f.source.to_string(),
            topic: f.topic.to_string(),
            offset: f.offset.as_deref().map(str::to_owned),
            sub_offset: f.sub_offset,
        }),
        generation: meta.generations.own,
        inherited: meta.generations.inherited.clone(),
        closed: meta.closed.as_ref().map(|by| Closed {
            by: by.as_ref().map(|p| Claim {
                id: p.id.to_string(),
                epoch: p.epoch,
                seq: p.seq,
            }),
        }),
        stream_seq: meta.stream_seq.as_deref().map(<[u8]>::to_vec),
        parent: meta.parent.as_ref().map(|p| p.to_string()),
        soft_deleted: meta.soft_deleted,
    };
    serde_json::to_vec(&record).expect("a record serializes")
}

/// A stream's record, with no producers yet (see [`decode_producer`]),
/// last used at `now_ms`. `None` for a record this code did not write.
pub(crate) fn decode_stream(bytes: &[u8], now_ms: u64) -> Option<StreamMeta> {
    let r: Stream = serde_json::from_slice(bytes).ok()?;
    if r.v != VERSION {
        return None;
    }
    let expiry = match (r.ttl, r.expires_at) {
        (None, None) => Expiry::Never,
        (Some(secs), None) => Expiry::Ttl(secs),
        (None, Some((ms, text))) => Expiry::At {
            ms,
            text: text.into(),
        },
        (Some(_), Some(_)) => return None,
    };
    let fork = match r.fork {
        None => None,
        Some(f) => Some(ForkPoint {
            source: f.source.into(),
            topic: TopicName::new(&f.topic).ok()?,
            offset: f.offset.map(Into::into),
            sub_offset: f.sub_offset,
        }),
    };
    let parent = match r.parent {
        None => None,
        Some(p) => Some(TopicName::new(&p).ok()?),
    };
    let config = Config {
        content_type: r.content_type.into(),
        expiry,
        fork,
    };
    let generations = Generations {
        own: r.generation,
        inherited: r.inherited,
    };
    let mut meta = StreamMeta::new(config, generations, false, now_ms);
    meta.closed = r.closed.map(|c| {
        c.by.map(|p| ProducerClaim {
            id: p.id.into(),
            epoch: p.epoch,
            seq: p.seq,
        })
    });
    meta.stream_seq = r.stream_seq.map(Vec::into_boxed_slice);
    meta.parent = parent;
    meta.soft_deleted = r.soft_deleted;
    Some(meta)
}

/// A producer's record.
pub(crate) fn encode_producer(p: &Producer) -> Vec<u8> {
    let record = ProducerRecord {
        v: VERSION,
        epoch: p.epoch,
        last_seq: p.last_seq,
        seen_ms: p.seen_ms,
    };
    serde_json::to_vec(&record).expect("a record serializes")
}

pub(crate) fn decode_producer(bytes: &[u8]) -> Option<Producer> {
    let r: ProducerRecord = serde_json::from_slice(bytes).ok()?;
    (r.v == VERSION).then_some(Producer {
        epoch: r.epoch,
        last_seq: r.last_seq,
        seen_ms: r.seen_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> StreamMeta {
        let config = Config {
            content_type: "application/json; charset=utf-8".into(),
            expiry: Expiry::At {
                ms: 1_900_000_000_000,
                text: "2030-03-17T17:46:40Z".into(),
            },
            fork: Some(ForkPoint {
                source: "/v1/stream/a b".into(),
                topic: TopicName::new("ds:a.20b").unwrap(),
                offset: Some("0000000000000001_0000000000000002".into()),
                sub_offset: 3,
            }),
        };
        let mut m = StreamMeta::new(
            config,
            Generations {
                own: 9,
                inherited: vec![(7, 2), (5, 1)],
            },
            false,
            1,
        );
        m.closed = Some(Some(ProducerClaim {
            id: "p\"1".into(),
            epoch: 2,
            seq: 4,
        }));
        m.stream_seq = Some(b"00\xff".to_vec().into_boxed_slice());
        m.parent = Some(TopicName::new("ds:a.20b").unwrap());
        m.soft_deleted = true;
        m
    }

    #[test]
    fn a_stream_record_round_trips() {
        let m = meta();
        let back = decode_stream(&encode_stream(&m), 77).unwrap();
        assert_eq!(back.config, m.config);
        assert_eq!(back.generations, m.generations);
        assert_eq!(back.closed, m.closed);
        assert_eq!(back.stream_seq, m.stream_seq);
        assert_eq!(back.parent, m.parent);
        assert!(back.soft_deleted);
        assert_eq!(back.touched_ms, 77, "a sliding TTL restarts at load");
        let plain = StreamMeta::new(
            Config {
                content_type: "text/plain".into(),
                expiry: Expiry::Ttl(60),
                fork: None,
            },
            Generations::new(3),
            false,
            0,
        );
        let back = decode_stream(&encode_stream(&plain), 0).unwrap();
        assert_eq!(back.config, plain.config);
        assert_eq!(back.closed, None);
        let p = Producer {
            epoch: 1,
            last_seq: 2,
            seen_ms: 3,
        };
        assert_eq!(decode_producer(&encode_producer(&p)), Some(p));
    }

    #[test]
    fn foreign_records_are_refused() {
        assert!(decode_stream(b"{}", 0).is_none());
        assert!(decode_stream(b"garbage", 0).is_none());
        let mut v: serde_json::Value = serde_json::from_slice(&encode_stream(&meta())).unwrap();
        v["v"] = 2.into();
        assert!(decode_stream(&serde_json::to_vec(&v).unwrap(), 0).is_none());
        v["v"] = 1.into();
        v["parent"] = "not a topic\n".into();
        assert!(decode_stream(&serde_json::to_vec(&v).unwrap(), 0).is_none());
        assert!(decode_producer(b"{\"v\":2,\"epoch\":0,\"last_seq\":0,\"seen_ms\":0}").is_none());
    }
}
