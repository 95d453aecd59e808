//! `POST /.well-known/mercure`: an update, form-encoded (the spec's
//! "Publication" section), from a publisher whose token's
//! `mercure.publish` selectors match every topic of the update.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body;

use crate::core::mercure::update::{Update, new_id};
use crate::http::body::ResponseBody;
use crate::http::future::ResponseFuture;
use crate::http::mercure::auth::{MercureConfig, TokenError, query_pairs, unauthorized};
use crate::http::request_body;
use crate::http::responses::{Attempt, hub_error, text};
use crate::http::service::SseService;
use crate::hub::mercure::MercureError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(super) fn publish<B>(
    service: &SseService,
    mercure: &MercureConfig,
    req: Request<B>,
) -> ResponseFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    // As for native publishing: from a page of another origin only if
    // `--cors-origin` lists it (a token in a cookie must not let any page
    // publish in its holder's name).
    if let Some(refused) = service.config.cors.refuse_publish(&req) {
        return ResponseFuture::ready(refused);
    }
    let query = query_pairs(req.uri().query());
    let grant = match mercure.grant(req.headers(), &query) {
        Ok(Some(g)) => g,
        Ok(None) => return ResponseFuture::ready(unauthorized(TokenError::Missing)),
        Err(e) => return ResponseFuture::ready(unauthorized(e)),
    };
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return ResponseFuture::ready(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an update is application/x-www-form-urlencoded",
        ));
    }
    let max = service.config.max_body_bytes;
    let version = req.version();
    if let Some(res) = request_body::refuse_declared(req.headers(), max, version) {
        return ResponseFuture::ready(res);
    }
    let hub = service.hub.clone();
    ResponseFuture::boxed(async move {
        let body = match request_body::collect(req.into_body(), max, version).await {
            Ok(b) => b,
            Err(res) => return res,
        };
        let update = match parse(&body) {
            Ok(u) => u,
            Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
        };
        if let Some(t) = update.topics.iter().find(|t| !grant.may_publish(t)) {
            return text(
                StatusCode::FORBIDDEN,
                &format!(
                    "the token's mercure.publish does not cover the topic {t:?}: nothing was published"
                ),
            );
        }
        match hub.publish_mercure(&update).await {
            Ok(()) => {
                let mut res = Response::new(ResponseBody::full(update.id));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                res
            }
            Err(MercureError::Update(e)) => text(StatusCode::BAD_REQUEST, &e.to_string()),
            Err(MercureError::DuplicateId) => text(
                StatusCode::CONFLICT,
                "an update with this id is in the hub's history: nothing was published",
            ),
            Err(MercureError::Hub(e)) => hub_error(&e, Attempt::Write),
        }
    })
}

/// The update a form describes; the hub makes an id when it has none.
fn parse(body: &[u8]) -> Result<Update, &'static str> {
    let mut update = Update {
        id: String::new(),
        topics: Vec::new(),
        private: false,
        event_type: None,
        retry: None,
        data: String::new(),
    };
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "topic" => update.topics.push(v.into_owned()),
            "data" => update.data = v.into_owned(),
            "id" => update.id = v.into_owned(),
            "type" => update.event_type = Some(v.into_owned()).filter(|t| !t.is_empty()),
            "retry" => {
                update.retry = Some(
                    v.parse()
                        .map_err(|_| "retry must be a number of milliseconds")?,
                )
            }
            "private" => update.private = true,
            _ => {}
        }
    }
    if update.id.is_empty() {
        update.id = new_id();
    }
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let u =
            parse(b"topic=a&topic=https%3A%2F%2Fx%2F1&data=x%0Ay&id=i&type=t&retry=5&private=on")
                .unwrap();
        assert_eq!(u.topics, ["a", "https://x/1"]);
        assert_eq!((u.data.as_str(), u.id.as_str()), ("x\ny", "i"));
        assert_eq!(
            (u.event_type.as_deref(), u.retry, u.private),
            (Some("t"), Some(5), true)
        );
        let made = parse(b"topic=a").unwrap();
        assert!(
            made.id.starts_with("urn:uuid:") && made.id.len() == 45,
            "{}",
            made.id
        );
        assert_ne!(made.id, parse(b"topic=a").unwrap().id);
        assert!(parse(b"topic=a&retry=soon").is_err());
    }
}
