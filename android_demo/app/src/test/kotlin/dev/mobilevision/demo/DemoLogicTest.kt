package dev.mobilevision.demo

import dev.mobilevision.runtime.Accelerator
import dev.mobilevision.runtime.ArtifactException
import dev.mobilevision.runtime.Model
import dev.mobilevision.runtime.ModelFormat
import dev.mobilevision.runtime.ModelMetadata
import dev.mobilevision.runtime.ModelRunner
import dev.mobilevision.runtime.RgbImage
import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** The demo's Android-free logic: its asset index, the RAW sample, a task session and the benchmark table. */
class DemoLogicTest {
    private fun expectArtifactError(contains: String, body: () -> Unit) {
        try {
            body()
        } catch (e: ArtifactException) {
            assertTrue("'${e.message}' should mention '$contains'", e.message!!.contains(contains))
            return
        }
        fail("expected an ArtifactException mentioning '$contains'")
    }

    private val metadata = ModelMetadata.fromJson("""
        {"task": "classify", "model": "toy", "target": "tflite", "precision": "fp32", "macs": 2000000,
         "inputs": [{"name": "image", "shape": [1, 3, 4, 4]}], "outputs": [{"name": "logits", "shape": [1, 3]}],
         "preprocessing": {"resize": 4, "crop": [4, 4], "interpolation": "bilinear"}, "labels": ["a", "b", "c"]}
    """)

    private class Fixed(override val accelerator: Accelerator) : ModelRunner {
        override fun run(inputs: List<FloatArray>) = listOf(floatArrayOf(0f, 2f, 1f))
    }

    @Test
    fun indexPicksOneModelPerTaskInOrderAndRejectsBadFiles() {
        val models = DemoCatalog.parseIndex("""[{"task": "isp", "model": "efficientisp", "file": "efficientisp.tflite"},
            {"task": "classify", "model": "emo_1m", "file": "emo_1m.tflite"}, {"task": "depth", "model": "x", "file": "x.tflite"}]""")
        assertEquals(listOf(DemoTask.CLASSIFY, DemoTask.ISP), models.map { it.task })
        assertEquals("models/emo_1m.tflite", models[0].assetPath)
        assertEquals("Classification (top-5): emo_1m (LiteRT)", models[0].title)
        // .pte (ExecuTorch) files are listed too: per task the first .tflite, then the first .pte
        val both = DemoCatalog.parseIndex("""[{"task": "isp", "model": "efficientisp", "file": "efficientisp.pte"},
            {"task": "classify", "model": "emo_1m", "file": "emo_1m.pte"}, {"task": "classify", "model": "emo_1m", "file": "emo_1m.tflite"},
            {"task": "classify", "model": "emo_2m", "file": "emo_2m.pte"}]""")
        assertEquals(listOf("emo_1m.tflite", "emo_1m.pte", "efficientisp.pte"), both.map { it.file })
        assertEquals(listOf(ModelFormat.TFLITE, ModelFormat.PTE, ModelFormat.PTE), both.map { it.format })
        assertEquals("models/emo_1m.pte", both[1].assetPath)
        assertEquals("RAW → RGB (ISP): efficientisp (ExecuTorch)", both[2].title)
        expectArtifactError("entry 1: 'emo_1m.onnx' is not a model this runtime opens: give a .tflite (LiteRT) or .pte") {
            DemoCatalog.parseIndex("""[{"task": "depth", "model": "d", "file": "d.onnx"}, {"task": "classify", "model": "emo_1m", "file": "emo_1m.onnx"}]""")
        }
        expectArtifactError("export_models.sh") { DemoCatalog.parseIndex("{}") }
        expectArtifactError("no \"file\"") { DemoCatalog.parseIndex("""[{"task": "classify", "model": "m"}]""") }
        expectArtifactError("lists no") { DemoCatalog.parseIndex("[]") }
    }

    @Test
    fun sampleMosaicReadsLittleEndianAndChecksItsSize() {
        val bin = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).apply { putShort(1023.toShort()); putShort(64); putShort(65); putShort(700) }.array()
        val s = DemoCatalog.parseSample("""{"width": 2, "height": 2, "pattern": "GRBG", "black_level": [64, 64, 64, 64], "white_level": 1023}""", bin)
        assertEquals(listOf(1023f, 64f, 65f, 700f), s.mosaic.values.toList())
        assertEquals(1023.0, s.whiteLevel, 0.0)
        expectArtifactError("has 6 bytes") { DemoCatalog.parseSample("""{"width": 2, "height": 2, "black_level": 64, "white_level": 1023}""", ByteArray(6)) }
    }

    @Test
    fun sessionClassifiesAndSaysWhereItRuns() {
        val model = Model.open(metadata, { acc, _ -> if (acc == Accelerator.GPU) error("no GPU here") else Fixed(acc) })
        TaskSession(DemoModel(DemoTask.CLASSIFY, "toy", "toy.tflite"), model).use { s ->
            assertEquals("running on: CPU (GPU unavailable: no GPU here)", s.describe()[1])
            assertTrue(s.describe()[0].contains("RANDOM-INIT"))
            val lines = s.run(RgbImage(5, 4, ByteArray(60))).lines
            assertTrue(lines[0], lines[0].startsWith("1. b "))
        }
        assertEquals(listOf(-0.5, 9.5), TaskSession.centredSquare(20, 10).let { listOf(it.x0, it.x1) }.map { it - 5.0 })
    }

    @Test
    fun benchmarkTableShowsRunsAndWhyAnAcceleratorDidNotRun() {
        val factory = dev.mobilevision.runtime.RunnerFactory { acc, _ -> if (acc == Accelerator.NPU) error("no NPU dispatch library") else Fixed(acc) }
        val outcomes = listOf(Accelerator.CPU, Accelerator.NPU).map { BenchReport.measure(metadata, factory, it, warmup = 1, runs = 3) }
        val table = BenchReport.table(outcomes)
        assertTrue(table[0], table[0].contains("median") && table[0].contains("GMAC/s"))
        assertTrue(table.any { it == "CPU: ran on CPU (3 timed runs)" })
        assertTrue(table.any { it == "NPU: not run: NPU unavailable: no NPU dispatch library" })
    }
}
