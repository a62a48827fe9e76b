// mobilevision web runtime demo: pick an exported model, feed it an image (file, drop, camera, ?image=) or a RAW
// mosaic, draw what the task returns, and time model.predict. Uses only the package's public API (/src/index.js).
// URL: ?model=URL preselects a model, ?image=URL an image, ?threads=N (read before the first session), ?backend=
// wasm|webgpu, ?threshold=T (anomaly), ?box=x0,y0,x1,y1 (landmarks), ?raw=URL&width=W&height=H&pattern=RGGB or
// ?synthetic=gradient|random (isp), ?task=T (call that task's method whatever the model is: the package's error shows).
// Test hook: ?autorun=1 runs the task once (then ?bench=N timed runs after 2 warm-ups) and sets window.__mvResult
// = {task, model, url, executionProvider, threads, crossOriginIsolated, result, bench}, or {error} on any failure.
const $ = (id) => document.getElementById(id);
const q = new URLSearchParams(location.search);
const AUTORUN = q.get("autorun") === "1";
const TOPK = 5;
const oneLine = (e) => String(e?.message ?? e).split("\n")[0];

let mv, ort;                 // the package and onnxruntime-web, imported in main() so a failure reaches the banner
let model = null, modelUrl = "", loadToken = 0;
let source = null;           // {kind: "image", canvas, name} | {kind: "raw", mosaic, width, height, pattern, name, canvas}
let wasmThreads = null;      // onnxruntime-web fixes its WASM thread pool when its first session starts
let stream = null;
const wanted = { threads: Math.max(1, Number(q.get("threads") ?? 1) || 1), backend: q.get("backend") ?? "wasm" };

// ---------------------------------------------------------------- errors and status
function showError(e) {   // every failure: the banner, and the result the test driver waits for
  const msg = oneLine(e);
  Object.assign($("banner"), { textContent: msg, hidden: false });
  setStatus("");
  window.__mvResult = { error: msg };
}
const setStatus = (text) => { $("status").textContent = text; };
const guard = (fn) => async (...args) => {
  try { $("banner").hidden = true; await fn(...args); } catch (e) { showError(e); }
};
const el = (tag, props = {}, ...kids) => {
  const n = Object.assign(document.createElement(tag), props);
  n.append(...kids);
  return n;
};

function envLine() {
  const iso = self.crossOriginIsolated ? "yes" : "no (WASM runs one thread)";
  const thr = wasmThreads === null ? `${wanted.threads} (requested; fixed when the first model loads)` : String(wasmThreads);
  $("env").textContent = `crossOriginIsolated: ${iso} · WASM threads in effect: ${thr}` +
    (ort?.env?.versions?.web ? ` · onnxruntime-web ${ort.env.versions.web}` : "");
}

// ---------------------------------------------------------------- models
async function listModels() {
  const r = await fetch("/models/index.json").catch((e) => {
    throw new Error(`cannot fetch /models/index.json (${oneLine(e)}): is the server running?`);
  });
  if (!r.ok) throw new Error(`GET /models/index.json: HTTP ${r.status}; serve an exports folder with mobilevision serve-demo EXPORTS_DIR`);
  const rows = await r.json(), want = q.get("model"), sel = $("model");
  sel.replaceChildren(el("option", { value: "", textContent: rows.length ? "— pick a model —" : "— no models —" }));
  const size = (b) => (b < 1e6 ? `${Math.ceil(b / 1e3)} kB` : `${(b / 1e6).toFixed(1)} MB`);
  for (const row of rows) sel.append(el("option", { value: row.url, textContent: `${row.name} (${size(row.bytes)})` }));
  if (want && !rows.some((row) => row.url === want)) sel.append(el("option", { value: want, textContent: want }));
  if (!rows.length && !want) throw new Error("no models in the exports folder: export one with `mobilevision export MODEL --target onnx --out EXPORTS_DIR` (or --target tflite)");
  sel.value = want ?? (rows.find((row) => row.url.endsWith(".onnx")) ?? rows[0]).url;
  return sel.value;
}

async function loadModel(url) {
  const token = ++loadToken;
  model?.close();
  [model, modelUrl] = [null, url];
  $("bench-out").replaceChildren();
  renderInfo();
  if (!url) return;
  setStatus(`loading ${url}…`);
  const eps = wanted.backend === "webgpu" ? ["webgpu", "wasm"] : ["wasm"];
  if (wasmThreads === null) ort.env.wasm.numThreads = wanted.threads;
  const m = await mv.load(url, { executionProviders: eps, numThreads: wanted.threads });
  if (token !== loadToken) { m.close(); return; }   // another model was picked meanwhile
  model = m;
  if (wasmThreads === null) wasmThreads = ort.env.wasm.numThreads;   // what onnxruntime-web started with
  showThreads(wasmThreads);
  envLine();
  renderInfo();
  showTaskInputs();
  if (source) preview(source.canvas, source.name);
  setStatus(`${model.metadata.model} loaded (${model.executionProvider}). ` +
            (source ? "Press Run." : model.metadata.task === "isp" ? "Make a RAW mosaic." : "Choose an image."));
}

function preprocessingText(md) {
  const p = md.preprocessing;
  if (p) {
    const geo = p.resize_mode === "stretch" ? `stretch to ${p.crop.join("×")}` : `shorter side ${p.resize}, centre crop ${p.crop.join("×")}`;
    const norm = p.normalization === "model" ? "uint8 pixels (model normalises)"
      : `×${+p.scale.toFixed(6)}, mean [${p.mean.map((v) => +v.toFixed(3))}], std [${p.std.map((v) => +v.toFixed(3))}]`;
    return `${geo}, ${p.interpolation}; ${norm}; ${p.layout}`;
  }
  if (md.raw) return `RAW: black [${md.raw.black_level}], white ${md.raw.white_level}, packing ${md.raw.packing.join(" ")}`;
  return "none";
}

function renderInfo() {
  const dl = $("info");
  dl.replaceChildren();
  if (!model) return;
  const md = model.metadata;
  const rows = [["task", md.task], ["model", md.model],
    ["input", md.inputs.map((i) => `${i.name} ${i.dtype} [${i.shape.join("×")}]`).join(", ")],
    ["preprocessing", preprocessingText(md)], ["labels", md.labels ? String(md.labels.length) : "—"],
    ["backend used", model.executionProvider + (model.fallbacks ?? []).map((f) => ` (${f.executionProvider} failed: ${f.reason})`).join("")],
    ["threads", String(wasmThreads)]];
  for (const [k, v] of rows) dl.append(el("dt", { textContent: k }), el("dd", { textContent: v }));
}

function showTaskInputs() {
  const task = model?.metadata.task;
  $("raw-input").hidden = task !== "isp";
  $("image-input").hidden = task === "isp";
  $("opt-threshold").hidden = task !== "anomaly";
  $("opt-box").hidden = task !== "landmarks";
  const shape = model?.metadata.inputs[0]?.shape ?? [];
  if (task === "isp" && !q.get("width") && shape.length === 4 && shape[2] > 0 && shape[3] > 0) {
    [$("raw-w").value, $("raw-h").value] = [2 * shape[3], 2 * shape[2]];
  }
}

// ---------------------------------------------------------------- image sources
function setImage(drawable, width, height, name) {
  if (!width || !height) throw new Error(`${name} has no pixels`);
  const canvas = el("canvas", { width, height });
  canvas.getContext("2d").drawImage(drawable, 0, 0, width, height);
  source = { kind: "image", canvas, name };
  preview(canvas, `${name} (${width}×${height})`);
}

async function useImageBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  try {
    const img = new Image();
    img.src = url;
    await img.decode().catch(() => { throw new Error(`${name} is not an image this browser can decode`); });
    setImage(img, img.naturalWidth, img.naturalHeight, name);
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function fetchBytes(url) {
  const r = await fetch(url).catch((e) => { throw new Error(`cannot fetch ${url} (${oneLine(e)})`); });
  if (!r.ok) throw new Error(`GET ${url}: HTTP ${r.status}`);
  return r.blob();
}

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) throw new Error("no camera here: this browser has no camera API, or the page is not on localhost / https");
  stopCamera();
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) {
    const why = { NotAllowedError: "camera access was refused: allow it in the browser's site settings and try again",
                  NotFoundError: "no camera found on this device",
                  NotReadableError: "the camera is busy (another program is using it)" }[e?.name];
    throw new Error(why ?? `the camera did not start: ${oneLine(e)}`);
  }
  const video = $("video");
  video.srcObject = stream;
  video.hidden = $("grab").hidden = $("stop-camera").hidden = false;
  await video.play();
}

function stopCamera() {
  stream?.getTracks().forEach((t) => t.stop());
  stream = null;
  $("video").hidden = $("grab").hidden = $("stop-camera").hidden = true;
}

// ---------------------------------------------------------------- RAW mosaics (isp)
function rawFields() {
  const w = Number($("raw-w").value), h = Number($("raw-h").value);
  if (!(w >= 2 && h >= 2 && w % 2 === 0 && h % 2 === 0)) throw new Error(`RAW size ${w}×${h}: width and height must be even, at least 2`);
  return { w, h, pattern: $("raw-pattern").value };
}

function setRaw(mosaic, width, height, pattern, name) {   // preview: the mosaic as grey, levels stretched
  const hi = mosaic.reduce((a, v) => Math.max(a, v), 1), img = new ImageData(width, height);
  mosaic.forEach((v, i) => { img.data.fill(Math.round((255 * v) / hi), 4 * i, 4 * i + 3); img.data[4 * i + 3] = 255; });
  const c = el("canvas", { width, height });
  c.getContext("2d").putImageData(img, 0, 0);
  source = { kind: "raw", mosaic, width, height, pattern, name, canvas: c };
  preview(c, `${name}: ${width}×${height} ${pattern} mosaic`);
}

function synthetic(kind) {
  const { w, h, pattern } = rawFields();
  const raw = model?.metadata.raw ?? { black_level: [0], white_level: 1023 };
  const black = Math.max(...raw.black_level), span = raw.white_level - black;
  const m = new Uint16Array(w * h);
  let s = 12345;   // a fixed LCG: the same "random" mosaic every time
  for (let i = 0; i < w * h; i++) {
    const x = i % w, y = (i - x) / w, c = pattern[(y % 2) * 2 + (x % 2)];
    s = (s * 1664525 + 1013904223) >>> 0;
    const f = kind === "random" ? s / 2 ** 32 : 0.1 + 0.8 * (c === "R" ? x / w : c === "G" ? y / h : 1 - x / w);
    m[i] = Math.round(black + f * span);
  }
  setRaw(m, w, h, pattern, `synthetic ${kind}`);
}

async function useRawBlob(blob, name) {
  const { w, h, pattern } = rawFields();
  const buf = await blob.arrayBuffer();
  if (buf.byteLength !== w * h * 2) throw new Error(`${name} holds ${buf.byteLength} bytes; a ${w}×${h} uint16 mosaic is ${w * h * 2}: set width and height`);
  const dv = new DataView(buf), m = new Uint16Array(w * h);
  for (let i = 0; i < m.length; i++) m[i] = dv.getUint16(2 * i, true);
  setRaw(m, w, h, pattern, name);
}

// ---------------------------------------------------------------- drawing
function canvasFor(img) {   // a copy of a canvas, or an RgbImage drawn
  const c = el("canvas", { width: img.width, height: img.height }), g = c.getContext("2d");
  if (img instanceof HTMLCanvasElement) g.drawImage(img, 0, 0); else g.putImageData(mv.toImageData(img), 0, 0);
  return c;
}
const figure = (canvas, caption) => el("figure", {}, canvas, el("figcaption", { textContent: caption }));
function preview(canvas, caption) {
  $("output").replaceChildren(el("div", { className: "panels" }, figure(canvasFor(canvas), caption)));
  setStatus(model ? `Input ready: ${caption}. Press Run.` : `Input ready: ${caption}. Pick a model.`);
}

function drawLandmarks(canvas, pts, box) {
  const c = canvasFor(canvas), g = c.getContext("2d"), r = Math.max(1.5, Math.max(c.width, c.height) / 160);
  g.lineWidth = Math.max(1, r / 2);
  g.strokeStyle = "#ffcc00";
  g.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
  g.fillStyle = "#00e0ff";
  for (let i = 0; i + 1 < pts.length; i += 2) { g.beginPath(); g.arc(pts[i], pts[i + 1], r, 0, 2 * Math.PI); g.fill(); }
  return c;
}

function topTable(top) {
  const rows = top.map((t, i) => el("tr", {}, el("td", { textContent: String(i + 1) }),
    el("td", { textContent: t.label ?? `class ${t.index}` }),
    el("td", { className: "bar" }, el("span", { style: `width:${(100 * Math.min(1, Math.max(0, t.score))).toFixed(1)}%` })),
    el("td", { className: "num", textContent: t.score.toFixed(4) })));
  return el("table", { className: "topk" },
    el("thead", {}, el("tr", {}, ...["#", "label", "", "score"].map((h) => el("th", { textContent: h })))),
    el("tbody", {}, ...rows));
}

// ---------------------------------------------------------------- the task
function readBox() {
  const v = ["x0", "y0", "x1", "y1"].map((k) => $(`box-${k}`).value.trim());
  if (v.every((s) => s === "")) return null;
  if (v.some((s) => s === "")) throw new Error("box: fill all of x0, y0, x1, y1, or none (whole image)");
  return v.map(Number);
}

async function runTask(task = model?.metadata.task) {   // ?task= asks for another task: the package's error shows
  if (!model) throw new Error("no model loaded: pick one in the list");
  const md = model.metadata;
  if (!["classify", "anomaly", "landmarks", "isp"].includes(task)) {
    throw new Error(`this demo shows classify, anomaly, landmarks and isp models; ${md.model} is a '${task}' model`);
  }
  if (!source) throw new Error(task === "isp" ? "no RAW mosaic yet: load a file or make a synthetic one" : "no image yet: choose a file, drop one or use the camera");
  if ((task === "isp") !== (source.kind === "raw")) {
    throw new Error(task === "isp" ? `${md.model} takes a RAW mosaic, not an image: load a RAW file or make a synthetic mosaic`
      : `${md.model} takes an image, not a RAW mosaic: choose an image`);
  }
  setStatus(`running ${task}…`);
  const t0 = performance.now();
  const out = [];
  let summary;
  if (task === "classify") {
    const top = await model.classify(source.canvas, TOPK);
    out.push(figure(canvasFor(source.canvas), source.name), topTable(top));
    summary = top.map(({ index, label, score }) => ({ index, label, score }));
  } else if (task === "anomaly") {
    const thr = $("threshold").value.trim();
    if (thr !== "" && !Number.isFinite(Number(thr))) throw new Error(`threshold '${thr}' is not a number`);
    const r = await model.detectAnomaly(source.canvas, thr === "" ? {} : { threshold: Number(thr) });
    const decision = r.isAnomalous === null ? "no threshold: no decision (the artifact carries none)"
      : `${r.isAnomalous ? "ANOMALOUS" : "normal"} (threshold ${Number(r.threshold).toPrecision(4)}` +
        `${thr === "" ? ", the artifact's own" : ""})`;
    out.push(el("div", { className: "panels" }, figure(canvasFor(source.canvas), source.name),
      figure(canvasFor(r.heatmap()), "heatmap"), figure(canvasFor(r.overlay()), "overlay")),
    el("p", { className: `verdict ${thr === "" ? "" : r.isAnomalous ? "bad" : "ok"}` }, `score ${r.score.toFixed(5)} · ${decision}`));
    summary = { score: r.score, isAnomalous: r.isAnomalous ?? null };
  } else if (task === "landmarks") {
    const box = readBox();
    const pts = await model.detectLandmarks(source.canvas, box);
    const shown = box ?? [0, 0, source.canvas.width, source.canvas.height];
    out.push(figure(drawLandmarks(source.canvas, pts, shown), `${pts.length / 2} points, box ${box ? `[${box}]` : "= whole image"}`));
    summary = Array.from(pts);
  } else {
    const raw = md.raw ?? {};
    const r = await model.processRaw(source.mosaic, source.width, source.height,
      { pattern: source.pattern, blackLevel: raw.black_level, whiteLevel: raw.white_level });
    out.push(el("div", { className: "panels" }, figure(canvasFor(source.canvas), `${source.name} (mosaic)`),
      figure(canvasFor(r.rgb8), `rendered RGB ${r.width}×${r.height}`)));
    summary = { width: r.width, height: r.height };
  }
  const ms = performance.now() - t0;
  $("output").replaceChildren(...out.map((n) => (n.tagName === "FIGURE" ? el("div", { className: "panels" }, n) : n)));
  setStatus(`${task} · ${md.model} · ${ms.toFixed(1)} ms (preprocessing + inference + postprocessing, one run)`);
  return summary;
}

// ---------------------------------------------------------------- benchmark
function imageTensor(canvas, p, spec) {   // the metadata's preprocessing with a canvas resize (values do not change latency)
  const [H, W] = p.crop;
  let sx = 0, sy = 0, sw = canvas.width, sh = canvas.height;
  if (p.resize_mode !== "stretch") {   // shorter side -> resize, then a centre crop of H x W, in source pixels
    const k = Math.min(sw, sh) / p.resize;
    [sx, sy, sw, sh] = [(sw - W * k) / 2, (sh - H * k) / 2, W * k, H * k];
  }
  const g = el("canvas", { width: W, height: H }).getContext("2d", { willReadFrequently: true });
  g.imageSmoothingQuality = "high";
  g.drawImage(canvas, sx, sy, sw, sh, 0, 0, W, H);
  const px = g.getImageData(0, 0, W, H).data, n = H * W, nchw = spec.layout !== "NHWC" && p.layout !== "NHWC";
  const uint8 = p.normalization === "model", x = new Float32Array(3 * n);   // predict takes float32 only
  for (let i = 0; i < 3 * n; i++) {
    const c = i % 3, v = px[4 * ((i - c) / 3) + c];
    x[nchw ? c * n + (i - c) / 3 : i] = uint8 ? v : (v * p.scale - p.mean[c]) / p.std[c];
  }
  return x;
}

function rawTensor(src, raw, h, w) {   // the top-left h x w packed tile (the model runs tiles), levels per channel
  const p = src.pattern, n = h * w;
  const iR = p.indexOf("R"), iB = p.indexOf("B");
  const site = { R: iR, B: iB, G_R: (iR & 2) | (1 - (iR & 1)), G_B: (iB & 2) | (1 - (iB & 1)) };
  const canon = ["B", "G_R", "R", "G_B"], x = new Float32Array(4 * n);
  raw.packing.forEach((name, c) => {
    const black = raw.black_level.length === 4 ? raw.black_level[canon.indexOf(name)] : raw.black_level[0];
    const dy = site[name] >> 1, dx = site[name] & 1, span = raw.white_level - black;
    for (let i = 0; i < n; i++) {
      const xx = i % w, v = (src.mosaic[(2 * ((i - xx) / w) + dy) * src.width + 2 * xx + dx] - black) / span;
      x[c * n + i] = raw.clip ? Math.max(0, v) : v;
    }
  });
  return x;
}

function inputTensors() {
  const md = model.metadata;
  return md.inputs.map((spec, i) => {
    if (i === 0 && md.preprocessing && source?.kind === "image") return imageTensor(source.canvas, md.preprocessing, spec);
    const [th, tw] = spec.shape.slice(2).map((d) => Math.max(d, 1));
    if (i === 0 && md.raw && source?.kind === "raw" && source.height >= 2 * th && source.width >= 2 * tw) return rawTensor(source, md.raw, th, tw);
    const n = spec.shape.reduce((a, d) => a * Math.max(d, 1), 1);   // no input of that kind yet: a fixed random one
    const x = new Float32Array(n);
    let s = 7 + i;
    for (let k = 0; k < n; k++) { s = (s * 1664525 + 1013904223) >>> 0; x[k] = s / 2 ** 32; }
    return Object.assign(x, { random: true });
  });
}

async function benchmark(runs, warmup) {
  if (!model) throw new Error("no model loaded: pick one in the list");
  if (!(Number.isInteger(runs) && runs >= 1 && Number.isInteger(warmup) && warmup >= 0)) throw new Error("benchmark: runs must be a whole number ≥ 1 and warm-up ≥ 0");
  const xs = inputTensors();
  const what = xs.every((x) => !x.random) ? source.name : "a fixed random input";
  setStatus(`benchmark: ${warmup} warm-up + ${runs} timed runs of model.predict…`);
  for (let i = 0; i < warmup; i++) await model.predict(xs);
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await model.predict(xs);
    samples.push(performance.now() - t);
  }
  const stats = mv.latencyStats(samples);
  const rows = [["median", stats.median_ms], ["p90", stats.p90_ms], ["mean", stats.mean_ms], ["min", stats.min_ms],
    ["max", stats.max_ms]].map(([k, v]) => [k, `${v.toFixed(2)} ms`]);
  rows.push(["runs", `${stats.runs} (after ${warmup} warm-up)`], ["backend used", model.executionProvider],
    ["WASM threads", String(wasmThreads)], ["crossOriginIsolated", String(self.crossOriginIsolated)], ["input", what]);
  $("bench-out").replaceChildren(el("h2", { textContent: `Latency of model.predict · ${model.metadata.model}` }),
    el("table", { className: "stats" }, el("tbody", {}, ...rows.map(([k, v]) =>
      el("tr", {}, el("th", { textContent: k }), el("td", { textContent: v }))))));
  setStatus(`benchmark done: median ${stats.median_ms.toFixed(2)} ms over ${stats.runs} runs`);
  return stats;
}

// ---------------------------------------------------------------- backends and threads
async function probeWebGPU() {
  let adapter = null;
  try { adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null; } catch { adapter = null; }
  if (adapter) $("backend").append(el("option", { value: "webgpu", textContent: "WebGPU (falls back to WASM)" }));
  $("gpu-note").textContent = adapter ? "" : "WebGPU: not available in this browser";
  if (wanted.backend === "webgpu" && !adapter) {
    wanted.backend = "wasm";
    throw new Error("?backend=webgpu: WebGPU is not available in this browser (no navigator.gpu adapter)");
  }
  if (!["wasm", "webgpu"].includes(wanted.backend)) throw new Error(`?backend=${wanted.backend}: use wasm or webgpu`);
  $("backend").value = wanted.backend;
}

function showThreads(n) {
  const sel = $("threads");
  if (![...sel.options].some((o) => o.value === String(n))) sel.append(el("option", { textContent: String(n) }));
  sel.value = String(n);
}

function changeThreads() {
  const n = Number($("threads").value);
  if (wasmThreads === null) { wanted.threads = n; envLine(); return; }
  if (n === wasmThreads) return;
  // onnxruntime-web reads numThreads once, when its WASM starts: only a fresh page runs with another count
  const u = new URL(location.href);
  u.searchParams.set("threads", String(n));
  u.searchParams.delete("autorun");
  if (modelUrl) u.searchParams.set("model", modelUrl);
  setStatus(`onnxruntime-web started with ${wasmThreads} thread(s); reloading the page with ?threads=${n}…`);
  location.assign(u.href);
}

// ---------------------------------------------------------------- wiring and autorun
function wire() {
  $("model").onchange = guard(() => loadModel($("model").value));
  const picked = (use) => guard(async (e) => {   // cleared after each pick, so picking the same file again reads it again
    const f = e.target.files[0];
    e.target.value = "";
    if (f) await use(f, f.name);
  });
  $("file").onchange = picked(useImageBlob);
  $("raw-file").onchange = picked(useRawBlob);
  $("synth").onclick = guard(() => synthetic($("synth-kind").value));
  $("camera").onclick = guard(startCamera);
  $("stop-camera").onclick = guard(stopCamera);
  $("grab").onclick = guard(() => { const v = $("video"); setImage(v, v.videoWidth, v.videoHeight, "camera frame"); });
  $("run").onclick = guard(() => runTask());
  $("bench").onclick = guard(() => benchmark(Number($("runs").value), Number($("warmup").value)));
  $("threads").onchange = guard(changeThreads);
  $("backend").onchange = guard(async () => { wanted.backend = $("backend").value; await loadModel(modelUrl); });
  const drop = $("drop");
  document.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  document.addEventListener("dragleave", (e) => { if (!e.relatedTarget) drop.classList.remove("over"); });
  document.addEventListener("drop", guard(async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer?.files?.[0];
    if (!f) throw new Error("the drop held no file");
    if (model?.metadata.task === "isp" && !f.type.startsWith("image/")) await useRawBlob(f, f.name);
    else await useImageBlob(f, f.name);
  }));
}

async function autorun() {
  if (!model) throw new Error("autorun: no model loaded (give ?model=URL)");
  const md = model.metadata;
  if ((q.get("task") ?? md.task) === "isp") {
    if (q.get("raw")) await useRawBlob(await fetchBytes(q.get("raw")), q.get("raw"));
    else synthetic(q.get("synthetic") ?? "gradient");
  } else if (!source) throw new Error("autorun: no image (give ?image=URL)");
  const result = await runTask(q.get("task") ?? md.task);
  const n = Number(q.get("bench") ?? 0);
  const bench = n > 0 ? await benchmark(n, 2) : null;
  window.__mvResult = { task: md.task, model: md.model, url: modelUrl, executionProvider: model.executionProvider,
                        threads: wasmThreads, crossOriginIsolated: self.crossOriginIsolated, result, bench };
}

async function main() {
  if (location.protocol === "file:") return;   // index.html's banner says what to do
  wire();
  try {
    [ort, mv] = await Promise.all([import("onnxruntime-web"), import("/src/index.js")]);
  } catch (e) {
    throw new Error(`the runtime package did not load (${oneLine(e)}): serve this page with mobilevision serve-demo EXPORTS_DIR`);
  }
  for (const [k, v] of Object.entries({ "raw-w": q.get("width"), "raw-h": q.get("height"), "raw-pattern": q.get("pattern"),
    threshold: q.get("threshold") })) if (v !== null) $(k).value = v;
  const box = q.get("box")?.split(",");
  if (box?.length === 4) ["x0", "y0", "x1", "y1"].forEach((k, i) => { $(`box-${k}`).value = box[i]; });
  showThreads(wanted.threads);
  envLine();
  await probeWebGPU();
  const url = await listModels();
  await loadModel(url);
  if (q.get("image")) await useImageBlob(await fetchBytes(q.get("image")), q.get("image"));
  if (AUTORUN) await autorun();
}

main().catch(showError);
