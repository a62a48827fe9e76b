// The latency statistics `mobilevision bench` reports (runtime/profile.py latency_stats, Benchmark.kt), in ms:
// median, mean, p90 (numpy's linear percentile), min, max and std (population, ddof = 0).
import { InputError } from "./errors.js";

/** @param {number[]} sorted @param {number} q */
function percentile(sorted, q) {
  const pos = (sorted.length - 1) * q / 100, lo = Math.floor(pos), hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * @param {ArrayLike<number>} samplesMs timed runs in ms
 * @returns {{runs: number, median_ms: number, mean_ms: number, p90_ms: number, min_ms: number, max_ms: number, std_ms: number}}
 */
export function latencyStats(samplesMs) {
  const s = Array.from(samplesMs ?? [], Number).sort((a, b) => a - b);
  if (s.length === 0) throw new InputError("latency statistics need at least one timed run");
  if (!s.every(Number.isFinite)) throw new InputError("latency samples must be finite numbers of ms");
  const mean = s.reduce((a, v) => a + v, 0) / s.length;
  const variance = s.reduce((a, v) => a + (v - mean) * (v - mean), 0) / s.length;
  return { runs: s.length, median_ms: percentile(s, 50), mean_ms: mean, p90_ms: percentile(s, 90), min_ms: s[0],
    max_ms: s[s.length - 1], std_ms: Math.sqrt(variance) };
}
