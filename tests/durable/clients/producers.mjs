// Idempotent producers of the official TypeScript client
// (`IdempotentProducer` of `@durable-streams/client`) appending to one JSON
// stream, for tests/durable/clients.rs.
//
// Usage: node producers.mjs '{"urls": [...], "messages": 200, "seed": 7}'
// (producer i writes through urls[i]: the same stream, each through a
// proxy of its own).
//
// Producer i (id `p<i>`, epoch 0) appends `{"p": i, "k": k}` for k = 0, 1,
// ... in bursts of 1 to 5 messages; the client forms the batches (one
// Producer-Seq each) and keeps up to 5 in flight. The client does not retry
// a request that fails (its docs: "Does NOT implement general retry/backoff
// for network errors"), so each producer is given a `fetch` that sends the
// same request again (same Producer-Id, -Epoch, -Seq, same body) until an
// answer comes: what exactly-once needs from the application.
//
// Prints one JSON line: {"done": true, "producers": [{"id", "posts",
// "attempts", "retries", "statuses": {"200": n, ...}, "duplicatesOnRetry",
// "offset"}]}, or {"error": ...}.

import { DurableStream, IdempotentProducer } from "@durable-streams/client";

const cfg = JSON.parse(process.argv[2]);
const out = (v) => process.stdout.write(JSON.stringify(v) + "\n");
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

// A small seeded generator, so that a run's bursts can be replayed.
let state = cfg.seed ?? 7;
const rand = (n) => {
  state = (state * 1103515245 + 12345) % 2147483648;
  return state % n;
};

// The client answers a 409 (a batch ahead of the server's next sequence
// number) by waiting for the batches before it and sending it again: a
// server that lost its place would keep it doing so forever.
const MAX_CONFLICTS_PER_SEQ = 200;

// When the last request of any producer was sent: a producer waiting on a
// batch that will never complete (after a 409 naming a sequence number the
// client no longer tracks) sends nothing at all.
let lastRequest = Date.now();
const IDLE_MS = 10_000;

function retryingFetch(stats) {
  const conflicts = new Map();
  return async (input, init) => {
    stats.posts += 1;
    for (let attempt = 1; ; attempt++) {
      stats.attempts += 1;
      lastRequest = Date.now();
      try {
        const res = await fetch(input, init);
        stats.statuses[res.status] = (stats.statuses[res.status] ?? 0) + 1;
        if (res.status === 409) {
          const seq = new Headers(init?.headers).get("producer-seq");
          const n = (conflicts.get(seq) ?? 0) + 1;
          conflicts.set(seq, n);
          if (n >= MAX_CONFLICTS_PER_SEQ) {
            throw new Error(`stuck: Producer-Seq ${seq} answered 409 ${n} times (expected ${res.headers.get("producer-expected-seq")})`);
          }
        }
        if (attempt > 1) {
          stats.retries += 1;
          if (res.status === 204) stats.duplicatesOnRetry += 1;
        }
        return res;
      } catch (err) {
        if (String(err?.message).startsWith("stuck:")) throw err;
        // The connection was cut before the answer: the append may or may
        // not have been applied. Send it again.
        stats.lastError = String(err?.cause?.code ?? err?.message ?? err);
        await pause(5 + rand(20));
      }
    }
  };
}

const limit = setTimeout(() => {
  out({ error: `the producers did not finish in ${cfg.timeoutMs ?? 120000} ms`, producers: all });
  process.exit(2);
}, cfg.timeoutMs ?? 120000);

const idle = setInterval(() => {
  if (Date.now() - lastRequest > IDLE_MS) {
    out({ error: `no producer sent anything for ${IDLE_MS} ms`, producers: all });
    process.exit(2);
  }
}, 500);

const all = [];
async function run(i) {
  const stats = {
    id: `p${i}`,
    posts: 0,
    attempts: 0,
    retries: 0,
    statuses: {},
    duplicatesOnRetry: 0,
    errors: [],
  };
  all.push(stats);
  const handle = new DurableStream({ url: cfg.urls[i], contentType: "application/json", warnOnHttp: false });
  const producer = new IdempotentProducer(handle, stats.id, {
    epoch: 0,
    lingerMs: 2,
    maxInFlight: 5,
    fetch: retryingFetch(stats),
    onError: (err) => stats.errors.push(String(err?.message ?? err)),
  });
  let k = 0;
  while (k < cfg.messages) {
    const burst = 1 + rand(5);
    for (let j = 0; j < burst && k < cfg.messages; j++, k++) {
      producer.append(JSON.stringify({ p: i, k }));
    }
    await pause(1 + rand(4));
  }
  await producer.flush();
  await producer.detach();
  stats.offset = producer.lastSuccessfulOffset;
}

try {
  await Promise.all(cfg.urls.map((_, i) => run(i)));
  clearTimeout(limit);
  clearInterval(idle);
  out({ done: true, producers: all });
  process.exit(0);
} catch (err) {
  out({ error: String(err?.stack ?? err), producers: all });
  process.exit(1);
}
