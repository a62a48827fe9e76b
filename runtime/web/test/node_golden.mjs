// Replays the golden vectors in Node: node runtime/web/test/node_golden.mjs GOLDEN_DIR [--ort]
// (--ort also runs each copied .onnx in onnxruntime-web's WASM). Prints a JSON summary; exit 1 on failures.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { runGolden } from "./golden.js";

const args = process.argv.slice(2);
const dir = args.find((a) => !a.startsWith("--"));
if (!dir) {
  console.error("usage: node runtime/web/test/node_golden.mjs GOLDEN_DIR [--ort]");
  process.exit(2);
}
const ort = args.includes("--ort") ? await import("onnxruntime-web") : null;
const read = async (/** @type {string} */ name) => {
  const b = await readFile(join(dir, name));
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
};
const t0 = performance.now();
const { checks, failures } = await runGolden(read, { ort, onLog: (line) => console.error(line) });
console.log(JSON.stringify({ dir, ort: !!ort, checks, failed: failures.length, failures,
  seconds: +((performance.now() - t0) / 1000).toFixed(1) }, null, 1));
process.exit(failures.length ? 1 : 0);
