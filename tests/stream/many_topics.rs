//! Many topics on one stream, over real sockets: `GET
//! /events?topic=a&topic=b`, its validation, authorisation per topic, the
//! id that is a cursor for every topic (resume across cuts, exactly once
//! per topic), per-topic `resync`, `HEAD`, `rewind`, `limit`, and HTTP/2.

use crate::support;

use std::time::Duration;

#[cfg(feature = "jwt")]
use ssehub::http::JwtKey;
use ssehub::http::{AccessRequest, Authorize, Decision};
use ssehub::{Event, Hub, SseService};
use support::flaky::check_exactly_once;
#[cfg(feature = "jwt")]
use support::jwt::{mint_hs256, now};
use support::multi::{check_of, split, topic_ids};
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
    // Ids of `a` and `b` start with the check of that list.
    let ab = check_of(server.addr, &["a", "b"]).await;
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
            vec![("Last-Event-ID", format!("{ab}{e}-1"))],
            "invalid Last-Event-ID: id has 1 part for 2 topics",
        ),
        (
            format!("{}&lastEventId={ab}{e}-1.2.3", path(&["a", "b"])),
            vec![],
            "invalid lastEventId: id has 3 parts for 2 topics",
        ),
        (
            path(&["a", "b"]),
            vec![("Last-Event-ID", format!("{ab}{e}-1.02"))],
            "invalid Last-Event-ID: part 2: event id has an invalid sequence number",
        ),
        (
            path(&["a", "b"]),
            vec![("Last-Event-ID", format!("{ab}{e}-1.{e}-2"))],
            "invalid Last-Event-ID: part 2: repeats the epoch of the part before",
        ),
        (
            path(&["a", "b"]),
            vec![("Last-Event-ID", format!("{ab}7.8"))],
            "invalid Last-Event-ID: part 1: event id has no `-` separator",
        ),
        (
            path(&["b", "a"]),
            vec![("Last-Event-ID", format!("{ab}{e}-1.2"))],
            "invalid Last-Event-ID: id is of another list of topics (or of these topics in another order)",
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
    let check = check_of(server.addr, &refs[..64]).await;
    let want = format!("{check}{e}-0{}", ".0".repeat(63));
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
    let check = check_of(server.addr, &refs).await;
    let mut last = format!("{check}{}-0.0.0", server.hub.epoch());
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
    let check = check_of(server.addr, &["a", "b", "c"]).await;
    assert_eq!(position, format!("{check}{e}-4.0.1"));
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
            ("a".into(), "a5".into(), format!("{check}{e}-5.0.1")),
            ("b".into(), "b1".into(), format!("{check}{e}-5.1.1"))
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
    let ab = check_of(server.addr, &["a", "b"]).await;
    let mut c = SseClient::get(
        server.addr,
        &format!("{}&limit=5", path(&["a", "b"])),
        &[("Last-Event-ID", &format!("{ab}old1-2.{e}-1"))],
    )
    .await;
    let got = items(&c.until_end().await);
    assert_eq!(got[0].0, "resync");
    let json: serde_json::Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(json["topic"], "a");
    assert_eq!(json["reason"], "epoch");
    assert_eq!(json["requested"], "old1-2");
    assert_eq!(json["oldest"], format!("{e}-1"));
    assert_eq!(got[0].1, format!("{ab}{e}-0.1"));
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

/// The id a `HEAD` of the stream of `topics` answers (opaque).
async fn head_position(addr: std::net::SocketAddr, topics: &[&str]) -> String {
    let (status, headers, _) = request_full(addr, "HEAD", &path(topics), &[], b"").await;
    assert_eq!(status, 200, "HEAD {topics:?}");
    support::header(&headers, "last-event-id")
        .expect("a position")
        .to_owned()
}

/// Regression (issue 20, finding 9a): the id `E-10.3` of the stream of
/// `(oa, ob)`, used with `(ob, oa)`, was taken as `ob` at 10 and `oa` at
/// 3: b4..b10 were lost and a4..a10 sent twice, without a word. The id
/// carries a check of its list of topics: another order is a clear `400`
/// (the `EventSource` of a page reconnects with its own URL, so never
/// gets it), and the same order still resumes exactly.
#[tokio::test]
async fn an_id_used_with_its_topics_in_another_order_is_refused_not_misread() {
    let server = TestServer::start(Hub::new()).await;
    for i in 1..=10 {
        server
            .hub
            .publish("oa", Event::new(format!("a{i}")))
            .await
            .unwrap();
    }
    for i in 1..=3 {
        server
            .hub
            .publish("ob", Event::new(format!("b{i}")))
            .await
            .unwrap();
    }
    let id = head_position(server.addr, &["oa", "ob"]).await;
    for i in 4..=10 {
        server
            .hub
            .publish("ob", Event::new(format!("b{i}")))
            .await
            .unwrap();
    }
    for (header, query) in [(true, false), (false, true)] {
        let mut p = path(&["ob", "oa"]);
        if query {
            p.push_str(&format!("&lastEventId={id}"));
        }
        let headers: Vec<(&str, &str)> = if header {
            vec![("Last-Event-ID", id.as_str())]
        } else {
            vec![]
        };
        let mut c = SseClient::get(server.addr, &format!("{p}&limit=7"), &headers).await;
        let got = items(&c.until_end().await);
        assert_eq!(
            c.status, 400,
            "the id of (oa, ob) with (ob, oa) is refused, not read as another position: {got:?}"
        );
        let (status, body) = request(server.addr, "GET", &p, &headers, b"").await;
        assert_eq!(
            (status, body.trim_end()),
            (
                400,
                format!(
                    "invalid {}: id is of another list of topics (or of these topics in another order)",
                    if header { "Last-Event-ID" } else { "lastEventId" }
                )
                .as_str()
            )
        );
    }
    // In its own order it resumes exactly: b4..b10, nothing of a.
    let mut c = SseClient::get(
        server.addr,
        &format!("{}&limit=7", path(&["oa", "ob"])),
        &[("Last-Event-ID", &id)],
    )
    .await;
    assert_eq!(c.status, 200);
    let data: Vec<_> = items(&c.until_end().await)
        .into_iter()
        .map(|i| i.2)
        .collect();
    assert_eq!(data, ["b4", "b5", "b6", "b7", "b8", "b9", "b10"]);
}

/// `n` topic names of 24 characters.
fn long_names(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("reconnecting-topic-{i:05}"))
        .collect()
}

/// The worst id of the stream of `names`: what a `HEAD` answers before its
/// parts (the check of the topics, if any), then every topic with an
/// epoch of its own of 16 characters and the largest sequence number.
async fn worst_id(addr: std::net::SocketAddr, names: &[&str]) -> String {
    let head = head_position(addr, names).await;
    let prefix = match head.split_once('_') {
        Some((check, _)) => format!("{check}_"),
        None => String::new(),
    };
    let parts: Vec<String> = (0..names.len())
        .map(|i| format!("w{i:015}-{}", u64::MAX))
        .collect();
    format!("{prefix}{}", parts.join("."))
}

/// Regression (issue 20, finding 7): a stream of many topics connected,
/// then every reconnect got `431` (its id had outgrown the 16 KiB request
/// head), which closes an `EventSource` for good: 800 topics with an epoch
/// each (`--data-dir`), ~1,900 in memory. Now a stream is opened only if
/// its reconnect fits with its id at its longest (every topic with its own
/// 16-character epoch and the largest sequence number), in the header and
/// in `?lastEventId=` at once; that worst reconnect gets `200` (the
/// unknown epochs are `resync`s), on the HTTP/1.1 fast path and through
/// hyper, at the documented maximum of topics per stream.
#[tokio::test]
async fn the_longest_reconnect_of_the_widest_stream_fits_in_the_request_head() {
    for fast_path in [true, false] {
        let service = SseService::builder(Hub::new())
            .max_topics_per_stream(4096)
            .build();
        let mut config = ssehub::server::ServerConfig::default();
        config.stream_fast_path = fast_path;
        let server = TestServer::start_with(service, config).await;
        let names = long_names(4096);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // The widest stream the server opens: a fresh `GET` of `n` topics
        // is 200 up to it and refused (at once, when nothing depends on
        // the stream yet) beyond.
        let addr = server.addr;
        let opens = |n: usize| {
            let p = path(&refs[..n]);
            async move { SseClient::get(addr, &p, &[]).await.status }
        };
        // 500 such topics make a request line of 16 KiB already.
        let (mut lo, mut hi) = (1usize, 500usize);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if opens(mid).await == 200 {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let widest = lo;
        assert!(widest >= 64, "the default of 64 topics fits: {widest}");
        let (status, body) = request(
            server.addr,
            "GET",
            &path(&refs[..widest + 1]),
            &[("Accept", "text/event-stream")],
            b"",
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("name fewer topics"), "{body}");

        let refs = &refs[..widest];
        let id = worst_id(server.addr, refs).await;
        let p = format!("{}&lastEventId={id}", path(refs));
        let mut c = SseClient::get(server.addr, &p, &[("Last-Event-ID", &id)]).await;
        assert_eq!(
            c.status, 200,
            "the longest reconnect of {widest} topics (fast path: {fast_path})"
        );
        // Every topic starts with its `resync` (the epochs are unknown).
        let mut resyncs = 0;
        while resyncs < widest {
            match c.next_item().await {
                Some(Item::Event(ev)) => {
                    assert_eq!(ev.event_type, "resync");
                    let json: serde_json::Value = serde_json::from_str(&ev.data).unwrap();
                    assert_eq!(json["reason"], "epoch");
                    resyncs += 1;
                }
                Some(_) => {}
                None => panic!("ended after {resyncs} resyncs"),
            }
        }
    }
}

/// Regression (issue 20, finding 7): a `Last-Event-ID` longer than any id
/// of the stream's topics was answered `400`, which closes an
/// `EventSource` for good. It is no position: every topic starts with a
/// `resync` (`malformed`), as a single topic does for what is not an id.
#[tokio::test]
async fn a_too_long_id_is_a_resync_of_every_topic_not_a_refusal() {
    let server = TestServer::start(Hub::new()).await;
    server.hub.publish("a", Event::new("a1")).await.unwrap();
    let long = format!("x-1{}", ".1".repeat(2000));
    let mut c = SseClient::get(
        server.addr,
        &format!("{}&limit=1", path(&["a", "b"])),
        &[("Last-Event-ID", &long)],
    )
    .await;
    assert_eq!(c.status, 200);
    let got = items(&c.until_end().await);
    let resyncs: Vec<serde_json::Value> = got
        .iter()
        .filter(|g| g.0 == "resync")
        .map(|g| serde_json::from_str(&g.2).unwrap())
        .collect();
    assert_eq!(resyncs.len(), 2, "{got:?}");
    for (json, topic) in resyncs.iter().zip(["a", "b"]) {
        assert_eq!(
            (json["topic"].as_str(), json["reason"].as_str()),
            (Some(topic), Some("malformed"))
        );
    }
    assert_eq!(got.last().map(|g| g.2.as_str()), Some("a1"));
}

/// Regression (issue 20, finding 2): a refused stream request retired idle
/// topics (their history with them) before it was refused, and so did a
/// `HEAD`; a JWT granted `chat:*` wiped topics it had no grant for. Now a
/// stream of more topics than the hub holds is a permanent `400` (not the
/// `retry` answer that brought an `EventSource` back for ever), a `HEAD`
/// answers what the `GET` would, and neither creates nor retires a topic.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn a_refused_stream_and_a_head_retire_nothing() {
    const SECRET: &[u8] = b"refusals change nothing";
    let hub = Hub::builder().max_topics(5).build();
    let service = SseService::builder(hub)
        .jwt_key(JwtKey::hs256(SECRET))
        .build();
    let server = TestServer::start_service(service).await;
    let hub = server.hub.clone();
    for i in 1..=3 {
        hub.publish("precious", Event::new(format!("p{i}")))
            .await
            .unwrap();
    }
    hub.publish("other", Event::new("o1")).await.unwrap();
    let token = mint_hs256(
        SECRET,
        &serde_json::json!({"exp": now() + 600, "ssehub": {"subscribe": ["chat:*"]}}),
    );
    let unchanged = |hub: &Hub| {
        assert_eq!(hub.topic_info("precious").unwrap().retained_events, 3);
        assert!(hub.topic_info("other").is_some());
        assert_eq!((hub.stats().topics, hub.stats().topics_retired), (2, 0));
    };
    // Six topics where the hub holds five: never servable.
    let six: Vec<String> = (1..=6).map(|i| format!("chat:{i}")).collect();
    let six: Vec<&str> = six.iter().map(String::as_str).collect();
    let p = format!("{}&access_token={token}", path(&six));
    for accept in ["text/event-stream", "*/*"] {
        for method in ["GET", "HEAD"] {
            let (status, body) = request(server.addr, method, &p, &[("Accept", accept)], b"").await;
            assert_eq!(status, 400, "{method} ({accept}): {body}");
            if method == "GET" {
                assert_eq!(
                    body.trim_end(),
                    "the stream names 6 topics; the server holds at most 5 (--max-topics)"
                );
            }
            unchanged(&hub);
        }
    }
    // Five topics fit only if every idle topic goes: with `other` held by
    // a subscriber, there is no room (for now), and nothing goes.
    let held = hub.subscribe("other", ssehub::Subscribe::new()).unwrap();
    let five = format!("{}&access_token={token}", path(&six[..5]));
    for method in ["GET", "HEAD"] {
        let (status, _) = request(server.addr, method, &five, &[], b"").await;
        assert_eq!(status, 503, "{method}: every slot but one is needed");
        let mut c = SseClient::get(server.addr, &five, &[]).await;
        assert_eq!(c.status, 200, "an EventSource is told to come back");
        let got = c.until_end().await;
        assert!(got.iter().any(|i| matches!(i, Item::Retry(_))), "{got:?}");
        unchanged(&hub);
    }
    // A HEAD of topics that do not exist creates none of them.
    let (status, headers, _) = request_full(server.addr, "HEAD", "/events/chat:9", &[], b"").await;
    assert_eq!(status, 401, "HEAD is authorised as GET is");
    let (status, headers2, _) = request_full(
        server.addr,
        "HEAD",
        &format!("/events/chat:9?access_token={token}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let _ = headers;
    let position = support::header(&headers2, "last-event-id")
        .unwrap()
        .to_owned();
    assert_eq!(position, format!("{}-0", hub.epoch()));
    unchanged(&hub);
    // ... and a stream from that position misses nothing.
    hub.publish("precious", Event::new("p4")).await.unwrap();
    drop(held);
    let mut c = server
        .subscribe(&format!(
            "/events/chat:9?access_token={token}&lastEventId={position}&limit=1"
        ))
        .await;
    hub.publish("chat:9", Event::new("first")).await.unwrap();
    let got = items(&c.until_end().await);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].2, "first");
}

/// Regression (issue 20, finding 2): `HEAD` of 64 topics with room for 20
/// answered `200` where the `GET` answers `400`, and retired every idle
/// topic on the way.
#[tokio::test]
async fn head_answers_the_status_of_get() {
    let server = TestServer::start(Hub::builder().max_topics(20).build()).await;
    for i in 0..20 {
        server
            .hub
            .publish(&format!("idle{i}"), Event::new("x"))
            .await
            .unwrap();
    }
    let names: Vec<String> = (0..64).map(|i| format!("h{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let (get, _) = request(server.addr, "GET", &path(&refs), &[], b"").await;
    let (head, _) = request(server.addr, "HEAD", &path(&refs), &[], b"").await;
    assert_eq!((get, head), (400, 400));
    // Five new single topics: positions, and nothing created or retired.
    for i in 0..5 {
        let (status, _) = request(server.addr, "HEAD", &format!("/events/h{i}"), &[], b"").await;
        assert_eq!(status, 200);
    }
    let (status, _) = request(server.addr, "HEAD", &path(&refs[..5]), &[], b"").await;
    assert_eq!(status, 200);
    let stats = server.hub.stats();
    assert_eq!((stats.topics, stats.topics_retired), (20, 0));
}
