package dev.mobilevision.runtime

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.nio.ByteBuffer

/** Bad input gets a clear error; accelerator fallback is reported; the pieces without golden vectors. */
class CoreTest {
    private fun metadataJson(task: String = "classify", version: Int = 5, extra: String = "") = """
        {"task": "$task", "model": "toy", "target": "tflite", "precision": "fp32",
         "inputs": [{"name": "image", "shape": [1, 3, 4, 4], "dtype": "float32", "layout": "NCHW"}],
         "outputs": [{"name": "logits", "shape": [1, 3]}],
         "preprocessing": {"resize": 4, "crop": [4, 4], "interpolation": "bilinear"},
         "labels": ["a", "b", "c"], "schema_version": $version $extra}
    """.trimIndent()

    private inline fun <reified E : Throwable> assertThrows(contains: String, body: () -> Unit): E {
        try {
            body()
        } catch (e: Throwable) {
            if (e !is E) throw AssertionError("expected ${E::class.simpleName}, got $e", e)
            assertTrue("message '${e.message}' should mention '$contains'", e.message!!.contains(contains))
            return e
        }
        fail("expected ${E::class.simpleName} mentioning '$contains'")
        throw IllegalStateException()
    }

    private class FixedRunner(override val accelerator: Accelerator, val out: List<FloatArray>) : ModelRunner {
        var calls = 0
        override fun run(inputs: List<FloatArray>): List<FloatArray> { calls++; return out }
    }

    @Test
    fun jsonParsesAndRejects() {
        val v = Json.parse("""{"a": [1, -2.5e3, true, null, "x\u00e9\n"], "b": {}}""") as Map<*, *>
        assertEquals(listOf(1.0, -2500.0, true, null, "xé\n"), v["a"])
        assertThrows<ArtifactException>("invalid JSON") { Json.parse("""{"a": 1,}""") }
        assertThrows<ArtifactException>("trailing") { Json.parse("{} {}") }
        assertThrows<ArtifactException>("unterminated") { Json.parse("\"abc") }
    }

    @Test
    fun metadataReadsOldAndRefusesNewerOrMalformed() {
        val md = ModelMetadata.fromJson(metadataJson(version = 1))
        assertEquals("shorter_side", md.preprocessing!!.resizeMode)            // schema 1 has no resize_mode
        assertEquals(listOf(0.485, 0.456, 0.406), md.preprocessing!!.mean)     // defaults as in Python
        assertEquals(1, md.schemaVersion)
        assertEquals("app", md.preprocessing!!.normalization)                // schema < 6: the app normalises
        assertEquals(null, md.scores)                                         // and classifiers give logits
        assertThrows<ArtifactException>("upgrade") { ModelMetadata.fromJson(metadataJson(version = ModelMetadata.SCHEMA_VERSION + 1)) }
        assertThrows<ArtifactException>("metadata.task must be a string") {
            ModelMetadata.fromJson(metadataJson().replace("\"task\": \"classify\"", "\"task\": 3"))
        }
        assertThrows<ArtifactException>("crop") {
            ModelMetadata.fromJson(metadataJson().replace("\"crop\": [4, 4]", "\"crop\": [4]"))
        }
        assertThrows<ArtifactException>("not a JSON object") { ModelMetadata.fromJson("[1]") }
    }

    @Test
    fun tfliteWithoutMetadataOrCorrupt() {
        assertThrows<ArtifactException>("not a valid .tflite") { TfliteMetadata.readJson(ByteBuffer.wrap(byteArrayOf(1, 2, 3))) }
        // a flatbuffer whose root table has no fields: valid, and carries no metadata
        val empty = ByteBuffer.wrap(byteArrayOf(12, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0, 0, 4, 0, 0, 0))
        assertNull(TfliteMetadata.readJson(empty))
        assertThrows<ArtifactException>("no mobilevision metadata") { TfliteMetadata.read(empty) }
        assertEquals("toy", TfliteMetadata.read(empty, sidecarJson = metadataJson()).model)
    }

    @Test
    fun modelFormatBySuffixAndPteMetadataFromItsSidecar() {
        assertEquals(ModelFormat.TFLITE, ModelFormat.of("models/emo_1m.tflite"))
        assertEquals(ModelFormat.PTE, ModelFormat.of("/data/user/0/app/files/emo_1m.PTE"))
        assertEquals("models/emo_1m.pte.json", ModelFormat.sidecar("models/emo_1m.pte"))
        assertThrows<ArtifactException>("'emo_1m.onnx' is not a model this runtime opens: give a .tflite (LiteRT) or " +
            ".pte (ExecuTorch)") { ModelFormat.of("models/emo_1m.onnx") }
        assertThrows<ArtifactException>("give a .tflite") { ModelFormat.of("emo_1m.pte.json") }
        // a .pte's metadata is its sidecar; the program's bytes are never read
        val noBytes = { throw AssertionError("a .pte's bytes are not read for its metadata") }
        assertEquals("toy", ModelFormat.PTE.metadata("models/toy.pte", metadataJson(), noBytes).model)
        assertThrows<ArtifactException>("'toy.pte' has no 'toy.pte.json' sidecar") {
            ModelFormat.PTE.metadata("models/toy.pte", null, noBytes)
        }
        assertThrows<ArtifactException>("upgrade") { ModelFormat.PTE.metadata("toy.pte", metadataJson(version = ModelMetadata.SCHEMA_VERSION + 1), noBytes) }
        // a .tflite: the embedded entry first, else the sidecar (as TfliteMetadata.read)
        val empty = ByteBuffer.wrap(byteArrayOf(12, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0, 0, 4, 0, 0, 0))
        assertEquals("toy", ModelFormat.TFLITE.metadata("toy.tflite", metadataJson()) { empty }.model)
        assertThrows<ArtifactException>("no mobilevision metadata") { ModelFormat.TFLITE.metadata("toy.tflite", null) { empty } }
    }

    @Test
    fun acceleratorFallbackIsReported() {
        val md = ModelMetadata.fromJson(metadataJson())
        val tried = ArrayList<Accelerator>()
        val model = Model.open(md, { acc, _ ->
            tried.add(acc)
            if (acc != Accelerator.CPU) throw IllegalStateException("$acc delegate rejected op GELU")
            FixedRunner(acc, listOf(floatArrayOf(0f, 1f, 2f)))
        }, listOf(Accelerator.NPU, Accelerator.GPU, Accelerator.CPU))
        assertEquals(listOf(Accelerator.NPU, Accelerator.GPU, Accelerator.CPU), tried)
        assertEquals(Accelerator.CPU, model.accelerator)
        assertEquals(listOf(Accelerator.NPU, Accelerator.GPU), model.fallbacks.map { it.accelerator })
        assertEquals("CPU (NPU unavailable: NPU delegate rejected op GELU; GPU unavailable: GPU delegate rejected op GELU)",
            model.acceleratorReport)
        val gpu = Model.open(md, { acc, _ -> FixedRunner(acc, emptyList()) })
        assertEquals("GPU", gpu.acceleratorReport)                     // the default preference starts with the GPU
        val e = assertThrows<AcceleratorUnavailableException>("GPU: no GPU") {
            Model.open(md, { acc, _ -> throw UnsupportedOperationException("no $acc") }, listOf(Accelerator.GPU, Accelerator.CPU))
        }
        assertEquals(2, e.attempts.size)
        val linked = Model.open(md, { acc, _ ->
            if (acc == Accelerator.GPU) throw UnsatisfiedLinkError("libLiteRtGpuAccelerator.so not found")
            FixedRunner(acc, emptyList())
        })
        assertEquals("CPU (GPU unavailable: libLiteRtGpuAccelerator.so not found)", linked.acceleratorReport)
        assertThrows<InputMismatchException>("at least one accelerator") { Model.open(md, { a, _ -> FixedRunner(a, emptyList()) }, emptyList()) }
    }

    @Test
    fun predictChecksInputsAndTasksCheckMetadata() {
        val md = ModelMetadata.fromJson(metadataJson())
        val runner = FixedRunner(Accelerator.CPU, listOf(floatArrayOf(0f, 3f, 1f)))
        val model = Model(md, runner)
        assertThrows<InputMismatchException>("expects 48 values") { model.predict(listOf(FloatArray(5))) }
        assertThrows<InputMismatchException>("takes 1 input") { model.predict(emptyList()) }
        val wrong = Model(md, FixedRunner(Accelerator.CPU, listOf(FloatArray(4))))
        assertThrows<ArtifactException>("output 'logits' has 4 values") { wrong.predict(listOf(FloatArray(48))) }
        val top = ImageClassifier(model).classify(RgbImage(6, 5, ByteArray(90)), topK = 2)
        assertEquals(listOf(1, 2), top.map { it.index })
        assertEquals(listOf("b", "c"), top.map { it.label })
        assertEquals(1, runner.calls)
        assertThrows<ArtifactException>("is a 'classify' model, not 'anomaly'") { AnomalyDetector(model) }
        assertThrows<ArtifactException>("is a 'classify' model, not 'isp'") { RawIsp(model) }
        assertThrows<ArtifactException>("is a 'classify' model, not 'landmarks'") { FaceLandmarker(model) }
        // a graph that ends in a softmax: its outputs are the scores, not softmaxed again
        val probs = ModelMetadata.fromJson(metadataJson().replace("\"task\"", "\"scores\": \"probabilities\", \"task\""))
        val p = ImageClassifier(Model(probs, FixedRunner(Accelerator.CPU, listOf(floatArrayOf(0.2f, 0.5f, 0.3f)))))
            .classify(RgbImage(6, 5, ByteArray(90)), topK = 3)
        assertEquals(listOf(1, 2, 0), p.map { it.index })
        assertEquals(0.5, p[0].score, 1e-7)
        assertThrows<ArtifactException>("sum to") {   // logits behind a "probabilities" claim
            ImageClassifier(Model(probs, FixedRunner(Accelerator.CPU, listOf(floatArrayOf(2f, 5f, -1f)))))
                .classify(RgbImage(6, 5, ByteArray(90)))
        }
        val pixels = ModelMetadata.fromJson(metadataJson().replace("\"interpolation\": \"bilinear\"}",
            "\"interpolation\": \"bilinear\", \"normalization\": \"model\"}")
            .replace("\"dtype\": \"float32\", \"layout\": \"NCHW\"", "\"dtype\": \"uint8\", \"layout\": \"NCHW\""))
        assertEquals("model", pixels.preprocessing!!.normalization)
        assertThrows<ArtifactException>("inputs[0].dtype") {   // pixels claimed for a float input: contradicts itself
            ModelMetadata.fromJson(metadataJson().replace("\"interpolation\": \"bilinear\"}",
                "\"interpolation\": \"bilinear\", \"normalization\": \"model\"}"))
        }
        assertThrows<ArtifactException>("takes uint8 pixels") {
            ImageClassifier(Model(pixels, runner)).classify(RgbImage(6, 5, ByteArray(90)))
        }
        val noPre = ModelMetadata.fromJson(metadataJson().replace(Regex("\"preprocessing\": \\{[^}]*\\},"), ""))
        assertThrows<ArtifactException>("no preprocessing") { ImageClassifier(Model(noPre, runner)) }
    }

    @Test
    fun imageAndGeometryInputsAreChecked() {
        assertThrows<InputMismatchException>("needs 36 bytes") { RgbImage(3, 4, ByteArray(35)) }
        assertThrows<InputMismatchException>("positive size") { RgbImage(0, 4, ByteArray(0)) }
        assertThrows<InputMismatchException>("has no area") { FaceBox(10.0, 0.0, 5.0, 8.0) }
        assertThrows<InputMismatchException>("finite") { FaceBox(0.0, Double.NaN, 5.0, 8.0) }
        assertThrows<InputMismatchException>("unknown Bayer pattern 'RGBX'") { BayerPattern.of("RGBX") }
        assertThrows<InputMismatchException>("needs 12 values") { BayerMosaic(4, 3, FloatArray(11)) }
        assertThrows<InputMismatchException>("one value or four") { RawIsp.normalize(FloatArray(8), listOf(1.0, 2.0), 10.0, false) }
        assertThrows<InputMismatchException>("must exceed every black level") { RawIsp.normalize(FloatArray(8), listOf(64.0), 60.0, false) }
        val img = RgbImage(8, 6, ByteArray(144))
        assertThrows<InputMismatchException>("exceeds") { Resample.resize(img, 4, 4, ResampleFilter.BILINEAR, doubleArrayOf(0.0, 0.0, 9.0, 6.0)) }
        assertThrows<InputMismatchException>("negative") { Resample.resize(img, 4, 4, ResampleFilter.BILINEAR, doubleArrayOf(-1.0, 0.0, 8.0, 6.0)) }
        assertThrows<ArtifactException>("nearest") { ResampleFilter.of("nearest") }
        assertThrows<InputMismatchException>("lo < hi") { Heatmap.colorize(FloatImage(1, 1, floatArrayOf(0f)), 0.3, 0.1) }
        assertThrows<InputMismatchException>("same size") { Heatmap.overlay(img, RgbImage(2, 2, ByteArray(12))) }
    }

    @Test
    fun argbRoundTrip() {
        val argb = intArrayOf(0xFF102030.toInt(), 0x80FFFFFF.toInt(), 0x00000000)
        val img = RgbImage.fromArgb(3, 1, argb)
        assertEquals(listOf(0x10, 0x20, 0x30), (0 until 3).map { img[0, 0, it] })
        assertEquals(255, img[1, 0, 2])
        assertEquals(listOf(0xFF102030.toInt(), 0xFFFFFFFF.toInt(), 0xFF000000.toInt()), img.toArgb().toList())
    }

    @Test
    fun heatmapEndsAndNan() {
        val h = Heatmap.colorize(FloatImage(4, 1, floatArrayOf(-1f, 0.125f, 5f, Float.NaN)), 0.0, 0.25)
        val px = (0 until 4).map { x -> (0 until 3).map { h[x, 0, it] } }
        assertEquals(listOf(0, 0, 128), px[0])       // below lo: dark blue
        assertEquals(listOf(128, 255, 128), px[1])   // mid-range: green
        assertEquals(listOf(128, 0, 0), px[2])       // above hi: dark red
        assertEquals(px[0], px[3])                   // NaN counts as lo
    }

    @Test
    fun benchmarkTimesWithTheInjectedClock() {
        val md = ModelMetadata.fromJson(metadataJson())
        var now = 0L
        var step = 0L
        val runner = object : ModelRunner {
            override val accelerator = Accelerator.CPU
            override fun run(inputs: List<FloatArray>): List<FloatArray> { step++; now += step * 1_000_000; return listOf(FloatArray(3)) }
        }
        val r = Benchmark.run(md, { _, _ -> runner }, listOf(Accelerator.CPU), warmup = 2, runs = 4, rewarm = 0, clockNs = { now })
        assertEquals(1.0, r.firstMs, 1e-12)               // first inference took 1 ms, warm-up 2 and 3 ms
        assertEquals(4, r.stats.runs)
        assertEquals(5.5, r.stats.medianMs, 1e-12)        // timed runs: 4, 5, 6, 7 ms
        assertEquals(4.0, r.stats.minMs, 1e-12)
        assertEquals(7.0, r.stats.maxMs, 1e-12)
        assertEquals(6.7, r.stats.p90Ms, 1e-12)
        // rewarm 1 (bench's default): an untimed run before each timed one; a stop after 2 timed runs
        now = 0; step = 0
        val seen = ArrayList<Int>()
        val s = Benchmark.run(md, { _, _ -> runner }, listOf(Accelerator.CPU), warmup = 0, runs = 10,
            onProgress = { done, _ -> seen.add(done); done < 2 }, clockNs = { now })
        assertEquals(listOf(1, 2), seen)
        assertEquals(listOf(3.0, 5.0), listOf(s.stats.minMs, s.stats.maxMs))   // runs 1 (first), 2 untimed, 3, 4 untimed, 5
        assertThrows<InputMismatchException>("runs >= 1") { Benchmark.run(md, { _, _ -> runner }, listOf(Accelerator.CPU), runs = 0) }
    }
}
