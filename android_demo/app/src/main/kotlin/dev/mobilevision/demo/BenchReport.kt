package dev.mobilevision.demo

// Plain Kotlin (no Android imports): the benchmark screen's plan and text, the same statistics as
// `mobilevision bench` (ms over the timed runs; GMAC/s = MACs / median).

import dev.mobilevision.runtime.Accelerator
import dev.mobilevision.runtime.AcceleratorUnavailableException
import dev.mobilevision.runtime.BenchResult
import dev.mobilevision.runtime.Benchmark
import dev.mobilevision.runtime.Fallback
import dev.mobilevision.runtime.ModelMetadata
import dev.mobilevision.runtime.RunnerFactory
import java.util.Locale

/** One accelerator's benchmark: measured, not run (the reasons LiteRT gave), or failed while running. */
sealed class BenchOutcome(val requested: Accelerator) {
    class Ran(val result: BenchResult) : BenchOutcome(result.accelerator)
    class NotRun(requested: Accelerator, val attempts: List<Fallback>) : BenchOutcome(requested)
    class Failed(requested: Accelerator, val message: String) : BenchOutcome(requested)
}

object BenchReport {
    /** Each accelerator is benchmarked alone, as `mobilevision bench --device`: no silent fallback to another. */
    val ACCELERATORS = listOf(Accelerator.CPU, Accelerator.GPU, Accelerator.NPU)
    const val WARMUP = 5
    const val RUNS = 50

    /**
     * Benchmarks [metadata]'s model on [accelerator] alone (blocking: call it off the main thread). An
     * accelerator that cannot open the model is a [BenchOutcome.NotRun]; an error after it opened, a [BenchOutcome.Failed].
     */
    fun measure(metadata: ModelMetadata, factory: RunnerFactory, accelerator: Accelerator, threads: Int = 0,
                warmup: Int = WARMUP, runs: Int = RUNS, keepGoing: () -> Boolean = { true }): BenchOutcome = try {
        BenchOutcome.Ran(Benchmark.run(metadata, factory, listOf(accelerator), threads, warmup, runs,
            onProgress = { _, _ -> keepGoing() }))
    } catch (e: AcceleratorUnavailableException) {
        BenchOutcome.NotRun(accelerator, e.attempts)
    } catch (e: Exception) {
        BenchOutcome.Failed(accelerator, e.message ?: e.javaClass.simpleName)
    }

    fun header(metadata: ModelMetadata, warmup: Int = WARMUP, runs: Int = RUNS): List<String> = listOf(
        "${metadata.model} (${metadata.task}, ${metadata.precision}), input " +
            metadata.inputs.joinToString(", ") { "${it.name} ${it.shape}" },
        "MACs ${metadata.macs?.let { fmt(it / 1e6, 1) + " M" } ?: "unknown"}; random-normal input, " +
            "$warmup warm-up + $runs timed runs (each after one untimed run, as bench) per accelerator; times in ms",
    )

    /** The `mobilevision bench` columns, one row per outcome, then what ran where and every fallback. */
    fun table(outcomes: List<BenchOutcome>): List<String> {
        val cols = listOf("acc", "threads", "load", "first", "median", "mean", "p90", "min", "max", "std", "GMAC/s")
        val rows = outcomes.map { o ->
            when (o) {
                is BenchOutcome.Ran -> o.result.let { r ->
                    val s = r.stats
                    listOf(o.requested.name, if (r.threads == 0) "default" else r.threads.toString()) +
                        listOf(r.loadMs, r.firstMs, s.medianMs, s.meanMs, s.p90Ms, s.minMs, s.maxMs, s.stdMs).map { fmt(it, 2) } +
                        (r.gmacsPerS?.let { fmt(it, 1) } ?: "-")
                }
                is BenchOutcome.NotRun, is BenchOutcome.Failed -> listOf(o.requested.name) + List(cols.size - 1) { "-" }
            }
        }
        val widths = cols.indices.map { c -> maxOf(cols[c].length, rows.maxOfOrNull { it[c].length } ?: 0) }
        fun line(cells: List<String>) = cells.mapIndexed { c, v -> if (c == 0) v.padEnd(widths[c]) else v.padStart(widths[c]) }
            .joinToString("  ")
        return listOf(line(cols)) + rows.map(::line) + outcomes.map(::ranOn)
    }

    /** "GPU: ran on GPU (50 timed runs)" or "NPU: not run: NPU unavailable: <reason>". */
    fun ranOn(o: BenchOutcome): String = when (o) {
        is BenchOutcome.Ran -> "${o.requested}: ran on ${o.result.accelerator} (${o.result.stats.runs} timed runs" +
            o.result.fallbacks.joinToString("") { "; ${it.accelerator} unavailable: ${it.reason}" } + ")"
        is BenchOutcome.NotRun -> "${o.requested}: not run: " +
            o.attempts.joinToString("; ") { "${it.accelerator} unavailable: ${it.reason}" }
        is BenchOutcome.Failed -> "${o.requested}: failed while running: ${o.message}"
    }

    private fun fmt(v: Double, decimals: Int): String = String.format(Locale.ROOT, "%.${decimals}f", v)
}
