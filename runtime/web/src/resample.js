// Image resizing that gives the same pixels as Pillow's Image.resize (the Python runtime's preprocessing),
// ported from the Kotlin core's Resample.kt. Pillow's separable convolution (libImaging/Resample.c): per output
// pixel a filter window scaled by the downscale factor, weights normalised to sum 1; 8-bit images use 22-bit
// fixed-point weights with rounding and clamp after each pass, float images accumulate in double. The box is
// single precision, as in Pillow. "nearest" is Pillow's affine scaling (Geometry.c ImagingScaleAffine).
import { ArtifactError, InputError } from "./errors.js";
import { FloatImage, RgbImage } from "./image.js";

const PRECISION_BITS = 32 - 8 - 2;
const f32 = Math.fround;
/** @param {number} v */
const sinc = (v) => (v === 0 ? 1 : Math.sin(v * Math.PI) / (v * Math.PI));

/** @typedef {{support: number, weight: (x: number) => number}} Filter */
/** @type {Record<string, Filter>} */
const FILTERS = {
  box: { support: 0.5, weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0) },
  bilinear: { support: 1, weight: (x) => { x = Math.abs(x); return x < 1 ? 1 - x : 0; } },
  hamming: { support: 1, weight: (x) => {
    x = Math.abs(x);
    if (x === 0) return 1;
    if (x >= 1) return 0;
    x *= Math.PI;
    return Math.sin(x) / x * (f32(0.54) + f32(0.46) * Math.cos(x));   // Pillow's float constants
  } },
  bicubic: { support: 2, weight: (x) => {
    const a = -0.5;
    x = Math.abs(x);
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    return x < 2 ? (((x - 5) * x + 8) * x - 4) * a : 0;
  } },
  lanczos: { support: 3, weight: (x) => (x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0) },
};
export const FILTER_NAMES = [...Object.keys(FILTERS), "nearest"];

/** @param {string} name @returns {Filter | null} null for nearest */
function filterOf(name) {
  const key = String(name).toLowerCase();
  if (key === "nearest") return null;
  const f = FILTERS[key];
  if (!f) {
    throw new ArtifactError(`interpolation '${name}' is not supported (${FILTER_NAMES.join(", ")}); re-export with one of those`);
  }
  return f;
}

/** The box as float32 (Pillow's rules: inside the image, not empty); [0, 0, w, h] without one.
 * @param {number} w @param {number} h @param {number} outW @param {number} outH @param {ArrayLike<number> | null | undefined} box */
function checkBox(w, h, outW, outH, box) {
  if (!Number.isInteger(outW) || !Number.isInteger(outH) || outW < 1 || outH < 1) {
    throw new InputError(`resize target must be at least 1x1 integer pixels, got ${outW}x${outH}`);
  }
  if (box != null && box.length !== 4) throw new InputError(`a resize box is (x0, y0, x1, y1), got ${box.length} values`);
  const b = Float32Array.from(box ?? [0, 0, w, h]);
  if (!b.every(Number.isFinite)) throw new InputError(`resize box [${b.join(", ")}] holds a non-finite value`);
  if (b[0] < 0 || b[1] < 0) throw new InputError(`resize box offset can't be negative: [${b.join(", ")}]`);
  if (b[2] > w || b[3] > h) throw new InputError(`resize box [${b.join(", ")}] exceeds the ${w}x${h} image`);
  if (b[2] - b[0] < 0 || b[3] - b[1] < 0) throw new InputError(`resize box [${b.join(", ")}] is empty`);
  return b;
}

/** Whether the resize is a plain crop (integer offsets, scale 1): Pillow's weights are then exactly one tap.
 * @param {Float32Array} b @param {number} w @param {number} h @param {number} outW @param {number} outH */
function isCrop(b, w, h, outW, outH) {
  if (outW === w && outH === h && b[0] === 0 && b[1] === 0 && b[2] === w && b[3] === h) return true;
  return Number.isInteger(b[0]) && f32(b[2] - b[0]) === outW && Number.isInteger(b[1]) && f32(b[3] - b[1]) === outH;
}

/** Filter windows and weights along one axis (Pillow's precompute_coeffs). */
class Coeffs {
  /** @param {number} inSize @param {number} in0 @param {number} in1 @param {number} outSize @param {Filter} filter */
  constructor(inSize, in0, in1, outSize, filter) {
    const scale = f32(in1 - in0) / outSize;
    const filterScale = scale < 1 ? 1 : scale;
    const support = filter.support * filterScale;
    this.ksize = Math.ceil(support) * 2 + 1;
    this.bounds = new Int32Array(outSize * 2);   // (first source index, count) per output index
    this.weights = new Float64Array(outSize * this.ksize);
    const inv = 1 / filterScale;
    for (let xx = 0; xx < outSize; xx++) {
      const center = in0 + (xx + 0.5) * scale;
      const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
      const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
      const k = xx * this.ksize;
      let total = 0;
      for (let x = 0; x < xmax; x++) {
        const w = filter.weight((x + xmin - center + 0.5) * inv);
        this.weights[k + x] = w;
        total += w;
      }
      if (total !== 0) for (let x = 0; x < xmax; x++) this.weights[k + x] /= total;
      this.bounds[2 * xx] = xmin;
      this.bounds[2 * xx + 1] = Math.max(xmax, 0);
    }
  }

  /** Source indices [first, last) that output indices [start, start + count) read.
   * @param {number} start @param {number} count */
  span(start, count) {
    let lo = Infinity, hi = 0;
    for (let i = start; i < start + count; i++) {
      lo = Math.min(lo, this.bounds[2 * i]);
      hi = Math.max(hi, this.bounds[2 * i] + this.bounds[2 * i + 1]);
    }
    return [lo, hi];
  }

  /** The weights in 22-bit fixed point, rounded away from zero as Pillow does. */
  fixed() {
    return Int32Array.from(this.weights, (w) => Math.trunc((w < 0 ? -0.5 : 0.5) + w * (1 << PRECISION_BITS)));
  }
}

/** @param {number} v */
const clip8 = (v) => { v >>= PRECISION_BITS; return v < 0 ? 0 : v > 255 ? 255 : v; };

/** Horizontal pass over RGB rows [row0, row0 + rows) of `src` (srcW wide) to output columns [col0, col0 + cols);
 * source columns are shifted by -shift (the input starts there).
 * @param {Uint8Array} src @param {number} srcW @param {number} row0 @param {number} rows @param {Coeffs} c
 * @param {number} col0 @param {number} cols @param {number} shift */
function horizontal8(src, srcW, row0, rows, c, col0, cols, shift) {
  const k = c.fixed(), out = new Uint8Array(cols * rows * 3), half = 1 << (PRECISION_BITS - 1);
  for (let yy = 0; yy < rows; yy++) {
    const rowIn = (row0 + yy) * srcW;
    for (let j = 0; j < cols; j++) {
      const xx = col0 + j, n = c.bounds[2 * xx + 1], kb = xx * c.ksize;
      let s0 = half, s1 = half, s2 = half, p = (rowIn + c.bounds[2 * xx] - shift) * 3;
      for (let t = 0; t < n; t++, p += 3) {
        const w = k[kb + t];
        s0 += src[p] * w;
        s1 += src[p + 1] * w;
        s2 += src[p + 2] * w;
      }
      const o = (yy * cols + j) * 3;
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
    }
  }
  return out;
}

/** Vertical pass: output rows [row0, row0 + rows) over source columns [col0, col0 + cols) of `src` (srcW wide,
 * its first row is source row srcRow0). Integer sums, so accumulating row by row does not change the result.
 * @param {Uint8Array} src @param {number} srcW @param {number} srcRow0 @param {Coeffs} c @param {number} row0
 * @param {number} rows @param {number} col0 @param {number} cols */
function vertical8(src, srcW, srcRow0, c, row0, rows, col0, cols) {
  const k = c.fixed(), len = cols * 3, out = new Uint8Array(len * rows), acc = new Int32Array(len);
  for (let i = 0; i < rows; i++) {
    const yy = row0 + i, first = c.bounds[2 * yy] - srcRow0;
    acc.fill(1 << (PRECISION_BITS - 1));
    for (let t = 0; t < c.bounds[2 * yy + 1]; t++) {
      const w = k[yy * c.ksize + t], base = ((first + t) * srcW + col0) * 3;
      for (let e = 0; e < len; e++) acc[e] += src[base + e] * w;
    }
    for (let e = 0; e < len; e++) out[i * len + e] = clip8(acc[e]);
  }
  return out;
}

/** Pillow's nearest: source index per output index, -1 outside (black). The position accumulates in double,
 * step by step, as ImagingScaleAffine does. @param {number} b0 @param {number} b1 @param {number} out @param {number} size */
function nearestTable(b0, b1, out, size) {
  const step = f32(b1 - b0) / out, t = new Int32Array(out);
  let pos = b0 + step * 0.5;
  for (let x = 0; x < out; x++, pos += step) {
    const i = pos < 0 ? -1 : Math.trunc(pos);
    t[x] = i < size ? i : -1;
  }
  return t;
}

/**
 * Pillow `Image.resize((width, height), filter, box)` of an RGB image; box = [x0, y0, x1, y1], edges at integers.
 * @param {RgbImage} src @param {number} width @param {number} height @param {string} filter
 * @param {ArrayLike<number> | null} [box]
 */
export function resize(src, width, height, filter, box = null) {
  return resizeCrop(src, width, height, filter, 0, 0, width, height, box);
}

/**
 * The cropW x cropH window at (left, top) of resize(src, width, height, filter, box), computed alone: the same
 * pixels as resizing then cropping, without the pixels the crop throws away.
 * @param {RgbImage} src @param {number} width @param {number} height @param {string} filter @param {number} left
 * @param {number} top @param {number} cropW @param {number} cropH @param {ArrayLike<number> | null} [box]
 */
export function resizeCrop(src, width, height, filter, left, top, cropW, cropH, box = null) {
  const f = filterOf(filter), b = checkBox(src.width, src.height, width, height, box);
  if (!(left >= 0 && top >= 0 && cropW >= 1 && cropH >= 1 && left + cropW <= width && top + cropH <= height)) {
    throw new InputError(`crop ${cropW}x${cropH} at (${left}, ${top}) is not inside the ${width}x${height} resize`);
  }
  const w = src.width, h = src.height, px = src.data;
  if (isCrop(b, w, h, width, height)) return crop(src, b[0] + left, b[1] + top, cropW, cropH);
  if (!f) {
    const xs = nearestTable(b[0], b[2], width, w), ys = nearestTable(b[1], b[3], height, h);
    const out = new Uint8Array(cropW * cropH * 3);
    for (let y = 0; y < cropH; y++) {
      for (let x = 0; x < cropW; x++) {
        const sy = ys[top + y], sx = xs[left + x];
        if (sy >= 0 && sx >= 0) out.set(px.subarray((sy * w + sx) * 3, (sy * w + sx) * 3 + 3), (y * cropW + x) * 3);
      }
    }
    return new RgbImage(cropW, cropH, out);
  }
  const needH = width !== w || b[0] !== 0 || b[2] !== width;
  const needV = height !== h || b[1] !== 0 || b[3] !== height;
  // Pillow's pass order (it changes the intermediate rounding): horizontal first unless the height shrinks more
  // than twice as much as the width
  const hFirst = !(h - height > 0 && h - height > (w - width) * 2);
  const hc = needH ? new Coeffs(w, b[0], b[2], width, f) : null;
  const vc = needV ? new Coeffs(h, b[1], b[3], height, f) : null;
  let out;
  if (hc && vc && hFirst) {
    const [r0, r1] = vc.span(top, cropH);
    out = vertical8(horizontal8(px, w, r0, r1 - r0, hc, left, cropW, 0), cropW, r0, vc, top, cropH, 0, cropW);
  } else if (hc && vc) {
    const [c0, c1] = hc.span(left, cropW);
    out = horizontal8(vertical8(px, w, 0, vc, top, cropH, c0, c1 - c0), c1 - c0, 0, cropH, hc, left, cropW, c0);
  } else if (hc) {
    out = horizontal8(px, w, top, cropH, hc, left, cropW, 0);
  } else {
    out = vertical8(px, w, 0, /** @type {Coeffs} */ (vc), top, cropH, left, cropW);
  }
  return new RgbImage(cropW, cropH, out);
}

/** @param {RgbImage} src @param {number} x0 @param {number} y0 @param {number} w @param {number} h */
function crop(src, x0, y0, w, h) {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const from = ((y0 + y) * src.width + x0) * 3;
    out.set(src.data.subarray(from, from + w * 3), y * w * 3);
  }
  return new RgbImage(w, h, out);
}

/** @param {Float32Array} src @param {number} width @param {number} rowOffset @param {number} rows @param {Coeffs} c */
function floatHorizontal(src, width, rowOffset, rows, c) {
  const outW = c.bounds.length / 2, out = new Float32Array(outW * rows);
  for (let yy = 0; yy < rows; yy++) {
    const rowIn = (yy + rowOffset) * width;
    for (let xx = 0; xx < outW; xx++) {
      const xmin = c.bounds[2 * xx], n = c.bounds[2 * xx + 1], k = xx * c.ksize;
      let ss = 0;
      for (let x = 0; x < n; x++) ss += src[rowIn + x + xmin] * c.weights[k + x];
      out[yy * outW + xx] = ss;
    }
  }
  return out;
}

/** @param {Float32Array} src @param {number} width @param {Coeffs} c */
function floatVertical(src, width, c) {
  const outH = c.bounds.length / 2, out = new Float32Array(width * outH);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = c.bounds[2 * yy], n = c.bounds[2 * yy + 1], k = yy * c.ksize;
    for (let xx = 0; xx < width; xx++) {
      let ss = 0;
      for (let y = 0; y < n; y++) ss += src[(y + ymin) * width + xx] * c.weights[k + y];
      out[yy * width + xx] = ss;
    }
  }
  return out;
}

/**
 * Pillow `Image.fromarray(map, "F").resize((width, height), filter, box)`.
 * @param {FloatImage} src @param {number} width @param {number} height @param {string} filter
 * @param {ArrayLike<number> | null} [box]
 */
export function resizeFloat(src, width, height, filter, box = null) {
  const f = filterOf(filter), b = checkBox(src.width, src.height, width, height, box);
  const w = src.width, h = src.height;
  if (isCrop(b, w, h, width, height) || !f) {
    const xs = f ? null : nearestTable(b[0], b[2], width, w), ys = f ? null : nearestTable(b[1], b[3], height, h);
    const out = new Float32Array(width * height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const sy = ys ? ys[y] : b[1] + y, sx = xs ? xs[x] : b[0] + x;
        if (sy >= 0 && sx >= 0) out[y * width + x] = src.data[sy * w + sx];
      }
    }
    return new FloatImage(width, height, out);
  }
  const needH = width !== w || b[0] !== 0 || b[2] !== width;
  const needV = height !== h || b[1] !== 0 || b[3] !== height;
  const hFirst = !(h - height > 0 && h - height > (w - width) * 2);
  let cur = src.data, curW = w, curH = h;
  const vert = (needH && hFirst) || needV ? new Coeffs(h, b[1], b[3], height, f) : null;
  if (needH && hFirst && vert) {
    // only the source rows the vertical pass reads
    const rowFirst = vert.bounds[0];
    const rowLast = vert.bounds[2 * (height - 1)] + vert.bounds[2 * (height - 1) + 1];
    for (let i = 0; i < height; i++) vert.bounds[2 * i] -= rowFirst;
    cur = floatHorizontal(cur, curW, rowFirst, rowLast - rowFirst, new Coeffs(w, b[0], b[2], width, f));
    curW = width;
    curH = rowLast - rowFirst;
  }
  if (needV && vert) { cur = floatVertical(cur, curW, vert); curH = height; }
  if (needH && !hFirst) { cur = floatHorizontal(cur, curW, 0, curH, new Coeffs(w, b[0], b[2], width, f)); curW = width; }
  return new FloatImage(width, height, cur === src.data ? cur.slice() : cur);
}
