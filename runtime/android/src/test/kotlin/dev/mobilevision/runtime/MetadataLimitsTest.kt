package dev.mobilevision.runtime

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.fail
import org.junit.Test

/**
 * Metadata is untrusted (export/metadata.py's rules): each crafted field gets one ArtifactException
 * naming it and "re-export the artifact"; the boundary values still load. Table-driven: a failure
 * lists every case id that went wrong.
 */
class MetadataLimitsTest {
    /** A valid metadata object using every section, as fresh mutable maps and lists. */
    private fun base(): MutableMap<String, Any?> = linkedMapOf(
        "task" to "classify", "model" to "toy", "target" to "tflite", "precision" to "fp32",
        "inputs" to mutableListOf(linkedMapOf("name" to "image", "shape" to mutableListOf(1, 3, 4, 4),
            "dtype" to "float32", "layout" to "NCHW")),
        "outputs" to mutableListOf(linkedMapOf("name" to "logits", "shape" to mutableListOf(1, 3))),
        "preprocessing" to linkedMapOf("resize" to 4, "crop" to mutableListOf(4, 4), "interpolation" to "bilinear",
            "scale" to 0.5, "mean" to mutableListOf(0.5, 0.5, 0.5), "std" to mutableListOf(0.25, 0.25, 0.25),
            "color" to "RGB", "layout" to "NCHW", "resize_mode" to "shorter_side"),
        "labels" to mutableListOf("a", "b", "c"), "label_set" to "toy", "num_classes" to 3,
        "params" to 1000, "macs" to 2000, "weights" to "toy.pt", "weights_sha256" to "ab" + "0".repeat(62),
        "tools" to linkedMapOf("torch" to "2.5", "ai_edge_torch" to "0.3"),
        "parity" to linkedMapOf("max_abs" to 1e-6), "quantization" to null,
        "raw" to linkedMapOf("black_level" to mutableListOf(64, 64, 64, 64), "white_level" to 1023, "clip" to true,
            "packing" to mutableListOf("B", "G_R", "R", "G_B")),
        "landmarks" to linkedMapOf("points" to 4, "coordinates" to "input_pixels",
            "flip_pairs" to mutableListOf(mutableListOf(0, 1), mutableListOf(2, 3)), "eye_corners" to mutableListOf(0, 1)),
        "anomaly" to linkedMapOf("image" to 0.25, "pixel" to 0.15, "image_f1" to 0.9, "pixel_f1" to 0.5,
            "source" to "F1-optimal on x"),
        "created" to "2025-01-01T00:00:00Z", "schema_version" to 5,
    )

    private object Remove

    /** [base] with [path] ("inputs[0].shape[1]") set to [value] ([Remove] deletes the key), as JSON text. */
    @Suppress("UNCHECKED_CAST")
    private fun with(path: String, value: Any?): String {
        val root = base()
        val steps = Regex("""[^.\[\]]+|\[\d+]""").findAll(path).map { it.value }.toList()
        var node: Any? = root
        for (s in steps.dropLast(1)) {
            node = if (s.startsWith("[")) (node as List<Any?>)[s.trim('[', ']').toInt()] else (node as Map<String, Any?>)[s]
        }
        val last = steps.last()
        if (last.startsWith("[")) (node as MutableList<Any?>)[last.trim('[', ']').toInt()] = value
        else if (value === Remove) (node as MutableMap<String, Any?>).remove(last)
        else (node as MutableMap<String, Any?>)[last] = value
        return toJson(root)
    }

    private fun toJson(v: Any?): String = when (v) {
        null -> "null"
        is String -> "\"" + v.flatMap { c ->
            when {
                c == '"' || c == '\\' -> listOf('\\', c)
                c < ' ' -> "\\u%04x".format(c.code).toList()
                else -> listOf(c)
            }
        }.joinToString("") + "\""
        is Map<*, *> -> v.entries.joinToString(", ", "{", "}") { toJson(it.key) + ": " + toJson(it.value) }
        is List<*> -> v.joinToString(", ", "[", "]") { toJson(it) }
        else -> v.toString()
    }

    private class Case(val id: String, val json: String, val mentions: String)

    private fun case(id: String, path: String, value: Any?, mentions: String = path) = Case(id, with(path, value), mentions)

    /** Every case must raise one ArtifactException, one line, naming [Case.mentions] and the fix. */
    private fun assertRefused(cases: List<Case>) {
        val wrong = cases.mapNotNull { c ->
            val e = try {
                ModelMetadata.fromJson(c.json)
                return@mapNotNull "${c.id}: accepted"
            } catch (e: Throwable) {
                e
            }
            val msg = e.message ?: ""
            when {
                e !is ArtifactException -> "${c.id}: ${e::class.simpleName} $msg"
                !msg.contains(c.mentions) -> "${c.id}: '$msg' does not name '${c.mentions}'"
                !msg.contains("re-export the artifact") -> "${c.id}: '$msg' does not say 're-export the artifact'"
                msg.contains('\n') || msg.length > 400 -> "${c.id}: message is not one short line (${msg.length} chars)"
                else -> null
            }
        }
        if (wrong.isNotEmpty()) fail("${wrong.size} of ${cases.size} cases wrong:\n  " + wrong.joinToString("\n  "))
    }

    private fun load(json: String): ModelMetadata = try {
        ModelMetadata.fromJson(json)
    } catch (e: ArtifactException) {
        throw AssertionError("should load: ${e.message}", e)
    }

    @Test
    fun tensorSpecs() = assertRefused(listOf(
        case("inputs not a list", "inputs", "image"),
        case("65 inputs", "inputs", List(65) { mapOf("name" to "x$it", "shape" to listOf(1)) }, "inputs"),
        case("input not an object", "inputs[0]", 7),
        case("rank 9", "inputs[0].shape", List(9) { 1 }, "inputs[0].shape"),
        case("dim -2", "inputs[0].shape[1]", -2),
        case("dim over 2^20", "inputs[0].shape[2]", (1 shl 20) + 1),
        case("dim fractional", "inputs[0].shape[2]", 1.5),
        case("dim a string", "outputs[0].shape[1]", "3"),
        case("over 2^31 elements", "inputs[0].shape", listOf(1024, 1024, 1024, 4), "inputs[0].shape"),
        case("2^160 elements (Long overflow)", "inputs[0].shape", List(8) { 1 shl 20 }, "inputs[0].shape"),
        case("unknown dtype", "inputs[0].dtype", "float128"),
        case("dtype null", "inputs[0].dtype", null),
        case("unknown layout", "inputs[0].layout", "NWHC"),
        case("name missing", "outputs[0].name", Remove),
        case("name with a control character", "inputs[0].name", "im\u0001age"),
        case("name of 1025 characters", "outputs[0].name", "x".repeat(1025)),
        case("unknown field", "inputs[0].quant", 1, "inputs[0]"),
    ))

    @Test
    fun preprocessing() = assertRefused(listOf(
        case("resize 0", "preprocessing.resize", 0),
        case("resize 8193", "preprocessing.resize", 8193),
        case("resize fractional", "preprocessing.resize", 2.5),
        case("resize a string", "preprocessing.resize", "224"),
        case("crop one value", "preprocessing.crop", listOf(4)),
        case("crop three values", "preprocessing.crop", listOf(4, 4, 4)),
        case("crop 0", "preprocessing.crop[0]", 0),
        case("crop 4097", "preprocessing.crop[1]", 4097),
        case("unknown interpolation", "preprocessing.interpolation", "cubic"),
        case("interpolation null", "preprocessing.interpolation", null),
        case("scale 0", "preprocessing.scale", 0),
        case("scale negative", "preprocessing.scale", -0.5),
        case("mean 2 values", "preprocessing.mean", listOf(0.5, 0.5)),
        case("mean a string", "preprocessing.mean[1]", "0.5"),
        case("std 0", "preprocessing.std[2]", 0),
        case("std negative", "preprocessing.std[0]", -0.2),
        case("std 4 values", "preprocessing.std", listOf(1, 1, 1, 1)),
        case("color BGR", "preprocessing.color", "BGR"),
        case("layout CHW", "preprocessing.layout", "CHW"),
        case("resize_mode fit", "preprocessing.resize_mode", "fit"),
        case("normalization none", "preprocessing.normalization", "none"),
        case("layout disagrees with the input", "preprocessing.layout", "NHWC", "preprocessing.layout"),
        case("unknown field", "preprocessing.crop_pct", 0.875, "preprocessing"),
        case("not an object", "preprocessing", listOf(4), "preprocessing"),
    ))

    @Test
    fun labelsAndCounts() = assertRefused(listOf(
        case("scores softmax", "scores", "softmax"),
        case("scores a number", "scores", 1),
        case("4 labels for 3 classes", "labels", listOf("a", "b", "c", "d")),
        case("label a number", "labels[1]", 7),
        case("label with a newline", "labels[0]", "a\nb"),
        case("label with a C1 control", "labels[0]", "a\u0085b"),
        case("label of 1025 characters", "labels[2]", "x".repeat(1025)),
        case("100001 labels", "labels", List(100_001) { "a" }, "labels"),
        case("num_classes -1", "num_classes", -1),
        case("num_classes 100001", "num_classes", 100_001),
        case("num_classes fractional", "num_classes", 2.5),
        case("params negative", "params", -1),
        case("macs over 10^18", "macs", 1e19),
    ))

    @Test
    fun rawInput() = assertRefused(listOf(
        case("no black level", "raw.black_level", listOf<Int>()),
        case("2 black levels", "raw.black_level", listOf(64, 64)),
        case("5 black levels", "raw.black_level", listOf(1, 1, 1, 1, 1)),
        case("negative black level", "raw.black_level[3]", -1),
        case("white equal to black", "raw.white_level", 64),
        case("white below a black", "raw.black_level[2]", 2000, "raw.white_level"),
        case("white missing", "raw.white_level", Remove),
        case("clip a string", "raw.clip", "yes"),
        case("packing repeats", "raw.packing", listOf("B", "B", "R", "G_B")),
        case("packing 3 items", "raw.packing", listOf("B", "G_R", "R")),
        case("packing lower case", "raw.packing[0]", "b", "raw.packing"),
        case("unknown field", "raw.gain", 2, "raw"),
    ))

    @Test
    fun landmarks() = assertRefused(listOf(
        case("points 0", "landmarks.points", 0),
        case("points 10001", "landmarks.points", 10_001),
        case("flip pair past the last point", "landmarks.flip_pairs[1][1]", 4),
        case("flip pair negative", "landmarks.flip_pairs[0][0]", -1),
        case("flip pair of 1", "landmarks.flip_pairs[0]", listOf(0)),
        case("more flip pairs than points", "landmarks.flip_pairs", List(5) { listOf(0, 1) }, "landmarks.flip_pairs"),
        case("eye corner past the last point", "landmarks.eye_corners[1]", 4),
        case("eye corners 1 value", "landmarks.eye_corners", listOf(1)),
        case("coordinates normalized", "landmarks.coordinates", "normalized"),
        case("unknown field", "landmarks.visibility", true, "landmarks"),
    ))

    @Test
    fun anomalyThresholds() = assertRefused(listOf(
        case("not an object", "anomaly", 0.1),
        case("image missing", "anomaly.image", Remove),
        case("image a string", "anomaly.image", "0.1"),
        case("image null", "anomaly.image", null),
        case("pixel a bool", "anomaly.pixel", true),
        case("source a number", "anomaly.source", 3),
        case("unknown field", "anomaly.mask", 0.3, "anomaly"),
    ))

    @Test
    fun topLevelFields() = assertRefused(listOf(
        case("task missing", "task", Remove),
        case("task with a control character", "task", "classify\u0000"),
        case("model of 1025 characters", "model", "m".repeat(1025)),
        case("created a number", "created", 5),
        case("created null", "created", null),
        case("label_set a list", "label_set", listOf("a")),
        case("weights_sha256 with an escape", "weights_sha256", "\u001b[31m"),
        case("schema_version fractional", "schema_version", 2.5),
        case("schema_version negative", "schema_version", -1),
        case("schema_version a string", "schema_version", "5"),
        case("schema_version null", "schema_version", null),
        case("tools not an object", "tools", listOf("torch")),
        case("tools version a number", "tools.torch", 2.5),
        case("tools key with a control character", "tools", mapOf("to\u0007rch" to "2.5"), "tools"),
        case("parity a string", "parity", "ok"),
        case("quantization a list", "quantization", listOf(1)),
    ))

    @Test
    fun jsonText() {
        val ok = toJson(base())
        fun raw(id: String, json: String, mentions: String) = Case(id, json, mentions)
        // the object is level 1, parity level 2: lists nested n deep in parity.max_abs reach level 2 + n
        fun nested(n: Int) = ok.replace("\"max_abs\": 1.0E-6", "\"max_abs\": " + "[".repeat(n) + "]".repeat(n))
        assertRefused(listOf(
            raw("NaN", ok.replace("\"scale\": 0.5", "\"scale\": NaN"), "NaN"),
            raw("Infinity", ok.replace("\"white_level\": 1023", "\"white_level\": Infinity"), "Infinity"),
            raw("-Infinity", ok.replace("\"max_abs\": 1.0E-6", "\"max_abs\": -Infinity"), "Infinity"),
            raw("1e999", ok.replace("\"white_level\": 1023", "\"white_level\": 1e999"), "1e999"),
            raw("21-digit integer", ok.replace("\"params\": 1000", "\"params\": 123456789012345678901"), "21 digits"),
            raw("leading zero", ok.replace("\"resize\": 4", "\"resize\": 04"), "invalid JSON"),
            raw("bare fraction", ok.replace("\"scale\": 0.5", "\"scale\": -.5"), "invalid JSON"),
            raw("trailing dot", ok.replace("\"scale\": 0.5", "\"scale\": 1."), "invalid JSON"),
            raw("duplicate key", ok.replace("\"model\": \"toy\"", "\"model\": \"toy\", \"model\": \"other\""), "duplicate key 'model'"),
            raw("nesting 33 deep", nested(31), "32 levels"),
            raw("nesting 100000 deep", nested(100_000), "32 levels"),
            raw("over 16 MiB", ok.replace("\"created\": \"", "\"created\": \"" + " ".repeat(16 shl 20)), "16 MiB"),
            raw("not an object", "[1]", "not a JSON object"),
        ))
        assertEquals("toy", load(nested(30)).model)                                          // 32 levels load
        try {
            val newer = ModelMetadata.SCHEMA_VERSION + 1
            ModelMetadata.fromJson(ok.replace("\"schema_version\": 5", "\"schema_version\": $newer"))
            fail("schema $newer accepted")
        } catch (e: ArtifactException) {
            assertEquals(true, e.message!!.contains("upgrade the mobilevision runtime library"))
        }
    }

    @Test
    fun validAndBoundaryValuesLoad() {
        val md = load(toJson(base()))
        assertEquals(listOf(4, 4), md.preprocessing!!.crop)
        assertEquals(listOf(64.0, 64.0, 64.0, 64.0), md.raw!!.blackLevel)
        assertEquals(listOf(listOf(0, 1), listOf(2, 3)), md.landmarks!!.flipPairs)
        assertEquals(mapOf("torch" to "2.5", "ai_edge_torch" to "0.3"), md.tools)
        assertNull(md.quantization)
        assertEquals(AnomalyThresholds(0.25, 0.15, 0.9, 0.5, "F1-optimal on x"), md.anomaly)
        assertEquals(AnomalyThresholds(1.0), load(with("anomaly", mapOf("image" to 1))).anomaly)
        assertNull(load(with("anomaly", null)).anomaly)
        assertEquals(8192, load(with("preprocessing.resize", 8192)).preprocessing!!.resize)
        assertEquals(listOf(4096, 4096), load(with("preprocessing.crop", listOf(4096, 4096))).preprocessing!!.crop)
        assertEquals(listOf(-1, 3, 4, 4), load(with("inputs[0].shape[0]", -1)).inputs[0].shape)
        assertEquals(8, load(with("outputs[0].shape", List(8) { 1 })).outputs[0].shape.size)   // rank 8 (an image input is 4-D)
        val big = load(with("outputs[0].shape", listOf(1024, 1024, 1024, 2))).outputs[0]   // exactly 2^31 elements
        assertEquals(Int.MAX_VALUE, big.size)                                              // no Int overflow
        assertEquals(1 shl 20, load(with("outputs[0].shape", listOf(1 shl 20))).outputs[0].size)
        assertEquals(10_000, load(with("landmarks.points", 10_000)).landmarks!!.points)
        assertEquals(listOf(64.0), load(with("raw.black_level", listOf(64))).raw!!.blackLevel)
        assertEquals(null, load(with("landmarks.eye_corners", null)).landmarks!!.eyeCorners)
        assertEquals(0, load(with("schema_version", Remove)).schemaVersion)
        assertEquals(null, load(with("labels", null)).labels)
        assertEquals(1_000_000_000_000_000_000L, load(with("macs", 1_000_000_000_000_000_000L)).macs)
        assertEquals("\u00e9t\u00e9 \u4e2d", load(with("labels[0]", "\u00e9t\u00e9 \u4e2d")).labels!![0])
        val emoji = "\uD83D\uDE00".repeat(1024)                                           // 1024 characters, 2048 UTF-16 units
        assertEquals(emoji, load(with("labels[0]", emoji)).labels!![0])
        assertEquals("toy", load("\uFEFF" + toJson(base())).model)                         // a sidecar saved with a BOM
        assertEquals("toy", load(with("unknown_top_level", 1)).model)                      // as Python: ignored at the top
        // a 20-digit integer inside a report is still a number
        assertEquals("toy", load(toJson(base()).replace("\"max_abs\": 1.0E-6", "\"max_abs\": 12345678901234567890")).model)
    }
}
