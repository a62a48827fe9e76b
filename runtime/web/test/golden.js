// Replays the golden vectors the Python runtime writes (runtime/golden.py) through this package, step by step,
// as the Kotlin GoldenTest does: resized / crop bytes bit-exact, tensors and results within the manifest's
// tolerance, every model call's inputs checked by a replay runner that answers with the recorded outputs. With
// onnxruntime-web (LiteRT.js) it also runs each copied .onnx (.tflite) on the recorded inputs and checks its
// embedded metadata.
// Runs in a browser (test/golden.html) and in Node (test/node_golden.mjs); failures are collected, never fatal.
import {
  FloatImage, Model, RgbImage, cropImage, fullBox, heatmap, latencyStats, load, normalizeRaw, overlay, packBayer,
  parseMetadata, preprocess as pre, readOnnxMetadata, readTfliteMetadata, resample,
} from "../src/index.js";

const TYPES = /** @type {const} */ ({ uint8: Uint8Array, uint16: Uint16Array, float32: Float32Array, float64: Float64Array });

/**
 * @param {(name: string) => Promise<ArrayBuffer>} readFile a file of the golden folder
 * @param {{ort?: any, litert?: any, onLog?: (line: string) => void}} [options]
 * @returns {Promise<{checks: number, failures: string[], ran: Record<string, number>}>}
 */
export async function runGolden(readFile, { ort = null, litert = null, onLog = () => {} } = {}) {
  const decode = async (/** @type {string} */ name) => new TextDecoder().decode(await readFile(name));
  const manifest = JSON.parse(await decode("golden.json"));
  const tol = manifest.tolerance, modelTol = manifest.model_tolerance ?? 1e-4;
  /** @type {string[]} */
  const failures = [];
  let checks = 0;
  /** artifacts run per runtime @type {Record<string, number>} */
  const ran = {};
  /** One check: `fn` returns null when it passes, else what differs (a thrown error is a failure too).
   * @param {string} what @param {() => string | null | undefined | Promise<string | null | undefined>} fn */
  const check = async (what, fn) => {
    checks++;
    try {
      const bad = await fn();
      if (bad) failures.push(`${what}: ${bad}`);
    } catch (e) {
      failures.push(`${what}: threw ${/** @type {Error} */ (e)?.name}: ${/** @type {Error} */ (e)?.message ?? e}`);
    }
  };
  /** A manifest array entry as its typed array (a copy: aligned, little-endian as written). @param {any} e */
  const array = async (e) => {
    const T = TYPES[/** @type {keyof TYPES} */ (e.dtype)];
    if (!T) throw new Error(`golden dtype ${e.dtype} is not supported`);
    const buf = await readFile(e.file), n = e.shape.reduce((/** @type {number} */ a, /** @type {number} */ d) => a * d, 1);
    if (buf.byteLength !== n * T.BYTES_PER_ELEMENT) throw new Error(`${e.file} holds ${buf.byteLength} bytes for ${e.dtype} [${e.shape}]`);
    return Object.assign(new T(buf.slice(0)), { shape: /** @type {number[]} */ (e.shape) });
  };
  const image = async (/** @type {any} */ e) => { const a = await array(e); return new RgbImage(a.shape[1], a.shape[0], /** @type {Uint8Array} */ (a)); };

  for (const m of manifest.models) {
    const mdText = await decode(m.metadata);
    /** @type {import("../src/metadata.js").Metadata | null} */
    let md = null;
    await check(`${m.artifact} metadata`, () => { md = parseMetadata(mdText); return null; });
    if (!md) continue;
    const metadata = /** @type {import("../src/metadata.js").Metadata} */ (md);
    for (const c of m.cases) {
      try {
        await replayCase(m, c, metadata);
      } catch (e) {
        failures.push(`${c.name}: stopped, threw ${/** @type {Error} */ (e)?.name}: ${/** @type {Error} */ (e)?.message ?? e}`);
      }
    }
    if (ort && m.onnx) {
      await artifactChecks(m, m.onnx, metadata, readFile, readOnnxMetadata, { ort }, "onnxruntime-web", check, modelTol, ran);
    }
    if (litert && m.tflite) {
      await artifactChecks(m, m.tflite, metadata, readFile, readTfliteMetadata, { litert }, "LiteRT.js", check, modelTol, ran);
    }
    onLog(`${m.artifact}: ${m.cases.length} cases, ${failures.length} failures so far`);
  }

  /** @param {any} m @param {any} c @param {import("../src/metadata.js").Metadata} metadata */
  async function replayCase(m, c, metadata) {
    const p = metadata.preprocessing;
    const calls = await Promise.all(c.calls.map(async (/** @type {any} */ call) => ({
      inputs: await Promise.all(call.inputs.map(array)), outputs: await Promise.all(call.outputs.map(array)) })));
    const name = c.name;
    const replay = new ReplayRunner(calls, name, tol, (line) => failures.push(line));
    const model = new Model(metadata, replay);
    const want = c.result;
    if (m.task === "classify" && p) {
      const img = await image(c.image), resized = pre.resized(img, p);
      await check(`${name} resized`, async () => bytes(await array(c.resized), resized.data));
      await check(`${name} tensor`, async () => close(await array(c.tensor), pre.normalize(resized, p), tol));
      const top = await model.classify(img, c.top_k);
      await check(`${name} top-k`, () => same(want.map((/** @type {any} */ r) => r.index), top.map((t) => t.index)));
      await check(`${name} labels`, () => same(want.map((/** @type {any} */ r) => r.label), top.map((t) => t.label)));
      await check(`${name} scores`, () => close(want.map((/** @type {any} */ r) => r.score), top.map((t) => t.score), tol));
    } else if (m.task === "anomaly" && p) {
      const img = await image(c.image);
      await check(`${name} resized`, async () => bytes(await array(c.resized), pre.resized(img, p).data));
      await check(`${name} tensor`, async () => close(await array(c.tensor), pre.preprocess(img, p), tol));
      const r = await model.detectAnomaly(img, { threshold: c.threshold });   // null: the artifact's own
      const map = await array(want.anomaly_map);
      await check(`${name} score`, () => close([want.score], [r.score], tol));
      await check(`${name} thresholds used`, () => same([want.threshold, want.pixel_threshold],
        [r.threshold, r.pixelThreshold]));
      await check(`${name} decision`, () => same([want.is_anomalous], [r.isAnomalous]));
      await check(`${name} map size`, () => same(map.shape, [img.height, img.width]));
      await check(`${name} map at image size`, () => close(map, r.map.data, tol));
      // colours: from the Python map (integer steps bit-exact), and from ours
      const heat = heatmap(new FloatImage(img.width, img.height, /** @type {Float32Array} */ (map)));
      const wantHeat = await array(want.heatmap), wantOverlay = await array(want.overlay);
      await check(`${name} heatmap`, () => bytes(wantHeat, heat.data));
      await check(`${name} heatmap (own map)`, () => bytes(wantHeat, r.heatmap().data));
      await check(`${name} overlay`, () => bytes(wantOverlay, overlay(img, heat).data));
      await check(`${name} overlay (own map)`, () => bytes(wantOverlay, r.overlay().data));
    } else if (m.task === "isp" && metadata.raw) {
      const raw = metadata.raw, mosaic = await array(c.mosaic), [h, w] = mosaic.shape;
      await check(`${name} packed`, async () => close(await array(c.packed), normalizeRaw(packBayer(mosaic, w, h, c.pattern),
        c.black_level ?? raw.black_level, c.white_level ?? raw.white_level, raw.clip), tol));
      const r = await model.processRaw(mosaic, w, h, { pattern: c.pattern, blackLevel: c.black_level, whiteLevel: c.white_level });
      const rgb = await array(want.rgb);
      await check(`${name} size`, () => same(rgb.shape, [r.height, r.width, 3]));
      await check(`${name} rgb`, () => close(rgb, r.rgb, tol));
      await check(`${name} rgb8`, async () => bytes(await array(want.rgb8), r.rgb8.data));
      await check(`${name} tiles`, () => same([calls.length], [r.tiles]));
    } else if (m.task === "landmarks" && p) {
      const img = await image(c.image), box = c.box ?? fullBox(img.width, img.height);
      const crop = cropImage(img, box, p.crop[1], p.crop[0]);
      await check(`${name} crop`, async () => bytes(await array(c.crop), crop.data));
      await check(`${name} tensor`, async () => close(await array(c.tensor), pre.normalize(crop, p), tol));
      const pts = await model.detectLandmarks(img, c.box);
      await check(`${name} landmarks`, async () => close(await array(c.result), pts, tol));
    } else {
      await check(`${name}`, () => `no replay for task '${m.task}' with this metadata`);
      return;
    }
    await check(`${name} model calls`, () => same([calls.length], [replay.next]));
  }

  for (const c of manifest.resample) {
    await check(`resample ${c.name}`, async () => {
      const [w, h] = c.size;
      if (c.image) return bytes(await array(c.result), resample.resize(await image(c.image), w, h, c.filter, c.box).data);
      const a = await array(c.map);
      const out = resample.resizeFloat(new FloatImage(a.shape[1], a.shape[0], /** @type {Float32Array} */ (a)), w, h, c.filter, c.box);
      return close(await array(c.result), out.data, tol);
    });
  }
  for (const c of manifest.latency_stats) {
    await check(`latency_stats of ${c.samples_ms.length} samples`, () => {
      const got = /** @type {Record<string, number>} */ (/** @type {unknown} */ (latencyStats(c.samples_ms)));
      const keys = Object.keys(c.stats).sort().join();
      if (keys !== Object.keys(got).sort().join()) return `keys ${Object.keys(got)} differ from ${keys}`;
      return Object.keys(c.stats).map((k) => (Math.abs(c.stats[k] - got[k]) <= 1e-9 ? null : `${k} expected ${c.stats[k]}, got ${got[k]}`))
        .find((x) => x) ?? null;
    });
  }
  onLog(`resample: ${manifest.resample.length} cases; latency_stats: ${manifest.latency_stats.length} cases`);
  return { checks, failures, ran };
}

/** A copied artifact (.onnx in onnxruntime-web, .tflite in LiteRT.js): the embedded metadata equals the manifest's,
 * and every recorded call's inputs give the recorded outputs within the model tolerance (relative to max(1, |expected|)).
 * @param {any} m @param {string} file @param {import("../src/metadata.js").Metadata} md
 * @param {(name: string) => Promise<ArrayBuffer>} readFile @param {(b: ArrayBuffer, name: string) => string | null} readMetadata
 * @param {object} loadOptions @param {string} runtime
 * @param {(what: string, fn: () => any) => Promise<void>} check @param {number} modelTol
 * @param {Record<string, number>} ran counts the artifacts each runtime ran */
async function artifactChecks(m, file, md, readFile, readMetadata, loadOptions, runtime, check, modelTol, ran) {
  const bytesOf = await readFile(file);
  await check(`${file} embedded metadata`, () => {
    const text = readMetadata(bytesOf, file);
    return text === null ? "no mobilevision entry" : same([JSON.stringify(md)], [JSON.stringify(parseMetadata(text))]);
  });
  /** @type {Model | null} */
  let model = null;
  await check(`${file} loads in ${runtime}`, async () => { model = await load(bytesOf.slice(0), loadOptions); return null; });
  if (!model) return;
  const loaded = /** @type {Model} */ (model);
  ran[runtime] = (ran[runtime] ?? 0) + 1;
  const TYPES32 = async (/** @type {any} */ e) => new Float32Array((await readFile(e.file)).slice(0));
  for (const c of m.cases) {
    for (const [i, call] of c.calls.entries()) {
      await check(`${c.name} call ${i + 1} in ${runtime} (${loaded.executionProvider})`, async () => {
        const outs = Object.values(await loaded.predict(await Promise.all(call.inputs.map(TYPES32))));
        for (const [j, e] of call.outputs.entries()) {
          const bad = close(await TYPES32(e), outs[j], modelTol, true);
          if (bad) return `output ${j}: ${bad}`;
        }
        return null;
      });
    }
  }
  await loaded.close();
}

/** A runner that replays the recorded model calls: each call's inputs must match the recorded inputs (so the
 * preprocessing and tiling are checked too), and it answers with the recorded outputs. */
class ReplayRunner {
  /** @param {{inputs: Float32Array[], outputs: any[]}[]} calls @param {string} name @param {number} tol
   * @param {(line: string) => void} fail */
  constructor(calls, name, tol, fail) {
    this.calls = calls; this.name = name; this.tol = tol; this.fail = fail; this.next = 0;
    /** @type {string[]} */ this.inputNames = [];
    /** @type {string[]} */ this.outputNames = [];
    this.executionProvider = "replay";
  }

  /** @param {Float32Array[]} inputs */
  async run(inputs) {
    if (this.next >= this.calls.length) throw new Error(`more model calls than the Python runtime made (${this.calls.length})`);
    const call = this.calls[this.next++];
    if (inputs.length !== call.inputs.length) this.fail(`${this.name} call ${this.next}: ${inputs.length} inputs, expected ${call.inputs.length}`);
    call.inputs.forEach((e, i) => {
      const bad = close(e, inputs[i] ?? [], this.tol);
      if (bad) this.fail(`${this.name} call ${this.next} input ${i}: ${bad}`);
    });
    return call.outputs.map((o) => new Float32Array(o));
  }

  close() {}
}

/** null when `got` equals `expected` byte for byte, else how many differ and the first.
 * @param {ArrayLike<number>} expected @param {ArrayLike<number>} got */
function bytes(expected, got) {
  if (expected.length !== got.length) return `size ${got.length}, expected ${expected.length}`;
  let bad = 0, first = -1;
  for (let i = 0; i < expected.length; i++) if (expected[i] !== got[i]) { bad++; if (first < 0) first = i; }
  return bad ? `${bad} of ${expected.length} bytes differ, first at index ${first} (expected ${expected[first]}, got ${got[first]})` : null;
}

/** null when every |expected - got| <= tol (times max(1, |expected|) when relative), else the worst.
 * @param {ArrayLike<number>} expected @param {ArrayLike<number>} got @param {number} tol */
function close(expected, got, tol, relative = false) {
  if (expected.length !== got.length) return `size ${got.length}, expected ${expected.length}`;
  let worst = 0, at = -1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(expected[i] - got[i]) / (relative ? Math.max(1, Math.abs(expected[i])) : 1);
    if (!(d <= worst)) { worst = d; at = i; }
    if (Number.isNaN(d)) break;
  }
  return worst <= tol ? null : `max |diff| ${worst} at index ${at} (expected ${expected[at]}, got ${got[at]}) > ${tol}`;
}

/** null when the two lists are equal item by item. @param {unknown[]} expected @param {unknown[]} got */
function same(expected, got) {
  const e = JSON.stringify(expected), g = JSON.stringify(got);
  return e === g ? null : `expected ${e.slice(0, 200)}, got ${g.slice(0, 200)}`;
}
