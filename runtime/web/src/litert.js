// The .tflite runner: LiteRT.js (@litertjs/core), Google's WebAssembly / WebGPU build of LiteRT, as the
// onnxruntime-web runner in model.js is for .onnx. LiteRT.js keeps one global WASM module per page; it is
// loaded on first use (the threaded build when the page is crossOriginIsolated) and shared by every model.
import { ArtifactError, InputError, MobileVisionError, reason } from "./errors.js";

/**
 * @typedef {import("./model.js").Runner} Runner
 * @typedef {import("./model.js").Fallback} Fallback
 * @typedef {import("./metadata.js").Metadata} Metadata
 */

/** The folder of LiteRT.js's .wasm files beside the imported module (import map: "@litertjs/core" -> .../dist/index.js). */
function defaultWasmFolder() {
  try {
    return new URL("../wasm/", import.meta.resolve("@litertjs/core")).href;
  } catch (e) {
    throw new MobileVisionError(`the LiteRT.js .wasm folder could not be found (${reason(e)}): pass options.litertWasm`);
  }
}

/** LiteRT.js's global WASM module, loaded once. @param {any} litert @param {string | undefined} folder */
async function ready(litert, folder) {
  const loading = litert.getGlobalLiteRtPromise?.();
  if (loading) return loading;
  const path = folder ?? defaultWasmFolder();
  if (globalThis.crossOriginIsolated) {
    try {
      return await litert.loadLiteRt(path, { threads: true });
    } catch { /* no relaxed SIMD or no threads here: the single-threaded build below */ }
  }
  try {
    return await litert.loadLiteRt(path);
  } catch (e) {
    throw new MobileVisionError(`LiteRT.js could not load its WASM from ${path} (${reason(e)}); serve ` +
      "@litertjs/core's wasm/ folder and pass it as options.litertWasm");
  }
}

/**
 * A runner for a .tflite model on LiteRT.js: each of `executionProviders` ("wasm", "webgpu") is tried in turn,
 * as for onnxruntime-web. Outputs are matched to the metadata by name when the model's names are the metadata's,
 * else by position (as the Python runtime does).
 * @param {any} litert the @litertjs/core module @param {Uint8Array} bytes @param {string} name @param {Metadata} md
 * @param {import("./model.js").LoadOptions} options @returns {Promise<Runner>}
 */
export async function litertRunner(litert, bytes, name, md, { executionProviders = ["wasm"], numThreads, litertWasm }) {
  if (numThreads !== undefined && (!Number.isInteger(numThreads) || numThreads < 0)) {
    throw new InputError(`options.numThreads must be an integer >= 0, got ${numThreads}`);
  }
  await ready(litert, litertWasm);
  /** @type {Fallback[]} */
  const fallbacks = [];
  for (const ep of executionProviders) {
    const accelerator = typeof ep === "string" ? ep : ep?.name;
    if (accelerator !== "wasm" && accelerator !== "webgpu") {
      fallbacks.push({ executionProvider: String(accelerator), reason: "LiteRT.js runs on \"wasm\" or \"webgpu\"" });
      continue;
    }
    /** @type {any} */
    let model;
    try {
      if (accelerator === "webgpu" && !litert.isWebGPUSupported?.()) throw new Error("this browser has no WebGPU");
      const cpuOptions = numThreads ? { cpuOptions: { numThreads } } : {};
      // LiteRT.js keeps the bytes it is given: a copy, so the caller's buffer stays theirs
      model = await litert.loadAndCompile(bytes.slice(), { accelerator, ...cpuOptions });
    } catch (e) {
      fallbacks.push({ executionProvider: accelerator, reason: reason(e, 160) });
      continue;
    }
    const ins = model.getInputDetails(), outs = model.getOutputDetails();
    if (ins.length !== md.inputs.length || outs.length !== md.outputs.length) {
      model.delete();
      throw new ArtifactError(`${name} has ${ins.length} input(s) and ${outs.length} output(s), its metadata ` +
        `describes ${md.inputs.length} and ${md.outputs.length}; re-export it`);
    }
    const bad = ins.find((/** @type {any} */ d) => d.dtype !== "float32");
    if (bad) {
      model.delete();
      throw new ArtifactError(`${name} takes ${bad.dtype} input '${bad.name}'; the web runtime feeds float32 ` +
        "(an int8 export keeps float32 inputs): re-export it");
    }
    const outNames = outs.map((/** @type {any} */ d) => d.name);
    const byName = md.outputs.every((o) => outNames.includes(o.name));
    const order = md.outputs.map((o, i) => (byName ? outNames.indexOf(o.name) : i));
    const shapes = ins.map((/** @type {any} */ d) => Array.from(d.shape, (x) => Math.max(Number(x), 1)));
    return {
      inputNames: ins.map((/** @type {any} */ d) => d.name), outputNames: order.map((j) => outNames[j]),
      executionProvider: `litert-${accelerator}`, fallbacks,
      async run(inputs) {
        const tensors = inputs.map((a, i) => new litert.Tensor(a, shapes[i]));
        /** @type {any[]} */
        let results = [];
        try {
          results = await model.run(tensors);
          return order.map((j) => {
            const data = results[j].toTypedArray();
            return data instanceof Float32Array ? data.slice() : Float32Array.from(data, Number);
          });
        } finally {
          for (const t of [...tensors, ...results]) t.delete();
        }
      },
      close: () => model.delete(),
    };
  }
  throw new ArtifactError(`LiteRT.js could not open ${name}: ` +
    `${fallbacks.map((f) => `${f.executionProvider}: ${f.reason}`).join("; ")}; ` +
    (fallbacks.some((f) => f.executionProvider === "wasm") ? "re-export the model with mobilevision export"
      : "add \"wasm\" to options.executionProviders"));
}
