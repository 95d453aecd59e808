//! The protocol as a publisher and a subscriber meet it, in-process over
//! real sockets: what a `POST` answers and what it must not dispatch, who
//! may subscribe, which updates each selector gets (once), the frame, the
//! private updates and their claims, and resuming by Mercure id.
//!
//! "Nothing was dispatched" is checked without waiting on a clock: the
//! subscriber's next event must be a sentinel published after the update
//! that must not arrive.

use std::collections::HashSet;

use serde_json::json;
use ssehub::{Hub, SseService};

use crate::common::{
    HUB, assert_only_mercure_ids, config, events_through, form, ids, path, post, publish,
    publish_one, publisher, server, service, subscribe, subscribe_query, subscriber, token,
    token_with_key,
};
use crate::support::{Item, TestServer, header, request_full};

const BOOKS: &str = "https://example.com/books/{id}";

fn book(n: u32) -> String {
    format!("https://example.com/books/{n}")
}

#[tokio::test]
async fn a_publish_answers_its_id_as_text() {
    let server = server(false).await;
    let (status, headers, body) = post(
        server.addr,
        Some(&publisher()),
        &[
            ("topic", &book(1)),
            ("id", "urn:test:chosen"),
            ("data", "x"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "urn:test:chosen"));
    let ct = header(&headers, "content-type").unwrap();
    assert!(ct.starts_with("text/plain"), "{ct}");

    // Without an id, the hub makes a `urn:uuid:` (version 4), a new one
    // each time.
    let a = publish(server.addr, &[("topic", &book(1)), ("data", "y")]).await;
    let b = publish(server.addr, &[("topic", &book(1)), ("data", "z")]).await;
    for id in [&a, &b] {
        let uuid = id
            .strip_prefix("urn:uuid:")
            .unwrap_or_else(|| panic!("{id}"));
        let parts: Vec<_> = uuid.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12],
            "{id}"
        );
        assert!(uuid.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
        assert!(parts[2].starts_with('4'), "version 4: {id}");
    }
    assert_ne!(a, b);
    server.stop().await;
}

#[tokio::test]
async fn publishes_are_refused_with_the_spec_s_statuses() {
    let service = SseService::builder(Hub::new())
        .mercure(config(false))
        .max_body_bytes(1000)
        .build();
    let server = TestServer::start_service(service).await;
    let addr = server.addr;
    let topic = book(1);
    let ok: &[(&str, &str)] = &[("topic", &topic), ("data", "x")];

    // No token, and tokens the hub did not sign or cannot read.
    let other = token_with_key("another key", &json!({"mercure": {"publish": ["*"]}}));
    for t in [None, Some(other.as_str()), Some("not.a.jwt")] {
        let (status, headers, body) = post(addr, t, ok).await;
        assert_eq!(status, 401, "{t:?}: {body}");
        assert!(
            header(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")),
            "{headers:?}"
        );
    }
    // An expired token.
    let expired =
        token(&json!({"mercure": {"publish": ["*"]}, "exp": crate::common::now() - 3600}));
    assert_eq!(post(addr, Some(&expired), ok).await.0, 401);

    let p = publisher();
    let bad: &[(&str, &[(&str, &str)])] = &[
        ("no topic", &[("data", "x")]),
        ("an id starting with #", &[("topic", &topic), ("id", "#1")]),
        (
            "a retry that is no number",
            &[("topic", &topic), ("retry", "soon")],
        ),
        ("a negative retry", &[("topic", &topic), ("retry", "-5")]),
    ];
    for (what, fields) in bad {
        let (status, _, body) = post(addr, Some(&p), fields).await;
        assert_eq!(status, 400, "{what}: {body}");
    }

    let bearer = format!("Bearer {p}");
    for ct in [
        "text/plain",
        "application/json",
        "multipart/form-data; boundary=x",
    ] {
        let (status, _, body) = request_full(
            addr,
            "POST",
            HUB,
            &[("Content-Type", ct), ("Authorization", &bearer)],
            form(ok).as_bytes(),
        )
        .await;
        assert_eq!(status, 415, "{ct}: {body}");
    }
    // No content type at all.
    let (status, _, _) = request_full(
        addr,
        "POST",
        HUB,
        &[("Authorization", &bearer)],
        form(ok).as_bytes(),
    )
    .await;
    assert_eq!(status, 415);

    let big = "y".repeat(1200);
    let (status, _, body) = post(addr, Some(&p), &[("topic", &topic), ("data", &big)]).await;
    assert_eq!(status, 413, "{body}");
    // The same hub takes what fits.
    let fits = "y".repeat(900);
    let (status, _, body) = post(addr, Some(&p), &[("topic", &topic), ("data", &fits)]).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn the_publish_claim_must_cover_every_topic_or_nothing_is_dispatched() {
    let server = server(false).await;
    let addr = server.addr;
    let mut sub = subscribe(addr, &["*"], Some(&publisher()), &[]).await;
    assert_eq!(sub.status, 200);

    let books_only = token(&json!({"mercure": {"publish": [BOOKS]}}));
    // The canonical topic is covered, the alternate is not.
    let (status, _, body) = post(
        addr,
        Some(&books_only),
        &[
            ("topic", &book(1)),
            ("topic", "https://example.com/authors/1"),
            ("id", "urn:test:forbidden"),
            ("data", "must not arrive"),
        ],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // The alternate is covered, the canonical is not.
    let (status, _, _) = post(
        addr,
        Some(&books_only),
        &[
            ("topic", "https://example.com/authors/1"),
            ("topic", &book(1)),
            ("id", "urn:test:forbidden2"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    // A token without any publish claim.
    let (status, _, _) = post(addr, Some(&subscriber(&["*"])), &[("topic", &book(1))]).await;
    assert_eq!(status, 403);
    // Both topics covered by the template.
    let (status, _, body) = post(
        addr,
        Some(&books_only),
        &[
            ("topic", &book(2)),
            ("topic", &book(3)),
            ("id", "urn:test:allowed"),
            ("data", "allowed"),
        ],
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "urn:test:allowed"));

    let got = events_through(&mut sub, "urn:test:allowed").await;
    assert_eq!(ids(&got), ["urn:test:allowed"], "{got:?}");
    // The refused ids are free: nothing was kept either.
    publish_one(addr, &book(1), "urn:test:forbidden", "now allowed").await;
    let got = sub.next_event().await;
    assert_eq!(
        (got.last_event_id.as_str(), got.data.as_str()),
        ("urn:test:forbidden", "now allowed")
    );
    server.stop().await;
}

#[tokio::test]
async fn an_id_already_in_history_is_409_and_dispatches_nothing() {
    let server = server(false).await;
    let addr = server.addr;
    let mut sub = subscribe(addr, &["*"], Some(&publisher()), &[]).await;
    publish_one(addr, &book(1), "urn:test:dup", "first").await;
    let (status, _, body) = post(
        addr,
        Some(&publisher()),
        &[
            ("topic", &book(2)),
            ("id", "urn:test:dup"),
            ("data", "second"),
        ],
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // The very same update again (a retry): a conflict too, not a second
    // `200` for what was published once.
    let (status, _, body) = post(
        addr,
        Some(&publisher()),
        &[
            ("topic", &book(1)),
            ("id", "urn:test:dup"),
            ("data", "first"),
        ],
    )
    .await;
    assert_eq!(status, 409, "the same update sent again: {body}");
    publish_one(addr, &book(1), "urn:test:after", "after").await;
    let got = events_through(&mut sub, "urn:test:after").await;
    let seen: Vec<_> = got
        .iter()
        .map(|e| (e.last_event_id.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        seen,
        [("urn:test:dup", "first"), ("urn:test:after", "after")]
    );
    // A late subscriber reading history sees the first one only, too.
    let mut late = subscribe(
        addr,
        &["*"],
        Some(&publisher()),
        &[("Last-Event-ID", "earliest")],
    )
    .await;
    let got = events_through(&mut late, "urn:test:after").await;
    assert_eq!(ids(&got), ["urn:test:dup", "urn:test:after"]);
    assert_eq!(got[0].data, "first");
    server.stop().await;
}

#[tokio::test]
async fn the_token_comes_from_the_header_else_the_query_else_the_cookie() {
    let server = server(false).await;
    let addr = server.addr;
    let p = publisher();
    let body = form(&[("topic", &book(1)), ("data", "x")]);
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let cookie = format!("theme=dark; mercureAuthorization={p}");
    let bad_cookie = "mercureAuthorization=nope".to_owned();
    let bearer = format!("Bearer {p}");
    let bad_bearer = "Bearer nope".to_owned();
    let query = format!("{HUB}?authorization={p}");
    let bad_query = format!("{HUB}?authorization=nope");
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str, u16);
    let cases: Vec<Case> = vec![
        ("cookie", vec![ct, ("Cookie", &cookie)], HUB, 200),
        ("query", vec![ct], &query, 200),
        ("header", vec![ct, ("Authorization", &bearer)], HUB, 200),
        (
            "the query wins over the cookie",
            vec![ct, ("Cookie", &bad_cookie)],
            &query,
            200,
        ),
        (
            "the query wins over the cookie, invalid",
            vec![ct, ("Cookie", &cookie)],
            &bad_query,
            401,
        ),
        (
            "the header wins over the query",
            vec![ct, ("Authorization", &bearer)],
            &bad_query,
            200,
        ),
        (
            "the header wins, invalid",
            vec![ct, ("Authorization", &bad_bearer), ("Cookie", &cookie)],
            &query,
            401,
        ),
    ];
    for (what, headers, target, want) in cases {
        let (status, _, answer) =
            request_full(addr, "POST", target, &headers, body.as_bytes()).await;
        assert_eq!(status, want, "{what}: {answer}");
    }
    server.stop().await;
}

#[tokio::test]
async fn subscriptions_need_a_topic_and_a_token_unless_anonymous() {
    let server = server(false).await;
    let addr = server.addr;
    let t = subscriber(&[]);
    // No topic.
    let c = subscribe_query(addr, HUB, Some(&t), &[]).await;
    assert_eq!(c.status, 400);
    let c = subscribe_query(addr, &format!("{HUB}?topic="), Some(&t), &[]).await;
    assert_eq!(c.status, 400);
    // No token, or a bad one.
    for bad in [None, Some("nope")] {
        let c = subscribe(addr, &[&book(1)], bad, &[]).await;
        assert_eq!(c.status, 401, "{bad:?}");
        assert!(c.header("www-authenticate").is_some());
    }
    // A token with no claims at all is a valid subscriber (public updates).
    let mut c = subscribe(addr, &[&book(1)], Some(&token(&json!({}))), &[]).await;
    assert_eq!(c.status, 200);
    let ct = c.header("content-type").unwrap();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    publish_one(addr, &book(1), "urn:test:1", "x").await;
    assert_eq!(c.next_event().await.last_event_id, "urn:test:1");
    server.stop().await;

    let anonymous = crate::common::server(true).await;
    let mut c = subscribe(anonymous.addr, &[&book(1)], None, &[]).await;
    assert_eq!(c.status, 200);
    publish_one(anonymous.addr, &book(1), "urn:test:2", "y").await;
    assert_eq!(c.next_event().await.last_event_id, "urn:test:2");
    // Anonymous is allowed; a bad token still is not.
    let c = subscribe(anonymous.addr, &[&book(1)], Some("nope"), &[]).await;
    assert_eq!(c.status, 401);
    anonymous.stop().await;
}

#[tokio::test]
async fn selectors_match_exactly_by_template_or_all_and_deliver_once() {
    let server = server(true).await;
    let addr = server.addr;
    let mut exact = subscribe(addr, &[&book(1)], None, &[]).await;
    let mut template = subscribe(addr, &[BOOKS], None, &[]).await;
    let mut all = subscribe(addr, &["*"], None, &[]).await;
    // Several selectors matching several topics of one update.
    let mut many = subscribe(
        addr,
        &[&book(1), BOOKS, "https://example.com/authors/{a}", "*"],
        None,
        &[],
    )
    .await;
    let mut none = subscribe(addr, &["https://example.com/films/{id}"], None, &[]).await;

    let authors = "https://example.com/authors/7";
    let updates: &[(&str, &[&str])] = &[
        ("urn:t:a", &[&book(1)]),
        ("urn:t:b", &[&book(2)]),
        ("urn:t:c", &[authors]),
        // Canonical and alternates all matched by several selectors.
        ("urn:t:d", &[&book(1), &book(2), authors]),
        // The template matches one path segment only.
        ("urn:t:e", &["https://example.com/books/1/chapters/2"]),
        // Only the alternate matches the exact selector.
        ("urn:t:f", &["https://example.com/shelves/9", &book(1)]),
        // A template as a topic matches itself.
        ("urn:t:g", &[BOOKS]),
    ];
    for (id, topics) in updates {
        let mut fields: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
        fields.push(("id", id));
        fields.push(("data", id));
        assert_eq!(publish(addr, &fields).await, *id);
    }
    // The sentinel every subscriber but `none` matches.
    publish(
        addr,
        &[
            ("topic", &book(1)),
            ("topic", "https://example.com/films/1"),
            ("id", "urn:t:end"),
        ],
    )
    .await;
    let cases: [(&str, &mut crate::support::SseClient, Vec<&str>); 5] = [
        (
            "exact",
            &mut exact,
            vec!["urn:t:a", "urn:t:d", "urn:t:f", "urn:t:end"],
        ),
        (
            "template",
            &mut template,
            vec![
                "urn:t:a",
                "urn:t:b",
                "urn:t:d",
                "urn:t:f",
                "urn:t:g",
                "urn:t:end",
            ],
        ),
        (
            "all",
            &mut all,
            vec![
                "urn:t:a",
                "urn:t:b",
                "urn:t:c",
                "urn:t:d",
                "urn:t:e",
                "urn:t:f",
                "urn:t:g",
                "urn:t:end",
            ],
        ),
        (
            "many",
            &mut many,
            vec![
                "urn:t:a",
                "urn:t:b",
                "urn:t:c",
                "urn:t:d",
                "urn:t:e",
                "urn:t:f",
                "urn:t:g",
                "urn:t:end",
            ],
        ),
        ("none", &mut none, vec!["urn:t:end"]),
    ];
    for (who, client, want) in cases {
        let got = events_through(client, "urn:t:end").await;
        assert_eq!(ids(&got), want, "{who}");
        for e in &got {
            if e.last_event_id != "urn:t:end" {
                assert_eq!(e.data, e.last_event_id, "{who}");
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_frame_has_the_type_retry_data_lines_and_the_mercure_id_only() {
    let server = server(true).await;
    let addr = server.addr;
    let mut c = subscribe(addr, &[BOOKS], None, &[]).await;
    publish(
        addr,
        &[
            ("topic", &book(1)),
            ("id", "urn:test:frame"),
            ("type", "book-updated"),
            ("retry", "5000"),
            ("data", "line 1\nline 2\r\nline 3"),
        ],
    )
    .await;
    publish(
        addr,
        &[
            ("topic", &book(2)),
            ("id", "urn:test:plain"),
            ("data", "{\"a\":1}"),
        ],
    )
    .await;
    // Not matched by the selector: neither its frame nor its id may reach
    // the subscriber.
    publish(
        addr,
        &[
            ("topic", "https://example.com/other"),
            ("id", "urn:test:unseen"),
        ],
    )
    .await;
    publish_one(addr, &book(3), "urn:test:last", "").await;

    let mut items = Vec::new();
    loop {
        let item = c.next_item().await.expect("the stream goes on");
        let last = matches!(&item, Item::Event(e) if e.last_event_id == "urn:test:last");
        items.push(item);
        if last {
            break;
        }
    }
    let raw = String::from_utf8(c.raw.clone()).unwrap();
    assert!(
        raw.contains(
            "event: book-updated\nretry: 5000\ndata: line 1\ndata: line 2\ndata: line 3\nid: urn:test:frame\n\n"
        ),
        "{raw}"
    );
    assert!(
        raw.contains("data: {\"a\":1}\nid: urn:test:plain\n\n"),
        "{raw}"
    );
    // An update with empty data is one empty data line (an event whose
    // data is empty).
    assert!(raw.contains("data: \nid: urn:test:last\n\n"), "{raw}");
    assert!(!raw.contains("urn:test:unseen"), "{raw}");
    let published: HashSet<String> = ["urn:test:frame", "urn:test:plain", "urn:test:last"]
        .map(String::from)
        .into();
    assert_only_mercure_ids(&c.raw, &published);

    let events: Vec<_> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 3, "{items:?}");
    assert_eq!(events[0].event_type, "book-updated");
    assert_eq!(events[0].data, "line 1\nline 2\nline 3");
    assert_eq!(events[1].event_type, "message");
    assert_eq!(events[2].data, "");
    assert!(items.contains(&Item::Retry(5000)), "{items:?}");
    server.stop().await;
}

/// The spec's example: a subscriber may receive private updates whose
/// canonical or alternate topic its `mercure.subscribe` matches.
#[tokio::test]
async fn private_updates_reach_only_subscribers_whose_claim_matches_a_topic() {
    let server = server(true).await;
    let addr = server.addr;
    let foo = subscriber(&["https://example.com/users/foo/{?topic}"]);
    let by_canonical = subscriber(&[&book(3)]);
    let everything = subscriber(&["*"]);
    let no_claim = subscriber(&[]);
    let mut foo_c = subscribe(addr, &[BOOKS], Some(&foo), &[]).await;
    let mut canonical_c = subscribe(addr, &[BOOKS], Some(&by_canonical), &[]).await;
    let mut all_c = subscribe(addr, &[BOOKS], Some(&everything), &[]).await;
    let mut none_c = subscribe(addr, &[BOOKS], Some(&no_claim), &[]).await;
    let mut anon_c = subscribe(addr, &[BOOKS], None, &[]).await;

    let for_foo = |n: u32| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("topic", &book(n));
        format!("https://example.com/users/foo/?{}", s.finish())
    };
    let for_bar = "https://example.com/users/bar/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F2";
    let private: &[(&str, Vec<String>)] = &[
        // Foo's alternate topic.
        ("urn:p:foo", vec![book(1), for_foo(1)]),
        // Bar's: not foo's.
        ("urn:p:bar", vec![book(2), for_bar.to_owned()]),
        // The canonical topic matches `by_canonical`'s claim.
        ("urn:p:canonical", vec![book(3)]),
    ];
    for (id, topics) in private {
        let mut fields: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", t.as_str())).collect();
        fields.extend([("id", *id), ("data", "secret"), ("private", "on")]);
        assert_eq!(publish(addr, &fields).await, *id);
    }
    publish_one(addr, &book(4), "urn:p:public", "public").await;

    let cases = [
        ("foo", &mut foo_c, vec!["urn:p:foo", "urn:p:public"]),
        (
            "canonical",
            &mut canonical_c,
            vec!["urn:p:canonical", "urn:p:public"],
        ),
        (
            "everything",
            &mut all_c,
            vec!["urn:p:foo", "urn:p:bar", "urn:p:canonical", "urn:p:public"],
        ),
        ("no claim", &mut none_c, vec!["urn:p:public"]),
        ("anonymous", &mut anon_c, vec!["urn:p:public"]),
    ];
    for (who, client, want) in cases {
        let got = events_through(client, "urn:p:public").await;
        assert_eq!(ids(&got), want, "{who}");
        let raw = String::from_utf8_lossy(&client.raw);
        if !want.contains(&"urn:p:bar") {
            assert!(!raw.contains("urn:p:bar"), "{who}: {raw}");
        }
    }
    // History keeps them private too: an anonymous subscriber replaying
    // from the start sees the public one only.
    let mut replay = subscribe(addr, &["*"], None, &[("Last-Event-ID", "earliest")]).await;
    let got = events_through(&mut replay, "urn:p:public").await;
    assert_eq!(ids(&got), ["urn:p:public"]);
    server.stop().await;
}

/// Publishes `urn:r:1..=n` on book 1, with an update on another topic
/// after each.
async fn history(server: &TestServer, n: u32) {
    for i in 1..=n {
        publish_one(server.addr, &book(1), &format!("urn:r:{i}"), &i.to_string()).await;
        publish_one(
            server.addr,
            "https://example.com/elsewhere",
            &format!("urn:r:other:{i}"),
            "other",
        )
        .await;
    }
}

#[tokio::test]
async fn resuming_after_an_id_sends_exactly_the_matching_updates_after_it() {
    let server = server(true).await;
    let addr = server.addr;
    history(&server, 5).await;
    let topics: &[&str] = &[&book(1)];

    let mut c = subscribe(addr, topics, None, &[("Last-Event-ID", "urn:r:2")]).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.header("last-event-id"), Some("urn:r:2"));
    // By the query parameter (for clients that cannot set the header).
    let mut q = subscribe_query(
        addr,
        &path(topics, &[("lastEventID", "urn:r:4")]),
        None,
        &[],
    )
    .await;
    assert_eq!(q.header("last-event-id"), Some("urn:r:4"));
    // The header wins over the query.
    let mut both = subscribe_query(
        addr,
        &path(topics, &[("lastEventID", "urn:r:1")]),
        None,
        &[("Last-Event-ID", "urn:r:3")],
    )
    .await;
    assert_eq!(both.header("last-event-id"), Some("urn:r:3"));
    // Resuming after an update the subscriber does not match works too.
    let mut other = subscribe(addr, topics, None, &[("Last-Event-ID", "urn:r:other:3")]).await;
    assert_eq!(other.header("last-event-id"), Some("urn:r:other:3"));
    // Live: no header.
    let mut live = subscribe(addr, topics, None, &[]).await;
    assert_eq!(live.header("last-event-id"), None);

    publish_one(addr, &book(1), "urn:r:6", "6").await;
    let cases = [
        (
            "header",
            &mut c,
            vec!["urn:r:3", "urn:r:4", "urn:r:5", "urn:r:6"],
        ),
        ("query", &mut q, vec!["urn:r:5", "urn:r:6"]),
        (
            "header over query",
            &mut both,
            vec!["urn:r:4", "urn:r:5", "urn:r:6"],
        ),
        (
            "after an unmatched one",
            &mut other,
            vec!["urn:r:4", "urn:r:5", "urn:r:6"],
        ),
        ("live", &mut live, vec!["urn:r:6"]),
    ];
    for (who, client, want) in cases {
        let got = events_through(client, "urn:r:6").await;
        assert_eq!(ids(&got), want, "{who}");
    }
    // Resuming after the newest: nothing to replay, then the next one.
    let mut newest = subscribe(addr, topics, None, &[("Last-Event-ID", "urn:r:6")]).await;
    assert_eq!(newest.header("last-event-id"), Some("urn:r:6"));
    publish_one(addr, &book(1), "urn:r:7", "7").await;
    assert_eq!(
        ids(&events_through(&mut newest, "urn:r:7").await),
        ["urn:r:7"]
    );
    server.stop().await;
}

#[tokio::test]
async fn earliest_and_unknown_ids_start_from_the_oldest_update_kept() {
    // History keeps the last 6 updates (3 matching).
    let hub = Hub::builder().buffer(6).build();
    let server = TestServer::start_service(service(hub, true)).await;
    let addr = server.addr;
    history(&server, 5).await;
    let topics: &[&str] = &[&book(1)];
    let kept = ["urn:r:3", "urn:r:4", "urn:r:5"];

    for (what, value) in [
        ("earliest", "earliest"),
        ("an id never published", "urn:r:nope"),
        ("an id history dropped", "urn:r:1"),
    ] {
        for by_query in [false, true] {
            let mut c = if by_query {
                subscribe_query(addr, &path(topics, &[("lastEventID", value)]), None, &[]).await
            } else {
                subscribe(addr, topics, None, &[("Last-Event-ID", value)]).await
            };
            assert_eq!(c.status, 200, "{what}");
            assert_eq!(c.header("last-event-id"), Some("earliest"), "{what}");
            let got = events_through(&mut c, "urn:r:5").await;
            assert_eq!(ids(&got), kept, "{what} (query: {by_query})");
        }
    }
    // An id still kept resumes after it.
    let mut c = subscribe(addr, topics, None, &[("Last-Event-ID", "urn:r:3")]).await;
    assert_eq!(c.header("last-event-id"), Some("urn:r:3"));
    assert_eq!(
        ids(&events_through(&mut c, "urn:r:5").await),
        ["urn:r:4", "urn:r:5"]
    );
    server.stop().await;
}

#[tokio::test]
async fn no_native_id_reaches_a_subscriber_in_any_mode() {
    let server = server(true).await;
    let addr = server.addr;
    history(&server, 3).await;
    let mut published: HashSet<String> = HashSet::new();
    for i in 1..=4 {
        published.insert(format!("urn:r:{i}"));
        published.insert(format!("urn:r:other:{i}"));
    }
    let modes: [&[(&str, &str)]; 4] = [
        &[],
        &[("Last-Event-ID", "earliest")],
        &[("Last-Event-ID", "urn:r:2")],
        &[("Last-Event-ID", "urn:r:unknown")],
    ];
    let mut clients = Vec::new();
    for headers in modes {
        clients.push(subscribe(addr, &[&book(1), "*"], None, headers).await);
    }
    publish_one(addr, &book(1), "urn:r:4", "4").await;
    for mut c in clients {
        events_through(&mut c, "urn:r:4").await;
        assert_only_mercure_ids(&c.raw, &published);
        assert!(!c.raw.is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn ids_and_types_with_line_breaks_are_refused() {
    let server = server(true).await;
    let p = publisher();
    let topic = book(1);
    for fields in [
        [("topic", topic.as_str()), ("id", "urn:a\nid: k3f9-1")],
        [("topic", topic.as_str()), ("id", "urn:a\rb")],
        [("topic", topic.as_str()), ("type", "t\ndata: injected")],
    ] {
        let (status, _, body) = post(server.addr, Some(&p), &fields).await;
        assert_eq!(status, 400, "{fields:?}: {body}");
    }
    server.stop().await;
}

/// The updates live in the reserved topic `mercure:updates`: the native
/// API must not reach it (it would show private updates and native ids).
#[tokio::test]
async fn the_updates_topic_is_out_of_the_native_api_s_reach() {
    let server = server(true).await;
    let addr = server.addr;
    let mut fields = vec![("topic", "https://example.com/secret"), ("private", "on")];
    fields.push(("id", "urn:test:secret"));
    fields.push(("data", "secret"));
    publish(addr, &fields).await;
    for (method, target) in [
        ("GET", "/events/mercure:updates"),
        ("GET", "/events/mercure:updates?lastEventId=earliest"),
        ("GET", "/events?topic=news&topic=mercure:updates"),
        ("POST", "/events/mercure:updates"),
        ("HEAD", "/events/mercure:updates"),
    ] {
        let (status, _, body) = request_full(addr, method, target, &[], b"x").await;
        assert_eq!(status, 400, "{method} {target}: {body}");
        assert!(!body.contains("secret"), "{method} {target}: {body}");
    }
    let refused = server
        .hub
        .publish("mercure:updates", ssehub::Event::new("x"))
        .await;
    assert!(
        matches!(refused, Err(ssehub::HubError::ReservedTopic(_))),
        "{refused:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_hub_without_updates_yet_resumes_from_the_start() {
    let server = server(true).await;
    let addr = server.addr;
    let mut unknown = subscribe(addr, &["*"], None, &[("Last-Event-ID", "urn:never")]).await;
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.header("last-event-id"), Some("earliest"));
    let mut earliest = subscribe(addr, &["*"], None, &[("Last-Event-ID", "earliest")]).await;
    assert_eq!(earliest.status, 200);
    assert_eq!(earliest.header("last-event-id"), Some("earliest"));
    publish_one(addr, &book(1), "urn:first", "1").await;
    for c in [&mut unknown, &mut earliest] {
        assert_eq!(ids(&events_through(c, "urn:first").await), ["urn:first"]);
    }
    server.stop().await;
}

/// Many publishers racing with one id: one update, the others `409`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_of_one_id_make_one_update() {
    let server = server(true).await;
    let addr = server.addr;
    let mut sub = subscribe(addr, &["*"], None, &[]).await;
    for round in 0..5 {
        let id = format!("urn:race:{round}");
        let mut tasks = Vec::new();
        for i in 0..8 {
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let data = i.to_string();
                let (status, _, body) = post(
                    addr,
                    Some(&publisher()),
                    &[("topic", &book(1)), ("id", &id), ("data", &data)],
                )
                .await;
                (status, body)
            }));
        }
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
        let conflicts = statuses.iter().filter(|(s, _)| *s == 409).count();
        assert_eq!((ok, conflicts), (1, 7), "{statuses:?}");
        let end = format!("urn:race:end:{round}");
        publish_one(addr, &book(1), &end, "end").await;
        assert_eq!(
            ids(&events_through(&mut sub, &end).await),
            [id, end.clone()]
        );
    }
    server.stop().await;
}

/// A large multi-line update arrives whole, split into `data:` lines, in
/// however many chunks the connection carries it; a charset parameter on
/// the form's content type is fine.
#[tokio::test]
async fn a_large_multi_line_update_arrives_whole() {
    let server = server(true).await;
    let addr = server.addr;
    let mut c = subscribe(addr, &[BOOKS], None, &[]).await;
    let line = |i: usize| format!("{i:06} \"quoted\" <tag> & {}", "x".repeat(80));
    let data: Vec<String> = (0..4000).map(line).collect();
    let data = data.join("\n");
    assert!(data.len() > 300_000 && data.len() < 1 << 20);
    let body = form(&[("topic", &book(1)), ("id", "urn:big"), ("data", &data)]);
    let bearer = format!("Bearer {}", publisher());
    let (status, _, answer) = request_full(
        addr,
        "POST",
        HUB,
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            ),
            ("Authorization", &bearer),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!((status, answer.as_str()), (200, "urn:big"));
    publish_one(addr, &book(2), "urn:after-big", "small").await;
    let got = events_through(&mut c, "urn:after-big").await;
    assert_eq!(ids(&got), ["urn:big", "urn:after-big"]);
    assert!(got[0].data == data, "the data differs");
    let data_lines = String::from_utf8_lossy(&c.raw)
        .lines()
        .filter(|l| l.starts_with("data: "))
        .count();
    assert_eq!(data_lines, 4001);
    server.stop().await;
}

/// A token is valid only signed with the hub's key in HS256 and within
/// its time: not after `exp`, not before `nbf` (RFC 7519 §4.1.5, which
/// ssehub's own JWTs check too).
#[tokio::test]
async fn tokens_unsigned_of_another_algorithm_or_not_yet_valid_are_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let server = server(false).await;
    let addr = server.addr;
    let claims = json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}});
    let b64 = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims)
    );
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(crate::common::KEY.as_bytes()),
    )
    .unwrap();
    let mut later = claims.clone();
    later["nbf"] = json!(crate::common::now() + 3600);
    let not_yet = token(&later);
    for (what, t) in [
        ("alg none", unsigned.as_str()),
        ("HS512", hs512.as_str()),
        ("nbf in an hour", not_yet.as_str()),
    ] {
        let (status, _, body) = post(addr, Some(t), &[("topic", &book(1))]).await;
        assert_eq!(status, 401, "publishing with {what}: {body}");
        let c = subscribe(addr, &[&book(1)], Some(t), &[]).await;
        assert_eq!(c.status, 401, "subscribing with {what}");
    }
    // The same claims, signed right and already valid.
    let mut now = claims.clone();
    now["nbf"] = json!(crate::common::now() - 10);
    let (status, _, body) = post(addr, Some(&token(&now)), &[("topic", &book(1))]).await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

/// A subscriber that reads too slowly for the history: its stream never
/// skips an update silently. It ends instead; resuming with the last id it
/// got, it learns that updates were lost (`Last-Event-ID: earliest`, the
/// id being gone) and starts again from the oldest kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_left_behind_by_history_is_ended_never_skipped() {
    let hub = Hub::builder().buffer(16).build();
    let server = TestServer::start_service(service(hub, true)).await;
    let addr = server.addr;
    let mut c = subscribe(addr, &[&book(1)], None, &[]).await;
    // Not read while published: the socket buffers fill, the hub's ring
    // of 16 moves on.
    let data = "z".repeat(4000);
    let total = 2000u32;
    for i in 1..=total {
        publish_one(addr, &book(1), &format!("urn:slow:{i}"), &data).await;
    }
    let mut got = Vec::new();
    while let Some(item) = c.next_item().await {
        if let Item::Event(e) = item {
            got.push(e.last_event_id);
        }
    }
    assert!(!got.is_empty());
    let want: Vec<String> = (1..=got.len()).map(|i| format!("urn:slow:{i}")).collect();
    assert_eq!(got, want, "one connection, no gap");
    let last = got.last().unwrap().clone();
    if got.len() as u32 == total {
        // The machine read fast enough after all: nothing to check.
        return;
    }
    let mut again = subscribe(addr, &[&book(1)], None, &[("Last-Event-ID", &last)]).await;
    assert_eq!(again.header("last-event-id"), Some("earliest"));
    let first = again.next_event().await.last_event_id;
    assert_eq!(first, format!("urn:slow:{}", total - 15));
    server.stop().await;
}

/// The hub counts Mercure updates, duplicate ids and connected subscribers
/// (`HubStats`, and so `/metrics`).
#[tokio::test]
async fn the_hub_counts_updates_duplicates_and_subscribers() {
    let hub = Hub::new();
    let server = TestServer::start_service(service(hub.clone(), true)).await;
    let addr = server.addr;
    let mut sub = subscribe(addr, &["*"], None, &[]).await;
    publish_one(addr, &book(1), "urn:count:1", "one").await;
    let (status, _, _) = post(
        addr,
        Some(&publisher()),
        &[
            ("topic", &book(2)),
            ("id", "urn:count:1"),
            ("data", "again"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    publish_one(addr, &book(1), "urn:count:2", "two").await;
    events_through(&mut sub, "urn:count:2").await;
    let s = hub.stats();
    assert_eq!(
        (
            s.mercure_updates,
            s.mercure_duplicates,
            s.mercure_subscribers
        ),
        (2, 1, 1)
    );
    drop(sub);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while hub.stats().mercure_subscribers != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a subscriber that left is still counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.stop().await;
}
