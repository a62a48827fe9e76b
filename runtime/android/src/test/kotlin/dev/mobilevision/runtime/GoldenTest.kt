package dev.mobilevision.runtime

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.File
import java.nio.ByteBuffer

/** Cross-language parity: every step of every task against what the Python runtime wrote. */
@Suppress("UNCHECKED_CAST")
class GoldenTest {
    private val golden = Golden.load()
    private val tol = golden.tolerance

    private fun models(task: String) = golden.list("models").filter { it["task"] == task }.also {
        assertTrue("the golden vectors hold no '$task' model", it.isNotEmpty())
    }

    private fun metadata(m: Map<String, Any?>) = ModelMetadata.fromJson(File(golden.dir, m["metadata"] as String).readText())

    private fun cases(m: Map<String, Any?>) = m["cases"] as List<Map<String, Any?>>

    private fun <T> replay(m: Map<String, Any?>, case: Map<String, Any?>, body: (Model) -> T): T {
        val runner = ReplayRunner(golden, case["calls"] as List<Map<String, Any?>>, case["name"] as String)
        val result = body(Model.open(metadata(m), { _, _ -> runner }, listOf(Accelerator.CPU)))
        runner.assertAllCalled()
        return result
    }

    @Test
    fun embeddedTfliteMetadataEqualsTheSidecar() {
        var checked = 0
        for (m in golden.list("models")) {
            val file = m["tflite"] as String? ?: continue
            val embedded = TfliteMetadata.read(ByteBuffer.wrap(File(golden.dir, file).readBytes()))
            assertEquals("${m["artifact"]}: embedded metadata", metadata(m), embedded)
            checked++
        }
        assertTrue("no .tflite among the golden models", checked > 0)
    }

    @Test
    fun classify() {
        for (m in models("classify")) {
            val md = metadata(m)
            val pre = md.requirePreprocessing()
            for (c in cases(m)) {
                val name = c["name"] as String
                val image = golden.image(c["image"])
                val resized = ImagePreprocessor.resized(image, pre)
                Golden.assertBytes("$name resized", golden.array(c["resized"]).u8(), resized.pixels)
                Golden.assertClose("$name tensor", golden.array(c["tensor"]).f32(), ImagePreprocessor.normalize(resized, pre), tol)
                val top = replay(m, c) { ImageClassifier(it).classify(image, (c["top_k"] as Double).toInt()) }
                val expected = c["result"] as List<Map<String, Any?>>
                assertEquals("$name top-k", expected.map { (it["index"] as Double).toInt() }, top.map { it.index })
                assertEquals("$name labels", expected.map { it["label"] }, top.map { it.label })
                Golden.assertClose("$name scores", expected.map { it["score"] as Double }.toDoubleArray(),
                    top.map { it.score }.toDoubleArray(), tol)
            }
        }
    }

    @Test
    fun anomaly() {
        for (m in models("anomaly")) {
            val pre = metadata(m).requirePreprocessing()
            for (c in cases(m)) {
                val name = c["name"] as String
                val image = golden.image(c["image"])
                Golden.assertBytes("$name resized", golden.array(c["resized"]).u8(), ImagePreprocessor.resized(image, pre).pixels)
                Golden.assertClose("$name tensor", golden.array(c["tensor"]).f32(), ImagePreprocessor.preprocess(image, pre), tol)
                val threshold = c["threshold"] as Double?   // null: the artifact's own (metadata anomaly.image)
                val r = replay(m, c) { AnomalyDetector(it, threshold).detect(image) }
                val want = c["result"] as Map<String, Any?>
                assertEquals("$name score", want["score"] as Double, r.score.toDouble(), tol)
                assertEquals("$name threshold used", want["threshold"], r.threshold)
                assertEquals("$name pixel threshold", want["pixel_threshold"], r.pixelThreshold)
                assertEquals("$name decision", want["is_anomalous"], r.isAnomalous)
                val map = golden.array(want["anomaly_map"])
                assertEquals("$name map size", listOf(image.height, image.width), map.shape)
                Golden.assertClose("$name map at image size", map.f32(), r.map.data, tol)
                // colours: from the Python map (integer steps bit-exact), and from ours
                val heat = Heatmap.colorize(FloatImage(image.width, image.height, map.f32()))
                Golden.assertBytes("$name heatmap", golden.array(want["heatmap"]).u8(), heat.pixels)
                Golden.assertBytes("$name heatmap (own map)", golden.array(want["heatmap"]).u8(), r.heatmap().pixels)
                Golden.assertBytes("$name overlay", golden.array(want["overlay"]).u8(), Heatmap.overlay(image, heat).pixels)
            }
        }
    }

    @Test
    fun rawIsp() {
        for (m in models("isp")) {
            val md = metadata(m)
            for (c in cases(m)) {
                val name = c["name"] as String
                val mosaicArray = golden.array(c["mosaic"])
                val mosaic = BayerMosaic(mosaicArray.shape[1], mosaicArray.shape[0], mosaicArray.u16AsFloat(),
                    BayerPattern.of(c["pattern"] as String))
                val black = (c["black_level"] as List<Double>?)
                val white = c["white_level"] as Double?
                val packed = RawIsp.normalize(RawIsp.pack(mosaic), black ?: md.raw!!.blackLevel, white ?: md.raw!!.whiteLevel, md.raw!!.clip)
                Golden.assertClose("$name packed", golden.array(c["packed"]).f32(), packed, tol)
                val r = replay(m, c) { RawIsp(it).process(mosaic, black, white) }
                val want = c["result"] as Map<String, Any?>
                val rgb = golden.array(want["rgb"])
                assertEquals("$name size", listOf(r.height, r.width, 3), rgb.shape)
                Golden.assertClose("$name rgb", rgb.f32(), r.rgb, tol)
                Golden.assertBytes("$name rgb8", golden.array(want["rgb8"]).u8(), r.toRgbImage().pixels)
                assertEquals("$name tiles", (c["calls"] as List<*>).size, r.tiles)
            }
        }
    }

    @Test
    fun faceLandmarks() {
        for (m in models("landmarks")) {
            val pre = metadata(m).requirePreprocessing()
            for (c in cases(m)) {
                val name = c["name"] as String
                val image = golden.image(c["image"])
                val b = (c["box"] as List<Double>?)
                val box = if (b == null) FaceBox.fullImage(image.width, image.height) else FaceBox(b[0], b[1], b[2], b[3])
                val crop = FaceLandmarker.cropImage(image, box, pre.width, pre.height)
                Golden.assertBytes("$name crop", golden.array(c["crop"]).u8(), crop.pixels)
                Golden.assertClose("$name tensor", golden.array(c["tensor"]).f32(), ImagePreprocessor.normalize(crop, pre), tol)
                val pts = replay(m, c) { if (b == null) FaceLandmarker(it).detectDouble(image) else FaceLandmarker(it).detectDouble(image, box) }
                Golden.assertClose("$name landmarks", golden.array(c["result"]).f64(), pts, tol)
            }
        }
    }

    @Test
    fun resampleMatchesPillow() {
        for (c in golden.list("resample")) {
            val name = c["name"] as String
            val filter = ResampleFilter.of(c["filter"] as String)
            val size = (c["size"] as List<Double>).map { it.toInt() }
            val box = (c["box"] as List<Double>?)?.toDoubleArray()
            if (c.containsKey("image")) {
                val out = Resample.resize(golden.image(c["image"]), size[0], size[1], filter, box)
                Golden.assertBytes(name, golden.array(c["result"]).u8(), out.pixels)
            } else {
                val a = golden.array(c["map"])
                val out = Resample.resize(FloatImage(a.shape[1], a.shape[0], a.f32()), size[0], size[1], filter, box)
                Golden.assertClose(name, golden.array(c["result"]).f32(), out.data, tol)
            }
        }
    }

    @Test
    fun latencyStatsMatchBench() {
        for (c in golden.list("latency_stats")) {
            val s = LatencyStats.of((c["samples_ms"] as List<Double>).toDoubleArray())
            val want = c["stats"] as Map<String, Any?>
            val got = mapOf("median_ms" to s.medianMs, "mean_ms" to s.meanMs, "p90_ms" to s.p90Ms, "min_ms" to s.minMs,
                "max_ms" to s.maxMs, "std_ms" to s.stdMs)
            for ((k, v) in got) assertEquals("$k of ${s.runs} samples", want[k] as Double, v, 1e-9)
            assertEquals("runs", (want["runs"] as Double).toInt(), s.runs)
        }
    }
}
