//! Many topics on one stream, over real sockets: `GET
//! /events?topic=a&topic=b`, its validation, authorisation per topic, the
//! id that is a cursor for every topic (resume across cuts, exactly once
//! per topic), per-topic `resync`, `HEAD`, `rewind`, `limit`, and HTTP/2.

mod support;

use std::time::Duration;

#[cfg(feature = "jwt")]
use ssehub::http::JwtKey;
use ssehub::http::{AccessRequest, Authorize, Decision};
use ssehub::{Event, Hub, SseService};
use support::flaky::check_exactly_once;
#[cfg(feature = "jwt")]
use support::jwt::{mint_hs256, now};
use support::multi::{split, topic_ids};
use support::{Item, SseClient, TestServer, events, request, request_full};

fn path(topics: &[&str]) -> String {
    let q: Vec<String> = topics.iter().map(|t| format!("topic={t}")).collect();
    format!("/events?{}", q.join("&"))
}

/// (type, id, data) of the events and resyncs among items.
fn items(list: &[Item]) -> Vec<(String, String, String)> {
    events(list)
        .into_iter()
        .map(|e| (e.event_type, e.last_event_id, e.data))
        .collect()
}

#[tokio::test]
async fn a_request_that_is_not_a_stream_of_several_topics_gets_a_precise_400() {
    let service = SseService::builder(Hub::new())
        .max_topics_per_stream(3)
        .build();
    let server = TestServer::start_service(service).await;
    let e = server.hub.epoch();
    // (path, headers, the answer's text)
    type Case = (String, Vec<(&'static str, String)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "/events".into(),
            vec![],
            "no topic: name them with ?topic=a&topic=b",
        ),
        (
            "/events?limit=2".into(),
            vec![],
            "no topic: name them with ?topic=a&topic=b",
        ),
        (path(&["a", "b", "a"]), vec![], "topic \"a\" is named twice"),
        (
            "/events?topic=a&topic=x%2Fy".into(),
            vec![],
            "topic \"x/y\": invalid topic name (1-128 characters from A-Z a-z 0-9 - _ . :)",
        ),
        (
            "/events?topic=".into(),
            vec![],
            "topic \"\": invalid topic name (1-128 characters from A-Z a-z 0-9 - _ . :)",
        ),
        (
            path(&["a", "b", "c", "d"]),
            vec![],
            "too many topics: at most 3 per stream",
        ),
        (
            path(&["a", "resync"]),
            vec![],
            "topic \"resync\" cannot be on a stream of several topics: its events would be \
             taken for ssehub's own `resync` events",
        ),
        (
            path(&["reauth"]),
            vec![],
            "topic \"reauth\" cannot be on a stream of several topics: its events would be \
             taken for ssehub's own `reauth` events",
        ),
        (
            path(&["a", "b"]),
            vec![("Last-Event-ID", format!("{e}-1"))],
            "invalid Last-Event-ID: id has 1 part for 2 topics",
        ),
        (
            format!("{}&lastEventId={e}-1.2.3", path(&["a", "b"])),
            vec![],
            "invalid lastEventId: id has 3 parts for 2 topics",
        ),
        (
            path(&["a", "b"]),
            vec![("Last-Event-ID", format!("{e}-1.02"))],
            "invalid Last-Event-ID: part 2: event id has an invalid sequence number",
        ),
        (
            path(&["a", "b"]),
            vec![("Last-Event-ID", format!("{e}-1.{e}-2"))],
            "invalid Last-Event-ID: part 2: repeats the epoch of the part before",
        ),
        (
            path(&["a", "b"]),
            vec![("Last-Event-ID", "7.8".into())],
            "invalid Last-Event-ID: part 1: event id has no `-` separator",
        ),
        (
            format!("{}&limit=0", path(&["a", "b"])),
            vec![],
            "invalid limit: expected an integer from 1",
        ),
    ];
    for (path, headers, want) in &cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = request(server.addr, "GET", path, &headers, b"").await;
        assert_eq!(
            (status, body.trim_end()),
            (400, *want),
            "GET {path} {headers:?}"
        );
        // HEAD checks the same, and says nothing more.
        let (status, _) = request(server.addr, "HEAD", path, &headers, b"").await;
        assert_eq!(status, 400, "HEAD {path}");
    }
    // Nothing was subscribed by the refused requests.
    assert_eq!(server.hub.stats().subscribers, 0);

    let (status, headers, _) = request_full(server.addr, "POST", &path(&["a"]), &[], b"x").await;
    assert_eq!(status, 405);
    assert_eq!(
        support::header(&headers, "allow"),
        Some("GET, HEAD, OPTIONS")
    );
    let (status, _) = request(server.addr, "OPTIONS", &path(&["a"]), &[], b"").await;
    assert_eq!(status, 204);
    // The limit: three topics are fine.
    let c = server.subscribe(&path(&["a", "b", "c"])).await;
    assert_eq!(c.status, 200);
    assert_eq!(c.header("content-type"), Some("text/event-stream"));
}

#[tokio::test]
async fn the_default_limit_is_64_topics() {
    let server = TestServer::start(Hub::new()).await;
    let names: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (status, body) = request(server.addr, "GET", &path(&refs), &[], b"").await;
    assert_eq!(
        (status, body.trim_end()),
        (400, "too many topics: at most 64 per stream")
    );
    let mut c = server.subscribe(&path(&refs[..64])).await;
    assert_eq!(c.status, 200);
    let e = server.hub.epoch();
    // A fresh stream's checkpoint: every topic before its first event.
    let want = format!("{e}-0{}", ".0".repeat(63));
    loop {
        match c.next_item().await {
            Some(Item::IdOnly(id)) => break assert_eq!(id, want),
            Some(_) => {}
            None => panic!("no checkpoint"),
        }
    }
}

#[cfg(feature = "jwt")]
#[tokio::test]
async fn each_topic_is_authorised_and_a_refusal_names_the_topic() {
    const SECRET: &[u8] = b"multi secret";
    let service = SseService::builder(Hub::new())
        .jwt_key(JwtKey::hs256(SECRET))
        .build();
    let server = TestServer::start_service(service).await;
    let token = mint_hs256(
        SECRET,
        &serde_json::json!({"exp": now() + 600, "ssehub": {"subscribe": ["news", "chat:*"]}}),
    );
    let ok = server
        .subscribe(&format!(
            "{}&access_token={token}",
            path(&["news", "chat:1", "chat:2"])
        ))
        .await;
    assert_eq!(ok.status, 200);
    let (status, body) = request(
        server.addr,
        "GET",
        &format!(
            "{}&access_token={token}",
            path(&["news", "orders", "chat:1"])
        ),
        &[],
        b"",
    )
    .await;
    assert_eq!(
        (status, body.trim_end()),
        (403, "topic \"orders\": token does not grant this topic")
    );
    let (status, headers, body) =
        request_full(server.addr, "GET", &path(&["news"]), &[], b"").await;
    assert_eq!(
        (status, body.trim_end()),
        (401, "topic \"news\": missing token")
    );
    assert_eq!(
        support::header(&headers, "www-authenticate"),
        Some("Bearer realm=\"ssehub\"")
    );
}

/// An embedder's policy is asked once per topic.
#[tokio::test]
async fn an_authorize_hook_is_asked_for_every_topic() {
    struct NoSecrets(std::sync::Arc<std::sync::Mutex<Vec<String>>>);
    impl Authorize for NoSecrets {
        fn subscribe(&self, _: &AccessRequest<'_>, topic: &ssehub::core::TopicName) -> Decision {
            self.0.lock().unwrap().push(topic.to_string());
            if topic.starts_with("secret") {
                Decision::Forbidden("not for you".into())
            } else {
                Decision::Allow
            }
        }
        fn publish(&self, _: &AccessRequest<'_>, _: &ssehub::core::TopicName) -> Decision {
            Decision::Allow
        }
    }
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let service = SseService::builder(Hub::new())
        .authorize(NoSecrets(asked.clone()))
        .build();
    let server = TestServer::start_service(service).await;
    let c = server.subscribe(&path(&["a", "b", "c"])).await;
    assert_eq!(c.status, 200);
    assert_eq!(*asked.lock().unwrap(), ["a", "b", "c"]);
    let (status, body) = request(server.addr, "GET", &path(&["a", "secret1", "b"]), &[], b"").await;
    assert_eq!(
        (status, body.trim_end()),
        (403, "topic \"secret1\": not for you")
    );
}

/// A client cut again and again while three topics are published to
/// resumes every time with its one last id, and gets every event of every
/// topic exactly once, in each topic's order; by header and by query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_id_resumes_every_topic_exactly_across_cuts() {
    let server = TestServer::start(Hub::builder().buffer(100_000).build()).await;
    let topics: Vec<String> = ["red", "green", "blue"].map(String::from).to_vec();
    let hub = server.hub.clone();
    const PER_TOPIC: u64 = 300;
    let publisher = tokio::spawn(async move {
        // Each event's data is its sequence number in its topic.
        let mut seqs = [0u64; 3];
        for n in 1..=PER_TOPIC {
            for (i, t) in ["red", "green", "blue"].iter().enumerate() {
                // Uneven: red gets three times as many.
                if i == 0 || n.is_multiple_of(3) {
                    seqs[i] += 1;
                    hub.publish(*t, Event::new(seqs[i].to_string()))
                        .await
                        .unwrap();
                }
            }
            if n.is_multiple_of(10) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for t in ["red", "green", "blue"] {
            hub.publish(t, Event::new("end")).await.unwrap();
        }
    });
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let mut got = Vec::new();
    // From before every topic's first event, as a client that rendered
    // empty topics would.
    let mut last = format!("{}-0.0.0", server.hub.epoch());
    let mut ended = 0;
    let mut connections = 0u32;
    while ended < 3 {
        connections += 1;
        let mut c = if connections.is_multiple_of(2) {
            SseClient::get(server.addr, &path(&refs), &[("Last-Event-ID", &last)]).await
        } else {
            server
                .subscribe(&format!("{}&lastEventId={last}", path(&refs)))
                .await
        };
        assert_eq!(c.status, 200);
        // Read a few events, then cut: the client resumes from the id of
        // the last thing it read (the parser may have more queued).
        for _ in 0..(7 + connections % 13) {
            match c.next_item().await {
                Some(Item::Event(ev)) => {
                    if ev.data == "end" {
                        ended += 1;
                    }
                    last = ev.last_event_id.clone();
                    got.push((ev.event_type, ev.last_event_id, ev.data));
                    if ended == 3 {
                        break;
                    }
                }
                Some(Item::IdOnly(id)) => last = id,
                Some(_) => {}
                None => panic!("the stream ended"),
            }
        }
        drop(c);
    }
    publisher.await.unwrap();
    assert!(connections > 20, "{connections}");
    let per_topic = split(&topics, &got);
    for (t, log) in topics.iter().zip(&per_topic) {
        let end = log.events.last().map(|(id, _)| support::seq(id)).unwrap();
        let n = check_exactly_once(t, &log.events, end).unwrap();
        let first = support::seq(&log.events[0].0);
        assert_eq!(first, 1, "{t}: from its first event");
        assert_eq!(
            n,
            if t == "red" {
                PER_TOPIC + 1
            } else {
                PER_TOPIC / 3 + 1
            }
        );
    }
}

#[tokio::test]
async fn head_answers_the_position_of_every_topic_and_a_stream_starts_there() {
    let server = TestServer::start(Hub::new()).await;
    let e = server.hub.epoch();
    for i in 1..=4 {
        server
            .hub
            .publish("a", Event::new(format!("a{i}")))
            .await
            .unwrap();
    }
    server.hub.publish("c", Event::new("c1")).await.unwrap();
    let (status, headers, body) =
        request_full(server.addr, "HEAD", &path(&["a", "b", "c"]), &[], b"").await;
    assert_eq!((status, body.as_str()), (200, ""));
    let position = support::header(&headers, "last-event-id")
        .unwrap()
        .to_owned();
    assert_eq!(position, format!("{e}-4.0.1"));
    // After the snapshot.
    server.hub.publish("b", Event::new("b1")).await.unwrap();
    server.hub.publish("a", Event::new("a5")).await.unwrap();
    let mut c = server
        .subscribe(&format!(
            "{}&lastEventId={position}&limit=2",
            path(&["a", "b", "c"])
        ))
        .await;
    let got: Vec<_> = events(&c.until_end().await)
        .into_iter()
        .map(|ev| (ev.event_type, ev.data, ev.last_event_id))
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), "a5".into(), format!("{e}-5.0.1")),
            ("b".into(), "b1".into(), format!("{e}-5.1.1"))
        ]
    );
}

#[tokio::test]
async fn rewind_replays_the_last_events_of_each_topic() {
    let server = TestServer::start(Hub::new()).await;
    for t in ["a", "b"] {
        for i in 1..=10 {
            server
                .hub
                .publish(t, Event::new(format!("{t}{i}")))
                .await
                .unwrap();
        }
    }
    server.hub.publish("c", Event::new("c1")).await.unwrap();
    let mut c = server
        .subscribe(&format!("{}&rewind=3&limit=7", path(&["a", "b", "c"])))
        .await;
    let mut data: Vec<_> = events(&c.until_end().await)
        .into_iter()
        .map(|ev| ev.data)
        .collect();
    data.sort();
    assert_eq!(data, ["a10", "a8", "a9", "b10", "b8", "b9", "c1"]);
}

/// Typed events arrive as `topic/type`; data is delivered unchanged.
#[tokio::test]
async fn typed_events_are_topic_slash_type_and_data_is_unchanged() {
    let server = TestServer::start(Hub::new()).await;
    let mut c = server
        .subscribe(&format!("{}&limit=3", path(&["chat", "news"])))
        .await;
    let odd = " leading space\r\nid: not an id\n\nevent: x\r: y";
    server
        .hub
        .publish("news", Event::new(odd).with_type("flash").unwrap())
        .await
        .unwrap();
    server.hub.publish("chat", Event::new("")).await.unwrap();
    let big = "é".repeat(40_000);
    server
        .hub
        .publish("chat", Event::new(big.clone()))
        .await
        .unwrap();
    let got = events(&c.until_end().await);
    // Each topic's events in order; the topics take turns.
    let news: Vec<_> = got
        .iter()
        .filter(|e| e.event_type.starts_with("news"))
        .collect();
    let chat: Vec<_> = got
        .iter()
        .filter(|e| e.event_type.starts_with("chat"))
        .collect();
    assert_eq!(news.len(), 1);
    assert_eq!(news[0].event_type, "news/flash");
    assert_eq!(news[0].data, odd.replace("\r\n", "\n").replace('\r', "\n"));
    assert_eq!(
        (chat[0].event_type.as_str(), chat[0].data.as_str()),
        ("chat", "")
    );
    assert_eq!(
        (chat[1].event_type.as_str(), chat[1].data.as_str()),
        ("chat", big.as_str())
    );
    let e = server.hub.epoch();
    assert_eq!(topic_ids(&chat[1].last_event_id)[0], format!("{e}-2"));
}

/// A topic whose history was replaced (its epoch changed, as after a
/// restart): its part of the id gets a `resync` naming it, the other
/// topics resume exactly.
#[tokio::test]
async fn an_old_epoch_in_one_part_is_a_resync_of_that_topic_only() {
    let server = TestServer::start(Hub::builder().buffer(5).build()).await;
    let e = server.hub.epoch();
    for i in 1..=3 {
        server
            .hub
            .publish("a", Event::new(format!("a{i}")))
            .await
            .unwrap();
        server
            .hub
            .publish("b", Event::new(format!("b{i}")))
            .await
            .unwrap();
    }
    let mut c = SseClient::get(
        server.addr,
        &format!("{}&limit=5", path(&["a", "b"])),
        &[("Last-Event-ID", &format!("old1-2.{e}-1"))],
    )
    .await;
    let got = items(&c.until_end().await);
    assert_eq!(got[0].0, "resync");
    let json: serde_json::Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(json["topic"], "a");
    assert_eq!(json["reason"], "epoch");
    assert_eq!(json["requested"], "old1-2");
    assert_eq!(json["oldest"], format!("{e}-1"));
    assert_eq!(got[0].1, format!("{e}-0.1"));
    // Everything retained of a, and b after its id.
    let rest: Vec<_> = got[1..].iter().map(|g| g.2.as_str()).collect();
    assert_eq!(rest, ["a1", "a2", "a3", "b2", "b3"]);
}

/// Over HTTP/2 (hyper serves it, not the HTTP/1.1 fast path).
#[tokio::test]
async fn a_stream_of_several_topics_over_h2c() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let server = TestServer::start(Hub::new()).await;
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://test{}&limit=2", path(&["x", "y"])))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(
        (res.version(), res.status().as_u16()),
        (http::Version::HTTP_2, 200)
    );
    server.hub.publish("y", Event::new("1")).await.unwrap();
    server.hub.publish("x", Event::new("2")).await.unwrap();
    let body = tokio::time::timeout(support::WAIT, res.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    let mut got: Vec<_> = events(&support::Parser::new().feed(&body))
        .into_iter()
        .map(|e| (e.event_type, e.data))
        .collect();
    got.sort();
    assert_eq!(got, [("x".into(), "2".into()), ("y".into(), "1".into())]);
}
