//! Headless Chromium (Debian's, driven by playwright-core through
//! `tests/browser/mercure.mjs`): a native `EventSource` on a URI template
//! selector, its token in the `mercureAuthorization` cookie, receives a
//! private update its claim covers, published on another connection, and
//! not one its claim does not cover.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::{publish, server, subscriber};

/// How long the browser side may take for one step (Chromium starts
/// slowly on a busy machine).
const STEP: Duration = Duration::from_secs(90);

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Chromium and `playwright-core`, with a clear message when missing.
fn prerequisites() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (apt-get install chromium) \
         or run `bash .ci/run`, which does"
    );
    let dir = browser_dir();
    if !dir.join("node_modules/playwright-core").exists() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm (Node.js) is needed for the browser tests");
        assert!(status.success(), "npm ci in tests/browser failed");
    }
}

#[tokio::test]
async fn chromium_with_the_token_in_a_cookie_gets_the_private_updates_its_claim_covers() {
    prerequisites();
    let server = server(false).await;
    let addr = server.addr;
    let token = subscriber(&["https://example.com/users/foo/{?topic}"]);
    let config = json!({
        "base": format!("http://{addr}"),
        "token": token,
        "topics": ["https://example.com/books/{id}"],
        "until": "urn:browser:public",
        "timeoutMs": STEP.as_millis() as u64 - 10_000,
    });
    let mut child = Command::new("node")
        .arg("mercure.mjs")
        .arg(config.to_string())
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(STEP, lines.next_line())
            .await
            .expect("the browser answers in time")
            .unwrap()
            .expect("a line from the browser");
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.get("error").is_none(), "the browser side failed: {v}");
        v
    };
    assert_eq!(next().await, json!({"step": "open"}));

    // Published on other connections, after the browser subscribed.
    let alternate = |user: &str, n: u32| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("topic", &format!("https://example.com/books/{n}"));
        format!("https://example.com/users/{user}/?{}", s.finish())
    };
    let (bar, foo) = (alternate("bar", 1), alternate("foo", 2));
    let updates: [&[(&str, &str)]; 4] = [
        // Private, for another user: the claim does not cover it.
        &[
            ("topic", "https://example.com/books/1"),
            ("topic", &bar),
            ("private", "on"),
            ("id", "urn:browser:not-yours"),
            ("data", "bar's"),
        ],
        // Private, for foo through its alternate topic.
        &[
            ("topic", "https://example.com/books/2"),
            ("topic", &foo),
            ("private", "on"),
            ("id", "urn:browser:yours"),
            ("data", "foo's"),
        ],
        // Public, but not matched by the selector.
        &[
            ("topic", "https://example.com/films/1"),
            ("id", "urn:browser:film"),
            ("data", "film"),
        ],
        &[
            ("topic", "https://example.com/books/3"),
            ("id", "urn:browser:public"),
            ("data", "everyone's"),
        ],
    ];
    for fields in updates {
        publish(addr, fields).await;
    }
    let report = next().await["report"].clone();
    assert_eq!(
        report["got"],
        json!([
            ["urn:browser:yours", "foo's", "message"],
            ["urn:browser:public", "everyone's", "message"]
        ]),
        "{report}"
    );
    assert_eq!(report["states"], json!(["open"]), "{report}");
    assert_eq!(report["cookie"], json!(true), "{report}");
    let status = tokio::time::timeout(STEP, child.wait())
        .await
        .expect("node exits")
        .unwrap();
    assert!(status.success());
    server.stop().await;
}
