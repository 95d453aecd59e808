// Reads one Durable Stream live with the official TypeScript client
// (`@durable-streams/client`, pinned in package.json) and prints what it
// gets, for tests/durable/clients.rs.
//
// Usage: node reader.mjs '{"url": ..., "kind": "json"|"text",
//   "live": "sse"|"long-poll", "offset": "-1", "end": <marker>}'
//
// `end` is the last message: for JSON, a value deep-equal to it (compared as
// JSON text); for text, a suffix of everything read. The reader stops after
// it.
//
// With `"journal": PATH`, the reader also appends each batch line (below)
// to that file, and on start resumes from the offset of the last whole line
// there (if any) instead of `offset`, printing {"resumed": offset}: the
// checkpoint of a reader process that was killed. The batch and its offset
// go in one append (one write(2)), so a kill leaves both or neither.
//
// Prints JSON lines on stdout, one per batch the client delivers, each with
// the offset the client gave for it (the checkpoint to resume from: one
// line carries both, so a reader killed at any point has printed a batch
// with its offset, or neither):
//   {"items": [...], "offset": "..."}      (JSON streams)
//   {"text": "...", "offset": "..."}       (text streams)
//   {"restart": "why", "offset": "..."}    a session failed; a new one starts
//                                          at `offset`, the last delivered
//   {"done": true, "restarts": n, "requests": {"catch-up": n, "long-poll": n, "sse": n}}
//
// The client retries a request that fails before its response (with
// backoff), but a connection cut while a response body is being read ends
// the session with an error (`res.closed` rejects): as the client's docs
// say for `offset`, the application resumes from the last offset it was
// given. That is what this script does.

import { appendFileSync, existsSync, readFileSync, truncateSync } from "node:fs";
import { stream } from "@durable-streams/client";

const cfg = JSON.parse(process.argv[2]);
const out = (v) => process.stdout.write(JSON.stringify(v) + "\n");
const save = (v) => {
  if (cfg.journal) appendFileSync(cfg.journal, JSON.stringify(v) + "\n");
  out(v);
};

const requests = { "catch-up": 0, "long-poll": 0, sse: 0 };
// A response head that has not come after this long is given up (as the
// Python client's 10 s timeout does): the client then retries. Node's
// fetch has no timeout of its own, and once (in about one run in ten
// under two busy loops) a first request whose connection the proxy reset
// before any answer never settled, and the reader waited until its end.
const HEAD_TIMEOUT_MS = 10_000;
const countingFetch = async (input, init = {}) => {
  const live = new URL(String(input)).searchParams.get("live") ?? "catch-up";
  requests[live] = (requests[live] ?? 0) + 1;
  const late = new AbortController();
  const timer = setTimeout(
    () => late.abort(new Error(`no response head after ${HEAD_TIMEOUT_MS} ms`)),
    HEAD_TIMEOUT_MS,
  );
  const signal = init.signal ? AbortSignal.any([init.signal, late.signal]) : late.signal;
  try {
    return await fetch(input, { ...init, signal });
  } finally {
    clearTimeout(timer);
  }
};

const endJson = cfg.kind === "json" ? JSON.stringify(cfg.end) : null;
let offset = cfg.offset ?? "-1";
let text = "";
if (cfg.journal && existsSync(cfg.journal)) {
  // Whole lines only: a line cut short by the kill (no newline after it)
  // goes.
  const bytes = readFileSync(cfg.journal);
  const whole = bytes.lastIndexOf(0x0a) + 1;
  truncateSync(cfg.journal, whole);
  const lines = bytes.subarray(0, whole).toString("utf8").split("\n").slice(0, -1);
  for (const line of lines) {
    const v = JSON.parse(line);
    offset = v.offset;
    if (v.text !== undefined) text += v.text;
  }
  out({ resumed: offset });
}
let done = false;
let restarts = 0;

async function session() {
  const res = await stream({
    url: cfg.url,
    offset,
    live: cfg.live,
    json: cfg.kind === "json",
    fetch: countingFetch,
    warnOnHttp: false,
    // Retry fast: the proxy cuts often, and a test waits for the end.
    backoffOptions: { initialDelay: 20, maxDelay: 300, multiplier: 1.5, maxRetries: Infinity },
    // Short SSE connections are the proxy's doing, not a buffering proxy:
    // stay on SSE (the default falls back to long-poll after 3).
    sseResilience: { maxShortConnections: 1e9, backoffMaxDelay: 200, logWarnings: false },
  });
  const finished = new Promise((resolve) => {
    const deliver = (line, nextOffset, isEnd) => {
      offset = nextOffset;
      save(line);
      if (isEnd) {
        done = true;
        res.cancel();
        resolve();
      }
    };
    if (cfg.kind === "json") {
      res.subscribeJson((batch) => {
        if (done) return;
        if (batch.items.length === 0) {
          offset = batch.offset;
          return;
        }
        const last = batch.items[batch.items.length - 1];
        deliver({ items: batch.items, offset: batch.offset }, batch.offset, JSON.stringify(last) === endJson);
      });
    } else {
      res.subscribeText((chunk) => {
        if (done) return;
        if (chunk.text.length === 0) {
          offset = chunk.offset;
          return;
        }
        text += chunk.text;
        deliver({ text: chunk.text, offset: chunk.offset }, chunk.offset, text.endsWith(cfg.end));
      });
    }
  });
  await Promise.race([finished, res.closed]);
  if (!done) throw new Error("the session closed before the end");
}

const limit = setTimeout(() => {
  out({ error: `no end after ${cfg.timeoutMs ?? 120000} ms`, restarts, requests });
  process.exit(2);
}, cfg.timeoutMs ?? 120000);

while (!done) {
  try {
    await session();
  } catch (err) {
    if (done) break;
    // A refusal (4xx) is the server's answer, not a cut: retrying would
    // only hide it.
    if (err?.status >= 400 && err?.status < 500) {
      out({ error: `refused: ${String(err?.message ?? err).slice(0, 300)}`, offset, restarts, requests });
      process.exit(3);
    }
    restarts += 1;
    out({ restart: String(err?.message ?? err).slice(0, 200), offset });
    // A new session at once, as an application would (no data is lost:
    // it starts where the last one delivered).
  }
}
clearTimeout(limit);
out({ done: true, restarts, requests });
process.exit(0);
