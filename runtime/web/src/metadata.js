// The artifact metadata (export/metadata.py, schema 6) read from untrusted JSON, with the Kotlin core's
// checks (Metadata.kt, Json.kt): bounded size, nesting and numbers, strict types, closed nested objects,
// one ArtifactError naming the first bad field. Field names stay the JSON's (snake_case).
import { ArtifactError } from "./errors.js";

export const SCHEMA_VERSION = 7;
export const METADATA_KEY = "mobilevision";
export const MAX_JSON_CHARS = 16 << 20;
const MAX_DEPTH = 32, MAX_INT_DIGITS = 20, MAX_STR = 1024;
const MAX_LABELS = 100_000, MAX_TENSORS = 64, MAX_RANK = 8, MAX_DIM = 1 << 20, MAX_ELEMENTS = 2 ** 31;
const MAX_CROP = 4096, MAX_RESIZE = 2 * MAX_CROP, MAX_POINTS = 10_000, MAX_COUNT = 1e18;
const INTERPOLATIONS = ["bicubic", "bilinear", "nearest", "lanczos", "box", "hamming"];
const IMAGE_LAYOUTS = ["NCHW", "NHWC"];
const DTYPES = ["float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
  "uint64", "bool"];
const PACKING = ["B", "G_R", "R", "G_B"];
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

/**
 * @typedef {{name: string, shape: number[], dtype: string, layout: string}} TensorSpec
 * @typedef {{resize: number, crop: number[], interpolation: string, scale: number, mean: number[], std: number[],
 *   color: string, layout: string, resize_mode: string, normalization: string}} Preprocessing
 * @typedef {{black_level: number[], white_level: number, clip: boolean, packing: string[]}} RawInput
 * @typedef {{points: number, coordinates: string, flip_pairs: number[][], eye_corners: number[] | null}} LandmarkOutput
 * @typedef {{image: number, pixel: number | null, image_f1: number | null, pixel_f1: number | null,
 *   source: string}} AnomalyThresholds
 * @typedef {{task: string, model: string, target: string, precision: string, inputs: TensorSpec[],
 *   outputs: TensorSpec[], preprocessing: Preprocessing | null, labels: string[] | null, label_set: string | null,
 *   num_classes: number | null, params: number | null, macs: number | null, weights: string | null,
 *   weights_sha256: string | null, tools: Record<string, string>, parity: Record<string, any> | null,
 *   raw: RawInput | null, landmarks: LandmarkOutput | null, quantization: Record<string, any> | null,
 *   scores: string | null, anomaly: AnomalyThresholds | null, created: string, schema_version: number}} Metadata
 */

/** `v` for an error message: short, one line, control characters escaped (Kotlin `shown`).
 * @param {unknown} v @returns {string} */
export function shown(v, depth = 0) {
  if (typeof v === "string") {
    const s = v.length > 40 ? v.slice(0, 37) + "..." : v;
    return "'" + s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0")) + "'";
  }
  if (Array.isArray(v)) {
    if (depth > 1) return "[...]";
    return "[" + v.slice(0, 4).map((x) => shown(x, depth + 1)).join(", ") + (v.length > 4 ? ", ...]" : "]");
  }
  if (v && typeof v === "object") {
    const e = Object.entries(v);
    if (depth > 1 || e.length > 2) return "{...}";
    return "{" + e.map(([k, x]) => `${shown(k, depth + 1)}: ${shown(x, depth + 1)}`).join(", ") + "}";
  }
  return String(v);
}

/** RFC 8259 JSON, refusing what export/metadata.py refuses: nesting over 32, integers over 20 digits, numbers
 * beyond double range, NaN / Infinity and duplicate keys. @param {string} s @returns {unknown} */
export function parseJson(s) {
  let pos = 0, depth = 0;
  /** @param {string} what @returns {never} */
  const fail = (what) => { throw new ArtifactError(`invalid JSON at character ${pos}: ${what}`); };
  const space = () => { while (pos < s.length && " \n\r\t".includes(s[pos])) pos++; };
  const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
  /** @returns {string} */
  const string = () => {
    let out = "";
    pos++;
    for (;;) {
      let end = pos;
      while (end < s.length && s[end] !== '"' && s[end] !== "\\" && s.charCodeAt(end) >= 32) end++;
      out += s.slice(pos, end);
      pos = end;
      if (pos >= s.length) fail("unterminated string");
      const c = s[pos++];
      if (c === '"') return out;
      if (c !== "\\") { pos--; fail("control character in string"); }
      const e = s[pos++];
      const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e ?? ""];
      if (simple !== undefined) out += simple;
      else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(s.slice(pos, pos + 4))) {
        out += String.fromCharCode(parseInt(s.slice(pos, pos + 4), 16));
        pos += 4;
      } else fail(`bad escape ${shown("\\" + (e ?? ""))}`);
    }
  };
  /** @returns {unknown} */
  const value = () => {
    if (pos >= s.length) fail("unexpected end of input");
    for (const word of ["NaN", "Infinity", "-Infinity"]) {
      if (s.startsWith(word, pos)) fail(`${word} is not JSON (Python writes it for a non-finite float)`);
    }
    const c = s[pos];
    if (c === "{" || c === "[") {
      if (++depth > MAX_DEPTH) throw new ArtifactError(`JSON nests deeper than ${MAX_DEPTH} levels`);
      const v = c === "{" ? object() : array();
      depth--;
      return v;
    }
    if (c === '"') return string();
    for (const [word, v] of /** @type {const} */ ([["true", true], ["false", false], ["null", null]])) {
      if (s.startsWith(word, pos)) { pos += word.length; return v; }
    }
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(s);
    if (!m) fail(`unexpected character ${shown(c)}`);
    const token = m[0], digits = token.replace("-", "").length;
    if (!m[1] && !m[2] && digits > MAX_INT_DIGITS) fail(`an integer of ${digits} digits (over ${MAX_INT_DIGITS})`);
    const v = Number(token);
    if (!Number.isFinite(v)) fail(`the number ${shown(token)} is beyond double range`);
    pos += token.length;
    return v;
  };
  /** @param {string} close @param {() => void} item */
  const items = (close, item) => {
    pos++;
    space();
    if (s[pos] === close) { pos++; return; }
    for (;;) {
      space();
      item();
      space();
      if (pos >= s.length) fail(`unterminated ${close === "}" ? "object" : "array"}`);
      const c = s[pos++];
      if (c === close) return;
      if (c !== ",") { pos--; fail(`expected ',' or '${close}'`); }
    }
  };
  const object = () => {
    /** @type {Record<string, unknown>} */
    const out = {};
    items("}", () => {
      if (s[pos] !== '"') fail("expected a member name");
      const key = string();
      if (Object.hasOwn(out, key)) fail(`duplicate key ${shown(key)}`);
      space();
      if (s[pos] !== ":") fail("expected ':'");
      pos++;
      space();
      // defineProperty: a "__proto__" key stays a plain member
      Object.defineProperty(out, key, { value: value(), enumerable: true, writable: true, configurable: true });
    });
    return out;
  };
  const array = () => {
    /** @type {unknown[]} */
    const out = [];
    items("]", () => { out.push(value()); });
    return out;
  };
  space();
  const v = value();
  space();
  if (pos !== s.length) fail("unexpected trailing text");
  return v;
}

/** One JSON value at `path` ("metadata.inputs[0].shape"), converted with its type and range checked. */
class Field {
  /** @param {unknown} value @param {string} path */
  constructor(value, path) { this.value = value; this.path = path; }
  /** @param {string} problem @returns {never} */
  fail(problem) {
    throw new ArtifactError(`malformed mobilevision metadata: ${this.path} ${problem}; re-export the artifact`);
  }
  /** @param {string} what @returns {never} */
  must(what) { return this.fail(`must be ${what}, got ${shown(this.value)}`); }
  /** @param {string[]} [choices] @returns {string} */
  string(choices = []) {
    const v = this.value;
    if (typeof v !== "string") return this.must("a string");
    if (v.length > MAX_STR) {   // Python's len(): code points
      const chars = [...v].length;
      if (chars > MAX_STR) this.fail(`must be at most ${MAX_STR} characters, got ${chars}`);
    }
    if (CONTROL.test(v)) this.must("a string without control characters");
    if (choices.length && !choices.includes(v)) this.must(`one of ${choices.join(", ")}`);
    return v;
  }
  /** @param {number} lo @param {number} hi */
  int(lo, hi) {
    const v = this.value;
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) return this.must(`an integer in ${lo}..${hi}`);
    return v;
  }
  /** A finite number >= `lo`, and > `above` when given. @param {number} [lo] @param {number} [above] */
  number(lo = -Infinity, above) {
    const v = this.value;
    if (typeof v !== "number" || !Number.isFinite(v)) return this.must("a finite number");
    if (v < lo) this.must(`a number >= ${shown(lo)}`);
    if (above !== undefined && !(v > above)) this.must(`a number > ${shown(above)}`);
    return v;
  }
  bool() { return typeof this.value === "boolean" ? this.value : this.must("true or false"); }
  /** @param {number} lo @param {number} hi */
  list(lo, hi) {
    const v = this.value;
    if (!Array.isArray(v)) return this.must("a list");
    if (v.length < lo || v.length > hi) this.fail(`has ${v.length} items, expected ${lo === hi ? lo : `${lo}..${hi}`}`);
    return v.map((x, i) => new Field(x, `${this.path}[${i}]`));
  }
  /** @param {number} lo @param {number} hi @param {[number, number]} n */
  ints(lo, hi, n) { return this.list(...n).map((f) => f.int(lo, hi)); }
  /** @param {[number, number]} n @param {number} [lo] @param {number} [above] */
  numbers(n, lo, above) { return this.list(...n).map((f) => f.number(lo, above)); }
  /** @param {[number, number]} n */
  strings(n) { return this.list(...n).map((f) => f.string()); }
  /** @param {string[]} [known] the keys allowed (nested parts of the schema are closed) */
  obj(known) {
    const v = this.value;
    if (!v || typeof v !== "object" || Array.isArray(v)) return this.must("an object");
    const o = new Obj(/** @type {Record<string, unknown>} */ (v), this.path);
    const extra = known && Object.keys(v).find((k) => !known.includes(k));
    if (extra !== undefined) this.fail(`has the unknown field ${shown(extra)}`);
    return o;
  }
}

/** Typed access to a JSON object: `get` a required field, `opt` one with a default (absent: undefined, JSON null is
 * an error, as in export/metadata.py), `nul` one whose absence and null both mean none. */
class Obj {
  /** @param {Record<string, unknown>} map @param {string} path */
  constructor(map, path) { this.map = map; this.path = path; }
  /** @param {string} key */
  get(key) {
    const f = new Field(this.map[key], `${this.path}.${key}`);
    return Object.hasOwn(this.map, key) ? f : f.fail("is missing");
  }
  /** @param {string} key */
  opt(key) { return Object.hasOwn(this.map, key) ? new Field(this.map[key], `${this.path}.${key}`) : undefined; }
  /** @param {string} key */
  nul(key) { return this.map[key] == null ? undefined : this.opt(key); }
}

/** Elements of a tensor (dynamic dimensions, <= 0, count as 1). @param {number[]} shape */
export function elements(shape) {
  return shape.reduce((n, d) => Math.min(n * Math.max(d, 1), MAX_ELEMENTS + 1), 1);
}

/** @param {Field} f @returns {TensorSpec} */
function tensorSpec(f) {
  const o = f.obj(["name", "shape", "dtype", "layout"]);
  const shape = o.get("shape").ints(-1, MAX_DIM, [0, MAX_RANK]);
  if (elements(shape) > MAX_ELEMENTS) o.get("shape").fail(`has over ${MAX_ELEMENTS} elements, got ${shown(shape)}`);
  return { name: o.get("name").string(), shape, dtype: o.opt("dtype")?.string(DTYPES) ?? "float32",
    layout: o.opt("layout")?.string(["", ...IMAGE_LAYOUTS]) ?? "" };
}

/** @param {Field} f @returns {Preprocessing} */
function preprocessing(f) {
  const o = f.obj(["resize", "crop", "interpolation", "scale", "mean", "std", "color", "layout", "resize_mode",
    "normalization"]);
  return {
    resize: o.get("resize").int(1, MAX_RESIZE),
    crop: o.get("crop").ints(1, MAX_CROP, [2, 2]),
    interpolation: o.opt("interpolation")?.string(INTERPOLATIONS) ?? "bicubic",
    scale: o.opt("scale")?.number(-Infinity, 0) ?? 1 / 255,
    mean: o.opt("mean")?.numbers([3, 3]) ?? [0.485, 0.456, 0.406],
    std: o.opt("std")?.numbers([3, 3], -Infinity, 0) ?? [0.229, 0.224, 0.225],
    color: o.opt("color")?.string(["RGB"]) ?? "RGB",
    layout: o.opt("layout")?.string(IMAGE_LAYOUTS) ?? "NCHW",
    resize_mode: o.opt("resize_mode")?.string(["shorter_side", "stretch"]) ?? "shorter_side",   // schema 1: none
    normalization: o.opt("normalization")?.string(["app", "model"]) ?? "app",                  // schema < 6: app
  };
}

/** @param {Field} f @returns {RawInput} */
function rawInput(f) {
  const o = f.obj(["black_level", "white_level", "clip", "packing"]);
  const black = o.get("black_level").numbers([1, 4], 0);
  if (black.length !== 1 && black.length !== 4) {
    o.get("black_level").fail(`has ${black.length} values, expected 1 or 4 (B, G_R, R, G_B)`);
  }
  const packing = o.opt("packing")?.strings([4, 4]) ?? [...PACKING];
  if ([...packing].sort().join() !== [...PACKING].sort().join()) {
    o.get("packing").fail(`must be an order of ${PACKING.join(", ")}, got ${shown(packing)}`);
  }
  return { black_level: black, white_level: o.get("white_level").number(-Infinity, Math.max(...black)),
    clip: o.opt("clip")?.bool() ?? false, packing };
}

/** @param {Field} f @returns {LandmarkOutput} */
function landmarkOutput(f) {
  const o = f.obj(["points", "coordinates", "flip_pairs", "eye_corners"]);
  const points = o.get("points").int(1, MAX_POINTS);
  return { points, coordinates: o.opt("coordinates")?.string(["input_pixels"]) ?? "input_pixels",
    flip_pairs: o.opt("flip_pairs")?.list(0, points).map((p) => p.ints(0, points - 1, [2, 2])) ?? [],
    eye_corners: o.nul("eye_corners")?.ints(0, points - 1, [2, 2]) ?? null };
}

/** An anomaly detector's F1-optimal thresholds (schema 7). @param {Field} f @returns {AnomalyThresholds} */
function anomalyThresholds(f) {
  const o = f.obj(["image", "pixel", "image_f1", "pixel_f1", "source"]);
  return { image: o.get("image").number(), pixel: o.nul("pixel")?.number() ?? null,
    image_f1: o.nul("image_f1")?.number() ?? null, pixel_f1: o.nul("pixel_f1")?.number() ?? null,
    source: o.opt("source")?.string() ?? "" };
}

/**
 * The metadata in JSON `text` (at most 16 Mi characters; a leading BOM is skipped), every field checked as
 * export/metadata.py and the Kotlin core do. Unknown top-level fields are ignored, as in Python.
 * @param {string} text @returns {Metadata}
 */
export function parseMetadata(text) {
  if (typeof text !== "string") {
    throw new ArtifactError(`mobilevision metadata must be JSON text, got ${typeof text}; re-export the artifact`);
  }
  if (text.length > MAX_JSON_CHARS) {
    throw new ArtifactError(`mobilevision metadata is ${(text.length / 1048576).toFixed(1)} MiB, over the ` +
      `${MAX_JSON_CHARS >> 20} MiB limit; re-export the artifact`);
  }
  let json;
  try {
    json = parseJson(text.replace(/^\uFEFF/, ""));
  } catch (e) {
    throw new ArtifactError(`malformed mobilevision metadata: ${/** @type {Error} */ (e).message}; re-export the artifact`);
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) {
    throw new ArtifactError("metadata is not a JSON object; re-export the artifact");
  }
  const o = new Obj(/** @type {Record<string, unknown>} */ (json), "metadata");
  const version = o.opt("schema_version");
  const v = version?.value;
  if (typeof v === "number" && Number.isInteger(v) && v > SCHEMA_VERSION) {
    throw new ArtifactError(`metadata schema version ${v} is newer than this runtime understands (${SCHEMA_VERSION}); ` +
      "upgrade the mobilevision runtime library");
  }
  const numClasses = o.nul("num_classes")?.int(0, MAX_LABELS) ?? null;
  const labels = o.nul("labels")?.strings([0, MAX_LABELS]) ?? null;
  if (labels && numClasses !== null && labels.length > numClasses) {
    o.get("labels").fail(`has ${labels.length} names for num_classes ${numClasses}`);
  }
  const tools = o.opt("tools")?.obj();
  /** @type {Metadata} */
  const md = {
    task: o.get("task").string(), model: o.get("model").string(), target: o.get("target").string(),
    precision: o.get("precision").string(),
    inputs: o.get("inputs").list(0, MAX_TENSORS).map(tensorSpec),
    outputs: o.get("outputs").list(0, MAX_TENSORS).map(tensorSpec),
    preprocessing: o.nul("preprocessing") ? preprocessing(o.get("preprocessing")) : null,
    labels, label_set: o.nul("label_set")?.string() ?? null, num_classes: numClasses,
    params: o.nul("params")?.int(0, MAX_COUNT) ?? null, macs: o.nul("macs")?.int(0, MAX_COUNT) ?? null,
    weights: o.nul("weights")?.string() ?? null, weights_sha256: o.nul("weights_sha256")?.string() ?? null,
    tools: tools ? Object.fromEntries(Object.keys(tools.map).map((k) =>
      [new Field(k, `${tools.path} key`).string(), tools.get(k).string()])) : {},
    parity: o.nul("parity")?.obj().map ?? null,
    raw: o.nul("raw") ? rawInput(o.get("raw")) : null,
    landmarks: o.nul("landmarks") ? landmarkOutput(o.get("landmarks")) : null,
    quantization: o.nul("quantization")?.obj().map ?? null,
    scores: o.nul("scores")?.string(["logits", "probabilities"]) ?? null,
    anomaly: o.nul("anomaly") ? anomalyThresholds(o.get("anomaly")) : null,
    created: o.opt("created")?.string() ?? "",
    schema_version: version ? version.int(0, SCHEMA_VERSION) : 0,
  };
  return checkImageInput(md);
}

/** An image input and its preprocessing must agree (export/metadata.py `_check_image_input`): one layout,
 * 3 channels where it says, uint8 pixels exactly when the model normalises. @param {Metadata} md */
function checkImageInput(md) {
  const pre = md.preprocessing, spec = md.inputs[0];
  if (!pre || md.inputs.length !== 1 || !IMAGE_LAYOUTS.includes(spec.layout)) return md;
  /** @param {string} field @param {string} problem @returns {never} */
  const fail = (field, problem) => { throw new ArtifactError(`metadata ${field} ${problem}; re-export the artifact`); };
  if (pre.layout !== spec.layout) fail("preprocessing.layout", `is '${pre.layout}' but inputs[0] is '${spec.layout}'`);
  const channels = spec.shape[spec.layout === "NCHW" ? 1 : 3];
  if (spec.shape.length !== 4 || (channels !== 3 && channels !== -1)) {
    fail("inputs[0].shape", `is [${spec.shape.join(", ")}], not an RGB image in ${spec.layout}`);
  }
  if ((pre.normalization === "model") !== (spec.dtype === "uint8")) {
    fail("inputs[0].dtype", `is '${spec.dtype}' for normalization '${pre.normalization}' (uint8 pixels exactly when ` +
      "the model normalises)");
  }
  return md;
}
