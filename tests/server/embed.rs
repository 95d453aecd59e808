//! The handler-level call without any framework: a plain hyper
//! `service_fn` that does its own routing answers stream requests with
//! `stream_response`, over a real socket. What the client asks for
//! (`Last-Event-ID`, `?lastEventId=`, `?limit=`) is read from the request,
//! refusals are the precise statuses of `StreamRequestError` (an
//! `EventSource` turned away for now is told to retry), and closing the hub
//! ends the streams. The body's `Stream` view is read too.

use crate::support;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ssehub::http::stream_response;
use ssehub::{Event, Hub, Subscribe};
use support::{Item, SseClient, WAIT, events, header, request_full};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// The embedder's router: `GET /feed/{topic}` is a stream, the rest `404`.
async fn route(req: Request<Incoming>, hub: Hub) -> Result<Response<Body>, Infallible> {
    let (parts, _body) = req.into_parts();
    let Some(topic) = parts.uri.path().strip_prefix("/feed/") else {
        let mut res = Response::new(Full::from("not here\n").boxed());
        *res.status_mut() = http::StatusCode::NOT_FOUND;
        return Ok(res);
    };
    Ok(match stream_response(&hub, topic, &parts) {
        Ok(res) => res.map(|stream| stream.boxed()),
        Err(e) => e.into_response_for(&parts.headers).map(|body| body.boxed()),
    })
}

/// A hyper HTTP/1.1 server on `127.0.0.1:0` with [`route`].
async fn start(hub: Hub) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let hub = hub.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| route(req, hub.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn stream_response_in_a_hyper_service_fn_resumes_exactly() {
    let hub = Hub::builder().retry_jitter(0.0).build();
    let addr = start(hub.clone()).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(
            hub.publish("news", Event::new(format!("n{n}")))
                .await
                .unwrap(),
        );
    }

    // The header: after the first, two events, then the response ends.
    let mut c = SseClient::get(
        addr,
        "/feed/news?limit=2",
        &[("Last-Event-ID", &ids[0].to_string())],
    )
    .await;
    assert_eq!(c.status, 200);
    assert_eq!(c.header("content-type"), Some("text/event-stream"));
    assert_eq!(c.header("cache-control"), Some("no-cache"));
    assert_eq!(c.header("x-accel-buffering"), Some("no"));
    let got: Vec<_> = events(&c.until_end().await)
        .into_iter()
        .map(|e| (e.data, e.last_event_id))
        .collect();
    assert_eq!(
        got,
        [
            ("n2".into(), ids[1].to_string()),
            ("n3".into(), ids[2].to_string())
        ]
    );
    assert!(c.ended_cleanly());

    // The query parameter, when there is no header; the header wins.
    let path = format!("/feed/news?limit=1&lastEventId={}", ids[2]);
    let mut by_query = SseClient::get(addr, &path, &[]).await;
    assert_eq!(events(&by_query.until_end().await)[0].data, "n4");
    let mut both = SseClient::get(addr, &path, &[("Last-Event-ID", &ids[1].to_string())]).await;
    assert_eq!(events(&both.until_end().await)[0].data, "n3");

    // A live subscriber gets what is published next.
    let mut live = SseClient::get(addr, "/feed/news", &[]).await;
    hub.publish("news", Event::new("n5")).await.unwrap();
    assert_eq!(live.next_event().await.data, "n5");
}

#[tokio::test]
async fn stream_response_refusals_are_precise() {
    let hub = Hub::new();
    let addr = start(hub.clone()).await;
    for (path, status, text) in [
        (
            "/feed/news?limit=0",
            400,
            "invalid limit: expected an integer from 1\n",
        ),
        (
            "/feed/news?rewind=-1",
            400,
            "invalid rewind: expected an integer from 0\n",
        ),
        (
            "/feed/bad%20name",
            400,
            "invalid topic name (1-128 characters from A-Z a-z 0-9 - _ . :)\n",
        ),
        ("/elsewhere", 404, "not here\n"),
    ] {
        let (got, headers, body) = request_full(addr, "GET", path, &[], b"").await;
        assert_eq!((got, body.as_str()), (status, text), "{path}");
        assert_ne!(header(&headers, "content-type"), Some("text/event-stream"));
    }
    assert_eq!(hub.stats().subscribers, 0);
}

/// Closing the hub ends the streams the handler opened, with their last
/// chunk, and later requests are refused with `503`.
#[tokio::test]
async fn closing_the_hub_ends_handler_streams() {
    let hub = Hub::new();
    let addr = start(hub.clone()).await;
    let mut a = SseClient::get(addr, "/feed/a", &[]).await;
    let mut b = SseClient::get(addr, "/feed/b", &[]).await;
    hub.publish("a", Event::new("x")).await.unwrap();
    assert_eq!(a.next_event().await.data, "x");
    hub.close();
    for c in [&mut a, &mut b] {
        c.expect_end().await;
        assert!(c.ended_cleanly());
    }
    // Later requests: an `EventSource` (it accepts `text/event-stream`) is
    // told to come back later, other clients get `503`.
    let mut browser = SseClient::get(addr, "/feed/a", &[]).await;
    assert_eq!(browser.status, 200);
    let items = browser.until_end().await;
    assert!(
        items.iter().any(|i| matches!(i, Item::Retry(_))),
        "{items:?}"
    );
    assert!(events(&items).is_empty());
    let (status, headers, _) = request_full(addr, "GET", "/feed/a", &[], b"").await;
    assert_eq!(status, 503);
    assert_eq!(header(&headers, "retry-after"), Some("5"));
}

/// The body as a `futures` `Stream` of its data, for frameworks that take
/// one: the same bytes as the body, in order, ending with the stream.
#[tokio::test]
async fn the_data_stream_view_yields_the_bodys_bytes() {
    async fn next<S: futures_core::Stream + Unpin>(s: &mut S) -> Option<S::Item> {
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut *s).poll_next(cx)).await
    }

    let hub = Hub::builder().retry_jitter(0.0).build();
    let first = hub.publish("t", Event::new("one")).await.unwrap();
    hub.publish("t", Event::new("two")).await.unwrap();
    let stream = hub
        .subscribe(
            "t",
            Subscribe::new().last_event_id(first.to_string()).limit(1),
        )
        .unwrap();
    let mut data = stream.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = tokio::time::timeout(WAIT, next(&mut data)).await.unwrap() {
        let chunk: Bytes = chunk.unwrap();
        bytes.extend_from_slice(&chunk);
    }
    assert!(next(&mut data).await.is_none(), "stays ended");
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(
        text,
        format!("retry: 3000\ndata: two\nid: {}-2\n\n", hub.epoch())
    );
}
