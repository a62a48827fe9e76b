package dev.mobilevision.runtime.android

import android.content.Context
import android.graphics.Bitmap
import dev.mobilevision.runtime.Accelerator
import dev.mobilevision.runtime.ArtifactException
import dev.mobilevision.runtime.Model
import dev.mobilevision.runtime.ModelFormat
import dev.mobilevision.runtime.ModelMetadata
import dev.mobilevision.runtime.RgbImage
import dev.mobilevision.runtime.RunnerFactory
import java.io.File
import java.io.FileInputStream
import java.io.FileNotFoundException
import java.io.IOException
import java.nio.ByteBuffer
import java.nio.channels.FileChannel

/**
 * Opens a model from the APK's assets, by its suffix: a .tflite on LiteRT (its mobilevision metadata
 * embedded, else the "<asset>.json" sidecar asset), a .pte on ExecuTorch (metadata from the
 * "<asset>.pte.json" sidecar asset); then the first of [accelerators] that runtime accepts (a .pte: the
 * CPU, the others are recorded as fallbacks). Call it off the main thread: compiling a model takes from
 * milliseconds (CPU) to seconds (GPU, NPU); a .pte asset is copied to a file on its first open.
 */
fun openAssetModel(context: Context, assetPath: String, accelerators: List<Accelerator> = Model.DEFAULT_ACCELERATORS,
                   threads: Int = 0): Model {
    val metadata = assetMetadata(context, assetPath)
    return Model.open(metadata, assetFactory(context, assetPath, metadata), accelerators, threads)
}

/** The mobilevision metadata of a .tflite or .pte asset (what [dev.mobilevision.runtime.Benchmark.run] takes). */
fun assetMetadata(context: Context, assetPath: String): ModelMetadata {
    val format = ModelFormat.of(assetPath)
    val sidecar = try {
        context.assets.open(ModelFormat.sidecar(assetPath)).use { String(it.readBytes(), Charsets.UTF_8) }
    } catch (e: FileNotFoundException) {
        null
    }
    return format.metadata(assetPath, sidecar) { assetBytes(context, assetPath) }
}

/** The [RunnerFactory] of a .tflite (LiteRT) or .pte (ExecuTorch, which needs the [metadata]'s input shapes) asset. */
fun assetFactory(context: Context, assetPath: String, metadata: ModelMetadata): RunnerFactory =
    when (ModelFormat.of(assetPath)) {
        ModelFormat.TFLITE -> LiteRt.factory(context, assetPath)
        ModelFormat.PTE -> ExecuTorch.factory(context, assetPath, metadata)
    }

/** [openAssetModel] for a .tflite or .pte file the app can read (e.g. downloaded), its `.json` sidecar beside it. */
fun openFileModel(context: Context, file: File, accelerators: List<Accelerator> = Model.DEFAULT_ACCELERATORS,
                  threads: Int = 0): Model {
    val metadata = fileMetadata(file)
    val factory = when (ModelFormat.of(file.name)) {
        ModelFormat.TFLITE -> LiteRt.factory(context, file)
        ModelFormat.PTE -> ExecuTorch.factory(file, metadata)
    }
    return Model.open(metadata, factory, accelerators, threads)
}

/** The mobilevision metadata of a .tflite or .pte file: embedded (.tflite only), else its `<file>.json` sidecar. */
fun fileMetadata(file: File): ModelMetadata {
    val sidecar = File(ModelFormat.sidecar(file.path)).takeIf { it.isFile }?.readText(Charsets.UTF_8)
    return ModelFormat.of(file.name).metadata(file.name, sidecar) {
        try {
            FileInputStream(file).channel.use { it.map(FileChannel.MapMode.READ_ONLY, 0, it.size()) }
        } catch (e: IOException) {
            throw ArtifactException("cannot read ${file.path} (${e.message})", e)
        }
    }
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
