// Face-landmark crops, as runtime/tasks/landmarks.py and FaceLandmarker.kt. Frame: the pixel in column i, row j
// has its centre at (i, j); a box [x0, y0, x1, y1] is stretched to the model input (aspect ratio not kept) and
// the model's points (in input pixels) are mapped back through it.
import { InputError } from "./errors.js";
import { RgbImage } from "./image.js";
import { resize } from "./resample.js";

/** @typedef {[number, number, number, number]} Box */

const MAX_BOX_SIDE = 4;          // a box may be at most this many times the image's width / height
const MAX_BOX_PIXELS = 2 ** 26;  // ... and cover at most this many pixels (or the whole image, if larger)

/** The whole image as a box. @param {number} width @param {number} height @returns {Box} */
export const fullBox = (width, height) => [-0.5, -0.5, width - 0.5, height - 0.5];

/** @param {unknown} box */
const show = (box) =>
  (Array.isArray(box) || ArrayBuffer.isView(box) ? `[${Array.from(/** @type {any} */ (box)).join(", ")}]` : String(box)).slice(0, 120);

/**
 * `box` as 4 finite numbers with positive size; with the image's size it must also overlap the image and be at most
 * 4x its sides (and 2^26 pixels, which bounds the crop's memory), as Python's check_box.
 * @param {unknown} box @param {number} [width] @param {number} [height] @returns {Box}
 */
export function checkBox(box, width, height) {
  const v = Array.isArray(box) || ArrayBuffer.isView(box) ? Array.from(/** @type {ArrayLike<unknown>} */ (box)) : [];
  if (v.length !== 4 || !v.every((x) => typeof x === "number" && Number.isFinite(x))) {
    throw new InputError(`a face box is 4 finite numbers [x0, y0, x1, y1], got ${show(box)}`);
  }
  const [x0, y0, x1, y1] = /** @type {Box} */ (v);
  if (!(x1 > x0 && y1 > y0)) {
    throw new InputError(`face box ${show(box)} has no area: x1 must exceed x0 and y1 must exceed y0`);
  }
  if (width === undefined || height === undefined) return [x0, y0, x1, y1];
  const e = fullBox(width, height);
  if (x1 <= e[0] || x0 >= e[2] || y1 <= e[1] || y0 >= e[3]) {
    throw new InputError(`face box ${show(box)} does not overlap the ${width}x${height} image (pixel centres x ` +
      `0..${width - 1}, y 0..${height - 1}): give the box in this image's pixels`);
  }
  const bw = x1 - x0, bh = y1 - y0, cap = Math.max(MAX_BOX_PIXELS, width * height);
  if (bw > MAX_BOX_SIDE * width || bh > MAX_BOX_SIDE * height || bw * bh > cap) {
    throw new InputError(`face box ${show(box)} is too large for the ${width}x${height} image: give a box around the face`);
  }
  return [x0, y0, x1, y1];
}

/**
 * `box` of the image resized (anisotropically, Pillow's antialiased bilinear) to width x height; borders inside the
 * image are replicated for the filter, output pixels whose centre falls outside the image are black.
 * @param {RgbImage} image @param {ArrayLike<number>} box @param {number} width @param {number} height
 */
export function cropImage(image, box, width, height) {
  const w = image.width, h = image.height;
  const [x0, y0, x1, y1] = checkBox(box, w, h);
  const bx0 = x0 + 0.5, by0 = y0 + 0.5, bx1 = x1 + 0.5, by1 = y1 + 0.5;   // Pillow's frame: edges at integers
  const pad = Math.ceil(Math.max((bx1 - bx0) / width, (by1 - by0) / height, 1)) + 1;   // filter support
  const wx0 = Math.floor(bx0) - pad, wy0 = Math.floor(by0) - pad, wx1 = Math.ceil(bx1) + pad, wy1 = Math.ceil(by1) + pad;
  const sx0 = Math.max(wx0, 0), sy0 = Math.max(wy0, 0), sx1 = Math.min(wx1, w), sy1 = Math.min(wy1, h);
  if (sx1 <= sx0 || sy1 <= sy0) return new RgbImage(width, height);
  // the window, edge-replicated where it leaves the image
  const ww = wx1 - wx0, wh = wy1 - wy0, win = new Uint8Array(ww * wh * 3);
  for (let y = 0; y < wh; y++) {
    const sy = Math.min(Math.max(wy0 + y, sy0), sy1 - 1);
    for (let x = 0; x < ww; x++) {
      const s = (sy * w + Math.min(Math.max(wx0 + x, sx0), sx1 - 1)) * 3;
      win.set(image.data.subarray(s, s + 3), (y * ww + x) * 3);
    }
  }
  const out = resize(new RgbImage(ww, wh, win), width, height, "bilinear", [bx0 - wx0, by0 - wy0, bx1 - wx0, by1 - wy0]);
  for (let y = 0; y < height; y++) {
    const cy = (y + 0.5) * (y1 - y0) / height + y0, rowInside = cy >= -0.5 && cy < h - 0.5;
    for (let x = 0; x < width; x++) {
      const cx = (x + 0.5) * (x1 - x0) / width + x0;
      if (!rowInside || !(cx >= -0.5 && cx < w - 0.5)) out.data.fill(0, (y * width + x) * 3, (y * width + x) * 3 + 3);
    }
  }
  return out;
}

/** Landmarks (x, y interleaved) in input pixels -> image pixels, the inverse of the crop.
 * @param {ArrayLike<number>} points @param {Box} box @param {number} width @param {number} height */
export function toImage(points, box, width, height) {
  const [x0, y0, x1, y1] = box, sx = (x1 - x0) / width, sy = (y1 - y0) / height;
  return Float64Array.from(points, (p, i) => (i % 2 === 0 ? (p + 0.5) * sx + x0 : (p + 0.5) * sy + y0));
}
