// A headless Chromium that a program drives over stdin/stdout, one JSON object per line (benchmarks use it to
// interleave browser runs with native ones in one run):
//   {"open": "p1", "url": "http://..."}            -> {"id": "p1", "ready": <window.__mvResult>}
//   {"call": "p1", "fn": "mvBench", "args": {...}}  -> {"id": "p1", "value": <await window.mvBench(args)>}
//   {"quit": true}
// Any failure answers {"id": ..., "error": "<one line>"}.
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, headless: true,
                                        args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const pages = new Map();
const reply = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const line1 = (e) => String(e?.message ?? e).split("\n")[0];

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  let msg;
  try { msg = JSON.parse(line); } catch { reply({ error: "not JSON: " + line.slice(0, 80) }); continue; }
  if (msg.quit) break;
  const id = msg.open ?? msg.call;
  try {
    if (msg.open) {
      const page = await browser.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(line1(e)));
      await page.goto(msg.url, { waitUntil: "load" });
      await page.waitForFunction(() => window.__mvResult !== undefined, null, { timeout: 300000, polling: 100 });
      pages.set(id, page);
      reply({ id, ready: await page.evaluate(() => window.__mvResult), errors });
    } else {
      const page = pages.get(id);
      if (!page) throw new Error(`no page ${id}: open it first`);
      const value = await page.evaluate(([fn, args]) => window[fn](args), [msg.fn, msg.args ?? {}]);
      reply({ id, value });
    }
  } catch (e) {
    reply({ id, error: line1(e) });
  }
}
// Chromium can take long to tear down pages with WASM worker threads: give it 10 s, then leave anyway
await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 10000))]);
process.exit(0);
