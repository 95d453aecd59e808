//! A stream opened with a JWT ends when the token expires: first a
//! `reauth` event with the position, then the end of the response; the
//! client resumes with a new token from exactly there.

use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ssehub::http::JwtKey;
use ssehub::{Event, Hub, SseService};
use support::jwt::{mint_hs256, now};
use support::{Item, TestServer, events, seq};

const SECRET: &[u8] = b"reauth secret";

/// How late after the token's `exp` the `reauth` event and the end may
/// come: scheduling on a loaded machine. The stream's timer is set to `exp`
/// itself ([`JWT_LEEWAY`](ssehub::http::JWT_LEEWAY) only widens the check
/// of a token when a request arrives, not the life of its stream).
const LATE: Duration = Duration::from_millis(1500);

/// `exp` (whole seconds since the Unix epoch) as a time.
fn at(exp: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(exp as u64)
}

/// Regression guard (a mutation that survived: a stream that ended 5 s
/// after its token's `exp`, bounded only by a 10 s wait): `what` came no
/// earlier than `exp` and no later than `exp` + [`LATE`].
fn at_expiry(what: &str, exp: i64) {
    let now = SystemTime::now();
    let exp = at(exp);
    assert!(now >= exp, "{what} before the token's exp");
    let late = now.duration_since(exp).unwrap();
    assert!(late <= LATE, "{what} {late:?} after the token's exp");
}

#[tokio::test]
async fn a_stream_ends_with_reauth_when_its_token_expires_and_resumes_exactly() {
    let service = SseService::builder(Hub::new())
        .jwt_key(JwtKey::hs256(SECRET))
        .build();
    let server = TestServer::start_service(service).await;
    let e = server.hub.epoch();
    let token = |exp: i64| {
        mint_hs256(
            SECRET,
            &serde_json::json!({"exp": exp, "ssehub": {"subscribe": ["t"]}}),
        )
    };
    let exp = now() + 2;
    let mut c = server
        .subscribe(&format!("/events/t?access_token={}", token(exp)))
        .await;
    assert_eq!(c.status, 200);
    for i in 1..=3 {
        server
            .hub
            .publish("t", Event::new(format!("{i}")))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let reauth = loop {
        match c.next_item().await {
            Some(Item::Event(ev)) if ev.event_type == "reauth" => break ev,
            Some(Item::Event(ev)) => seen.push(seq(&ev.last_event_id)),
            Some(_) => {}
            None => panic!("ended without reauth"),
        }
    };
    at_expiry("reauth", exp);
    assert_eq!(seen, [1, 2, 3]);
    let data: serde_json::Value = serde_json::from_str(&reauth.data).unwrap();
    assert_eq!(data["reason"], "expired");
    assert_eq!(data["lastEventId"], format!("{e}-3"));
    assert_eq!(reauth.last_event_id, format!("{e}-3"));
    c.expect_end().await;
    at_expiry("the end", exp);
    assert!(
        c.ended_cleanly(),
        "the response ends, the client reconnects"
    );
    assert_eq!(server.hub.stats().subscribers, 0);

    // Published while the client was fetching a new token.
    server.hub.publish("t", Event::new("4")).await.unwrap();
    let mut c = server
        .subscribe(&format!(
            "/events/t?access_token={}&lastEventId={e}-3&limit=1",
            token(now() + 60)
        ))
        .await;
    let evs = events(&c.until_end().await);
    assert_eq!(evs.len(), 1);
    assert_eq!((seq(&evs[0].last_event_id), evs[0].data.as_str()), (4, "4"));

    // The expired token itself is refused: a browser without `reauth`
    // handling would stop here.
    let c = server
        .subscribe(&format!("/events/t?access_token={}", token(now() - 10)))
        .await;
    assert_eq!(c.status, 401);
}

/// A stream of several topics ends at the earliest expiry of the grants
/// that authorised its topics, with one `reauth` whose `lastEventId` is the
/// position of every topic; a new token and that id resume them all.
#[tokio::test]
async fn a_stream_of_several_topics_gets_one_reauth_with_every_position() {
    let service = SseService::builder(Hub::new())
        .jwt_key(JwtKey::hs256(SECRET))
        .build();
    let server = TestServer::start_service(service).await;
    let e = server.hub.epoch();
    let token = |exp: i64| {
        mint_hs256(
            SECRET,
            &serde_json::json!({"exp": exp, "ssehub": {"subscribe": ["a", "b"]}}),
        )
    };
    let exp = now() + 2;
    let mut c = server
        .subscribe(&format!(
            "/events?topic=a&topic=b&access_token={}",
            token(exp)
        ))
        .await;
    assert_eq!(c.status, 200);
    server.hub.publish("b", Event::new("b1")).await.unwrap();
    server.hub.publish("a", Event::new("a1")).await.unwrap();
    let mut seen = Vec::new();
    let reauth = loop {
        match c.next_item().await {
            Some(Item::Event(ev)) if ev.event_type == "reauth" => break ev,
            Some(Item::Event(ev)) => seen.push((ev.event_type, ev.data)),
            Some(_) => {}
            None => panic!("ended without reauth"),
        }
    };
    at_expiry("reauth", exp);
    seen.sort();
    assert_eq!(seen, [("a".into(), "a1".into()), ("b".into(), "b1".into())]);
    let data: serde_json::Value = serde_json::from_str(&reauth.data).unwrap();
    assert_eq!(data["reason"], "expired");
    // The stream's id: the check of its topics, then each position.
    let (check, _) = reauth.last_event_id.split_once('_').unwrap();
    assert_eq!(data["lastEventId"], format!("{check}_{e}-1.1"));
    assert_eq!(reauth.last_event_id, format!("{check}_{e}-1.1"));
    c.expect_end().await;
    at_expiry("the end", exp);
    assert!(c.ended_cleanly());

    server.hub.publish("a", Event::new("a2")).await.unwrap();
    server.hub.publish("b", Event::new("b2")).await.unwrap();
    let mut c = server
        .subscribe(&format!(
            "/events?topic=a&topic=b&access_token={}&lastEventId={check}_{e}-1.1&limit=2",
            token(now() + 60)
        ))
        .await;
    let got: Vec<_> = events(&c.until_end().await)
        .into_iter()
        .map(|ev| (ev.data, ev.last_event_id))
        .collect();
    assert_eq!(
        got,
        [
            ("a2".into(), format!("{check}_{e}-2.1")),
            ("b2".into(), format!("{check}_{e}-2.2"))
        ]
    );
}

/// Serves `GET` of anything with a fresh JWT for `topics`, valid `ttl`
/// seconds, readable from any page (CORS): the token URL of a page.
/// Returns its address and the number of tokens served.
async fn token_server(
    topics: &[&str],
    ttl: i64,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = served.clone();
    let grants = serde_json::json!({ "subscribe": topics });
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            let grants = grants.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let token = mint_hs256(
                    SECRET,
                    &serde_json::json!({"exp": now() + ttl, "ssehub": grants}),
                );
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                     Access-Control-Allow-Origin: *\r\nCache-Control: no-store\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{token}",
                    token.len()
                );
                if conn.write_all(res.as_bytes()).await.is_ok() {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    (addr, served)
}

/// The page at `/` on three topics with tokens of 3 seconds from a token
/// URL: three expiries in a row, each answered with a new token and a
/// resume from the `reauth`'s id; every event of every topic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_survives_three_token_expiries_on_several_topics_and_loses_nothing() {
    use std::sync::atomic::Ordering;
    use support::flaky::{check_exactly_once, check_gaps_announced};
    use support::node::NodeRun;

    let service = SseService::builder(Hub::builder().buffer(100_000).build())
        .jwt_key(JwtKey::hs256(SECRET))
        .build();
    let server = TestServer::start_service(service).await;
    let topics = ["alpha", "beta", "gamma"];
    let (token_addr, served) = token_server(&topics, 3).await;
    let mut node = NodeRun::start(serde_json::json!({
        "scenario": "pageReauth",
        "pageUrl": format!(
            "http://{}/?topics={}&tokenUrl=http://{token_addr}/token",
            server.addr,
            topics.join(",")
        ),
        "topics": topics,
        "end": "end",
        "timeoutMs": 90_000,
    }));
    assert_eq!(
        node.next(Duration::from_secs(30)).await["step"],
        "connected"
    );
    // Publish until three tokens have expired and been replaced (the
    // first token, then one per expiry), and a little after.
    let mut k = 0u64;
    let mut after = 0;
    // On progress, not a clock: it fails only when no new token was
    // fetched for `STALL` (a starved machine runs the client late).
    let mut last = (0, std::time::Instant::now());
    while after < 30 {
        let fetched = served.load(Ordering::SeqCst);
        if fetched != last.0 {
            last = (fetched, std::time::Instant::now());
        }
        assert!(
            last.1.elapsed() < support::STALL,
            "{fetched} tokens fetched, waiting for 4, none for {:?}",
            support::STALL
        );
        if fetched >= 4 {
            after += 1;
        }
        let t = topics[(k % 3) as usize];
        k += 1;
        let n = k.div_ceil(3);
        server
            .hub
            .publish(t, Event::new(n.to_string()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut ends = Vec::new();
    for t in topics {
        ends.push(
            server
                .hub
                .publish(t, Event::new("end"))
                .await
                .unwrap()
                .seq(),
        );
    }
    let report = node.report(Duration::from_secs(90)).await;
    let items: Vec<(String, String, String)> = report["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let kind = s[0].as_str().unwrap();
            let ty = if kind == "event" {
                s[3].as_str().unwrap()
            } else {
                "resync"
            };
            (
                ty.to_owned(),
                s[1].as_str().unwrap().to_owned(),
                s[2].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let topic_names: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
    let per_topic = support::multi::split(&topic_names, &items);
    for ((t, log), end) in topics.iter().zip(&per_topic).zip(&ends) {
        check_gaps_announced(t, &log.seen).unwrap();
        check_exactly_once(t, &log.events, *end).unwrap();
        assert_eq!(seq(&log.events[0].0), 1, "{t}: from the first event on");
        assert_eq!(log.seen.len(), log.events.len(), "{t}: no resync");
    }
    println!(
        "page: {} events, {} reauths, {} tokens, {} opens, {} reopens",
        items.len(),
        report["reauths"],
        report["tokens"],
        report["opens"],
        report["reopens"]
    );
    assert!(report["reauths"].as_u64().unwrap() >= 3, "{report}");
    assert!(report["tokens"].as_u64().unwrap() >= 4, "{report}");
}
