//! Arbitrary requests through `SseService`: methods, paths (topics), query
//! strings (`lastEventId`, `limit`, `event`, `access_token`), headers
//! (`Last-Event-ID`, `Authorization`, `Cookie`, `Origin`, `Content-Type`,
//! `Idempotency-Key`) and publish bodies (text and JSON). Nothing may panic, and every
//! response must be well-formed.
//!
//! Input layout: the first byte picks the method and the service; the rest
//! is split on `\n` into path+query, header lines (`name: value`), then an
//! empty line and the body.

#![no_main]

use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::service::Service;
use libfuzzer_sys::fuzz_target;
use ssehub::{Event, Hub, SseService};
use ssehub::http::{CorsOrigins, Grants, JwtKey};

struct World {
    rt: tokio::runtime::Runtime,
    open: SseService,
    strict: SseService,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let hub = Hub::builder().buffer(16).max_topics(64).max_total_bytes(64 << 10).build();
    rt.block_on(async {
        for i in 0..40 {
            hub.publish("t", Event::new(format!("event {i}\nline"))).await.unwrap();
        }
    });
    let key = JwtKey::hs256(b"fuzz");
    let open = SseService::new(hub.clone());
    let strict = SseService::builder(hub)
        .publish_token("tok")
        .jwt_key(key)
        .cors(CorsOrigins::from_list(&["https://a.example"]))
        .max_body_bytes(4096)
        .build();
    // Keep a valid token around so the fuzzer can find it in the corpus.
    let _ = JwtKey::hs256(b"fuzz").issue(&Grants::new().subscribe("*").unwrap(), Duration::from_secs(3600));
    World { rt, open, strict }
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let world = &*WORLD;
    let method = match selector % 5 {
        0 | 1 => http::Method::GET,
        2 | 3 => http::Method::POST,
        _ => http::Method::OPTIONS,
    };
    let service = if selector & 0x80 == 0 { &world.open } else { &world.strict };

    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.split('\n');
    let target = lines.next().unwrap_or("/");
    let mut builder = http::Request::builder().method(method).uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(req) = builder.body(Full::new(Bytes::copy_from_slice(body.as_bytes()))) else {
        // hyper would not have produced such a request.
        return;
    };

    world.rt.block_on(async {
        let res = service.call(req).await.expect("infallible");
        assert!(res.status().as_u16() >= 200 && res.status().as_u16() < 600);
        // Take what is ready of the body without waiting for live events.
        let mut body = res.into_body();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..64 {
            match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        assert!(std::str::from_utf8(data).is_ok(), "bodies are UTF-8");
                    }
                }
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        let _ = body.is_end_stream();
    });
});
