#!/usr/bin/env python3
"""Charts of the bench results, as hand-written SVG (stdlib only).

    python3 benches/charts.py benches/results/2026-11-24-peers.json [...]

`draw(path)` reads one results file and writes its suite's charts next to
it (`<date>-<suite>-<chart>.svg`); the bench scripts call it after a run
(benchlib.write_results). The suite is the file name's last part:
`peers` (benches/run.py), `durable` (benches/durable.py). Suites without
charts are skipped.
"""

import math
import os
import statistics
import sys
from html import escape

# ssehub first, then the peers; the same colour for a series everywhere.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'


def _num(v):
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e4:
        return f"{v / 1e3:.3g}k"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:.3g}"
    return f"{v:.2g}"


def _short(v):
    """A bar's label: three significant digits at most."""
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e3:
        return f"{v / 1e3:.3g}k"
    return f"{v:.3g}"


def _ticks(lo, hi, log):
    """Axis ticks between lo and hi: powers of 10 (log) or 4-6 round steps."""
    if log:
        first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        return [10 ** e for e in range(first, max(last, first + 1) + 1)]
    raw = hi / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.ceil(hi / step)) + 1)]


class Panel:
    """One plot area: a grouped bar chart or a line chart, drawn into
    (x, y, w, h) of a figure."""

    def __init__(self, title, groups, series, values, unit, kind="bar", log=False):
        # values[s][g]: the figure of series s in group g (None: not measured).
        self.title, self.groups, self.series, self.values = title, groups, series, values
        self.unit, self.kind, self.log = unit, kind, log

    def svg(self, x, y, w, h):
        out = []
        left, right, top, bottom = 62, 10, 26, 46
        px, py, pw, ph = x + left, y + top, w - left - right, h - top - bottom
        vals = [v for row in self.values for v in row if v is not None and v > 0]
        if not vals:
            return (f'<text x="{x + w / 2:.1f}" y="{y + h / 2:.1f}" text-anchor="middle" font-size="12" '
                    f'fill="#888">{escape(self.title)}: not measured in this run</text>')
        hi = max(vals) * (1.15 if not self.log else 1.0)
        lo = min(vals) if self.log else 0
        ticks = _ticks(lo, hi, self.log)
        t0, t1 = ticks[0], ticks[-1]

        def ypos(v):
            if self.log:
                return py + ph - (math.log10(v) - math.log10(t0)) / (math.log10(t1) - math.log10(t0)) * ph
            return py + ph - (v - t0) / (t1 - t0) * ph

        if self.title:
            out.append(f'<text x="{x + w / 2:.1f}" y="{y + 16}" text-anchor="middle" font-size="13" '
                       f'font-weight="bold">{escape(self.title)}</text>')
        for t in ticks:
            ty = ypos(t)
            out.append(f'<line x1="{px}" y1="{ty:.1f}" x2="{px + pw}" y2="{ty:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{px - 5}" y="{ty + 4:.1f}" text-anchor="end" font-size="11">{_num(t)}</text>')
        out.append(f'<text x="{x + 12}" y="{py + ph / 2:.1f}" font-size="11" text-anchor="middle" '
                   f'transform="rotate(-90 {x + 12} {py + ph / 2:.1f})">{escape(self.unit)}</text>')
        out.append(f'<line x1="{px}" y1="{py + ph}" x2="{px + pw}" y2="{py + ph}" stroke="#333"/>')
        gw = pw / len(self.groups)
        for gi, g in enumerate(self.groups):
            gx = px + gi * gw
            for li, line in enumerate(g.split("\n")):
                out.append(f'<text x="{gx + gw / 2:.1f}" y="{py + ph + 15 + 13 * li}" text-anchor="middle" '
                           f'font-size="11">{escape(line)}</text>')
        if self.kind == "bar":
            n = len(self.series)
            bw = gw * 0.8 / n
            for si in range(n):
                for gi in range(len(self.groups)):
                    v = self.values[si][gi]
                    bx = px + gi * gw + gw * 0.1 + si * bw
                    if v is None:
                        out.append(f'<text x="{bx + bw / 2:.1f}" y="{py + ph - 4}" text-anchor="middle" '
                                   f'font-size="9" fill="#888">n/a</text>')
                        continue
                    top_y = ypos(max(v, t0)) if self.log else ypos(v)
                    out.append(f'<rect x="{bx:.1f}" y="{top_y:.1f}" width="{bw * 0.92:.1f}" '
                               f'height="{py + ph - top_y:.1f}" fill="{PALETTE[si % len(PALETTE)]}">'
                               f'<title>{escape(self.series[si])}, {escape(self.groups[gi])}: {v:,.4g}</title></rect>')
                    out.append(f'<text x="{bx + bw * 0.46:.1f}" y="{top_y - 3:.1f}" text-anchor="middle" '
                               f'font-size="9">{_short(v)}</text>')
        else:
            for si in range(len(self.series)):
                pts = [(px + gi * gw + gw / 2, ypos(v)) for gi, v in enumerate(self.values[si]) if v]
                colour = PALETTE[si % len(PALETTE)]
                out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                           + " ".join(f"{a:.1f},{b:.1f}" for a, b in pts) + '"/>')
                for a, b in pts:
                    out.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{colour}"/>')
        return "\n".join(out)


def figure(title, panels, series, cols=None, panel_w=420, panel_h=260, note=None):
    """An SVG of panels on a grid, one legend of the series on top."""
    cols = cols or len(panels)
    rows = math.ceil(len(panels) / cols)
    head, foot = 52, (22 if note else 6)
    w, h = cols * panel_w, head + rows * panel_h + foot
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" {FONT}>',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>']
    step = max((len(s) for s in series), default=0) * 7 + 34
    lx = w / 2 - len(series) * step / 2
    for si, s in enumerate(series):
        out.append(f'<rect x="{lx + si * step:.1f}" y="32" width="12" height="12" fill="{PALETTE[si % len(PALETTE)]}"/>')
        out.append(f'<text x="{lx + si * step + 16:.1f}" y="43" font-size="12">{escape(s)}</text>')
    for i, p in enumerate(panels):
        out.append(p.svg((i % cols) * panel_w, head + (i // cols) * panel_h, panel_w, panel_h))
    if note:
        out.append(f'<text x="8" y="{h - 7}" font-size="10" fill="#555">{escape(note)}</text>')
    out.append("</svg>\n")
    return "\n".join(out)


# ---------------------------------------------------------------- suites ----

def _dig(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k)
    return d


def peers(res, source):
    """ssehub against axum and nginx+Nchan (benches/run.py)."""
    servers = [s for s in ("ssehub", "axum", "nchan") if res.get(s)]
    if not servers:
        return {}
    fixed = [("latency_100x1000", "100 subs x 1,000 ev/s"), ("latency_2000x20", "2,000 subs x 20 ev/s"),
             ("rate_2000x50", "2,000 subs x 50 ev/s"), ("rate_10000x10", "10,000 subs x 10 ev/s")]
    pcts = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max")]
    lat = [Panel(label, [p for _, p in pcts], servers,
                 [[_dig(res[s], sc, "latency_us", k) for k, _ in pcts] for s in servers],
                 "µs (log)", kind="line", log=True) for sc, label in fixed]
    sat = [("saturation_100", "100 subs\nflat out"), ("saturation_2000", "2,000 subs\nflat out"),
           ("saturation_10000", "10,000 subs\nflat out")]
    cpu_groups = [(sc, label.replace(" subs x ", " x\n")) for sc, label in fixed] + sat
    cpu = Panel("", [g for _, g in cpu_groups], servers,
                [[_dig(res[s], sc, "server_us_per_delivery") for sc, _ in cpu_groups] for s in servers],
                "server CPU µs / delivery")
    idle = Panel("", ["10,000 idle", "15,000 idle"], servers,
                 [[_dig(res[s], sc, "bytes_per_connection") for sc in ("idle_10000", "idle_15000")]
                  for s in servers], "bytes RSS / connection")
    note = f"from {source}"
    return {
        "latency": figure("Publish-to-receive latency at a fixed rate (lower is better)", lat, servers, cols=2,
                          note=note),
        "cpu": figure("Fan-out: server CPU per delivery (lower is better)", [cpu], servers, panel_w=900, panel_h=300, note=note),
        "idle": figure("Server memory per idle subscriber (lower is better)", [idle], servers, panel_w=520, panel_h=280, note=note),
    }


def durable(res, source):
    """Durable publishing: ssehub --data-dir against Redis AOF (benches/durable.py)."""
    cells = _dig(res, "publish", "cells")
    if not cells:
        return {}
    kinds = [("disk", "ssehub --data-dir"), ("redis-always", "Redis always"), ("redis-everysec", "Redis everysec"),
             ("mem", "ssehub memory")]

    def med(key):
        runs = cells.get(key) or []
        return statistics.median(r["rps"] for r in runs) if runs else None

    panels = []
    for topics in (1, 16):
        groups = [f"{c} conn" for c in (1, 16, 64)]
        panels.append(Panel(f"{topics} topic{'s' if topics > 1 else ''}: publishes acknowledged / s", groups,
                            [k[1] for k in kinds],
                            [[med(f"{k}|{topics}|{c}") for c in (1, 16, 64)] for k, _ in kinds], "publishes / s"))
    return {"publish": figure("Durable publish, 1 KB bodies (higher is better)", panels, [k[1] for k in kinds],
                              cols=2, panel_w=460, note=f"from {source}; Redis everysec may lose the last second")}


SUITES = {"peers": peers, "durable": durable}


def draw(path):
    """Writes the charts of one results file next to it; returns their paths."""
    import json
    stem = os.path.splitext(path)[0]
    suite = os.path.basename(stem).split("-")[-1]
    fn = SUITES.get(suite)
    if not fn:
        return []
    with open(path) as f:
        res = json.load(f)
    out = []
    for name, svg in fn(res, os.path.basename(path)).items():
        p = f"{stem}-{name}.svg"
        with open(p, "w") as f:
            f.write(svg)
        out.append(p)
    return out


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    for path in argv:
        for p in draw(path):
            print("wrote", p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
