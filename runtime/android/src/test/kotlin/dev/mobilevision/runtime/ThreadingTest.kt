package dev.mobilevision.runtime

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.util.Collections
import java.util.concurrent.CountDownLatch
import java.util.concurrent.atomic.AtomicInteger

/** The Kotlin runtime's rule: a Model may be shared by threads; its calls take turns (one runner, one set of buffers). */
class ThreadingTest {
    private val metadata = ModelMetadata.fromJson("""
        {"task": "classify", "model": "toy", "target": "tflite", "precision": "fp32",
         "inputs": [{"name": "image", "shape": [1, 3, 4, 4], "dtype": "float32", "layout": "NCHW"}],
         "outputs": [{"name": "logits", "shape": [1, 3]}],
         "preprocessing": {"resize": 4, "crop": [4, 4]}, "labels": ["a", "b", "c"], "schema_version": 5}
    """.trimIndent())

    /** A runner like LiteRT's: one input buffer and one output buffer, wrong if two calls overlap. */
    private class BufferedRunner : ModelRunner {
        override val accelerator = Accelerator.CPU
        val inFlight = AtomicInteger()
        val maxInFlight = AtomicInteger()
        private val input = FloatArray(48)
        private val output = FloatArray(3)
        override fun run(inputs: List<FloatArray>): List<FloatArray> {
            maxInFlight.accumulateAndGet(inFlight.incrementAndGet(), ::maxOf)
            try {
                inputs[0].copyInto(input)
                Thread.sleep(0, 200_000)                   // long enough for another thread to overwrite the buffer
                for (i in 0 until 3) output[i] = input[0] * (i + 1)
                return listOf(output.copyOf())
            } finally {
                inFlight.decrementAndGet()
            }
        }
    }

    @Test
    fun sharedModelGivesEveryThreadItsOwnAnswer() {
        val runner = BufferedRunner()
        val model = Model(metadata, runner)
        val wrong = Collections.synchronizedList(ArrayList<String>())
        val start = CountDownLatch(1)
        val threads = (0 until 4).map { t ->
            Thread {
                start.await()
                repeat(100) { i ->
                    val v = (t * 1000 + i).toFloat()
                    val out = model.predict(listOf(FloatArray(48) { v }))["logits"]!!
                    if (out[2] != v * 3) wrong.add("thread $t call $i: ${out[2]} != ${v * 3}")
                }
            }.also { it.start() }
        }
        start.countDown()
        threads.forEach { it.join() }
        assertTrue("wrong answers: ${wrong.take(3)} (${wrong.size} in all)", wrong.isEmpty())
        assertEquals("calls overlapped in the runner", 1, runner.maxInFlight.get())
    }

    @Test
    fun closedModelRefusesCalls() {
        val model = Model(metadata, BufferedRunner())
        model.close()
        model.close()                                  // closing twice is harmless
        try {
            model.predict(listOf(FloatArray(48)))
            fail("predict after close should throw")
        } catch (e: ArtifactException) {
            assertTrue(e.message!!, e.message!!.contains("closed"))
        }
    }
}
