package dev.mobilevision.runtime

/**
 * The artifact metadata the exporter writes (export/metadata.py, schema 5): the same fields, read
 * from the JSON embedded in the .tflite (see [TfliteMetadata]) or from its `.tflite.json` sidecar.
 * Older schemas stay readable; a newer one is refused with "upgrade the runtime".
 */
data class TensorSpec(val name: String, val shape: List<Int>, val dtype: String = "float32", val layout: String = "") {
    /** Elements in one tensor (dynamic dimensions, <= 0, count as 1). */
    val size: Int get() = shape.fold(1) { acc, d -> acc * maxOf(d, 1) }
}

/** How an app turns an RGB image into the input tensor (see [ImagePreprocessor]). */
data class Preprocessing(
    val resize: Int,
    val crop: List<Int>,                       // (H, W)
    val interpolation: String = "bicubic",
    val scale: Double = 1.0 / 255.0,
    val mean: List<Double> = listOf(0.485, 0.456, 0.406),
    val std: List<Double> = listOf(0.229, 0.224, 0.225),
    val color: String = "RGB",
    val layout: String = "NCHW",
    val resizeMode: String = "shorter_side",   // or "stretch"
) {
    val height: Int get() = crop[0]
    val width: Int get() = crop[1]
}

/** How a Bayer mosaic becomes the packed input of an ISP model (task "isp"). */
data class RawInput(
    val blackLevel: List<Double>,
    val whiteLevel: Double,
    val clip: Boolean = false,
    val packing: List<String> = listOf("B", "G_R", "R", "G_B"),
)

/** What a landmark model's output means (task "landmarks"). */
data class LandmarkOutput(
    val points: Int,
    val coordinates: String = "input_pixels",
    val flipPairs: List<List<Int>> = emptyList(),
    val eyeCorners: List<Int>? = null,
)

data class ModelMetadata(
    val task: String,
    val model: String,
    val target: String,
    val precision: String,
    val inputs: List<TensorSpec>,
    val outputs: List<TensorSpec>,
    val preprocessing: Preprocessing? = null,
    val labels: List<String>? = null,
    val labelSet: String? = null,
    val numClasses: Int? = null,
    val params: Long? = null,
    val macs: Long? = null,
    val weights: String? = null,
    val weightsSha256: String? = null,
    val tools: Map<String, Any?> = emptyMap(),
    val parity: Map<String, Any?>? = null,
    val raw: RawInput? = null,
    val landmarks: LandmarkOutput? = null,
    val quantization: Map<String, Any?>? = null,
    val created: String = "",
    val schemaVersion: Int = SCHEMA_VERSION,
) {
    /** This metadata, checked to be of [expected] task (the task classes call it). */
    fun requireTask(expected: String): ModelMetadata {
        if (task != expected) throw ArtifactException("$model is a '$task' model, not '$expected'")
        return this
    }

    fun requirePreprocessing(): Preprocessing = preprocessing
        ?: throw ArtifactException("$model has no preprocessing in its metadata; re-export it with mobilevision export")

    companion object {
        /** The newest schema this runtime reads (export/metadata.py SCHEMA_VERSION). */
        const val SCHEMA_VERSION = 5
        /** Key of the embedded entry in the .tflite metadata list. */
        const val METADATA_KEY = "mobilevision"

        fun fromJson(text: String): ModelMetadata {
            val o = JsonObject.parse(text, "metadata")
            val version = if (o.has("schema_version")) o.int("schema_version") else 0
            if (version > SCHEMA_VERSION) {
                throw ArtifactException("metadata schema version $version is newer than this runtime understands " +
                    "($SCHEMA_VERSION); upgrade the mobilevision runtime library")
            }
            return ModelMetadata(
                task = o.string("task"),
                model = o.string("model"),
                target = o.string("target"),
                precision = o.string("precision"),
                inputs = o.objects("inputs").map(::tensorSpec),
                outputs = o.objects("outputs").map(::tensorSpec),
                preprocessing = o.objOrNull("preprocessing")?.let(::preprocessing),
                labels = o.listOrNull("labels")?.let { o.strings("labels") },
                labelSet = o.stringOrNull("label_set"),
                numClasses = o.intOrNull("num_classes"),
                params = o.longOrNull("params"),
                macs = o.longOrNull("macs"),
                weights = o.stringOrNull("weights"),
                weightsSha256 = o.stringOrNull("weights_sha256"),
                tools = o.objOrNull("tools")?.toMap() ?: emptyMap(),
                parity = o.objOrNull("parity")?.toMap(),
                raw = o.objOrNull("raw")?.let(::rawInput),
                landmarks = o.objOrNull("landmarks")?.let(::landmarkOutput),
                quantization = o.objOrNull("quantization")?.toMap(),
                created = o.stringOrNull("created") ?: "",
                schemaVersion = version,
            )
        }

        private fun tensorSpec(o: JsonObject) = TensorSpec(
            o.string("name"), o.ints("shape"), o.stringOrNull("dtype") ?: "float32", o.stringOrNull("layout") ?: "")

        private fun preprocessing(o: JsonObject): Preprocessing {
            val d = Preprocessing(resize = o.int("resize"), crop = o.ints("crop"))
            val p = d.copy(
                interpolation = o.stringOrNull("interpolation") ?: d.interpolation,
                scale = o.doubleOrNull("scale") ?: d.scale,
                mean = if (o.has("mean")) o.doubles("mean") else d.mean,
                std = if (o.has("std")) o.doubles("std") else d.std,
                color = o.stringOrNull("color") ?: d.color,
                layout = o.stringOrNull("layout") ?: d.layout,
                // schema 1 files have no resize_mode and mean "shorter_side"
                resizeMode = o.stringOrNull("resize_mode") ?: d.resizeMode,
            )
            if (p.crop.size != 2 || p.crop.any { it <= 0 }) {
                throw ArtifactException("malformed mobilevision metadata: preprocessing.crop must be [H, W] > 0, " +
                    "got ${p.crop}; re-export the artifact")
            }
            if (p.mean.size != 3 || p.std.size != 3 || p.std.any { it == 0.0 }) {
                throw ArtifactException("malformed mobilevision metadata: preprocessing.mean/std need 3 values " +
                    "(std non-zero); re-export the artifact")
            }
            return p
        }

        private fun rawInput(o: JsonObject) = RawInput(
            blackLevel = o.doubles("black_level"), whiteLevel = o.double("white_level"),
            clip = o.boolOrNull("clip") ?: false,
            packing = if (o.has("packing")) o.strings("packing") else listOf("B", "G_R", "R", "G_B"))

        private fun landmarkOutput(o: JsonObject) = LandmarkOutput(
            points = o.int("points"), coordinates = o.stringOrNull("coordinates") ?: "input_pixels",
            flipPairs = o.listOrNull("flip_pairs")?.mapIndexed { i, v ->
                (v as? List<*>)?.map { (it as? Double)?.toInt() ?: bad("landmarks.flip_pairs[$i]") }
                    ?: bad("landmarks.flip_pairs[$i]")
            } ?: emptyList(),
            eyeCorners = if (o.has("eye_corners")) o.ints("eye_corners") else null)

        private fun bad(field: String): Nothing =
            throw ArtifactException("malformed mobilevision metadata: $field; re-export the artifact")
    }
}
