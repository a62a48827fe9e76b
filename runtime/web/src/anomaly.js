// Anomaly maps, as runtime/tasks/anomaly.py and AnomalyDetector.kt: the map stretched back to the image's size
// (bilinear), a jet heatmap and an overlay, both integer-exact across runtimes.
import { InputError } from "./errors.js";
import { FloatImage, RgbImage } from "./image.js";
import { resizeFloat } from "./resample.js";

export const HEATMAP_LO = 0, HEATMAP_HI = 0.2;   // the validation 99.5th percentile (0.1) mid-scale
export const OVERLAY_ALPHA = 128;                 // heatmap weight out of 256

/** A map at the model's input size -> the image's size, bilinear (the detector stretched the image).
 * @param {FloatImage} map @param {number} width @param {number} height */
export function toImageSize(map, width, height) {
  return map.width === width && map.height === height ? map : resizeFloat(map, width, height, "bilinear");
}

/** @param {number} c */
const channel = (c) => Math.floor(Math.min(Math.max(c, 0), 1) * 255 + 0.5);

/**
 * Map -> jet colours, lo blue to hi red: v = clamp((m - lo) / (hi - lo), 0, 1) in double (NaN -> 0);
 * R, G, B = clamp(1.5 - |4v - 3|), clamp(1.5 - |4v - 2|), clamp(1.5 - |4v - 1|); bytes floor(255 c + 0.5).
 * @param {FloatImage} map @param {number} [lo] @param {number} [hi] @returns {RgbImage}
 */
export function heatmap(map, lo = HEATMAP_LO, hi = HEATMAP_HI) {
  if (!(hi > lo) || !Number.isFinite(lo) || !Number.isFinite(hi)) {
    throw new InputError(`heatmap range needs finite lo < hi, got [${lo}, ${hi}]`);
  }
  const out = new Uint8Array(map.data.length * 3);
  map.data.forEach((m, i) => {
    const v = Number.isNaN(m) ? 0 : Math.min(Math.max((m - lo) / (hi - lo), 0), 1);
    out[3 * i] = channel(1.5 - Math.abs(4 * v - 3));
    out[3 * i + 1] = channel(1.5 - Math.abs(4 * v - 2));
    out[3 * i + 2] = channel(1.5 - Math.abs(4 * v - 1));
  });
  return new RgbImage(map.width, map.height, out);
}

/** (image (256 - alpha) + heat alpha + 128) >> 8 per channel: the heatmap blended over the image.
 * @param {RgbImage} image @param {RgbImage} heat @param {number} [alpha] 0..256 */
export function overlay(image, heat, alpha = OVERLAY_ALPHA) {
  if (image.width !== heat.width || image.height !== heat.height) {
    throw new InputError(`overlay needs the same size: image ${image.width}x${image.height}, heatmap ` +
      `${heat.width}x${heat.height}`);
  }
  if (!Number.isInteger(alpha) || alpha < 0 || alpha > 256) {
    throw new InputError(`overlay alpha is an integer 0..256, got ${alpha}`);
  }
  const a = image.data, b = heat.data;
  return new RgbImage(image.width, image.height, a.map((v, i) => (v * (256 - alpha) + b[i] * alpha + 128) >> 8));
}

/** What detectAnomaly returns: the score (the map's maximum, ~0.1 = the validation 99.5th percentile), the map at
 * the image's size, and the decision when there is a threshold (the caller's, else the artifact's). */
export class AnomalyResult {
  /** @param {number} score @param {FloatImage} map @param {number | null} threshold @param {RgbImage} image
   * @param {number | null} [pixelThreshold] */
  constructor(score, map, threshold, image, pixelThreshold = null) {
    this.score = score;
    this.map = map;
    this.threshold = threshold;
    this.pixelThreshold = pixelThreshold;
    /** score > threshold (compared in double, as Python), or null without a threshold */
    this.isAnomalous = threshold == null ? null : score > threshold;
    this.image = image;
  }

  /** Per pixel (row-major): 1 where the map exceeds the artifact's pixel threshold; null without one. */
  anomalousPixels() {
    const t = this.pixelThreshold;
    return t == null ? null : Uint8Array.from(this.map.data, (v) => (v > t ? 1 : 0));
  }

  /** @param {number} [lo] @param {number} [hi] */
  heatmap(lo = HEATMAP_LO, hi = HEATMAP_HI) { return heatmap(this.map, lo, hi); }

  /** @param {number} [alpha] */
  overlay(alpha = OVERLAY_ALPHA) { return overlay(this.image, this.heatmap(), alpha); }
}
