// Drives Debian's firefox-esr over WebDriver BiDi (puppeteer-core) for the e2e tests
// (tests/e2e/firefox.py). Playwright cannot drive a stock Firefox; Puppeteer speaks BiDi, which
// Firefox has built in.
//
// Usage: node driver.js CONFIG.json   (config: executablePath, profileDir, prefs)
// Then one JSON object per line on stdin, one answer per line on stdout, in order:
//   {"id": 1, "op": "new_page", "width": 1280, "height": 800}   -> {"id": 1, "value": "p1"}
//   {"id": 2, "op": "goto", "page": "p1", "url": "http://127.0.0.1:.../room/..."}
//   {"id": 3, "op": "evaluate", "page": "p1", "expression": "window.fortrolig.state"}
//   preload (source), click / fill (selector, text), screenshot (path), console, quit
// An answer is {"id", "value"} or {"id", "error"}. The first line out is
// {"ready": true, "version": ..., "pid": ...} once Firefox runs. The process ends after quit,
// when stdin closes, or on SIGTERM; each closes Firefox first.

import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const pages = new Map(); // id -> {page, console: [lines]}
let nextPage = 0;

const browser = await puppeteer.launch({
  browser: "firefox",
  protocol: "webDriverBiDi",
  executablePath: config.executablePath,
  userDataDir: config.profileDir,
  headless: true,
  extraPrefsFirefox: config.prefs,
  // The test's Python side stops the driver; Firefox goes with it (see quit()).
  handleSIGINT: false,
  handleSIGTERM: false,
  handleSIGHUP: false,
});

let quitting = null;
function quit(code) {
  quitting ??= browser
    .close()
    .catch(() => {})
    .finally(() => process.exit(code));
  return quitting;
}
process.on("SIGTERM", () => quit(0));

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function pageOf(msg) {
  const entry = pages.get(msg.page);
  if (!entry) throw new Error(`no page ${msg.page}`);
  return entry;
}

const ops = {
  async new_page(msg) {
    // Its own user context: its own cookies and storage, like another person's browser.
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport({ width: msg.width ?? 1280, height: msg.height ?? 800 });
    const id = `p${++nextPage}`;
    const entry = { page, context, console: [] };
    page.on("console", (m) => entry.console.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (err) => entry.console.push(`pageerror: ${err?.message ?? err}`));
    pages.set(id, entry);
    return id;
  },
  async preload(msg) {
    // Runs in every document the page loads from now on, before the page's own scripts.
    await pageOf(msg).page.evaluateOnNewDocument(msg.source);
    return null;
  },
  async goto(msg) {
    await pageOf(msg).page.goto(msg.url, { waitUntil: "load" });
    return null;
  },
  async evaluate(msg) {
    // The expression may be a promise; its value comes back as JSON (undefined as null).
    const value = await pageOf(msg).page.evaluate(`(async () => (${msg.expression}))()`);
    return value === undefined ? null : value;
  },
  async click(msg) {
    await pageOf(msg).page.click(msg.selector);
    return null;
  },
  async fill(msg) {
    const { page } = pageOf(msg);
    await page.$eval(msg.selector, (el) => {
      el.value = "";
    });
    await page.type(msg.selector, msg.text);
    return null;
  },
  async screenshot(msg) {
    await pageOf(msg).page.screenshot({ path: msg.path, fullPage: true });
    return msg.path;
  },
  async console(msg) {
    return pageOf(msg).console;
  },
  async close_page(msg) {
    const entry = pageOf(msg);
    pages.delete(msg.page);
    await entry.context.close();
    return null;
  },
};

out({ ready: true, version: await browser.version(), pid: browser.process()?.pid ?? null });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const msg = JSON.parse(line);
  if (msg.op === "quit") {
    out({ id: msg.id, value: null });
    break;
  }
  try {
    const op = ops[msg.op];
    if (!op) throw new Error(`unknown op ${msg.op}`);
    out({ id: msg.id, value: await op(msg) });
  } catch (err) {
    out({ id: msg.id, error: String(err?.stack ?? err) });
  }
}
await quit(0);
