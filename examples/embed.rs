//! ssehub inside an existing hyper server: the application keeps its own
//! routes, mounts ssehub's endpoints under `/sse`, and publishes from its own
//! code.
//!
//! ```text
//! cargo run --example embed
//! curl -N http://127.0.0.1:3000/sse/events/orders     # subscribe
//! curl -X POST http://127.0.0.1:3000/orders -d 'two coffees'  # the app publishes
//! curl http://127.0.0.1:3000/                         # the app's own page
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use ssehub::{Event, Hub, SseService};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let hub = Hub::new();
    let sse = SseService::builder(hub.clone()).prefix("/sse").build();
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);

    let shutdown = ssehub::server::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => break,
        };
        let (sse, hub) = (sse.clone(), hub.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (sse, hub) = (sse.clone(), hub.clone());
                async move {
                    if req.uri().path().starts_with("/sse/") {
                        // ssehub's body is a plain http_body::Body: box it
                        // like any other.
                        let res = sse.call(req).await?;
                        return Ok::<_, Infallible>(res.map(|b| b.boxed()));
                    }
                    Ok(app(req, &hub).await)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
    // Event streams never end by themselves: close the hub on shutdown.
    hub.close();
    Ok(())
}

/// The application's own routes.
async fn app(req: Request<Incoming>, hub: &Hub) -> Response<Body> {
    match (req.method().as_str(), req.uri().path()) {
        ("POST", "/orders") => {
            let body = req.into_body().collect().await.map(|c| c.to_bytes());
            let text = body.map(|b| String::from_utf8_lossy(&b).into_owned());
            let event = Event::new(text.unwrap_or_default()).with_type("order");
            match event {
                Ok(event) => match hub.publish("orders", event).await {
                    Ok(id) => text_response(201, format!("order {id} announced\n")),
                    Err(e) => text_response(503, format!("{e}\n")),
                },
                Err(e) => text_response(400, format!("{e}\n")),
            }
        }
        ("GET", "/") => text_response(200, "the app's own page\n".into()),
        _ => text_response(404, "not found\n".into()),
    }
}

fn text_response(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("valid response")
}
