//! The page at `/` in headless Chromium (Debian's, driven by
//! `tests/browser/clients.mjs`): what a link may make it do with the user's
//! token, topic names that are also names of `Object.prototype`, and typed
//! events, which it must show like any other.

use crate::support;

use std::time::Duration;

use ssehub::Hub;
use support::TestServer;
use support::multi::topic_ids;
use support::node::NodeRun;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Publishes `data` to `path` over HTTP; returns the event's id.
async fn publish(server: &TestServer, path: &str, data: &str) -> String {
    let (status, body) = server.post(path, data).await;
    assert_eq!(status, 201, "{path}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// The events a page recorded as `(topic, type, id, data)`.
fn events(page: &serde_json::Value) -> Vec<(String, String, String, String)> {
    page["seen"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s[0] == "event")
        .map(|s| {
            let f = |i: usize| s[i].as_str().unwrap_or_default().to_owned();
            (f(3), f(4), f(1), f(2))
        })
        .collect()
}

/// The page's topic table as `(topic, events, last id)` rows.
fn rows(page: &serde_json::Value) -> Vec<(String, String, String)> {
    page["shown"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = |i: usize| r[i].as_str().unwrap().to_owned();
            (f(0), f(1), f(2))
        })
        .collect()
}

/// Opens `pages` (name -> URL), publishes with `publish_all` once all are
/// open, and returns the report once each page has its expected count.
async fn run_pages<F, Fut>(
    pages: serde_json::Value,
    expect: serde_json::Value,
    publish_all: F,
) -> (serde_json::Value, Fut::Output)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future,
{
    let mut node = NodeRun::start(serde_json::json!({
        "scenario": "pages", "pages": pages, "expect": expect, "timeoutMs": 60_000,
    }));
    assert_eq!(node.next(SECS(60)).await["step"], "connected");
    let published = publish_all().await;
    node.send("published").await;
    (node.report(SECS(90)).await, published)
}

// Regression: the page listened only for untyped events (`onmessage`, or
// the topic's own type on several topics), so the README's own example
// `POST /events/news?event=greeting` never showed up: neither in the log
// nor in the counts, on one topic or on several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_typed_events_with_their_ids_and_counts() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    let (report, ids) = run_pages(
        serde_json::json!({
            "several": format!("http://{addr}/?topics=stream,news"),
            "one": format!("http://{addr}/?topic=news"),
        }),
        serde_json::json!({ "several": 4, "one": 4 }),
        || async {
            let mut ids = Vec::new();
            for path in [
                "/events/news?event=greeting",
                "/events/news",
                "/events/news?event=greeting",
                "/events/news",
            ] {
                let data = format!("hello {}", ids.len());
                ids.push(publish(&server, path, &data).await);
            }
            ids
        },
    )
    .await;
    let data: Vec<String> = (0..4).map(|i| format!("hello {i}")).collect();

    let several = events(&report["several"]);
    assert_eq!(several.len(), 4, "{several:?}");
    for (i, (topic, ty, id, d)) in several.iter().enumerate() {
        assert_eq!(topic, "news");
        let want = if i % 2 == 0 { "news/greeting" } else { "news" };
        assert_eq!(ty, want, "{several:?}");
        assert_eq!(topic_ids(id)[1], ids[i], "the news part of {id}");
        assert_eq!(d, &data[i]);
    }
    assert_eq!(report["several"]["shown"]["events"], "4");
    let r = rows(&report["several"]);
    assert_eq!(r[1], ("news".into(), "4".into(), ids[3].clone()), "{r:?}");

    let one = events(&report["one"]);
    assert_eq!(one.len(), 4, "{one:?}");
    for (i, (topic, ty, id, d)) in one.iter().enumerate() {
        assert_eq!(topic, "news");
        let want = if i % 2 == 0 { "greeting" } else { "message" };
        assert_eq!(ty, want, "{one:?}");
        assert_eq!(id, &ids[i]);
        assert_eq!(d, &data[i]);
    }
    assert_eq!(report["one"]["shown"]["events"], "4");
    assert_eq!(
        rows(&report["one"]),
        vec![("news".into(), "4".into(), ids[3].clone())]
    );
}

// Regression: per-topic state was a plain object indexed by topic name, so
// the topic `__proto__` made the page count its events on Object.prototype
// (every object of the page then had `events`, `last`, `resyncs`), and
// `constructor` counted on the Object function.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_named_like_prototype_properties_leave_object_prototype_clean() {
    let server = TestServer::start(Hub::new()).await;
    let addr = server.addr;
    let (report, ()) = run_pages(
        serde_json::json!({
            "several": format!("http://{addr}/?topics=__proto__,constructor,news"),
            "one": format!("http://{addr}/?topic=__proto__"),
        }),
        serde_json::json!({ "several": 4, "one": 2 }),
        || async {
            publish(&server, "/events/__proto__", "p1").await;
            publish(&server, "/events/constructor", "c1").await;
            publish(&server, "/events/__proto__", "p2").await;
            publish(&server, "/events/news", "n1").await;
        },
    )
    .await;
    for name in ["several", "one"] {
        assert_eq!(
            report[name]["proto"], report["blankProto"],
            "{name}: Object.prototype of the page as in a blank page"
        );
    }
    let counts = |name: &str| -> Vec<(String, String)> {
        rows(&report[name])
            .into_iter()
            .map(|(t, n, _)| (t, n))
            .collect()
    };
    assert_eq!(
        counts("several"),
        vec![
            ("__proto__".into(), "2".into()),
            ("constructor".into(), "1".into()),
            ("news".into(), "1".into())
        ]
    );
    assert_eq!(counts("one"), vec![("__proto__".into(), "2".into())]);
    // Each topic's events in their order; across topics a stream of
    // several takes turns (events published before the page reads them
    // may come a topic at a time), so the test sorts by topic, stably.
    let mut several: Vec<_> = events(&report["several"])
        .into_iter()
        .map(|(t, _, _, d)| (t, d))
        .collect();
    several.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        several,
        [
            ("__proto__", "p1"),
            ("__proto__", "p2"),
            ("constructor", "c1"),
            ("news", "n1")
        ]
        .map(|(t, d)| (t.to_owned(), d.to_owned()))
    );
}

/// Every place a request can carry a token: its URL and its headers.
fn carries(request: &serde_json::Value, secret: &str) -> bool {
    request["url"].as_str().unwrap().contains(secret)
        || request["headers"]
            .as_object()
            .unwrap()
            .values()
            .any(|v| v.to_string().contains(secret))
}

// Regression: `/?server=http://elsewhere&tokenUrl=/token&topic=news`
// fetched a token from the app's own (cookie-authenticated) token URL and
// sent it to the other server, in the stream's `?access_token=` and in the
// publish button's `Authorization`. A link is the attacker's to write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_naming_another_server_never_sends_it_the_token() {
    let server = TestServer::start(Hub::new()).await;
    let node = NodeRun::start(serde_json::json!({
        "scenario": "pageForeign",
        "pageUrl": format!(
            "http://{}/?server={{elsewhere}}&tokenUrl=/token&topic=news",
            server.addr
        ),
        "timeoutMs": 90_000,
    }));
    let report = node.report(SECS(120)).await;
    let secret = report["secret"].as_str().unwrap();
    let before = &report["before"];
    let requests = before["requests"].as_array().unwrap();
    for r in requests {
        assert!(!carries(r, secret), "the other server got the token: {r}");
    }
    assert!(
        requests
            .iter()
            .any(|r| r["method"] == "GET" && r["url"] == "/events/news"),
        "the page watched the other server: {requests:?}"
    );
    assert!(
        requests.iter().any(|r| r["method"] == "POST"),
        "and published to it"
    );
    assert_eq!(
        before["events"][0],
        serde_json::json!(["elsewhere-1", "hello from elsewhere"])
    );
    assert_eq!(before["tokenFetches"], 0, "no token fetched for nobody");

    // Once the user ticks "send it the token", it is sent (which is also
    // what shows this test would see a leak).
    let after = &report["after"];
    assert!(after["tokenFetches"].as_u64().unwrap() >= 1, "{after}");
    assert!(
        after["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["headers"]["authorization"] == format!("Bearer {secret}")),
        "{after}"
    );
}
