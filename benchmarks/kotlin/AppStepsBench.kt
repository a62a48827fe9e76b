// The app-side steps of the Kotlin runtime, timed on the JVM: what a camera frame costs before and
// after the model. Run by benchmarks/kotlin_app_steps.py (compiled against runtime/android's core).
// Prints one JSON object per step: {"step", "ms": [timed runs]}.
import dev.mobilevision.runtime.AnomalyDetector
import dev.mobilevision.runtime.BayerMosaic
import dev.mobilevision.runtime.FaceBox
import dev.mobilevision.runtime.FaceLandmarker
import dev.mobilevision.runtime.FloatImage
import dev.mobilevision.runtime.Heatmap
import dev.mobilevision.runtime.ImagePreprocessor
import dev.mobilevision.runtime.Preprocessing
import dev.mobilevision.runtime.RawIsp
import dev.mobilevision.runtime.RgbImage
import java.io.File

private fun time(step: String, warmup: Int, runs: Int, body: () -> Any) {
    repeat(warmup) { body() }
    val ms = DoubleArray(runs) {
        val t = System.nanoTime()
        body()
        (System.nanoTime() - t) / 1e6
    }
    println("{\"step\": \"$step\", \"ms\": [${ms.joinToString(", ")}]}")
}

fun main(args: Array<String>) {
    val dir = File(args[0])
    val warmup = args[1].toInt()
    val runs = args[2].toInt()
    val frame = RgbImage(640, 480, File(dir, "frame.u8").readBytes())
    val map = FloatImage(256, 256, java.nio.ByteBuffer.wrap(File(dir, "map.f32").readBytes())
        .order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().let { b -> FloatArray(b.remaining()).also { b.get(it) } })
    val mosaic = java.nio.ByteBuffer.wrap(File(dir, "mosaic.u16").readBytes()).order(java.nio.ByteOrder.LITTLE_ENDIAN)
        .asShortBuffer().let { b -> ShortArray(b.remaining()).also { b.get(it) } }
    val classify = Preprocessing(resize = 256, crop = listOf(224, 224), interpolation = "bicubic")
    val anomaly = Preprocessing(resize = 256, crop = listOf(256, 256), interpolation = "bilinear",
        mean = listOf(0.0, 0.0, 0.0), std = listOf(1.0, 1.0, 1.0), resizeMode = "stretch")
    val landmarks = Preprocessing(resize = 224, crop = listOf(224, 224), interpolation = "bilinear",
        mean = listOf(0.0, 0.0, 0.0), std = listOf(1.0, 1.0, 1.0), resizeMode = "stretch")
    val box = FaceBox(200.0, 100.0, 440.0, 380.0)
    time("classify: 640x480 -> 224 (bicubic, shorter side + crop, normalise)", warmup, runs) {
        ImagePreprocessor.preprocess(frame, classify)
    }
    time("anomaly: 640x480 -> 256 (bilinear stretch, normalise)", warmup, runs) { ImagePreprocessor.preprocess(frame, anomaly) }
    time("anomaly: 256 map -> 640x480 + heatmap + overlay", warmup, runs) {
        val m = AnomalyDetector.toImageSize(map, 640, 480)
        Heatmap.overlay(frame, Heatmap.colorize(m))
    }
    time("landmarks: 240x280 face box -> 224 crop, normalise", warmup, runs) {
        ImagePreprocessor.normalize(FaceLandmarker.cropImage(frame, box, 224, 224), landmarks)
    }
    time("isp: 1280x960 mosaic -> packed, normalised", warmup, runs) {
        RawIsp.normalize(RawIsp.pack(BayerMosaic.fromShorts(1280, 960, mosaic)), listOf(64.0), 1023.0, false)
    }
}
