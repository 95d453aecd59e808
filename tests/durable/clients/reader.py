"""Reads one Durable Stream live with the official Python client
(`durable-streams` on PyPI, pinned in requirements.txt) and prints what it
gets, for tests/durable/clients.rs. The counterpart of reader.mjs, with the
same arguments and the same output lines.

Usage: python reader.py '{"url": ..., "kind": "json"|"text",
  "live": "sse"|"long-poll", "offset": "-1", "end": <marker>}'

Prints JSON lines on stdout, one per event the client yields
(`StreamEvent`: the data of one response, or of one SSE data event once its
control event came, with `next_offset`, the client's checkpoint):
  {"items": [...], "offset": "..."}      (JSON streams)
  {"text": "...", "offset": "..."}       (text streams)
  {"restart": "why", "offset": "..."}    a session ended; a new one starts
                                         at `offset`, the last delivered
  {"done": true, "restarts": n, "requests": {"catch-up": n, "long-poll": n, "sse": n}}

The client (0.1.0) does not retry a request that fails, nor reconnect an SSE
response that ends: its iterator raises (or, for SSE, stops). As its docs say
for `StreamEvent.next_offset`, the application resumes from the last
checkpoint it was given, which is what this script does.
"""

import json
import sys
import time

import httpx
from durable_streams import DurableStreamError, FetchError, stream

cfg = json.loads(sys.argv[1])


def out(v):
    sys.stdout.write(json.dumps(v, ensure_ascii=False) + "\n")
    sys.stdout.flush()


requests = {"catch-up": 0, "long-poll": 0, "sse": 0}


def count(request):
    live = request.url.params.get("live", "catch-up")
    requests[live] = requests.get(live, 0) + 1


client = httpx.Client(timeout=httpx.Timeout(10.0), event_hooks={"request": [count]})

end_json = json.dumps(cfg["end"]) if cfg["kind"] == "json" else None
offset = cfg.get("offset", "-1")
text = ""
done = False
restarts = 0
deadline = time.monotonic() + cfg.get("timeoutMs", 120000) / 1000

while not done:
    if time.monotonic() > deadline:
        out({"error": "no end in time", "restarts": restarts, "requests": requests})
        sys.exit(2)
    why = "the session ended before the end"
    try:
        with stream(cfg["url"], offset=offset, live=cfg["live"], client=client) as res:
            mode = "json" if cfg["kind"] == "json" else "text"
            for event in res.iter_events(mode=mode):
                if cfg["kind"] == "json":
                    if not event.data:
                        offset = event.next_offset
                        continue
                    last = json.dumps(event.data[-1])
                    out({"items": event.data, "offset": event.next_offset})
                    offset = event.next_offset
                    if last == end_json:
                        done = True
                        break
                else:
                    if not event.data:
                        offset = event.next_offset
                        continue
                    text += event.data
                    out({"text": event.data, "offset": event.next_offset})
                    offset = event.next_offset
                    if text.endswith(cfg["end"]):
                        done = True
                        break
    except (httpx.HTTPError, DurableStreamError, FetchError) as err:
        status = getattr(err, "status", None)
        if status is not None and 400 <= status < 500:
            # A refusal is the server's answer, not a cut: retrying would
            # only hide it.
            out({"error": f"refused: {err}"[:300], "offset": offset, "restarts": restarts})
            sys.exit(3)
        why = f"{type(err).__name__}: {err}"[:200]
    if not done:
        restarts += 1
        out({"restart": why, "offset": offset})

out({"done": True, "restarts": restarts, "requests": requests})
