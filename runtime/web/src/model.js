// A loaded model: its metadata, a runner (onnxruntime-web, or a test's), and the task methods, as the Python
// runtime's Model (runtime/api.py) and the Kotlin core's Model / task classes.
import { ArtifactError, InputError, MobileVisionError, reason } from "./errors.js";
import { FloatImage, toRgbImage } from "./image.js";
import { elements, parseMetadata } from "./metadata.js";
import { readOnnxMetadata } from "./onnx_metadata.js";
import { isTflite, readTfliteMetadata } from "./tflite_metadata.js";
import { litertRunner } from "./litert.js";
import { normalize, preprocess } from "./preprocess.js";
import { topK } from "./classify.js";
import { AnomalyResult, toImageSize } from "./anomaly.js";
import { checkBox, cropImage, fullBox, toImage } from "./landmarks.js";
import { normalizeRaw, packBayer, runTiled, toHwc, toUint8 } from "./isp.js";

/**
 * @typedef {import("./metadata.js").Metadata} Metadata
 * @typedef {{inputNames: string[], outputNames: string[], run(inputs: Float32Array[]): Promise<Float32Array[]>,
 *   close(): void | Promise<void>, executionProvider?: string, fallbacks?: Fallback[]}} Runner
 * @typedef {{executionProvider: string, reason: string}} Fallback
 * @typedef {{executionProviders?: (string | {name: string})[], numThreads?: number, sidecar?: string | object,
 *   runner?: Runner, ort?: any, litert?: any, litertWasm?: string}} LoadOptions
 */

const METHODS = /** @type {Record<string, string>} */ ({ classify: "classify", anomaly: "detectAnomaly",
  landmarks: "detectLandmarks", isp: "processRaw" });

export class Model {
  /** @type {Promise<unknown>} */ #queue = Promise.resolve();
  /** @type {Promise<void> | null} */ #released = null;

  /** @param {Metadata | string} metadata parsed (it is checked again) or JSON text @param {Runner} runner */
  constructor(metadata, runner) {
    let text;
    try {
      text = typeof metadata === "string" ? metadata : JSON.stringify(metadata);
    } catch (e) {
      throw new InputError(`a Model needs metadata as JSON text or a plain object (${reason(e)})`);
    }
    /** @type {Metadata} */
    this.metadata = parseMetadata(text);
    if (typeof runner?.run !== "function") throw new InputError("a Model needs a runner with run(inputs) and close()");
    this.runner = runner;
    /** the execution provider the session runs on ("wasm", "webgpu", ...) */
    this.executionProvider = runner.executionProvider ?? "custom";
    /** the providers asked for before it that could not open the model, and why */
    this.fallbacks = runner.fallbacks ?? [];
  }

  /**
   * Runs the raw model on float32 inputs in the metadata's order (row-major), checked against the metadata's shapes.
   * Calls take turns (a session runs one call at a time). @param {Float32Array[]} inputs
   * @returns {Promise<Record<string, Float32Array>>}
   */
  async predict(inputs) {
    const md = this.metadata, specs = md.inputs, names = `[${specs.map((s) => s.name).join(", ")}]`;
    if (!Array.isArray(inputs)) throw new InputError(`predict() takes an array of Float32Array, one per input ${names}`);
    if (inputs.length !== specs.length) {
      throw new InputError(`the model takes ${specs.length} input(s) ${names}, received ${inputs.length}`);
    }
    specs.forEach((spec, i) => {
      const a = inputs[i], n = elements(spec.shape);
      if (!(a instanceof Float32Array)) {
        throw new InputError(`input '${spec.name}' must be a Float32Array, got ${/** @type {any} */ (a)?.constructor?.name ?? a}`);
      }
      if (a.length !== n) {
        throw new InputError(`input '${spec.name}' expects ${n} values [${spec.shape}], received ${a.length}`);
      }
    });
    if (this.#released) throw new ArtifactError(`${md.model} is closed: load it again`);
    const run = this.#queue.then(() => this.runner.run(inputs));
    this.#queue = run.catch(() => {});
    let outs;
    try {
      outs = await run;
    } catch (e) {   // onnxruntime-web's own errors become ours
      throw e instanceof MobileVisionError ? e : new ArtifactError(`${md.model} failed to run (${reason(e)})`, { cause: e });
    }
    if (!Array.isArray(outs) || outs.length !== md.outputs.length) {
      throw new ArtifactError(`the runtime returned ${outs?.length} outputs, the metadata names ${md.outputs.length}; ` +
        "re-export the model");
    }
    md.outputs.forEach((spec, i) => {
      if (!(outs[i] instanceof Float32Array)) {
        throw new ArtifactError(`output '${spec.name}' is not float32; re-export the model`);
      }
      if (spec.shape.every((d) => d > 0) && outs[i].length !== elements(spec.shape)) {
        throw new ArtifactError(`output '${spec.name}' has ${outs[i].length} values, the metadata says [${spec.shape}]; ` +
          "the model and its metadata do not match: re-export it");
      }
    });
    return Object.fromEntries(md.outputs.map((spec, i) => [spec.name, outs[i]]));
  }

  /** @param {string} task */
  #require(task) {
    const md = this.metadata;
    if (md.task !== task) {
      const use = METHODS[md.task] ? `use model.${METHODS[md.task]}()` : "use model.predict()";
      throw new InputError(`${md.model} is a '${md.task}' model, not '${task}': ${use}`);
    }
    return md;
  }

  /** @param {string} task */
  #preprocessing(task) {
    const md = this.#require(task);
    if (!md.preprocessing) {
      throw new ArtifactError(`${md.model} has no preprocessing in its metadata; re-export it with mobilevision export`);
    }
    return md.preprocessing;
  }

  /** Top-k classes of an image. @param {any} image @param {number} [k] */
  async classify(image, k = 5) {
    const pre = this.#preprocessing("classify"), md = this.metadata;
    const out = await this.predict([preprocess(toRgbImage(image), pre)]);
    return topK(Object.values(out)[0], k, md.labels, md.scores);
  }

  /** Anomaly score and map (at the image's size) of an image; the decision uses `threshold`, else the F1-optimal
   * one the artifact's metadata carries (`anomaly.image`), else there is none.
   * @param {any} image @param {{threshold?: number | null}} [options] */
  async detectAnomaly(image, { threshold = null } = {}) {
    const pre = this.#preprocessing("anomaly"), md = this.metadata;
    if (threshold != null && !Number.isFinite(threshold)) {
      throw new InputError(`threshold must be a finite number, got ${threshold}`);
    }
    const spec = md.outputs.find((o) => o.name === "anomaly_map");
    if (!spec || spec.shape.length < 2) throw new ArtifactError(`${md.model} has no 'anomaly_map' output; re-export it`);
    const rgb = toRgbImage(image);
    const out = await this.predict([preprocess(rgb, pre)]);
    if (!out.score) throw new ArtifactError(`${md.model} has no 'score' output; re-export it`);
    const [h, w] = spec.shape.slice(-2);
    const map = toImageSize(new FloatImage(w, h, out.anomaly_map), rgb.width, rgb.height);
    const own = md.anomaly;   // the F1-optimal thresholds the artifact carries from training, if any
    return new AnomalyResult(out.score[0], map, threshold ?? own?.image ?? null, rgb, own?.pixel ?? null);
  }

  /** Landmarks [x0, y0, x1, y1, ...] in image pixels of the face in `box` ([x0, y0, x1, y1], default the image).
   * @param {any} image @param {ArrayLike<number> | null} [box] */
  async detectLandmarks(image, box = null) {
    const pre = this.#preprocessing("landmarks"), md = this.metadata;
    if (!md.landmarks) {
      throw new ArtifactError(`${md.model} has no landmark description in its metadata; re-export it`);
    }
    const rgb = toRgbImage(image), [h, w] = pre.crop;
    const b = box == null ? fullBox(rgb.width, rgb.height) : checkBox(box);
    const crop = cropImage(rgb, b, w, h);
    const out = Object.values(await this.predict([normalize(crop, pre)]))[0];
    if (out.length !== 2 * md.landmarks.points) {
      throw new ArtifactError(`the model returned ${out.length} values, expected ${2 * md.landmarks.points}`);
    }
    return toImage(out, b, w, h);
  }

  /**
   * RGB of a Bayer mosaic through an ISP model: packed, normalised with the given levels (default the metadata's)
   * and run in tiles. Odd sizes lose their last row / column.
   * @param {ArrayLike<number>} mosaic @param {number} width @param {number} height
   * @param {{pattern?: string, blackLevel?: number | number[] | null, whiteLevel?: number | null, clip?: boolean | null}} [options]
   */
  async processRaw(mosaic, width, height, { pattern = "RGGB", blackLevel = null, whiteLevel = null, clip = null } = {}) {
    const md = this.#require("isp"), raw = md.raw, shape = md.inputs[0]?.shape ?? [];
    if (!raw) throw new ArtifactError(`${md.model} has no RAW description in its metadata; re-export it`);
    if (shape.length !== 4 || shape[1] !== 4) {
      throw new ArtifactError(`an ISP model takes (1, 4, h, w) packed RAW, got [${shape}]`);
    }
    const [, , th, tw] = shape;
    const packed = normalizeRaw(packBayer(mosaic, width, height, pattern), blackLevel ?? raw.black_level,
      whiteLevel ?? raw.white_level, clip ?? raw.clip);
    const h = height >> 1, w = width >> 1;
    if (h < th || w < tw) {
      throw new InputError(`the mosaic packs to ${w}x${h}, smaller than the model's ${tw}x${th} tile: export the ` +
        "model with a smaller --imgsz");
    }
    const run = async (/** @type {Float32Array} */ tile) => Object.values(await this.predict([tile]))[0];
    const { chw, tiles } = await runTiled(packed, h, w, th, tw, run);
    const rgb = toHwc(chw, 2 * w, 2 * h);
    return { rgb, width: 2 * w, height: 2 * h, rgb8: toUint8(rgb, 2 * w, 2 * h), tiles };
  }

  /** Releases the runner once the calls made before it return; later calls throw. Closing twice is harmless. */
  close() {
    this.#released ??= this.#queue.then(() => this.runner.close()).then(() => {}, () => {});
    return this.#released;
  }
}

/** The model's bytes and a name for messages. @param {unknown} source */
async function read(source) {
  if (source instanceof ArrayBuffer) return { bytes: new Uint8Array(source), name: "the model" };
  if (ArrayBuffer.isView(source)) {
    return { bytes: new Uint8Array(source.buffer, source.byteOffset, source.byteLength), name: "the model" };
  }
  if (typeof source !== "string" && !(source instanceof URL)) {
    throw new InputError("load() takes a URL or the model's bytes (ArrayBuffer / Uint8Array), got " +
      `${source === null || typeof source !== "object" ? String(source) : source.constructor?.name}`);
  }
  let url;
  try {
    url = new URL(source, globalThis.location?.href);
  } catch {
    throw new InputError(`'${source}' is not a URL: give an absolute URL (or the model's bytes)`);
  }
  const last = url.pathname.split("/").pop() || url.href;
  let name = last;
  try { name = decodeURIComponent(last); } catch { /* a malformed %-escape: keep it as written */ }
  const refused = `the browser refused to fetch ${url.href} (file:// pages and other origins without CORS cannot be ` +
    "read): serve the files over http, e.g. `mobilevision serve-demo <dir>`";
  if (url.protocol === "file:") throw new ArtifactError(refused);
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw new ArtifactError(e instanceof TypeError ? refused : `cannot fetch ${url.href} (${reason(e)}); check the address`);
  }
  if (!response.ok) {
    const status = `${response.status}${response.statusText ? " " + response.statusText : ""}`;
    throw new ArtifactError(`cannot fetch ${url.href}: HTTP ${status}; check the address`);
  }
  try {
    return { bytes: new Uint8Array(await response.arrayBuffer()), name };
  } catch (e) {
    throw new ArtifactError(`reading ${url.href} failed (${reason(e)}); try again`);
  }
}

/** `e` (a metadata error) with `where` in front. @param {unknown} e @param {string} where */
function located(e, where) {
  if (!(e instanceof MobileVisionError)) return new InputError(`${where}: ${reason(e)}`, { cause: e });
  const Class = /** @type {typeof MobileVisionError} */ (e.constructor);
  return new Class(`${where}: ${e.message}`, { cause: e });
}

/** @param {any} ort @param {Uint8Array} bytes @param {string} name @param {Metadata} md @param {LoadOptions} options
 * @returns {Promise<Runner>} */
async function ortRunner(ort, bytes, name, md, { executionProviders = ["wasm"], numThreads }) {
  if (!Array.isArray(executionProviders) || executionProviders.length === 0) {
    throw new InputError("options.executionProviders must list at least one provider, e.g. [\"webgpu\", \"wasm\"]");
  }
  if (numThreads !== undefined) {
    if (!Number.isInteger(numThreads) || numThreads < 0) {
      throw new InputError(`options.numThreads must be an integer >= 0, got ${numThreads}`);
    }
    ort.env.wasm.numThreads = numThreads;   // read once, when onnxruntime-web's WASM starts
  }
  /** @type {Fallback[]} */
  const fallbacks = [];
  for (const ep of executionProviders) {
    const epName = typeof ep === "string" ? ep : ep?.name;
    /** @type {any} */
    let session;
    try {
      session = await ort.InferenceSession.create(bytes, { executionProviders: [ep] });
    } catch (e) {
      fallbacks.push({ executionProvider: String(epName), reason: reason(e, 160) });   // onnxruntime's can be long
      continue;
    }
    if (session.inputNames.length !== md.inputs.length || session.outputNames.length !== md.outputs.length) {
      await session.release();
      throw new ArtifactError(`${name} has ${session.inputNames.length} input(s) and ${session.outputNames.length} ` +
        `output(s), its metadata describes ${md.inputs.length} and ${md.outputs.length}; re-export it`);
    }
    // by position: the session's names may differ from the metadata's (Python's _renamed does the same)
    const shapes = md.inputs.map((s) => s.shape.map((d) => Math.max(d, 1)));
    return {
      inputNames: session.inputNames, outputNames: session.outputNames, executionProvider: String(epName), fallbacks,
      async run(inputs) {
        const feeds = Object.fromEntries(session.inputNames.map((/** @type {string} */ n, /** @type {number} */ i) =>
          [n, new ort.Tensor("float32", inputs[i], shapes[i])]));
        const out = await session.run(feeds);
        return session.outputNames.map((/** @type {string} */ n) => {
          const t = out[n], d = t.data;
          const data = d instanceof Float32Array ? d : Float32Array.from(d, Number);
          t.dispose?.();
          return data;
        });
      },
      close: () => session.release(),
    };
  }
  const hint = fallbacks.some((f) => f.executionProvider === "wasm") ? "re-export the model with mobilevision export"
    : "add \"wasm\" to options.executionProviders";
  throw new ArtifactError(`no execution provider could open ${name}: ` +
    `${fallbacks.map((f) => `${f.executionProvider}: ${f.reason}`).join("; ")}; ${hint}`);
}

/** The module `specifier` (options[key] when given), imported on first use. @param {any} given
 * @param {string} specifier @param {string} key */
async function runtimeModule(given, specifier, key) {
  if (given) return given;
  try {
    return await import(specifier);
  } catch (e) {
    throw new MobileVisionError(`${specifier} could not be imported (${reason(e)}): map it in the page's import ` +
      `map or pass options.${key}`);
  }
}

/**
 * Opens an exported model (URL or bytes) with its embedded mobilevision metadata (or options.sidecar): a .onnx
 * in onnxruntime-web, a .tflite in LiteRT.js (told apart by their bytes, not their names).
 * @param {string | URL | ArrayBuffer | Uint8Array} source @param {LoadOptions} [options]
 */
export async function load(source, options = {}) {
  const { sidecar, runner } = options;
  const { bytes, name } = await read(source);
  const tflite = isTflite(bytes);
  const embedded = tflite ? readTfliteMetadata(bytes, name) : readOnnxMetadata(bytes, name);
  if (embedded === null && sidecar == null) {
    throw new ArtifactError(`${name} carries no mobilevision metadata: export it with \`mobilevision export\` or ` +
      "pass options.sidecar");
  }
  if (embedded === null && typeof sidecar !== "string" && typeof sidecar !== "object") {
    throw new InputError(`options.sidecar is the metadata JSON text or object, got ${typeof sidecar}`);
  }
  let md;
  try {
    md = parseMetadata(embedded ?? (typeof sidecar === "string" ? sidecar : JSON.stringify(sidecar)));
  } catch (e) {
    throw located(e, embedded === null ? `${name} (options.sidecar)` : `${name} (embedded)`);
  }
  if (runner) return new Model(md, runner);
  if (tflite) {
    const litert = await runtimeModule(options.litert, "@litertjs/core", "litert");
    return new Model(md, await litertRunner(litert, bytes, name, md, options));
  }
  const ort = await runtimeModule(options.ort, "onnxruntime-web", "ort");
  return new Model(md, await ortRunner(ort, bytes, name, md, options));
}
