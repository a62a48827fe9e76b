package dev.mobilevision.runtime

/** The 2x2 colour-filter layouts; [sites] gives the (row, col) of each packed channel (B, G_R, R, G_B). */
enum class BayerPattern(vararg val sites: Pair<Int, Int>) {
    RGGB(1 to 1, 0 to 1, 0 to 0, 1 to 0),
    BGGR(0 to 0, 1 to 0, 1 to 1, 0 to 1),
    GRBG(1 to 0, 0 to 0, 0 to 1, 1 to 1),
    GBRG(0 to 1, 1 to 1, 1 to 0, 0 to 0);

    companion object {
        fun of(name: String): BayerPattern = entries.firstOrNull { it.name == name.uppercase() }
            ?: throw InputMismatchException("unknown Bayer pattern '$name': use one of ${entries.joinToString()}")
    }
}

/** A sensor mosaic: [height] rows of [width] sensor values (integers as floats), one colour per site. */
class BayerMosaic(val width: Int, val height: Int, val values: FloatArray, val pattern: BayerPattern = BayerPattern.RGGB) {
    init {
        if (width < 2 || height < 2 || values.size != width * height) {
            throw InputMismatchException("a ${width}x$height mosaic needs ${width * height} values (at least 2x2), got ${values.size}")
        }
    }

    companion object {
        /** From 16-bit sensor values as Android's `Image` / DNG readers give them (unsigned). */
        fun fromShorts(width: Int, height: Int, values: ShortArray, pattern: BayerPattern = BayerPattern.RGGB) =
            BayerMosaic(width, height, FloatArray(values.size) { (values[it].toInt() and 0xFFFF).toFloat() }, pattern)
    }
}

/** RGB output of the ISP: (height, width, 3) float32 in [0, 1] (values may overshoot slightly), interleaved. */
class IspResult(val width: Int, val height: Int, val rgb: FloatArray, val tiles: Int) {
    /** Clamped to [0, 1] then (255 c + 0.5) truncated, as the Python runtime's `to_uint8`. */
    fun toRgbImage(): RgbImage = RgbImage(width, height, ByteArray(rgb.size) { (rgb[it].coerceIn(0f, 1f) * 255f + 0.5f).toInt().toByte() })
}

/**
 * RAW -> RGB through an ISP model, as the Python runtime's `Model.process_raw`: drop a last odd
 * row/column, pack the mosaic into half-resolution (B, G_R, R, G_B) planes, normalise per channel
 * (x - black_c) / (white - black_c) (clipped at 0 when asked), then run tiles of the model's input
 * size with a 3-packed-pixel halo, which is exact for EfficientISP / RobustISP.
 */
class RawIsp(val model: Model) : AutoCloseable {
    private val raw = model.metadata.requireTask("isp").raw
        ?: throw ArtifactException("${model.metadata.model} has no RAW description in its metadata; re-export it")
    private val tileH: Int
    private val tileW: Int

    init {
        val shape = model.metadata.inputs.first().shape
        if (shape.size != 4 || shape[1] != 4) throw ArtifactException("an ISP model takes (1, 4, h, w) packed RAW, got $shape")
        tileH = shape[2]
        tileW = shape[3]
    }

    fun process(mosaic: BayerMosaic, blackLevel: List<Double>? = null, whiteLevel: Double? = null, clip: Boolean? = null): IspResult {
        val packed = normalize(pack(mosaic), blackLevel ?: raw.blackLevel, whiteLevel ?: raw.whiteLevel, clip ?: raw.clip)
        val h = mosaic.height / 2
        val w = mosaic.width / 2
        if (h < tileH || w < tileW) {
            throw InputMismatchException("the mosaic packs to ${w}x$h, smaller than the model's ${tileW}x$tileH tile: " +
                "export the model with a smaller --imgsz")
        }
        var tiles = 0
        val chw = runTiled(packed, h, w, tileH, tileW) { tile -> tiles++; model.predict(listOf(tile)).values.first() }
        val outH = 2 * h
        val outW = 2 * w
        val hwc = FloatArray(chw.size)
        for (c in 0 until 3) for (i in 0 until outH * outW) hwc[3 * i + c] = chw[c * outH * outW + i]
        return IspResult(outW, outH, hwc, tiles)
    }

    override fun close() = model.close()

    companion object {
        /** Packed-pixel halo: EfficientISP / RobustISP receptive-field radius. */
        const val HALO = 3

        /** (H, W) mosaic -> (4, H/2, W/2) planes in (B, G_R, R, G_B) order; a last odd row/column is dropped. */
        fun pack(m: BayerMosaic): FloatArray {
            val h = m.height / 2
            val w = m.width / 2
            val out = FloatArray(4 * h * w)
            for ((c, site) in m.pattern.sites.withIndex()) {
                for (y in 0 until h) for (x in 0 until w) {
                    out[(c * h + y) * w + x] = m.values[(2 * y + site.first) * m.width + 2 * x + site.second]
                }
            }
            return out
        }

        /** float32 (x - black_c) / (white - black_c) per packed channel; [black] has 1 or 4 values. */
        fun normalize(packed: FloatArray, black: List<Double>, white: Double, clip: Boolean): FloatArray {
            if (black.size != 1 && black.size != 4) {
                throw InputMismatchException("black level is one value or four (B, G_R, R, G_B), got ${black.size}")
            }
            val plane = packed.size / 4
            val b = FloatArray(4) { black[if (black.size == 1) 0 else it].toFloat() }
            val span = FloatArray(4) { white.toFloat() - b[it] }
            if (span.any { it <= 0f }) {
                throw InputMismatchException("white level $white must exceed every black level $black")
            }
            val out = FloatArray(packed.size)
            for (c in 0 until 4) for (i in c * plane until (c + 1) * plane) {
                val v = (packed[i] - b[c]) / span[c]
                out[i] = if (clip) maxOf(v, 0f) else v
            }
            return out
        }

        /** (window start, keep start, keep end) along one axis; windows lie inside [0, length). */
        fun windows(length: Int, tile: Int, halo: Int = HALO): List<Triple<Int, Int, Int>> {
            if (length <= tile) return listOf(Triple(0, 0, length))
            val step = tile - 2 * halo
            if (step <= 0) throw InputMismatchException("tile $tile is too small for a $halo-pixel halo on both sides")
            val out = ArrayList<Triple<Int, Int, Int>>()
            var p = 0
            while (p < length) {
                val start = minOf(maxOf(p - halo, 0), length - tile)
                val end = if (start == length - tile) length else minOf(if (p != 0) p + step else tile - halo, length)
                out.add(Triple(start, p, end))
                p = end
            }
            return out
        }

        /**
         * [run] ((1, 4, th, tw) -> (1, 3, 2th, 2tw)) over the (4, h, w) planes in tiles with a halo of real
         * neighbours on interior borders; returns (3, 2h, 2w). The Python runtime's `run_tiled`.
         */
        fun runTiled(packed: FloatArray, h: Int, w: Int, th: Int, tw: Int, run: (FloatArray) -> FloatArray): FloatArray {
            val outW = 2 * w
            val outH = 2 * h
            val out = FloatArray(3 * outH * outW)
            for ((r0, keepR0, keepR1) in windows(h, th)) for ((c0, keepC0, keepC1) in windows(w, tw)) {
                val tile = FloatArray(4 * th * tw)
                for (c in 0 until 4) for (y in 0 until th) {
                    System.arraycopy(packed, (c * h + r0 + y) * w + c0, tile, (c * th + y) * tw, tw)
                }
                val y = run(tile)
                if (y.size != 3 * 4 * th * tw) {
                    throw ArtifactException("the ISP model returned ${y.size} values for a ${tw}x$th tile, expected ${12 * th * tw}")
                }
                for (c in 0 until 3) for (yy in 2 * keepR0 until 2 * keepR1) {
                    System.arraycopy(y, (c * 2 * th + yy - 2 * r0) * 2 * tw + 2 * (keepC0 - c0),
                        out, (c * outH + yy) * outW + 2 * keepC0, 2 * (keepC1 - keepC0))
                }
            }
            return out
        }
    }
}
