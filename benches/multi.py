#!/usr/bin/env python3
"""What many topics on one stream cost, against one stream per topic, and
what the single-topic path costs before and after a change.

    python3 benches/multi.py                      # builds, runs, writes benches/results/<date>-multi.{json,md}
    python3 benches/multi.py --baseline OLD_SSEHUB_BINARY   # adds the single-topic before/after

A client that follows 64 topics either opens one stream of 64 topics
(`GET /events?topic=bench0&...&topic=bench63`) or 64 streams of one topic.
Either way it gets every event once; the events are spread over the 64
topics (event k to topic (k - 1) % 64). Measured with `benches/sseload/main.rs`
(`--topics 64`, with and without `--multi`): server CPU per delivery under
a publisher at a fixed rate and flat out, latency, and server RSS per idle
client. The server is pinned to core 0, sseload to core 1; fixed-rate runs
are repeated three times and the median (by server CPU per delivery) is
shown. Everything listens on 127.0.0.1.
"""

import argparse
import os
import urllib.request

import benchlib as bl
from benchlib import free_port

# Set by main(): where the build put them.
SSELOAD = SSEHUB = None



class Server:
    def __init__(self, binary):
        self.binary, self.port = binary, free_port()

    def __enter__(self):
        cmd = [self.binary, "--listen", f"127.0.0.1:{self.port}", "--tick", "0", "--buffer", "100000",
               "--max-topic-bytes", str(64 << 20), "--max-connections", "20000"]
        self.proc = bl.start(cmd, port=self.port, env=dict(os.environ, RUST_LOG="warn"))
        return self

    def __exit__(self, *exc):
        bl.stop(self.proc, timeout=10)


def sseload(server, topics, multi, *mode):
    base = f"http://127.0.0.1:{server.port}"
    sub = f"{base}/events?{{topics}}" if multi else f"{base}/events/{{topic}}"
    extra = ["--topics", str(topics)] + (["--multi"] if multi else [])
    return bl.sseload(SSELOAD, sub, f"{base}/events/{{topic}}", [server.proc.pid], *mode, extra=extra)


def median_run(binary, runs, topics, multi, *mode):
    results = []
    for _ in range(runs):
        with Server(binary) as s:
            results.append(sseload(s, topics, multi, *mode))
    results.sort(key=lambda r: r["server_us_per_delivery"])
    return results[len(results) // 2]


def fmt(v, digits=2):
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def multi_rows(quick):
    subs, rate, secs = (10, 640, 3) if quick else (50, 2000, 10)
    burst = 20_000 if quick else 200_000
    idle_subs = 20 if quick else 150
    runs = 1 if quick else 3
    rows = []
    fixed = {m: median_run(SSEHUB, runs, 64, m, "fanout", "--subscribers", str(subs), "--rate",
                           str(rate), "--seconds", str(secs)) for m in (True, False)}
    label = f"{subs} clients x 64 topics, {rate:,} ev/s spread over the topics"
    for key, name, d in [("server_us_per_delivery", "server CPU µs / delivery", 2),
                         ("latency_us.p50", "p50 latency (µs)", 0), ("latency_us.p99", "p99 latency (µs)", 0),
                         ("lost_dup_ooo", "lost + duplicated + out of order", 0),
                         ("connections", "connections", 0)]:
        rows.append((f"{label}: {name}", *(dig(fixed[m], key) for m in (True, False)), d))
    flat = {m: median_run(SSEHUB, 1, 64, m, "fanout", "--subscribers", str(subs), "--burst", str(burst))
            for m in (True, False)}
    label = f"{subs} clients x 64 topics, {burst:,} events flat out"
    for key, name, d in [("deliveries_per_s", "deliveries/s", 0),
                         ("server_us_per_delivery", "server CPU µs / delivery", 2),
                         ("lost_dup_ooo", "lost + duplicated + out of order", 0)]:
        rows.append((f"{label}: {name}", *(dig(flat[m], key) for m in (True, False)), d))
    idle = {}
    for m in (True, False):
        runs_idle = []
        for _ in range(runs):
            with Server(SSEHUB) as s:
                # The topics exist before the clients come (they are the
                # server's, not the clients'): one event each.
                for i in range(64):
                    req = urllib.request.Request(f"http://127.0.0.1:{s.port}/events/bench{i}",
                                                 data=b"x", method="POST")
                    urllib.request.urlopen(req).read()
                runs_idle.append(sseload(s, 64, m, "idle", "--subscribers", str(idle_subs), "--hold", "3"))
        runs_idle.sort(key=lambda r: r["bytes_per_subscriber"])
        idle[m] = runs_idle[len(runs_idle) // 2]
    label = f"{idle_subs} idle clients x 64 topics"
    rows.append((f"{label}: server RSS bytes / client", idle[True]["bytes_per_subscriber"],
                 idle[False]["bytes_per_subscriber"], 0))
    rows.append((f"{label}: connections", idle[True]["connected"], idle[False]["connected"], 0))
    return rows, {"fixed": fixed, "flat": flat, "idle": idle}


def single_rows(baseline, quick):
    subs, rate, secs = (20, 500, 3) if quick else (100, 1000, 10)
    idle_subs = 1000 if quick else 10_000
    runs = 1 if quick else 3
    rows, raw = [], {}
    for name, binary in [("before", baseline), ("after", SSEHUB)]:
        fixed = median_run(binary, runs, 1, False, "fanout", "--subscribers", str(subs), "--rate",
                           str(rate), "--seconds", str(secs))
        flat = median_run(binary, 1, 1, False, "fanout", "--subscribers", str(subs), "--burst", "200000")
        idles = []
        for _ in range(runs):
            with Server(binary) as s:
                idles.append(sseload(s, 1, False, "idle", "--subscribers", str(idle_subs), "--hold", "3"))
        idles.sort(key=lambda r: r["bytes_per_connection"])
        raw[name] = {"fixed": fixed, "flat": flat, "idle": idles[len(idles) // 2]}
    for label, key, sc, d in [
        (f"{subs} subs x {rate:,} ev/s: server CPU µs / delivery", "server_us_per_delivery", "fixed", 2),
        (f"{subs} subs x {rate:,} ev/s: p99 latency (µs)", "latency_us.p99", "fixed", 0),
        (f"{subs} subs flat out: deliveries/s", "deliveries_per_s", "flat", 0),
        (f"{subs} subs flat out: server CPU µs / delivery", "server_us_per_delivery", "flat", 3),
        (f"{idle_subs:,} idle: server RSS bytes / connection", "bytes_per_connection", "idle", 0),
    ]:
        rows.append((label, dig(raw["before"][sc], key), dig(raw["after"][sc], key), d))
    return rows, raw


def dig(d, key):
    for k in key.split("."):
        d = d[k]
    return d


def table(head, rows, flip=False):
    out = [f"| scenario | {head[0]} | {head[1]} | ratio |", "|---|---:|---:|---:|"]
    for label, a, b, d in rows:
        x, y = (b, a) if flip else (a, b)
        ratio = f"{x / y:.2f}" if y else "n/a"
        out.append(f"| {label} | {fmt(a, d)} | {fmt(b, d)} | {ratio} |")
    return "\n".join(out)


def main():
    global SSEHUB, SSELOAD
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--baseline", help="an ssehub binary built before the change, for the single-topic rows")
    ap.add_argument("--out-dir", default=bl.RESULTS, help="where the results and the report go")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    SSEHUB, SSELOAD = bl.built() if args.skip_build else bl.build()
    rows, raw = multi_rows(args.quick)
    cmd = "python3 benches/multi.py" + (" --quick" if args.quick else "") + \
        (" --baseline <ssehub built from the commit before>" if args.baseline else "")
    machine = bl.machine()
    text = ["## Many topics on one stream", "",
            f"Generated by `{cmd}` on {bl.now()}; see the script's docstring for the method.",
            f"Machine: {machine}. Raw numbers: the .json file of the same name.", "",
            "A client follows 64 topics with one stream of 64",
            "topics, or with 64 streams of one topic; either way it gets every event once.",
            "Ratios are one stream / 64 streams (below 1: the one stream costs less).", "",
            table(("one 64-topic stream", "64 single-topic streams"), rows), ""]
    if args.baseline:
        srows, sraw = single_rows(args.baseline, args.quick)
        raw["single"] = sraw
        text += ["The single-topic path before and after multi-topic streams, measured in",
                 "the same run (ratio: after / before, 1.00 is unchanged; the flat-out",
                 "deliveries/s move with the load of the machine, the CPU per delivery less):", "",
                 table(("before", "after"), srows, flip=True), ""]
    section = "\n".join(text)
    print(section)
    bl.write_results("multi", raw, cmd, machine, section, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
