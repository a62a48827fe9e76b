package dev.mobilevision.runtime.android

import android.content.Context
import android.graphics.Bitmap
import dev.mobilevision.runtime.Accelerator
import dev.mobilevision.runtime.ArtifactException
import dev.mobilevision.runtime.Model
import dev.mobilevision.runtime.ModelMetadata
import dev.mobilevision.runtime.RgbImage
import dev.mobilevision.runtime.TfliteMetadata
import java.io.FileInputStream
import java.io.FileNotFoundException
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.channels.FileChannel

/**
 * Opens a .tflite from the APK's assets: its mobilevision metadata (embedded, else the
 * "<asset>.json" sidecar asset), then the first of [accelerators] LiteRT accepts. Call it off the
 * main thread: compiling a model takes from milliseconds (CPU) to seconds (GPU, NPU).
 */
fun openAssetModel(context: Context, assetPath: String, accelerators: List<Accelerator> = Model.DEFAULT_ACCELERATORS,
                   threads: Int = 0): Model =
    Model.open(assetMetadata(context, assetPath), LiteRt.factory(context, assetPath), accelerators, threads)

/** The mobilevision metadata of a .tflite asset (what [dev.mobilevision.runtime.Benchmark.run] takes). */
fun assetMetadata(context: Context, assetPath: String): ModelMetadata {
    val sidecar = try {
        context.assets.open("$assetPath.json").use { String(it.readBytes(), Charsets.UTF_8) }
    } catch (e: FileNotFoundException) {
        null
    }
    return TfliteMetadata.read(assetBytes(context, assetPath), sidecarJson = sidecar)
}

/** The asset's bytes: memory-mapped when stored uncompressed (noCompress "tflite"), else read into memory. */
private fun assetBytes(context: Context, assetPath: String): ByteBuffer {
    try {
        context.assets.openFd(assetPath).use { fd ->
            FileInputStream(fd.fileDescriptor).channel.use { channel ->
                return channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }
    } catch (e: IOException) {
        // compressed in the APK (openFd refuses those) or missing: fall through to a plain read
    }
    return try {
        ByteBuffer.wrap(context.assets.open(assetPath).use { it.readBytes() })
    } catch (e: IOException) {
        throw ArtifactException("asset '$assetPath' is not in the APK (${e.message}); export the models with " +
            "android_demo/export_models.sh and rebuild the app", e)
    }
}

/** The bitmap's pixels as an 8-bit RGB image (alpha dropped); hardware bitmaps are copied to software first. */
fun Bitmap.toRgbImage(): RgbImage {
    val src = if (config == Bitmap.Config.HARDWARE) copy(Bitmap.Config.ARGB_8888, false) else this
    val argb = IntArray(src.width * src.height)
    src.getPixels(argb, 0, src.width, 0, 0, src.width, src.height)
    return RgbImage.fromArgb(src.width, src.height, argb)
}

/** A mutable ARGB_8888 bitmap of the image (alpha 255), ready to draw on or show. */
fun RgbImage.toBitmap(): Bitmap =
    Bitmap.createBitmap(width, height, Bitmap.Config.ARGB_8888).apply { setPixels(toArgb(), 0, width, 0, 0, width, height) }
