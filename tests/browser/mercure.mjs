// Headless Chromium's EventSource on ssehub's Mercure hub, driven by
// tests/mercure/browser.rs.
//
//   node mercure.mjs '{"base": "http://127.0.0.1:PORT", "token": "...",
//                      "topics": ["..."], "until": "<id>", "timeoutMs": 60000}'
//
// Puts the token in the `mercureAuthorization` cookie of `base`, opens a
// page of that origin (served by the test, not by the hub) and an
// EventSource on /.well-known/mercure with the `topics` selectors. Prints
// {"step": "open"} once it is open, then {"report": {...}} once the event
// with id `until` arrived: every message it got, as [id, data, type]. On
// failure, {"error": "..."}. Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is ever downloaded.

import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2] ?? "{}");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const timeout = cfg.timeoutMs ?? 60_000;
const out = (v) => process.stdout.write(JSON.stringify(v) + "\n");

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
let page;
try {
  const context = await browser.newContext();
  await context.addCookies([{ name: "mercureAuthorization", value: cfg.token, url: cfg.base }]);
  await context.route(cfg.base + "/mercure-test-page", (route) =>
    route.fulfill({
      status: 200,
      contentType: "text/html",
      body: "<!doctype html><title>mercure test</title>",
    }),
  );
  page = await context.newPage();
  page.on("pageerror", (e) => process.stderr.write("page error: " + e + "\n"));
  await page.goto(cfg.base + "/mercure-test-page");
  const url =
    "/.well-known/mercure?" + cfg.topics.map((t) => "topic=" + encodeURIComponent(t)).join("&");
  await page.evaluate((url) => {
    window.got = [];
    window.states = [];
    const es = new EventSource(url);
    window.es = es;
    es.onopen = () => window.states.push("open");
    es.onerror = () => window.states.push("error, readyState " + es.readyState);
    es.onmessage = (e) => window.got.push([e.lastEventId, e.data, e.type]);
  }, url);
  await page.waitForFunction(() => window.states.includes("open"), null, { timeout });
  out({ step: "open" });
  await page.waitForFunction((until) => window.got.some((e) => e[0] === until), cfg.until, {
    timeout,
  });
  const report = await page.evaluate(() => {
    window.es.close();
    return { got: window.got, states: window.states, cookie: document.cookie.length > 0 };
  });
  out({ report });
} catch (e) {
  let states = null;
  try {
    states = await page?.evaluate(() => ({ got: window.got, states: window.states }));
  } catch {}
  out({ error: String(e?.stack ?? e), states });
} finally {
  await browser.close();
}
