package dev.mobilevision.runtime

/**
 * The metadata's image preprocessing, exactly as the Python runtime does it
 * (runtime/tasks/classify.py `preprocess`): resize (Pillow-compatible, see [Resample]) with the
 * shorter side to `resize` then centre-crop `crop`, or stretch straight to `crop`; then per
 * channel (pixel * scale - mean) / std in float32, laid out NCHW or NHWC, batch 1.
 */
object ImagePreprocessor {
    /** The resized and cropped image the model sees (crop H x W). */
    fun resized(image: RgbImage, pre: Preprocessing): RgbImage {
        val filter = ResampleFilter.of(pre.interpolation)
        val cropH = pre.height
        val cropW = pre.width
        return when (pre.resizeMode) {
            "stretch" -> Resample.resize(image, cropW, cropH, filter)
            "shorter_side" -> {
                val s = pre.resize.toDouble() / minOf(image.width, image.height)
                // Python's round(): halves to even, as Math.rint
                val nw = maxOf(cropW, Math.rint(image.width * s).toInt())
                val nh = maxOf(cropH, Math.rint(image.height * s).toInt())
                // the centre crop of the resized image, computed without the pixels it drops
                Resample.resizeCrop(image, nw, nh, filter, (nw - cropW) / 2, (nh - cropH) / 2, cropW, cropH)
            }
            else -> throw ArtifactException("unknown resize_mode '${pre.resizeMode}' in the metadata; upgrade the runtime library")
        }
    }

    /** (pixel * scale - mean) / std of an image already at the model's size, float32, batch 1. */
    fun normalize(image: RgbImage, pre: Preprocessing): FloatArray {
        if (pre.color != "RGB") throw ArtifactException("colour order '${pre.color}' is not supported (RGB only)")
        if (pre.normalization != "app") {   // Core ML image inputs; the .tflite files this library runs take floats
            throw ArtifactException("this model takes uint8 pixels and normalises them itself (a Core ML image input); " +
                "this runtime feeds float tensors: use the model's .tflite export")
        }
        val scale = pre.scale.toFloat()
        val mean = FloatArray(3) { pre.mean[it].toFloat() }
        val std = FloatArray(3) { pre.std[it].toFloat() }
        val hw = image.width * image.height
        val out = FloatArray(hw * 3)
        val nchw = when (pre.layout) {
            "NCHW" -> true
            "NHWC" -> false
            else -> throw ArtifactException("unknown layout '${pre.layout}' in the metadata (NCHW or NHWC)")
        }
        for (i in 0 until hw) for (c in 0 until 3) {
            val v = ((image.pixels[3 * i + c].toInt() and 0xFF).toFloat() * scale - mean[c]) / std[c]
            out[if (nchw) c * hw + i else 3 * i + c] = v
        }
        return out
    }

    /** [resized] then [normalize]: the model input for [image]. */
    fun preprocess(image: RgbImage, pre: Preprocessing): FloatArray = normalize(resized(image, pre), pre)
}
