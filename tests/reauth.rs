//! A stream opened with a JWT ends when the token expires: first a
//! `reauth` event with the position, then the end of the response; the
//! client resumes with a new token from exactly there.

mod support;

use std::time::Duration;

use ssehub::http::JwtKey;
use ssehub::{Event, Hub, SseService};
use support::jwt::{mint_hs256, now};
use support::{Item, TestServer, events, seq};

const SECRET: &[u8] = b"reauth secret";

#[tokio::test]
async fn a_stream_ends_with_reauth_when_its_token_expires_and_resumes_exactly() {
    let service = SseService::builder(Hub::new())
        .jwt_key(JwtKey::hs256(SECRET))
        .build();
    let server = TestServer::start_service(service).await;
    let e = server.hub.epoch();
    let token = |ttl: i64| {
        mint_hs256(
            SECRET,
            &serde_json::json!({"exp": now() + ttl, "ssehub": {"subscribe": ["t"]}}),
        )
    };
    let started = std::time::Instant::now();
    let mut c = server
        .subscribe(&format!("/events/t?access_token={}", token(2)))
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
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the expiry"
    );
    assert_eq!(seen, [1, 2, 3]);
    let data: serde_json::Value = serde_json::from_str(&reauth.data).unwrap();
    assert_eq!(data["reason"], "expired");
    assert_eq!(data["lastEventId"], format!("{e}-3"));
    assert_eq!(reauth.last_event_id, format!("{e}-3"));
    c.expect_end().await;
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
            token(60)
        ))
        .await;
    let evs = events(&c.until_end().await);
    assert_eq!(evs.len(), 1);
    assert_eq!((seq(&evs[0].last_event_id), evs[0].data.as_str()), (4, "4"));

    // The expired token itself is refused: a browser without `reauth`
    // handling would stop here.
    let c = server
        .subscribe(&format!("/events/t?access_token={}", token(-10)))
        .await;
    assert_eq!(c.status, 401);
}
