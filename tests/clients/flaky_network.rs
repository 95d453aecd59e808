//! Real clients on a really broken connection: headless Chromium (native
//! `EventSource`, and the page at `/` left alone or reloaded mid-stream),
//! the Node `eventsource` package and ssehub's own Rust client each get
//! every event exactly once and in order while a chaos proxy cuts them at
//! least 50 times (mid-event, by reset or clean close, or after a stall).
//! Then the signals a browser sees: `resync` beyond the ring and after a
//! restart, the `retry:` hint, and twenty streams in one page over HTTP/2.

use crate::support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use ssehub::Hub;
use support::chaos::{Chaos, ChaosProxy, all_cut};
use support::flaky::{
    Seen, check_exactly_once, check_gaps_announced, publish_until, publish_until_many,
    whole_run_hub,
};
use support::multi::split;
use support::node::{NodeRun, pairs, seen};
use support::resume_client::ResumingClient;
use support::{STALL, TestServer, until_progress};

const MIN_CUTS: u64 = 50;

/// Clients reconnect fast; the ring holds the whole run, so a client that
/// a slow machine keeps offline for long still resumes exactly.
fn fast_retry_hub() -> Hub {
    whole_run_hub(Duration::from_millis(120))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_through_chaos_gets_every_event_once() {
    let server = TestServer::start(fast_retry_hub()).await;
    let proxy = ChaosProxy::start(server.addr, Chaos::flaky(0xC0FFEE)).await;
    let client = ResumingClient::spawn(proxy.addr, "/events/chaos".into(), "end");

    let log = client.log.clone();
    let received = log.clone();
    let goal = all_cut(std::slice::from_ref(&proxy), MIN_CUTS)
        .and(move || !received.lock().unwrap().events.is_empty());
    let end = publish_until(&server.hub, "chaos", Duration::from_millis(3), goal).await;
    until_progress("the client reaches the end", STALL, || {
        (client.is_done(), log.lock().unwrap().events.len())
    })
    .await;

    let log = client.log.lock().unwrap();
    check_gaps_announced("rust client", &log.seen).unwrap();
    let received: Vec<_> = log
        .events
        .iter()
        .map(|e| (e.last_event_id.clone(), e.data.clone()))
        .collect();
    let n = check_exactly_once("rust client", &received, end).unwrap();
    assert!(log.resyncs.is_empty(), "{:?}", log.resyncs);
    let s = &proxy.stats;
    println!(
        "rust client: {n} events, {} connections, {} cuts ({} resets, {} closes, {} stalls)",
        s.connections.load(Ordering::Relaxed),
        s.cuts(),
        s.resets.load(Ordering::Relaxed),
        s.closes.load(Ordering::Relaxed),
        s.stalls.load(Ordering::Relaxed)
    );
    assert!(s.cuts() >= MIN_CUTS);
}

/// A task publishing an event every `period` until dropped.
struct Ticker(tokio::task::JoinHandle<()>);

impl Ticker {
    fn start(hub: Hub, topic: &'static str, period: Duration) -> Ticker {
        Ticker(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                tokio::time::sleep(period).await;
                n += 1;
                if hub
                    .publish(topic, ssehub::Event::new(format!("tick {n}")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }))
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_the_page_reloaded_or_not_and_node_eventsource_through_chaos() {
    let server = TestServer::start(fast_retry_hub()).await;
    let proxies = [
        ChaosProxy::start(server.addr, Chaos::flaky(11)).await,
        ChaosProxy::start(server.addr, Chaos::flaky(66)).await,
        ChaosProxy::start(server.addr, Chaos::flaky(22)).await,
        ChaosProxy::start(server.addr, Chaos::flaky(33)).await,
    ];
    let page = |proxy: &ChaosProxy| {
        format!(
            "http://{}/?topic=chaos&server=http://{}",
            server.addr, proxy.addr
        )
    };
    let node = NodeRun::start(serde_json::json!({
        "scenario": "flaky",
        "hostUrl": format!("http://{}/?autoconnect=0", server.addr),
        "nativeUrl": format!("http://{}/events/chaos", proxies[0].addr),
        "pageUrl": page(&proxies[1]),
        "reloadUrl": page(&proxies[2]),
        "nodeUrl": format!("http://{}/events/chaos", proxies[3].addr),
        "end": "end",
        "reloadEveryMs": [1500, 3000],
        "timeoutMs": 120_000,
    }));
    let end = publish_until(
        &server.hub,
        "chaos",
        Duration::from_millis(3),
        all_cut(&proxies, MIN_CUTS),
    )
    .await;
    let report = node.report(STALL).await;

    for (name, proxy) in ["native", "page", "reload", "node"].iter().zip(&proxies) {
        let r = &report[*name];
        check_gaps_announced(name, &seen(&r["seen"])).unwrap();
        let received = pairs(&r["events"]);
        let n = check_exactly_once(name, &received, end).unwrap();
        assert_eq!(
            r["resyncs"].as_array().unwrap().len(),
            0,
            "{name}: {}",
            r["resyncs"]
        );
        let s = &proxy.stats;
        println!(
            "{name}: {n} events exactly once; {} cuts ({} resets, {} closes, {} stalls){}",
            s.cuts(),
            s.resets.load(Ordering::Relaxed),
            s.closes.load(Ordering::Relaxed),
            s.stalls.load(Ordering::Relaxed),
            match *name {
                "reload" => format!("; {} page reloads", r["reloads"]),
                "native" | "page" => format!("; reconnect delays (ms) {}", r["delays"]),
                _ => format!("; {} opens", r["opens"]),
            }
        );
        assert!(s.cuts() >= MIN_CUTS);
    }
    assert!(report["reload"]["reloads"].as_u64().unwrap() >= 3);
}

/// One `EventSource` on twelve topics (`GET /events?topic=...`) over
/// HTTP/1.1, in Chromium and in the Node `eventsource` package, each
/// through its own chaos proxy: every event of every topic exactly once and
/// in that topic's order, resuming each time with the one id that is a
/// cursor for all twelve. Topic 0 gets half the events, so the others also
/// show that a busy topic does not hold them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_eventsource_on_twelve_topics_through_chaos_in_chromium_and_node() {
    let server = TestServer::start(fast_retry_hub()).await;
    let proxies = [
        ChaosProxy::start(server.addr, Chaos::flaky(44)).await,
        ChaosProxy::start(server.addr, Chaos::flaky(55)).await,
    ];
    let topics: Vec<String> = (0..12).map(|i| format!("multi{i}")).collect();
    let query: Vec<String> = topics.iter().map(|t| format!("topic={t}")).collect();
    let stream = |proxy: &ChaosProxy| format!("http://{}/events?{}", proxy.addr, query.join("&"));
    let node = NodeRun::start(serde_json::json!({
        "scenario": "multiFlaky",
        "pageUrl": format!("http://{}/?autoconnect=0", server.addr),
        "chromiumUrl": stream(&proxies[0]),
        "nodeUrl": stream(&proxies[1]),
        "topics": topics,
        "end": "end",
        "timeoutMs": 150_000,
    }));
    let ends = publish_until_many(
        &server.hub,
        &topics,
        Duration::from_millis(3),
        all_cut(&proxies, MIN_CUTS),
    )
    .await;
    let report = node.report(STALL).await;

    for (name, proxy) in ["chromium", "node"].iter().zip(&proxies) {
        let rec: Vec<(String, String, String)> = report[*name]["rec"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let s = |i: usize| r[i].as_str().unwrap().to_owned();
                (s(0), s(1), s(2))
            })
            .collect();
        let per_topic = split(&topics, &rec);
        let mut total = 0;
        for ((topic, log), end) in topics.iter().zip(&per_topic).zip(&ends) {
            let who = format!("{name} {topic}");
            check_gaps_announced(&who, &log.seen).unwrap();
            total += check_exactly_once(&who, &log.events, *end).unwrap();
            let resyncs = log
                .seen
                .iter()
                .filter(|s| matches!(s, Seen::Resync(_)))
                .count();
            assert_eq!(resyncs, 0, "{who}");
        }
        let s = &proxy.stats;
        println!(
            "{name}: {total} events of {} topics exactly once; {} cuts ({} resets, {} closes, \
             {} stalls); {} opens",
            topics.len(),
            s.cuts(),
            s.resets.load(Ordering::Relaxed),
            s.closes.load(Ordering::Relaxed),
            s.stalls.load(Ordering::Relaxed),
            report[*name]["opens"]
        );
        assert!(s.cuts() >= MIN_CUTS);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_beyond_the_ring_fires_resync_in_the_browser() {
    let server = TestServer::start(Hub::builder().buffer(10).build()).await;
    for i in 1..=100 {
        server
            .hub
            .publish("ring", ssehub::Event::new(i.to_string()))
            .await
            .unwrap();
    }
    let e = server.hub.epoch();
    let node = NodeRun::start(serde_json::json!({
        "scenario": "resyncBeyondRing",
        "pageUrl": format!("http://{}/?topic=ring", server.addr),
        "localStorage": { "ssehub:lastEventId:ring": format!("{e}-3") },
        "expectEvents": 10,
    }));
    let report = node.report(STALL).await;
    let resync = &report["resyncs"][0];
    assert_eq!(resync["reason"], "evicted");
    assert_eq!(resync["missed"], 87);
    assert_eq!(resync["oldest"], format!("{e}-91"));
    assert_eq!(
        report["pageResyncs"][0]["reason"], "evicted",
        "the page's own handler saw it"
    );
    let received = pairs(&report["events"]);
    let seqs: Vec<_> = received.iter().map(|(id, _)| support::seq(id)).collect();
    assert_eq!(seqs, (91..=100).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_a_resync_for_the_browser() {
    let hub_a = Hub::builder()
        .retry(Some(Duration::from_millis(200)))
        .build();
    let server_a = TestServer::start(hub_a).await;
    let proxy = ChaosProxy::start(server_a.addr, Chaos::none(1)).await;
    let _ticks_a = Ticker::start(server_a.hub.clone(), "restart", Duration::from_millis(50));
    let mut node = NodeRun::start(serde_json::json!({
        "scenario": "epoch",
        "pageUrl": format!("http://{}/?topic=restart&server=http://{}", server_a.addr, proxy.addr),
    }));
    let connected = node.next(STALL).await;
    assert_eq!(connected["step"], "connected");
    let old_epoch = server_a.hub.epoch();

    // Restart: a new process would have a new epoch; so does a new hub.
    let hub_b = Hub::builder()
        .retry(Some(Duration::from_millis(200)))
        .build();
    let server_b = TestServer::start(hub_b).await;
    proxy.set_upstream(server_b.addr);
    server_a.stop().await;
    let _ticks_b = Ticker::start(server_b.hub.clone(), "restart", Duration::from_millis(50));
    node.send("restarted").await;

    let report = node.report(STALL).await;
    let resync = &report["resyncs"][0];
    assert_eq!(resync["reason"], "epoch");
    assert!(
        resync["requested"]
            .as_str()
            .unwrap()
            .starts_with(old_epoch.as_str())
    );
    let last = pairs(&report["events"]).pop().unwrap();
    assert!(last.0.starts_with(server_b.hub.epoch().as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_and_the_page_honour_the_retry_hint() {
    let mut servers = serde_json::Map::new();
    let mut keep = Vec::new();
    for retry in [300u64, 1500] {
        let hub = Hub::builder()
            .retry(Some(Duration::from_millis(retry)))
            .retry_jitter(0.0)
            .build();
        let server = TestServer::start(hub).await;
        // Every connection ends cleanly 400 ms after it opens.
        let mut chaos = Chaos::none(retry);
        chaos.p_time = 1.0;
        chaos.millis = (400, 400);
        chaos.p_reset = 0.0;
        let proxy = ChaosProxy::start(server.addr, chaos).await;
        let ticks = Ticker::start(server.hub.clone(), "retry", Duration::from_millis(20));
        servers.insert(
            retry.to_string(),
            serde_json::json!({
                "host": format!("http://{}/?autoconnect=0", server.addr),
                "stream": format!("http://{}/events/retry", proxy.addr),
                "page": format!("http://{}/?topic=retry&server=http://{}", server.addr, proxy.addr),
            }),
        );
        keep.push((server, proxy, ticks));
    }
    let node = NodeRun::start(
        serde_json::json!({ "scenario": "retry", "servers": servers, "reconnects": 4 }),
    );
    let report = node.report(STALL).await;
    for retry in [300u64, 1500] {
        for client in ["native", "page"] {
            let mut delays: Vec<u64> = report[format!("{retry} {client}")]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            delays.sort_unstable();
            let median = delays[delays.len() / 2];
            println!(
                "retry: {retry} ms -> {client} reconnect delays {delays:?} ms (median {median})"
            );
            // The client waits the hint, plus the time to connect again.
            assert!(
                median >= retry - 50 && median <= retry + 700,
                "{client}: {delays:?}"
            );
        }
    }
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_streams_in_one_page_need_http2() {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let tls = ssehub::server::TlsConfig::from_pem(
        ck.cert.pem().as_bytes(),
        ck.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut config = ssehub::server::ServerConfig::default();
    config.tls = Some(tls);
    let https = TestServer::start_with(ssehub::SseService::new(Hub::new()), config).await;
    let http = TestServer::start(Hub::new()).await;
    let _t1 = Ticker::start(https.hub.clone(), "tabs", Duration::from_millis(100));
    let _t2 = Ticker::start(http.hub.clone(), "tabs", Duration::from_millis(100));

    let run = |url: String, wait: u64| {
        NodeRun::start(serde_json::json!({
            "scenario": "tabs", "pageUrl": url, "streamPath": "/events/tabs", "sources": 20, "waitMs": wait,
        }))
    };
    let h2 = run(
        format!("https://127.0.0.1:{}/?autoconnect=0", https.addr.port()),
        20_000,
    )
    .report(STALL)
    .await;
    println!("HTTPS: {h2}");
    assert_eq!(h2["protocol"], "h2");
    assert_eq!(h2["receiving"], 20);

    let h1 = run(format!("http://{}/?autoconnect=0", http.addr), 3_000)
        .report(STALL)
        .await;
    println!("HTTP/1.1: {h1}");
    assert_eq!(h1["protocol"], "http/1.1");
    assert_eq!(
        h1["receiving"], 6,
        "a browser holds at most 6 HTTP/1.1 connections per host"
    );
}
