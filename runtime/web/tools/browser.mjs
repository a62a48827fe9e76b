// Opens a page in headless Chromium (Debian's chromium, driven by playwright-core), waits until the page
// sets window.__mvResult, and prints {result, console, errors} as JSON on stdout.
//   node runtime/web/tools/browser.mjs URL [--screenshot out.png] [--timeout ms] [--threads]
// Exit 0 when the page finished (whatever its result says), 1 when it timed out or crashed, 2 on bad usage.
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const url = args.find((a) => !a.startsWith("--") && !/^\d+$/.test(a) && !a.endsWith(".png"));
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
if (!url) {
  console.error("usage: node browser.mjs URL [--screenshot out.png] [--timeout ms]");
  process.exit(2);
}
const timeout = Number(opt("--timeout") ?? 600000);
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

const consoleLines = [];
const errors = [];
let browser;
try {
  browser = await chromium.launch({
    executablePath,
    headless: true,
    // root in a container has no user namespaces for Chromium's sandbox
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--enable-unsafe-swiftshader"],
  });
} catch (e) {
  console.error(`cannot start Chromium at ${executablePath}: ${String(e.message).split("\n")[0]}; ` +
                "install it (apt-get install chromium) or set CHROMIUM");
  process.exit(1);
}
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => errors.push(String(e.message).split("\n")[0]));
  await page.goto(url, { waitUntil: "load", timeout });
  await page.waitForFunction(() => window.__mvResult !== undefined, null, { timeout, polling: 200 });
  const result = await page.evaluate(() => window.__mvResult);
  const shot = opt("--screenshot");
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  const isolated = await page.evaluate(() => self.crossOriginIsolated);
  process.stdout.write(JSON.stringify({ result, console: consoleLines, errors, crossOriginIsolated: isolated }) + "\n");
  await browser.close();
} catch (e) {
  process.stdout.write(JSON.stringify({ result: null, console: consoleLines, errors: [...errors, String(e.message).split("\n")[0]] }) + "\n");
  await browser.close();
  process.exit(1);
}
