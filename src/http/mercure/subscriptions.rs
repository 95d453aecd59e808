//! Active subscriptions (the spec's "Active Subscriptions" section, with
//! `--mercure-subscriptions`): a private update on
//! `/.well-known/mercure/subscriptions/{topic}/{subscriber}` whenever a
//! subscription starts or ends, and the web API that lists the
//! subscriptions of this node.
//!
//! Each `topic` selector of a `GET` is one subscription; the subscriber is
//! one `urn:uuid:` for all of them. The events go through the hub's
//! history like any update, so a client resuming after them misses none.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::core::mercure::HUB_PATH as BASE;
use crate::core::mercure::update::{Update, new_id};
use crate::http::body::ResponseBody;
use crate::http::mercure::auth::Grant;
use crate::http::responses::text;
use crate::hub::Hub;

/// One subscription: a selector of a subscriber.
#[derive(Debug, Clone)]
struct Subscription {
    topic: String,
    subscriber: String,
    payload: Option<Value>,
}

/// The subscriptions open on this node, by (topic, subscriber).
#[derive(Default)]
pub(crate) struct Active(Mutex<BTreeMap<(String, String), Subscription>>);

/// Percent-encodes everything but unreserved characters (RFC 6570's
/// simple expansion).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn id_of(topic: &str, subscriber: &str) -> String {
    format!(
        "{BASE}/subscriptions/{}/{}",
        encode(topic),
        encode(subscriber)
    )
}

impl Subscription {
    fn document(&self, active: bool) -> Value {
        let mut doc = json!({
            "@context": "https://mercure.rocks/",
            "id": id_of(&self.topic, &self.subscriber),
            "type": "Subscription",
            "topic": self.topic,
            "subscriber": self.subscriber,
            "active": active,
        });
        if let Some(p) = &self.payload {
            doc["payload"] = p.clone();
        }
        doc
    }

    /// The private update that announces it.
    fn update(&self, active: bool) -> Update {
        Update {
            id: new_id(),
            topics: vec![id_of(&self.topic, &self.subscriber)],
            private: true,
            event_type: None,
            retry: None,
            data: self.document(active).to_string(),
        }
    }
}

/// A subscriber's subscriptions while its response lives: dropping it
/// ends them (and announces it).
pub(crate) struct Open {
    hub: Hub,
    active: Arc<Active>,
    subs: Vec<Subscription>,
}

impl Active {
    /// Opens the subscriptions of one subscriber and announces them.
    pub(crate) async fn open(
        self: &Arc<Self>,
        hub: &Hub,
        topics: &[String],
        grant: Option<&Grant>,
    ) -> Open {
        let subscriber = new_id();
        let payload = grant.and_then(|g| g.payload.clone());
        let subs: Vec<Subscription> = topics
            .iter()
            .map(|t| Subscription {
                topic: t.clone(),
                subscriber: subscriber.clone(),
                payload: payload.clone(),
            })
            .collect();
        {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            for s in &subs {
                map.insert((s.topic.clone(), s.subscriber.clone()), s.clone());
            }
        }
        for s in &subs {
            if let Err(e) = hub.publish_mercure(&s.update(true)).await {
                tracing::warn!(error = ?e, "cannot publish a subscription event");
            }
        }
        Open {
            hub: hub.clone(),
            active: self.clone(),
            subs,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        {
            let mut map = self.active.0.lock().unwrap_or_else(PoisonError::into_inner);
            for s in &self.subs {
                map.remove(&(s.topic.clone(), s.subscriber.clone()));
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (hub, subs) = (self.hub.clone(), std::mem::take(&mut self.subs));
        runtime.spawn(async move {
            for s in subs {
                if let Err(e) = hub.publish_mercure(&s.update(false)).await {
                    tracing::debug!(error = ?e, "cannot publish a subscription's end");
                }
            }
        });
    }
}

/// `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`
/// (`rest` is what follows `subscriptions`), for a token whose
/// `mercure.subscribe` matches the requested path.
pub(crate) fn api(
    hub: &Hub,
    active: &Active,
    path: &str,
    rest: &str,
    grant: &Grant,
) -> Response<ResponseBody> {
    if !grant.subscribe.iter().any(|s| s.matches(path)) {
        return text(
            StatusCode::FORBIDDEN,
            "the token's mercure.subscribe does not cover this URL",
        );
    }
    let parts: Vec<Option<String>> = rest
        .split('/')
        .filter(|p| !p.is_empty())
        .map(percent_decode)
        .collect();
    if parts.iter().any(Option::is_none) {
        return text(StatusCode::BAD_REQUEST, "bad percent-encoding in the URL");
    }
    let mut parts = parts.into_iter().flatten();
    let (topic, subscriber) = (parts.next(), parts.next());
    if parts.next().is_some() {
        return text(StatusCode::NOT_FOUND, "no such subscription resource");
    }
    let last = hub
        .last_mercure_id()
        .unwrap_or_else(|| "earliest".to_owned());
    let map = active.0.lock().unwrap_or_else(PoisonError::into_inner);
    let doc = match (topic, subscriber) {
        (Some(t), Some(s)) => match map.get(&(t, s)) {
            Some(sub) => {
                let mut doc = sub.document(true);
                doc["lastEventID"] = last.into();
                doc
            }
            None => return text(StatusCode::NOT_FOUND, "no such subscription"),
        },
        (topic, _) => {
            let subs: Vec<Value> = map
                .values()
                .filter(|s| topic.as_ref().is_none_or(|t| *t == s.topic))
                .map(|s| {
                    let mut d = s.document(true);
                    d.as_object_mut().map(|o| o.remove("@context"));
                    d
                })
                .collect();
            json!({
                "@context": "https://mercure.rocks/",
                "id": path,
                "type": "Subscriptions",
                "lastEventID": last,
                "subscriptions": subs,
            })
        }
    };
    drop(map);
    let mut res = Response::new(ResponseBody::full(doc.to_string()));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ld+json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("must-revalidate"),
    );
    res
}

/// `%XX` decoded (nothing else changes); `None` if malformed or not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_expansions_of_the_spec_s_template() {
        assert_eq!(
            id_of(
                "https://example.com/{selector}",
                "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"
            ),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6"
        );
        assert_eq!(percent_decode("a%2Fb%7B").as_deref(), Some("a/b{"));
        assert_eq!(percent_decode("a%2"), None);
    }
}
