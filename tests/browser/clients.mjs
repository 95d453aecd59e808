// Real clients for ssehub's flaky-network tests, driven by tests/clients/flaky_network.rs
// and tests/storage/durable.rs.
//
//   node clients.mjs '<json config>'
//
// Runs one scenario and prints one JSON report on stdout (the last line).
// Headless Chromium is Debian's /usr/bin/chromium, driven by playwright-core;
// no browser is ever downloaded. Scenarios that need the Rust side to act
// mid-way print {"step": ...} lines and wait for a line on stdin.

import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { EventSource } from "eventsource";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Waits are on progress, not on a clock: one fails only when nothing
// moved (no event, no open, no page loaded) for `timeoutMs`, so a machine
// whose cores others take makes a run slower, not red.
const stallMs = cfg.timeoutMs ?? 120_000;
// Grows with everything the clients receive; printed as {"progress": n}
// lines (at most one a second) so that the Rust side waits on it too.
let progress = 0;
const moved = (n = 1) => { progress += n; };
// Counts a measure (opens, reconnects...) as progress when it changes.
const marks = new Map();
const note = (key, n) => { if (marks.get(key) !== n) { marks.set(key, n); moved(); } };
let printed = 0;
setInterval(() => {
  if (progress === printed) return;
  printed = progress;
  process.stdout.write(JSON.stringify({ progress }) + "\n");
}, 1000).unref();

function step(name, extra = {}) {
  process.stdout.write(JSON.stringify({ step: name, ...extra }) + "\n");
}

const stdinLines = createInterface({ input: process.stdin });
const stdinQueue = [];
let stdinWaiter = null;
stdinLines.on("line", (l) => {
  if (stdinWaiter) { const w = stdinWaiter; stdinWaiter = null; w(l); } else stdinQueue.push(l);
});
const nextLine = () =>
  stdinQueue.length ? Promise.resolve(stdinQueue.shift()) : new Promise((r) => (stdinWaiter = r));

// Waits until `cond()`, failing when nothing progressed for `ms`; with
// `fixed`, after `ms` whatever happens (a measurement window).
async function until(what, cond, ms = stallMs, { fixed = false, explain } = {}) {
  let seen = progress;
  let since = Date.now();
  while (!(await bounded(what, cond(), ms))) {
    if (!fixed && progress !== seen) {
      seen = progress;
      since = Date.now();
    } else if (Date.now() - since > ms) {
      const why = explain ? "; " + JSON.stringify(await bounded("explain", explain(), 10_000).catch((e) => e.message)) : "";
      throw new Error("timed out waiting for " + what + (fixed ? "" : ": nothing progressed for " + ms + " ms") + why);
    }
    await sleep(25);
  }
}

// `promise`, or an error naming `what` once it has hung for `ms`: a page
// whose renderer stops answering fails the run with a reason instead of
// holding it until the Rust side gives up.
function bounded(what, promise, ms) {
  let timer;
  const hung = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(what + ": no answer for " + ms + " ms")), ms);
  });
  return Promise.race([promise, hung]).finally(() => clearTimeout(timer));
}

async function launch() {
  moved();
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

// A page of ssehub's own UI (GET /). Every event it dispatches is recorded
// in the tab's sessionStorage, synchronously, in the page's own event
// handler: a record survives reloads, and is written in the same JS task
// that saves the page's resume id, so the two can never disagree (an async
// binding call can be lost when the page unloads).
async function openPage(browser, url, options = {}) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  await context.addInitScript((items) => {
    if (items && !sessionStorage.getItem("seeded")) {
      for (const [k, v] of Object.entries(items)) localStorage.setItem(k, v);
      sessionStorage.setItem("seeded", "1");
    }
    let n = Number(sessionStorage.getItem("n") || 0);
    window.ssehubReport = (kind, e) => {
      sessionStorage.setItem("r" + n, JSON.stringify([kind, e.id, e.data, e.topic, e.type]));
      n++;
      sessionStorage.setItem("n", String(n));
    };
  }, options.localStorage ?? null);
  const page = await context.newPage();
  page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
  await page.goto(url);
  moved();
  const log = {
    events: [],
    resyncs: [],
    // Both, in order: ["event", id, data, topic, type] or ["resync", id, json, topic].
    seen: [],
    // Brings `events`/`resyncs` up to date with the page's record.
    async sync() {
      const items = await page.evaluate((from) => {
        const n = Number(sessionStorage.getItem("n") || 0);
        const out = [];
        for (let i = from; i < n; i++) out.push(JSON.parse(sessionStorage.getItem("r" + i)));
        return out;
      }, this.events.length + this.resyncs.length);
      moved(items.length);
      for (const [kind, id, data, topic, type] of items) {
        this.seen.push([kind, id, data, topic, type ?? null]);
        if (kind === "event") this.events.push([id, data]);
        else this.resyncs.push(JSON.parse(data));
      }
    },
  };
  return { context, page, log };
}

const state = (page) => page.evaluate(() => {
  const p = window.ssehubPage;
  return { opens: p.opens, timeline: p.timeline, state: p.state };
});

// Reconnect delays: from each error to the next open.
function delays(timeline) {
  const out = [];
  let err = null;
  for (const { what, t } of timeline) {
    if (what === "error" && err === null) err = t;
    if (what === "open" && err !== null) { out.push(Math.round(t - err)); err = null; }
  }
  return out;
}

const done = (log, end) => log.events.some(([, data]) => data === end);

// The Node `eventsource` package: same reconnect rules as a browser.
function nodeClient(url) {
  const log = { events: [], resyncs: [], seen: [], opens: 0, errors: 0 };
  const es = new EventSource(url);
  es.onopen = () => { log.opens++; moved(); };
  es.onerror = () => log.errors++;
  es.onmessage = (e) => {
    moved();
    log.events.push([e.lastEventId, e.data]);
    log.seen.push(["event", e.lastEventId, e.data]);
  };
  es.addEventListener("resync", (e) => {
    log.resyncs.push(JSON.parse(e.data));
    log.seen.push(["resync", e.lastEventId, e.data]);
  });
  log.close = () => es.close();
  return log;
}

// One EventSource on several topics (GET /events?topic=a&topic=b...), in
// the Node `eventsource` package or in a Chromium page: every event and
// resync as [type, lastEventId, data], in arrival order.
function multiListen(es, topics, rec) {
  for (const t of topics) es.addEventListener(t, (e) => { moved(); rec.push([e.type, e.lastEventId, e.data]); });
  es.addEventListener("resync", (e) => { moved(); rec.push(["resync", e.lastEventId, e.data]); });
}

function nodeMulti(url, topics) {
  const log = { rec: [], opens: 0, errors: 0 };
  const es = new EventSource(url);
  es.onopen = () => log.opens++;
  es.onerror = () => log.errors++;
  multiListen(es, topics, log.rec);
  log.close = () => es.close();
  return log;
}

async function chromiumMulti(browser, pageUrl, streamUrl, topics) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
  await page.goto(pageUrl);
  await page.evaluate(({ url, topics }) => {
    window.rec = [];
    window.opens = 0;
    const es = (window.es = new EventSource(url));
    es.onopen = () => window.opens++;
    for (const t of topics) es.addEventListener(t, (e) => window.rec.push([e.type, e.lastEventId, e.data]));
    es.addEventListener("resync", (e) => window.rec.push(["resync", e.lastEventId, e.data]));
  }, { url: streamUrl, topics });
  const log = { rec: [], page };
  log.sync = async () => {
    const more = await page.evaluate((from) => window.rec.slice(from), log.rec.length);
    moved(more.length);
    log.rec.push(...more);
  };
  return log;
}

// One native EventSource on one topic in a Chromium page (loaded from
// `pageUrl`, so the stream may be of another origin): its events and
// resyncs in the shape of openPage's log, and its opens and errors.
async function chromiumSingle(browser, pageUrl, streamUrl) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
  await page.goto(pageUrl);
  moved();
  await page.evaluate((url) => {
    const w = (window.native = { seen: [], opens: 0, timeline: [] });
    const es = new EventSource(url);
    const t = () => performance.now();
    es.onopen = () => { w.opens++; w.timeline.push({ what: "open", t: t() }); };
    es.onerror = () => w.timeline.push({ what: "error", t: t() });
    es.onmessage = (e) => w.seen.push(["event", e.lastEventId, e.data]);
    es.addEventListener("resync", (e) => w.seen.push(["resync", e.lastEventId, e.data]));
  }, streamUrl);
  const log = {
    events: [], resyncs: [], seen: [], page,
    async sync() {
      const more = await page.evaluate((from) => window.native.seen.slice(from), this.seen.length);
      moved(more.length);
      for (const item of more) {
        this.seen.push(item);
        if (item[0] === "event") this.events.push([item[1], item[2]]);
        else this.resyncs.push(JSON.parse(item[2]));
      }
    },
    state: () => page.evaluate(() => ({ opens: window.native.opens, timeline: window.native.timeline })),
  };
  return log;
}

// Every topic's last event was `end`.
const allEnded = (rec, topics, end) =>
  topics.every((t) => rec.some(([type, , data]) => type === t && data === end));

// What the page at / shows: the events counter and, per topic row, its
// name, event count and last id.
const shown = (page) => page.evaluate(() => ({
  events: document.getElementById("events").textContent,
  rows: [...document.querySelectorAll("#topicRows tr")].map((tr) =>
    [...tr.children].slice(0, 3).map((td) => td.textContent)),
}));

// Own property names of Object.prototype in a page.
const protoNames = (page) => page.evaluate(() => Object.getOwnPropertyNames(Object.prototype).sort());

// A stand-in for "another server": answers every stream with one event and
// keeps it open, answers preflights and publishes, and records every
// request it gets (method, URL, headers) so a test can see what leaked.
async function recorder() {
  const requests = [];
  const open = new Set();
  const cors = {
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "authorization, content-type, accept, last-event-id, idempotency-key",
    "access-control-allow-methods": "GET, POST, OPTIONS",
  };
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.method === "OPTIONS") { res.writeHead(204, cors); return res.end(); }
      if (req.method === "POST") {
        res.writeHead(201, { ...cors, "content-type": "application/json" });
        return res.end('{"id":"elsewhere-2"}');
      }
      res.writeHead(200, { ...cors, "content-type": "text/event-stream", "cache-control": "no-cache" });
      res.write("retry: 500\nid: elsewhere-1\ndata: hello from elsewhere\n\n");
      open.add(res);
      res.on("close", () => open.delete(res));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    origin: `http://127.0.0.1:${server.address().port}`,
    requests,
    close() { for (const r of open) r.destroy(); server.close(); },
  };
}

const scenarios = {
  // One EventSource on many topics through a chaos proxy, in Chromium and
  // in Node; both must see every topic's end.
  async multiFlaky(c) {
    const browser = await launch();
    try {
      const chrome = await chromiumMulti(browser, c.pageUrl, c.chromiumUrl, c.topics);
      const node = nodeMulti(c.nodeUrl, c.topics);
      await until("both clients to reach every topic's end", async () => {
        await chrome.sync();
        return allEnded(chrome.rec, c.topics, c.end) && allEnded(node.rec, c.topics, c.end);
      });
      node.close();
      const opens = await chrome.page.evaluate(() => window.opens);
      return {
        chromium: { rec: chrome.rec, opens },
        node: { rec: node.rec, opens: node.opens, errors: node.errors },
      };
    } finally {
      await browser.close();
    }
  },

  // The page at / on several topics with short-lived tokens: it must get a
  // new token at every `reauth` and lose nothing.
  async pageReauth(c) {
    const browser = await launch();
    try {
      const { page, log } = await openPage(browser, c.pageUrl);
      await until("the page to connect", async () =>
        (await page.evaluate(() => window.ssehubPage.opens)) > 0);
      step("connected");
      await until("every topic's end", async () => {
        await log.sync();
        return c.topics.every((t) => log.seen.some(([k, , data, topic]) => k === "event" && topic === t && data === c.end));
      });
      const p = await page.evaluate(() => {
        const p = window.ssehubPage;
        return { reauths: p.reauths, tokens: p.tokens, reopens: p.reopens, opens: p.opens, state: p.state };
      });
      return { seen: log.seen, ...p };
    } finally {
      await browser.close();
    }
  },

  // Pages at / on the given URLs: once every one is open, says
  // "connected" and waits for a line (the Rust side publishes); then waits
  // until each has `expect[name]` events and reports what each recorded,
  // showed, and whether Object.prototype stayed as in a blank page.
  async pages(c) {
    const browser = await launch();
    try {
      const pages = {};
      for (const [name, url] of Object.entries(c.pages)) pages[name] = await openPage(browser, url);
      await until("every page to open", async () => {
        let all = true;
        for (const [name, p] of Object.entries(pages)) {
          const opens = await p.page.evaluate(() => window.ssehubPage.opens);
          note("opens " + name, opens);
          if (!(opens > 0)) all = false;
        }
        return all;
      });
      step("connected");
      await nextLine();
      await until("every page's events", async () => {
        for (const [name, p] of Object.entries(pages)) {
          await p.log.sync();
          if (p.log.events.length < c.expect[name]) return false;
        }
        return true;
      });
      const blank = await (await browser.newContext()).newPage();
      const out = { blankProto: await protoNames(blank) };
      for (const [name, p] of Object.entries(pages)) {
        out[name] = { seen: p.log.seen, shown: await shown(p.page), proto: await protoNames(p.page) };
      }
      return out;
    } finally {
      await browser.close();
    }
  },

  // The page at / on a link naming another server (`{elsewhere}` in
  // c.pageUrl) and a same-origin token URL that answers a secret: what
  // the other server receives while the page watches it and publishes to
  // it; then the same once the user ticks "send it the token".
  async pageForeign(c) {
    const elsewhere = await recorder();
    const browser = await launch();
    try {
      const context = await browser.newContext();
      const secret = "secret-token-" + Math.random().toString(36).slice(2);
      const app = new URL(c.pageUrl).origin;
      let tokenFetches = 0;
      await context.route((u) => u.origin === app && u.pathname === "/token", (route) => {
        tokenFetches++;
        route.fulfill({ status: 200, contentType: "text/plain", body: secret });
      });
      const page = await context.newPage();
      page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
      await page.goto(c.pageUrl.replace("{elsewhere}", elsewhere.origin));
      const events = () => page.evaluate(() => window.ssehubPage.events.map((e) => [e.id, e.data]));
      await until("the event of the other server", async () => (await events()).length > 0);
      await page.fill("#pdata", "published");
      await page.click("#publish");
      const posted = () => elsewhere.requests.some((r) => r.method === "POST");
      await until("the publish to reach the other server", async () => posted());
      const before = { requests: [...elsewhere.requests], tokenFetches, events: await events() };
      let after = null;
      if (await page.$("#trust")) {
        await page.check("#trust");
        const sent = () => elsewhere.requests.some((r) => r.method === "GET" && r.headers.authorization === "Bearer " + secret);
        await until("the stream with the token once allowed", async () => sent());
        after = { requests: [...elsewhere.requests], tokenFetches };
      }
      return { secret, elsewhere: elsewhere.origin, before, after };
    } finally {
      await browser.close();
      elsewhere.close();
    }
  },

  // One plain EventSource on a page of another origin (so that loading the
  // page takes none of the server's connections), driven by the Rust test
  // through stdin: {"cmd":"state"} answers the page's record, {"cmd":"until",
  // "data":D} answers once an event with data D arrived, {"cmd":"end"} ends.
  async refused(c) {
    const origin = createServer((_, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<!doctype html><title>refused</title>");
    });
    await new Promise((r) => origin.listen(0, "127.0.0.1", r));
    const browser = await launch();
    try {
      const page = await (await browser.newContext()).newPage();
      page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
      await page.goto(`http://127.0.0.1:${origin.address().port}/`);
      await page.evaluate((url) => {
        const log = (window.log = { events: [], timeline: [], closed: false });
        const es = (window.es = new EventSource(url));
        const t = () => Math.round(performance.now());
        es.onopen = () => log.timeline.push(["open", t()]);
        es.onerror = () => {
          log.timeline.push(["error", t(), es.readyState]);
          if (es.readyState === EventSource.CLOSED) log.closed = true;
        };
        es.onmessage = (e) => log.events.push([e.lastEventId, e.data]);
        es.addEventListener("resync", (e) => log.events.push(["resync", e.data]));
      }, c.streamUrl);
      const record = () =>
        page.evaluate(() => ({ ...window.log, readyState: window.es.readyState }));
      for (;;) {
        const cmd = JSON.parse(await nextLine());
        if (cmd.cmd === "end") break;
        if (cmd.cmd === "until") {
          await until("event " + cmd.data, async () => {
            const r = await record();
            note("refused", r.events.length + r.timeline.length);
            if (r.closed) throw new Error("the EventSource closed for good: " + JSON.stringify(r));
            return r.events.some(([, d]) => d === cmd.data);
          });
        }
        step("state", await record());
      }
      return await record();
    } finally {
      await browser.close();
      origin.close();
    }
  },

  // Four clients on four chaos proxies; all must reach the "end" event:
  // Chromium's native EventSource, the page at / left alone, the page at /
  // reloaded every few seconds, and the Node eventsource package.
  async flaky(c) {
    const browser = await launch();
    try {
      const native = await chromiumSingle(browser, c.hostUrl, c.nativeUrl);
      const alone = await openPage(browser, c.pageUrl);
      const reload = await openPage(browser, c.reloadUrl);
      const node = nodeClient(c.nodeUrl);
      let reloads = 0;
      let nextReload = Date.now() + c.reloadEveryMs[0];
      await until("every client to reach the end", async () => {
        await native.sync();
        await alone.log.sync();
        await reload.log.sync();
        if (!done(reload.log, c.end) && Date.now() > nextReload) {
          await reload.page.reload();
          reloads++;
          const [lo, hi] = c.reloadEveryMs;
          nextReload = Date.now() + lo + Math.random() * (hi - lo);
        }
        return done(native, c.end) && done(alone.log, c.end) && done(reload.log, c.end) && done(node, c.end);
      }, stallMs, {
        // Which client stopped, where, and what its EventSource last did.
        explain: async () => {
          const tail = (l) => ({ events: l.events.length, last: l.events.at(-1)?.[0], done: done(l, c.end) });
          const page = async (p) => {
            try { const s = await bounded("state", state(p), 5_000); return { ...s, timeline: s.timeline.slice(-4) }; }
            catch (e) { return e.message; }
          };
          return {
            native: tail(native), page: { ...tail(alone.log), es: await page(alone.page) },
            reload: { ...tail(reload.log), reloads, es: await page(reload.page) },
            node: { ...tail(node), opens: node.opens, errors: node.errors },
          };
        },
      });
      node.close();
      const ns = await native.state();
      const ps = await state(alone.page);
      const plain = (l) => ({ events: l.events, resyncs: l.resyncs, seen: l.seen });
      return {
        native: { ...plain(native), opens: ns.opens, delays: delays(ns.timeline) },
        page: { ...plain(alone.log), opens: ps.opens, delays: delays(ps.timeline) },
        reload: { ...plain(reload.log), reloads },
        node: {
          events: node.events, resyncs: node.resyncs, seen: node.seen,
          opens: node.opens, errors: node.errors,
        },
      };
    } finally {
      await browser.close();
    }
  },

  // One page through restarts of the server (tests/storage/durable.rs): says when it
  // receives, then runs until the end event.
  async follow(c) {
    const browser = await launch();
    try {
      const { page, log } = await openPage(browser, c.pageUrl);
      await until("first events", async () => (await log.sync(), log.events.length >= 3));
      step("connected", { first: log.events[0][0] });
      try {
        await until("the end event", async () => (await log.sync(), done(log, c.end)));
      } catch (e) {
        const ps = await state(page);
        throw new Error(`${e.message}: page ${ps.state} after ${ps.opens} opens, ` +
          `${log.events.length} events (last ${JSON.stringify(log.events.at(-1))}), ` +
          `${log.resyncs.length} resyncs, timeline ${JSON.stringify(ps.timeline.slice(-6))}`);
      }
      const ps = await state(page);
      return { events: log.events, resyncs: log.resyncs, seen: log.seen, opens: ps.opens };
    } finally {
      await browser.close();
    }
  },

  // A page whose saved id is older than the ring: a resync, then what is left.
  async resyncBeyondRing(c) {
    const browser = await launch();
    try {
      const { page, log } = await openPage(browser, c.pageUrl, { localStorage: c.localStorage });
      await until("resync and the retained events", async () => {
        await log.sync();
        return log.resyncs.length > 0 && log.events.length >= c.expectEvents;
      });
      const pageResyncs = await page.evaluate(() => window.ssehubPage.resyncs);
      return { events: log.events, resyncs: log.resyncs, pageResyncs };
    } finally {
      await browser.close();
    }
  },

  // The server restarts (new epoch) while the page is connected.
  async epoch(c) {
    const browser = await launch();
    try {
      const { log } = await openPage(browser, c.pageUrl);
      await until("first events", async () => (await log.sync(), log.events.length >= 3));
      step("connected", { last: log.events.at(-1)[0] });
      await nextLine(); // the Rust side restarted the server
      const before = log.events.length;
      await until("resync after the restart", async () => {
        await log.sync();
        return log.resyncs.length > 0 && log.events.length > before;
      });
      return { events: log.events, resyncs: log.resyncs };
    } finally {
      await browser.close();
    }
  },

  // Clients of servers with different retry hints: for each, Chromium's
  // native EventSource and the page at /; measure their reconnect delays.
  async retry(c) {
    const browser = await launch();
    try {
      const clients = {};
      for (const [name, { host, stream, page }] of Object.entries(c.servers)) {
        const native = await chromiumSingle(browser, host, stream);
        clients[name + " native"] = () => native.state();
        const p = await openPage(browser, page);
        clients[name + " page"] = () => state(p.page);
      }
      await until("enough reconnects", async () => {
        let all = true;
        for (const [name, st] of Object.entries(clients)) {
          const n = delays((await st()).timeline).length;
          note(name, n);
          if (n < c.reconnects) all = false;
        }
        return all;
      });
      const out = {};
      for (const [name, st] of Object.entries(clients)) out[name] = delays((await st()).timeline);
      return out;
    } finally {
      await browser.close();
    }
  },

  // One page, many EventSources to the same origin.
  async tabs(c) {
    const browser = await launch();
    try {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      const page = await context.newPage();
      await page.goto(c.pageUrl);
      await page.evaluate(({ n, path }) => {
        window.tabs = [];
        for (let i = 0; i < n; i++) {
          const t = { opened: false, events: 0 };
          const es = new EventSource(path);
          es.onopen = () => (t.opened = true);
          es.onmessage = () => t.events++;
          window.tabs.push(t);
        }
      }, { n: c.sources, path: c.streamPath });
      const count = () => page.evaluate(() => ({
        opened: window.tabs.filter((t) => t.opened).length,
        receiving: window.tabs.filter((t) => t.events > 0).length,
      }));
      try {
        await until("every source to receive", async () => (await count()).receiving === c.sources, c.waitMs, { fixed: true });
      } catch (_) { /* reported below */ }
      const protocol = await page.evaluate(() => performance.getEntriesByType("navigation")[0]?.nextHopProtocol);
      return { ...(await count()), protocol };
    } finally {
      await browser.close();
    }
  },
};

// Exit only once the report has left: a pipe takes 64 KiB at a time.
const finish = (obj, code) => process.stdout.write(JSON.stringify(obj) + "\n", () => process.exit(code));
try {
  const run = scenarios[cfg.scenario];
  if (!run) throw new Error("unknown scenario " + cfg.scenario);
  finish({ report: await run(cfg) }, 0);
} catch (e) {
  finish({ error: String((e && e.stack) || e) }, 1);
}
