package dev.mobilevision.runtime.android

import android.content.Context
import com.google.ai.edge.litert.BuiltinNpuAcceleratorProvider
import com.google.ai.edge.litert.CompiledModel
import com.google.ai.edge.litert.Environment
import com.google.ai.edge.litert.TensorBuffer
import dev.mobilevision.runtime.Accelerator
import dev.mobilevision.runtime.InputMismatchException
import dev.mobilevision.runtime.ModelRunner
import dev.mobilevision.runtime.RunnerFactory
import java.io.File
import com.google.ai.edge.litert.Accelerator as LiteRtAccelerator

/**
 * A [ModelRunner] over LiteRT's `CompiledModel` API (Maven `com.google.ai.edge.litert:litert`, GPU
 * through `litert-gpu`). One runner is one compiled model plus its input/output buffers; calls are
 * serialised, so share it between threads only if you accept that.
 *
 * - CPU: `CompiledModel.Options(CPU)`; `threads > 0` goes to `CpuOptions.numThreads` (0 = LiteRT's default).
 * - GPU: the GPU alone, as the Python runtime compiles it: LiteRT then refuses a graph the GPU cannot
 *   run whole, so a runner that opens on the GPU really runs there (no silent CPU share). `threads` is unused.
 * - NPU: an [Environment] with the app's bundled NPU dispatch library ([BuiltinNpuAcceleratorProvider]);
 *   refused when the device is not one LiteRT knows or no NPU accelerator got registered. LiteRT adds
 *   the CPU for ops the NPU compiler leaves out, and its Kotlin API does not say how many did, so
 *   "NPU" means "compiled for the NPU, possibly in part". `threads` applies to that CPU share.
 */
class LiteRtRunner private constructor(
    override val accelerator: Accelerator,
    private val env: Environment,
    private val model: CompiledModel,
    private val inputBuffers: List<TensorBuffer>,
    private val outputBuffers: List<TensorBuffer>,
) : ModelRunner {
    private var closed = false

    @Synchronized
    override fun run(inputs: List<FloatArray>): List<FloatArray> {
        check(!closed) { "this LiteRT runner was closed; open the model again" }
        if (inputs.size != inputBuffers.size) {
            throw InputMismatchException("the compiled model takes ${inputBuffers.size} input(s), received ${inputs.size}")
        }
        for (i in inputs.indices) inputBuffers[i].writeFloat(inputs[i])
        model.run(inputBuffers, outputBuffers)
        return outputBuffers.map { it.readFloat() }
    }

    @Synchronized
    override fun close() {
        if (closed) return
        closed = true
        inputBuffers.forEach { it.close() }
        outputBuffers.forEach { it.close() }
        model.close()
        env.close()
    }

    companion object {
        /**
         * Compiles a model for [accelerator] and allocates its buffers; [create] makes the CompiledModel
         * from the environment and options (an asset or a file, see [LiteRt]). Throws with a one-line
         * reason when the accelerator cannot take the model (what [dev.mobilevision.runtime.Model.open]
         * records as a fallback).
         */
        fun open(context: Context, what: String, accelerator: Accelerator, threads: Int,
                 create: (Environment, CompiledModel.Options) -> CompiledModel): LiteRtRunner = try {
            compile(context, what, accelerator, threads, create)
        } catch (e: LinkageError) {
            // litert_jni (or an accelerator's library) missing for this ABI: a reason, not a crash
            throw IllegalStateException("LiteRT's native library did not load (${e.message}); check the app's ABIs", e)
        }

        private fun compile(context: Context, what: String, accelerator: Accelerator, threads: Int,
                            create: (Environment, CompiledModel.Options) -> CompiledModel): LiteRtRunner {
            val env = environment(context, accelerator)
            try {
                val options = CompiledModel.Options(liteRt(accelerator))
                if (threads > 0 && accelerator != Accelerator.GPU) {
                    options.cpuOptions = CompiledModel.CpuOptions(numThreads = threads)
                }
                val model = try {
                    create(env, options)
                } catch (e: Exception) {
                    throw IllegalStateException("LiteRT cannot compile $what for the $accelerator: ${reason(e)}", e)
                }
                var ins: List<TensorBuffer> = emptyList()
                try {
                    ins = model.createInputBuffers()
                    return LiteRtRunner(accelerator, env, model, ins, model.createOutputBuffers())
                } catch (e: Exception) {
                    ins.forEach { it.close() }
                    model.close()
                    throw IllegalStateException("LiteRT cannot allocate buffers for $what on the $accelerator: ${reason(e)}", e)
                }
            } catch (e: Exception) {
                env.close()
                throw e
            }
        }

        private fun liteRt(accelerator: Accelerator): LiteRtAccelerator = when (accelerator) {
            Accelerator.CPU -> LiteRtAccelerator.CPU
            Accelerator.GPU -> LiteRtAccelerator.GPU
            Accelerator.NPU -> LiteRtAccelerator.NPU
        }

        private fun environment(context: Context, accelerator: Accelerator): Environment {
            if (accelerator != Accelerator.NPU) return Environment.create()
            val provider = BuiltinNpuAcceleratorProvider(context.applicationContext)
            if (!provider.isDeviceSupported()) {
                throw IllegalStateException("this device's SoC is not one LiteRT's NPU support covers")
            }
            val env = Environment.create(provider)
            val available = try {
                env.getAvailableAccelerators()
            } catch (e: Exception) {
                env.close()
                throw IllegalStateException("LiteRT cannot list its accelerators: ${reason(e)}", e)
            }
            if (LiteRtAccelerator.NPU !in available) {
                env.close()
                throw IllegalStateException("no NPU accelerator registered: the app bundles no LiteRT NPU " +
                    "dispatch library for this SoC (see android_demo/README.md, NPU)")
            }
            return env
        }

        private fun reason(e: Exception): String =
            (e.message ?: e.javaClass.simpleName).lineSequence().firstOrNull { it.isNotBlank() }?.take(200)
                ?: e.javaClass.simpleName
    }
}

/** [RunnerFactory] builders: a .tflite in the APK's assets, or a file on the device. */
object LiteRt {
    /** [assetPath] inside the APK's assets (e.g. "models/emo_1m.tflite"). */
    fun factory(context: Context, assetPath: String): RunnerFactory {
        val app = context.applicationContext
        return RunnerFactory { accelerator, threads ->
            LiteRtRunner.open(app, assetPath, accelerator, threads) { env, options ->
                CompiledModel.create(app.assets, assetPath, options, env)
            }
        }
    }

    /** A .tflite file the app can read (e.g. downloaded into its files dir). */
    fun factory(context: Context, file: File): RunnerFactory {
        val app = context.applicationContext
        return RunnerFactory { accelerator, threads ->
            LiteRtRunner.open(app, file.name, accelerator, threads) { env, options ->
                CompiledModel.create(file.absolutePath, options, env)
            }
        }
    }
}
