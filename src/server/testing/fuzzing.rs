//! Entry points for the fuzz targets in `fuzz/`, compiled only with
//! `--cfg fuzzing` (which `cargo fuzz` passes) and in tests; not part of
//! the API.
//!
//! They need tokio's `test-util` feature (a paused clock), which the fuzz
//! crate turns on.

use std::time::Duration;

use crate::core::event::Event;
use crate::http::service::SseService;
use crate::hub::Hub;
use crate::server::ServerConfig;
use crate::server::testing::differential::{self, Delivery};

/// Bytes of one server write, picked by the low three bits of the first
/// input byte (`0`: no limit).
const WRITES: [usize; 8] = [0, 1, 2, 3, 7, 64, 300, 0];

/// Runs raw client bytes through `Conn::serve` on a scripted connection,
/// with the HTTP/1.1 fast path and with hyper alone, and asserts that
/// neither panics nor hangs, that the fast path's output is well-formed
/// HTTP/1.1, and that both answer the same (statuses, headers but `date`,
/// bodies, closing).
///
/// Input layout: byte 0 picks the size of the server's writes (bits 0–2),
/// whether the client closes after its last byte (bit 3), whether all its
/// reads are there at once (bit 4; otherwise each arrives once the server
/// is idle), and whether the topic `live` gets an event after the first
/// read (bit 5); byte 1 is the size of the client's reads (`0`: all at
/// once); the rest is what the client sends.
///
/// # Panics
///
/// When the paths differ or the output is malformed: that is the finding.
pub fn h1_fast_path(data: &[u8]) {
    let [mode, size, input @ ..] = data else {
        return;
    };
    let delivery = Delivery {
        max_write: WRITES[usize::from(mode & 7)],
        eof: mode & 8 != 0,
        eager: mode & 16 != 0,
        // `live` gets an event after the first read (or the only one).
        publish_after: (mode & 32 != 0).then_some(1),
    };
    let chunks: Vec<&[u8]> = match *size {
        0 => vec![input],
        n => input.chunks(usize::from(n)).collect(),
    };
    let config = ServerConfig::default();
    let outcomes = RUNTIME.with(|rt| {
        rt.block_on(async {
            // On a paused clock: this only fires if the server spins
            // without ever being idle, which libFuzzer's own timeout
            // reports as a hang first.
            tokio::time::timeout(
                Duration::from_secs(3600),
                differential::both(service, &config, &chunks, delivery),
            )
            .await
        })
    });
    let Ok((fast, hyper)) = outcomes else {
        panic!("the exchange did not settle");
    };
    if let Err(e) = &fast.answers {
        // Not the fast path's fault if hyper alone writes the same.
        assert_eq!(fast, hyper, "malformed output: {e}");
    }
    // Past the head limit, hyper alone is known to serve heads somewhat
    // over it behind another request (see `differential`); the fast path
    // refuses them.
    if input.len() < config.max_header_bytes
        && let Err(e) = differential::agree(&fast, &hyper, input, delivery.eof)
    {
        panic!("{e}");
    }
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap_or_else(|e| panic!("a runtime for the fuzz target: {e}"));
}

/// A fresh hub and service for each run: a fixed epoch, no jitter, a few
/// events, publishing allowed (the peer is loopback).
async fn service() -> SseService {
    let hub = Hub::builder()
        .epoch("fuzz".parse().unwrap_or_else(|_| unreachable!()))
        .retry_jitter(0.0)
        .buffer(16)
        .build();
    for i in 1..=3 {
        let _ = hub.publish("t", Event::new(format!("e{i}\nline"))).await;
    }
    SseService::new(hub)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's seeds pass, each with every way of delivery.
    #[test]
    fn the_seeds_pass() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/h1_fast_path");
        let mut seeds = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let seed = std::fs::read(entry.unwrap().path()).unwrap();
            for mode in 0..64 {
                for size in [0, 1, 7, 64] {
                    let mut input = vec![mode, size];
                    input.extend_from_slice(&seed[2..]);
                    h1_fast_path(&input);
                }
            }
            seeds += 1;
        }
        assert!(seeds >= 5);
    }
}
