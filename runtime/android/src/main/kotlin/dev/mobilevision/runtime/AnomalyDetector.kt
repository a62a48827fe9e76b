package dev.mobilevision.runtime

/**
 * Result of [AnomalyDetector.detect]: the image score (the map's maximum; the detector normalises
 * its maps so ~0.1 is the validation images' 99.5th percentile), the anomaly map stretched back to
 * the image's own size, and the decision when there is a threshold (the caller's, else the artifact's).
 */
class AnomalyResult(val score: Float, val map: FloatImage, val threshold: Double? = null,
                    val pixelThreshold: Double? = null) {
    /** score > threshold (compared in double, as Python), or null without a threshold. */
    val isAnomalous: Boolean? get() = threshold?.let { score.toDouble() > it }

    /** Per pixel (row-major, the map's size): value > the artifact's pixel threshold, or null without one. */
    val anomalousPixels: BooleanArray? get() = pixelThreshold?.let { t -> BooleanArray(map.data.size) { map.data[it] > t } }

    /** The map as a jet-coloured RGB image, [lo] blue to [hi] red (see [Heatmap]). */
    fun heatmap(lo: Double = Heatmap.DEFAULT_LO, hi: Double = Heatmap.DEFAULT_HI): RgbImage = Heatmap.colorize(map, lo, hi)
}

/** Anomaly map and score of an image, as the Python runtime's `Model.detect_anomaly`. Without a [threshold] the
 *  decision uses the F1-optimal one in the artifact's metadata (`anomaly.image`), when it carries one. */
class AnomalyDetector(val model: Model, val threshold: Double? = null) : AutoCloseable {
    private val pre = model.metadata.requireTask("anomaly").requirePreprocessing()
    private val mapSpec = model.metadata.outputs.firstOrNull { it.name == "anomaly_map" }
        ?: throw ArtifactException("${model.metadata.model} has no 'anomaly_map' output; re-export it")

    fun detect(image: RgbImage, threshold: Double? = this.threshold ?: model.metadata.anomaly?.image): AnomalyResult {
        if (threshold != null && !threshold.isFinite()) throw InputMismatchException("threshold must be a finite number, got $threshold")
        val out = model.predict(listOf(ImagePreprocessor.preprocess(image, pre)))
        val map = out.getValue("anomaly_map")
        val score = out["score"] ?: throw ArtifactException("${model.metadata.model} has no 'score' output; re-export it")
        val h = mapSpec.shape[mapSpec.shape.size - 2]
        val w = mapSpec.shape[mapSpec.shape.size - 1]
        return AnomalyResult(score[0], toImageSize(FloatImage(w, h, map), image.width, image.height), threshold,
            model.metadata.anomaly?.pixel)
    }

    override fun close() = model.close()

    companion object {
        /** A map at the model's input size -> the image's size, bilinear (the detector stretched the image). */
        fun toImageSize(map: FloatImage, width: Int, height: Int): FloatImage =
            if (map.width == width && map.height == height) map
            else Resample.resize(map, width, height, ResampleFilter.BILINEAR)
    }
}

/**
 * Anomaly map -> colours, identical in the Python runtime (runtime/tasks/anomaly.py `heatmap`):
 * v = clamp((m - lo) / (hi - lo), 0, 1) in double (NaN -> 0); jet: R = clamp(1.5 - |4v - 3|),
 * G = clamp(1.5 - |4v - 2|), B = clamp(1.5 - |4v - 1|); bytes = floor(255 c + 0.5).
 * The default range puts the validation 99.5th percentile (0.1) mid-scale.
 */
object Heatmap {
    const val DEFAULT_LO = 0.0
    const val DEFAULT_HI = 0.2
    /** Default overlay weight of the heatmap, out of 256. */
    const val DEFAULT_ALPHA = 128

    fun colorize(map: FloatImage, lo: Double = DEFAULT_LO, hi: Double = DEFAULT_HI): RgbImage {
        if (!(hi > lo) || !lo.isFinite() || !hi.isFinite()) {
            throw InputMismatchException("heatmap range needs finite lo < hi, got [$lo, $hi]")
        }
        val out = ByteArray(map.data.size * 3)
        for (i in map.data.indices) {
            val m = map.data[i].toDouble()
            val v = if (m.isNaN()) 0.0 else ((m - lo) / (hi - lo)).coerceIn(0.0, 1.0)
            out[3 * i] = channel(1.5 - Math.abs(4.0 * v - 3.0))
            out[3 * i + 1] = channel(1.5 - Math.abs(4.0 * v - 2.0))
            out[3 * i + 2] = channel(1.5 - Math.abs(4.0 * v - 1.0))
        }
        return RgbImage(map.width, map.height, out)
    }

    /** (image (256 - alpha) + heat alpha + 128) >> 8 per channel: the heatmap blended over the image. */
    fun overlay(image: RgbImage, heat: RgbImage, alpha: Int = DEFAULT_ALPHA): RgbImage {
        if (image.width != heat.width || image.height != heat.height) {
            throw InputMismatchException("overlay needs the same size: image ${image.width}x${image.height}, " +
                "heatmap ${heat.width}x${heat.height}")
        }
        if (alpha !in 0..256) throw InputMismatchException("overlay alpha is 0..256, got $alpha")
        val out = ByteArray(image.pixels.size) { i ->
            (((image.pixels[i].toInt() and 0xFF) * (256 - alpha) + (heat.pixels[i].toInt() and 0xFF) * alpha + 128) shr 8).toByte()
        }
        return RgbImage(image.width, image.height, out)
    }

    private fun channel(c: Double): Byte = Math.floor(c.coerceIn(0.0, 1.0) * 255.0 + 0.5).toInt().toByte()
}
