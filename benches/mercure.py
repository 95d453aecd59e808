#!/usr/bin/env python3
"""ssehub's Mercure hub against its native API on the same load, side by
side in one run (issue 17, "Measure").

    python3 benches/mercure.py                        # 2 reps x 10 s, ~3.5 minutes
    python3 benches/mercure.py --reps 1 --seconds 3 --quick   # a smoke test
    python3 benches/mercure.py --skip-build

Two layouts, each through both APIs of the same binary, started with the
same command line (`--mercure-jwt-key K --mercure-anonymous`, the rest as
benches/run.py: `--tick 0 --buffer 100000 ...`):

- **template**: 2,000 subscribers. Mercure: each subscribes once to the
  URI template `https://example.com/bench/{id}` and the events are
  published to `https://example.com/bench/0` .. `/49` in turn (every
  subscriber gets every event). Native: 2,000 subscribers of one topic
  (`GET /events/bench`). 50 events/s.
- **exact**: 100 subscribers on each of 50 exact topics (5,000 streams);
  event k goes to topic k mod 50, so to 100 streams. Mercure:
  `?topic=https://example.com/bench/<n>`; native: `GET /events/bench<n>`.
  200 events/s.

Each cell is a fresh server: a `fanout` run (sseload: server CPU µs per
delivery, publish-to-receive latency) and, on another fresh server, an
`idle` run (server RSS per connection once all streams are open). Within
each repetition the order of the two APIs alternates. Mercure updates are
published with sseload's `--publish-form` (a form with `topic` and
`data`) and `--publish-header 'Authorization: Bearer <JWT>'`, the JWT
(HS256, `{"mercure":{"publish":["*"]}}`) made here with `hmac`.

Servers are pinned to core 0, sseload to core 1. Writes
benches/results/<date>-mercure.json (raw, every run) and .md (the table),
and prints the table.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import statistics
import sys

import benchlib as bl
from benchlib import fmt, free_port, log

KEY = "ssehub-bench-mercure-key"
BASE_TOPIC = "https://example.com/bench/"
ENC_BASE = "https%3A%2F%2Fexample.com%2Fbench%2F"

LAYOUTS = {
    "template": {"subscribers": 2000, "rate": 50,
                 "label": "2,000 subscribers, one URI template / one topic"},
    "exact": {"subscribers": 100, "topics": 50, "rate": 200,
              "label": "100 subscribers x 50 exact topics (5,000 streams)"},
}


def jwt(key, claims):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def start_server(ssehub):
    port = free_port()
    cmd = [ssehub, "--listen", f"127.0.0.1:{port}", "--tick", "0", "--buffer", "100000",
           "--max-topic-bytes", str(64 << 20), "--max-connections", "20000",
           "--mercure-jwt-key", KEY, "--mercure-anonymous"]
    return port, bl.start(cmd, port=port, env=dict(os.environ, RUST_LOG="warn"))


def load_args(api, layout, port):
    """sseload's URL and topic options for one API and layout."""
    base = f"http://127.0.0.1:{port}"
    lay = LAYOUTS[layout]
    if api == "native":
        topics = lay.get("topics", 1)
        return (base + "/events/{topic}", base + "/events/{topic}", "bench",
                ["--topics", str(topics)])
    hub = base + "/.well-known/mercure"
    extra = ["--publish-form", BASE_TOPIC + "{topic}",
             "--publish-header", "Authorization: Bearer " + jwt(KEY, {"mercure": {"publish": ["*"]}})]
    if layout == "template":
        # One stream per subscriber (--multi: the URL has no {topic}); the
        # events go to topics 0..49, all matched by the template.
        return (hub + "?topic=" + ENC_BASE + "%7Bid%7D", hub, "",
                extra + ["--topics", "50", "--multi"])
    return (hub + "?topic=" + ENC_BASE + "{topic}", hub, "", extra + ["--topics", str(lay["topics"])])


def cell(ssehub, sseload, api, layout, seconds, hold):
    lay = LAYOUTS[layout]
    out = {"load_before": bl.load_note()}
    for mode in ("fanout", "idle"):
        port, proc = start_server(ssehub)
        try:
            sub, pub, topic, extra = load_args(api, layout, port)
            if mode == "fanout":
                args = ["fanout", "--subscribers", str(lay["subscribers"]), "--rate", str(lay["rate"]),
                        "--seconds", str(seconds)]
            else:
                args = ["idle", "--subscribers", str(lay["subscribers"]), "--hold", str(hold)]
            out[mode] = bl.sseload(sseload, sub, pub, [proc.pid], *args, topic=topic, extra=extra)
            log(api, layout, mode, json.dumps(out[mode]))
        finally:
            bl.stop(proc, timeout=15)
    out["load_after"] = bl.load_note()
    return out


METRICS = [
    ("server CPU µs / delivery", ("fanout", "server_us_per_delivery"), 1.5),
    ("delivery p50 latency (µs)", ("fanout", "latency_us", "p50"), None),
    ("delivery p99 latency (µs)", ("fanout", "latency_us", "p99"), None),
    ("idle server RSS bytes / connection", ("idle", "bytes_per_connection"), 1.5),
    ("deliveries / s", ("fanout", "deliveries_per_s"), None),
    ("lost + duplicated + out of order", ("fanout", "lost_dup_ooo"), None),
    ("sseload CPU % (the client)", ("fanout", "client_cpu_pct"), None),
]


def report(res):
    meta = res["meta"]
    lines = [f"Run {meta['date']}, `{meta['command']}`, {meta['reps']} reps x {meta['seconds']} s "
             f"(fan-out), idle held {meta['hold']} s.",
             f"Machine: {meta['machine']}.", "",
             "| layout | metric | native | Mercure | Mercure / native (mean) | per rep | goal |",
             "|---|---|---:|---:|---:|---|---|"]
    for layout, lay in LAYOUTS.items():
        rate = lay["rate"]
        label = f"{lay['label']}, {rate} events/s"
        for name, keys, goal in METRICS:
            nat = [bl.dig(r, *keys) for r in res["runs"][layout]["native"]]
            mer = [bl.dig(r, *keys) for r in res["runs"][layout]["mercure"]]
            if None in nat or None in mer:
                continue
            mn, mm = statistics.mean(nat), statistics.mean(mer)
            ratio = f"{mm / mn:.2f}" if mn else "n/a"
            per = ", ".join(f"{m / n:.2f}" if n else "n/a" for n, m in zip(nat, mer))
            verdict = ""
            if goal and mn:
                verdict = f"<= {goal}: " + ("met" if mm / mn <= goal else "**not met**")
            lines.append(f"| {label} | {name} | {fmt(float(mn))} | {fmt(float(mm))} | {ratio} | {per} | {verdict} |")
            label = ""
    connected = []
    for layout in LAYOUTS:
        for api in ("native", "mercure"):
            for r in res["runs"][layout][api]:
                for mode in ("fanout", "idle"):
                    c = r[mode].get("connections", r[mode].get("connected"))
                    connected.append(f"{layout}/{api}/{mode}: {c} streams, {r[mode]['failed']} failed")
    lines += ["", "Streams held per run: " + "; ".join(sorted(set(connected))) + "."]
    cells = sorted((r["load_before"]["at"], f"{layout}/{api} {r['load_before']['cpu_pressure_avg10']}%"
                    f" -> {r['load_after']['cpu_pressure_avg10']}%")
                   for layout, apis in res["runs"].items() for api, rs in apis.items() for r in rs)
    lines.append("CPU pressure (`/proc/pressure/cpu` some avg10) at the start and end of each cell, in run "
                 "order: " + "; ".join(f"{at} {c}" for at, c in cells) + ".")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--hold", type=float, default=10, help="seconds the idle streams are held")
    ap.add_argument("--quick", action="store_true", help="a tenth of the subscribers")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--out-dir", default=bl.RESULTS)
    args = ap.parse_args()
    if args.quick:
        for lay in LAYOUTS.values():
            lay["subscribers"] = max(1, lay["subscribers"] // 10)
    ssehub, sseload = bl.built() if args.skip_build else bl.build()
    runs = {layout: {"native": [], "mercure": []} for layout in LAYOUTS}
    for rep in range(args.reps):
        for layout in LAYOUTS:
            order = ("native", "mercure") if rep % 2 == 0 else ("mercure", "native")
            for api in order:
                runs[layout][api].append(cell(ssehub, sseload, api, layout, args.seconds, args.hold))
    command = "python3 " + " ".join(["benches/mercure.py", *sys.argv[1:]])
    machine = bl.machine()
    res = {"runs": runs, "layouts": LAYOUTS,
           "meta": {"date": bl.now(), "command": command, "machine": machine, "reps": args.reps,
                    "seconds": args.seconds, "hold": args.hold}}
    table = report(res)
    bl.write_results("mercure", {"runs": runs, "layouts": LAYOUTS, "reps": args.reps, "seconds": args.seconds,
                                 "hold": args.hold}, command, machine, "# Mercure vs the native API\n\n" + table,
                     out_dir=args.out_dir)
    print(table)


if __name__ == "__main__":
    main()
