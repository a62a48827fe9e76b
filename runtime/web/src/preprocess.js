// The metadata's image preprocessing, exactly as the Python runtime (runtime/tasks/classify.py) and the Kotlin
// core (ImagePreprocessor.kt) do it: resize (Pillow-exact) with the shorter side to `resize` then centre-crop
// `crop`, or stretch straight to `crop`; then per channel (pixel * scale - mean) / std in float32, NCHW or NHWC.
import { ArtifactError, InputError } from "./errors.js";
import { RgbImage } from "./image.js";
import { resize, resizeCrop } from "./resample.js";

/** @typedef {import("./metadata.js").Preprocessing} Preprocessing */

const MAX_RESIZED_PIXELS = 2 ** 26;   // Python's bound: a 1 x 100,000 image resized by its shorter side stops here
const f32 = Math.fround;

/** Python's round(): halves to even. @param {number} x */
const roundHalfEven = (x) => {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** The resized and cropped image the model sees (crop H x W). @param {RgbImage} image @param {Preprocessing} pre */
export function resized(image, pre) {
  const [cropH, cropW] = pre.crop;
  if (pre.resize_mode === "stretch") return resize(image, cropW, cropH, pre.interpolation);
  if (pre.resize_mode !== "shorter_side") {
    throw new ArtifactError(`unknown resize_mode '${pre.resize_mode}' in the metadata; upgrade the runtime library`);
  }
  const s = pre.resize / Math.min(image.width, image.height);
  const nw = Math.max(cropW, roundHalfEven(image.width * s)), nh = Math.max(cropH, roundHalfEven(image.height * s));
  if (nw * nh > MAX_RESIZED_PIXELS) {
    throw new InputError(`the ${image.width}x${image.height} image is too elongated: its shorter side resized to ` +
      `${pre.resize} would make it ${nw}x${nh} px; crop it to a less extreme aspect ratio first`);
  }
  // the centre crop of the resized image, computed without the pixels it drops
  return resizeCrop(image, nw, nh, pre.interpolation, (nw - cropW) >> 1, (nh - cropH) >> 1, cropW, cropH);
}

/** (pixel * scale - mean) / std in float32 of an image already at the model's size, batch 1.
 * @param {RgbImage} image @param {Preprocessing} pre @returns {Float32Array} */
export function normalize(image, pre) {
  if (pre.color !== "RGB") throw new ArtifactError(`colour order '${pre.color}' is not supported (RGB only)`);
  if (pre.normalization !== "app") {
    throw new ArtifactError("this model takes uint8 pixels and normalises them itself (a Core ML image input); " +
      "this runtime feeds float tensors: use the model's .onnx export");
  }
  if (pre.layout !== "NCHW" && pre.layout !== "NHWC") {
    throw new ArtifactError(`unknown layout '${pre.layout}' in the metadata (NCHW or NHWC)`);
  }
  const scale = f32(pre.scale), mean = pre.mean.map(f32), std = pre.std.map(f32);
  const hw = image.width * image.height, px = image.data, out = new Float32Array(hw * 3), nchw = pre.layout === "NCHW";
  for (let i = 0; i < hw; i++) {
    for (let c = 0; c < 3; c++) {
      // float32 steps, as numpy's float32 arrays compute them
      out[nchw ? c * hw + i : 3 * i + c] = f32(f32(px[3 * i + c] * scale) - mean[c]) / std[c];
    }
  }
  return out;
}

/** resized() then normalize(): the model input of an image. @param {RgbImage} image @param {Preprocessing} pre */
export function preprocess(image, pre) {
  return normalize(resized(image, pre), pre);
}
