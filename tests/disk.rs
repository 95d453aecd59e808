//! The disk store (`--data-dir`) in process: history survives the store
//! being closed and opened again, resumes older than the ring are served
//! from disk, the directory lock, retention.

mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use ssehub::store::{DiskStore, Retention};
use ssehub::{Event, EventStream, Hub, Subscribe};

fn hub_on(dir: &std::path::Path, buffer: usize) -> Hub {
    let store = DiskStore::open(dir, Retention::default()).expect("open the store");
    Hub::builder()
        .buffer(buffer)
        .retry(None)
        .keep_alive(None)
        .storage(store)
        .build()
}

/// Every event of a stream that ends (it has a limit), as (id, data).
async fn drain(mut stream: EventStream) -> Vec<(String, String)> {
    let mut body = Vec::new();
    while let Some(frame) = tokio::time::timeout(support::WAIT, stream.frame())
        .await
        .expect("the stream goes on")
    {
        body.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let items = support::Parser::new().feed(&body);
    support::events(&items)
        .into_iter()
        .map(|e| {
            assert_ne!(e.event_type, "resync", "{}", e.data);
            (e.last_event_id, e.data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let epoch = {
        let hub = hub_on(dir.path(), 16);
        let mut epoch = None;
        for i in 1..=100 {
            let id = hub
                .publish("news", Event::new(format!("n{i}")))
                .await
                .unwrap();
            assert_eq!(id.seq(), i);
            epoch = Some(id.epoch());
        }
        epoch.unwrap()
    };
    let hub = hub_on(dir.path(), 16);
    let info = hub.topic_info("news").expect("the topic is back");
    assert_eq!(info.latest.to_string(), format!("{epoch}-100"));
    // Resume from before the restart, far older than the ring.
    let stream = hub
        .subscribe(
            "news",
            Subscribe::new()
                .last_event_id(format!("{epoch}-40"))
                .limit(70),
        )
        .unwrap();
    let publisher = {
        let hub = hub.clone();
        tokio::spawn(async move {
            for i in 101..=110 {
                hub.publish("news", Event::new(format!("n{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let got = drain(stream).await;
    publisher.await.unwrap();
    let want: Vec<_> = (41..=110)
        .map(|i| (format!("{epoch}-{i}"), format!("n{i}")))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = DiskStore::open(dir.path(), Retention::default()).unwrap();
    let err = DiskStore::open(dir.path(), Retention::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("in use"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_count_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(dir.path(), Retention::default().events(50)).unwrap();
    let hub = Hub::builder()
        .buffer(8)
        .retry(None)
        .keep_alive(None)
        .storage(store)
        .build();
    let mut epoch = None;
    for i in 1..=200 {
        epoch = Some(
            hub.publish("t", Event::new(format!("{i}")))
                .await
                .unwrap()
                .epoch(),
        );
    }
    let epoch = epoch.unwrap();
    // Trimming runs with the commits: give it its round.
    hub.publish("t", Event::new("201")).await.unwrap();
    let mut stream = hub
        .subscribe(
            "t",
            Subscribe::new()
                .last_event_id(format!("{epoch}-0"))
                .limit(50),
        )
        .unwrap();
    let mut body = Vec::new();
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), stream.frame())
        .await
        .unwrap_or_else(|_| panic!("stuck after {:?}", String::from_utf8_lossy(&body)))
    {
        body.extend_from_slice(&frame.unwrap().into_data().unwrap());
    }
    let items = support::Parser::new().feed(&body);
    let evs = support::events(&items);
    assert_eq!(evs[0].event_type, "resync");
    let resync: serde_json::Value = serde_json::from_str(&evs[0].data).unwrap();
    assert_eq!(resync["reason"], "evicted");
    assert_eq!(resync["oldest"], format!("{epoch}-152"));
    assert_eq!(resync["missed"], 151);
    let seqs: Vec<u64> = evs[1..]
        .iter()
        .map(|e| support::seq(&e.last_event_id))
        .collect();
    assert_eq!(seqs, (152..=201).collect::<Vec<_>>());
}
