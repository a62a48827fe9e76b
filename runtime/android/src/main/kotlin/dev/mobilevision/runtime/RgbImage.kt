package dev.mobilevision.runtime

/**
 * An 8-bit RGB image, rows top to bottom, pixels interleaved R, G, B (what the Python runtime
 * calls an uint8 HWC RGB array). Android's `Bitmap.getPixels` ARGB ints convert with [fromArgb].
 */
class RgbImage(val width: Int, val height: Int, val pixels: ByteArray) {
    init {
        if (width <= 0 || height <= 0) throw InputMismatchException("an image needs a positive size, got ${width}x$height")
        if (pixels.size != width * height * 3) {
            throw InputMismatchException("a ${width}x$height RGB image needs ${width * height * 3} bytes, got ${pixels.size}")
        }
    }

    /** Channel [c] (0 = R) of the pixel in column [x], row [y], 0..255. */
    operator fun get(x: Int, y: Int, c: Int): Int = pixels[(y * width + x) * 3 + c].toInt() and 0xFF

    /** Packed 0xAARRGGBB ints (alpha 255), as `Bitmap.setPixels` takes them. */
    fun toArgb(): IntArray = IntArray(width * height) { i ->
        val r = pixels[3 * i].toInt() and 0xFF
        val g = pixels[3 * i + 1].toInt() and 0xFF
        val b = pixels[3 * i + 2].toInt() and 0xFF
        (0xFF shl 24) or (r shl 16) or (g shl 8) or b
    }

    companion object {
        /** From packed 0xAARRGGBB ints (`Bitmap.getPixels`); alpha is dropped, as the Python runtime does. */
        fun fromArgb(width: Int, height: Int, argb: IntArray): RgbImage {
            if (argb.size != width * height) {
                throw InputMismatchException("a ${width}x$height image needs ${width * height} ARGB ints, got ${argb.size}")
            }
            val out = ByteArray(width * height * 3)
            for (i in argb.indices) {
                val p = argb[i]
                out[3 * i] = (p shr 16).toByte()
                out[3 * i + 1] = (p shr 8).toByte()
                out[3 * i + 2] = p.toByte()
            }
            return RgbImage(width, height, out)
        }
    }
}
