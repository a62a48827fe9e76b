package dev.mobilevision.demo

// Plain Kotlin (no Android imports): what the app offers, read from its bundled assets.

import dev.mobilevision.runtime.Accelerator
import dev.mobilevision.runtime.ArtifactException
import dev.mobilevision.runtime.BayerMosaic
import dev.mobilevision.runtime.BayerPattern
import dev.mobilevision.runtime.Json
import dev.mobilevision.runtime.ModelFormat
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The demo's tasks, in the order the app lists them; [key] is the metadata / index.json task name. */
enum class DemoTask(val key: String, val title: String, val takesImages: Boolean) {
    CLASSIFY("classify", "Classification (top-5)", true),
    ANOMALY("anomaly", "Anomaly map", true),
    LANDMARKS("landmarks", "Face landmarks", true),
    ISP("isp", "RAW → RGB (ISP)", false);

    companion object {
        fun of(key: String): DemoTask? = entries.firstOrNull { it.key == key }
    }
}

/** The accelerator preferences the app offers, each tried in order until one opens the model. */
enum class AcceleratorChoice(val title: String, val accelerators: List<Accelerator>) {
    GPU_CPU("GPU → CPU", listOf(Accelerator.GPU, Accelerator.CPU)),
    NPU_GPU_CPU("NPU → GPU → CPU", listOf(Accelerator.NPU, Accelerator.GPU, Accelerator.CPU)),
    CPU_ONLY("CPU only", listOf(Accelerator.CPU)),
}

/** One exported model of models/index.json (written by android_demo/export_models.sh): a .tflite or a .pte. */
data class DemoModel(val task: DemoTask, val model: String, val file: String) {
    val assetPath: String get() = "${DemoCatalog.MODELS_DIR}/$file"

    /** By the file's suffix: which runtime opens it. */
    val format: ModelFormat get() = ModelFormat.of(file)

    /** The model picker's line, e.g. "Classification (top-5): emo_1m (ExecuTorch)". */
    val title: String get() = "${task.title}: $model (${format.runtime})"
}

/** The bundled RAW sample: a Bayer mosaic plus the levels it was made with. */
class SampleMosaic(val mosaic: BayerMosaic, val blackLevel: List<Double>, val whiteLevel: Double, val description: String)

object DemoCatalog {
    const val MODELS_DIR = "models"
    const val INDEX = "$MODELS_DIR/index.json"
    const val SAMPLE_BIN = "samples/bayer_rggb.bin"
    const val SAMPLE_JSON = "samples/bayer_rggb.json"
    private const val FIX = "run `bash android_demo/export_models.sh` and rebuild the app"

    /**
     * index.json -> the models of the tasks the app knows: per task the first .tflite and the first .pte
     * listed, in [DemoTask] order, then the [ModelFormat] order. A file of another kind is refused.
     */
    fun parseIndex(text: String): List<DemoModel> {
        val entries = Json.parse(text) as? List<*> ?: throw ArtifactException("$INDEX is not a JSON array; $FIX")
        val models = entries.mapIndexedNotNull { i, e ->
            val o = e as? Map<*, *> ?: throw ArtifactException("$INDEX entry $i is not an object; $FIX")
            fun field(name: String) = o[name] as? String
                ?: throw ArtifactException("$INDEX entry $i has no \"$name\" string; $FIX")
            DemoTask.of(field("task"))?.let { task ->
                DemoModel(task, field("model"), field("file")).also {
                    try {
                        it.format
                    } catch (e: ArtifactException) {
                        throw ArtifactException("$INDEX entry $i: ${e.message}", e)
                    }
                }
            }
        }
        val byTask = DemoTask.entries.flatMap { t ->
            ModelFormat.entries.mapNotNull { f -> models.firstOrNull { it.task == t && it.format == f } }
        }
        if (byTask.isEmpty()) {
            throw ArtifactException("$INDEX lists no ${DemoTask.entries.joinToString("/") { it.key }} model; $FIX")
        }
        return byTask
    }

    /** samples/bayer_rggb.json + .bin (little-endian uint16, row-major) -> the mosaic. */
    fun parseSample(json: String, bin: ByteArray): SampleMosaic {
        val o = Json.parse(json) as? Map<*, *> ?: throw ArtifactException("$SAMPLE_JSON is not a JSON object; $FIX")
        fun number(name: String) = o[name] as? Double ?: throw ArtifactException("$SAMPLE_JSON has no number \"$name\"; $FIX")
        val width = number("width").toInt()
        val height = number("height").toInt()
        val pattern = BayerPattern.of(o["pattern"] as? String ?: "RGGB")
        val black = when (val b = o["black_level"]) {
            is Double -> listOf(b)
            is List<*> -> b.map { it as? Double ?: throw ArtifactException("$SAMPLE_JSON black_level must be numbers; $FIX") }
            else -> throw ArtifactException("$SAMPLE_JSON has no black_level; $FIX")
        }
        if (bin.size != width * height * 2) {
            throw ArtifactException("$SAMPLE_BIN has ${bin.size} bytes, a ${width}x$height uint16 mosaic needs " +
                "${width * height * 2}; $FIX")
        }
        val values = ShortArray(width * height)
        ByteBuffer.wrap(bin).order(ByteOrder.LITTLE_ENDIAN).asShortBuffer().get(values)
        return SampleMosaic(BayerMosaic.fromShorts(width, height, values, pattern), black, number("white_level"),
            o["description"] as? String ?: "")
    }
}
