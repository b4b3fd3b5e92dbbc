// The demo page in a real browser (headless Chromium from the system, driven by playwright-core):
// open pages, each in its own browser context (its own connections), until two are connected to
// different shards; both join one room; each sends a line and the other must show it. Takes a
// screenshot of the receiving page. Prints one JSON line with what it saw; exits non-zero on any
// failure, page error, console error or request that leaves the server's origin.
//
// usage: node demo_browser.mjs <server url> <output dir>
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [url, outDir] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const WAIT = 15_000;
const MAX_PAGES = 20;

if (!existsSync(CHROMIUM)) {
  console.error(`no Chromium at ${CHROMIUM}: run scripts/test.sh (it installs the Debian package)`);
  process.exit(1);
}
mkdirSync(outDir, { recursive: true });
const origin = new URL(url).origin;
const problems = [];

// A fresh profile in the test's directory; flags that keep Chromium off the network it has not
// got (it would otherwise wait on it).
const context = await chromium.launchPersistentContext(join(outDir, "profile"), {
  executablePath: CHROMIUM,
  headless: true,
  timeout: 60_000,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const browser = context.browser();

async function openPage(ctx) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") problems.push(`console: ${m.text()}`); });
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith(origin.replace("http", "ws"))) {
      problems.push(`request off the server: ${r.url()}`);
    }
  });
  await page.goto(url + "/");
  await page.waitForSelector("#status[data-shard]");
  return { ctx, page, shard: Number(await page.getAttribute("#status", "data-shard")) };
}

try {
  // The kernel spreads connections over the shards; separate contexts share no connection.
  const first = await openPage(context);
  let second = null;
  for (let i = 1; i < MAX_PAGES && !second; i++) {
    const ctx = browser ? await browser.newContext() : context;
    const opened = await openPage(ctx);
    if (opened.shard !== first.shard) second = opened;
    else if (ctx !== context) await ctx.close();
    else await opened.page.close();
  }
  if (!second) throw new Error(`${MAX_PAGES} pages all landed on shard ${first.shard}`);

  const room = `demo-${Date.now()}`;
  const people = [[first, "alice"], [second, "bob"]];
  for (const [{ page }, name] of people) {
    await page.fill("#name", name);
    await page.fill("#room", room);
    await page.click("#join button");
    await page.waitForSelector("#send-button:not([disabled])");
  }
  // Both upgraded from polling to WebSocket (the page's policy lets it connect to its origin).
  for (const { page } of [first, second]) {
    await page.waitForSelector('#status[data-transport="websocket"]');
  }

  const said = async (from, to, text) => {
    await from.page.fill("#text", text);
    await from.page.click("#send-button");
    await from.page.waitForSelector(`#log li.own:has-text(${JSON.stringify(text)})`);
    const line = to.page.locator("#log li:not(.own):not(.note)").filter({ hasText: text });
    await line.waitFor();
    return line.innerText();
  };
  const toSecond = await said(first, second, `hello from shard ${first.shard}`);
  const toFirst = await said(second, first, `hi back from shard ${second.shard}`);

  const screenshot = join(outDir, "demo.png");
  await second.page.screenshot({ path: screenshot, fullPage: true });
  const log = await second.page.locator("#log").innerText();
  if (problems.length) throw new Error(problems.join("\n"));
  console.log(JSON.stringify({
    shards: [first.shard, second.shard],
    received: [toSecond, toFirst],
    log,
    screenshot,
  }));
} finally {
  await context.close();
}
