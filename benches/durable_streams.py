#!/usr/bin/env python3
"""Durable Streams: ssehub against the reference servers, side by side in
one run on the same machine: in memory, and (cell append-durable) each in
its mode that syncs an append to disk before answering it.

    python3 benches/durable_streams.py                 # reps 2, ~6 minutes
    python3 benches/durable_streams.py --skip-build    # reuse the last builds
    python3 benches/durable_streams.py --reps 1 --only append,idle
    python3 benches/durable_streams.py --only append,append-durable
    python3 benches/durable_streams.py --from benches/results/durable-streams-<stamp>.json

Servers (each cell gets a fresh process, pinned to core 0; the load tool
runs on core 1; the order of the servers rotates per repetition):
- ssehub: `ssehub --tick 0 --long-poll-timeout 20`, its ring raised so
  that a stream holds the 100,000 messages of the catch-up cell
  (`--buffer 1000000 --max-topic-bytes 1GiB --max-total-bytes 4GiB`).
- node: `@durable-streams/server` (benches/peers/ds-node: package.json and
  lock pinned; `npm ci` there), `new DurableStreamTestServer({port, host:
  '127.0.0.1', longPollTimeout: 20000}).start()`: memory store.
- rust: the `durable-streams-server` 0.3.0 binary from crates.io
  (`cargo install durable-streams-server --version 0.3.0 --locked --root
  target/ds-rust`), `DS_STORAGE__MODE=memory`, long-poll 20 s, its memory
  limits raised as ssehub's (`DS_LIMITS__MAX_STREAM_BYTES=1GiB`,
  `DS_LIMITS__MAX_MEMORY_BYTES=4GiB`: the defaults, 10 MB per stream,
  would refuse the catch-up stream's appends).

Durable modes (cell append-durable only; each server gets a fresh data
directory under --data-root, default the system's temp directory, all on
one filesystem, removed after the cell; see BENCHMARKS.md for what each
promises when it answers):
- ssehub: the same flags plus `--data-dir DIR` and its retention raised so
  that nothing is trimmed during the cell, as the peers trim nothing
  (`--retain-events 100000000 --retain-bytes 1GiB`): an append is answered
  once the round that wrote it is synced (per round, the concurrent
  appends grouped into it: one fdatasync of the engine's journal and one
  of the `marks` file, the two overlapping).
- node: `serve.mjs PORT 20000 DIR`: `dataDir` given, its
  `FileBackedStreamStore` (a log file per stream, fdatasync before each
  append is answered, appends to one stream serialized by a lock; LMDB
  for the metadata).
- rust: `DS_STORAGE__MODE=file-durable DS_STORAGE__DATA_DIR=DIR` (a log
  file per stream, `sync_data` after each append's write, under the
  stream's lock), other settings as in memory.
- rust-acid: `DS_STORAGE__MODE=acid DS_STORAGE__DATA_DIR=DIR` (redb, 16
  shards, each append one write transaction committed with
  `Durability::Immediate`).

Cells (`--only`, comma-separated), all through `dsload`
(benches/dsload/main.rs, one thread, raw sockets, HTTP/1.1 keep-alive):
- fanout: 100 and 2,000 `live=sse` readers on one `text/plain` stream, one
  writer appending 100-byte messages at a fixed rate (100 x 200/s and
  2,000 x 10/s: 20,000 deliveries/s each) for --seconds after a 1 s
  warm-up. Server CPU (utime + stime of /proc/PID/stat) over the window / messages the readers received in it;
  p99 from the send time each message carries to its arrival.
- append: 1, 16, 64 closed-loop writers POSTing 100-byte bodies to one
  stream for --seconds (after 0.5 s of warm-up): appends/s.
- append-durable: the same against each server's durable mode (above),
  plus the server's sync calls (fdatasync, fsync, msync, sync_file_range)
  counted with `perf stat -e syscalls:sys_enter_*` attached to its PID
  during the measured window (skipped if perf cannot): appends per sync.
  The run also times this machine's disk: 200 x (write 105 bytes +
  fdatasync) in --data-root, before and after each repetition.
- idle: 2,000 `live=sse` readers on an empty stream: (RSS after - RSS
  before) / 2,000, RSS from /proc/PID/status, after 2 s and 3 s.
- catchup: 100,000 appends of 100 bytes (16 writers), then one client
  reads from offset -1 following Stream-Next-Offset until
  Stream-Up-To-Date: seconds, requests, bytes (checked: 10,000,000); five
  such reads, each on a new connection, the median kept.

Writes benches/results/durable-streams-<UTC timestamp>.json (raw results,
medians, the tables) and prints the Markdown tables (memory; durable).
"""

import argparse
import datetime
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchlib as bl
from benchlib import CLIENT_CORE, ROOT, SERVER_CORE, free_port, load_note, log

SERVERS = ["ssehub", "node", "rust"]
PEERS = ["node", "rust"]
# The durable cells: the Rust server has two durable modes (file-durable, acid).
DURABLE_SERVERS = ["ssehub", "node", "rust", "rust-acid"]
DURABLE_PEERS = ["node", "rust", "rust-acid"]
SYNC_CALLS = ["fdatasync", "fsync", "msync", "sync_file_range"]
NODE_DIR = os.path.join(ROOT, "benches", "peers", "ds-node")
RUST_PEER_VERSION = "0.3.0"
BODY = 100
CATCHUP_N = 100_000
GiB = 1 << 30


# -------------------------------------------------------------- servers ----

class Server:
    def __init__(self, kind, o, durable=False):
        self.kind, self.o, self.proc, self.durable, self.data_dir = kind, o, None, durable, None

    def start(self):
        o = self.o
        env = dict(os.environ)
        if self.durable:
            self.data_dir = tempfile.mkdtemp(prefix=f"ds-{self.kind}-", dir=o.data_root)
        if self.kind == "ssehub":
            cmd = [o.ssehub, "--listen", "127.0.0.1:0", "--tick", "0", "--long-poll-timeout", "20",
                   "--buffer", "1000000", "--max-topic-bytes", str(GiB), "--max-total-bytes", str(4 * GiB)]
            if self.durable:
                cmd += ["--data-dir", self.data_dir, "--retain-events", "100000000", "--retain-bytes", str(GiB)]
            env["RUST_LOG"] = "warn"
            self.port = None
        elif self.kind == "node":
            self.port = free_port()
            cmd = ["node", os.path.join(NODE_DIR, "serve.mjs"), str(self.port), "20000"]
            if self.durable:
                cmd.append(self.data_dir)
        else:
            self.port = free_port()
            cmd = [o.rust_peer]
            mode = "memory"
            if self.durable:
                mode = "acid" if self.kind == "rust-acid" else "file-durable"
                env.update(DS_STORAGE__DATA_DIR=self.data_dir)
            env.update(DS_SERVER__BIND_ADDRESS=f"127.0.0.1:{self.port}", DS_STORAGE__MODE=mode,
                       DS_TRANSPORT__CONNECTION__LONG_POLL_TIMEOUT_SECS="20",
                       DS_LIMITS__MAX_STREAM_BYTES=str(GiB), DS_LIMITS__MAX_MEMORY_BYTES=str(4 * GiB),
                       DS_OBSERVABILITY__RUST_LOG="warn")
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CORE, *cmd], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        if self.kind in ("ssehub", "node"):
            # Node's file-backed store logs its recovery on stdout first.
            lines = []
            for _ in range(20):
                line = self.proc.stdout.readline()
                lines.append(line)
                m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line or "")
                if m or not line:
                    break
            if not m:
                self.stop()
                raise RuntimeError(f"{self.kind} did not start: {''.join(lines)!r}")
            self.port = int(m.group(1))
        # Whatever it prints later must not fill the pipe and stall it.
        threading.Thread(target=lambda f: f.read(), args=(self.proc.stdout,), daemon=True).start()
        bl.wait_port(self.port)
        return self

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/v1/stream/{name}"

    def stop(self):
        try:
            if self.proc:
                bl.stop(self.proc, timeout=10)
        finally:
            if self.data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)


def dsload(o, srv, name, *mode, create=True, during=None):
    """Runs dsload against `srv`; `during`, if given, is called (in this
    thread) while it runs."""
    cmd = ["taskset", "-c", CLIENT_CORE, o.dsload, "--url", srv.url(name), "--server-pid", str(srv.proc.pid)]
    if not create:
        cmd.append("--no-create")
    p = subprocess.Popen(cmd + [str(m) for m in mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    extra = during() if during else None
    try:
        out, err = p.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"dsload {' '.join(map(str, mode))} against {srv.kind}: {err.strip()[-500:]}")
    r = json.loads(out.strip().splitlines()[-1])
    if extra:
        r.update(extra)
    return r


def count_syncs(pid, delay, seconds):
    """The sync calls process `pid` (all its threads) makes in `seconds`,
    starting `delay` seconds from now: perf's syscall tracepoints, counted
    on the load tool's core. None if perf cannot."""
    time.sleep(delay)
    events = ",".join(f"syscalls:sys_enter_{c}" for c in SYNC_CALLS)
    try:
        p = subprocess.run(["taskset", "-c", CLIENT_CORE, "perf", "stat", "-x,", "-e", events, "-p", str(pid),
                            "--", "sleep", str(seconds)], capture_output=True, text=True, timeout=seconds + 30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    counts = {}
    for line in p.stderr.splitlines():
        f = line.split(",")
        if len(f) >= 3 and f[2].startswith("syscalls:sys_enter_"):
            try:
                counts[f[2].removeprefix("syscalls:sys_enter_")] = int(f[0])
            except ValueError:  # "<not supported>", "<not counted>"
                return None
    if set(counts) != set(SYNC_CALLS):
        return None
    return {"syncs": counts, "syncs_window_s": seconds}


def fsync_probe(root, n=200):
    """This machine's disk: n x (write 105 bytes + fdatasync) on one file in
    `root`: median and p99 µs per sync."""
    d = tempfile.mkdtemp(prefix="ds-probe-", dir=root)
    try:
        fd = os.open(os.path.join(d, "f"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        xs = []
        for _ in range(n):
            t = time.perf_counter()
            os.write(fd, b"x" * 105)
            os.fdatasync(fd)
            xs.append((time.perf_counter() - t) * 1e6)
        os.close(fd)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    xs.sort()
    return {"fdatasync_us_p50": round(xs[n // 2], 1), "fdatasync_us_p99": round(xs[int(n * 0.99)], 1)}


def filesystem(path):
    p = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", path], capture_output=True, text=True)
    return p.stdout.strip() or "unknown"


# ---------------------------------------------------------------- cells ----

def cells(o):
    out = []
    if "fanout" in o.only:
        out += [("fanout", 100, 200), ("fanout", 2000, 10)]
    if "append" in o.only:
        out += [("append", c, None) for c in (1, 16, 64)]
    if "append-durable" in o.only:
        out += [("append-durable", c, None) for c in (1, 16, 64)]
    if "idle" in o.only:
        out += [("idle", 2000, None)]
    if "catchup" in o.only:
        out += [("catchup", CATCHUP_N, None)]
    return out


def measure(o, kind, cell, rep):
    what, n, rate = cell
    srv = Server(kind, o, durable=what.endswith("-durable")).start()
    try:
        if what == "append-durable":
            # Sync calls counted inside the measured window (it starts 0.5 s
            # after the stream's create, and lasts o.seconds).
            win = max(o.seconds - 0.6, 0.5)
            r = dsload(o, srv, "app", "append", "--connections", n, "--seconds", o.seconds, "--warmup", 0.5,
                       "--body-bytes", BODY, during=lambda: count_syncs(srv.proc.pid, 0.8, win))
            if r.get("syncs"):
                per_s = sum(r["syncs"].values()) / r["syncs_window_s"]
                r["syncs_per_s"] = round(per_s, 1)
                r["appends_per_sync"] = round(r["rps"] / per_s, 2) if per_s else None
        elif what == "fanout":
            r = dsload(o, srv, "fan", "fanout", "--readers", n, "--rate", rate, "--seconds", o.seconds,
                       "--warmup", 1, "--body-bytes", BODY)
        elif what == "append":
            r = dsload(o, srv, "app", "append", "--connections", n, "--seconds", o.seconds, "--warmup", 0.5,
                       "--body-bytes", BODY)
        elif what == "idle":
            r = dsload(o, srv, "idle", "idle", "--readers", n, "--settle", 2)
        else:
            t0 = time.perf_counter()
            fill = dsload(o, srv, "cu", "append", "--connections", 16, "--count", n, "--body-bytes", BODY)
            fill_s = time.perf_counter() - t0
            # Five reads of the same stream (each on a new connection): the median.
            reads = [dsload(o, srv, "cu", "catchup", "--expect-bytes", n * BODY, create=False) for _ in range(5)]
            r = dict(sorted(reads, key=lambda x: x["seconds"])[len(reads) // 2])
            r["reads_s"] = [x["seconds"] for x in reads]
            r["fill"] = fill
            r["fill_s"] = round(fill_s, 3)
            r["rss_after"] = rss(srv.proc.pid)
    finally:
        srv.stop()
    r.update(server=kind, cell=what, n=n, rate=rate, rep=rep)
    log(f"{kind:7} {what:8} n={n:<6} rep {rep}: " + summary(r))
    return r


def rss(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def summary(r):
    c = r["cell"]
    if c == "fanout":
        return (f"{r['deliveries']:,} deliveries ({r['deliveries'] / max(r['expected'], 1):.3f} of expected), "
                f"{r['cpu_us_per_delivery']:.2f} µs/delivery, p99 {r['p99_ms']:.2f} ms, "
                f"client core {r['client_cpu_s'] / r['seconds']:.0%}, reconnects {r['reconnects']}, non-2xx {r['non_2xx']}")
    if c in ("append", "append-durable"):
        syncs = ""
        if c == "append-durable":
            syncs = (f", {r['syncs_per_s']:,.0f} syncs/s, {r['appends_per_sync']} appends/sync"
                     if r.get("appends_per_sync") else ", syncs not counted")
        return (f"{r['rps']:,.0f}/s, p99 {r['p99_ms']:.2f} ms, {r['cpu_us_per_append']:.1f} µs CPU/append, "
                f"client core {r['client_cpu_s'] / r['seconds']:.0%}, non-2xx {r['non_2xx']}" + syncs)
    if c == "idle":
        return f"{r['bytes_per_reader']:,.0f} B/reader (RSS {r['rss_before']:,} -> {r['rss_after_1s']:,})"
    return (f"{r['seconds']:.3f} s, {r['requests']:,} requests, {r['bytes']:,} bytes, "
            f"server CPU {r['server_cpu_s']:.2f} s (fill {r['fill_s']:.1f} s)")


# ---------------------------------------------------------------- table ----

METRICS = [
    # (cell, n, label, field, lower is better, format)
    ("fanout", 100, "fan-out 100 readers x 200/s: server CPU µs / delivery", "cpu_us_per_delivery", True, "{:.2f}"),
    ("fanout", 100, "fan-out 100 readers x 200/s: p99 delivery latency (ms)", "p99_ms", True, "{:.2f}"),
    ("fanout", 2000, "fan-out 2,000 readers x 10/s: server CPU µs / delivery", "cpu_us_per_delivery", True, "{:.2f}"),
    ("fanout", 2000, "fan-out 2,000 readers x 10/s: p99 delivery latency (ms)", "p99_ms", True, "{:.2f}"),
    ("append", 1, "appends/s, 1 writer", "rps", False, "{:,.0f}"),
    ("append", 16, "appends/s, 16 writers", "rps", False, "{:,.0f}"),
    ("append", 64, "appends/s, 64 writers", "rps", False, "{:,.0f}"),
    ("idle", 2000, "idle live=sse reader: server RSS bytes / reader", "bytes_per_reader", True, "{:,.0f}"),
    ("catchup", CATCHUP_N, "catch-up read of 100,000 messages (ms)", "ms", True, "{:,.1f}"),
]

# lower is better: None for a measure that is not a goal (no best peer, no ratio).
DURABLE_METRICS = [
    ("append-durable", 1, "durable appends/s, 1 writer", "rps", False, "{:,.0f}"),
    ("append-durable", 16, "durable appends/s, 16 writers", "rps", False, "{:,.0f}"),
    ("append-durable", 64, "durable appends/s, 64 writers", "rps", False, "{:,.0f}"),
    ("append-durable", 1, "durable, 1 writer: p99 append latency (ms)", "p99_ms", None, "{:.2f}"),
    ("append-durable", 16, "durable, 16 writers: p99 append latency (ms)", "p99_ms", None, "{:.2f}"),
    ("append-durable", 64, "durable, 64 writers: p99 append latency (ms)", "p99_ms", None, "{:.2f}"),
    ("append-durable", 1, "durable, 1 writer: appends per sync call", "appends_per_sync", None, "{:.2f}"),
    ("append-durable", 16, "durable, 16 writers: appends per sync call", "appends_per_sync", None, "{:.2f}"),
    ("append-durable", 64, "durable, 64 writers: appends per sync call", "appends_per_sync", None, "{:.2f}"),
]


def value(r, field):
    if field == "ms":
        return r["seconds"] * 1e3
    return r.get(field)


def medians(results, metrics=METRICS, servers=SERVERS):
    m = {}
    for cell, n, label, field, lower, f in metrics:
        for kind in servers:
            xs = [value(r, field) for r in results if r["server"] == kind and r["cell"] == cell and r["n"] == n]
            xs = [x for x in xs if x is not None]
            m[(label, kind)] = statistics.median(xs) if xs else None
    return m


def per_rep(results, cell, n, field, lower, peers_of=PEERS):
    """ssehub / the best peer within each repetition."""
    if lower is None:
        return ""
    out = []
    for rep in sorted({r["rep"] for r in results}):
        v = {r["server"]: value(r, field) for r in results
             if r["cell"] == cell and r["n"] == n and r["rep"] == rep}
        peers = [v[k] for k in peers_of if v.get(k)]
        if v.get("ssehub") and peers:
            out.append(f"{v['ssehub'] / (min if lower else max)(peers):.2f}")
    return " ".join(out)


def table(results):
    """The memory table (as before) and, if the run has durable cells, the
    durable one."""
    out = [one_table(results, METRICS, SERVERS, PEERS, ["ssehub", "node", "rust"])]
    durable = one_table(results, DURABLE_METRICS, DURABLE_SERVERS, DURABLE_PEERS,
                        ["ssehub", "node", "rust file-durable", "rust acid"])
    if durable:
        out.append(durable)
    return "\n\n".join(x for x in out if x)


def one_table(results, metrics, servers, peers_of, heads):
    m = medians(results, metrics, servers)
    rows = []
    for cell, n, label, field, lower, f in metrics:
        vals = {k: m[(label, k)] for k in servers}
        if all(v is None for v in vals.values()):
            continue
        cellf = lambda v: "n/a" if v is None else f.format(v)
        if lower is None:
            best, ratio = None, ""
        else:
            peers = [(vals[k], k) for k in peers_of if vals[k] is not None]
            best = (min if lower else max)(peers) if peers else None
            ratio = f"**{vals['ssehub'] / best[0]:.2f}**" if best and vals["ssehub"] and best[0] else "n/a"
        best_s = best[1] if best else ("" if lower is None else "n/a")
        rows.append(f"| {label} | " + " | ".join(cellf(vals[k]) for k in servers) + " | "
                    f"{best_s} | {ratio} | {per_rep(results, cell, n, field, lower, peers_of)} |")
    if not rows:
        return ""
    return "\n".join(["| measure | " + " | ".join(heads) + " | best peer | ssehub / best peer | per rep |",
                      "|---|" + "---:|" * len(heads) + "---|---:|---|"] + rows)


# ---------------------------------------------------------------- build ----

def dsload_built(target):
    exes = [p for p in glob.glob(os.path.join(target, "release/deps/dsload-*"))
            if re.fullmatch(r"dsload-[0-9a-f]+", os.path.basename(p)) and os.access(p, os.X_OK)]
    if not exes:
        raise RuntimeError(f"no dsload under {target}/release/deps: build it (drop --skip-build)")
    return max(exes, key=os.path.getmtime)


def build(o):
    env = dict(os.environ, CARGO_TARGET_DIR=o.target)
    bl.run(["cargo", "build", "--release", "--bin", "ssehub"], cwd=ROOT, env=env)
    bl.run(["cargo", "build", "--release", "--bench", "dsload"], cwd=ROOT, env=env)
    if not os.path.exists(o.rust_peer):
        bl.run(["cargo", "install", "durable-streams-server", "--version", RUST_PEER_VERSION, "--locked",
                "--root", os.path.dirname(os.path.dirname(o.rust_peer))], cwd=ROOT)
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@durable-streams", "server")):
        bl.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR)


def versions(o):
    node_pkg = os.path.join(NODE_DIR, "node_modules", "@durable-streams", "server", "package.json")
    try:
        node_v = json.load(open(node_pkg))["version"]
    except OSError:
        node_v = "missing"
    return {"node": bl.tool_version(["node", "--version"]), "@durable-streams/server": node_v,
            "durable-streams-server": bl.tool_version([o.rust_peer, "--version"])}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3, help="measured window of fanout and append cells")
    ap.add_argument("--only", default="fanout,append,idle,catchup,append-durable")
    ap.add_argument("--servers", default=",".join(DURABLE_SERVERS),
                    help="rust-acid runs in the durable cells only")
    ap.add_argument("--data-root", default=tempfile.gettempdir(),
                    help="where the durable cells' data directories are made (and removed)")
    ap.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    ap.add_argument("--ssehub", default=None, help="the ssehub binary (default: this tree's release build)")
    ap.add_argument("--rust-peer", default=None,
                    help="the durable-streams-server binary (default: target/ds-rust/bin/durable-streams-server)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--from", dest="from_json", default=None, help="print the table of a results file, run nothing")
    o = ap.parse_args()
    if o.from_json:
        print(table(json.load(open(o.from_json))["results"]))
        return
    o.only = o.only.split(",")
    servers = o.servers.split(",")
    o.ssehub = o.ssehub or os.path.join(o.target, "release/ssehub")
    o.rust_peer = o.rust_peer or os.path.join(o.target, "ds-rust/bin/durable-streams-server")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%MZ")
    o.json = o.json or os.path.join(ROOT, "benches", "results", f"durable-streams-{stamp}.json")
    if not o.skip_build:
        build(o)
    o.dsload = dsload_built(o.target)
    meta = {"command": " ".join(["python3", "benches/durable_streams.py"] + sys.argv[1:]),
            "machine": bl.machine(["node", "--version"]), "versions": versions(o), "date": bl.now(),
            "reps": o.reps, "seconds": o.seconds, "body_bytes": BODY, "load": [load_note()],
            "data_root": o.data_root, "data_filesystem": filesystem(o.data_root),
            "disk": [fsync_probe(o.data_root)] if any(c[0].endswith("-durable") for c in cells(o)) else [],
            "dirty": bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                         capture_output=True, text=True).stdout.strip())}
    log("machine:", meta["machine"], meta["versions"])
    log("load:", meta["load"][0])
    if meta["disk"]:
        log("disk:", meta["data_filesystem"], meta["disk"][0])
    results, failures = [], []
    for rep in range(o.reps):
        for cell in cells(o):
            kinds = [k for k in servers if k in (DURABLE_SERVERS if cell[0].endswith("-durable") else SERVERS)]
            order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
            for kind in order:
                try:
                    results.append(measure(o, kind, cell, rep))
                except Exception as e:  # a peer that fails a cell is reported, not fatal
                    log(f"{kind} {cell} rep {rep}: FAILED: {e}")
                    failures.append({"server": kind, "cell": cell[0], "n": cell[1], "rep": rep, "error": str(e)})
        meta["load"].append(load_note())
        if meta["disk"]:
            meta["disk"].append(fsync_probe(o.data_root))
            log("disk:", meta["disk"][-1])
    md = table(results)
    os.makedirs(os.path.dirname(o.json), exist_ok=True)
    with open(o.json, "w") as f:
        json.dump({"meta": meta, "results": results, "failures": failures, "table": md}, f, indent=1)
        f.write("\n")
    print(md)
    if failures:
        print("\nfailures:\n" + "\n".join(f"- {x['server']} {x['cell']} {x['n']} rep {x['rep']}: {x['error']}"
                                          for x in failures))
    print(f"\nraw: {os.path.relpath(o.json, ROOT)}; load {meta['load']}")


if __name__ == "__main__":
    main()
