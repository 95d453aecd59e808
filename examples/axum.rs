//! ssehub inside an axum app. The app keeps its own routes and its own
//! sign-in; ssehub adds event streams without a server of its own:
//!
//! - the app's auth middleware puts the caller's [`Principal`] in the
//!   request's extensions, and ssehub's [`Authorize`] hook reads it there to
//!   decide which topics a stream may see (`401` without one, `403` for a
//!   room that is not theirs);
//! - ssehub's endpoints are mounted with `Router::nest_service("/sse", ..)`
//!   (routes relative to the mount point: `/sse/events/{topic}`), and the
//!   announcements stream with `route_service("/stream", ..)`;
//! - one handler of the app answers with a stream itself
//!   ([`stream_response`]), after its own checks;
//! - graceful shutdown closes the hub, so open streams end and the server
//!   stops instead of waiting for them forever.
//!
//! ```text
//! cargo run --example axum
//! curl -N http://127.0.0.1:3000/sse/events/lobby -H 'Authorization: Bearer alice-token'
//! curl -N http://127.0.0.1:3000/sse/events/bob -H 'Authorization: Bearer alice-token'    # 403
//! curl -N http://127.0.0.1:3000/sse/events/lobby                                        # 401
//! curl -N http://127.0.0.1:3000/rooms/lobby/events -H 'Authorization: Bearer bob-token'
//! curl -X POST http://127.0.0.1:3000/api/rooms/lobby/messages \
//!      -H 'Authorization: Bearer alice-token' -d 'hello, room'
//! curl -N http://127.0.0.1:3000/stream                                                  # anyone
//! curl -X POST http://127.0.0.1:3000/sse/events/announcements \
//!      -H 'Authorization: Bearer admin-token' -d 'maintenance at noon'
//! ```

use std::future::Future;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use ssehub::core::TopicName;
use ssehub::http::{
    AccessRequest, Authorize, CorsOrigins, Decision, Unauthorized, stream_response,
};
use ssehub::{Event, Hub, SseService};
use tokio::net::TcpListener;

/// Who made a request, as the app's auth middleware found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    pub(crate) name: &'static str,
    /// The rooms (topics) this user may read and post to.
    pub(crate) rooms: &'static [&'static str],
    /// Admins read every topic and publish through ssehub's own endpoint.
    pub(crate) admin: bool,
}

/// The app's sessions. A real app looks the token up in its session store.
const SESSIONS: &[(&str, Principal)] = &[
    (
        "alice-token",
        Principal {
            name: "alice",
            rooms: &["lobby", "alice"],
            admin: false,
        },
    ),
    (
        "bob-token",
        Principal {
            name: "bob",
            rooms: &["lobby", "bob"],
            admin: false,
        },
    ),
    (
        "admin-token",
        Principal {
            name: "admin",
            rooms: &[],
            admin: true,
        },
    ),
];

/// The topic everyone may read, signed in or not.
pub(crate) const ANNOUNCEMENTS: &str = "announcements";

/// The app: its own routes, ssehub's endpoints under `/sse`, the
/// announcements at `/stream`, all behind the app's auth middleware.
pub(crate) fn app(hub: Hub) -> Router {
    let sse = SseService::builder(hub.clone())
        // `GET /stream` serves this topic.
        .stream_topic(ANNOUNCEMENTS)
        // Who sees what is the app's decision, made from its own principal.
        .authorize(Rooms)
        // The app's pages are on the same origin; a host with its own CORS
        // layer does the same.
        .cors(CorsOrigins::Off)
        .build();
    Router::new()
        .route("/", get(page))
        .route("/api/hello", get(hello))
        .route("/api/rooms/{room}/messages", post(say))
        .route("/rooms/{room}/events", get(room_events))
        // The request reaches ssehub as `/stream`: its announcements route.
        .route_service("/stream", sse.clone())
        // Requests reach ssehub without the `/sse` prefix.
        .nest_service("/sse", sse)
        .layer(middleware::from_fn(authenticate))
        .with_state(hub)
}

/// Serves the app until `shutdown` completes, then shuts down gracefully:
/// new connections are refused, and the hub is closed so that every open
/// event stream ends (they never end by themselves; without this, axum's
/// graceful shutdown waits for them forever).
pub(crate) async fn serve(
    listener: TcpListener,
    hub: Hub,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(hub.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            hub.close();
        })
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    serve(listener, Hub::new(), ssehub::server::shutdown_signal()).await?;
    Ok(())
}

/// The app's sign-in: `Authorization: Bearer <token>` or the cookie
/// `session=<token>`. A known token puts its [`Principal`] in the request's
/// extensions; an unknown one is refused here; none lets the request go on
/// anonymously (the routes decide what anonymous callers get).
async fn authenticate(mut req: Request, next: Next) -> Response {
    if let Some(token) = session_token(req.headers()) {
        match SESSIONS.iter().find(|(t, _)| *t == token) {
            Some((_, principal)) => {
                req.extensions_mut().insert(principal.clone());
            }
            None => return (StatusCode::UNAUTHORIZED, "unknown session\n").into_response(),
        }
    }
    next.run(req).await
}

fn session_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("session="))
    };
    bearer.or_else(cookie)
}

/// ssehub's hook: what a stream under `/sse` (or `/stream`) may show, and
/// who may publish through `POST /sse/events/{topic}`, decided from the
/// principal the middleware found.
struct Rooms;

impl Authorize for Rooms {
    fn subscribe(&self, req: &AccessRequest<'_>, topic: &TopicName) -> Decision {
        if topic.as_str() == ANNOUNCEMENTS {
            return Decision::Allow;
        }
        match req.extensions().get::<Principal>() {
            None => Decision::Unauthorized(Unauthorized::Missing("sign in first".into())),
            Some(p) if p.admin || p.rooms.contains(&topic.as_str()) => Decision::Allow,
            Some(_) => Decision::Forbidden("not one of your rooms".into()),
        }
    }

    fn publish(&self, req: &AccessRequest<'_>, _: &TopicName) -> Decision {
        match req.extensions().get::<Principal>() {
            None => Decision::Unauthorized(Unauthorized::Missing("sign in first".into())),
            Some(p) if p.admin => Decision::Allow,
            Some(_) => {
                Decision::Forbidden("members post through /api/rooms/{room}/messages".into())
            }
        }
    }
}

/// The app's own stream route: it checks the principal itself, then lets
/// ssehub answer (`Last-Event-ID`, `?limit=`, the `text/event-stream`
/// headers) with one call.
async fn room_events(
    State(hub): State<Hub>,
    Path(room): Path<String>,
    principal: Option<axum::Extension<Principal>>,
    parts: Parts,
) -> Response {
    let Some(axum::Extension(p)) = principal else {
        return (StatusCode::UNAUTHORIZED, "sign in first\n").into_response();
    };
    if !p.rooms.contains(&room.as_str()) {
        return (StatusCode::FORBIDDEN, "not one of your rooms\n").into_response();
    }
    match stream_response(&hub, room.as_str(), &parts) {
        Ok(res) => res.map(Body::new),
        // A bad query or topic name: `400`. A refusal that will pass (the
        // hub is closing): `200` with a `retry:` hint for an `EventSource`,
        // so it comes back later, `503` for other clients.
        Err(e) => e.into_response_for(&parts.headers).map(Body::new),
    }
}

/// The app publishes from its own code: a member posts to one of their
/// rooms.
async fn say(
    State(hub): State<Hub>,
    Path(room): Path<String>,
    principal: Option<axum::Extension<Principal>>,
    text: String,
) -> Response {
    let Some(axum::Extension(p)) = principal else {
        return (StatusCode::UNAUTHORIZED, "sign in first\n").into_response();
    };
    if !p.rooms.contains(&room.as_str()) {
        return (StatusCode::FORBIDDEN, "not one of your rooms\n").into_response();
    }
    let event = match Event::new(format!("{}: {text}", p.name)).with_type("message") {
        Ok(event) => event,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    match hub.publish(room.as_str(), event).await {
        Ok(id) => (StatusCode::CREATED, format!("{id}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn hello(principal: Option<axum::Extension<Principal>>) -> Response {
    match principal {
        Some(axum::Extension(p)) => format!("hello, {}\n", p.name).into_response(),
        None => (StatusCode::UNAUTHORIZED, "sign in first\n").into_response(),
    }
}

async fn page() -> Html<&'static str> {
    Html(
        "<!doctype html><title>ssehub in axum</title>\
         <h1>Announcements</h1><ul id=log></ul>\
         <script>new EventSource('/stream').onmessage = e => \
         document.getElementById('log').insertAdjacentHTML('beforeend', \
         '<li>' + e.data.replace(/</g, '&lt;'));</script>",
    )
}
