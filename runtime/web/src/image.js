// Images as the runtime sees them: 8-bit RGB interleaved (the Python runtime's uint8 HWC array) and
// single-channel float32 maps, plus the conversions from what a page has (ImageData, <img>, canvas, ...).
import { InputError } from "./errors.js";

/** @param {number} width @param {number} height */
function checkSize(width, height) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new InputError(`an image needs a positive integer size, got ${width}x${height}`);
  }
}

/** An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B. */
export class RgbImage {
  /** @param {number} width @param {number} height
   * @param {Uint8Array | Uint8ClampedArray} [data] w*h*3 bytes (zeros by default) */
  constructor(width, height, data) {
    checkSize(width, height);
    const d = data ?? new Uint8Array(width * height * 3);
    if (!(d instanceof Uint8Array || d instanceof Uint8ClampedArray) || d.length !== width * height * 3) {
      throw new InputError(`a ${width}x${height} RGB image needs a Uint8Array of ${width * height * 3} bytes, got ` +
        `${d?.constructor?.name ?? typeof d} of ${d?.length}`);
    }
    this.width = width;
    this.height = height;
    /** @type {Uint8Array} */
    this.data = d instanceof Uint8Array ? d : new Uint8Array(d.buffer, d.byteOffset, d.length);
  }
}

/** A single-channel float32 image (an anomaly map), row-major. */
export class FloatImage {
  /** @param {number} width @param {number} height @param {Float32Array} [data] w*h values (zeros by default) */
  constructor(width, height, data) {
    checkSize(width, height);
    const d = data ?? new Float32Array(width * height);
    if (!(d instanceof Float32Array) || d.length !== width * height) {
      throw new InputError(`a ${width}x${height} float image needs a Float32Array of ${width * height} values, got ` +
        `${d?.constructor?.name ?? typeof d} of ${d?.length}`);
    }
    this.width = width;
    this.height = height;
    this.data = d;
  }
}

/** @param {unknown} x @param {string} name */
const isA = (x, name) => {
  const T = /** @type {any} */ (globalThis)[name];
  return typeof T === "function" && x instanceof T;
};

/** `{width, height, data}` pixels: RGB (w*h*3) or RGBA (w*h*4, alpha dropped, no premultiplication), or null.
 * @param {any} x @returns {RgbImage | null} */
function fromPixels(x) {
  if (!x || typeof x !== "object" || !Number.isInteger(x.width) || !Number.isInteger(x.height)) return null;
  const d = x.data, n = x.width * x.height;
  if (!(d instanceof Uint8Array || d instanceof Uint8ClampedArray) || n <= 0) return null;
  if (d.length === 3 * n) return x instanceof RgbImage ? x : new RgbImage(x.width, x.height, d);
  if (d.length !== 4 * n) return null;
  const out = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    out[3 * i] = d[4 * i];
    out[3 * i + 1] = d[4 * i + 1];
    out[3 * i + 2] = d[4 * i + 2];
  }
  return new RgbImage(x.width, x.height, out);
}

/** @param {unknown} x */
function describe(x) {
  if (typeof x === "string") return `the string ${JSON.stringify(x.length > 40 ? x.slice(0, 37) + "..." : x)}`;
  if (x === null || typeof x !== "object") return String(x);
  return `a ${x.constructor?.name ?? "object"}`;
}

/**
 * The RGB pixels of an image-like value: an RgbImage, an ImageData (or any {width, height, data} with RGBA or RGB
 * bytes), or in a browser an <img>, <canvas>, <video>, ImageBitmap or OffscreenCanvas (drawn at its own size).
 * @param {any} image @returns {RgbImage}
 */
export function toRgbImage(image) {
  const px = fromPixels(image);
  if (px) return px;
  const drawable = ["HTMLImageElement", "HTMLCanvasElement", "HTMLVideoElement", "ImageBitmap", "OffscreenCanvas",
    "SVGImageElement", "VideoFrame"].find((t) => isA(image, t));
  if (!drawable) {
    throw new InputError(`${describe(image)} is not an image: give an ImageData, an <img>, a canvas, an ImageBitmap ` +
      "or an RgbImage");
  }
  const w = image.naturalWidth ?? image.videoWidth ?? image.displayWidth ?? image.width;
  const h = image.naturalHeight ?? image.videoHeight ?? image.displayHeight ?? image.height;
  if (!w || !h) throw new InputError(`the ${drawable} has no pixels yet (0x0): wait for it to load (await img.decode())`);
  if (typeof OffscreenCanvas !== "function") throw new InputError("this browser has no OffscreenCanvas: pass an ImageData");
  const canvas = new OffscreenCanvas(w, h);
  const g = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext("2d", { willReadFrequently: true }));
  g.drawImage(image, 0, 0, w, h);
  try {
    return /** @type {RgbImage} */ (fromPixels(g.getImageData(0, 0, w, h)));
  } catch (e) {
    throw new InputError(`the ${drawable}'s pixels cannot be read (${/** @type {Error} */ (e).name}): an image from ` +
      "another origin needs CORS (crossorigin=\"anonymous\" and Access-Control-Allow-Origin)");
  }
}

/**
 * An RgbImage as an ImageData (opaque), for putImageData; in Node, a plain {width, height, data}.
 * @param {RgbImage} rgb @returns {ImageData | {width: number, height: number, data: Uint8ClampedArray}}
 */
export function toImageData(rgb) {
  const img = toRgbImage(rgb), n = img.width * img.height, out = new Uint8ClampedArray(4 * n);
  for (let i = 0; i < n; i++) {
    out[4 * i] = img.data[3 * i];
    out[4 * i + 1] = img.data[3 * i + 1];
    out[4 * i + 2] = img.data[3 * i + 2];
    out[4 * i + 3] = 255;
  }
  return typeof ImageData === "function" ? new ImageData(out, img.width, img.height)
    : { width: img.width, height: img.height, data: out };
}
