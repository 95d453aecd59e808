"""What the bench scripts (run.py, durable.py, multi.py) share: ports,
processes, the machine's description, building and running sseload, and
writing results under benches/results/.

A run writes, per suite, `benches/results/<YYYY-MM-DD>-<suite>.json` (the
raw numbers, with a `meta` entry: date, command, machine, commit), the
full report as `.md` next to it, and the charts (`charts.py`) as `.svg`.
BENCHMARKS.md is kept by hand: its tables quote those reports.
Stdlib only.
"""

import datetime
import glob
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benches", "results")
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
# Servers run pinned to one core, the load tools to the other.
SERVER_CORE, CLIENT_CORE = "0", "1"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, **kw):
    """Runs a command, logged on stderr, failing on a non-zero exit."""
    line = " ".join(cmd)
    log("$", line if len(line) < 300 else line[:300] + " ...")
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------- ports ----

def free_port():
    """A port nothing listens on now (the kernel's pick on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    """Waits until something accepts on 127.0.0.1:port."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


# ------------------------------------------------------------ processes ----

def start(cmd, port=None, env=None, core=SERVER_CORE, **kw):
    """Starts a server pinned to `core`; with `port`, waits until it listens."""
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    proc = subprocess.Popen(["taskset", "-c", core, *cmd], env=env, **kw)
    if port is not None:
        try:
            wait_port(port)
        except RuntimeError:
            stop(proc)
            raise
    return proc


def stop(proc, sig=signal.SIGTERM, timeout=30):
    """Stops a process started by `start`: `sig`, then SIGKILL after
    `timeout` seconds. Returns the seconds it took to exit (None if it
    had already exited)."""
    if proc is None or proc.poll() is not None:
        return None
    t0 = time.perf_counter()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.perf_counter() - t0


def load_note():
    """The machine's load now: the machine is shared, runs record it."""
    la = open("/proc/loadavg").read().split()[:3]
    try:
        cpu = open("/proc/pressure/cpu").readline().split()[1].split("=")[1]
    except OSError:
        cpu = "?"
    return {"loadavg": " ".join(la), "cpu_pressure_avg10": cpu,
            "at": datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")}


# -------------------------------------------------------------- machine ----

def git_short(tree=ROOT):
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                          text=True).stdout.strip()


def tool_version(cmd):
    """First line a tool prints about its version ("missing" if absent)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True)
    except OSError:
        return "missing"
    return ((p.stdout or p.stderr).strip().splitlines() or ["?"])[0]


def machine(*tools):
    """The machine in one line: CPU, cores, memory, kernel, ssehub's commit,
    and the version line of each tool given (`["nginx", "-v"]`, ...)."""
    cpu = "unknown"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(open("/proc/meminfo").readline().split()[1]) // 1024 // 1024
    parts = [f"{cpu}, {os.cpu_count()} cores, {mem} GiB, Linux {platform.release()}"]
    parts += [tool_version(t) for t in tools]
    parts.append(f"ssehub {git_short()}")
    return "; ".join(parts)


# -------------------------------------------------------------- sseload ----

def build(target=TARGET, cwd=ROOT):
    """Builds the release ssehub and the sseload bench binary; returns
    (ssehub path, sseload path). sseload is a `[[bench]]` target, so its
    file name carries a hash: cargo's JSON messages say where it is."""
    run(["cargo", "build", "--release", "--bin", "ssehub"], cwd=cwd, env=dict(os.environ, CARGO_TARGET_DIR=target))
    out = run(["cargo", "build", "--release", "--bench", "sseload", "--message-format=json"], cwd=cwd,
              env=dict(os.environ, CARGO_TARGET_DIR=target), capture_output=True, text=True).stdout
    for line in out.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "sseload" \
                and m.get("executable"):
            return os.path.join(target, "release/ssehub"), m["executable"]
    raise RuntimeError("cargo built no sseload executable")


def built(target=TARGET):
    """(ssehub, sseload) as the last build left them, for --skip-build."""
    exes = [p for p in glob.glob(os.path.join(target, "release/deps/sseload-*"))
            if re.fullmatch(r"sseload-[0-9a-f]+", os.path.basename(p)) and os.access(p, os.X_OK)]
    if not exes:
        raise RuntimeError(f"no sseload under {target}/release/deps: build it (drop --skip-build)")
    return os.path.join(target, "release/ssehub"), max(exes, key=os.path.getmtime)


def sseload(binary, sub, publish, pids, *mode, topic=None, extra=()):
    """Runs sseload on the client core against `sub`/`publish` URL
    templates; returns its JSON report."""
    cmd = ["taskset", "-c", CLIENT_CORE, binary, "--sub", sub, "--publish", publish]
    if topic is not None:
        cmd += ["--topic", topic]
    for pid in pids:
        cmd += ["--server-pid", str(pid)]
    out = run(cmd + list(extra) + list(mode), capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -------------------------------------------------------------- results ----

def today():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def result_path(suite, ext="json", date=None, out_dir=RESULTS):
    """benches/results/<date>-<suite>.<ext>."""
    return os.path.join(out_dir, f"{date or today()}-{suite}.{ext}")


def write_results(suite, results, command, machine_line, report=None, out_dir=RESULTS):
    """Writes the raw results (with their `meta`) and, if given, the
    report; draws the suite's charts. Returns the JSON file's path."""
    os.makedirs(out_dir, exist_ok=True)
    path = result_path(suite, out_dir=out_dir)
    doc = dict(results)
    doc["meta"] = {"date": now(), "command": command, "machine": machine_line}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True, default=str)
        f.write("\n")
    log("wrote", path)
    if report is not None:
        md = result_path(suite, "md", out_dir=out_dir)
        with open(md, "w") as f:
            f.write(report)
        log("wrote", md)
    import charts  # benches/charts.py, beside this module
    for svg in charts.draw(path):
        log("wrote", svg)
    return path


def load_results(path):
    """A results file, with its `meta` (empty for files written before it)."""
    with open(path) as f:
        doc = json.load(f)
    doc.setdefault("meta", {})
    return doc


# --------------------------------------------------------------- format ----

def dig(d, *keys):
    """d[k1][k2]..., None where a level is missing."""
    for k in keys:
        if d is None:
            return None
        d = d.get(k)
    return d


def fmt(v, unit=""):
    """A figure for a table: thousands separated, two decimals under 100."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}{unit}"
        return f"{v:.2f}{unit}"
    return f"{v:,}{unit}"
