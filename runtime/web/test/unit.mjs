// Error cases of the web runtime (node --test runtime/web/test/unit.mjs): untrusted metadata and ONNX bytes,
// misuse of a model, bad images and inputs. Every error must be a MobileVisionError of the right class, one line.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { test } from "node:test";
import * as mv from "../src/index.js";

const { ArtifactError, InputError, MobileVisionError, Model, RgbImage, load, parseMetadata, readOnnxMetadata } = mv;

const BASE = {
  task: "classify", model: "toy", target: "onnx", precision: "fp32",
  inputs: [{ name: "image", shape: [1, 3, 4, 4], dtype: "float32", layout: "NCHW" }],
  outputs: [{ name: "logits", shape: [1, 3] }],
  preprocessing: { resize: 4, crop: [4, 4], interpolation: "bilinear", scale: 0.5, mean: [0.5, 0.5, 0.5],
    std: [0.25, 0.25, 0.25], color: "RGB", layout: "NCHW", resize_mode: "shorter_side" },
  labels: ["a", "b", "c"], num_classes: 3, parity: { max_abs: 0.125 }, schema_version: 6,
};
/** BASE with `path` ("inputs.0.shape.1") set to `value` (undefined deletes it), as JSON text. */
function meta(path = "", value = undefined) {
  const root = structuredClone(BASE);
  if (path) {
    const keys = path.split("."), last = keys.pop();
    const node = keys.reduce((o, k) => o[k], root);
    if (value === undefined) delete node[last]; else node[last] = value;
  }
  return JSON.stringify(root);
}

/** `fn` must throw (or reject with) an error of class `Class` whose one-line message contains every `words`. */
async function refuses(fn, Class, ...words) {
  let err = null;
  try { await fn(); } catch (e) { err = e; }
  assert.ok(err, `no error; expected ${Class.name} mentioning ${words}`);
  assert.ok(err instanceof Class && err instanceof MobileVisionError, `${err?.constructor?.name}: ${err?.message}`);
  assert.ok(!err.message.includes("\n"), `message is not one line: ${err.message}`);
  for (const w of words) assert.ok(err.message.includes(w), `'${err.message}' does not mention '${w}'`);
  return err;
}

/** A protobuf writer for crafted ONNX files. */
const varint = (n) => { const out = []; do { out.push((n % 128) + (n >= 128 ? 128 : 0)); n = Math.floor(n / 128); } while (n > 0); return out; };
const field = (num, bytes) => [...varint(num * 8 + 2), ...varint(bytes.length), ...bytes];
const utf8 = (s) => [...new TextEncoder().encode(s)];
function onnx({ entries = [], graph = true, version = true } = {}) {
  return new Uint8Array([
    ...(version ? [0x08, 9] : []), ...field(2, utf8("pytorch")), ...(graph ? field(7, field(2, utf8("g"))) : []),
    ...field(8, [0x10, 18]), ...entries.flatMap(([k, v]) => field(14, [...field(1, k), ...field(2, v)])),
  ]);
}

/** A runner that returns fixed logits and counts its calls. */
function fakeRunner(outputs = [new Float32Array([1, 3, 2])]) {
  return { inputNames: ["image"], outputNames: ["logits"], calls: 0, closed: false,
    async run() { this.calls++; await new Promise((r) => setTimeout(r, 5)); return outputs.map((o) => o.slice()); },
    close() { this.closed = true; } };
}

test("the public API has every name the brief lists", () => {
  for (const name of ["load", "Model", "MobileVisionError", "ArtifactError", "InputError", "parseMetadata", "readOnnxMetadata",
    "RgbImage", "FloatImage", "toRgbImage", "toImageData", "resample", "preprocess", "topK", "softmax", "heatmap", "overlay",
    "fullBox", "cropImage", "packBayer", "cropEven", "normalizeRaw", "toUint8", "latencyStats"]) {
    assert.ok(mv[name] !== undefined, name);
  }
  for (const fn of ["resize", "resizeFloat"]) assert.equal(typeof mv.resample[fn], "function");
  for (const fn of ["resized", "normalize", "preprocess"]) assert.equal(typeof mv.preprocess[fn], "function");
});

test("valid metadata loads with the schema's defaults; unknown top-level fields are ignored", () => {
  const md = parseMetadata("\uFEFF" + meta("extra_field", 1));
  assert.equal(md.preprocessing.resize_mode, "shorter_side");
  assert.equal(md.preprocessing.normalization, "app");
  assert.equal(md.outputs[0].dtype, "float32");
  assert.deepEqual([md.raw, md.landmarks, md.scores, md.created, md.tools], [null, null, null, "", {}]);
  assert.equal(parseMetadata(meta("schema_version")).schema_version, 0);
  assert.equal(parseMetadata(meta("labels.0", "\u{1F600}".repeat(1024))).labels[0].length, 2048);   // 1024 code points
});

test("bad metadata: one ArtifactError naming the field and the fix", async () => {
  const cases = [
    [meta("task", 3), "metadata.task"], [meta("inputs.0.shape.1", "3"), "metadata.inputs[0].shape[1]"],
    [meta("inputs.0.shape", [1024, 1024, 1024, 4]), "metadata.inputs[0].shape"],
    [meta("inputs.0.dtype", null), "metadata.inputs[0].dtype"], [meta("preprocessing.interpolation", "cubic"), "interpolation"],
    [meta("preprocessing.crop_pct", 0.875), "unknown field 'crop_pct'"], [meta("preprocessing.std", [1, 0, 1]), "std[1]"],
    [meta("preprocessing.layout", "NHWC"), "preprocessing.layout"], [meta("labels", ["a", "b", "c", "d"]), "num_classes 3"],
    [meta("labels.0", "a\nb"), "control characters"], [meta("labels.1", "x".repeat(1025)), "1024 characters"],
    [meta("schema_version", 2.5), "schema_version"], [meta("created", null), "metadata.created"],
    [meta("raw", { black_level: [64, 64], white_level: 1023 }), "expected 1 or 4"],
    [meta("raw", { black_level: [64], white_level: 10 }), "raw.white_level"],
    [meta("landmarks", { points: 4, flip_pairs: [[0, 4]] }), "flip_pairs[0][1]"],
    [meta("model"), "metadata.model is missing"], [meta().replace('"scale":0.5', '"scale":NaN'), "NaN"],
    [meta().replace('"toy"', '"toy","model":"x"'), "duplicate key 'model'"], [meta().replace("0.125", "1e999"), "1e999"],
    [meta().replace('"num_classes":3', '"num_classes":123456789012345678901'), "21 digits"],
    [meta().replace("0.125", "[".repeat(31) + "]".repeat(31)), "32 levels"],
    [meta().replace("0.125", "[".repeat(100000) + "]".repeat(100000)), "32 levels"],
    [meta().replace('"resize":4', '"resize":04'), "invalid JSON"], ["[1]", "not a JSON object"], ["{", "invalid JSON"],
    [meta("created", " ".repeat(16 << 20)), "16 MiB"],
  ];
  for (const [text, words] of cases) await refuses(() => parseMetadata(text), ArtifactError, words, "re-export");
  assert.equal(parseMetadata(meta().replace("0.125", "[".repeat(30) + "]".repeat(30))).model, "toy");   // 32 levels load
  await refuses(() => parseMetadata(meta("schema_version", mv.SCHEMA_VERSION + 1)), ArtifactError, "newer",
    "upgrade the mobilevision runtime");
});

test("ONNX metadata: found, absent, and truncated or garbage bytes refused", async () => {
  const text = meta();
  assert.equal(readOnnxMetadata(onnx({ entries: [[utf8("other"), utf8("x")], [utf8("mobilevision"), utf8(text)]] })), text);
  assert.equal(readOnnxMetadata(onnx().buffer), null);
  const good = onnx({ entries: [[utf8("mobilevision"), utf8(text)]] });
  for (const n of [1, 5, 21, good.length - 3]) {   // not at a field boundary: those parse
    await refuses(() => readOnnxMetadata(good.subarray(0, n), "m.onnx"), ArtifactError, "m.onnx is not an ONNX model (");
  }
  await refuses(() => readOnnxMetadata(new Uint8Array(0)), ArtifactError, "not an ONNX model (empty file)");
  await refuses(() => readOnnxMetadata(new TextEncoder().encode("<html>not found</html>")), ArtifactError, "not an ONNX model");
  await refuses(() => readOnnxMetadata(onnx({ graph: false })), ArtifactError, "no graph");
  await refuses(() => readOnnxMetadata(onnx({ entries: [[utf8("mobilevision"), [0xff, 0xfe]]] })), ArtifactError, "not UTF-8");
  let seed = 7;
  for (let i = 0; i < 200; i++) {   // random bytes: an ArtifactError or (rarely) a parse, never anything else
    const junk = Uint8Array.from({ length: 64 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
    try { readOnnxMetadata(junk); } catch (e) { assert.ok(e instanceof ArtifactError, String(e)); }
  }
});

test("load(): metadata from the file or the sidecar, one-line errors otherwise", async () => {
  const runner = fakeRunner();
  const m = await load(onnx({ entries: [[utf8("mobilevision"), utf8(meta())]] }), { runner });
  assert.equal(m.metadata.model, "toy");
  assert.equal((await load(onnx().buffer, { runner, sidecar: JSON.parse(meta()) })).metadata.task, "classify");
  await refuses(() => load(onnx(), { runner }), ArtifactError, "the model carries no mobilevision metadata", "options.sidecar");
  await refuses(() => load(onnx(), { runner, sidecar: '{"task": 3}' }), ArtifactError, "options.sidecar", "metadata.task");
  await refuses(() => load(new ArrayBuffer(0), { runner }), ArtifactError, "not an ONNX model");
  await refuses(() => load(42), InputError, "URL or the model's bytes");
  await refuses(() => load("file:///etc/hosts"), ArtifactError, "refused to fetch file:///etc/hosts", "serve-demo");
  await refuses(() => load(onnx({ entries: [[utf8("mobilevision"), utf8(meta())]] }), { ort: {}, executionProviders: [] }),
    InputError, "executionProviders");
  const failing = { env: { wasm: {} }, InferenceSession: { create: async () => { throw new Error("no\nbackend"); } } };
  await refuses(() => load(onnx({ entries: [[utf8("mobilevision"), utf8(meta())]] }), { ort: failing, executionProviders: ["webgpu", "wasm"] }),
    ArtifactError, "no execution provider could open", "webgpu: no backend", "wasm: no backend");
});

test("load() over http: the status and URL of a failed fetch", async () => {
  const server = createServer((req, res) => {
    if (req.url === "/m.onnx") { res.end(onnx({ entries: [[utf8("mobilevision"), utf8(meta())]] })); return; }
    res.statusCode = 404;
    res.end("nope");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${server.address().port}`;
  try {
    assert.equal((await load(`${base}/m.onnx`, { runner: fakeRunner() })).metadata.model, "toy");
    await refuses(() => load(new URL(`${base}/missing.onnx`), { runner: fakeRunner() }), ArtifactError, "HTTP 404", `${base}/missing.onnx`);
  } finally {
    server.close();
  }
});

/** An anomaly detector's metadata text (2x2 input and map) with `anomaly` thresholds. @param {any} anomaly */
function anomalyMeta(anomaly) {
  const md = { ...structuredClone(BASE), task: "anomaly", labels: null, num_classes: null, schema_version: 7, anomaly,
    inputs: [{ name: "image", shape: [1, 3, 2, 2], dtype: "float32", layout: "NCHW" }],
    outputs: [{ name: "anomaly_map", shape: [1, 1, 2, 2], dtype: "float32" }, { name: "score", shape: [1], dtype: "float32" }] };
  md.preprocessing = { ...md.preprocessing, resize: 2, crop: [2, 2], resize_mode: "stretch" };
  return JSON.stringify(md);
}

test("anomaly thresholds: parsed, checked, and the decision's default", async () => {
  const own = { image: 0.25, pixel: 0.15, image_f1: 0.9, pixel_f1: 0.5, source: "F1-optimal on x" };
  assert.deepEqual(parseMetadata(anomalyMeta(own)).anomaly, own);
  assert.deepEqual(parseMetadata(anomalyMeta({ image: 1 })).anomaly,
    { image: 1, pixel: null, image_f1: null, pixel_f1: null, source: "" });
  assert.equal(parseMetadata(anomalyMeta(null)).anomaly, null);
  for (const [bad, words] of [[0.1, "metadata.anomaly"], [{ image: "0.1" }, "anomaly.image"], [{ pixel: 0.1 }, "anomaly.image"],
    [{ image: 0.1, pixel: true }, "anomaly.pixel"], [{ image: 0.1, extra: 1 }, "extra"]]) {
    await refuses(() => parseMetadata(anomalyMeta(bad)), ArtifactError, words, "re-export");
  }
  const runner = () => ({ ...fakeRunner([new Float32Array([0.1, 0.2, 0.3, 0.4]), new Float32Array([0.3])]),
    outputNames: ["anomaly_map", "score"] });
  const img = new RgbImage(2, 2);
  const m = new Model(parseMetadata(anomalyMeta(own)), runner());
  const r = await m.detectAnomaly(img);
  assert.deepEqual([r.score.toFixed(3), r.threshold, r.isAnomalous, r.pixelThreshold], ["0.300", 0.25, true, 0.15]);
  assert.deepEqual([...r.anomalousPixels()], [0, 1, 1, 1]);
  const given = await m.detectAnomaly(img, { threshold: 0.5 });
  assert.deepEqual([given.threshold, given.isAnomalous], [0.5, false]);
  const none = await new Model(parseMetadata(anomalyMeta(null)), runner()).detectAnomaly(img);
  assert.deepEqual([none.threshold, none.isAnomalous, none.anomalousPixels()], [null, null, null]);
});

test("a task method on a model of another task names the method to use", async () => {
  const m = new Model(parseMetadata(meta()), fakeRunner());
  const img = new RgbImage(8, 6);
  await refuses(() => m.detectAnomaly(img), InputError, "'classify' model, not 'anomaly'", "model.classify()");
  await refuses(() => m.detectLandmarks(img), InputError, "model.classify()");
  await refuses(() => m.processRaw(new Uint16Array(16), 4, 4), InputError, "not 'isp'");
  const top = await m.classify(img, 2);
  assert.deepEqual(top.map((c) => [c.index, c.label]), [[1, "b"], [2, "c"]]);
});

test("non-images are refused", async () => {
  const m = new Model(meta(), fakeRunner());
  for (const bad of ["photo.jpg", null, 3, {}, { width: 2, height: 2, data: new Uint8Array(5) }, new Float32Array(12)]) {
    await refuses(() => m.classify(bad), InputError, "is not an image", "ImageData");
  }
  await refuses(() => new RgbImage(0, 3), InputError, "positive");
  await refuses(() => new RgbImage(2, 2, new Uint8Array(11)), InputError, "12 bytes");
  const rgba = { width: 2, height: 1, data: new Uint8ClampedArray([1, 2, 3, 0, 4, 5, 6, 255]) };
  assert.deepEqual([...mv.toRgbImage(rgba).data], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...mv.toImageData(new RgbImage(1, 1, new Uint8Array([7, 8, 9]))).data], [7, 8, 9, 255]);
});

test("predict checks counts, types and sizes, and refuses after close", async () => {
  const runner = fakeRunner();
  const m = new Model(meta(), runner);
  await refuses(() => m.predict(new Float32Array(48)), InputError, "array of Float32Array");
  await refuses(() => m.predict([]), InputError, "takes 1 input(s) [image], received 0");
  await refuses(() => m.predict([new Float32Array(47)]), InputError, "'image' expects 48 values", "received 47");
  await refuses(() => m.predict([Array(48).fill(0)]), InputError, "must be a Float32Array");
  const bad = new Model(meta(), fakeRunner([new Float32Array(4)]));
  await refuses(() => bad.predict([new Float32Array(48)]), ArtifactError, "'logits' has 4 values");
  const both = [m.predict([new Float32Array(48)]), m.predict([new Float32Array(48)])];
  await m.close();   // the calls made before it finish first; later calls throw
  assert.deepEqual((await Promise.allSettled(both)).map((r) => r.status), ["fulfilled", "fulfilled"]);
  assert.equal(runner.calls, 2);
  assert.ok(runner.closed);
  await refuses(() => m.predict([new Float32Array(48)]), ArtifactError, "toy is closed");
  await m.close();
});

test("helpers refuse what they cannot do", async () => {
  const img = new RgbImage(4, 4);
  await refuses(() => mv.resample.resize(img, 0, 2, "bicubic"), InputError, "at least 1x1");
  await refuses(() => mv.resample.resize(img, 2, 2, "bicubic", [0, 0, 5, 4]), InputError, "exceeds the 4x4 image");
  await refuses(() => mv.resample.resize(img, 2, 2, "cubic"), ArtifactError, "interpolation 'cubic'");
  await refuses(() => mv.cropImage(img, [10, 10, 20, 20], 2, 2), InputError, "does not overlap");
  await refuses(() => mv.cropImage(img, [0, 0, 0, 2], 2, 2), InputError, "no area");
  await refuses(() => mv.heatmap(new mv.FloatImage(1, 1), 1, 1), InputError, "lo < hi");
  await refuses(() => mv.overlay(img, new RgbImage(2, 2)), InputError, "same size");
  await refuses(() => mv.packBayer(new Uint16Array(3), 2, 2), InputError, "needs 4 values");
  await refuses(() => mv.packBayer(new Uint16Array(4), 2, 2, "RGBW"), InputError, "unknown Bayer pattern");
  await refuses(() => mv.normalizeRaw(new Float32Array(4), [1, 2], 10), InputError, "one number or four");
  await refuses(() => mv.normalizeRaw(new Float32Array(4), 64, 64), InputError, "must exceed");
  await refuses(() => mv.latencyStats([]), InputError, "at least one");
  await refuses(() => mv.topK([], 5), InputError, "empty");
  const pre = { ...parseMetadata(meta()).preprocessing, resize: 8192 };
  await refuses(() => mv.preprocess.preprocess(new RgbImage(1, 10000), pre), InputError, "too elongated");
  assert.deepEqual(mv.cropEven(new Uint16Array(15), 5, 3).mosaic.length, 8);
  assert.deepEqual(mv.latencyStats([3, 1, 2]), { runs: 3, median_ms: 2, mean_ms: 2, p90_ms: 2.8, min_ms: 1, max_ms: 3,
    std_ms: Math.sqrt(2 / 3) });
});

test("processRaw refuses a mosaic smaller than one tile", async () => {
  const md = { ...JSON.parse(meta()), task: "isp", preprocessing: null, labels: null, num_classes: null,
    inputs: [{ name: "raw", shape: [1, 4, 8, 8] }], outputs: [{ name: "rgb", shape: [1, 3, 16, 16] }],
    raw: { black_level: [64], white_level: 1023 } };
  const m = new Model(md, fakeRunner([new Float32Array(768)]));
  await refuses(() => m.processRaw(new Uint16Array(100), 10, 10), InputError, "packs to 5x5", "8x8 tile");
  await refuses(() => m.processRaw(new Uint16Array(10), 10, 10), InputError, "needs 100 values");
  const r = await m.processRaw(new Uint16Array(17 * 17).fill(543), 17, 17);
  assert.deepEqual([r.width, r.height, r.rgb.length, r.rgb8.data.length, r.tiles], [16, 16, 768, 768, 1]);
});

test("errors from onnxruntime-web become ArtifactErrors", async () => {
  const ort = await import("onnxruntime-web");
  const crafted = onnx({ entries: [[utf8("mobilevision"), utf8(meta())]] });   // parses here, not in onnxruntime
  await refuses(() => load(crafted, { ort }), ArtifactError, "no execution provider could open the model: wasm: ", "re-export");
  const broken = { ...fakeRunner(), run: async () => { throw new RangeError("out of\nmemory"); } };
  await refuses(() => new Model(meta(), broken).predict([new Float32Array(48)]), ArtifactError, "toy failed to run (out of memory)");
});

/** A flatbuffer writer for crafted .tflite files: Model {4: buffers, 6: metadata}, Metadata {0: name, 1: buffer},
 * Buffer {0: data, 1: offset (u64), 2: size (u64)}. Children are written after their parents (uoffsets point forward). */
function tflite({ entries = [], buffers = [], tail = [] } = {}) {
  const b = [], queue = [];
  const pad = (n = 4) => { while (b.length % n) b.push(0); };
  const u32 = (pos, v) => { for (let i = 0; i < 4; i++) b[pos + i] = (v >>> (8 * i)) & 255; };
  const slot = () => { pad(); const p = b.length; b.push(0, 0, 0, 0); return p; };
  const later = (pos, write) => queue.push([pos, write]);
  /** fields[i]: null, ["ref", write], ["u32", v] or ["u64", v] */
  const table = (fields) => {
    pad(); const vt = b.length, n = fields.length;
    b.push(...[4 + 2 * n, 0].flatMap((v) => [v & 255, v >> 8]), ...Array(2 * n).fill(0));
    pad(8); if ((b.length + 4) % 8) b.push(0, 0, 0, 0);   // u64 fields land 8-aligned
    const t = b.length; b.push(0, 0, 0, 0); u32(t, t - vt);
    fields.forEach((f, i) => {
      if (!f) return;
      const at = b.length;
      b[vt + 4 + 2 * i] = (at - t) & 255; b[vt + 5 + 2 * i] = (at - t) >> 8;
      if (f[0] === "u64") { b.push(...Array(8).fill(0)); u32(at, f[1]); } else { b.push(0, 0, 0, 0); }
      if (f[0] === "u32") u32(at, f[1]);
      if (f[0] === "ref") later(at, f[1]);
    });
    return t;
  };
  const bytes = (data) => () => { pad(); const p = b.length; b.push(...[0, 0, 0, 0], ...data, 0); u32(p, data.length); return p; };
  const vector = (items) => () => {
    pad(); const p = b.length; b.push(0, 0, 0, 0); u32(p, items.length);
    items.forEach((write) => { const s = b.length; b.push(0, 0, 0, 0); later(s, write); });
    return p;
  };
  const root = slot();
  b.push(...utf8("TFL3"));
  const fields = [null, ["u32", 3], null, null,
    buffers.length ? ["ref", vector(buffers.map((x) => () => table(x.offset !== undefined
      ? [null, ["u64", x.offset], ["u64", x.size]] : [["ref", bytes(x)]])))] : null,
    null, entries.length ? ["ref", vector(entries.map(([name, index]) => () => table([["ref", bytes(utf8(name))], ["u32", index]])))] : null];
  u32(root, table(fields));
  while (queue.length) { const [pos, write] = queue.shift(); const target = write(); u32(pos, target - pos); }
  pad();
  return new Uint8Array([...b, ...tail]);
}

test(".tflite metadata: found (in the flatbuffer or after it), absent, and corrupt bytes refused", async () => {
  const { readTfliteMetadata } = mv, text = meta();
  const good = tflite({ entries: [["other", 1], ["mobilevision", 2]], buffers: [[], utf8("x"), utf8(text)] });
  assert.equal(readTfliteMetadata(good), text);
  assert.equal(readTfliteMetadata(tflite({ buffers: [[]] })), null);
  assert.equal(readTfliteMetadata(tflite({ entries: [["min_runtime_version", 0]], buffers: [utf8("1.5")] })), null);
  // a buffer kept after the flatbuffer (large models): offset from the file start + size
  const head = tflite({ entries: [["mobilevision", 1]], buffers: [[], { offset: 0, size: 0 }] });
  const after = tflite({ entries: [["mobilevision", 1]], buffers: [[], { offset: head.length, size: text.length }],
    tail: utf8(text) });
  assert.equal(readTfliteMetadata(after), text);
  await refuses(() => readTfliteMetadata(tflite({ entries: [["mobilevision", 1]], buffers: [[], { offset: 64, size: 1e6 }] }), "m.tflite"),
    ArtifactError, "m.tflite is not a valid .tflite", "runs past the end", "re-export");
  await refuses(() => readTfliteMetadata(tflite({ entries: [["mobilevision", 5]], buffers: [[]] })), ArtifactError, "buffer 5 is out of range");
  await refuses(() => readTfliteMetadata(tflite({ entries: [["mobilevision", 0]], buffers: [[0xff, 0xfe]] })), ArtifactError, "not UTF-8");
  await refuses(() => readTfliteMetadata(tflite({ entries: [["mobilevision", 0]] })), ArtifactError, "no buffers");
  await refuses(() => readTfliteMetadata(new Uint8Array(8)), ArtifactError, "no TFL3 identifier");
  for (const n of [8, 12, 30, good.length - 40, good.length - 10]) {
    await refuses(() => readTfliteMetadata(good.subarray(0, n), "t.tflite"), ArtifactError, "t.tflite is not a valid .tflite");
  }
  let seed = 11;
  for (let i = 0; i < 300; i++) {   // random bytes after the identifier: an ArtifactError or null, never anything else
    const junk = Uint8Array.from({ length: 96 }, () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
    junk.set(utf8("TFL3"), 4);
    try { readTfliteMetadata(junk); } catch (e) { assert.ok(e instanceof ArtifactError, String(e)); }
  }
});

test("load() tells .tflite from .onnx by the bytes, and LiteRT.js failures are one line", async () => {
  const bytes = tflite({ entries: [["mobilevision", 1]], buffers: [[], utf8(meta())] });
  assert.equal((await load(bytes, { runner: fakeRunner() })).metadata.model, "toy");
  await refuses(() => load(tflite({ buffers: [[]] }), { runner: fakeRunner() }), ArtifactError, "carries no mobilevision metadata");
  const litert = { getGlobalLiteRtPromise: () => Promise.resolve({}), isWebGPUSupported: () => false,
    loadAndCompile: async () => { throw new Error("Failed to\nbuild"); } };
  await refuses(() => load(bytes, { litert, executionProviders: ["webgpu", "wasm"] }), ArtifactError,
    "LiteRT.js could not open the model", "webgpu: this browser has no WebGPU", "wasm: Failed to build", "re-export");
  await refuses(() => load(bytes, { litert, executionProviders: ["webnn"] }), ArtifactError, "webnn: LiteRT.js runs on", "add \"wasm\"");
  await refuses(() => load(bytes, { litert, numThreads: -1 }), InputError, "numThreads");
});
