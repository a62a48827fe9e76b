package dev.mobilevision.runtime.android

// ExecuTorch API as in pytorch/executorch@cff6f4dd32e630945b7188512c1f2b4f102b05ad (main, version.txt 1.5.0; the same calls in v1.4.1).

import android.content.Context
import dev.mobilevision.runtime.Accelerator
import dev.mobilevision.runtime.ArtifactException
import dev.mobilevision.runtime.InputMismatchException
import dev.mobilevision.runtime.MobileVisionException
import dev.mobilevision.runtime.ModelMetadata
import dev.mobilevision.runtime.ModelRunner
import dev.mobilevision.runtime.RunnerFactory
import org.pytorch.executorch.DType
import org.pytorch.executorch.EValue
import org.pytorch.executorch.Module
import org.pytorch.executorch.Tensor
import java.io.File
import java.io.IOException
import java.nio.FloatBuffer

/**
 * A [ModelRunner] over ExecuTorch's Android API (Maven `org.pytorch:executorch-android`): one loaded
 * `Module` running the `.pte` program's `forward` method on float32 tensors shaped as the metadata's
 * inputs (dynamic dimensions as 1, as [dev.mobilevision.runtime.TensorSpec.size] counts them). One
 * runner owns one set of input buffers; calls are serialised, as in [LiteRtRunner].
 *
 * - CPU only. The delegate is chosen when the program is exported (XNNPACK, inside the .pte); the
 *   GPU or an NPU would need a .pte lowered for Vulkan or QNN and an executorch-android build with
 *   that backend, so asking this runner for them fails with that reason (a fallback in [dev.mobilevision.runtime.Model.open]).
 * - `threads > 0` goes to `Module.load(path, loadMode, numThreads)`; 0 is ExecuTorch's default (half the
 *   cores). In the published AAR that count resizes ExecuTorch's process-wide thread pool: the Module
 *   loaded last sets it for every Module of the app.
 */
class ExecuTorchRunner private constructor(
    private val module: Module,
    private val what: String,
    private val shapes: List<LongArray>,
    private val buffers: List<FloatBuffer>,
    private val args: Array<EValue>,
) : ModelRunner {
    override val accelerator: Accelerator get() = Accelerator.CPU
    private var closed = false

    @Synchronized
    override fun run(inputs: List<FloatArray>): List<FloatArray> {
        check(!closed) { "this ExecuTorch runner was closed; open the model again" }
        if (inputs.size != buffers.size) {
            throw InputMismatchException("$what takes ${buffers.size} input(s), received ${inputs.size}")
        }
        for (i in inputs.indices) {
            val buffer = buffers[i]
            if (inputs[i].size != buffer.capacity()) {
                throw InputMismatchException("input $i of $what expects ${buffer.capacity()} values " +
                    "${shapes[i].contentToString()}, received ${inputs[i].size}")
            }
            buffer.clear()
            buffer.put(inputs[i])            // the tensor wraps this direct buffer: no copy into a new tensor
        }
        val outputs = try {
            module.forward(*args)
        } catch (e: RuntimeException) {      // ExecutorchRuntimeException: "[ExecuTorch Error 0x..] ..."
            throw MobileVisionException("ExecuTorch could not run $what: ${reason(e)}", e)
        }
        // Output tensors wrap the program's own memory until the next call: copy them now (under the lock).
        return outputs.mapIndexed { i, value ->
            if (!value.isTensor) throw ArtifactException("output $i of $what is not a tensor; re-export the model")
            val tensor = value.toTensor()
            if (tensor.dtype() != DType.FLOAT) {
                throw ArtifactException("output $i of $what is ${tensor.dtype()}, not float32; re-export the model " +
                    "with float32 outputs")
            }
            tensor.dataAsFloatArray
        }
    }

    @Synchronized
    override fun close() {
        if (closed) return
        closed = true
        module.destroy()                    // frees the native program now rather than at garbage collection
    }

    companion object {
        /** What the GPU and NPU need instead (the reason recorded as a fallback). */
        private const val CPU_ONLY = "ExecuTorch runs this .pte on the CPU: its XNNPACK delegate is chosen at export; " +
            "the GPU or an NPU needs a .pte lowered for Vulkan or QNN and an executorch-android build with that backend"

        /**
         * Loads the program at [path] (a file, as ExecuTorch needs) and its `forward` method, with one input
         * buffer per input of [metadata]. Throws with a one-line reason when it cannot (what
         * [dev.mobilevision.runtime.Model.open] records as a fallback).
         */
        fun open(path: File, what: String, metadata: ModelMetadata, accelerator: Accelerator, threads: Int): ExecuTorchRunner {
            requireCpu(accelerator)
            if (threads < 0) throw InputMismatchException("threads must be >= 0 (0 = ExecuTorch's default), got $threads")
            metadata.inputs.firstOrNull { it.dtype != "float32" }?.let {
                throw ArtifactException("input '${it.name}' of $what is ${it.dtype}; this runner feeds float32 tensors: " +
                    "re-export the model with a float32 input")
            }
            val shapes = metadata.inputs.map { spec -> LongArray(spec.shape.size) { maxOf(spec.shape[it], 1).toLong() } }
            val module = try {
                Module.load(path.absolutePath, Module.LOAD_MODE_MMAP, threads)
            } catch (e: LinkageError) {
                // libexecutorch.so missing for this ABI (the AAR ships arm64-v8a and x86_64): a reason, not a crash
                throw IllegalStateException("ExecuTorch's native library did not load (${e.message}); check the app's ABIs", e)
            } catch (e: Exception) {
                throw IllegalStateException("ExecuTorch cannot load $what: ${reason(e)}", e)
            }
            try {
                module.loadMethod("forward")     // the program and its delegate are set up here, not at the first call
                val buffers = metadata.inputs.map { Tensor.allocateFloatBuffer(it.size) }
                val args = Array(buffers.size) { EValue.from(Tensor.fromBlob(buffers[it], shapes[it])) }
                return ExecuTorchRunner(module, what, shapes, buffers, args)
            } catch (e: Exception) {
                module.destroy()
                throw IllegalStateException("ExecuTorch cannot load the forward method of $what: ${reason(e)}", e)
            }
        }

        /** Throws, saying why, unless [accelerator] is the CPU. */
        internal fun requireCpu(accelerator: Accelerator) {
            if (accelerator != Accelerator.CPU) throw IllegalStateException(CPU_ONLY)
        }

        private fun reason(e: Exception): String =
            (e.message ?: e.javaClass.simpleName).lineSequence().firstOrNull { it.isNotBlank() }?.take(300)
                ?: e.javaClass.simpleName
    }
}

/** [RunnerFactory] builders for a .pte: a file on the device, or an asset (copied to a file first: ExecuTorch loads paths). */
object ExecuTorch {
    /** A .pte file the app can read (e.g. downloaded into its files dir); [metadata] from its `.pte.json` sidecar. */
    fun factory(file: File, metadata: ModelMetadata): RunnerFactory = RunnerFactory { accelerator, threads ->
        ExecuTorchRunner.open(file, file.name, metadata, accelerator, threads)
    }

    /** [assetPath] inside the APK's assets (e.g. "models/emo_1m.pte"), copied once into the code cache on first open. */
    fun factory(context: Context, assetPath: String, metadata: ModelMetadata): RunnerFactory {
        val app = context.applicationContext
        val file = lazy { assetFile(app, assetPath) }      // retried on the next open if the copy failed
        return RunnerFactory { accelerator, threads ->
            ExecuTorchRunner.requireCpu(accelerator)          // say why before copying the asset
            ExecuTorchRunner.open(file.value, assetPath, metadata, accelerator, threads)
        }
    }

    /**
     * The asset as a file under the code cache (which Android empties when the app is updated, so a copy
     * is never stale): reused when present with the asset's length, else copied to a temporary file and
     * renamed into place, so concurrent opens never see half a file.
     */
    private fun assetFile(context: Context, assetPath: String): File {
        val dest = File(context.codeCacheDir, "executorch/$assetPath")
        try {
            val length = context.assets.openFd(assetPath).use { it.length }   // -1 when stored compressed
            if (dest.isFile && length >= 0 && dest.length() == length) return dest
        } catch (e: IOException) {
            // compressed in the APK (openFd refuses those) or missing: the copy below says which
        }
        try {
            dest.parentFile?.mkdirs()
            val tmp = File.createTempFile(dest.name, ".tmp", dest.parentFile)
            try {
                context.assets.open(assetPath).use { input -> tmp.outputStream().use { input.copyTo(it) } }
                if (!tmp.renameTo(dest)) throw IOException("cannot rename $tmp to $dest")
            } finally {
                tmp.delete()
            }
        } catch (e: IOException) {
            throw ArtifactException("cannot copy asset '$assetPath' to $dest for ExecuTorch (${e.message}); is it in the " +
                "APK? export the models with android_demo/export_models.sh and rebuild the app", e)
        }
        return dest
    }
}
