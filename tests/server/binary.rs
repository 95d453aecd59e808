//! The `ssehub` binary as a user runs it: the demo ticker on `/stream`,
//! SIGTERM with thousands of open streams ends them all and exits 0 quickly,
//! and the flags (environment variables, tokens, TLS, deadlines) take effect.

use crate::support;

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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'--idle-timeout <SECS>'") && stderr.contains("0.001 to 31,536,000"),
        "{stderr}"
    );
}

/// Runs the binary as a server with `args` and `env` on an ephemeral port
/// and returns its exit status and stderr; panics if it is still running
/// after `WAIT` (it accepted the flags and served).
async fn startup_error(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args(["--listen", "127.0.0.1:0", "--tick", "0"])
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ssehub");
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{args:?} {env:?}: started instead of refusing"))
        .unwrap();
    assert!(!out.status.success(), "{args:?} {env:?}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Regression (issue 20, finding 4): an empty secret failed open. `--jwt-key
/// ''` (or `SSEHUB_JWT_KEY=`) let anyone subscribe, `--publish-token ''` fell
/// back to the loopback rule (behind a proxy: anyone publishes), and
/// `--data-dir ''` ran in memory, so `201` silently stopped meaning durable.
/// Each is now a startup error naming the flag and its variable, as is an
/// empty `--redis`, `--tls-cert`, `--tls-key`, `--cors-origin` and
/// `ssehub token --key`.
#[tokio::test]
async fn empty_secrets_urls_and_paths_are_startup_errors() {
    let cases: [(&str, &str, &[&str]); 7] = [
        ("--jwt-key", "SSEHUB_JWT_KEY", &[]),
        ("--publish-token", "SSEHUB_PUBLISH_TOKEN", &[]),
        ("--data-dir", "SSEHUB_DATA_DIR", &[]),
        ("--redis", "SSEHUB_REDIS", &[]),
        (
            "--tls-cert",
            "SSEHUB_TLS_CERT",
            &["--tls-key", "/nonexistent/key.pem"],
        ),
        (
            "--tls-key",
            "SSEHUB_TLS_KEY",
            &["--tls-cert", "/nonexistent/cert.pem"],
        ),
        ("--cors-origin", "SSEHUB_CORS_ORIGIN", &[]),
    ];
    let mut runs = Vec::new();
    for (flag, env, extra) in cases {
        let want = if flag == "--cors-origin" {
            "invalid origin \"\""
        } else {
            "must not be empty"
        };
        runs.push(tokio::spawn(async move {
            let mut args = vec![flag, ""];
            args.extend_from_slice(extra);
            let (code, stderr) = startup_error(&args, &[]).await;
            assert_eq!(code, Some(2), "{flag} '': {stderr}");
            assert!(
                stderr.contains(flag) && stderr.contains(env) && stderr.contains(want),
                "{flag} '': {stderr}"
            );
            let (code, stderr) = startup_error(extra, &[(env, "")]).await;
            assert_eq!(code, Some(2), "{env}=: {stderr}");
            assert!(
                stderr.contains(env) && stderr.contains(want),
                "{env}=: {stderr}"
            );
        }));
    }
    for run in runs {
        run.await.unwrap();
    }

    for env in [&[][..], &[("SSEHUB_JWT_KEY", "")][..]] {
        let mut args = vec!["token", "--subscribe", "t"];
        if env.is_empty() {
            args.extend(["--key", ""]);
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
            .args(&args)
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.contains("--key") && stderr.contains("must not be empty"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "no token printed");
    }
}

/// Regression (issue 20, finding 6): odd values were accepted. Some
/// panicked on use (`--retry 3000000000000000000` in every refusal,
/// `--keep-alive 9223372036854775807` in every stream, `ssehub token --ttl
/// 18446744073709551615` at once), others were clamped or meant nothing
/// (`--retry-jitter 2`, `inf`, `NaN`; `--max-topics 0` became 1;
/// `--max-connections 0` answered even `/healthz` with `503`;
/// `--max-total-bytes 0` answered every publish `413`; `--retry 0` gave
/// refused browsers 5-20 ms hints; `--cors-origin 'not a url'`). Each is a
/// startup error naming the flag, its variable and the range, from the
/// flag or the variable alike.
#[tokio::test]
async fn odd_values_are_startup_errors_that_name_the_flag_and_the_range() {
    let cases = [
        ("--retry", "3000000000000000000", "100 to 3,600,000"),
        ("--retry", "0", "100 to 3,600,000"),
        ("--keep-alive", "9223372036854775807", "0 to 86,400"),
        ("--retry-jitter", "2", "0 to 1"),
        ("--retry-jitter", "inf", "0 to 1"),
        ("--retry-jitter", "NaN", "0 to 1"),
        ("--max-topics", "0", "1 to 10,000,000"),
        ("--max-connections", "0", "1 to 10,000,000"),
        ("--max-total-bytes", "0", "1,024 to 1,099,511,627,776"),
        ("--cors-origin", "not a url", "invalid origin \"not a url\""),
        ("--cors-origin", "null", "invalid origin \"null\""),
        (
            "--cors-origin",
            "https://app.example/path",
            "invalid origin",
        ),
        ("--retain-age", "1e300", "0.001 to 3,153,600,000"),
        ("--header-timeout", "0", "0.001 to 31,536,000"),
    ];
    let mut runs = Vec::new();
    for (flag, value, want) in cases {
        runs.push(tokio::spawn(async move {
            let env = format!("SSEHUB_{}", flag[2..].replace('-', "_").to_uppercase());
            let (code, stderr) = startup_error(&[&format!("{flag}={value}")], &[]).await;
            assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
            for part in [flag, env.as_str(), want] {
                assert!(
                    stderr.contains(part),
                    "{flag} {value}: {part:?} in {stderr}"
                );
            }
            let (code, stderr) = startup_error(&[], &[(&env, value)]).await;
            assert_eq!(code, Some(2), "{env}={value}: {stderr}");
            assert!(
                stderr.contains(&env) && stderr.contains(want),
                "{env}={value}: {stderr}"
            );
        }));
    }
    for run in runs {
        run.await.unwrap();
    }

    for ttl in ["18446744073709551615", "0", "315360001"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
            .args(["token", "--key", "k", "--subscribe", "t", "--ttl", ttl])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--ttl {ttl}: {stderr}");
        assert!(
            stderr.contains("--ttl") && stderr.contains("1 to 315,360,000"),
            "{stderr}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .args([
            "token",
            "--key",
            "k",
            "--subscribe",
            "t",
            "--ttl",
            "315360000",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "the longest TTL");
}

/// Origins are taken as browsers send them: a trailing `/` dropped, the
/// scheme and host in lowercase, so `HTTPS://App.Example/` still matches
/// `Origin: https://app.example`.
#[tokio::test]
async fn cors_origins_match_as_browsers_send_them() {
    let (child, addr) = start(&["--tick", "0", "--cors-origin", "HTTPS://App.Example/"]).await;
    let c = SseClient::get(addr, "/events/t", &[("Origin", "https://app.example")]).await;
    assert_eq!(c.status, 200);
    assert_eq!(
        c.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    sigterm(&child);
}
