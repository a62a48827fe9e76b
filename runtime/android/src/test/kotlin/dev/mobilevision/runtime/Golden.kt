package dev.mobilevision.runtime

import org.junit.Assert.assertEquals
import org.junit.Assert.fail
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * The golden vectors the Python runtime writes (runtime/golden.py): a manifest and raw little-endian
 * arrays. The folder comes from the `mobilevision.golden` system property (jvm_test.sh --golden DIR).
 */
class Golden(val dir: File) {
    @Suppress("UNCHECKED_CAST")
    val manifest: Map<String, Any?> = Json.parse(File(dir, "golden.json").readText()) as Map<String, Any?>
    val tolerance: Double = manifest["tolerance"] as Double

    @Suppress("UNCHECKED_CAST")
    fun list(key: String): List<Map<String, Any?>> = manifest[key] as List<Map<String, Any?>>

    class Array(val dtype: String, val shape: List<Int>, val bytes: ByteBuffer) {
        val size get() = shape.fold(1) { a, b -> a * b }
        fun u8(): ByteArray = ByteArray(size).also { check("uint8"); bytes.duplicate().get(it) }
        fun f32(): FloatArray = FloatArray(size).also { check("float32"); bytes.duplicate().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(it) }
        fun f64(): DoubleArray = DoubleArray(size).also { check("float64"); bytes.duplicate().order(ByteOrder.LITTLE_ENDIAN).asDoubleBuffer().get(it) }
        fun u16AsFloat(): FloatArray {
            check("uint16")
            val s = bytes.duplicate().order(ByteOrder.LITTLE_ENDIAN).asShortBuffer()
            return FloatArray(size) { (s.get(it).toInt() and 0xFFFF).toFloat() }
        }
        private fun check(want: String) = assertEquals("golden array dtype", want, dtype)
    }

    @Suppress("UNCHECKED_CAST")
    fun array(entry: Any?): Array {
        val e = entry as Map<String, Any?>
        val shape = (e["shape"] as List<Double>).map { it.toInt() }
        return Array(e["dtype"] as String, shape, ByteBuffer.wrap(File(dir, e["file"] as String).readBytes()))
    }

    fun image(entry: Any?): RgbImage {
        val a = array(entry)
        return RgbImage(a.shape[1], a.shape[0], a.u8())
    }

    companion object {
        fun load(): Golden {
            val path = System.getProperty("mobilevision.golden")
                ?: throw AssertionError("no golden vectors: run jvm_test.sh --golden DIR after " +
                    "`python -m mobilevision.runtime.golden ARTIFACT... --out DIR`")
            return Golden(File(path))
        }

        fun assertClose(what: String, expected: FloatArray, actual: FloatArray, tol: Double) {
            assertEquals("$what: size", expected.size, actual.size)
            var worst = 0.0
            var at = -1
            for (i in expected.indices) {
                val d = Math.abs(expected[i].toDouble() - actual[i].toDouble())
                if (d > worst || d.isNaN()) { worst = d; at = i }
            }
            if (!(worst <= tol)) fail("$what: max |diff| $worst at $at (expected ${expected[at]}, got ${actual[at]}) > $tol")
        }

        fun assertClose(what: String, expected: DoubleArray, actual: DoubleArray, tol: Double) {
            assertEquals("$what: size", expected.size, actual.size)
            for (i in expected.indices) {
                val d = Math.abs(expected[i] - actual[i])
                if (!(d <= tol)) fail("$what: |diff| $d at $i (expected ${expected[i]}, got ${actual[i]}) > $tol")
            }
        }

        fun assertBytes(what: String, expected: ByteArray, actual: ByteArray) {
            assertEquals("$what: size", expected.size, actual.size)
            val bad = expected.indices.filter { expected[it] != actual[it] }
            if (bad.isNotEmpty()) {
                val i = bad.first()
                fail("$what: ${bad.size} of ${expected.size} bytes differ, first at $i " +
                    "(expected ${expected[i].toInt() and 0xFF}, got ${actual[i].toInt() and 0xFF})")
            }
        }
    }
}

/**
 * A runner that replays the model calls the Python runtime recorded: each call's inputs must match
 * the recorded inputs (so the Kotlin preprocessing and tiling are checked too), and it returns the
 * recorded outputs.
 */
class ReplayRunner(private val golden: Golden, private val calls: List<Map<String, Any?>>, private val name: String) : ModelRunner {
    override val accelerator = Accelerator.CPU
    var next = 0
        private set

    @Suppress("UNCHECKED_CAST")
    override fun run(inputs: List<FloatArray>): List<FloatArray> {
        if (next >= calls.size) fail("$name: more model calls than the Python runtime made (${calls.size})")
        val call = calls[next++]
        val expected = (call["inputs"] as List<Any?>).map { golden.array(it).f32() }
        assertEquals("$name call $next: inputs", expected.size, inputs.size)
        for ((i, e) in expected.withIndex()) Golden.assertClose("$name call $next input $i", e, inputs[i], golden.tolerance)
        return (call["outputs"] as List<Any?>).map { golden.array(it).f32() }
    }

    fun assertAllCalled() = assertEquals("$name: model calls", calls.size, next)
}
