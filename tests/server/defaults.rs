//! The defaults the README promises are the ones the library and the binary
//! use: its "Limits and defaults" and "Flags" tables are parsed and compared
//! with `HubConfig::default()`, `ServiceConfig::default()`,
//! `ServerConfig::default()` and `ssehub --help`, so a default changed in
//! one place and not the other fails here.

use std::collections::BTreeMap;
use std::time::Duration;

use ssehub::http::ServiceConfig;
use ssehub::hub::HubConfig;
use ssehub::server::ServerConfig;

const README: &str = include_str!("../../README.md");

/// The body rows of the first table after `heading`, as trimmed cells.
fn table(heading: &str) -> Vec<Vec<String>> {
    let section = README
        .split(&format!("\n{heading}\n"))
        .nth(1)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rows: Vec<Vec<String>> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the separator
        .map(|row| {
            let row = row.trim().trim_start_matches('|').trim_end_matches('|');
            row.split('|').map(|c| c.trim().to_owned()).collect()
        })
        .collect();
    assert!(!rows.is_empty(), "{heading}: no table");
    rows
}

/// The text between the first pair of backticks.
fn code(cell: &str) -> Option<&str> {
    let start = cell.find('`')? + 1;
    let len = cell[start..].find('`')?;
    Some(&cell[start..start + len])
}

/// A quantity as the README writes it: `1024`, `10,000`, `16 MiB`,
/// `64 KiB`, `10 s` (in seconds), followed by anything.
fn quantity(cell: &str) -> u64 {
    let mut words = cell.split_whitespace();
    let number: u64 = words
        .next()
        .unwrap()
        .trim_matches('`')
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a quantity: {cell:?}"));
    match words.next().map(|w| w.trim_end_matches(',')) {
        Some("KiB") => number << 10,
        Some("MiB") => number << 20,
        _ => number,
    }
}

/// One flag of the README's table.
#[derive(Debug, PartialEq)]
struct Flag {
    env: String,
    /// `None` where the README says "none".
    default: Option<String>,
}

/// `--flag` -> its variable and default, from the README's Flags table.
fn readme_flags() -> BTreeMap<String, Flag> {
    table("## Flags")
        .into_iter()
        .map(|row| {
            let name = code(&row[0]).unwrap().split(' ').next().unwrap().to_owned();
            let env = row[0].split('`').nth(3).unwrap().to_owned();
            let default = (row[1] != "none").then(|| code(&row[1]).unwrap().to_owned());
            (name, Flag { env, default })
        })
        .collect()
}

/// `--flag` -> its variable and default, from `ssehub --help`.
fn help_flags() -> BTreeMap<String, Flag> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .arg("--help")
        // `[env: X=value]` shows the variables that are set.
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeMap::new();
    let mut current: Option<(String, Flag)> = None;
    for line in help.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("--") {
            flags.extend(current.take());
            let name = format!("--{}", rest.split(' ').next().unwrap());
            let flag = Flag {
                env: String::new(),
                default: None,
            };
            current = Some((name, flag));
        } else if line.starts_with("-h, --help") || line.starts_with("-V, --version") {
            flags.extend(current.take());
        } else if let Some((_, flag)) = &mut current {
            if let Some(env) = line.strip_prefix("[env: ") {
                flag.env = env.trim_end_matches(']').trim_end_matches('=').to_owned();
            } else if let Some(default) = line.strip_prefix("[default: ") {
                flag.default = Some(default.trim_end_matches(']').to_owned());
            }
        }
    }
    flags.extend(current.take());
    flags
}

#[test]
fn the_binary_has_the_readme_flags_with_their_defaults() {
    let readme = readme_flags();
    let help = help_flags();
    assert_eq!(
        readme.keys().collect::<Vec<_>>(),
        help.keys().collect::<Vec<_>>(),
        "the README's flags and --help's"
    );
    for (name, flag) in &readme {
        assert_eq!(Some(flag), help.get(name), "{name}");
    }
}

/// The README's default of `flag`, as a number.
fn flag_default(flag: &str) -> u64 {
    let flags = readme_flags();
    let d = flags[flag].default.as_deref().unwrap();
    d.parse()
        .unwrap_or_else(|_| panic!("{flag}: not a number: {d:?}"))
}

#[test]
fn the_library_defaults_are_the_readme_flags_defaults() {
    let hub = HubConfig::default();
    let service = ServiceConfig::default();
    let server = ServerConfig::default();
    let size = |n: usize| n as u64;
    assert_eq!(size(hub.buffer), flag_default("--buffer"));
    assert_eq!(size(hub.max_topic_bytes), flag_default("--max-topic-bytes"));
    assert_eq!(size(hub.max_total_bytes), flag_default("--max-total-bytes"));
    assert_eq!(size(hub.max_topics), flag_default("--max-topics"));
    assert_eq!(
        hub.retry,
        Some(Duration::from_millis(flag_default("--retry")))
    );
    assert_eq!(
        Some(hub.retry_jitter.to_string()),
        readme_flags()["--retry-jitter"].default
    );
    assert_eq!(
        hub.keep_alive,
        Some(Duration::from_secs(flag_default("--keep-alive")))
    );
    assert_eq!(
        size(service.max_body_bytes),
        flag_default("--max-body-bytes")
    );
    assert_eq!(
        size(service.max_topics_per_stream),
        flag_default("--max-topics-per-stream")
    );
    assert_eq!(
        size(server.max_connections),
        flag_default("--max-connections")
    );
    // `0` (off) is no limit.
    assert_eq!(flag_default("--max-connections-per-ip"), 0);
    assert_eq!(server.max_connections_per_ip, None);
    assert_eq!(
        server.shutdown_timeout,
        Duration::from_secs(flag_default("--shutdown-timeout"))
    );
    // What `Hub::new()` and `SseService::new` use.
    assert_eq!(ssehub::Hub::new().config(), &hub);
    assert_eq!(
        ssehub::SseService::new(ssehub::Hub::new())
            .config()
            .max_body_bytes,
        service.max_body_bytes
    );
}

#[test]
fn the_library_defaults_are_the_readme_limits() {
    let hub = HubConfig::default();
    let service = ServiceConfig::default();
    let server = ServerConfig::default();
    let flags = readme_flags();
    let rows = table("## Limits and defaults");
    for row in &rows {
        let (what, default, flag) = (row[0].as_str(), row[1].as_str(), row[2].as_str());
        let secs = |d: Duration| d.as_secs();
        let size = |n: usize| n as u64;
        let want = match what {
            "events retained per topic" => size(hub.buffer),
            w if w.starts_with("bytes retained per topic") => size(hub.max_topic_bytes),
            "bytes retained by all topics" => size(hub.max_total_bytes),
            "topics" => size(hub.max_topics),
            "open connections" => size(server.max_connections),
            "open connections per IP address" => {
                assert!(default.starts_with("no limit"), "{default}");
                assert_eq!(server.max_connections_per_ip, None);
                assert_eq!(flags[code(flag).unwrap()].default.as_deref(), Some("0"));
                continue;
            }
            "publish body (also a Durable Streams create or append)" => {
                size(service.max_body_bytes)
            }
            "request head" => size(server.max_header_bytes),
            w if w.starts_with("time to send the first bytes")
                || w == "time to finish the TLS handshake"
                || w == "time to send an HTTP/1.1 request head"
                || w.starts_with("idle HTTP/1.1 connection") =>
            {
                secs(server.header_read_timeout)
            }
            // The grace after it ("dropped 1 s later") is private; a unit
            // test of `server` checks the README states it.
            w if w.starts_with("connection with no request in progress") => {
                secs(server.idle_timeout)
            }
            "silence between bytes of a request body" => secs(server.body_read_timeout),
            w if w.starts_with("average rate of a request body") => {
                assert_eq!(
                    default,
                    format!("at least {} KiB/s, else `408`", server.min_body_rate / 1024)
                );
                continue;
            }
            "answering `503` to a connection over a limit" => {
                // Twice the shorter of the head deadline and 5 s.
                let bound = 2 * secs(server.header_read_timeout).min(5);
                assert_eq!(quantity(default.trim_start_matches("at most ")), bound);
                continue;
            }
            // Not a number: tests/server/deadlines.rs holds it to its word.
            w if w.starts_with("an event stream, or any response") => continue,
            "frame built from several ready events" => size(hub.max_frame_bytes),
            w if w.starts_with("topics per stream") => size(service.max_topics_per_stream),
            // Not a number; tests/slow_client.rs holds it to its word.
            "memory per slow subscriber" => continue,
            "shutdown wait for connections" => secs(server.shutdown_timeout),
            "longest `Idempotency-Key`" => size(ssehub::core::MAX_IDEMPOTENCY_KEY_LEN),
            "idempotency keys remembered per topic" => {
                // The cost the memory store counts for a key (a unit test
                // checks it covers what a key takes).
                let cost = format!(
                    "its length + {} bytes",
                    ssehub::core::IDEMPOTENCY_KEY_OVERHEAD
                );
                assert!(default.contains(&cost), "{default}");
                assert!(default.starts_with("one per retained event at most"));
                continue;
            }
            other => panic!("a README limit this test does not know: {other:?}"),
        };
        assert_eq!(quantity(default), want, "{what}: {default}");
        // The same default in the Flags table.
        if let Some(flag) = code(flag) {
            let d = flags[flag].default.as_deref().unwrap();
            assert_eq!(d.parse::<u64>().unwrap(), want, "{what}: {flag} {d}");
        }
    }
    assert_eq!(rows.len(), 23);
}

/// `--flag` -> (its variable, its range), from the README's Flags table.
fn readme_ranges() -> BTreeMap<String, (String, String)> {
    table("## Flags")
        .into_iter()
        .map(|row| {
            let name = code(&row[0]).unwrap().split(' ').next().unwrap().to_owned();
            let env = row[0].split('`').nth(3).unwrap().to_owned();
            (name, (env, row[2].clone()))
        })
        .collect()
}

/// Runs `ssehub ARGS token ...`: the flags are parsed (and checked) as for
/// a server, then a token is printed instead of serving.
fn parse_only(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .args(["token", "--key", "k", "--subscribe", "t"])
        .output()
        .unwrap()
}

/// The README's range of every flag is what the binary enforces: both ends
/// (and 0 where it means off) are accepted; just past either end, `NaN`,
/// `inf` and an empty value are startup errors that name the flag, its
/// variable and the range as the README writes it, whether the value came
/// from the flag or the variable. The Limits table states the same ranges.
#[test]
fn every_flag_range_in_the_readme_is_the_one_the_binary_enforces() {
    let ranges = readme_ranges();
    let mut numeric = 0;
    for (flag, (env, range)) in &ranges {
        let rejected = |value: &str, want: &str| {
            let arg = format!("{flag}={value}");
            for out in [
                parse_only(&[&arg], &[]),
                parse_only(&[], &[(env.as_str(), value)]),
            ] {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{arg}: {stderr}");
                for part in [flag.as_str(), env.as_str(), want] {
                    assert!(stderr.contains(part), "{arg}: {part:?} in {stderr}");
                }
            }
        };
        let accepted = |value: &str| {
            let arg = format!("{flag}={value}");
            let out = parse_only(&[&arg], &[]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{arg}: {stderr}");
        };
        if range == "not empty" {
            rejected("", "must not be empty");
            continue;
        }
        if range.starts_with("true or false") {
            // A switch of the Mercure hub: it needs the hub's key.
            let with_key = |value: &str| {
                let arg = format!("{flag}={value}");
                parse_only(&[&arg, "--mercure-jwt-key=k"], &[])
            };
            for v in ["true", "false", "1", "0", "yes", "no", "on", "off"] {
                let out = with_key(v);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{flag}={v}: {stderr}");
            }
            let out = with_key("maybe");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{flag}=maybe: {stderr}");
            for part in [flag.as_str(), env.as_str(), "expected true or false"] {
                assert!(stderr.contains(part), "{flag}=maybe: {part:?} in {stderr}");
            }
            let alone = parse_only(&[&format!("{flag}=true")], &[]);
            assert_eq!(
                alone.status.code(),
                Some(2),
                "{flag} needs --mercure-jwt-key"
            );
            continue;
        }
        let Some((lo, hi)) = range.split_once(" to ") else {
            // `--listen` and `--cors-origin`: tests/server/binary.rs holds those.
            assert!(
                flag == "--listen" || flag == "--cors-origin",
                "{flag}: {range}"
            );
            continue;
        };
        numeric += 1;
        let off = lo.strip_prefix("0 (off), or ");
        let lo = off.unwrap_or(lo);
        let hi = hi.split(" (").next().unwrap();
        let want = format!("{lo} to {hi}");
        let (lo_n, hi_n): (f64, f64) = (
            lo.replace(',', "").parse().unwrap(),
            hi.replace(',', "").parse().unwrap(),
        );
        for v in [lo, hi] {
            accepted(&v.replace(',', ""));
        }
        if off.is_some() {
            accepted("0");
        } else if lo_n > 0.0 {
            let below = if lo.contains('.') {
                lo_n / 2.0
            } else {
                lo_n - 1.0
            };
            rejected(&below.to_string(), &want);
        }
        rejected("-1", &want);
        rejected(&(hi_n + 1.0).to_string(), &want);
        for odd in ["NaN", "inf", ""] {
            rejected(odd, &want);
        }
    }
    assert_eq!(numeric, 21, "the README's numeric flags");

    // The Limits table: the same range as the flag's row.
    for row in table("## Limits and defaults") {
        match code(&row[2]) {
            Some(flag) => assert_eq!(row[3], ranges[flag].1, "{}", row[0]),
            None => assert_eq!(row[3], "fixed", "{}", row[0]),
        }
    }
}
