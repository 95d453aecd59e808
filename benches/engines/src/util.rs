//! Payloads, statistics, file-system and process helpers.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const EVENT_TYPE: &str = "message";
/// Length of the `data` part of an event payload.
pub const DATA_LEN: usize = 1000;

fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
    if x == 0 {
        x = 0x9E37_79B9_7F4A_7C15;
    }
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A deterministic ~1 KB event payload for (topic, seq): `[type len][type][data]`, data being
/// JSON-looking UTF-8 with a random (barely compressible) body, so any damage is detectable by
/// regenerating it.
pub fn payload(topic: u64, seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + EVENT_TYPE.len() + DATA_LEN);
    out.push(EVENT_TYPE.len() as u8);
    out.extend_from_slice(EVENT_TYPE.as_bytes());
    let head = format!("{{\"topic\":{topic},\"seq\":{seq},\"body\":\"");
    out.extend_from_slice(head.as_bytes());
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = xorshift(topic.wrapping_mul(0x1000_0000_01B3) ^ seq.wrapping_mul(0x9E37_79B9));
    let body = DATA_LEN - head.len() - 2;
    let mut r = 0u64;
    for i in 0..body {
        if i % 10 == 0 {
            r = rng();
        }
        out.push(ALPHA[(r & 63) as usize]);
        r >>= 6;
    }
    out.extend_from_slice(b"\"}");
    out
}

pub fn rand_u64(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

pub fn seed_from_time() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1
}

// ------------------------------------------------------------------ stats

pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    }
}

pub fn fmt_f(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.abs() >= 1000.0 {
        format!("{:.0}", x)
    } else if x.abs() >= 100.0 {
        format!("{:.1}", x)
    } else if x.abs() >= 10.0 {
        format!("{:.2}", x)
    } else {
        format!("{:.3}", x)
    }
}

/// "median (min–max)" of repeated measurements.
pub fn fmt_reps(v: &[f64]) -> String {
    let m = median(v);
    if v.len() < 2 {
        return fmt_f(m);
    }
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{} ({}–{})", fmt_f(m), fmt_f(lo), fmt_f(hi))
}

pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "-".into()
    } else {
        format!("{:.2}", a / b)
    }
}

pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", headers.join(" | "));
    println!("|{}", headers.iter().map(|_| "---|").collect::<String>());
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
    println!();
}

// ------------------------------------------------------------------ fs / proc

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// (allocated bytes as `du` counts them, number of files)
pub fn du(dir: &Path) -> (u64, usize) {
    use std::os::unix::fs::MetadataExt;
    let files = files_under(dir);
    let bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.blocks() * 512)
        .sum();
    (bytes, files.len())
}

pub fn mb(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Evict the files under `dir` from the page cache (fsync first so the pages are clean).
/// Per-file `posix_fadvise(DONTNEED)` rather than a global drop_caches (not permitted here,
/// and it would disturb the other engineers' builds).
#[allow(unsafe_code)]
pub fn drop_cache(dir: &Path) {
    use std::os::fd::AsRawFd;
    for f in files_under(dir) {
        if let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(&f) {
            let _ = file.sync_all();
            // SAFETY: fd is valid for the lifetime of `file`.
            unsafe {
                libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}

/// (VmRSS, VmHWM) in MiB of this process.
pub fn rss_mb() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

pub fn uptime() -> String {
    let out = std::process::Command::new("uptime").output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

pub fn rm_rf(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
}

/// Engine order for repetition `rep`: rotated so no engine always runs first.
pub fn rotated<T: Copy>(v: &[T], rep: usize) -> Vec<T> {
    let n = v.len();
    (0..n).map(|i| v[(i + rep) % n]).collect()
}

/// Flush all dirty pages system-wide and let writeback settle before a latency measurement.
#[allow(unsafe_code)]
pub fn settle() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::thread::sleep(std::time::Duration::from_secs(2));
}
