//! A subscription lasts as long as its token: it ends at the token's `exp`
//! (plus the hub's leeway for clock skew), after delivering what came
//! before; a token already expired is refused.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use ssehub::http::JWT_LEEWAY;

use crate::common::{events_through, now, publish_one, server, subscribe, token};

#[tokio::test]
async fn a_subscription_ends_when_its_token_expires() {
    let server = server(false).await;
    let addr = server.addr;
    let exp = now() + 2;
    let t = token(&json!({"mercure": {"subscribe": ["*"]}, "exp": exp}));
    let mut c = subscribe(addr, &["*"], Some(&t), &[]).await;
    assert_eq!(c.status, 200);
    publish_one(addr, "https://example.com/a", "urn:x:1", "before").await;
    assert_eq!(
        crate::common::ids(&events_through(&mut c, "urn:x:1").await),
        ["urn:x:1"]
    );
    // A subscriber whose token does not expire stays.
    let forever = token(&json!({"mercure": {"subscribe": ["*"]}}));
    let mut stays = subscribe(addr, &["*"], Some(&forever), &[]).await;

    let expires = UNIX_EPOCH + Duration::from_secs(exp);
    let limit = expires + JWT_LEEWAY + Duration::from_secs(5);
    let wait = limit.duration_since(SystemTime::now()).unwrap_or_default();
    while let Some(item) = c.next_item_within(wait).await {
        if let crate::support::Item::Event(e) = item {
            panic!("an event after the first: {e:?}");
        }
    }
    let ended = SystemTime::now();
    assert!(ended >= expires, "ended {ended:?} before exp {expires:?}");
    assert!(c.ended_cleanly(), "the response ended, not the connection");

    publish_one(addr, "https://example.com/a", "urn:x:2", "after").await;
    assert_eq!(stays.next_event().await.last_event_id, "urn:x:2");

    // Now expired (beyond the leeway): refused.
    let t = token(&json!({"mercure": {"subscribe": ["*"]}, "exp": exp}));
    if SystemTime::now() > expires + JWT_LEEWAY {
        let c = subscribe(addr, &["*"], Some(&t), &[]).await;
        assert_eq!(c.status, 401);
    }
    let old = token(&json!({"mercure": {"subscribe": ["*"]}, "exp": now() - 60}));
    let c = subscribe(addr, &["*"], Some(&old), &[]).await;
    assert_eq!(c.status, 401);
    server.stop().await;
}

/// On a hub that lets anonymous subscribers in, an expiring token still
/// ends its subscription (it does not fall back to anonymous).
#[tokio::test]
async fn an_expiring_token_ends_even_where_anonymous_is_allowed() {
    let server = server(true).await;
    let exp = now() + 1;
    let t = token(&json!({"mercure": {"subscribe": ["*"]}, "exp": exp}));
    let mut c = subscribe(server.addr, &["*"], Some(&t), &[]).await;
    assert_eq!(c.status, 200);
    let expires = UNIX_EPOCH + Duration::from_secs(exp);
    let wait = (expires + JWT_LEEWAY + Duration::from_secs(5))
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    while c.next_item_within(wait).await.is_some() {}
    assert!(SystemTime::now() >= expires);
    server.stop().await;
}
