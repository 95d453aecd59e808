//! The binary's flags: `--mercure-jwt-key` serves the hub with that key,
//! `--mercure-anonymous` lets subscribers without a token in,
//! `--max-body-bytes` bounds an update; without the
//! key there is no hub.

use serde_json::json;

use crate::common::{
    HUB, KEY, post, publish_one, publisher, subscribe, subscriber, token_with_key,
};
use crate::support::process::Ssehub;
use crate::support::request;

#[tokio::test]
async fn the_flags_serve_the_hub_with_its_key_and_anonymous_policy() {
    let topic = "https://example.com/books/1";
    let strict = Ssehub::start_in_memory(
        "mercure-flags-strict",
        &["--mercure-jwt-key", KEY, "--max-body-bytes", "1000"],
    )
    .await;
    let open = Ssehub::start_in_memory(
        "mercure-flags-open",
        &["--mercure-jwt-key", KEY, "--mercure-anonymous"],
    )
    .await;
    let none = Ssehub::start_in_memory("mercure-flags-none", &[]).await;

    assert_eq!(
        subscribe(strict.addr, &[topic], None, &[]).await.status,
        401
    );
    let mut anonymous = subscribe(open.addr, &[topic], None, &[]).await;
    assert_eq!(anonymous.status, 200);
    publish_one(open.addr, topic, "urn:flags:1", "x").await;
    assert_eq!(anonymous.next_event().await.last_event_id, "urn:flags:1");

    // The key is the one given: a token of another key is refused.
    let other = token_with_key("another key", &json!({"mercure": {"publish": ["*"]}}));
    let (status, _, _) = post(strict.addr, Some(&other), &[("topic", topic)]).await;
    assert_eq!(status, 401);
    // `--max-body-bytes` bounds an update's form.
    let p = publisher();
    let big = "y".repeat(1200);
    let (status, _, body) = post(strict.addr, Some(&p), &[("topic", topic), ("data", &big)]).await;
    assert_eq!(status, 413, "{body}");
    let fits = "y".repeat(900);
    let (status, _, body) = post(strict.addr, Some(&p), &[("topic", topic), ("data", &fits)]).await;
    assert_eq!(status, 200, "{body}");
    let t = subscriber(&["*"]);
    assert_eq!(
        subscribe(strict.addr, &[topic], Some(&t), &[]).await.status,
        200
    );

    let (status, _) = request(none.addr, "GET", &format!("{HUB}?topic=x"), &[], b"").await;
    assert_eq!(status, 404);
    for s in [strict, open, none] {
        s.stop().await;
    }
}
