package dev.mobilevision.runtime

/**
 * The artifact metadata the exporter writes (export/metadata.py, schema 6): the same fields, read
 * from the JSON embedded in the .tflite (see [TfliteMetadata]) or from its `.tflite.json` sidecar.
 * Older schemas stay readable; a newer one is refused with "upgrade the runtime". The metadata is
 * untrusted: [ModelMetadata.fromJson] applies export/metadata.py's limits and names the first bad field.
 */
data class TensorSpec(val name: String, val shape: List<Int>, val dtype: String = "float32", val layout: String = "") {
    /** Elements in one tensor (dynamic dimensions, <= 0, count as 1), capped at Int.MAX_VALUE (the
     *  metadata allows 2^31, one more than a JVM array holds). */
    val size: Int get() = elements(shape).coerceAtMost(Int.MAX_VALUE.toLong()).toInt()

    internal companion object {
        /** The product of [shape]'s dimensions (<= 0 counts as 1), saturating just above 2^31: no Long overflow. */
        fun elements(shape: List<Int>): Long =
            shape.fold(1L) { acc, d -> minOf(acc * maxOf(d, 1), ModelMetadata.MAX_ELEMENTS + 1) }
    }
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
    // "app": the app feeds (pixel * scale - mean) / std; "model": the artifact takes uint8 pixels (Core ML images)
    val normalization: String = "app",
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

/** An anomaly detector's F1-optimal decision thresholds (task "anomaly"), chosen at training on labelled held-out
 *  images: anomalous when score > [image], a pixel when its map value > [pixel]. */
data class AnomalyThresholds(
    val image: Double,
    val pixel: Double? = null,
    val imageF1: Double? = null,
    val pixelF1: Double? = null,
    val source: String = "",
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
    /** classify: "logits" (softmax applied by the runtime) or "probabilities" (a softmax in the graph); null: logits. */
    val scores: String? = null,
    /** anomaly detectors trained with mobilevision (schema 7): the thresholds used when the caller gives none. */
    val anomaly: AnomalyThresholds? = null,
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
        const val SCHEMA_VERSION = 7
        /** Key of the embedded entry in the .tflite metadata list. */
        const val METADATA_KEY = "mobilevision"

        // export/metadata.py's bounds on untrusted metadata (JSON depth and numbers: see [Json]).
        const val MAX_JSON_CHARS = 16 shl 20
        const val MAX_LABELS = 100_000
        const val MAX_TENSORS = 64                      // inputs, outputs
        const val MAX_RANK = 8
        const val MAX_DIM = 1 shl 20                    // -1 is a dynamic dimension
        const val MAX_ELEMENTS = 1L shl 31
        const val MAX_CROP = 4096                       // pixels
        const val MAX_RESIZE = 2 * MAX_CROP             // pixels: the shorter side before the centre crop
        const val MAX_POINTS = 10_000                   // landmarks
        const val MAX_COUNT = 1_000_000_000_000_000_000L   // params, macs
        val INTERPOLATIONS = listOf("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
        val RESIZE_MODES = listOf("shorter_side", "stretch")
        val NORMALIZATIONS = listOf("app", "model")
        val SCORES = listOf("logits", "probabilities")
        val IMAGE_LAYOUTS = listOf("NCHW", "NHWC")
        val DTYPES = listOf("float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
            "int64", "uint64", "bool")
        val PACKING = listOf("B", "G_R", "R", "G_B")

        /** The metadata in JSON [text] (at most [MAX_JSON_CHARS]), every field checked as export/metadata.py does. */
        fun fromJson(text: String): ModelMetadata {
            if (text.length > MAX_JSON_CHARS) {
                throw ArtifactException("mobilevision metadata is %.1f MiB, over the %d MiB limit; re-export the artifact"
                    .format(text.length / 1048576.0, MAX_JSON_CHARS shr 20))
            }
            val o = JsonObject.parse(text.removePrefix("\uFEFF"), "metadata")   // a sidecar saved with a BOM
            val version = o.optional("schema_version")
            (version?.value as? Double)?.let { v ->
                if (v > SCHEMA_VERSION && v == Math.rint(v)) {
                    throw ArtifactException("metadata schema version ${shown(v)} is newer than this runtime understands " +
                        "($SCHEMA_VERSION); upgrade the mobilevision runtime library")
                }
            }
            val numClasses = o.nullable("num_classes")?.int(0, MAX_LABELS)
            val labels = o.nullable("labels")?.strings(0..MAX_LABELS)
            if (labels != null && numClasses != null && labels.size > numClasses) {
                o["labels"].fail("has ${labels.size} names for num_classes $numClasses")
            }
            return checkImageInput(ModelMetadata(
                task = o["task"].string(),
                model = o["model"].string(),
                target = o["target"].string(),
                precision = o["precision"].string(),
                inputs = o["inputs"].list(0, MAX_TENSORS).map { tensorSpec(it.obj()) },
                outputs = o["outputs"].list(0, MAX_TENSORS).map { tensorSpec(it.obj()) },
                preprocessing = o.nullable("preprocessing")?.let { preprocessing(it.obj()) },
                labels = labels,
                labelSet = o.nullable("label_set")?.string(),
                numClasses = numClasses,
                params = o.nullable("params")?.long(0, MAX_COUNT),
                macs = o.nullable("macs")?.long(0, MAX_COUNT),
                weights = o.nullable("weights")?.string(),
                weightsSha256 = o.nullable("weights_sha256")?.string(),
                tools = o.optional("tools")?.obj()?.let(::tools) ?: emptyMap(),
                parity = o.nullable("parity")?.obj()?.toMap(),
                raw = o.nullable("raw")?.let { rawInput(it.obj()) },
                landmarks = o.nullable("landmarks")?.let { landmarkOutput(it.obj()) },
                quantization = o.nullable("quantization")?.obj()?.toMap(),
                scores = o.nullable("scores")?.string(SCORES),
                anomaly = o.nullable("anomaly")?.let { anomalyThresholds(it.obj()) },
                created = o.optional("created")?.string() ?: "",
                schemaVersion = version?.int(0, SCHEMA_VERSION) ?: 0,
            ))
        }

        /** An image input and its preprocessing must agree (as export/metadata.py `_check_image_input`): one
         *  layout, 3 channels where it says, uint8 pixels exactly when the model normalises. */
        private fun checkImageInput(md: ModelMetadata): ModelMetadata {
            val pre = md.preprocessing ?: return md
            val spec = md.inputs.singleOrNull() ?: return md
            if (spec.layout !in IMAGE_LAYOUTS) return md
            fun fail(field: String, problem: String): Nothing =
                throw ArtifactException("metadata $field $problem; re-export the artifact")
            if (pre.layout != spec.layout) fail("preprocessing.layout", "is '${pre.layout}' but inputs[0] is '${spec.layout}'")
            val channel = if (spec.layout == "NCHW") 1 else 3
            if (spec.shape.size != 4 || spec.shape[channel] !in listOf(3, -1)) {
                fail("inputs[0].shape", "is ${spec.shape}, not an RGB image in ${spec.layout}")
            }
            if ((pre.normalization == "model") != (spec.dtype == "uint8")) {
                fail("inputs[0].dtype", "is '${spec.dtype}' for normalization '${pre.normalization}' (uint8 pixels " +
                    "exactly when the model normalises)")
            }
            return md
        }

        private fun tensorSpec(o: JsonObject): TensorSpec {
            o.only(listOf("name", "shape", "dtype", "layout"))
            val shape = o["shape"].ints(-1, MAX_DIM, 0..MAX_RANK)
            if (TensorSpec.elements(shape) > MAX_ELEMENTS) o["shape"].fail("has over $MAX_ELEMENTS elements, got ${shape}")
            return TensorSpec(o["name"].string(), shape, o.optional("dtype")?.string(DTYPES) ?: "float32",
                o.optional("layout")?.string(listOf("") + IMAGE_LAYOUTS) ?: "")
        }

        private fun preprocessing(o: JsonObject): Preprocessing {
            o.only(listOf("resize", "crop", "interpolation", "scale", "mean", "std", "color", "layout", "resize_mode",
                "normalization"))
            val d = Preprocessing(resize = o["resize"].int(1, MAX_RESIZE), crop = o["crop"].ints(1, MAX_CROP, 2..2))
            return d.copy(
                interpolation = o.optional("interpolation")?.string(INTERPOLATIONS) ?: d.interpolation,
                scale = o.optional("scale")?.number(above = 0.0) ?: d.scale,
                mean = o.optional("mean")?.numbers(3..3) ?: d.mean,
                std = o.optional("std")?.numbers(3..3, above = 0.0) ?: d.std,
                color = o.optional("color")?.string(listOf("RGB")) ?: d.color,
                layout = o.optional("layout")?.string(IMAGE_LAYOUTS) ?: d.layout,
                // schema 1 files have no resize_mode and mean "shorter_side"
                resizeMode = o.optional("resize_mode")?.string(RESIZE_MODES) ?: d.resizeMode,
                // schema < 6: the app normalises
                normalization = o.optional("normalization")?.string(NORMALIZATIONS) ?: d.normalization,
            )
        }

        private fun rawInput(o: JsonObject): RawInput {
            o.only(listOf("black_level", "white_level", "clip", "packing"))
            val black = o["black_level"].numbers(1..4, lo = 0.0)
            if (black.size !in listOf(1, 4)) o["black_level"].fail("has ${black.size} values, expected 1 or 4 (B, G_R, R, G_B)")
            val packing = o.optional("packing")?.strings(4..4) ?: PACKING
            if (packing.sorted() != PACKING.sorted()) {
                o["packing"].fail("must be an order of ${PACKING.joinToString(", ")}, got ${shown(packing)}")
            }
            return RawInput(black, o["white_level"].number(above = black.max()), o.optional("clip")?.bool() ?: false, packing)
        }

        private fun landmarkOutput(o: JsonObject): LandmarkOutput {
            o.only(listOf("points", "coordinates", "flip_pairs", "eye_corners"))
            val points = o["points"].int(1, MAX_POINTS)
            return LandmarkOutput(
                points = points,
                coordinates = o.optional("coordinates")?.string(listOf("input_pixels")) ?: "input_pixels",
                flipPairs = o.optional("flip_pairs")?.list(0, points)?.map { it.ints(0, points - 1, 2..2) } ?: emptyList(),
                eyeCorners = o.nullable("eye_corners")?.ints(0, points - 1, 2..2),
            )
        }

        private fun anomalyThresholds(o: JsonObject): AnomalyThresholds {
            o.only(listOf("image", "pixel", "image_f1", "pixel_f1", "source"))
            return AnomalyThresholds(
                image = o["image"].number(),
                pixel = o.nullable("pixel")?.number(),
                imageF1 = o.nullable("image_f1")?.number(),
                pixelF1 = o.nullable("pixel_f1")?.number(),
                source = o.optional("source")?.string() ?: "",
            )
        }

        /** Tool name -> version, both strings. */
        private fun tools(o: JsonObject): Map<String, String> =
            o.keys.associateWith { key -> JsonField(key, "${o.path} key").string(); o[key].string() }
    }
}
