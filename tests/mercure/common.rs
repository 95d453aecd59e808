//! What every Mercure test needs: tokens signed with the `jsonwebtoken`
//! crate, a hub in this process, a publisher that posts forms, a
//! subscriber over a raw socket, and the checks on what it received.

use std::collections::HashSet;
use std::net::SocketAddr;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use ssehub::http::MercureConfig;
use ssehub::{Hub, SseService};

use crate::support::{Headers, SseClient, SseEvent, TestServer, request_full};

/// The hub's key (HS256).
pub(crate) const KEY: &str = "mercure-tests-key-of-32-bytes-at-least";

/// The hub's path.
pub(crate) const HUB: &str = "/.well-known/mercure";

/// A token signed with `key` carrying `claims`.
pub(crate) fn token_with_key(key: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("a token")
}

/// A token of the hub's key carrying `claims`.
pub(crate) fn token(claims: &Value) -> String {
    token_with_key(KEY, claims)
}

/// A token that may publish to every topic.
pub(crate) fn publisher() -> String {
    token(&json!({"mercure": {"publish": ["*"]}}))
}

/// A token whose `mercure.subscribe` is `selectors` (private updates).
pub(crate) fn subscriber(selectors: &[&str]) -> String {
    token(&json!({"mercure": {"subscribe": selectors}}))
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The Mercure service on `hub`, tokens signed with [`KEY`].
pub(crate) fn service(hub: Hub, anonymous: bool) -> SseService {
    SseService::builder(hub).mercure(config(anonymous)).build()
}

pub(crate) fn config(anonymous: bool) -> MercureConfig {
    MercureConfig::try_hs256(KEY.as_bytes())
        .expect("a key")
        .anonymous(anonymous)
}

/// A hub in this process with the default settings.
pub(crate) async fn server(anonymous: bool) -> TestServer {
    TestServer::start_service(service(Hub::new(), anonymous)).await
}

/// A form body.
pub(crate) fn form(fields: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

/// `POST /.well-known/mercure` with `fields` form-encoded and `token` as a
/// bearer token: status, headers, body.
pub(crate) async fn post(
    addr: SocketAddr,
    token: Option<&str>,
    fields: &[(&str, &str)],
) -> (u16, Headers, String) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b));
    }
    request_full(addr, "POST", HUB, &headers, form(fields).as_bytes()).await
}

/// Publishes with a token that may publish anywhere; the update must be
/// accepted. Returns its id.
pub(crate) async fn publish(addr: SocketAddr, fields: &[(&str, &str)]) -> String {
    let (status, _, body) = post(addr, Some(&publisher()), fields).await;
    assert_eq!(status, 200, "publishing {fields:?}: {body}");
    body
}

/// Publishes a public update with `id` on `topic` whose data is `data`.
pub(crate) async fn publish_one(addr: SocketAddr, topic: &str, id: &str, data: &str) {
    let got = publish(addr, &[("topic", topic), ("id", id), ("data", data)]).await;
    assert_eq!(got, id);
}

/// The hub's path with `topic` selectors and other query pairs.
pub(crate) fn path(topics: &[&str], extra: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for t in topics {
        s.append_pair("topic", t);
    }
    for (k, v) in extra {
        s.append_pair(k, v);
    }
    format!("{HUB}?{}", s.finish())
}

/// Subscribes to `topics` with `token` (bearer, if any) and `headers`.
pub(crate) async fn subscribe(
    addr: SocketAddr,
    topics: &[&str],
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> SseClient {
    subscribe_query(addr, &path(topics, &[]), token, headers).await
}

/// Subscribes to `path` with `token` (bearer, if any) and `headers`.
pub(crate) async fn subscribe_query(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> SseClient {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(b) = &bearer {
        all.push(("Authorization", b));
    }
    SseClient::get(addr, path, &all).await
}

/// The events `c` receives up to and including the one with id `last`
/// (bounded: each must come within the support's wait).
pub(crate) async fn events_through(c: &mut SseClient, last: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    loop {
        let e = c.next_event().await;
        let done = e.last_event_id == last;
        out.push(e);
        if done {
            return out;
        }
    }
}

/// The ids of `events`.
pub(crate) fn ids(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(|e| e.last_event_id.clone()).collect()
}

/// The value of every `id:` line of a stream.
pub(crate) fn id_lines(raw: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw)
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.strip_prefix(' ').unwrap_or(v).to_owned())
        .collect()
}

/// Whether `id` looks like one of ssehub's native ids (`epoch-seq`).
pub(crate) fn looks_native(id: &str) -> bool {
    id.rsplit_once('-').is_some_and(|(epoch, seq)| {
        !epoch.is_empty()
            && epoch.bytes().all(|b| b.is_ascii_alphanumeric())
            && !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Every `id:` line of `raw` is one of `published` (a Mercure id): no
/// native id reached the client.
pub(crate) fn assert_only_mercure_ids(raw: &[u8], published: &HashSet<String>) {
    for id in id_lines(raw) {
        assert!(
            !looks_native(&id) && published.contains(&id),
            "an id the client must not see: {id:?} in\n{}",
            String::from_utf8_lossy(raw)
        );
    }
}
