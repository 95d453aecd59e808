//! What a stream request asks for in its query and headers: where to
//! resume (`Last-Event-ID`, `?lastEventId=`), `?limit=`, `?rewind=`, and
//! the topics of `GET /events?topic=a&topic=b`.

use http::Request;
use http::header;

use crate::core::TopicName;
use crate::hub::Subscribe;

/// Topics that cannot be on a stream of several topics: their events
/// would be typed as ssehub's own signals.
const RESERVED_ON_MULTI: [&str; 2] = [
    crate::core::RESYNC_EVENT_TYPE,
    crate::core::REAUTH_EVENT_TYPE,
];

/// The query parameters of a stream request.
#[derive(Debug, Default)]
struct StreamQuery {
    last_event_id: Option<String>,
    limit: Option<u64>,
    rewind: Option<u64>,
}

impl StreamQuery {
    fn parse(query: Option<&str>) -> Result<StreamQuery, &'static str> {
        let mut q = StreamQuery::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "lastEventId" if q.last_event_id.is_none() && !v.is_empty() => {
                    q.last_event_id = Some(v.into_owned());
                }
                "limit" => {
                    q.limit =
                        Some(parse_limit(&v).ok_or("invalid limit: expected an integer from 1")?)
                }
                "rewind" => {
                    q.rewind =
                        Some(parse_count(&v).ok_or("invalid rewind: expected an integer from 0")?)
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

fn parse_limit(v: &str) -> Option<u64> {
    parse_count(v).filter(|&n| n > 0)
}

/// A decimal count: digits only (no sign, no spaces), fits in a `u64`.
fn parse_count(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// What a stream request asks for: `Last-Event-ID` (the header, else
/// `?lastEventId=`; an empty one is none), `?limit=` and `?rewind=`.
pub(crate) fn subscribe_options(
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<Subscribe, &'static str> {
    let query = StreamQuery::parse(uri.query())?;
    let mut options = Subscribe::new();
    // The header wins over the query parameter.
    let header_id = headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|v| !v.is_empty());
    if let Some(id) = header_id.or(query.last_event_id) {
        options = options.last_event_id(id);
    }
    if let Some(n) = query.limit {
        options = options.limit(n);
    }
    if let Some(n) = query.rewind {
        options = options.rewind(n);
    }
    Ok(options)
}

/// The length of the head of a reconnect of the stream `req` opens (a
/// request without a last event id): `req` as HTTP/1.1 sends it, with the
/// stream's id at its longest added twice, in `Last-Event-ID` and in
/// `?lastEventId=` (a page that resumes with the query parameter gets the
/// header too when its `EventSource` reconnects).
pub(crate) fn reconnect_head_len<B>(req: &Request<B>, topics: usize) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    // `GET <target> HTTP/1.1\r\n`, each header, the empty line.
    let mut len = req.method().as_str().len() + 1 + target + 11;
    for (name, value) in req.headers() {
        len += name.as_str().len() + 2 + value.len() + 2;
    }
    if req.headers().get(header::HOST).is_none() {
        // HTTP/2's `:authority` is a `Host` header in HTTP/1.1.
        len += req
            .uri()
            .authority()
            .map_or(0, |a| 6 + a.as_str().len() + 2);
    }
    len += 2;
    let id = crate::core::multi_id::max_len(topics);
    len + "last-event-id: ".len() + id + 2 + "&lastEventId=".len() + id
}

/// The topics of `GET /events?topic=a&topic=b`: at least one, at most
/// `max`, each a valid name, none twice, none that would pass for
/// ssehub's own signals.
pub(crate) fn query_topics(query: Option<&str>, max: usize) -> Result<Vec<TopicName>, String> {
    let mut topics: Vec<TopicName> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "topic" {
            continue;
        }
        if topics.len() == max {
            return Err(format!("too many topics: at most {max} per stream"));
        }
        let topic = TopicName::new(&*v).map_err(|e| {
            let mut shown: String = v.chars().take(64).collect();
            if shown.len() < v.len() {
                shown.push_str("...");
            }
            format!("topic {shown:?}: {e}")
        })?;
        if RESERVED_ON_MULTI.contains(&topic.as_str()) {
            return Err(format!(
                "topic \"{topic}\" cannot be on a stream of several topics: \
                 its events would be taken for ssehub's own `{topic}` events"
            ));
        }
        if topics.contains(&topic) {
            return Err(format!("topic \"{topic}\" is named twice"));
        }
        topics.push(topic);
    }
    if topics.is_empty() {
        return Err("no topic: name them with ?topic=a&topic=b".to_owned());
    }
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(parse_limit("1"), Some(1));
        assert_eq!(parse_limit("100"), Some(100));
        for bad in ["", "0", "-1", "+1", "1.5", "abc", "18446744073709551616"] {
            assert_eq!(parse_limit(bad), None, "{bad}");
        }
    }

    #[test]
    fn query() {
        let q = StreamQuery::parse(Some("lastEventId=ab-3&limit=5&x=y")).unwrap();
        assert_eq!(q.last_event_id.as_deref(), Some("ab-3"));
        assert_eq!(q.limit, Some(5));
        let q = StreamQuery::parse(Some("lastEventId=a%2Db-3")).unwrap();
        assert_eq!(q.last_event_id.as_deref(), Some("a-b-3"));
        assert!(StreamQuery::parse(Some("limit=0")).is_err());
        assert!(StreamQuery::parse(None).unwrap().last_event_id.is_none());
    }
}
