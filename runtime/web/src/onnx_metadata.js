// The mobilevision entry of an ONNX file's metadata_props, read straight from the protobuf bytes. Hand-written
// because onnxruntime-web exposes no model metadata, and these ~40 lines beat shipping onnx.proto and a
// protobuf library: only ModelProto's top level is walked (field 14 = repeated StringStringEntryProto
// {1: key, 2: value}); every other field is skipped by its wire type, and every length is bounds-checked.
import { ArtifactError } from "./errors.js";
import { METADATA_KEY } from "./metadata.js";

/**
 * The string value of metadata_props["mobilevision"], or null when the model has none.
 * @param {ArrayBuffer | Uint8Array} bytes the .onnx file
 * @param {string} [name] the file, for error messages
 * @returns {string | null}
 */
export function readOnnxMetadata(bytes, name = "the file") {
  const b = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  /** @param {string} why @returns {never} */
  const bad = (why) => {
    throw new ArtifactError(`${name} is not an ONNX model (${why}), nor a .tflite; give the .onnx or .tflite file mobilevision export wrote`);
  };
  if (b.length === 0) bad("empty file");
  let pos = 0;
  const varint = () => {
    let v = 0;
    for (let scale = 1; scale < 2 ** 63; scale *= 128) {
      if (pos >= b.length) bad(`truncated at byte ${pos}`);
      const byte = b[pos++];
      v += (byte & 0x7f) * scale;
      if (byte < 0x80) return v;
    }
    return bad(`a varint longer than 10 bytes at byte ${pos}`);
  };
  /** [field, wire type, start, end] of the next field of the message ending at `end`; the value is skipped.
   * @param {number} end @returns {[number, number, number, number]} */
  const next = (end) => {
    const key = varint(), field = Math.floor(key / 8), wire = key % 8;
    if (field === 0) bad(`field number 0 at byte ${pos}`);
    const start = pos;
    if (wire === 0) varint();
    else if (wire === 1 || wire === 5) pos += wire === 1 ? 8 : 4;
    else if (wire === 2) { const n = varint(); pos += n; }
    else bad(`wire type ${wire} at byte ${start}`);
    if (pos > end) bad(`a field runs past the end (byte ${pos} of ${end})`);
    return [field, wire, start, pos];
  };
  /** @param {number} start @param {number} end */
  const text = (start, end) => {
    pos = start;
    const n = varint();
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(b.subarray(pos, pos + n));
    } catch {
      return bad("a metadata string is not UTF-8");
    } finally {
      pos = end;
    }
  };
  let found = null, graph = false, version = false;
  while (pos < b.length) {
    const [field, wire, start, end] = next(b.length);
    if (field === 1) version = wire === 0;
    if (field === 7) graph = wire === 2;
    if (field !== 14 || wire !== 2) continue;
    pos = start;
    const entryEnd = varint() + pos;
    let key = null, value = "";
    while (pos < entryEnd) {
      const [f, w, s, e] = next(entryEnd);
      if (w === 2 && f === 1) key = text(s, e);
      else if (w === 2 && f === 2) value = text(s, e);
    }
    if (key === METADATA_KEY) found = value;
    pos = end;
  }
  // every ModelProto has an IR version and a graph: bytes without them only happen to parse
  if (!version || !graph) bad(version ? "no graph" : "no IR version");
  return found;
}
