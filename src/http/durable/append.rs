//! `POST /v1/stream/{path}`: appends the body (for JSON streams, each value
//! of an array), once per `Stream-Seq` and per producer sequence, and
//! closes the stream with `Stream-Closed: true` (with or without data).

use http::header::{self, HeaderMap};
use http::{Request, StatusCode};
use http_body::Body;

use crate::core::TopicName;
use crate::core::durable::json;
use crate::core::durable::meta::{MAX_TOKEN_LEN, ProducerClaim, Write, is_json};
use crate::http::durable::wire::{
    CLOSED, PRODUCER_EPOCH, PRODUCER_ID, PRODUCER_SEQ, Refused, SEQ, error, one_header, value,
    with_tail,
};
use crate::http::future::ResponseFuture;
use crate::http::request_body;
use crate::http::responses::{Attempt, text};
use crate::http::service::SseService;
use crate::hub::durable::Appended;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest producer epoch or sequence: what every client can count to
/// exactly (JavaScript's safe integers).
const MAX_PRODUCER_NUMBER: u64 = (1 << 53) - 1;

/// What the headers of an append say.
struct Headers {
    content_type: Option<String>,
    stream_seq: Option<Vec<u8>>,
    producer: Option<ProducerClaim>,
    close: bool,
}

pub(super) fn append<B>(service: &SseService, topic: TopicName, req: Request<B>) -> ResponseFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let headers = match parse(req.headers()) {
        Ok(h) => h,
        Err(refused) => return ResponseFuture::ready(refused.response()),
    };
    let max = service.config.max_body_bytes;
    if let Some(res) = request_body::refuse_declared(req.headers(), max, req.version()) {
        return ResponseFuture::ready(res);
    }
    let hub = service.hub.clone();
    let version = req.version();
    ResponseFuture::boxed(async move {
        let body = match request_body::collect(req.into_body(), max, version).await {
            Ok(body) => body,
            Err(res) => return res,
        };
        if body.is_empty() && !headers.close {
            return text(
                StatusCode::BAD_REQUEST,
                "empty body: an append needs data (or Stream-Closed: true to close)",
            );
        }
        let has_body = !body.is_empty();
        if has_body && headers.content_type.is_none() {
            return text(StatusCode::BAD_REQUEST, "Content-Type is required");
        }
        let ct = headers.content_type.as_deref();
        // Parsed for the request's own content type: the stream's rules
        // refuse a mismatch first, so a JSON stream only gets JSON here.
        let frame = if !has_body {
            Ok(None)
        } else if ct.is_some_and(is_json) {
            json::frame(&body, false)
        } else {
            Ok(Some(body))
        };
        let write = Write {
            content_type: ct,
            has_body,
            stream_seq: headers.stream_seq.as_deref(),
            producer: headers.producer.clone(),
            close: headers.close,
        };
        match hub.append_stream(&topic, &write, frame).await {
            Ok(Appended::Fresh { tail, closed }) => {
                // A producer's append says which sequence it accepted; a
                // close without data is `204` for everyone.
                let code = if headers.producer.is_some() && has_body {
                    StatusCode::OK
                } else {
                    StatusCode::NO_CONTENT
                };
                let mut res = with_tail(code, tail, closed);
                if let Some(p) = &headers.producer {
                    producer_headers(res.headers_mut(), p.epoch, p.seq);
                }
                res
            }
            Ok(Appended::Duplicate {
                tail,
                closed,
                last_seq,
            }) => {
                let mut res = with_tail(StatusCode::NO_CONTENT, tail, closed);
                if let Some(p) = &headers.producer {
                    producer_headers(res.headers_mut(), p.epoch, last_seq);
                }
                res
            }
            Err(e) => error(e, Attempt::Write),
        }
    })
}

fn producer_headers(h: &mut HeaderMap, epoch: u64, seq: u64) {
    h.insert(PRODUCER_EPOCH, value(epoch));
    h.insert(PRODUCER_SEQ, value(seq));
}

fn parse(h: &HeaderMap) -> Result<Headers, Refused> {
    let bad = |msg: &'static str| Refused::bad(msg);
    let content_type = one_header(h, &header::CONTENT_TYPE)?
        .filter(|ct| !ct.trim().is_empty())
        .map(str::to_owned);
    let stream_seq = match h.get(SEQ) {
        Some(v) if v.len() > MAX_TOKEN_LEN => {
            return Err(bad("Stream-Seq is longer than 256 bytes"));
        }
        Some(v) => Some(v.as_bytes().to_vec()),
        None => None,
    };
    let id = one_header(h, &PRODUCER_ID)?;
    let epoch = one_header(h, &PRODUCER_EPOCH)?;
    let seq = one_header(h, &PRODUCER_SEQ)?;
    let producer = match (id, epoch, seq) {
        (None, None, None) => None,
        (Some(id), Some(epoch), Some(seq)) => {
            if id.is_empty() || id.len() > MAX_TOKEN_LEN {
                return Err(bad("Producer-Id must be 1 to 256 bytes"));
            }
            Some(ProducerClaim {
                id: id.into(),
                epoch: number(epoch)
                    .ok_or_else(|| bad("Producer-Epoch must be a non-negative integer"))?,
                seq: number(seq)
                    .ok_or_else(|| bad("Producer-Seq must be a non-negative integer"))?,
            })
        }
        _ => {
            return Err(bad(
                "Producer-Id, Producer-Epoch and Producer-Seq go together",
            ));
        }
    };
    let close = one_header(h, &CLOSED)?.is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Ok(Headers {
        content_type,
        stream_seq,
        producer,
        close,
    })
}

/// Digits only, at most [`MAX_PRODUCER_NUMBER`].
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n <= MAX_PRODUCER_NUMBER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_numbers_are_plain_safe_integers() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("9007199254740991"), Some(MAX_PRODUCER_NUMBER));
        for bad in ["", "-1", "1abc", "1e3", "1.0", " 1", "9007199254740992"] {
            assert_eq!(number(bad), None, "{bad}");
        }
    }
}
