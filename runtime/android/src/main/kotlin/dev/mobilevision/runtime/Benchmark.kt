package dev.mobilevision.runtime

import kotlin.math.floor
import kotlin.math.sqrt

/**
 * The statistics `mobilevision bench` reports (runtime/profile.py `BenchResult`), in ms, over the
 * timed runs only: median, mean, p90 (linear-interpolated percentile, numpy's default), min, max
 * and std (population, ddof = 0).
 */
data class LatencyStats(
    val runs: Int, val medianMs: Double, val meanMs: Double, val p90Ms: Double,
    val minMs: Double, val maxMs: Double, val stdMs: Double,
) {
    companion object {
        fun of(samplesMs: DoubleArray): LatencyStats {
            if (samplesMs.isEmpty()) throw InputMismatchException("latency statistics need at least one timed run")
            val s = samplesMs.sortedArray()
            val mean = s.average()
            val variance = s.sumOf { (it - mean) * (it - mean) } / s.size
            return LatencyStats(s.size, percentile(s, 50.0), mean, percentile(s, 90.0), s.first(), s.last(), sqrt(variance))
        }

        /** numpy's linear percentile of sorted values. */
        fun percentile(sorted: DoubleArray, q: Double): Double {
            val pos = (sorted.size - 1) * q / 100.0
            val lo = floor(pos).toInt()
            val hi = minOf(lo + 1, sorted.size - 1)
            return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
        }
    }
}

/** One benchmark row, the fields of `mobilevision bench`'s JSON that apply on a phone. */
data class BenchResult(
    val model: String, val accelerator: Accelerator, val fallbacks: List<Fallback>, val threads: Int,
    val loadMs: Double, val firstMs: Double, val warmup: Int, val stats: LatencyStats, val macs: Long?,
) {
    /** MACs / median latency in 1e9 MAC/s, or null when the metadata has no MAC count. */
    val gmacsPerS: Double? get() = macs?.let { it / (stats.medianMs * 1e-3) / 1e9 }
}

/**
 * Latency of a model on one accelerator preference, measured as `mobilevision bench` does: open (timed
 * as load), one cold first inference, [warmup] untimed runs, then [runs] timed runs of a fixed random
 * input (seeded, standard normal), each timed run directly after [rewarm] untimed ones (bench's
 * default 1). [onProgress] gets (timed runs done, runs) and may return false to stop early: the result
 * then holds the runs done so far. [clockNs] is injectable for tests.
 */
object Benchmark {
    fun run(metadata: ModelMetadata, factory: RunnerFactory, accelerators: List<Accelerator>, threads: Int = 0,
            warmup: Int = 10, runs: Int = 50, rewarm: Int = 1, seed: Long = 0,
            onProgress: (done: Int, total: Int) -> Boolean = { _, _ -> true },
            clockNs: () -> Long = System::nanoTime): BenchResult {
        if (runs < 1 || warmup < 0 || rewarm < 0) {
            throw InputMismatchException("benchmark needs runs >= 1, warmup >= 0 and rewarm >= 0, got $runs, $warmup, $rewarm")
        }
        val rng = java.util.Random(seed)
        val inputs = metadata.inputs.map { spec -> FloatArray(spec.size) { rng.nextGaussian().toFloat() } }
        val t0 = clockNs()
        Model.open(metadata, factory, accelerators, threads).use { model ->
            val loadMs = (clockNs() - t0) / 1e6
            val t1 = clockNs()
            model.predict(inputs)
            val firstMs = (clockNs() - t1) / 1e6
            repeat(warmup) { model.predict(inputs) }
            val samples = ArrayList<Double>(runs)
            while (samples.size < runs) {
                repeat(rewarm) { model.predict(inputs) }
                val start = clockNs()
                model.predict(inputs)
                samples.add((clockNs() - start) / 1e6)
                if (!onProgress(samples.size, runs)) break
            }
            return BenchResult(metadata.model, model.accelerator, model.fallbacks, threads, loadMs, firstMs, warmup,
                LatencyStats.of(samples.toDoubleArray()), metadata.macs)
        }
    }
}
