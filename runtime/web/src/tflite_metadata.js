// The mobilevision entry of a .tflite file's Model.metadata, read straight from the flatbuffer (as the Kotlin
// core's TfliteMetadata.kt and the Python runtime's read_tflite_metadata). LiteRT.js exposes no model metadata;
// only the few tables needed are walked (TFLite schema: Model.buffers = field 4, Model.metadata = field 6;
// Metadata.name = 0, .buffer = 1; Buffer.data = 0, .offset = 1, .size = 2), and every offset is bounds-checked.
import { ArtifactError } from "./errors.js";
import { METADATA_KEY, MAX_JSON_CHARS } from "./metadata.js";

/** True when the bytes carry the TFLite flatbuffer identifier ("TFL3" at bytes 4..8). @param {Uint8Array} b */
export function isTflite(b) {
  return b.length >= 8 && b[4] === 0x54 && b[5] === 0x46 && b[6] === 0x4c && b[7] === 0x33;
}

/**
 * The text of the metadata entry named "mobilevision", or null when the model has none.
 * @param {ArrayBuffer | Uint8Array} bytes the .tflite file
 * @param {string} [name] the file, for error messages
 * @returns {string | null}
 */
export function readTfliteMetadata(bytes, name = "the file") {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  /** @param {string} why @returns {never} */
  const bad = (why) => {
    throw new ArtifactError(`${name} is not a valid .tflite flatbuffer (${why}); re-export the model`);
  };
  if (!isTflite(b)) bad("no TFL3 identifier");
  /** @param {number} at @param {number} size */
  const need = (at, size) => { if (!(at >= 0 && at + size <= b.length)) bad(`truncated or corrupt at byte ${at}`); };
  const u32 = (/** @type {number} */ at) => { need(at, 4); return view.getUint32(at, true); };
  const i32 = (/** @type {number} */ at) => { need(at, 4); return view.getInt32(at, true); };
  const u16 = (/** @type {number} */ at) => { need(at, 2); return view.getUint16(at, true); };
  const u64 = (/** @type {number} */ at) => { need(at, 8); return Number(view.getBigUint64(at, true)); };
  /** the table a uoffset at `ref` points to */
  const table = (/** @type {number} */ ref) => ref + u32(ref);
  /** absolute position of field `index` of the table at `t`, or null when absent */
  const field = (/** @type {number} */ t, /** @type {number} */ index) => {
    const vtable = t - i32(t), vsize = u16(vtable), at = 4 + 2 * index;
    if (at + 2 > vsize) return null;
    const off = u16(vtable + at);
    return off === 0 ? null : t + off;
  };
  /** a vector field: [position of its first element, length] */
  const vector = (/** @type {number} */ t, /** @type {number} */ index) => {
    const f = field(t, index);
    if (f === null) return null;
    const at = table(f), n = u32(at);
    need(at + 4, n);   // at least one byte per element
    return [at + 4, n];
  };
  /** @param {number} at @param {number} n */
  const utf8 = (at, n) => {
    const cap = 4 * MAX_JSON_CHARS;
    if (n > cap) bad(`the metadata entry claims ${n} bytes, more than ${cap}`);
    need(at, n);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(at, at + n));
    } catch {
      throw new ArtifactError(`the .tflite metadata entry of ${name} is not UTF-8 text; re-export the model`);
    }
  };

  const root = table(0);
  const metadata = vector(root, 6);
  if (metadata === null) return null;
  const buffers = vector(root, 4);
  if (buffers === null) bad("metadata but no buffers");
  const [bufStart, bufCount] = /** @type {[number, number]} */ (buffers);
  for (let i = 0; i < metadata[1]; i++) {
    const entry = table(metadata[0] + 4 * i);
    const nameAt = field(entry, 0);
    if (nameAt === null) continue;
    const str = table(nameAt);
    if (utf8(str + 4, u32(str)) !== METADATA_KEY) continue;
    const indexAt = field(entry, 1), index = indexAt === null ? 0 : u32(indexAt);
    if (index >= bufCount) bad(`metadata buffer ${index} is out of range (${bufCount} buffers)`);
    const buffer = table(bufStart + 4 * index);
    const dataAt = field(buffer, 0);
    let text;
    if (dataAt !== null && u32(table(dataAt)) > 0) {
      const data = table(dataAt);
      text = utf8(data + 4, u32(data));
    } else {
      // large models keep buffers after the flatbuffer: an offset from the file start and a size
      const offAt = field(buffer, 1), sizeAt = field(buffer, 2);
      const offset = offAt === null ? 0 : u64(offAt), size = sizeAt === null ? 0 : u64(sizeAt);
      if (offset <= 1 || size <= 0) return null;
      if (offset + size > b.length) bad(`the metadata buffer (${size} bytes at ${offset}) runs past the end of the file`);
      text = utf8(offset, size);
    }
    return text.replace(/\0+$/, "");
  }
  return null;
}
