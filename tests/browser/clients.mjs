// Real clients for ssehub's flaky-network tests, driven by tests/flaky_network.rs
// and tests/durable.rs.
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
const deadline = Date.now() + (cfg.timeoutMs ?? 120_000);

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

async function until(what, cond, ms = deadline - Date.now()) {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await sleep(25);
  }
}

async function launch() {
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
      sessionStorage.setItem("r" + n, JSON.stringify([kind, e.id, e.data, e.topic]));
      n++;
      sessionStorage.setItem("n", String(n));
    };
  }, options.localStorage ?? null);
  const page = await context.newPage();
  page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
  await page.goto(url);
  const log = {
    events: [],
    resyncs: [],
    // Both, in order: ["event", id, data] or ["resync", id, json].
    seen: [],
    // Brings `events`/`resyncs` up to date with the page's record.
    async sync() {
      const items = await page.evaluate((from) => {
        const n = Number(sessionStorage.getItem("n") || 0);
        const out = [];
        for (let i = from; i < n; i++) out.push(JSON.parse(sessionStorage.getItem("r" + i)));
        return out;
      }, this.events.length + this.resyncs.length);
      for (const [kind, id, data, topic] of items) {
        this.seen.push([kind, id, data, topic]);
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
  es.onopen = () => log.opens++;
  es.onerror = () => log.errors++;
  es.onmessage = (e) => {
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
  for (const t of topics) es.addEventListener(t, (e) => rec.push([e.type, e.lastEventId, e.data]));
  es.addEventListener("resync", (e) => rec.push(["resync", e.lastEventId, e.data]));
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
    log.rec.push(...more);
  };
  return log;
}

// Every topic's last event was `end`.
const allEnded = (rec, topics, end) =>
  topics.every((t) => rec.some(([type, , data]) => type === t && data === end));

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
        (await page.evaluate(() => window.ssehubPage.opens)) > 0, 30_000);
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

  // Three clients on three chaos proxies; all must reach the "end" event.
  async flaky(c) {
    const browser = await launch();
    try {
      const native = await openPage(browser, c.nativeUrl);
      const reload = await openPage(browser, c.reloadUrl);
      const node = nodeClient(c.nodeUrl);
      let reloads = 0;
      let nextReload = Date.now() + c.reloadEveryMs[0];
      await until("every client to reach the end", async () => {
        await native.log.sync();
        await reload.log.sync();
        if (!done(reload.log, c.end) && Date.now() > nextReload) {
          await reload.page.reload();
          reloads++;
          const [lo, hi] = c.reloadEveryMs;
          nextReload = Date.now() + lo + Math.random() * (hi - lo);
        }
        return done(native.log, c.end) && done(reload.log, c.end) && done(node, c.end);
      });
      node.close();
      const ns = await state(native.page);
      const plain = (l) => ({ events: l.events, resyncs: l.resyncs, seen: l.seen });
      return {
        native: { ...plain(native.log), opens: ns.opens, delays: delays(ns.timeline) },
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

  // One page through restarts of the server (tests/durable.rs): says when it
  // receives, then runs until the end event.
  async follow(c) {
    const browser = await launch();
    try {
      const { page, log } = await openPage(browser, c.pageUrl);
      await until("first events", async () => (await log.sync(), log.events.length >= 3), 30_000);
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
      }, 20_000);
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
      await until("first events", async () => (await log.sync(), log.events.length >= 3), 20_000);
      step("connected", { last: log.events.at(-1)[0] });
      await nextLine(); // the Rust side restarted the server
      const before = log.events.length;
      await until("resync after the restart", async () => {
        await log.sync();
        return log.resyncs.length > 0 && log.events.length > before;
      }, 30_000);
      return { events: log.events, resyncs: log.resyncs };
    } finally {
      await browser.close();
    }
  },

  // Pages on servers with different retry hints: measure their reconnect delays.
  async retry(c) {
    const browser = await launch();
    try {
      const out = {};
      const pages = {};
      for (const [name, url] of Object.entries(c.pages)) pages[name] = await openPage(browser, url);
      await until("enough reconnects", async () => {
        for (const p of Object.values(pages)) {
          if (delays((await state(p.page)).timeline).length < c.reconnects) return false;
        }
        return true;
      }, 60_000);
      for (const [name, p] of Object.entries(pages)) out[name] = delays((await state(p.page)).timeline);
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
        await until("every source to receive", async () => (await count()).receiving === c.sources, c.waitMs);
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
