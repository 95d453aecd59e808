//! `GET /.well-known/mercure`: the updates whose topics match the
//! subscriber's selectors (the spec's "Subscription" and "Reconnection"
//! sections).
//!
//! A subscriber reads the hub's one history of updates (see
//! `hub::mercure`) from where it resumes, and this body keeps the updates
//! it may see: one of their topics matches one of its selectors, and, for
//! a private update, one of their topics matches a selector of its token's
//! `mercure.subscribe`. Each stored update is decoded once for all
//! subscribers (see `decoded.rs`).
//!
//! The stream ends when the history can no longer give this subscriber
//! every update (it fell behind what the hub keeps): the client reconnects
//! with the last id it got and resumes from there. It also ends when its
//! token expires (`exp`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

use crate::core::event::frame_parts;
use crate::core::mercure::selector::Selector;
use crate::http::body::ResponseBody;
use crate::http::future::ResponseFuture;
use crate::http::mercure::auth::{Grant, MercureConfig, TokenError, query_pairs, unauthorized};
use crate::http::mercure::decoded::{DecodeCache, Decoded};
use crate::http::responses::{Attempt, hub_error, stream_headers, text};
use crate::http::service::SseService;
use crate::hub::mercure::{EVENT_TYPE, Resume};

/// The most `topic` selectors one subscription may have.
const MAX_SELECTORS: usize = 64;

/// Who reads, and what.
struct Reader {
    selectors: Vec<Selector>,
    /// The token's grant (none: anonymous, public updates only).
    grant: Option<Grant>,
    cache: Arc<DecodeCache>,
}

/// What to do with one block of the history's stream.
enum Block {
    Send(Bytes),
    Skip,
    /// The history can no longer serve this subscriber (or its token
    /// expired): end the response.
    End,
}

impl Reader {
    fn may_see(&self, d: &Decoded) -> bool {
        d.matches_any(&self.selectors)
            && (!d.private
                || self
                    .grant
                    .as_ref()
                    .is_some_and(|g| d.matches_any(&g.subscribe)))
    }

    /// One block of the native stream (an event, a comment, a checkpoint),
    /// written to `out` as the subscriber gets it; `false` ends the
    /// response.
    fn block(&self, mut block: Bytes, out: &mut BytesMut) -> bool {
        if block.starts_with(b":") {
            out.extend_from_slice(&block);
            return true;
        }
        if block.starts_with(b"retry:") {
            // The reconnection hint stays; what follows it in the same
            // block (a native checkpoint id, or the first event) is read
            // on its own.
            let Some(nl) = memchr::memchr(b'\n', &block) else {
                return true;
            };
            out.extend_from_slice(&block[..=nl]);
            out.extend_from_slice(b"\n");
            block = block.slice(nl + 1..);
        }
        match self.event(&block) {
            Block::Send(frame) => out.extend_from_slice(&frame),
            Block::Skip => {}
            Block::End => return false,
        }
        true
    }

    /// One event of the native stream.
    fn event(&self, block: &Bytes) -> Block {
        let Some(parts) = frame_parts(block) else {
            return Block::Skip;
        };
        if &block[parts.event_type.clone()] != EVENT_TYPE.as_bytes() {
            // `resync` (history went on without us) or `reauth` (the
            // token expired).
            return Block::End;
        }
        let data = &block[parts.data.clone()];
        let json = data
            .strip_prefix(b"data: ")
            .and_then(|d| d.strip_suffix(b"\n"))
            .unwrap_or_default();
        let id_line = &block[parts.data.end..block.len() - 2];
        let id = id_line.strip_prefix(b"id: ").unwrap_or(id_line);
        match self.cache.get(id, json) {
            Some(d) if self.may_see(&d) => Block::Send(d.frame.clone()),
            _ => Block::Skip,
        }
    }
}

pub(super) fn subscribe<B>(
    service: &SseService,
    mercure: &MercureConfig,
    req: &Request<B>,
) -> ResponseFuture {
    let query = query_pairs(req.uri().query());
    let grant = match mercure.grant(req.headers(), &query) {
        Ok(g) => g,
        Err(e) => return ResponseFuture::ready(unauthorized(e)),
    };
    if grant.is_none() && !mercure.allows_anonymous() {
        return ResponseFuture::ready(unauthorized(TokenError::Missing));
    }
    let mut selectors = Vec::new();
    for (k, v) in &query {
        if k == "topic" {
            match service.shared.mercure_selectors.get(v) {
                Some(s) => selectors.push(s),
                None => {
                    return ResponseFuture::ready(text(
                        StatusCode::BAD_REQUEST,
                        "a topic selector is 1 to 2048 bytes",
                    ));
                }
            }
        }
    }
    if selectors.is_empty() {
        return ResponseFuture::ready(text(
            StatusCode::BAD_REQUEST,
            "at least one topic selector is required (?topic=)",
        ));
    }
    if selectors.len() > MAX_SELECTORS {
        return ResponseFuture::ready(text(
            StatusCode::BAD_REQUEST,
            "at most 64 topic selectors per subscription",
        ));
    }
    // The header wins over the query parameter.
    // (An empty header is no header, as `EventSource` never sends one.)
    let requested = req
        .headers()
        .get("last-event-id")
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| k == "lastEventID")
                .map(|(_, v)| v.clone())
        });
    let resume = match requested.as_deref() {
        None => Resume::Live,
        Some("earliest") => Resume::Earliest,
        Some(id) => Resume::After(id.to_owned()),
    };
    if req.method() == http::Method::HEAD {
        // What a `GET` would answer, without opening a subscription (or
        // announcing one).
        let mut res = Response::new(ResponseBody::empty());
        stream_headers(res.headers_mut());
        return ResponseFuture::ready(res);
    }
    let hub = service.hub.clone();
    let cache = service.shared.mercure_cache.clone();
    let active = mercure
        .tracks_subscriptions()
        .then(|| service.shared.mercure_active.clone());
    let topics: Vec<String> = selectors.iter().map(|s| s.as_str().to_owned()).collect();
    let query_auth = req.headers().get(header::AUTHORIZATION).is_none()
        && query.iter().any(|(k, _)| k == "authorization");
    ResponseFuture::boxed(async move {
        let expires_at = grant.as_ref().and_then(|g| g.expires_at);
        if expires_at.is_some_and(|at| at <= std::time::SystemTime::now()) {
            return unauthorized(TokenError::Invalid);
        }
        let started = match hub.subscribe_mercure(&resume, expires_at).await {
            Ok(s) => s,
            Err(e) => return hub_error(&e, Attempt::Read),
        };
        // Its subscriptions last as long as its body.
        let open = match &active {
            Some(active) => Some(active.open(&hub, &topics, grant.as_ref()).await),
            None => None,
        };
        let reader = Reader {
            selectors,
            grant,
            cache,
        };
        let mut stream = started.stream;
        let counted = hub.mercure_subscriber();
        let body = ResponseBody::driven(move |emitter| async move {
            let _open = open;
            let _counted = counted;
            let mut pending = BytesMut::new();
            while let Some(Ok(frame)) = stream.frame().await {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                pending.extend_from_slice(&data);
                let mut out = BytesMut::new();
                let mut end = false;
                while let Some(at) = memchr::memmem::find(&pending, b"\n\n") {
                    let block = pending.split_to(at + 2).freeze();
                    if !reader.block(block, &mut out) {
                        end = true;
                        break;
                    }
                }
                if !out.is_empty() {
                    emitter.emit(out.freeze()).await;
                }
                if end {
                    return;
                }
            }
        });
        let mut res = Response::new(body);
        *res.status_mut() = StatusCode::OK;
        let h = res.headers_mut();
        stream_headers(h);
        if query_auth {
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            );
        }
        if requested.is_some() {
            let preceding = started.preceding.unwrap_or_else(|| "earliest".into());
            if let Ok(v) = HeaderValue::try_from(preceding) {
                h.insert("last-event-id", v);
            }
        }
        res
    })
}
