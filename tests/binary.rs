//! The `ssehub` binary as a user runs it: the demo ticker on `/stream`,
//! SIGTERM with thousands of open streams ends them all and exits 0 quickly,
//! and the flags (environment variables, tokens, TLS, deadlines) take effect.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Item, SseClient, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Starts the binary on an ephemeral port and returns it with its address.
async fn start(args: &[&str]) -> (Child, SocketAddr) {
    start_env(args, &[]).await
}

async fn start_env(args: &[&str], env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ssehub");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line))
        .await
        .expect("listening line in time")
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ssehub listening on http://")
        .or_else(|| line.trim().strip_prefix("ssehub listening on https://"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn stream_ticks_unnamed_events() {
    let (child, addr) = start(&["--tick", "0.05"]).await;
    let mut c = SseClient::get(addr, "/stream", &[]).await;
    assert_eq!(c.status, 200);
    let mut last = 0;
    for _ in 0..3 {
        let ev = c.next_event().await;
        assert_eq!(ev.event_type, "message");
        // RFC 3339 UTC with milliseconds.
        assert_eq!(ev.data.len(), 24, "{:?}", ev.data);
        assert!(ev.data.ends_with('Z') && ev.data.as_bytes()[10] == b'T');
        let n = support::seq(&ev.last_event_id);
        assert!(n > last);
        last = n;
    }
    sigterm(&child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_thousands_of_streams_exits_zero_quickly() {
    const STREAMS: usize = 2000;
    let (mut child, addr) = start(&["--tick", "0.2"]).await;

    let mut tasks = Vec::new();
    for i in 0..STREAMS {
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/stream".to_owned()
            } else {
                format!("/events/t{}", i % 50)
            };
            let mut c = SseClient::get(addr, &path, &[]).await;
            assert_eq!(c.status, 200);
            assert!(support::is_default_retry(c.next_item().await));
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }

    let t0 = Instant::now();
    sigterm(&child);
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(4), "took {took:?}");

    // Every stream ended with a complete response, so clients reconnect.
    for c in &mut clients {
        c.expect_end().await;
        assert!(c.ended_cleanly());
    }
}

#[tokio::test]
async fn environment_variables_set_flags() {
    let (child, addr) = start_env(
        &[],
        &[
            ("SSEHUB_PUBLISH_TOKEN", "envtok"),
            ("SSEHUB_TICK", "0"),
            ("SSEHUB_RETRY", "1234"),
            ("SSEHUB_RETRY_JITTER", "0"),
        ],
    )
    .await;
    let (status, _) = support::request(addr, "POST", "/events/t", &[], b"x").await;
    assert_eq!(status, 401);
    let (status, _) = support::request(
        addr,
        "POST",
        "/events/t",
        &[("Authorization", "Bearer envtok")],
        b"x",
    )
    .await;
    assert_eq!(status, 201);
    let mut c = SseClient::get(addr, "/events/t", &[]).await;
    assert_eq!(c.next_item().await, Some(Item::Retry(1234)));
    sigterm(&child);
}

#[tokio::test]
async fn max_topics_per_stream_by_flag_and_variable() {
    for (args, env) in [
        (&["--max-topics-per-stream", "2"][..], &[][..]),
        (&[][..], &[("SSEHUB_MAX_TOPICS_PER_STREAM", "2")][..]),
    ] {
        let (child, addr) = start_env(args, env).await;
        let c = SseClient::get(addr, "/events?topic=a&topic=b", &[]).await;
        assert_eq!(c.status, 200);
        let (status, body) =
            support::request(addr, "GET", "/events?topic=a&topic=b&topic=c", &[], b"").await;
        assert_eq!(
            (status, body.trim_end()),
            (400, "too many topics: at most 2 per stream")
        );
        drop(c);
        sigterm(&child);
    }
    // Out of range: the binary says so and exits.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["--max-topics-per-stream", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--max-topics-per-stream"));
}

#[tokio::test]
async fn token_subcommand_mints_what_the_server_accepts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args([
            "token",
            "--key",
            "k3y",
            "--subscribe",
            "news",
            "chat:*",
            "--ttl",
            "60",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.matches('.').count(), 2, "a JWT: {token}");

    let (child, addr) = start(&["--tick", "0", "--jwt-key", "k3y"]).await;
    for (path, want) in [
        ("/events/news", 200),
        ("/events/chat:42", 200),
        ("/events/other", 403),
    ] {
        let c = SseClient::get(addr, &format!("{path}?access_token={token}"), &[]).await;
        assert_eq!(c.status, want, "{path}");
    }
    assert_eq!(SseClient::get(addr, "/events/news", &[]).await.status, 401);
    sigterm(&child);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["token", "--key", "k", "--subscribe", "bad/topic"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid topic pattern"));
}

#[tokio::test]
async fn tls_flags_serve_https() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("ssehub-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let (child, addr) = start(&[
        "--tick",
        "0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
    .await;

    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    sigterm(&child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn deadline_flags_and_their_variables_set_the_deadlines() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Far shorter than the 10 s defaults: a silent socket and a stalled
    // body are ended within this.
    const BOUND: Duration = Duration::from_secs(5);
    let (child, addr) = start_env(
        &[
            "--tick",
            "0",
            "--header-timeout",
            "0.3",
            "--idle-timeout",
            "0.3",
        ],
        &[("SSEHUB_BODY_TIMEOUT", "0.3")],
    )
    .await;
    let t0 = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut h2 = tokio::net::TcpStream::connect(addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    for s in [&mut silent, &mut h2] {
        let mut rest = Vec::new();
        tokio::time::timeout(BOUND, s.read_to_end(&mut rest))
            .await
            .expect("closed by the deadline")
            .unwrap();
    }
    assert!(t0.elapsed() >= Duration::from_millis(300));

    let mut post = tokio::net::TcpStream::connect(addr).await.unwrap();
    post.write_all(b"POST /events/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nab")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, post.read_to_end(&mut answer))
        .await
        .expect("answered and closed by the deadline")
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    sigterm(&child);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["--listen", "127.0.0.1:0", "--idle-timeout", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid --idle-timeout"));
}
