package dev.mobilevision.demo

// Plain Kotlin (no Android imports): one opened model per task, run on an image or the RAW sample,
// with what the app draws and prints.

import dev.mobilevision.runtime.AnomalyDetector
import dev.mobilevision.runtime.FaceBox
import dev.mobilevision.runtime.FaceLandmarker
import dev.mobilevision.runtime.Heatmap
import dev.mobilevision.runtime.ImageClassifier
import dev.mobilevision.runtime.InputMismatchException
import dev.mobilevision.runtime.Model
import dev.mobilevision.runtime.RawIsp
import dev.mobilevision.runtime.RgbImage
import java.util.Locale
import kotlin.math.roundToInt

/** What the app shows for one input: the picture (overlays drawn in) and lines of text. */
class DemoResult(val image: RgbImage, val lines: List<String>)

/**
 * [model] opened for [entry]'s task. Not thread-safe: the app runs every session call on one
 * inference thread.
 */
class TaskSession(val entry: DemoModel, val model: Model) : AutoCloseable {
    private val classifier = if (entry.task == DemoTask.CLASSIFY) ImageClassifier(model) else null
    private val detector = if (entry.task == DemoTask.ANOMALY) AnomalyDetector(model) else null
    private val landmarker = if (entry.task == DemoTask.LANDMARKS) FaceLandmarker(model) else null
    private val isp = if (entry.task == DemoTask.ISP) RawIsp(model) else null

    /** Model, weights and where it runs (fallbacks included), for the top of the screen. */
    fun describe(): List<String> {
        val md = model.metadata
        val weights = md.weights?.let { "weights ${it.substringAfterLast('/')}" }
            ?: "RANDOM-INIT weights (exported without --weights): outputs are meaningless, this only shows the pipeline"
        return listOf("${md.model} (${md.task}, ${md.precision}), $weights", "running on: ${model.acceleratorReport}")
    }

    /** Runs an image task ([DemoTask.takesImages]) on [image]. */
    fun run(image: RgbImage): DemoResult {
        val t0 = System.nanoTime()
        val result = when (entry.task) {
            DemoTask.CLASSIFY -> classify(image)
            DemoTask.ANOMALY -> anomaly(image)
            DemoTask.LANDMARKS -> landmarks(image)
            DemoTask.ISP -> throw InputMismatchException("the ISP model takes a RAW mosaic, not an RGB image: run it on the RAW sample")
        }
        return DemoResult(result.image, result.lines + timing(t0))
    }

    /** Runs the ISP model on the bundled RAW sample, with the levels the sample was made with. */
    fun runRaw(sample: SampleMosaic): DemoResult {
        val isp = isp ?: throw InputMismatchException("${entry.model} is a '${entry.task.key}' model; RAW input needs the ISP task")
        val t0 = System.nanoTime()
        val m = sample.mosaic
        val out = isp.process(m, sample.blackLevel, sample.whiteLevel)
        return DemoResult(out.toRgbImage(), listOf(
            "input: the bundled ${m.width}x${m.height} ${m.pattern} mosaic, ${sample.description}",
            "CameraX gives this demo no RAW frames (that takes Camera2 RAW_SENSOR), so the ISP runs on this sample",
            "black ${sample.blackLevel.joinToString("/") { fmt(it, 0) }}, white ${fmt(sample.whiteLevel, 0)}, " +
                "${out.tiles} model tile(s) -> ${out.width}x${out.height} RGB",
            timing(t0)))
    }

    override fun close() = model.close()

    private fun classify(image: RgbImage): DemoResult {
        val top = classifier!!.classify(image, TOP_K)
        return DemoResult(image, top.mapIndexed { i, c -> "${i + 1}. ${c.label}  ${fmt(100 * c.score, 1)}%" })
    }

    private fun anomaly(image: RgbImage): DemoResult {
        val r = detector!!.detect(image)
        val t = r.threshold
        val decision = if (t == null) {
            "score ${fmt(r.score.toDouble(), 4)}: no decision, the artifact carries no threshold (a detector trained " +
                "with mobilevision carries its F1-optimal one)"
        } else {
            "score ${fmt(r.score.toDouble(), 4)} vs threshold ${fmt(t, 4)} (F1-optimal, from the artifact): " +
                if (r.isAnomalous == true) "ANOMALOUS" else "normal"
        }
        return DemoResult(Heatmap.overlay(image, r.heatmap()), listOf(decision,
            "heatmap blue ${fmt(Heatmap.DEFAULT_LO, 2)} -> red ${fmt(Heatmap.DEFAULT_HI, 2)} (0.1: the validation " +
                "99.5th percentile the detector normalises to)"))
    }

    private fun landmarks(image: RgbImage): DemoResult {
        val box = centredSquare(image.width, image.height)
        val points = landmarker!!.detect(image, box)
        val out = image.pixels.copyOf()
        val radius = maxOf(2, minOf(image.width, image.height) / 160)
        Draw.rect(out, image.width, image.height, box, Draw.YELLOW, maxOf(1, radius / 2))
        for (i in 0 until points.size / 2) {
            Draw.dot(out, image.width, image.height, points[2 * i], points[2 * i + 1], radius, Draw.GREEN)
        }
        return DemoResult(RgbImage(image.width, image.height, out), listOf(
            "${points.size / 2} landmarks inside the yellow box",
            "face box: the centred square of the frame (this demo has no face detector): put the face in it"))
    }

    private fun timing(t0: Long) = "pre-processing + inference + post-processing ${fmt((System.nanoTime() - t0) / 1e6, 1)} ms"

    companion object {
        const val TOP_K = 5

        /** The largest centred square of a width x height image, in [FaceBox] coordinates (pixel centres at integers). */
        fun centredSquare(width: Int, height: Int): FaceBox {
            val side = minOf(width, height)
            val x0 = (width - side) / 2 - 0.5
            val y0 = (height - side) / 2 - 0.5
            return FaceBox(x0, y0, x0 + side, y0 + side)
        }

        fun fmt(v: Double, decimals: Int): String = String.format(Locale.ROOT, "%.${decimals}f", v)
    }
}

/** Minimal drawing into interleaved RGB bytes (what the landmark overlay needs). */
object Draw {
    val GREEN = intArrayOf(0, 255, 64)
    val YELLOW = intArrayOf(255, 220, 0)

    /** A filled disc of [radius] pixels centred on (x, y) (pixel centres at integers), clipped to the image. */
    fun dot(rgb: ByteArray, width: Int, height: Int, x: Float, y: Float, radius: Int, color: IntArray) {
        if (!x.isFinite() || !y.isFinite()) return
        val cx = x.roundToInt()
        val cy = y.roundToInt()
        for (py in maxOf(cy - radius, 0)..minOf(cy + radius, height - 1)) {
            for (px in maxOf(cx - radius, 0)..minOf(cx + radius, width - 1)) {
                val dx = px - cx
                val dy = py - cy
                if (dx * dx + dy * dy <= radius * radius) put(rgb, (py * width + px) * 3, color)
            }
        }
    }

    /** The outline of [box] ([thickness] pixels inwards), clipped to the image. */
    fun rect(rgb: ByteArray, width: Int, height: Int, box: FaceBox, color: IntArray, thickness: Int) {
        val x0 = maxOf(Math.ceil(box.x0).toInt(), 0)
        val y0 = maxOf(Math.ceil(box.y0).toInt(), 0)
        val x1 = minOf(Math.floor(box.x1).toInt(), width - 1)
        val y1 = minOf(Math.floor(box.y1).toInt(), height - 1)
        if (x1 < x0 || y1 < y0) return
        for (y in y0..y1) for (x in x0..x1) {
            val edge = x - x0 < thickness || x1 - x < thickness || y - y0 < thickness || y1 - y < thickness
            if (edge) put(rgb, (y * width + x) * 3, color)
        }
    }

    private fun put(rgb: ByteArray, at: Int, color: IntArray) {
        rgb[at] = color[0].toByte()
        rgb[at + 1] = color[1].toByte()
        rgb[at + 2] = color[2].toByte()
    }
}
