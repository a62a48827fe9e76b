// Top-k classes of a classifier's output, as runtime/tasks/classify.py `top_k` and ImageClassifier.kt.
import { ArtifactError, InputError } from "./errors.js";

const PROBABILITY_SLACK = 1e-4;   // per class: float32 softmax rounding around sum 1

/** @typedef {{index: number, label: string, score: number}} Classification */

/** Softmax in double precision of float32 logits (max subtracted first). @param {ArrayLike<number>} logits */
export function softmax(logits) {
  if (logits.length === 0) throw new InputError("softmax of an empty logits vector");
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const e = Float64Array.from(logits, (v) => Math.exp(v - max));
  let sum = 0;
  for (const v of e) sum += v;
  return e.map((v) => v / sum);
}

/** A graph's softmax output as doubles, refused when it is not a distribution (metadata that lies).
 * @param {ArrayLike<number>} out */
function probabilities(out) {
  const p = Float64Array.from(out);
  let sum = 0;
  for (const v of p) sum += v;
  if (p.some((v) => !Number.isFinite(v) || v < -PROBABILITY_SLACK) ||
      Math.abs(sum - 1) > PROBABILITY_SLACK * Math.max(1, p.length)) {
    throw new ArtifactError(`the metadata says the output holds probabilities, but its ${p.length} values sum to ` +
      `${sum.toPrecision(4)}; re-export the artifact`);
  }
  return p;
}

/**
 * The k most probable classes (ties keep index order), k clamped to 1..classes, of logits (softmax applied here)
 * or, with scores "probabilities", of a model whose graph ends in a softmax.
 * @param {ArrayLike<number>} logits @param {number} k @param {string[] | null} [labels] @param {string | null} [scores]
 * @returns {Classification[]}
 */
export function topK(logits, k, labels = null, scores = null) {
  if (logits.length === 0) throw new InputError("top-k of an empty output vector");
  if (!Number.isFinite(k)) throw new InputError(`top-k needs a number of classes, got ${k}`);
  const p = scores === "probabilities" ? probabilities(logits) : softmax(logits);
  const n = Math.min(Math.max(Math.trunc(k), 1), p.length);
  const order = Array.from(p.keys()).sort((a, b) => p[b] - p[a]);   // a stable sort: ties keep index order
  return order.slice(0, n).map((i) => ({ index: i, label: labels?.[i] ?? String(i), score: p[i] }));
}
