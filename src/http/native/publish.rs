//! `POST /events/{topic}`: publishes one event (a text body, typed by
//! `?event=`) or, with a JSON body, one event object or a batch, once per
//! `Idempotency-Key`.
//!
//! JSON bodies are one event object, or an array of them:
//!
//! ```json
//! {"data": "hello", "event": "greeting"}
//! [{"data": "one"}, {"data": {"n": 2}}]
//! ```
//!
//! `data` is required; a string is sent as is, any other JSON value as its
//! compact JSON text. `event` is optional (a string, or null for the
//! default). Any other field is an error, and so is any invalid event: a
//! batch is published all or nothing.
//!
//! `Idempotency-Key` is read by [`IdempotencyKey::from_header`]: one header,
//! a quoted string or a bare key.

use std::fmt;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;
use serde_json::{Map, Value};

use crate::core::event::{Event, EventError};
use crate::core::idempotency::IdempotencyKey;
use crate::core::{EventId, TopicName};
use crate::http::auth::AccessRequest;
use crate::http::body::ResponseBody;
use crate::http::future::ResponseFuture;
use crate::http::request_body;
use crate::http::responses::{
    Attempt, IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED, hub_error, json, text,
};
use crate::http::service::SseService;
use crate::hub::Receipt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Answers a publish to `topic`.
pub(crate) fn publish<B>(service: &SseService, topic: &str, req: Request<B>) -> ResponseFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let topic = match TopicName::new(topic) {
        Ok(topic) => topic,
        Err(e) => return ResponseFuture::ready(hub_error(&e.into(), Attempt::Write)),
    };
    if let Some(refused) = service.config.cors.refuse_publish(&req) {
        return ResponseFuture::ready(refused);
    }
    let mut event_type = None;
    for (k, v) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes()) {
        if k == "event" {
            if let Err(e) = crate::core::event::validate_type(&v) {
                return ResponseFuture::ready(text(StatusCode::BAD_REQUEST, &e.to_string()));
            }
            event_type = Some(v.into_owned());
        }
    }
    let verdict = service
        .config
        .policy()
        .publish(&AccessRequest::new(&req), &topic);
    if let Some(res) = verdict.refusal(None) {
        return ResponseFuture::ready(res);
    }
    let key = match idempotency_key(req.headers()) {
        Ok(key) => key,
        Err(msg) => return ResponseFuture::ready(text(StatusCode::BAD_REQUEST, &msg)),
    };
    let max = service.config.max_body_bytes;
    if let Some(res) = request_body::refuse_declared(req.headers(), max, req.version()) {
        return ResponseFuture::ready(res);
    }
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json_type);
    let hub = service.hub.clone();
    let version = req.version();
    ResponseFuture::boxed(async move {
        let bytes = match request_body::collect(req.into_body(), max, version).await {
            Ok(bytes) => bytes,
            Err(res) => return res,
        };
        let request = if is_json {
            match parse_json(&bytes) {
                Ok(request) => request,
                Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
            }
        } else {
            let mut event = match Event::from_utf8(bytes) {
                Ok(ev) => ev,
                Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            if let Some(t) = event_type {
                event = match event.with_type(t) {
                    Ok(ev) => ev,
                    Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
                };
            }
            Publish::One(event)
        };
        let receipt = |ids, replayed| Receipt { ids, replayed };
        let outcome = match (request, key) {
            (Publish::One(event), None) => hub
                .publish(&topic, event)
                .await
                .map(|id| receipt(Ids::One(id), false)),
            (Publish::Batch(events), None) => hub
                .publish_batch(&topic, events)
                .await
                .map(|ids| receipt(Ids::Batch(ids), false)),
            (Publish::One(event), Some(key)) => hub
                .publish_idempotent(&topic, &key, event)
                .await
                .map(|r| receipt(Ids::One(r.ids), r.replayed)),
            (Publish::Batch(events), Some(key)) => hub
                .publish_batch_idempotent(&topic, &key, events)
                .await
                .map(|r| receipt(Ids::Batch(r.ids), r.replayed)),
        };
        match outcome {
            Ok(receipt) => published(receipt),
            Err(e) => hub_error(&e, Attempt::Write),
        }
    })
}

/// The ids a publish answers with: `{"id":...}` for one event,
/// `{"ids":[...]}` for a batch.
enum Ids {
    One(EventId),
    Batch(Vec<EventId>),
}

/// The `201` of a publish, marked `Idempotent-Replayed: true` when it
/// repeats the answer of an earlier request with the same key.
fn published(receipt: Receipt<Ids>) -> Response<ResponseBody> {
    let body = match receipt.ids {
        Ids::One(id) => format!("{{\"id\":\"{id}\"}}\n"),
        Ids::Batch(ids) => {
            let list: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
            format!("{{\"ids\":[{}]}}\n", list.join(","))
        }
    };
    let mut res = json(StatusCode::CREATED, body);
    if receipt.replayed {
        res.headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    res
}

fn is_json_type(ct: &str) -> bool {
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.len() > 5 && essence[essence.len() - 5..].eq_ignore_ascii_case("+json")
}

/// The request's idempotency key, if it has one.
pub(crate) fn idempotency_key(headers: &http::HeaderMap) -> Result<Option<IdempotencyKey>, String> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("invalid Idempotency-Key: more than one".to_owned());
    }
    IdempotencyKey::from_header(value.as_bytes())
        .map(Some)
        .map_err(|e| e.to_string())
}

/// What a publish request publishes: one event (a text body or a JSON
/// object, answered with its `id`) or a batch (a JSON array, answered with
/// `ids`). An event and a batch of that one event are different requests.
#[derive(Debug)]
pub(crate) enum Publish {
    One(Event),
    Batch(Vec<Event>),
}

/// Why a JSON publish body was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum BodyError {
    /// Not JSON (the parser's error is the source).
    Syntax(serde_json::Error),
    /// Neither an object nor an array of objects.
    Shape,
    /// An empty array.
    Empty,
    /// Event `index` (from 0) has no `data`.
    MissingData(usize),
    /// Event `index` has a field other than `data` and `event`.
    UnknownField(usize, String),
    /// Event `index` has an `event` that is not a string.
    TypeNotString(usize),
    /// Event `index` is invalid.
    Event(usize, EventError),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // serde_json's messages are one line and say where.
            BodyError::Syntax(e) => write!(f, "invalid JSON: {e}"),
            BodyError::Shape => f.write_str("expected an event object or an array of them"),
            BodyError::Empty => f.write_str("empty batch"),
            BodyError::MissingData(i) => write!(f, "event {i}: missing `data`"),
            BodyError::UnknownField(i, k) => {
                write!(
                    f,
                    "event {i}: unknown field {k:?} (expected `data`, `event`)"
                )
            }
            BodyError::TypeNotString(i) => write!(f, "event {i}: `event` must be a string"),
            BodyError::Event(i, e) => write!(f, "event {i}: {e}"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Syntax(e) => Some(e),
            BodyError::Event(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Parses a JSON publish body.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Publish, BodyError> {
    let value: Value = serde_json::from_slice(bytes).map_err(BodyError::Syntax)?;
    match value {
        Value::Object(obj) => Ok(Publish::One(event(0, obj)?)),
        Value::Array(items) if items.is_empty() => Err(BodyError::Empty),
        Value::Array(items) => {
            let events = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(obj) => event(i, obj),
                    _ => Err(BodyError::Shape),
                })
                .collect::<Result<_, _>>()?;
            Ok(Publish::Batch(events))
        }
        _ => Err(BodyError::Shape),
    }
}

fn event(i: usize, mut obj: Map<String, Value>) -> Result<Event, BodyError> {
    let data = obj.remove("data").ok_or(BodyError::MissingData(i))?;
    let ty = obj.remove("event");
    if let Some(k) = obj.keys().next() {
        return Err(BodyError::UnknownField(i, k.clone()));
    }
    let data = match data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let ev = Event::new(data);
    match ty {
        None | Some(Value::Null) => Ok(ev),
        Some(Value::String(t)) => ev.with_type(t).map_err(|e| BodyError::Event(i, e)),
        Some(_) => Err(BodyError::TypeNotString(i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_idempotency_key_header_at_most() {
        let mut h = http::HeaderMap::new();
        assert_eq!(idempotency_key(&h), Ok(None));
        h.insert(IDEMPOTENCY_KEY, "\"k-1\"".parse().unwrap());
        assert_eq!(idempotency_key(&h).unwrap().unwrap().as_str(), "k-1");
        h.append(IDEMPOTENCY_KEY, "k-1".parse().unwrap());
        assert_eq!(
            idempotency_key(&h),
            Err("invalid Idempotency-Key: more than one".to_owned())
        );
        h.insert(IDEMPOTENCY_KEY, "".parse().unwrap());
        assert_eq!(
            idempotency_key(&h),
            Err("invalid Idempotency-Key: empty".to_owned())
        );
    }

    #[test]
    fn one_object() {
        let Ok(Publish::One(e)) = parse_json(br#"{"data":"hi","event":"greet"}"#) else {
            panic!("one event");
        };
        assert_eq!(e.data(), "hi");
        assert_eq!(e.event_type(), Some("greet"));
    }

    #[test]
    fn arrays_and_non_string_data() {
        let b = parse_json(br#"[{"data":"a"},{"data":{"n":2},"event":null},{"data":3}]"#).unwrap();
        let Publish::Batch(events) = b else {
            panic!("a batch");
        };
        let data: Vec<_> = events.iter().map(|e| e.data().to_owned()).collect();
        assert_eq!(data, vec!["a", r#"{"n":2}"#, "3"]);
        assert!(matches!(parse_json(br#"[{"data":"a"}]"#), Ok(Publish::Batch(e)) if e.len() == 1));
    }

    #[test]
    fn errors() {
        use BodyError::*;
        let err = |body: &[u8]| match parse_json(body) {
            Err(e) => e,
            Ok(_) => panic!("accepted {:?}", String::from_utf8_lossy(body)),
        };
        let syntax = err(b"{");
        assert!(matches!(syntax, Syntax(_)));
        assert!(
            std::error::Error::source(&syntax).is_some(),
            "keeps the cause"
        );
        assert!(matches!(err(b"3"), Shape));
        assert!(matches!(err(b"[1]"), Shape));
        assert!(matches!(err(b"[]"), Empty));
        assert!(matches!(err(br#"[{"data":"a"},{}]"#), MissingData(1)));
        assert!(matches!(err(br#"{"data":"a","id":"x"}"#), UnknownField(0, k) if k == "id"));
        assert!(matches!(
            err(br#"{"data":"a","event":1}"#),
            TypeNotString(0)
        ));
        assert!(matches!(
            err(br#"[{"data":"a"},{"data":"b","event":"x\ny"}]"#),
            Event(1, EventError::LineBreakInType)
        ));
        for e in [err(b"{"), Shape, Empty, MissingData(0)] {
            assert!(!e.to_string().contains('\n'));
        }
    }
}
