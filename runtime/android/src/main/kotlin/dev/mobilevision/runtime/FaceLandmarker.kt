package dev.mobilevision.runtime

import kotlin.math.ceil
import kotlin.math.floor

/** A face box (x0, y0, x1, y1) in image pixels; the pixel in column i, row j has its centre at (i, j). */
data class FaceBox(val x0: Double, val y0: Double, val x1: Double, val y1: Double) {
    init {
        if (!(x0.isFinite() && y0.isFinite() && x1.isFinite() && y1.isFinite())) {
            throw InputMismatchException("a face box is 4 finite numbers (x0, y0, x1, y1), got ($x0, $y0, $x1, $y1)")
        }
        if (!(x1 > x0 && y1 > y0)) {
            throw InputMismatchException("face box ($x0, $y0, $x1, $y1) has no area: x1 must exceed x0 and y1 must exceed y0")
        }
    }

    companion object {
        /** The whole image as a box. */
        fun fullImage(width: Int, height: Int) = FaceBox(-0.5, -0.5, width - 0.5, height - 0.5)
    }
}

/**
 * Facial landmarks in image pixels, as the Python runtime's `Model.detect_landmarks`: the box is
 * stretched to the model input (aspect ratio not kept, as in training), the model returns points in
 * input pixels (metadata `landmarks.coordinates == "input_pixels"`), and they are mapped back.
 */
class FaceLandmarker(val model: Model) : AutoCloseable {
    private val pre = model.metadata.requireTask("landmarks").requirePreprocessing()
    val points: Int = model.metadata.landmarks?.points
        ?: throw ArtifactException("${model.metadata.model} has no landmark description in its metadata; re-export it")

    init {
        val coords = model.metadata.landmarks!!.coordinates
        if (coords != "input_pixels") throw ArtifactException("landmark coordinates '$coords' are not supported (input_pixels)")
    }

    /** (x, y) pairs, [points] of them, interleaved: x0, y0, x1, y1, ... */
    fun detect(image: RgbImage, box: FaceBox = FaceBox.fullImage(image.width, image.height)): FloatArray =
        detectDouble(image, box).let { d -> FloatArray(d.size) { d[it].toFloat() } }

    /** [detect] in double precision (what the golden tests compare). */
    fun detectDouble(image: RgbImage, box: FaceBox = FaceBox.fullImage(image.width, image.height)): DoubleArray {
        val crop = cropImage(image, box, pre.width, pre.height)
        val out = model.predict(listOf(ImagePreprocessor.normalize(crop, pre))).values.first()
        if (out.size != 2 * points) throw ArtifactException("the model returned ${out.size} values, expected ${2 * points}")
        return toImage(out, box, pre.width, pre.height)
    }

    override fun close() = model.close()

    companion object {
        /**
         * [box] of [image] resized (anisotropically, Pillow's antialiased bilinear) to [width] x [height];
         * borders inside the image are replicated for the filter, output pixels whose centre falls
         * outside the image are black. The Python runtime's `crop_image`.
         */
        fun cropImage(image: RgbImage, box: FaceBox, width: Int, height: Int): RgbImage {
            val w = image.width
            val h = image.height
            val bx0 = box.x0 + 0.5
            val by0 = box.y0 + 0.5
            val bx1 = box.x1 + 0.5
            val by1 = box.y1 + 0.5
            val pad = ceil(maxOf((bx1 - bx0) / width, (by1 - by0) / height, 1.0)).toInt() + 1
            val wx0 = floor(bx0).toInt() - pad
            val wy0 = floor(by0).toInt() - pad
            val wx1 = ceil(bx1).toInt() + pad
            val wy1 = ceil(by1).toInt() + pad
            val sx0 = maxOf(wx0, 0)
            val sy0 = maxOf(wy0, 0)
            val sx1 = minOf(wx1, w)
            val sy1 = minOf(wy1, h)
            if (sx1 <= sx0 || sy1 <= sy0) return RgbImage(width, height, ByteArray(width * height * 3))
            // the window, edge-replicated where it leaves the image
            val ww = wx1 - wx0
            val wh = wy1 - wy0
            val window = ByteArray(ww * wh * 3)
            for (y in 0 until wh) {
                val sy = (wy0 + y).coerceIn(sy0, sy1 - 1)
                for (x in 0 until ww) {
                    val sx = (wx0 + x).coerceIn(sx0, sx1 - 1)
                    System.arraycopy(image.pixels, (sy * w + sx) * 3, window, (y * ww + x) * 3, 3)
                }
            }
            val out = Resample.resize(RgbImage(ww, wh, window), width, height, ResampleFilter.BILINEAR,
                doubleArrayOf(bx0 - wx0, by0 - wy0, bx1 - wx0, by1 - wy0)).pixels
            for (y in 0 until height) {
                val cy = (y + 0.5) * (box.y1 - box.y0) / height + box.y0
                val rowInside = cy >= -0.5 && cy < h - 0.5
                for (x in 0 until width) {
                    val cx = (x + 0.5) * (box.x1 - box.x0) / width + box.x0
                    if (!rowInside || !(cx >= -0.5 && cx < w - 0.5)) out.fill(0, (y * width + x) * 3, (y * width + x) * 3 + 3)
                }
            }
            return RgbImage(width, height, out)
        }

        /** Landmarks (x, y interleaved) in input pixels -> image pixels, the inverse of the crop. */
        fun toImage(points: FloatArray, box: FaceBox, width: Int, height: Int): DoubleArray {
            val sx = (box.x1 - box.x0) / width
            val sy = (box.y1 - box.y0) / height
            return DoubleArray(points.size) { i ->
                if (i % 2 == 0) (points[i] + 0.5) * sx + box.x0 else (points[i] + 0.5) * sy + box.y0
            }
        }
    }
}
