#!/usr/bin/env python3
"""Benchmarks of durable history (`--data-dir`), side by side in one run,
and of the refactors (this tree against the commit before them). Writes
benches/results/<date>-durable.{json,md} (raw numbers, full report) with
its chart (<date>-durable-publish.svg) and, for `refactor` and `criterion`,
<date>-refactors.{json,md}. BENCHMARKS.md quotes them (kept by hand).

    python3 benches/durable.py                  # everything (~45 minutes)
    python3 benches/durable.py --quick          # smaller counts, a smoke test
    python3 benches/durable.py --only publish,fanout --reps 5
    python3 benches/durable.py --only refactor,criterion \
        --before-tree ../wt-before7d --before-target ../target-before
    python3 benches/durable.py --from benches/results/2026-12-01-durable.json  # report and chart again, no run

Sections (`--only`, comma-separated):
  publish    oha POSTing 1 KB bodies at 1/16/64 connections to ssehub
             --data-dir, ssehub in memory, and redis-server with
             --appendfsync always / everysec (redis-benchmark XADD of the same
             payload at the same concurrency); one topic and 16 topics; then
             one topic at retention (100k events, trimming as it appends).
  fanout     sseload fan-out (2,000 subscribers x 50 ev/s, and flat out):
             server CPU per delivery, --data-dir against memory.
  resume     one client resuming 100,000 events back (ring 1,024: all but
             the last 1,024 from disk), cold and warm; oha replay-and-close
             from disk against the same from memory.
  startup    10 topics x 100,000 events of 1 KB on disk: exec to
             `ssehub listening`, RSS, after a graceful stop, after SIGKILL,
             cold page cache; RSS while one client replays 100k events.
  refactor   in-memory server of this tree against --before-rev (default
             7d83dd7: before the storage seam, the layout restructure and
             the deadline work): fan-out CPU per delivery, saturation, idle
             bytes per connection.
  criterion  `cargo bench --bench core` of both trees, alternated.

Servers (ssehub, redis-server) run pinned to core 0, load tools (oha,
redis-benchmark, sseload, the Python replay client) to core 1, as
benches/run.py does. Configurations alternate within every repetition (their
order rotates), each cell gets a fresh server and data directory, and tables
show the median of the repetitions. Data directories live under --data (on
the disk being measured, not tmpfs). The load average (/proc/loadavg) and CPU
pressure are recorded around every section: the machine is shared.

Needs oha (cargo install oha --locked), redis-server and redis-benchmark,
taskset. Builds this tree's release binaries and, for `refactor` and
`criterion`, the --before-rev tree in a git worktree under target/.
"""

import argparse
import base64
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import string
import subprocess
import threading
import time

import benchlib as bl
from benchlib import CLIENT_CORE, ROOT, SERVER_CORE, dig, free_port, load_note, log, run

PAYLOAD_BYTES = 1000
REPORT = {}  # section -> results, filled as sections run



def payload(n=PAYLOAD_BYTES, seed=1):
    # Printable and barely compressible, like JSON with ids and hashes in it.
    r = random.Random(seed)
    return "".join(r.choice(string.ascii_letters + string.digits) for _ in range(n))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cpu_s(pid):
    try:
        f = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    f = f[f.rfind(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """CPU seconds by thread name."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        try:
            comm = open(f"/proc/{pid}/task/{t}/comm").read().strip()
            f = open(f"/proc/{pid}/task/{t}/stat").read()
        except OSError:
            continue
        f = f[f.rfind(")") + 2:].split()
        out[comm] = out.get(comm, 0.0) + (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def rss(pid, field="VmRSS"):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime



def rm(path):
    shutil.rmtree(path, ignore_errors=True)


def evict(path):
    """Drops a directory's files from the page cache (cold reads), without
    touching anyone else's cache."""
    n = 0
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += os.fstat(fd).st_size
            finally:
                os.close(fd)
    return n


# --------------------------------------------------------------- servers ----

class Ssehub:
    """One ssehub process pinned to the server core. Times exec to the
    `ssehub listening` line."""

    def __init__(self, binary, *flags, data_dir=None, log_path=None):
        self.binary, self.flags, self.data_dir = binary, list(flags), data_dir
        self.log_path = log_path or os.devnull
        self.proc = None

    def start(self, timeout=120):
        cmd = ["taskset", "-c", SERVER_CORE, self.binary, "--listen", "127.0.0.1:0", "--tick", "0",
               "--max-connections", "20000", *self.flags]
        if self.data_dir:
            cmd += ["--data-dir", self.data_dir]
        errf = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, RUST_LOG="warn"), stdout=subprocess.PIPE,
                                     stderr=errf, text=True)
        errf.close()
        line = self.proc.stdout.readline()
        self.startup_s = time.perf_counter() - t0
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line or "")
        if not m:
            self.proc.kill()
            raise RuntimeError(f"ssehub did not start: {line!r}; see {self.log_path}")
        self.port = int(m.group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, sig=signal.SIGTERM, timeout=60):
        return bl.stop(self.proc, sig, timeout)


class Redis:
    def __init__(self, fsync, data_dir):
        self.fsync, self.data_dir, self.proc = fsync, data_dir, None

    def start(self):
        rm(self.data_dir)
        os.makedirs(self.data_dir)
        self.port = free_port()
        self.proc = bl.start(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--appendfsync", self.fsync, "--save", "", "--dir", self.data_dir, "--logfile", "",
             "--loglevel", "warning"], port=self.port)
        time.sleep(0.1)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        bl.stop(self.proc)
        rm(self.data_dir)


# ----------------------------------------------------------------- tools ----

def oha(url, *args, seconds, regex=False):
    cmd = ["taskset", "-c", CLIENT_CORE, "oha", "--no-tui", "--output-format", "json", "-z", f"{seconds}s"]
    if regex:
        # oha's --rand-regex-url turns `127\\.0\\.0\\.1` into a garbage host
        # and its requests leave the machine: never use it. The scenarios
        # that spread requests over names need a loader of their own
        # (examples/pubload.rs does it for publishing).
        raise SystemExit("oha --rand-regex-url is not allowed here (its requests leave the machine); "
                         "this scenario needs a loader that spreads names itself")
    c0 = children_cpu()
    out = run(cmd + list(args) + [url], capture_output=True, text=True).stdout
    client = children_cpu() - c0
    r = json.loads(out)
    s, lat = r["summary"], r.get("latencyPercentiles", {})
    codes = r.get("statusCodeDistribution", {})
    bad = {c: n for c, n in codes.items() if not c.startswith("2")}
    if bad:
        raise RuntimeError(f"oha got non-2xx answers {bad} from {url}")
    ok = sum(codes.values())
    return {"rps": ok / s["total"], "p50_ms": (lat.get("p50") or 0) * 1e3, "p99_ms": (lat.get("p99") or 0) * 1e3,
            "requests": ok, "seconds": s["total"], "client_cpu_pct": client / s["total"] * 100}


def redis_bench(port, conc, n, data, topics):
    key = "t" if topics == 1 else "t:__rand_int__"
    cmd = ["taskset", "-c", CLIENT_CORE, "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(conc),
           "-n", str(n), "-P", "1", "--csv"]
    if topics > 1:
        cmd += ["-r", str(topics)]
    cmd += ["XADD", key, "*", "d", data]
    c0, t0 = children_cpu(), time.perf_counter()
    out = run(cmd, capture_output=True, text=True).stdout
    wall, client = time.perf_counter() - t0, children_cpu() - c0
    line = [ln for ln in out.splitlines() if ln.startswith('"') and not ln.startswith('"test"')][-1]
    f = [x.strip('"') for x in line.rsplit(",", 7)]
    # "test","rps","avg","min","p50","p95","p99","max"
    return {"rps": float(f[1]), "p50_ms": float(f[4]), "p99_ms": float(f[6]), "requests": n, "seconds": wall,
            "client_cpu_pct": client / wall * 100}


def sseload(binary, base, topic, pids, *mode):
    return bl.sseload(binary, base + "/events/{topic}", base + "/events/{topic}", pids, *mode, topic=topic)


def post_json(port, topic, events, conn=None):
    """Publishes a batch (JSON array) on a keep-alive connection; returns the ids."""
    import http.client
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = json.dumps([{"data": e} for e in events])
    conn.request("POST", f"/events/{topic}", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read()
    if r.status != 201:
        raise RuntimeError(f"publish answered {r.status}: {text[:200]!r}")
    return json.loads(text)["ids"], conn


def fill(port, topics, per_topic, batch=500, threads=None):
    """Publishes `per_topic` events of ~1 KB to each topic, in JSON batches,
    one connection per topic. Returns {topic: [first id, last id]}."""
    out = {}

    def one(t):
        conn, first, last = None, None, None
        for i in range(0, per_topic, batch):
            n = min(batch, per_topic - i)
            # Every event different and incompressible (base64 of random
            # bytes): the engine cannot shrink the history by compressing.
            ids, conn = post_json(port, t, [f"{i + k} {base64.b64encode(os.urandom(750)).decode()}"
                                            for k in range(n)], conn)
            first = first or ids[0]
            last = ids[-1]
        conn.close()
        out[t] = (first, last)

    ths = [threading.Thread(target=one, args=(t,)) for t in topics]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return out


class RssSampler:
    def __init__(self, pid, period=0.02):
        self.pid, self.period, self.samples, self.stop_ = pid, period, [], threading.Event()
        self.th = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.perf_counter()
        while not self.stop_.is_set():
            self.samples.append((time.perf_counter() - t0, rss(self.pid)))
            time.sleep(self.period)

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *a):
        self.stop_.set()
        self.th.join()

    def peak(self):
        return max((s for _, s in self.samples if s), default=None)


def replay(port, path, rate_bytes_s=None, progress=None, marks=()):
    """GETs an event stream that ends (`limit`), counting events. Runs on the
    caller's core (the caller pins itself). Returns events, bytes, seconds,
    seconds to the first byte, and the time at which each of `marks` events
    had arrived. `progress(events)` is called after every read."""
    s = socket.create_connection(("127.0.0.1", port))
    if rate_bytes_s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    t0 = time.perf_counter()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    events, total, ttfb, carry, tail = 0, 0, None, b"", b""
    marks = sorted(marks)
    at = {}
    while True:
        n = s.recv_into(view)
        if n == 0:
            break
        if ttfb is None:
            ttfb = time.perf_counter() - t0
        total += n
        data = bytes(view[:n])
        # An `id:` line split across reads starts in the last 4 bytes.
        seam = carry + data
        events += seam.count(b"\nid: ")
        carry = seam[-4:]
        tail = (tail + data)[-16:]
        while marks and events >= marks[0]:
            at[marks.pop(0)] = time.perf_counter() - t0
        if progress:
            progress(events)
        if tail.endswith(b"\r\n0\r\n\r\n"):
            break
        if rate_bytes_s:
            due = total / rate_bytes_s
            el = time.perf_counter() - t0
            if due > el:
                time.sleep(due - el)
    s.close()
    return {"events": events, "bytes": total, "seconds": time.perf_counter() - t0, "ttfb_s": ttfb, "at": at}


def pin_self(core):
    os.sched_setaffinity(0, {int(core)})


def unpin_self():
    os.sched_setaffinity(0, set(range(os.cpu_count())))


# ------------------------------------------------------------- sections ----

def section_publish(o):
    data = payload()
    secs = o.seconds
    concs = [1, 16, 64]
    kinds = ["disk", "redis-always", "mem", "redis-everysec"]
    cells = {}  # (kind, topics, conc) -> [result per rep]
    redis_n = {}
    notes = [load_note()]

    def cell(kind, topics, conc, rep):
        d = os.path.join(o.data, f"pub-{kind}")
        rm(d)
        if kind.startswith("redis"):
            srv = Redis(kind.split("-")[1], d).start()
            try:
                k = (kind, topics, conc)
                if k not in redis_n:
                    # Calibrate the count to the cell's duration.
                    probe = redis_bench(srv.port, conc, 1000 if conc == 1 else 10000, data, topics)
                    redis_n[k] = max(1000, int(probe["rps"] * secs))
                c0 = cpu_s(srv.pid)
                r = redis_bench(srv.port, conc, redis_n[k], data, topics)
                r["server_cpu_s"] = cpu_s(srv.pid) - c0
            finally:
                srv.stop()
        else:
            # Retention raised: this table is the append path; trimming is
            # measured separately below.
            flags = ["--retain-events", "100000000", "--retain-bytes", str(1 << 40), "--max-disk-bytes",
                     str(1 << 40)] if kind == "disk" else []
            srv = Ssehub(o.ssehub, *flags, data_dir=d if kind == "disk" else None,
                         log_path=os.path.join(o.data, "ssehub.log")).start()
            try:
                url = srv.base + ("/events/t" if topics == 1 else "/events/t[0-9a-f]")
                c0, t0 = cpu_s(srv.pid), thread_cpu(srv.pid)
                r = oha(url, "-c", str(conc), "-m", "POST", "-d", data, "-T", "text/plain", seconds=secs,
                        regex=topics > 1)
                r["server_cpu_s"] = cpu_s(srv.pid) - c0
                t1 = thread_cpu(srv.pid)
                r["threads_cpu_s"] = {k: round(v - t0.get(k, 0.0), 2) for k, v in t1.items()}
            finally:
                srv.stop()
            rm(d)
        r["server_us_per_publish"] = r["server_cpu_s"] * 1e6 / max(1, r["rps"] * r["seconds"])
        r["rep"] = rep
        log(f"publish {kind} topics={topics} c={conc}: {r['rps']:,.0f}/s p99 {r['p99_ms']:.2f} ms "
            f"server {r['server_us_per_publish']:.1f} us/publish client {r['client_cpu_pct']:.0f}%")
        cells.setdefault(f"{kind}|{topics}|{conc}", []).append(r)

    for rep in range(o.reps):
        for conc in concs:
            for topics in (1, 16):
                order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
                for kind in order:
                    cell(kind, topics, conc, rep)
        notes.append(load_note())

    # At retention: one topic holding 100,000 events already (the default
    # --retain-events), so every append also trims one; Redis with
    # XADD MAXLEN ~ 100000.
    trim = {}
    for rep in range(o.reps):
        for kind in (["disk", "redis-always"] if rep % 2 == 0 else ["redis-always", "disk"]):
            d = os.path.join(o.data, f"trim-{kind}")
            rm(d)
            if kind == "disk":
                srv = Ssehub(o.ssehub, data_dir=d, log_path=os.path.join(o.data, "ssehub.log")).start()
                try:
                    fill(srv.port, ["t"], o.retain_fill)
                    time.sleep(1)
                    c0 = cpu_s(srv.pid)
                    r = oha(srv.base + "/events/t", "-c", "64", "-m", "POST", "-d", data, "-T", "text/plain",
                            seconds=secs)
                    r["server_cpu_s"] = cpu_s(srv.pid) - c0
                finally:
                    srv.stop()
                rm(d)
            else:
                srv = Redis("always", d).start()
                try:
                    run(["taskset", "-c", CLIENT_CORE, "redis-benchmark", "-p", str(srv.port), "-c", "16", "-n",
                         str(o.retain_fill), "-P", "16", "-q", "XADD", "t", "*", "d", data],
                        capture_output=True)
                    k = ("trim", 64)
                    if k not in redis_n:
                        probe = redis_bench_trim(srv.port, 64, 10000, data)
                        redis_n[k] = max(1000, int(probe["rps"] * secs))
                    c0 = cpu_s(srv.pid)
                    r = redis_bench_trim(srv.port, 64, redis_n[k], data)
                    r["server_cpu_s"] = cpu_s(srv.pid) - c0
                finally:
                    srv.stop()
            r["server_us_per_publish"] = r["server_cpu_s"] * 1e6 / max(1, r["rps"] * r["seconds"])
            log(f"publish at retention {kind} c=64: {r['rps']:,.0f}/s p99 {r['p99_ms']:.2f} ms")
            trim.setdefault(kind, []).append(r)
    notes.append(load_note())
    return {"cells": cells, "trim": trim, "load": notes, "seconds": secs}


def redis_bench_trim(port, conc, n, data):
    cmd = ["taskset", "-c", CLIENT_CORE, "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(conc),
           "-n", str(n), "-P", "1", "--csv", "XADD", "t", "MAXLEN", "~", "100000", "*", "d", data]
    c0, t0 = children_cpu(), time.perf_counter()
    out = run(cmd, capture_output=True, text=True).stdout
    wall, client = time.perf_counter() - t0, children_cpu() - c0
    line = [ln for ln in out.splitlines() if ln.startswith('"') and not ln.startswith('"test"')][-1]
    f = [x.strip('"') for x in line.rsplit(",", 7)]
    return {"rps": float(f[1]), "p50_ms": float(f[4]), "p99_ms": float(f[6]), "requests": n, "seconds": wall,
            "client_cpu_pct": client / wall * 100}


def fanout_modes(o):
    secs = "3" if o.quick else "10"
    return [
        ("2000x50", ["fanout", "--subscribers", "2000", "--rate", "50", "--seconds", secs]),
        ("2000x10", ["fanout", "--subscribers", "2000", "--rate", "10", "--seconds", secs]),
        ("2000_flat_out", ["fanout", "--subscribers", "2000", "--burst", "1000" if o.quick else "3000"]),
        ("100x1000", ["fanout", "--subscribers", "100", "--rate", "1000", "--seconds", secs]),
    ]


def section_fanout(o):
    out, notes = {}, [load_note()]
    flags = ["--buffer", "100000", "--max-topic-bytes", str(64 << 20)]
    for rep in range(o.reps):
        for name, mode in fanout_modes(o):
            for kind in (["mem", "disk"] if rep % 2 == 0 else ["disk", "mem"]):
                d = os.path.join(o.data, "fanout-disk")
                rm(d)
                srv = Ssehub(o.ssehub, *flags, data_dir=d if kind == "disk" else None,
                             log_path=os.path.join(o.data, "ssehub.log")).start()
                try:
                    r = sseload(o.sseload, srv.base, "f", [srv.pid], *mode)
                finally:
                    srv.stop()
                    rm(d)
                r["rep"] = rep
                log(f"fanout {name} {kind}: {r['deliveries_per_s']:,.0f}/s "
                    f"{r['server_us_per_delivery']:.3f} us/delivery lost {r['lost_dup_ooo']} "
                    f"p99 {r['latency_us']['p99']} us publish {r['publish_seconds']:.2f} s")
                out.setdefault(f"{name}|{kind}", []).append(r)
        notes.append(load_note())
    return {"cells": out, "load": notes}


def section_resume(o):
    """One client resuming 100,000 events back; oha replay-and-close."""
    back = 10_000 if o.quick else 100_000
    total = back + 10_000
    notes = [load_note()]
    res = {"back": back, "total": total, "long": {}, "oha": {}}
    d = os.path.join(o.data, "resume-disk")
    disk_flags = ["--buffer", "1024", "--retain-events", str(10 * total)]
    mem_flags = ["--buffer", str(2 * total), "--max-topic-bytes", str(512 << 20), "--max-total-bytes",
                 str(1 << 30)]
    # Build the disk store once (kept for the section), the memory server per use.
    rm(d)
    srv = Ssehub(o.ssehub, *disk_flags, data_dir=d, log_path=os.path.join(o.data, "ssehub.log")).start()
    ids = fill(srv.port, ["r"], total)["r"]
    srv.stop()
    epoch = ids[1].rsplit("-", 1)[0]
    last = int(ids[1].rsplit("-", 1)[1])
    from_id = f"{epoch}-{last - back}"
    path = f"/events/r?lastEventId={from_id}&limit={back}"

    def long_replay(kind, cold):
        if kind == "disk":
            if cold:
                evict(d)
            s = Ssehub(o.ssehub, *disk_flags, data_dir=d, log_path=os.path.join(o.data, "ssehub.log")).start()
        else:
            s = Ssehub(o.ssehub, *mem_flags, log_path=os.path.join(o.data, "ssehub.log")).start()
            # Same events, same ids: the memory server has another epoch.
            mids = fill(s.port, ["r"], total)["r"]
            s.mem_path = (f"/events/r?lastEventId={mids[1].rsplit('-', 1)[0]}-"
                          f"{int(mids[1].rsplit('-', 1)[1]) - back}&limit={back}")
        try:
            rows = []
            for attempt in range(2):  # the first read, then again in the same process
                p = path if kind == "disk" else s.mem_path
                c0 = cpu_s(s.pid)
                pin_self(CLIENT_CORE)
                try:
                    with RssSampler(s.pid) as rs:
                        r = replay(s.port, p)
                finally:
                    unpin_self()
                r["server_cpu_s"] = cpu_s(s.pid) - c0
                r["rss_peak"] = rs.peak()
                r["events_per_s"] = r["events"] / r["seconds"]
                if r["events"] != back:
                    raise RuntimeError(f"replay got {r['events']} events, wanted {back}")
                rows.append(r)
            return rows
        finally:
            s.stop()

    for rep in range(o.reps):
        for kind, cold in ([("disk", True), ("mem", False)] if rep % 2 == 0 else [("mem", False), ("disk", True)]):
            rows = long_replay(kind, cold)
            key = "disk" if kind == "disk" else "mem"
            res["long"].setdefault(key + "_first", []).append(rows[0])
            res["long"].setdefault(key + "_again", []).append(rows[1])
            log(f"resume {back} back {kind}: first {rows[0]['events_per_s']:,.0f} ev/s, "
                f"again {rows[1]['events_per_s']:,.0f} ev/s, rss peak {rows[0]['rss_peak']}")
    notes.append(load_note())

    # Replay-and-close with oha: random positions 10,000..99,999 (all older
    # than the disk server's ring of 1,024), `limit` events each.
    pos_re = "[1-9][0-9]{3}" if o.quick else "[1-9][0-9]{4}"
    for rep in range(o.reps):
        mem = Ssehub(o.ssehub, *mem_flags, log_path=os.path.join(o.data, "ssehub.log")).start()
        mids = fill(mem.port, ["r"], total)["r"]
        mepoch = mids[1].rsplit("-", 1)[0]
        disk = Ssehub(o.ssehub, *disk_flags, data_dir=d, log_path=os.path.join(o.data, "ssehub.log")).start()
        # A restarted server's ring is empty: publish 1,100 more so that the
        # newest 1,024 are in the ring, and ask for 100 of those from a
        # position in the ring for the "disk server, ring" row.
        l2 = int(fill(disk.port, ["r"], 1100)["r"][1].rsplit("-", 1)[1])
        base = ((l2 - 1000) // 100 + 1) * 100
        ring_re = f"{base // 100}[0-9][0-9]"
        try:
            for limit in (1, 100):
                cases = [("disk", disk, epoch, pos_re), ("mem", mem, mepoch, pos_re)]
                if limit == 100:
                    cases.append(("disk_ring", disk, epoch, ring_re))
                if rep % 2:
                    cases.reverse()
                for name, s, ep, pr in cases:
                    url = f"{s.base}/events/r\\?lastEventId={ep}-{pr}&limit={limit}"
                    c0 = cpu_s(s.pid)
                    r = oha(url, "-c", "32", seconds=o.seconds, regex=True)
                    r["server_cpu_s"] = cpu_s(s.pid) - c0
                    r["server_us_per_request"] = r["server_cpu_s"] * 1e6 / max(1, r["requests"])
                    log(f"replay-and-close limit={limit} {name}: {r['rps']:,.0f} req/s p99 {r['p99_ms']:.2f} ms "
                        f"server {r['server_us_per_request']:.1f} us/request")
                    res["oha"].setdefault(f"{name}|{limit}", []).append(r)
        finally:
            disk.stop()
            mem.stop()
    notes.append(load_note())
    res["load"] = notes
    rm(d)
    return res


def section_startup(o):
    topics = [f"s{i}" for i in range(10)]
    per = 10_000 if o.quick else 100_000
    d = os.path.join(o.data, f"startup-{per}")
    flags = ["--buffer", "1024", "--retain-events", str(100 * per), "--retain-bytes", str(1 << 40),
             "--max-disk-bytes", str(1 << 40)]
    logp = os.path.join(o.data, "ssehub.log")
    notes = [load_note()]
    res = {"per_topic": per, "topics": len(topics), "rows": {}}
    marker = os.path.join(d, "FILLED")
    if not os.path.exists(marker) or o.fresh:
        rm(d)
        s = Ssehub(o.ssehub, *flags, data_dir=d, log_path=logp).start()
        t0 = time.perf_counter()
        ids = fill(s.port, topics, per)
        res["fill_s"] = time.perf_counter() - t0
        s.stop()
        json.dump(ids, open(marker, "w"))
    ids = json.load(open(marker))
    res["disk_bytes"] = sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(d) for f in fs)

    def start_measure(label):
        s = Ssehub(o.ssehub, *flags, data_dir=d, log_path=logp).start()
        time.sleep(1.0)
        r = {"startup_s": s.startup_s, "rss": rss(s.pid), "hwm": rss(s.pid, "VmHWM"),
             "threads": len(os.listdir(f"/proc/{s.pid}/task"))}
        res["rows"].setdefault(label, []).append(r)
        log(f"startup {label}: {r['startup_s'] * 1e3:.0f} ms, RSS {r['rss'] / 1e6:.1f} MB")
        return s

    def traffic(port, stop):
        import http.client
        data = payload(200, seed=7)
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(8)]

        def loop(c, t):
            i = 0
            while not stop.is_set():
                try:
                    c.request("POST", f"/events/{t}", body=f"{i} {data}", headers={"Content-Type": "text/plain"})
                    c.getresponse().read()
                except Exception:
                    return
                i += 1
        ths = [threading.Thread(target=loop, args=(c, topics[i % 10]), daemon=True) for i, c in enumerate(conns)]
        for t in ths:
            t.start()
        return ths

    mem = Ssehub(o.ssehub, "--buffer", "1024").start()
    time.sleep(1.0)
    res["rows"]["memory (reference)"] = [{"startup_s": mem.startup_s, "rss": rss(mem.pid), "hwm": rss(mem.pid, "VmHWM"),
                                          "threads": len(os.listdir(f"/proc/{mem.pid}/task"))}]
    mem.stop()
    for rep in range(o.reps):
        # Warm page cache, after a graceful stop.
        s = start_measure("after graceful stop (warm cache)")
        s.stop()
        # Cold page cache, after a graceful stop.
        evict(d)
        s = start_measure("after graceful stop (cold cache)")
        # SIGKILL during live publishing, then start again.
        stop = threading.Event()
        ths = traffic(s.port, stop)
        time.sleep(2.0)
        os.kill(s.pid, signal.SIGKILL)
        s.proc.wait()
        stop.set()
        for t in ths:
            t.join(timeout=5)
        s = start_measure("after SIGKILL during publishing")
        t_stop = s.stop()
        res["rows"].setdefault("graceful stop takes", []).append({"startup_s": t_stop})
    notes.append(load_note())

    # RSS while clients replay whole topics from disk, one after another,
    # read as fast as possible, then throttled to 20 MB/s: it must not grow
    # with the length of the replay. The engine's block cache (64 MiB) fills
    # as blocks are read; beyond that, RSS must stay flat.
    s = Ssehub(o.ssehub, *flags, data_dir=d, log_path=logp).start()
    try:
        time.sleep(0.5)
        rows = []
        # 10% of one topic, then every topic whole (1M events in all), then
        # one again at 20 MB/s.
        plan = [("s3", per // 10, None)] + [(t, per, None) for t in topics] + [("s3", per, 20e6)]
        for t, n, rate in plan:
            ep, seq = ids[t][0].rsplit("-", 1)
            before = rss(s.pid)
            samples = []

            def progress(ev, samples=samples, n=n):
                if not samples or ev - samples[-1][0] >= n // 10:
                    samples.append((ev, rss(s.pid)))
            pin_self(CLIENT_CORE)
            try:
                with RssSampler(s.pid) as rs:
                    r = replay(s.port, f"/events/{t}?lastEventId={ep}-{int(seq) - 1}&limit={n}",
                               rate_bytes_s=rate, progress=progress)
            finally:
                unpin_self()
            if r["events"] != n:
                raise RuntimeError(f"replay of {t} got {r['events']} events, wanted {n}")
            r.update(topic=t, n=n, reader="20 MB/s" if rate else "fast", rss_before=before, rss_peak=rs.peak(),
                     rss_after=rss(s.pid), rss_by_events=samples, events_per_s=r["events"] / r["seconds"],
                     threads=len(os.listdir(f"/proc/{s.pid}/task")))
            rows.append(r)
            log(f"replay {t} {n} ({r['reader']}): {r['events_per_s']:,.0f} ev/s RSS before {before / 1e6:.1f} MB "
                f"peak {r['rss_peak'] / 1e6:.1f} MB after {r['rss_after'] / 1e6:.1f} MB")
        res["replay_rss"] = rows
    finally:
        s.stop()
    notes.append(load_note())
    res["load"] = notes
    if not o.keep_data:
        rm(d)
    return res


def section_refactor(o):
    if not o.before_ssehub:
        return None
    out, notes = {}, [load_note()]
    flags = ["--buffer", "100000", "--max-topic-bytes", str(64 << 20)]
    secs = "3" if o.quick else "10"
    modes = [
        ("2000x50", ["fanout", "--subscribers", "2000", "--rate", "50", "--seconds", secs]),
        ("100x1000", ["fanout", "--subscribers", "100", "--rate", "1000", "--seconds", secs]),
        ("2000_flat_out", ["fanout", "--subscribers", "2000", "--burst", "1000" if o.quick else "5000"]),
        ("idle_10000", ["idle", "--subscribers", "2000" if o.quick else "10000", "--hold", "17"]),
    ]
    for rep in range(o.reps):
        for name, mode in modes:
            order = [("before", o.before_ssehub), ("after", o.ssehub)]
            if rep % 2:
                order.reverse()
            for label, binary in order:
                srv = Ssehub(binary, *flags).start()
                try:
                    r = sseload(o.sseload, srv.base, "f", [srv.pid], *mode)
                finally:
                    srv.stop()
                r["rep"] = rep
                log(f"refactor {name} {label}: " + (
                    f"{r['bytes_per_connection']:,.0f} B/conn" if mode[0] == "idle" else
                    f"{r['server_us_per_delivery']:.3f} us/delivery {r['deliveries_per_s']:,.0f}/s"))
                out.setdefault(f"{name}|{label}", []).append(r)
        notes.append(load_note())
    return {"cells": out, "load": notes}


def bench_binary(tree, target):
    out = run(["cargo", "bench", "--bench", "core", "--no-run", "--message-format=json"], cwd=tree,
              env=dict(os.environ, CARGO_TARGET_DIR=target), capture_output=True, text=True).stdout
    for line in out.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "core" and m.get("executable"):
            return m["executable"]
    raise RuntimeError(f"no bench executable in {tree}")


def section_criterion(o):
    if not o.before_tree:
        return None
    bins = {"before": bench_binary(o.before_tree, o.before_target), "after": bench_binary(ROOT, o.target)}
    notes = [load_note()]
    res = {}
    for rep in range(max(2, o.reps - 1)):
        order = ["before", "after"] if rep % 2 == 0 else ["after", "before"]
        for label in order:
            home = os.path.join(o.data, f"criterion-{label}-{rep}")
            rm(home)
            args = ["taskset", "-c", CLIENT_CORE, bins[label], "--bench", "--noplot"]
            if o.quick:
                args += ["--warm-up-time", "0.5", "--measurement-time", "1"]
            run(args, env=dict(os.environ, CRITERION_HOME=home), capture_output=True, text=True)
            for dirpath, _, files in os.walk(home):
                if "estimates.json" in files and os.path.basename(dirpath) == "new":
                    name = os.path.relpath(os.path.dirname(dirpath), home)
                    est = json.load(open(os.path.join(dirpath, "estimates.json")))
                    res.setdefault(name, {}).setdefault(label, []).append(est["median"]["point_estimate"])
            rm(home)
        notes.append(load_note())
    return {"benches": res, "load": notes}


# ---------------------------------------------------------------- report ----

def f0(v):
    return "n/a" if v is None else f"{v:,.0f}"


def f2(v):
    return "n/a" if v is None else (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}")


def ratio(a, b):
    return "n/a" if a is None or not b else f"{a / b:.2f}"


def loads(sec):
    return "; ".join(f"{n['at']} load {n['loadavg']}, CPU pressure {n['cpu_pressure_avg10']}%" for n in sec["load"])


def report(res, o):
    parts = []
    p = res.get("publish")
    if p:
        c = p["cells"]
        g = lambda kind, t, conc, key: med([r[key] for r in c.get(f"{kind}|{t}|{conc}", [])])
        rows = []
        for t in (1, 16):
            for conc in (1, 16, 64):
                d, a, e, m = (g(k, t, conc, "rps") for k in ("disk", "redis-always", "redis-everysec", "mem"))
                rows.append(
                    f"| {t} | {conc} | {f0(d)} | {f0(a)} | {f0(e)} | {f0(m)} | **{ratio(d, a)}** | {ratio(d, m)} | "
                    f"{f2(g('disk', t, conc, 'p99_ms'))} | {f2(g('redis-always', t, conc, 'p99_ms'))} | "
                    f"{f2(g('mem', t, conc, 'p99_ms'))} |")
        cpu_rows = []
        for t in (1, 16):
            for conc in (1, 16, 64):
                cpu_rows.append(
                    f"| {t} | {conc} | " + " | ".join(f2(g(k, t, conc, "server_us_per_publish"))
                                                    for k in ("disk", "redis-always", "redis-everysec", "mem"))
                    + " | " + " | ".join(f"{f0(g(k, t, conc, 'client_cpu_pct'))}%" for k in ("disk", "redis-always", "mem"))
                    + " |")
        thr = []
        for t in (1, 16):
            for conc in (16, 64):
                rs = c.get(f"disk|{t}|{conc}", [])
                if rs:
                    names = sorted({n for r in rs for n in r.get("threads_cpu_s", {})})
                    per = {n: med([r["threads_cpu_s"].get(n, 0) * 1e6 / (r["rps"] * r["seconds"]) for r in rs])
                           for n in names}
                    thr.append(f"{t} topic(s), {conc} conns: " + ", ".join(f"{n} {v:.1f}" for n, v in per.items()))
        tr = p["trim"]
        td, ta = med([r["rps"] for r in tr.get("disk", [])]), med([r["rps"] for r in tr.get("redis-always", [])])
        parts.append(f"""### Durable publish (oha / redis-benchmark, 1 KB bodies)

Each publish is one request that is answered once the event is durable:
ssehub `--data-dir` answers `201` after the group commit's `fsync`; Redis
with `--appendonly yes --appendfsync always` answers `XADD` after its
`fsync` (`everysec`: after a write, synced once a second, so up to a second
of acknowledged events can be lost). Clients: `oha -m POST -d <1,000 bytes>
-T text/plain -c N` for ssehub, `redis-benchmark -c N -P 1 XADD key * d
<the same 1,000 bytes>` for Redis (16 topics: `oha --rand-regex-url
/events/t[0-9a-f]`, `redis-benchmark -r 16` on `t:__rand_int__`). {p['seconds']} s
per cell, a fresh server and data directory per cell, configurations
alternated and rotated, median of {o.reps}. Retention raised so that
nothing is trimmed (the append path alone; trimming below).

| topics | connections | ssehub disk /s | Redis always /s | Redis everysec /s | ssehub memory /s | **disk / Redis always** | disk / memory | disk p99 (ms) | Redis always p99 (ms) | memory p99 (ms) |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

Server CPU per publish (µs; all on core 0) and the load tool's CPU (core 1):

| topics | connections | ssehub disk | Redis always | Redis everysec | ssehub memory | oha on disk | redis-benchmark on always | oha on memory |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(cpu_rows)}

ssehub disk, CPU per publish by thread (µs): {'; '.join(thr)}.

**At retention** (one topic already holding 100,000 events, the default
`--retain-events`, so every append also trims one; Redis `XADD t MAXLEN ~
100000 * ...`), 64 connections: ssehub disk {f0(td)}/s, Redis always
{f0(ta)}/s, ratio **{ratio(td, ta)}**; p99 {f2(med([r['p99_ms'] for r in tr.get('disk', [])]))} ms
vs {f2(med([r['p99_ms'] for r in tr.get('redis-always', [])]))} ms; server CPU per publish
{f2(med([r['server_us_per_publish'] for r in tr.get('disk', [])]))} µs vs
{f2(med([r['server_us_per_publish'] for r in tr.get('redis-always', [])]))} µs.

Load: {loads(p)}.
""")
    f = res.get("fanout")
    if f:
        c = f["cells"]
        rows = []
        for name, label in (("2000x50", "2,000 subs x 50 ev/s"), ("2000x10", "2,000 subs x 10 ev/s"),
                            ("100x1000", "100 subs x 1,000 ev/s"),
                            ("2000_flat_out", "2,000 subs, publisher flat out")):
            m = lambda kind, *k: med([dig(r, *k) for r in c.get(f"{name}|{kind}", [])])
            um, ud = m("mem", "server_us_per_delivery"), m("disk", "server_us_per_delivery")
            rows.append(f"| {label} | {f0(m('mem', 'deliveries_per_s'))} | {f0(m('disk', 'deliveries_per_s'))} | "
                        f"{f2(um)} | {f2(ud)} | **{ratio(ud, um)}** | {f0(m('mem', 'latency_us', 'p99'))} | "
                        f"{f0(m('disk', 'latency_us', 'p99'))} | {f2(m('mem', 'publish_seconds'))} | "
                        f"{f2(m('disk', 'publish_seconds'))} | "
                        f"{f0(m('mem', 'lost_dup_ooo'))} / {f0(m('disk', 'lost_dup_ooo'))} |")
        parts.append(f"""### Fan-out with `--data-dir` against memory (sseload)

`sseload fanout` as benches/run.py runs it (one publisher connection, up to
16 requests in flight; `--buffer 100000`), the same server with and without
`--data-dir`, alternated, median of {o.reps}. Server CPU per delivery
includes the disk writer's thread and its syncs.

| scenario | deliveries/s memory | deliveries/s disk | µs/delivery memory | µs/delivery disk | **disk / memory** | p99 µs memory | p99 µs disk | publishing took (s) memory | disk | lost+dup+ooo mem / disk |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

How to read it: the publisher is one HTTP/1.1 connection, so its requests
are answered one after the other, and with `--data-dir` each waits for its
sync (about 4 ms here) and for the previous event's deliveries. Where disk
keeps up with the asked rate (10 ev/s), the cost per delivery is the same
as memory's. Where it does not (50 ev/s, flat out), disk publishes fewer
events per second, each reaches every subscriber alone, one write per
subscriber per event, while memory's publisher runs ahead and a subscriber
takes several events per write (a stream sends whatever the ring holds
past its cursor as one chunk). One write per event costs about 8 µs per
delivery on either store (memory at 10 ev/s: the same figure), so these
rows measure the publisher's rate, not the fan-out path, which is the same
code for both stores. Durable publishing at scale uses several
connections (the group commit shares one sync between them: the publish
table above).

Load: {loads(f)}.
""")
    r = res.get("resume")
    if r:
        L = r["long"]
        m = lambda k, key: med([x[key] for x in L.get(k, [])])
        O = r["oha"]
        om = lambda k, key: med([x[key] for x in O.get(k, [])])
        orows = []
        for limit in (1, 100):
            d_, m_ = om(f"disk|{limit}", "rps"), om(f"mem|{limit}", "rps")
            orows.append(f"| {limit} | {f0(d_)} | {f0(m_)} | **{ratio(d_, m_)}** | {f2(om(f'disk|{limit}', 'p99_ms'))} | "
                         f"{f2(om(f'mem|{limit}', 'p99_ms'))} | {f2(om(f'disk|{limit}', 'server_us_per_request'))} | "
                         f"{f2(om(f'mem|{limit}', 'server_us_per_request'))} |")
        ring = om("disk_ring|100", "rps")
        parts.append(f"""### Resume from disk

One client resumes {r['back']:,} events back (`?lastEventId=...&limit={r['back']}`,
events of ~1 KB, `--buffer 1024`: all but the last 1,024 from disk; the
client is a Python socket reader on core 1 counting `id:` lines). "First":
a fresh server process, the store's files evicted from the page cache
(`posix_fadvise DONTNEED`); "again": the same request once more in the same
process. Memory: a server with `--buffer {2 * r['total']}` holding the same
events. Median of {o.reps}.

| | disk, first (cold) | disk, again | memory, first | memory, again |
|---|---:|---:|---:|---:|
| events/s | {f0(m('disk_first', 'events_per_s'))} | {f0(m('disk_again', 'events_per_s'))} | {f0(m('mem_first', 'events_per_s'))} | {f0(m('mem_again', 'events_per_s'))} |
| MB/s | {f0(m('disk_first', 'bytes') and m('disk_first', 'bytes') / m('disk_first', 'seconds') / 1e6)} | {f0(m('disk_again', 'bytes') / m('disk_again', 'seconds') / 1e6)} | {f0(m('mem_first', 'bytes') / m('mem_first', 'seconds') / 1e6)} | {f0(m('mem_again', 'bytes') / m('mem_again', 'seconds') / 1e6)} |
| first byte (ms) | {f2(m('disk_first', 'ttfb_s') * 1e3)} | {f2(m('disk_again', 'ttfb_s') * 1e3)} | {f2(m('mem_first', 'ttfb_s') * 1e3)} | {f2(m('mem_again', 'ttfb_s') * 1e3)} |
| server CPU (s) | {f2(m('disk_first', 'server_cpu_s'))} | {f2(m('disk_again', 'server_cpu_s'))} | {f2(m('mem_first', 'server_cpu_s'))} | {f2(m('mem_again', 'server_cpu_s'))} |
| server RSS peak (MB) | {f2(m('disk_first', 'rss_peak') / 1e6)} | {f2(m('disk_again', 'rss_peak') / 1e6)} | {f2(m('mem_first', 'rss_peak') / 1e6)} | {f2(m('mem_again', 'rss_peak') / 1e6)} |

Replay-and-close with oha (`GET /events/r?lastEventId=<epoch>-<random seq
in 10,000..99,999>&limit=N`, `--rand-regex-url`, 32 connections,
{o.seconds} s): from disk (the disk server's ring holds only the last 1,024)
against the same requests to the memory server. Goal: disk at least 0.5x
memory.

| limit N | disk req/s | memory req/s | **disk / memory** | disk p99 (ms) | memory p99 (ms) | server µs/request disk | memory |
|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(orows)}

The disk server answering from its ring (positions within the last 1,024,
limit 100): {f0(ring)} req/s ({ratio(ring, om('mem|100', 'rps'))}x memory).

Load: {loads(r)}.
""")
    s = res.get("startup")
    if s:
        rows = []
        # The reference first (results files store their keys sorted).
        for label, xs in sorted(s["rows"].items(), key=lambda kv: not kv[0].startswith("memory")):
            if label == "graceful stop takes":
                continue
            ms = [x['startup_s'] * 1e3 for x in xs]
            rows.append(f"| {label} | {f0(med(ms))} ({f0(min(ms))}-{f0(max(ms))}) | "
                        f"{f2(med([x['rss'] / 1e6 for x in xs]))} | {f2(med([x['hwm'] / 1e6 for x in xs]))} | "
                        f"{f0(med([x['threads'] for x in xs]))} |")
        stop_t = med([x["startup_s"] for x in s["rows"].get("graceful stop takes", [])])
        rrows = []
        for v in s.get("replay_rss", []):
            by = ", ".join(f"{e // 1000}k: {b / 1e6:.0f}" for e, b in v["rss_by_events"][::2])
            rrows.append(f"| `{v['topic']}` | {v['n']:,} | {v['reader']} | {f0(v['events_per_s'])} | "
                         f"{f2(v['rss_before'] / 1e6)} | {f2(v['rss_peak'] / 1e6)} | {f2(v['rss_after'] / 1e6)} | "
                         f"{v.get('threads', '')} | {by} |")
        parts.append(f"""### Startup and memory with {s['topics']} topics x {s['per_topic']:,} events on disk

{s['topics'] * s['per_topic']:,} events of ~1 KB ({s['disk_bytes'] / 1e9:.2f} GB in the
directory), `--retain-events`, `--retain-bytes` and `--max-disk-bytes`
raised so nothing is trimmed, `--buffer 1024`. Time from exec to the
`ssehub listening` line, and RSS 1 s later; median of {o.reps}. The SIGKILL
comes after 2 s of 8 connections publishing to the 10 topics (the restart
replays the engine's journal).

| start | exec to listening, ms: median (min-max) | RSS (MB) | peak RSS (MB) | threads |
|---|---:|---:|---:|---:|
{chr(10).join(rows)}

A graceful stop (SIGTERM, which flushes the engine's memtables) took {f2(stop_t)} s.

RSS while one client at a time replays a topic from its first event (all
from disk; a fresh server, then these in order), read as fast as the client
can, and the last one throttled to 20 MB/s (a slow reader). The engine's
block cache (64 MiB) fills as blocks are read; what matters is that RSS
stops growing once it is full, however long the replay:

| topic | events replayed | reader | events/s | RSS before (MB) | peak (MB) | after (MB) | threads after | RSS (MB) by events replayed |
|---|---:|---|---:|---:|---:|---:|---:|---|
{chr(10).join(rrows)}

Load: {loads(s)}.
""")
    return "\n".join(parts)


def report_refactors(res, o):
    """The before/after comparison (`refactor`, `criterion`), its own block."""
    rf, crit = res.get("refactor"), res.get("criterion")
    if not rf and not crit:
        return None
    rows = []
    if rf:
        c = rf["cells"]
        m = lambda name, label, *k: med([dig(x, *k) for x in c.get(f"{name}|{label}", [])])
        for name, label in (("2000x50", "2,000 subs x 50 ev/s"), ("100x1000", "100 subs x 1,000 ev/s"),
                            ("2000_flat_out", "2,000 subs flat out")):
            b, a = m(name, "before", "server_us_per_delivery"), m(name, "after", "server_us_per_delivery")
            rows.append(f"| {label}: server µs / delivery | {f2(b)} | {f2(a)} | **{ratio(a, b)}** |")
            b, a = m(name, "before", "latency_us", "p99"), m(name, "after", "latency_us", "p99")
            rows.append(f"| {label}: p99 latency (µs) | {f0(b)} | {f0(a)} | {ratio(a, b)} |")
            if name == "2000_flat_out":
                b, a = m(name, "before", "deliveries_per_s"), m(name, "after", "deliveries_per_s")
                rows.append(f"| {label}: deliveries/s | {f0(b)} | {f0(a)} | {ratio(a, b)} |")
        b, a = m("idle_10000", "before", "bytes_per_connection"), m("idle_10000", "after", "bytes_per_connection")
        rows.append(f"| 10,000 idle: server RSS bytes / connection | {f0(b)} | {f0(a)} | **{ratio(a, b)}** |")
    crows = []
    if crit:
        for name in sorted(crit["benches"]):
            v = crit["benches"][name]
            b, a = med(v.get("before", [])), med(v.get("after", []))
            crows.append(f"| `{name}` | {fmt_ns(b)} | {fmt_ns(a)} | {ratio(a, b)} |")
    # The tree the results were measured on: the run's, or the file's (--from).
    m = re.search(r"ssehub (\w+)", res.get("meta", {}).get("machine", ""))
    after = m.group(1) if m else bl.git_short(ROOT)
    text = f"""The in-memory server of this tree (`{after}`) against `{o.before_rev}`
(the tree before the storage seam moved Redis behind `src/store/`, before
the layout restructure into `src/core` .. `src/server` and before the
deadline work), same flags (`--buffer 100000 --max-topic-bytes 67108864`),
the same sseload (this tree's), alternated (the order flips every
repetition), median of {o.reps}. Ratios after / before (below 1 is better).
"""
    if rows:
        text += f"""
| | before ({o.before_rev}) | after ({after}) | after / before |
|---|---:|---:|---:|
{chr(10).join(rows)}

Load (sseload): {loads(rf)}.
"""
    if crows:
        text += f"""
`cargo bench --bench core` (criterion, median estimate; each tree's bench
binary run {max(2, o.reps - 1)} times alternately on core 1, median of those):

| bench | before ({o.before_rev}) | after ({after}) | after / before |
|---|---:|---:|---:|
{chr(10).join(crows)}

Load (criterion): {loads(crit)}.
"""
    return text


def fmt_ns(v):
    if v is None:
        return "n/a"
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.1f} ns"



def machine(o):
    redis_v = (bl.tool_version(["redis-server", "--version"]).split() + ["?"] * 3)[2]
    fs = subprocess.run(["df", "--output=source,fstype", o.data], capture_output=True, text=True).stdout.split()[-2:]
    return f"{bl.machine(['oha', '--version'])}; Redis {redis_v}; data on {fs[0]} ({fs[1]})"


def command(o):
    cmd = "python3 benches/durable.py" + (" --quick" if o.quick else "") + (
        f" --only {o.only}" if o.only != ALL else "")
    if REFACTORS & set(o.only.split(",")):
        cmd += f" --before-rev {o.before_rev}"
    return cmd


HEADS = {
    "durable": "## Durable history (`--data-dir`)",
    "refactors": "## Before and after the refactors (issues 9 and 11)",
}


def page(name, text, meta):
    """The full report of one part (`durable`, `refactors`) of a run."""
    return f"""{HEADS[name]}

Generated by `{meta.get('command', 'python3 benches/durable.py')}` on {meta.get('date', '?')}.
Raw numbers: the .json file of the same name. Machine: {meta.get('machine', 'not recorded')}.
Servers pinned to core 0 (ssehub's runtime,
its disk writer thread and the engine's threads all share it), load tools to
core 1. The machine is shared: compare the ratios within this run, not
absolute numbers across runs; the load average is given per table.

{text}"""


ALL = "publish,fanout,resume,startup,refactor,criterion"
REFACTORS = {"refactor", "criterion"}


def build(o):
    o.ssehub, o.sseload = bl.build(o.target)
    if {"refactor", "criterion"} & set(o.only.split(",")):
        if not os.path.exists(os.path.join(o.before_tree, ".git")):
            run(["git", "-C", ROOT, "worktree", "add", "--detach", o.before_tree, o.before_rev])
        run(["cargo", "build", "--release", "--bin", "ssehub"], cwd=o.before_tree,
            env=dict(os.environ, CARGO_TARGET_DIR=o.before_target))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=ALL)
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--seconds", type=int, default=None, help="seconds per oha cell (default 8, --quick 2)")
    ap.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    ap.add_argument("--before-rev", default="7d83dd7")
    ap.add_argument("--before-tree", default=None, help="a checkout of --before-rev (default: a worktree in target/)")
    ap.add_argument("--before-target", default=None, help="its CARGO_TARGET_DIR (default target/before-<rev>)")
    ap.add_argument("--data", default=None, help="data directories, on the disk to measure (default target/durable-data)")
    ap.add_argument("--out-dir", default=bl.RESULTS, help="where the results, reports and chart go")
    ap.add_argument("--from", dest="from_", metavar="RESULTS_JSON",
                    help="no run: write the report (and chart) of this results file again, beside it")
    ap.add_argument("--json", default=None, help="also save raw results here as each section ends "
                                                 "(and resume from it: sections it holds are kept)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--fresh", action="store_true", help="rebuild the 1M-event startup store")
    ap.add_argument("--keep-data", action="store_true", help="keep the startup store for the next run")
    ap.add_argument("--no-write", action="store_true", help="print the reports instead of writing results files")
    o = ap.parse_args()
    o.reps = o.reps or (1 if o.quick else 3)
    o.seconds = o.seconds or (2 if o.quick else 8)
    o.retain_fill = 10_000 if o.quick else 100_000
    o.before_tree = o.before_tree or os.path.join(ROOT, "target", f"wt-before-{o.before_rev}")
    o.before_target = o.before_target or os.path.join(ROOT, "target", f"before-{o.before_rev}")
    o.data = os.path.abspath(o.data or os.path.join(o.target, "durable-data"))
    os.makedirs(o.data, exist_ok=True)
    if o.from_:
        res = bl.load_results(o.from_)
        name = "refactors" if REFACTORS & set(res) else "durable"
        text = (report_refactors if name == "refactors" else report)(res, o)
        md = os.path.splitext(o.from_)[0] + ".md"
        open(md, "w").write(page(name, text, res["meta"]))
        log("wrote", md)
        import charts
        for svg in charts.draw(o.from_):
            log("wrote", svg)
        return
    o.before_ssehub = os.path.join(o.before_target, "release/ssehub")
    if o.skip_build:
        o.ssehub, o.sseload = bl.built(o.target)
    else:
        build(o)
    if not os.path.exists(o.before_ssehub):
        o.before_ssehub = None
    if not os.path.isdir(o.before_tree):
        o.before_tree = None
    sections = {"publish": section_publish, "fanout": section_fanout, "resume": section_resume,
                "startup": section_startup, "refactor": section_refactor, "criterion": section_criterion}
    res = {}
    prev = json.load(open(o.json)) if o.json and os.path.exists(o.json) else {}
    for name in o.only.split(","):
        log(f"== {name} ==", load_note())
        res[name] = sections[name](o)
        if o.json:
            prev[name] = res[name]
            json.dump(prev, open(o.json, "w"), indent=1, default=str)
    if o.json:
        res = {**prev, **res}
    # Durable history and the before/after comparison are separate blocks:
    # running one part leaves the other's block as it is.
    durable = {k: v for k, v in res.items() if k not in REFACTORS}
    refactors = {k: v for k, v in res.items() if k in REFACTORS}
    mach = machine(o)
    for name, part, text in (("durable", durable, report(durable, o) if durable else None),
                             ("refactors", refactors, report_refactors(refactors, o))):
        if not text:
            continue
        meta = {"date": bl.now(), "command": command(o), "machine": mach}
        if o.no_write:
            print(page(name, text, meta))
        else:
            bl.write_results(name, part, meta["command"], mach, page(name, text, meta), out_dir=o.out_dir)


if __name__ == "__main__":
    main()
