#!/usr/bin/env python3
"""Durable publishing against Redis `appendfsync always`, side by side in
one run (issue 20).

    python3 benches/vs_redis.py                       # 3 reps x 8 s cells
    python3 benches/vs_redis.py --reps 1 --seconds 3  # a smoke test
    python3 benches/vs_redis.py --syncs               # also count syncs (strace)

Every cell gets a fresh server and a fresh data directory under --data
(default target/vs-redis-data: the same filesystem for both servers, not
tmpfs). Servers are pinned to core 0, load tools to core 1. Within each
repetition the order of the servers alternates.

- ssehub: `ssehub --data-dir DIR` (retention raised so that nothing is
  trimmed: the append path), loaded by `examples/pubload.rs`: N keep-alive
  connections, each POSTing a 1,000-byte text/plain body and waiting for
  its `201` (as `oha -c N`); with 16 topics each request goes to a topic
  drawn at random from t0..t15.
- Redis: `redis-server --appendonly yes --appendfsync always`, loaded by
  `redis-benchmark -c N -P 1 XADD t * d <the same 1,000 bytes>` (16 topics:
  `-r 16` on key `t:__rand_int__`). Its request count is calibrated so that
  a cell lasts about as long as ssehub's.
- With --oha, one-topic cells are also measured with oha (`oha -c N -m POST
  -d <body> -T text/plain`), a check that pubload is not the bound.
- With --syncs, ssehub and Redis run under `strace -f --seccomp-bpf -c -e
  trace=fsync,fdatasync` (only those calls stop): appends per sync.

Writes raw results as JSON (--json, default benches/results/vs-redis-<utc>.json)
and prints a Markdown table.
"""

import argparse
import datetime
import json
import os
import random
import re
import shutil
import signal
import statistics
import string
import subprocess
import sys
import time

from benchlib import free_port, log, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_CORE, CLIENT_CORE = "0", "1"
PAYLOAD_BYTES = 1000


def load_note():
    la = open("/proc/loadavg").read().split()[:3]
    try:
        cpu = open("/proc/pressure/cpu").readline().split()[1].split("=")[1]
    except OSError:
        cpu = "?"
    return {"loadavg": " ".join(la), "cpu_pressure_avg10": cpu,
            "at": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")}


def payload(n=PAYLOAD_BYTES, seed=1):
    r = random.Random(seed)
    return "".join(r.choice(string.ascii_letters + string.digits) for _ in range(n))


def cpu_s(pid):
    try:
        f = open(f"/proc/{pid}/stat").read()
    except OSError:
        return 0.0
    f = f[f.rfind(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def strace_prefix(out):
    return ["strace", "-f", "--seccomp-bpf", "-c", "-e", "trace=fsync,fdatasync", "-o", out]


def strace_syncs(path):
    """Sync calls counted by `strace -c`."""
    n = 0
    try:
        for line in open(path):
            f = line.split()
            if f and f[-1] in ("fsync", "fdatasync"):
                n += int(f[3])
    except OSError:
        return None
    return n


class Server:
    proc = None
    trace = None

    def server_pid(self):
        if self.trace is None:
            return self.proc.pid
        # strace's child.
        try:
            kids = open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read().split()
            return int(kids[0])
        except (OSError, IndexError):
            return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.server_pid(), signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return strace_syncs(self.trace) if self.trace else None


class Ssehub(Server):
    def __init__(self, binary, data_dir, trace=None):
        self.binary, self.data_dir, self.trace = binary, data_dir, trace

    def start(self):
        cmd = ["taskset", "-c", SERVER_CORE, self.binary, "--listen", "127.0.0.1:0", "--tick", "0",
               "--data-dir", self.data_dir, "--retain-events", "100000000", "--retain-bytes", str(1 << 40),
               "--max-disk-bytes", str(1 << 40)]
        if self.trace:
            cmd = ["taskset", "-c", SERVER_CORE] + strace_prefix(self.trace) + cmd[3:]
        self.proc = subprocess.Popen(cmd, env=dict(os.environ, RUST_LOG="warn"), stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line or "")
        if not m:
            self.proc.kill()
            raise RuntimeError(f"ssehub did not start: {line!r}")
        self.port = int(m.group(1))
        return self


class Redis(Server):
    def __init__(self, data_dir, trace=None):
        self.data_dir, self.trace = data_dir, trace

    def start(self):
        self.port = free_port()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
               "--appendfsync", "always", "--save", "", "--dir", self.data_dir, "--logfile", "",
               "--loglevel", "warning"]
        if self.trace:
            cmd = strace_prefix(self.trace) + cmd
        self.proc = subprocess.Popen(["taskset", "-c", SERVER_CORE] + cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)
        time.sleep(0.1)
        return self


def pubload(o, port, conc, topics):
    cmd = ["taskset", "-c", CLIENT_CORE, o.pubload, "--url", f"http://127.0.0.1:{port}/events/{{topic}}",
           "--topic", "t", "--topics", str(topics), "--connections", str(conc), "--seconds", str(o.seconds),
           "--warmup", str(o.warmup), "--body-bytes", str(PAYLOAD_BYTES)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def oha(port, conc, data, seconds):
    cmd = ["taskset", "-c", CLIENT_CORE, "oha", "--no-tui", "--output-format", "json", "-z", f"{seconds}s",
           "-c", str(conc), "-m", "POST", "-d", data, "-T", "text/plain", f"http://127.0.0.1:{port}/events/t"]
    r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    codes = r.get("statusCodeDistribution", {})
    bad = {c: n for c, n in codes.items() if not c.startswith("2")}
    if bad:
        raise RuntimeError(f"oha got non-2xx answers {bad}")
    ok = sum(codes.values())
    lat = r.get("latencyPercentiles", {})
    return {"requests": ok, "seconds": r["summary"]["total"], "rps": ok / r["summary"]["total"],
            "p50_ms": (lat.get("p50") or 0) * 1e3, "p99_ms": (lat.get("p99") or 0) * 1e3}


def redis_bench(port, conc, n, data, topics):
    key = "t" if topics == 1 else "t:__rand_int__"
    cmd = ["taskset", "-c", CLIENT_CORE, "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(conc),
           "-n", str(n), "-P", "1", "--csv"]
    if topics > 1:
        cmd += ["-r", str(topics)]
    cmd += ["XADD", key, "*", "d", data]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    line = [ln for ln in out.splitlines() if ln.startswith('"') and not ln.startswith('"test"')][-1]
    f = [x.strip('"') for x in line.rsplit(",", 7)]
    # "test","rps","avg","min","p50","p95","p99","max"
    return {"requests": n, "seconds": wall, "rps": float(f[1]), "p50_ms": float(f[4]), "p99_ms": float(f[6])}


def cell(o, kind, conc, topics, rep, calib):
    d = os.path.join(o.data, f"{kind}-c{conc}-t{topics}-r{rep}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    trace = os.path.join(o.data, f"strace-{kind}.txt") if o.syncs else None
    if trace and os.path.exists(trace):
        os.unlink(trace)
    data = payload()
    try:
        if kind == "redis":
            srv = Redis(d, trace).start()
            k = (conc, topics)
            if k not in calib:
                probe = redis_bench(srv.port, conc, 2000 if conc == 1 else 20000, data, topics)
                calib[k] = max(2000, int(probe["rps"] * o.seconds))
                # Under strace the probe's syncs count too.
                probed = probe["requests"]
            else:
                probed = 0
            c0 = cpu_s(srv.server_pid())
            r = redis_bench(srv.port, conc, calib[k], data, topics)
            r["answered_total"] = r["requests"] + probed
        else:
            srv = Ssehub(o.baseline if kind == "before" else o.ssehub, d, trace).start()
            c0 = cpu_s(srv.server_pid())
            r = oha(srv.port, conc, data, o.seconds) if kind == "ssehub-oha" else pubload(o, srv.port, conc, topics)
        # Whole-run CPU (warm-up included for pubload) per request measured.
        r["server_cpu_s"] = cpu_s(srv.server_pid()) - c0
        syncs = srv.stop()
        if syncs:
            r["syncs"] = syncs
            r["appends_per_sync"] = round(r.get("answered_total", r["requests"]) / syncs, 1)
    finally:
        try:
            srv.stop()
        except Exception:
            pass
        shutil.rmtree(d, ignore_errors=True)
    r.update(kind=kind, conc=conc, topics=topics, rep=rep)
    log(f"{kind:10} c={conc:<3} topics={topics:<3} rep {rep}: {r['rps']:>9,.0f}/s  p50 {r['p50_ms']:.2f} ms  "
        f"p99 {r['p99_ms']:.2f} ms" + (f"  {r.get('appends_per_sync')} per sync" if o.syncs else ""))
    return r


def table(results, o):
    def med(kind, conc, topics, field="rps"):
        xs = [r[field] for r in results if r["kind"] == kind and r["conc"] == conc and r["topics"] == topics
              and r.get(field) is not None]
        return statistics.median(xs) if xs else None

    head = ("| topics | publishers | ssehub --data-dir (/s) | Redis always (/s) | ssehub / Redis | "
            "ratios per rep | p99 ssehub / Redis (ms) |")
    rows = [head, "|---|---:|---:|---:|---:|---|---:|"]
    if o.baseline:
        rows[0] += " --baseline (/s, and / Redis) |"
        rows[1] += "---:|"
    for topics in o.topics:
        for conc in o.concs:
            s, r = med("ssehub", conc, topics), med("redis", conc, topics)
            per = []
            for rep in range(o.reps):
                a = [x["rps"] for x in results if x["kind"] == "ssehub" and x["conc"] == conc
                     and x["topics"] == topics and x["rep"] == rep]
                b = [x["rps"] for x in results if x["kind"] == "redis" and x["conc"] == conc
                     and x["topics"] == topics and x["rep"] == rep]
                if a and b:
                    per.append(f"{a[0] / b[0]:.2f}")
            ratio = f"**{s / r:.2f}**" if s and r else "n/a"
            rows.append(f"| {topics} | {conc} | {s:,.0f} | {r:,.0f} | {ratio} | {' '.join(per)} | "
                        f"{med('ssehub', conc, topics, 'p99_ms'):.2f} / {med('redis', conc, topics, 'p99_ms'):.2f} |"
                        + (f" {med('before', conc, topics):,.0f} ({med('before', conc, topics) / r:.2f}) |"
                           if o.baseline else ""))
    if o.oha:
        rows.append("")
        rows.append("oha on ssehub, one topic (a check on the load tool): " + ", ".join(
            f"{c}: {med('ssehub-oha', c, 1):,.0f}/s" for c in o.concs if med("ssehub-oha", c, 1)))
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--concs", default="1,16,64")
    ap.add_argument("--topics", default="1,16")
    ap.add_argument("--oha", action="store_true", help="also load ssehub with oha (one topic)")
    ap.add_argument("--baseline", default=None, help="another ssehub binary (say, before a change) in the same cells")
    ap.add_argument("--syncs", action="store_true", help="count syncs with strace")
    ap.add_argument("--target", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    ap.add_argument("--ssehub", default=None, help="the ssehub binary (default: this tree's release build)")
    ap.add_argument("--data", default=None, help="data directories (default target/vs-redis-data)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--skip-build", action="store_true")
    o = ap.parse_args()
    o.concs = [int(c) for c in o.concs.split(",")]
    o.topics = [int(t) for t in o.topics.split(",")]
    o.data = os.path.abspath(o.data or os.path.join(o.target, "vs-redis-data"))
    os.makedirs(o.data, exist_ok=True)
    o.ssehub = o.ssehub or os.path.join(o.target, "release/ssehub")
    o.pubload = os.path.join(o.target, "release/examples/pubload")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%MZ")
    o.json = o.json or os.path.join(ROOT, "benches", "results", f"vs-redis-{stamp}.json")
    if not o.skip_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "ssehub", "--example", "pubload"], check=True,
                       cwd=ROOT)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    meta = {"command": " ".join(["python3", "benches/vs_redis.py"] + sys.argv[1:]), "rev": rev + ("+" if dirty else ""),
            "redis": redis_v, "seconds": o.seconds, "reps": o.reps, "payload_bytes": PAYLOAD_BYTES,
            "data_dir": o.data, "load": [load_note()]}
    log("load:", meta["load"][0])
    results, calib = [], {}
    kinds = ["ssehub", "redis"] + (["before"] if o.baseline else []) + (["ssehub-oha"] if o.oha else [])
    for rep in range(o.reps):
        for topics in o.topics:
            for conc in o.concs:
                order = kinds if rep % 2 == 0 else list(reversed(kinds))
                for kind in order:
                    if kind == "ssehub-oha" and topics != 1:
                        continue
                    results.append(cell(o, kind, conc, topics, rep, calib))
        meta["load"].append(load_note())
    log("load:", meta["load"][-1])
    os.makedirs(os.path.dirname(o.json), exist_ok=True)
    md = table(results, o)
    json.dump({"meta": meta, "results": results, "table": md}, open(o.json, "w"), indent=1)
    print(md)
    print(f"\nraw: {os.path.relpath(o.json, ROOT)}; load {meta['load']}")


if __name__ == "__main__":
    main()
