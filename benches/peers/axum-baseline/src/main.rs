//! The typical Rust SSE server, as a benchmark peer: axum's `Sse` response
//! fed by one `tokio::sync::broadcast` channel per topic. Events get a
//! per-topic id, there is no replay, and a lagging subscriber skips what
//! the channel dropped.
//!
//!   axum-baseline 127.0.0.1:8082 [channel capacity, default 1024]
//!   GET /events/{topic}   subscribe
//!   POST /events/{topic}  publish the body

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};

static CAPACITY: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

#[derive(Clone)]
struct Topic {
    tx: tokio::sync::broadcast::Sender<(u64, Arc<str>)>,
    next: Arc<AtomicU64>,
}

type Topics = Arc<Mutex<HashMap<String, Topic>>>;

fn topic(topics: &Topics, name: &str) -> Topic {
    topics
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_insert_with(|| Topic {
            tx: tokio::sync::broadcast::channel(*CAPACITY.get().unwrap_or(&1024)).0,
            next: Arc::new(AtomicU64::new(1)),
        })
        .clone()
}

async fn subscribe(
    Path(name): Path<String>,
    State(topics): State<Topics>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = topic(&topics, &name).tx.subscribe();
    let stream = BroadcastStream::new(rx).filter_map(|msg| {
        msg.ok()
            .map(|(id, data)| Ok(Event::default().id(id.to_string()).data(&*data)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn publish(Path(name): Path<String>, State(topics): State<Topics>, body: String) -> StatusCode {
    let t = topic(&topics, &name);
    let id = t.next.fetch_add(1, Ordering::Relaxed);
    let _ = t.tx.send((id, body.into()));
    StatusCode::CREATED
}

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8082".into());
    if let Some(c) = std::env::args().nth(2) {
        CAPACITY.set(c.parse().expect("channel capacity")).unwrap();
    }
    let topics: Topics = Arc::default();
    let app = Router::new()
        .route("/events/{topic}", get(subscribe).post(publish))
        .with_state(topics);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(addr.parse().unwrap()).unwrap();
    let listener = socket.listen(4096).unwrap();
    println!("axum-baseline listening on http://{}", listener.local_addr().unwrap());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.unwrap();
}
