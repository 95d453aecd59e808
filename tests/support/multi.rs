//! Reading the ids of multi-topic streams the way a client would, from the
//! format the README documents (none of ssehub's code): for two topics or
//! more, a check of the list of topics and `_`, then parts joined by `.`,
//! one per topic in the request's order, each `<epoch>-<seq>` or just
//! `<seq>` when the epoch is the part before's.

use super::flaky::Seen;

/// The id of each topic inside a multi-topic id.
///
/// # Panics
///
/// If `id` is not one (a test failure).
pub fn topic_ids(id: &str) -> Vec<String> {
    let mut epoch = None;
    let parts = match id.split_once('_') {
        Some((check, parts)) => {
            assert!(
                check.len() == 5 && check.bytes().all(|b| b.is_ascii_alphanumeric()),
                "bad check in {id:?}"
            );
            parts
        }
        None => id,
    };
    parts
        .split('.')
        .map(|part| match part.rsplit_once('-') {
            Some((e, seq)) => {
                assert!(
                    !e.is_empty() && seq.parse::<u64>().is_ok(),
                    "bad part {part:?} in {id:?}"
                );
                epoch = Some(e.to_owned());
                part.to_owned()
            }
            None => {
                assert!(part.parse::<u64>().is_ok(), "bad part {part:?} in {id:?}");
                format!("{}-{part}", epoch.as_deref().expect("an epoch first"))
            }
        })
        .collect()
}

/// The topic of an event on a multi-topic stream, from its type (`topic`
/// or `topic/type`).
pub fn topic_of(event_type: &str) -> &str {
    event_type.split('/').next().unwrap_or(event_type)
}

/// What one client saw, split per topic: for every topic, its events as
/// `(the topic's own id, data)` and, in order with them, its `resync`s,
/// ready for `check_exactly_once` and `check_gaps_announced`.
#[derive(Debug, Default, Clone)]
pub struct PerTopic {
    pub events: Vec<(String, String)>,
    pub seen: Vec<Seen>,
}

/// Splits `(event type, stream id, data)` items (a `resync` has type
/// `resync` and its JSON as data) into per-topic logs. Checks on the way
/// that every event's id moved only its own topic's part (exactness per
/// topic is for `check_exactly_once`).
pub fn split(topics: &[String], items: &[(String, String, String)]) -> Vec<PerTopic> {
    let mut out = vec![PerTopic::default(); topics.len()];
    let mut last: Option<Vec<String>> = None;
    for (ty, id, data) in items {
        let ids = topic_ids(id);
        assert_eq!(ids.len(), topics.len(), "an id with a part per topic: {id}");
        if ty == "resync" {
            let json: serde_json::Value = serde_json::from_str(data).expect("resync JSON");
            let topic = json["topic"].as_str().expect("a resync names its topic");
            let i = topics
                .iter()
                .position(|t| t == topic)
                .expect("one of the stream's topics");
            out[i].seen.push(Seen::Resync(json));
            last = Some(ids);
            continue;
        }
        let topic = topic_of(ty);
        let i = topics
            .iter()
            .position(|t| t == topic)
            .unwrap_or_else(|| panic!("event of type {ty:?} is of no topic of the stream"));
        if let Some(before) = &last {
            for (j, (b, a)) in before.iter().zip(&ids).enumerate() {
                if j != i && b != a {
                    // Another topic's part moved: only across a new
                    // connection's replay does that happen, never within
                    // one event.
                    panic!(
                        "event of {topic} ({id}) moved the part of {} ({b} -> {a})",
                        topics[j]
                    );
                }
            }
        }
        last = Some(ids.clone());
        out[i].events.push((ids[i].clone(), data.clone()));
        out[i].seen.push(Seen::Event(ids[i].clone(), data.clone()));
    }
    out
}

/// The check at the start of the ids of the stream of `topics` on the
/// server at `addr` (`HEAD` answers an id of it), with its `_`.
pub async fn check_of(addr: std::net::SocketAddr, topics: &[&str]) -> String {
    let q: Vec<String> = topics.iter().map(|t| format!("topic={t}")).collect();
    let path = format!("/events?{}", q.join("&"));
    let (status, headers, _) = super::request_full(addr, "HEAD", &path, &[], b"").await;
    assert_eq!(status, 200, "HEAD {path}");
    let id = super::header(&headers, "last-event-id").expect("a position");
    let (check, _) = id.split_once('_').expect("a check");
    format!("{check}_")
}
