// RAW -> RGB helpers, as runtime/tasks/isp.py and RawIsp.kt: Bayer packing into half-resolution (B, G_R, R, G_B)
// planes, per-channel level normalisation in float32, and tiling with a 3-packed-pixel halo, which is exact for
// EfficientISP / RobustISP (7x7 packed receptive field, zero padding at the image border).
import { ArtifactError, InputError } from "./errors.js";
import { RgbImage } from "./image.js";

/** (row, col) of each packed channel's site in the 2x2 cell, in (B, G_R, R, G_B) order. */
export const BAYER_SITES = /** @type {Record<string, [number, number][]>} */ ({
  RGGB: [[1, 1], [0, 1], [0, 0], [1, 0]],
  BGGR: [[0, 0], [1, 0], [1, 1], [0, 1]],
  GRBG: [[1, 0], [0, 0], [0, 1], [1, 1]],
  GBRG: [[0, 1], [1, 1], [1, 0], [0, 0]],
});
export const HALO = 3;

/** @typedef {Uint16Array | Float32Array | ArrayLike<number>} Mosaic */

/** @param {string} pattern */
function sites(pattern) {
  const s = BAYER_SITES[String(pattern).toUpperCase()];
  if (!s) throw new InputError(`unknown Bayer pattern '${pattern}': use one of ${Object.keys(BAYER_SITES).join(", ")}`);
  return s;
}

/** @param {Mosaic} mosaic @param {number} width @param {number} height */
function checkMosaic(mosaic, width, height) {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 2 || height < 2 || mosaic?.length !== width * height) {
    throw new InputError(`a ${width}x${height} mosaic needs ${width * height} values (at least 2x2), got ${mosaic?.length}`);
  }
}

/** The mosaic without a last odd row / column (the pattern is anchored at (0, 0), so it does not change).
 * @param {Mosaic} mosaic @param {number} width @param {number} height */
export function cropEven(mosaic, width, height) {
  checkMosaic(mosaic, width, height);
  const w = width & ~1, h = height & ~1;
  if (w === width && h === height) return { mosaic, width, height };
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = mosaic[y * width + x];
  return { mosaic: out, width: w, height: h };
}

/** (H, W) mosaic -> (4, H/2, W/2) planes in (B, G_R, R, G_B) order; a last odd row / column is dropped.
 * @param {Mosaic} mosaic @param {number} width @param {number} height @param {string} [pattern] */
export function packBayer(mosaic, width, height, pattern = "RGGB") {
  checkMosaic(mosaic, width, height);
  const h = height >> 1, w = width >> 1, out = new Float32Array(4 * h * w);
  sites(pattern).forEach(([dy, dx], c) => {
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) out[(c * h + y) * w + x] = mosaic[(2 * y + dy) * width + 2 * x + dx];
    }
  });
  return out;
}

/** float32 (x - black_c) / (white - black_c) per packed channel (1 or 4 black levels), clipped at 0 when asked.
 * @param {Float32Array} packed @param {number | number[]} black @param {number} white @param {boolean} [clip] */
export function normalizeRaw(packed, black, white, clip = false) {
  const levels = typeof black === "number" ? [black] : Array.from(black ?? []);
  if ((levels.length !== 1 && levels.length !== 4) || !levels.every(Number.isFinite) || !Number.isFinite(white)) {
    throw new InputError("black level is one number or four (B, G_R, R, G_B) and white level a number, got " +
      `[${levels}] and ${white}`);
  }
  const f32 = Math.fround, plane = packed.length / 4;
  const b = [0, 1, 2, 3].map((c) => f32(levels[levels.length === 1 ? 0 : c]));
  const span = b.map((v) => f32(f32(white) - v));
  if (span.some((s) => s <= 0)) throw new InputError(`white level ${white} must exceed every black level [${levels}]`);
  const out = new Float32Array(packed.length);
  for (let c = 0; c < 4; c++) {
    for (let i = c * plane; i < (c + 1) * plane; i++) {
      const v = f32(packed[i] - b[c]) / span[c];
      out[i] = clip ? Math.max(v, 0) : v;
    }
  }
  return out;
}

/** (window start, keep start, keep end) along one axis; windows lie inside [0, length).
 * @param {number} length @param {number} tile @param {number} [halo] @returns {[number, number, number][]} */
export function windows(length, tile, halo = HALO) {
  if (length <= tile) return [[0, 0, length]];
  const step = tile - 2 * halo;
  if (step <= 0) throw new InputError(`tile ${tile} is too small for a ${halo}-pixel halo on both sides`);
  /** @type {[number, number, number][]} */
  const out = [];
  for (let p = 0; p < length;) {
    const start = Math.min(Math.max(p - halo, 0), length - tile);
    const end = start === length - tile ? length : Math.min(p !== 0 ? p + step : tile - halo, length);
    out.push([start, p, end]);
    p = end;
  }
  return out;
}

/**
 * `run` ((1, 4, th, tw) -> (1, 3, 2th, 2tw)) over the (4, h, w) planes in tiles with a halo of real neighbours on
 * interior borders; returns (3, 2h, 2w) and the number of tiles.
 * @param {Float32Array} packed @param {number} h @param {number} w @param {number} th @param {number} tw
 * @param {(tile: Float32Array) => Promise<Float32Array>} run
 */
export async function runTiled(packed, h, w, th, tw, run) {
  const outW = 2 * w, outH = 2 * h, out = new Float32Array(3 * outH * outW);
  let tiles = 0;
  for (const [r0, keepR0, keepR1] of windows(h, th)) {
    for (const [c0, keepC0, keepC1] of windows(w, tw)) {
      const tile = new Float32Array(4 * th * tw);
      for (let c = 0; c < 4; c++) {
        for (let y = 0; y < th; y++) {
          const from = (c * h + r0 + y) * w + c0;
          tile.set(packed.subarray(from, from + tw), (c * th + y) * tw);
        }
      }
      const y = await run(tile);
      tiles++;
      if (y.length !== 12 * th * tw) {
        throw new ArtifactError(`the ISP model returned ${y.length} values for a ${tw}x${th} tile, expected ${12 * th * tw}`);
      }
      for (let c = 0; c < 3; c++) {
        for (let yy = 2 * keepR0; yy < 2 * keepR1; yy++) {
          const from = (c * 2 * th + yy - 2 * r0) * 2 * tw + 2 * (keepC0 - c0);
          out.set(y.subarray(from, from + 2 * (keepC1 - keepC0)), (c * outH + yy) * outW + 2 * keepC0);
        }
      }
    }
  }
  return { chw: out, tiles };
}

/** (3, H, W) planes -> (H, W, 3) interleaved. @param {Float32Array} chw @param {number} width @param {number} height */
export function toHwc(chw, width, height) {
  const n = width * height, out = new Float32Array(3 * n);
  for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) out[3 * i + c] = chw[c * n + i];
  return out;
}

/** HWC float RGB -> RgbImage: clamped to [0, 1], then (255 c + 0.5) truncated in float32 (Python's to_uint8).
 * @param {Float32Array} rgb @param {number} width @param {number} height */
export function toUint8(rgb, width, height) {
  const f32 = Math.fround;
  const out = Uint8Array.from(rgb, (v) => Math.trunc(f32(f32(Math.min(Math.max(v, 0), 1) * 255) + 0.5)));
  return new RgbImage(width, height, out);
}
