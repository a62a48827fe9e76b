package dev.mobilevision.runtime

/** Where inference runs. CPU is LiteRT's (or ExecuTorch's) XNNPACK path; GPU and NPU go through LiteRT's accelerators. */
enum class Accelerator { CPU, GPU, NPU }

/**
 * One opened model in one runtime: the thin binding the core talks to. The Android bindings are
 * `dev.mobilevision.runtime.android.LiteRtRunner` (.tflite) and `ExecuTorchRunner` (.pte); tests use recorded outputs.
 */
interface ModelRunner : AutoCloseable {
    val accelerator: Accelerator

    /** One inference: float32 inputs in the metadata's order (row-major), outputs in the metadata's order. */
    fun run(inputs: List<FloatArray>): List<FloatArray>

    override fun close() {}
}

/** Opens the model on one accelerator, or throws (any exception) saying why it cannot. */
fun interface RunnerFactory {
    fun open(accelerator: Accelerator, threads: Int): ModelRunner
}

/** An accelerator that was asked for and could not take the model, and why. */
data class Fallback(val accelerator: Accelerator, val reason: String)

/**
 * A model ready for inference: its metadata, the runner, and what happened while choosing the
 * accelerator ([fallbacks] lists every preferred accelerator that failed before [accelerator]).
 *
 * Threads: a Model may be shared by several threads; their calls take turns (a runner owns one set of
 * input/output buffers on one accelerator). For calls in parallel, open one Model per thread.
 */
class Model(val metadata: ModelMetadata, val runner: ModelRunner, val fallbacks: List<Fallback> = emptyList()) :
    AutoCloseable {
    val accelerator: Accelerator get() = runner.accelerator

    /** One line for logs and UIs: "GPU", or "CPU (GPU unavailable: ...)". */
    val acceleratorReport: String
        get() = if (fallbacks.isEmpty()) accelerator.name
        else accelerator.name + fallbacks.joinToString("; ", " (", ")") { "${it.accelerator} unavailable: ${it.reason}" }

    /** Runs the raw model; inputs are checked against the metadata's shapes. Returns {output name: values}. */
    fun predict(inputs: List<FloatArray>): Map<String, FloatArray> {
        val specs = metadata.inputs
        if (inputs.size != specs.size) {
            throw InputMismatchException("the model takes ${specs.size} input(s) ${specs.map { it.name }}, received ${inputs.size}")
        }
        for ((spec, a) in specs.zip(inputs)) {
            if (a.size != spec.size) {
                throw InputMismatchException("input '${spec.name}' expects ${spec.size} values ${spec.shape}, received ${a.size}")
            }
        }
        val outs = synchronized(lock) {
            if (closed) throw ArtifactException("${metadata.model} is closed: open it again")
            runner.run(inputs)
        }
        if (outs.size != metadata.outputs.size) {
            throw ArtifactException("the runtime returned ${outs.size} outputs, the metadata names ${metadata.outputs.size}; " +
                "re-export the model")
        }
        for ((spec, o) in metadata.outputs.zip(outs)) {
            if (spec.shape.all { it > 0 } && o.size != spec.size) {
                throw ArtifactException("output '${spec.name}' has ${o.size} values, the metadata says ${spec.shape}; " +
                    "the model and its metadata do not match: re-export it")
            }
        }
        return metadata.outputs.map { it.name }.zip(outs).toMap()
    }

    private val lock = Any()
    private var closed = false

    /** Releases the runner (after a running call returns); later calls throw. Closing twice is harmless. */
    override fun close() = synchronized(lock) {
        if (!closed) {
            closed = true
            runner.close()
        }
    }

    companion object {
        /** The usual preference: GPU, then CPU (XNNPACK). NPU needs a vendor plugin, so it is opt-in. */
        val DEFAULT_ACCELERATORS = listOf(Accelerator.GPU, Accelerator.CPU)

        /**
         * Opens the model on the first of [accelerators] that accepts it, recording each that failed.
         * Throws [AcceleratorUnavailableException] naming every failure when none does.
         */
        fun open(metadata: ModelMetadata, factory: RunnerFactory,
                 accelerators: List<Accelerator> = DEFAULT_ACCELERATORS, threads: Int = 0): Model {
            if (accelerators.isEmpty()) throw InputMismatchException("give at least one accelerator to try (CPU, GPU, NPU)")
            if (threads < 0) throw InputMismatchException("threads must be >= 0 (0 = the runtime's default), got $threads")
            val failed = ArrayList<Fallback>()
            for (acc in accelerators.distinct()) {
                try {
                    return Model(metadata, factory.open(acc, threads), failed.toList())
                } catch (e: Exception) {
                    failed.add(Fallback(acc, e.message ?: e.javaClass.simpleName))
                } catch (e: LinkageError) {      // a missing native library (e.g. the GPU delegate's .so)
                    failed.add(Fallback(acc, e.message ?: e.javaClass.simpleName))
                }
            }
            throw AcceleratorUnavailableException("no accelerator could open ${metadata.model}: " +
                failed.joinToString("; ") { "${it.accelerator}: ${it.reason}" } + "; try Accelerator.CPU", failed)
        }
    }
}
