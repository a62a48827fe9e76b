package dev.mobilevision.runtime

import kotlin.math.PI
import kotlin.math.ceil
import kotlin.math.cos
import kotlin.math.sin

/**
 * Image resizing that gives the same pixels as Pillow's `Image.resize` (the Python runtime's
 * preprocessing), so a Kotlin app feeds a model exactly what the Python runtime feeds it.
 *
 * The algorithm is Pillow's separable convolution (libImaging/Resample.c): per output pixel a
 * filter window scaled by the downscale factor, weights normalised to sum 1; 8-bit images use
 * 22-bit fixed-point weights with rounding and clamp after each pass, float images accumulate in
 * double. The box (source rectangle) is single precision, as in Pillow. The horizontal pass runs
 * first unless the height shrinks more than twice as much as the width.
 */
enum class ResampleFilter(val support: Double) {
    BOX(0.5), BILINEAR(1.0), HAMMING(1.0), BICUBIC(2.0), LANCZOS(3.0);

    fun weight(v: Double): Double {
        var x = v
        return when (this) {
            BOX -> if (x > -0.5 && x <= 0.5) 1.0 else 0.0
            BILINEAR -> { if (x < 0.0) x = -x; if (x < 1.0) 1.0 - x else 0.0 }
            HAMMING -> {
                if (x < 0.0) x = -x
                if (x == 0.0) 1.0 else if (x >= 1.0) 0.0
                else { x *= PI; sin(x) / x * (0.54f.toDouble() + 0.46f.toDouble() * cos(x)) }
            }
            BICUBIC -> {
                val a = -0.5
                if (x < 0.0) x = -x
                if (x < 1.0) ((a + 2.0) * x - (a + 3.0)) * x * x + 1
                else if (x < 2.0) (((x - 5) * x + 8) * x - 4) * a
                else 0.0
            }
            LANCZOS -> if (-3.0 <= x && x < 3.0) sinc(x) * sinc(x / 3) else 0.0
        }
    }

    private fun sinc(v: Double): Double = if (v == 0.0) 1.0 else (v * PI).let { sin(it) / it }

    companion object {
        /** The filter of a metadata `interpolation` name. */
        fun of(name: String): ResampleFilter = when (name.lowercase()) {
            "bicubic" -> BICUBIC
            "bilinear" -> BILINEAR
            "lanczos" -> LANCZOS
            "box" -> BOX
            "hamming" -> HAMMING
            else -> throw ArtifactException("interpolation '$name' is not supported by the Kotlin runtime " +
                "(bicubic, bilinear, lanczos, box, hamming); re-export with one of those")
        }
    }
}

/** A single-channel float32 image (e.g. an anomaly map), row-major. */
class FloatImage(val width: Int, val height: Int, val data: FloatArray) {
    init {
        if (width <= 0 || height <= 0 || data.size != width * height) {
            throw InputMismatchException("a ${width}x$height float image needs ${width * height} values, got ${data.size}")
        }
    }

    operator fun get(x: Int, y: Int): Float = data[y * width + x]
}

object Resample {
    private const val PRECISION_BITS = 32 - 8 - 2

    /** Pillow `Image.resize((width, height), filter, box)` of an RGB image; [box] = (x0, y0, x1, y1), edges at integers. */
    fun resize(src: RgbImage, width: Int, height: Int, filter: ResampleFilter, box: DoubleArray? = null): RgbImage {
        val b = checkBox(src.width, src.height, width, height, box)
        if (isCrop(b, src.width, src.height, width, height)) return crop(src, b[0].toInt(), b[1].toInt(), width, height)
        val planes = Plane8(src.width, src.height, 3, src.pixels)
        return RgbImage(width, height, resample(planes, width, height, filter, b).data)
    }

    /** Pillow `Image.fromarray(map, "F").resize((width, height), filter, box)`. */
    fun resize(src: FloatImage, width: Int, height: Int, filter: ResampleFilter, box: DoubleArray? = null): FloatImage {
        val b = checkBox(src.width, src.height, width, height, box)
        if (isCrop(b, src.width, src.height, width, height)) {
            val x0 = b[0].toInt()
            val y0 = b[1].toInt()
            return FloatImage(width, height, FloatArray(width * height) { i -> src[x0 + i % width, y0 + i / width] })
        }
        val w = src.width
        val h = src.height
        val needH = width != w || b[0] != 0f || b[2] != width.toFloat()
        val needV = height != h || b[1] != 0f || b[3] != height.toFloat()
        val hFirst = !((h - height) > 0 && (h - height) > (w - width) * 2)
        var cur = src.data
        var curW = w
        var curH = h
        val vert = if ((needH && hFirst) || needV) Coeffs(h, b[1], b[3], height, filter) else null
        var rowFirst = 0
        if (needH && hFirst) {
            rowFirst = vert!!.bounds[0]
            val rowLast = vert.bounds[2 * (height - 1)] + vert.bounds[2 * (height - 1) + 1]
            for (i in 0 until height) vert.bounds[2 * i] -= rowFirst
            cur = floatHorizontal(cur, curW, rowFirst, rowLast - rowFirst, Coeffs(w, b[0], b[2], width, filter))
            curW = width; curH = rowLast - rowFirst
        }
        if (needV) { cur = floatVertical(cur, curW, vert!!); curH = height }
        if (needH && !hFirst) { cur = floatHorizontal(cur, curW, 0, curH, Coeffs(w, b[0], b[2], width, filter)); curW = width }
        return FloatImage(width, height, if (cur === src.data) cur.copyOf() else cur)
    }

    /** Checked box as float32, Pillow's rules (inside the image, not empty). */
    private fun checkBox(w: Int, h: Int, outW: Int, outH: Int, box: DoubleArray?): FloatArray {
        if (outW < 1 || outH < 1) throw InputMismatchException("resize target must be at least 1x1, got ${outW}x$outH")
        val b = if (box == null) floatArrayOf(0f, 0f, w.toFloat(), h.toFloat()) else {
            if (box.size != 4) throw InputMismatchException("a resize box is (x0, y0, x1, y1), got ${box.size} values")
            FloatArray(4) { box[it].toFloat() }
        }
        if (b[0] < 0f || b[1] < 0f) throw InputMismatchException("resize box offset can't be negative: ${b.toList()}")
        if (b[2] > w || b[3] > h) throw InputMismatchException("resize box ${b.toList()} exceeds the ${w}x$h image")
        if (b[2] - b[0] < 0f || b[3] - b[1] < 0f) throw InputMismatchException("resize box ${b.toList()} is empty")
        return b
    }

    private fun isCrop(b: FloatArray, w: Int, h: Int, outW: Int, outH: Int): Boolean {
        if (outW == w && outH == h && b[0] == 0f && b[1] == 0f && b[2] == w.toFloat() && b[3] == h.toFloat()) return true
        return b[0] - b[0].toInt() == 0f && b[2] - b[0] == outW.toFloat() &&
            b[1] - b[1].toInt() == 0f && b[3] - b[1] == outH.toFloat()
    }

    private fun crop(src: RgbImage, x0: Int, y0: Int, w: Int, h: Int): RgbImage {
        val out = ByteArray(w * h * 3)
        for (y in 0 until h) System.arraycopy(src.pixels, ((y0 + y) * src.width + x0) * 3, out, y * w * 3, w * 3)
        return RgbImage(w, h, out)
    }

    /** Filter windows and weights along one axis (Pillow's precompute_coeffs). */
    private class Coeffs(inSize: Int, in0: Float, in1: Float, outSize: Int, filter: ResampleFilter) {
        val ksize: Int
        val bounds = IntArray(outSize * 2)        // (first source index, count) per output index
        val weights: DoubleArray

        init {
            val scale = (in1 - in0).toDouble() / outSize
            val filterScale = if (scale < 1.0) 1.0 else scale
            val support = filter.support * filterScale
            ksize = ceil(support).toInt() * 2 + 1
            weights = DoubleArray(outSize * ksize)
            val inv = 1.0 / filterScale
            for (xx in 0 until outSize) {
                val center = in0 + (xx + 0.5) * scale
                val xmin = maxOf((center - support + 0.5).toInt(), 0)
                val xmax = minOf((center + support + 0.5).toInt(), inSize) - xmin
                var total = 0.0
                for (x in 0 until xmax) {
                    val w = filter.weight((x + xmin - center + 0.5) * inv)
                    weights[xx * ksize + x] = w
                    total += w
                }
                if (total != 0.0) for (x in 0 until xmax) weights[xx * ksize + x] /= total
                bounds[2 * xx] = xmin
                bounds[2 * xx + 1] = maxOf(xmax, 0)
            }
        }

        /** The weights in 22-bit fixed point, rounded away from zero as Pillow does. */
        fun fixed(): IntArray = IntArray(weights.size) { i ->
            val k = weights[i] * (1 shl PRECISION_BITS)
            if (weights[i] < 0) (-0.5 + k).toInt() else (0.5 + k).toInt()
        }
    }

    /** Interleaved 8-bit planes: [channels] values per pixel. */
    private class Plane8(val width: Int, val height: Int, val channels: Int, val data: ByteArray)

    private fun resample(src: Plane8, width: Int, height: Int, filter: ResampleFilter, b: FloatArray): Plane8 {
        val needH = width != src.width || b[0] != 0f || b[2] != width.toFloat()
        val needV = height != src.height || b[1] != 0f || b[3] != height.toFloat()
        val hFirst = !((src.height - height) > 0 && (src.height - height) > (src.width - width) * 2)
        val vert = if ((needH && hFirst) || needV) Coeffs(src.height, b[1], b[3], height, filter) else null
        var cur = src
        if (needH && hFirst) {
            val rowFirst = vert!!.bounds[0]
            val rowLast = vert.bounds[2 * (height - 1)] + vert.bounds[2 * (height - 1) + 1]
            for (i in 0 until height) vert.bounds[2 * i] -= rowFirst
            cur = horizontal8(cur, rowFirst, rowLast - rowFirst, Coeffs(src.width, b[0], b[2], width, filter))
        }
        if (needV) cur = vertical8(cur, vert!!)
        if (needH && !hFirst) cur = horizontal8(cur, 0, cur.height, Coeffs(src.width, b[0], b[2], width, filter))
        return if (cur === src) Plane8(src.width, src.height, src.channels, src.data.copyOf()) else cur
    }

    private fun clip8(v: Int): Byte = (v shr PRECISION_BITS).coerceIn(0, 255).toByte()

    private fun horizontal8(src: Plane8, rowOffset: Int, rows: Int, c: Coeffs): Plane8 {
        val outW = c.bounds.size / 2
        val ch = src.channels
        val k = c.fixed()
        val out = ByteArray(outW * rows * ch)
        for (yy in 0 until rows) {
            val rowIn = (yy + rowOffset) * src.width * ch
            for (xx in 0 until outW) {
                val xmin = c.bounds[2 * xx]
                val n = c.bounds[2 * xx + 1]
                for (z in 0 until ch) {
                    var ss = 1 shl (PRECISION_BITS - 1)
                    for (x in 0 until n) ss += (src.data[rowIn + (x + xmin) * ch + z].toInt() and 0xFF) * k[xx * c.ksize + x]
                    out[(yy * outW + xx) * ch + z] = clip8(ss)
                }
            }
        }
        return Plane8(outW, rows, ch, out)
    }

    private fun vertical8(src: Plane8, c: Coeffs): Plane8 {
        val outH = c.bounds.size / 2
        val ch = src.channels
        val k = c.fixed()
        val rowLen = src.width * ch
        val out = ByteArray(rowLen * outH)
        for (yy in 0 until outH) {
            val ymin = c.bounds[2 * yy]
            val n = c.bounds[2 * yy + 1]
            for (i in 0 until rowLen) {
                var ss = 1 shl (PRECISION_BITS - 1)
                for (y in 0 until n) ss += (src.data[(y + ymin) * rowLen + i].toInt() and 0xFF) * k[yy * c.ksize + y]
                out[yy * rowLen + i] = clip8(ss)
            }
        }
        return Plane8(src.width, outH, ch, out)
    }

    private fun floatHorizontal(src: FloatArray, width: Int, rowOffset: Int, rows: Int, c: Coeffs): FloatArray {
        val outW = c.bounds.size / 2
        val out = FloatArray(outW * rows)
        for (yy in 0 until rows) {
            val rowIn = (yy + rowOffset) * width
            for (xx in 0 until outW) {
                val xmin = c.bounds[2 * xx]
                var ss = 0.0
                for (x in 0 until c.bounds[2 * xx + 1]) ss += src[rowIn + x + xmin] * c.weights[xx * c.ksize + x]
                out[yy * outW + xx] = ss.toFloat()
            }
        }
        return out
    }

    private fun floatVertical(src: FloatArray, width: Int, c: Coeffs): FloatArray {
        val outH = c.bounds.size / 2
        val out = FloatArray(width * outH)
        for (yy in 0 until outH) {
            val ymin = c.bounds[2 * yy]
            for (xx in 0 until width) {
                var ss = 0.0
                for (y in 0 until c.bounds[2 * yy + 1]) ss += src[(y + ymin) * width + xx] * c.weights[yy * c.ksize + y]
                out[yy * width + xx] = ss.toFloat()
            }
        }
        return out
    }
}
