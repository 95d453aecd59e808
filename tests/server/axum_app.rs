//! ssehub in a real axum app (`examples/axum.rs`, compiled in here as it
//! is), served by `axum::serve` on 127.0.0.1 and reached by real HTTP/1.1
//! and HTTP/2 clients: routes relative to the `nest_service` mount point,
//! `route_service`, the authorisation hook reading the principal that the
//! app's middleware put in the request's extensions, a handler answering
//! with `stream_response`, graceful shutdown with open streams, and the same
//! app under ssehub's own `Server`.

use crate::support;

#[allow(dead_code)]
#[path = "../../examples/axum.rs"]
mod example;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ssehub::server::{ServerConfig, ServiceAdapter};
use ssehub::{Hub, Server, SseService};
use support::{Item, SseClient, WAIT, header, request, request_full, seq};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ALICE: (&str, &str) = ("Authorization", "Bearer alice-token");
const BOB: (&str, &str) = ("Authorization", "Bearer bob-token");
const ADMIN: (&str, &str) = ("Authorization", "Bearer admin-token");

/// The example app on `127.0.0.1:0`, served by `axum::serve` until `stop`.
struct App {
    addr: SocketAddr,
    hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl App {
    async fn start() -> App {
        let hub = Hub::builder().retry_jitter(0.0).build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(example::serve(listener, hub.clone(), async {
            let _ = rx.await;
        }));
        App {
            addr,
            hub,
            stop: Some(tx),
            task,
        }
    }

    async fn subscribe(&self, path: &str, headers: &[(&str, &str)]) -> SseClient {
        SseClient::get(self.addr, path, headers).await
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        request(self.addr, "POST", path, headers, body.as_bytes()).await
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// The next event's data, after the `retry` hint and the checkpoint.
async fn next_data(client: &mut SseClient) -> String {
    client.next_event().await.data
}

#[tokio::test]
async fn nested_routes_are_relative_to_the_mount_point() {
    let app = App::start().await;
    let mut alice = app.subscribe("/sse/events/lobby", &[ALICE]).await;
    assert_eq!(alice.status, 200);
    assert_eq!(alice.header("content-type"), Some("text/event-stream"));

    // ssehub's publish route under the mount point, allowed by the hook
    // for the admin.
    let (status, body) = app.post("/sse/events/lobby", &[ADMIN], "doors open").await;
    assert_eq!(status, 201, "{body}");
    let id = body.split('"').nth(3).expect("an id").to_owned();
    let event = alice.next_event().await;
    assert_eq!(event.data, "doors open");
    assert_eq!(event.last_event_id, id);

    // ssehub's other routes are there too, and only under the mount point.
    assert_eq!(
        request(app.addr, "GET", "/sse/healthz", &[], b"").await,
        (200, "ok\n".into())
    );
    assert_eq!(
        request(app.addr, "GET", "/events/lobby", &[ALICE], b"")
            .await
            .0,
        404
    );
    assert_eq!(
        request(app.addr, "GET", "/sse/nothing", &[ALICE], b"")
            .await
            .0,
        404
    );
    // The app's own routes sit next to them.
    assert_eq!(
        request(app.addr, "GET", "/api/hello", &[ALICE], b"").await,
        (200, "hello, alice\n".into())
    );
    let (status, headers, page) = request_full(app.addr, "GET", "/", &[], b"").await;
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.contains("new EventSource('/stream')"));
    // `CorsOrigins::Off`: the host's business, ssehub adds nothing.
    let cors = SseClient::get(
        app.addr,
        "/sse/events/lobby",
        &[ALICE, ("Origin", "https://elsewhere.example")],
    )
    .await;
    assert_eq!(cors.status, 200);
    assert_eq!(cors.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn the_hook_decides_from_the_principal_the_middleware_found() {
    let app = App::start().await;
    // Allowed: alice's own room, by bearer token or by the app's cookie.
    let mut own = app.subscribe("/sse/events/alice", &[ALICE]).await;
    assert_eq!(own.status, 200);
    let mut by_cookie = app
        .subscribe(
            "/sse/events/alice",
            &[("Cookie", "theme=dark; session=alice-token")],
        )
        .await;
    assert_eq!(by_cookie.status, 200);
    // The admin reads every room.
    let mut admin = app.subscribe("/sse/events/alice", &[ADMIN]).await;
    assert_eq!(admin.status, 200);
    let (status, _) = app.post("/sse/events/alice", &[ADMIN], "for alice").await;
    assert_eq!(status, 201);
    for client in [&mut own, &mut by_cookie, &mut admin] {
        assert_eq!(next_data(client).await, "for alice");
    }

    // A principal, but the wrong one: 403 with the hook's text.
    let (status, body) = request(app.addr, "GET", "/sse/events/alice", &[BOB], b"").await;
    assert_eq!((status, body.as_str()), (403, "not one of your rooms\n"));
    // No principal: 401 with the hook's text and a challenge that says
    // how to authenticate, not that a token was bad (RFC 6750, 3.1).
    let (status, headers, body) =
        request_full(app.addr, "GET", "/sse/events/alice", &[], b"").await;
    assert_eq!((status, body.as_str()), (401, "sign in first\n"));
    assert_eq!(
        header(&headers, "www-authenticate"),
        Some("Bearer realm=\"ssehub\"")
    );
    // The middleware refuses an unknown session before ssehub sees it.
    let (status, body) = request(
        app.addr,
        "GET",
        "/sse/events/alice",
        &[("Authorization", "Bearer forged")],
        b"",
    )
    .await;
    assert_eq!((status, body.as_str()), (401, "unknown session\n"));
    // The hook decides publishing too: members may not publish through
    // ssehub, anonymous callers must sign in.
    assert_eq!(app.post("/sse/events/alice", &[ALICE], "x").await.0, 403);
    assert_eq!(app.post("/sse/events/alice", &[], "x").await.0, 401);
    // The refused requests opened nothing and published nothing.
    assert_eq!(app.hub.stats().subscribers, 3);
    assert_eq!(app.hub.stats().published, 1);
}

#[tokio::test]
async fn route_service_sees_the_whole_path() {
    let app = App::start().await;
    // The example mounts the service at `/stream`: ssehub's route for its
    // stream topic (the announcements, open to anyone).
    let mut anyone = app.subscribe("/stream", &[]).await;
    assert_eq!(anyone.status, 200);
    let (status, _) = app
        .post("/sse/events/announcements", &[ADMIN], "maintenance at noon")
        .await;
    assert_eq!(status, 201);
    assert_eq!(next_data(&mut anyone).await, "maintenance at noon");

    // Mounted on a route with a parameter, the service gets the request's
    // path as it is: its prefix is the part before `/events/`.
    let hub = Hub::new();
    let router = Router::new().route_service(
        "/feeds/events/{topic}",
        SseService::builder(hub.clone()).prefix("/feeds").build(),
    );
    let addr = serve_router(router).await;
    let mut feed = SseClient::get(addr, "/feeds/events/prices", &[]).await;
    assert_eq!(feed.status, 200);
    hub.publish("prices", ssehub::Event::new("3.14"))
        .await
        .unwrap();
    assert_eq!(next_data(&mut feed).await, "3.14");
    assert_eq!(
        request(addr, "GET", "/feeds/healthz", &[], b"").await.0,
        404
    );
}

/// Serves `router` on `127.0.0.1:0` for the rest of the test.
async fn serve_router(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test]
async fn a_handler_answers_with_stream_response() {
    let app = App::start().await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let (status, body) = app.post("/api/rooms/lobby/messages", &[ALICE], text).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body.trim().to_owned());
    }
    // Bob resumes after the first message, for two events: exactly the two
    // he missed, then the response ends.
    let mut bob = app
        .subscribe(
            "/rooms/lobby/events?limit=2",
            &[BOB, ("Last-Event-ID", &ids[0])],
        )
        .await;
    assert_eq!(bob.status, 200);
    assert_eq!(bob.header("content-type"), Some("text/event-stream"));
    assert_eq!(bob.header("cache-control"), Some("no-cache"));
    let items = bob.until_end().await;
    assert!(bob.ended_cleanly());
    let events = support::events(&items);
    let got: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.event_type.as_str(),
                e.data.as_str(),
                e.last_event_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("message", "alice: two", ids[1].as_str()),
            ("message", "alice: three", ids[2].as_str()),
        ]
    );
    assert_eq!(seq(&ids[2]), 3);
    // `?lastEventId=` works as well (pages that resume across reloads).
    let mut reload = app
        .subscribe(
            &format!("/rooms/lobby/events?limit=1&lastEventId={}", ids[1]),
            &[BOB],
        )
        .await;
    assert_eq!(
        support::events(&reload.until_end().await)[0].data,
        "alice: three"
    );

    // The handler's own checks, and what `stream_response` refuses.
    assert_eq!(
        request(app.addr, "GET", "/rooms/alice/events", &[BOB], b"")
            .await
            .0,
        403
    );
    assert_eq!(
        request(app.addr, "GET", "/rooms/lobby/events", &[], b"")
            .await
            .0,
        401
    );
    assert_eq!(
        request(app.addr, "GET", "/rooms/lobby/events?limit=0", &[BOB], b"").await,
        (400, "invalid limit: expected an integer from 1\n".into())
    );
    assert_eq!(app.hub.stats().subscribers, 0);
}

/// An HTTP/2 (h2c) stream: the response head and a receiver for its body's
/// data, read by a task until the body ends (`Ok(())`) or fails.
async fn h2_stream(
    addr: SocketAddr,
    path: &str,
    auth: (&str, &str),
) -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    JoinHandle<Result<(), String>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("http://localhost{path}"))
        .header(auth.0, auth.1)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut body = res.into_body();
    let reader = tokio::spawn(async move {
        let _sender = sender;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                let _ = tx.send(data);
            }
        }
        Ok(())
    });
    (status, rx, reader)
}

/// Regression guard for the known axum pain point: graceful shutdown waits
/// for every response to finish, and an event stream never does by itself.
/// The example closes the hub when the signal comes, which ends them.
#[tokio::test]
async fn graceful_shutdown_ends_open_streams_in_bounded_time() {
    let mut app = App::start().await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(app.subscribe("/sse/events/lobby", &[ALICE]).await);
    }
    clients.push(app.subscribe("/stream", &[]).await);
    clients.push(app.subscribe("/rooms/lobby/events", &[BOB]).await);
    let (status, mut h2_data, h2_reader) = h2_stream(app.addr, "/sse/events/lobby", BOB).await;
    assert_eq!(status, 200);
    for c in &clients {
        assert_eq!(c.status, 200);
    }
    // Every stream is live: each receives an event before the shutdown.
    app.post("/sse/events/lobby", &[ADMIN], "last call").await;
    app.post("/sse/events/announcements", &[ADMIN], "last call")
        .await;
    for c in &mut clients {
        assert_eq!(next_data(c).await, "last call");
    }
    let mut h2_text = String::new();
    while !h2_text.contains("data: last call\n") {
        let chunk = tokio::time::timeout(WAIT, h2_data.recv())
            .await
            .unwrap()
            .unwrap();
        h2_text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(app.hub.stats().subscribers, 6);

    let started = Instant::now();
    app.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), &mut app.task)
        .await
        .expect("axum::serve returns within 5 s with streams open")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    for c in &mut clients {
        c.expect_end().await;
        assert!(
            c.ended_cleanly(),
            "a stream ends with its last chunk, not a cut"
        );
    }
    tokio::time::timeout(WAIT, h2_reader)
        .await
        .expect("the HTTP/2 stream ends")
        .unwrap()
        .expect("the HTTP/2 stream ends cleanly");
    assert_eq!(app.hub.stats().subscribers, 0);
    println!("axum shutdown with 6 open streams took {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// The same axum app run by ssehub's `Server` through `ServiceAdapter`: the
/// middleware and the hook apply to the HTTP/1.1 fast path too, and the
/// server's shutdown ends the streams.
#[tokio::test]
async fn the_axum_app_runs_under_ssehubs_server() {
    let hub = Hub::builder().retry_jitter(0.0).build();
    let routes = ServiceAdapter::new(example::app(hub.clone()))
        .streams(["/sse/events/", "/stream", "/rooms/"])
        .on_shutdown({
            let hub = hub.clone();
            move || hub.close()
        });
    let server = Server::bind("127.0.0.1:0", routes)
        .await
        .unwrap()
        .with_config(ServerConfig::default());
    let addr = server.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = rx.await;
    }));

    let mut alice = SseClient::get(addr, "/sse/events/lobby", &[ALICE]).await;
    assert_eq!(alice.status, 200);
    let (status, body) = request(addr, "GET", "/sse/events/bob", &[ALICE], b"").await;
    assert_eq!((status, body.as_str()), (403, "not one of your rooms\n"));
    assert_eq!(
        request(addr, "GET", "/sse/events/bob", &[], b"").await.0,
        401
    );
    let (status, _) = request(addr, "POST", "/api/rooms/lobby/messages", &[BOB], b"hi").await;
    assert_eq!(status, 201);
    assert_eq!(next_data(&mut alice).await, "bob: hi");

    let started = Instant::now();
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server stops within 5 s with a stream open")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let rest = alice.until_end().await;
    assert!(
        rest.iter().all(|i| matches!(i, Item::Comment(_))),
        "{rest:?}"
    );
    assert!(alice.ended_cleanly());
}
