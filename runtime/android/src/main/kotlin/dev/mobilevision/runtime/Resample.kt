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
    fun resize(src: RgbImage, width: Int, height: Int, filter: ResampleFilter, box: DoubleArray? = null): RgbImage =
        resizeCrop(src, width, height, filter, 0, 0, width, height, box)

    /**
     * The [cropW] x [cropH] window at ([left], [top]) of [resize]`(src, width, height, filter, box)`, computed
     * alone: the same pixels as resizing then cropping, without the pixels the crop throws away.
     */
    fun resizeCrop(src: RgbImage, width: Int, height: Int, filter: ResampleFilter, left: Int, top: Int,
                   cropW: Int, cropH: Int, box: DoubleArray? = null): RgbImage {
        val b = checkBox(src.width, src.height, width, height, box)
        if (left < 0 || top < 0 || cropW < 1 || cropH < 1 || left + cropW > width || top + cropH > height) {
            throw InputMismatchException("crop ${cropW}x$cropH at ($left, $top) is not inside the ${width}x$height resize")
        }
        if (isCrop(b, src.width, src.height, width, height)) {
            return crop(src, b[0].toInt() + left, b[1].toInt() + top, cropW, cropH)
        }
        val w = src.width
        val h = src.height
        val needH = width != w || b[0] != 0f || b[2] != width.toFloat()
        val needV = height != h || b[1] != 0f || b[3] != height.toFloat()
        // Pillow's pass order (it changes the intermediate rounding): horizontal first unless the
        // height shrinks more than twice as much as the width
        val hFirst = !((h - height) > 0 && (h - height) > (w - width) * 2)
        val hc = if (needH) Coeffs(w, b[0], b[2], width, filter) else null
        val vc = if (needV) Coeffs(h, b[1], b[3], height, filter) else null
        val px = src.pixels
        val out = when {
            hc != null && vc != null && hFirst -> {
                val (r0, r1) = vc.span(top, cropH)
                val tmp = horizontal8(px, w, r0, r1 - r0, hc, left, cropW, 0)
                vertical8(tmp, cropW, r0, vc, top, cropH, 0, cropW)
            }
            hc != null && vc != null -> {
                val (c0, c1) = hc.span(left, cropW)
                val tmp = vertical8(px, w, 0, vc, top, cropH, c0, c1 - c0)
                horizontal8(tmp, c1 - c0, 0, cropH, hc, left, cropW, c0)
            }
            hc != null -> horizontal8(px, w, top, cropH, hc, left, cropW, 0)
            else -> vertical8(px, w, 0, vc!!, top, cropH, left, cropW)
        }
        return RgbImage(cropW, cropH, out)
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

        /** Source indices [first, last) that output indices [start, start + count) read. */
        fun span(start: Int, count: Int): Pair<Int, Int> {
            var lo = Int.MAX_VALUE
            var hi = 0
            for (i in start until start + count) {
                lo = minOf(lo, bounds[2 * i])
                hi = maxOf(hi, bounds[2 * i] + bounds[2 * i + 1])
            }
            return lo to hi
        }

        /** The weights in 22-bit fixed point, rounded away from zero as Pillow does. */
        fun fixed(): IntArray = IntArray(weights.size) { i ->
            val k = weights[i] * (1 shl PRECISION_BITS)
            if (weights[i] < 0) (-0.5 + k).toInt() else (0.5 + k).toInt()
        }
    }

    private fun clip8(v: Int): Byte = (v shr PRECISION_BITS).coerceIn(0, 255).toByte()

    /**
     * Horizontal pass over RGB rows [row0, row0 + rows) of [src] ([srcW] pixels wide), output columns
     * [col0, col0 + cols) of [c]; source column indices are shifted by -[shift] (the input starts there).
     */
    private fun horizontal8(src: ByteArray, srcW: Int, row0: Int, rows: Int, c: Coeffs, col0: Int, cols: Int, shift: Int): ByteArray {
        val k = c.fixed()
        val out = ByteArray(cols * rows * 3)
        val half = 1 shl (PRECISION_BITS - 1)
        for (yy in 0 until rows) {
            val rowIn = (row0 + yy) * srcW
            for (j in 0 until cols) {
                val xx = col0 + j
                val first = c.bounds[2 * xx] - shift
                val n = c.bounds[2 * xx + 1]
                val kb = xx * c.ksize
                var s0 = half
                var s1 = half
                var s2 = half
                var p = (rowIn + first) * 3
                for (t in 0 until n) {
                    val w = k[kb + t]
                    s0 += (src[p].toInt() and 0xFF) * w
                    s1 += (src[p + 1].toInt() and 0xFF) * w
                    s2 += (src[p + 2].toInt() and 0xFF) * w
                    p += 3
                }
                val o = (yy * cols + j) * 3
                out[o] = clip8(s0)
                out[o + 1] = clip8(s1)
                out[o + 2] = clip8(s2)
            }
        }
        return out
    }

    /**
     * Vertical pass: output rows [row0, row0 + rows) of [c] over source columns [col0, col0 + cols) of
     * [src] ([srcW] pixels wide, whose first row is source row [srcRow0]). Accumulates row by row
     * (integer sums, so the order does not change the result).
     */
    private fun vertical8(src: ByteArray, srcW: Int, srcRow0: Int, c: Coeffs, row0: Int, rows: Int, col0: Int, cols: Int): ByteArray {
        val k = c.fixed()
        val len = cols * 3
        val out = ByteArray(len * rows)
        val acc = IntArray(len)
        for (i in 0 until rows) {
            val yy = row0 + i
            acc.fill(1 shl (PRECISION_BITS - 1))
            val first = c.bounds[2 * yy] - srcRow0
            for (t in 0 until c.bounds[2 * yy + 1]) {
                val w = k[yy * c.ksize + t]
                val base = ((first + t) * srcW + col0) * 3
                for (e in 0 until len) acc[e] += (src[base + e].toInt() and 0xFF) * w
            }
            for (e in 0 until len) out[i * len + e] = clip8(acc[e])
        }
        return out
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
