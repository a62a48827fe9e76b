package dev.mobilevision.demo

import android.Manifest
import android.content.Intent
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.graphics.Matrix
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.RadioButton
import android.widget.RadioGroup
import android.widget.ScrollView
import android.widget.Spinner
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.lifecycle.awaitInstance
import androidx.camera.view.PreviewView
import androidx.exifinterface.media.ExifInterface
import androidx.lifecycle.lifecycleScope
import dev.mobilevision.runtime.RgbImage
import dev.mobilevision.runtime.android.openAssetModel
import dev.mobilevision.runtime.android.toBitmap
import dev.mobilevision.runtime.android.toRgbImage
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Job
import kotlinx.coroutines.asCoroutineDispatcher
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext
import java.io.IOException
import java.util.concurrent.Executors

/**
 * The main screen: pick a task and an accelerator preference, see where the model runs (fallbacks
 * included), then feed it camera frames (CameraX), a gallery photo (Photo Picker) or, for the ISP,
 * the bundled RAW sample. Every model call runs on one inference thread, in order.
 */
class MainActivity : ComponentActivity() {
    private val inferenceExecutor = Executors.newSingleThreadExecutor()
    private val inference = inferenceExecutor.asCoroutineDispatcher()
    private var session: TaskSession? = null           // touched on the inference thread only
    private var sample: SampleMosaic? = null            // idem

    private var models: List<DemoModel> = emptyList()
    private var selected: DemoModel? = null
    private var choice = AcceleratorChoice.GPU_CPU
    private var ready = false
    private var openJob: Job? = null
    private var camera: ProcessCameraProvider? = null

    private lateinit var taskSpinner: Spinner
    private lateinit var status: TextView
    private lateinit var results: TextView
    private lateinit var preview: PreviewView
    private lateinit var picture: ImageView
    private val cameraButton by lazy { button("Camera") { toggleCamera() } }
    private val galleryButton by lazy { button("Gallery photo") { pickImage.launch(imageOnly()) } }
    private val rawButton by lazy { button("RAW sample") { runRawSample() } }
    private val benchButton by lazy { button("Benchmark") { openBenchmark() } }

    private val askCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else showError("camera permission denied: allow it in the app's settings, or use a gallery photo")
    }
    private val pickImage = registerForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) runOnPhoto(uri)
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        buildUi()
        try {
            models = DemoCatalog.parseIndex(String(readAsset(DemoCatalog.INDEX), Charsets.UTF_8))
        } catch (e: Exception) {
            showError(if (e is java.io.FileNotFoundException) "no ${DemoCatalog.INDEX} in the APK: run " +
                "`bash android_demo/export_models.sh` and rebuild the app" else (e.message ?: e.toString()))
            updateButtons()
            return
        }
        taskSpinner.adapter = ArrayAdapter(this, android.R.layout.simple_spinner_dropdown_item,
            models.map { it.title })
        taskSpinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) {
                selected = models[position]
                openSelected()
            }

            override fun onNothingSelected(parent: AdapterView<*>?) {}
        }
    }

    private fun buildUi() {
        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(dp(12), dp(12), dp(12), dp(12))
        }
        column.addView(textView(20f, text = "mobilevision on-device demo"), fullWidth())
        column.addView(textView(text = "Task"), fullWidth())
        taskSpinner = Spinner(this)
        column.addView(taskSpinner, fullWidth())
        column.addView(textView(text = "Accelerator preference (tried in order)"), fullWidth())
        val group = RadioGroup(this)
        for (c in AcceleratorChoice.entries) {
            group.addView(RadioButton(this).apply {
                id = View.generateViewId()
                text = c.title
                tag = c
                isChecked = c == choice
            })
        }
        group.setOnCheckedChangeListener { g, checkedId ->
            choice = g.findViewById<RadioButton>(checkedId).tag as AcceleratorChoice
            openSelected()
        }
        column.addView(group, fullWidth())
        status = textView(mono = true)
        column.addView(status, fullWidth())
        column.addView(buttonRow(cameraButton, galleryButton), fullWidth())
        column.addView(buttonRow(rawButton, benchButton), fullWidth())
        preview = PreviewView(this).apply { visibility = View.GONE }
        column.addView(preview, LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, dp(240)))
        picture = ImageView(this).apply { adjustViewBounds = true; scaleType = ImageView.ScaleType.FIT_CENTER }
        column.addView(picture, fullWidth())
        results = textView(mono = true)
        column.addView(results, fullWidth())
        val root = ScrollView(this).apply { addView(column) }
        padForSystemBars(root)
        setContentView(root)
        updateButtons()
    }

    /** (Re)opens the selected task's model with the chosen preference; shows where it runs and why. */
    private fun openSelected() {
        val entry = selected ?: return
        val prefs = choice
        if (!entry.task.takesImages) stopCamera()
        ready = false
        updateButtons()
        status.text = "opening ${entry.file} (${prefs.title})..."
        openJob?.cancel()
        openJob = lifecycleScope.launch {
            try {
                val lines = withContext(inference) {
                    session?.close()
                    session = null
                    val model = openAssetModel(this@MainActivity, entry.assetPath, prefs.accelerators)
                    val opened = try {
                        TaskSession(entry, model)
                    } catch (e: Exception) {
                        model.close()
                        throw e
                    }
                    session = opened
                    opened.describe()
                }
                status.text = lines.joinToString("\n")
                ready = true
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                showError("cannot open ${entry.file}: ${e.message ?: e}")
            }
            updateButtons()
        }
    }

    private fun updateButtons() {
        val task = selected?.task
        cameraButton.isEnabled = ready && task?.takesImages == true
        cameraButton.text = if (camera != null) "Stop camera" else "Camera"
        galleryButton.isEnabled = ready && task?.takesImages == true
        rawButton.isEnabled = ready && task == DemoTask.ISP
        benchButton.isEnabled = selected != null
    }

    private fun toggleCamera() {
        if (camera != null) return stopCamera()
        if (checkSelfPermission(Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) startCamera()
        else askCamera.launch(Manifest.permission.CAMERA)
    }

    private fun startCamera() {
        lifecycleScope.launch {
            try {
                val provider = ProcessCameraProvider.awaitInstance(this@MainActivity)
                val lens = if (provider.hasCamera(CameraSelector.DEFAULT_BACK_CAMERA)) CameraSelector.DEFAULT_BACK_CAMERA
                else CameraSelector.DEFAULT_FRONT_CAMERA
                val previewCase = Preview.Builder().build().also { it.setSurfaceProvider(preview.surfaceProvider) }
                val analysis = ImageAnalysis.Builder()
                    .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                    .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                    .build()
                // frames are analysed on the inference thread, so they queue behind model (re)opening
                analysis.setAnalyzer(inferenceExecutor, object : ImageAnalysis.Analyzer {
                    override fun analyze(image: ImageProxy) = analyzeFrame(image)
                })
                provider.unbindAll()
                provider.bindToLifecycle(this@MainActivity, lens, previewCase, analysis)
                camera = provider
                preview.visibility = View.VISIBLE
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                showError("camera unavailable: ${e.message ?: e}")
            }
            updateButtons()
        }
    }

    private fun stopCamera() {
        camera?.unbindAll()
        camera = null
        preview.visibility = View.GONE
        updateButtons()
    }

    /** One camera frame, on the inference thread: upright RGB -> the task -> the screen. */
    private fun analyzeFrame(frame: ImageProxy) {
        try {
            val s = session ?: return
            if (!s.entry.task.takesImages) return
            val result = s.run(upright(frame))
            val bitmap = result.image.toBitmap()
            runOnUiThread { if (camera != null) show(result.lines, bitmap) }   // not after the camera was stopped
        } catch (e: Exception) {
            runOnUiThread { if (camera != null) showError("camera frame: ${e.message ?: e}") }
        } finally {
            frame.close()
        }
    }

    /** The RGBA frame rotated to how the user holds the phone. */
    private fun upright(frame: ImageProxy): RgbImage {
        val bitmap = frame.toBitmap()
        val degrees = frame.imageInfo.rotationDegrees
        if (degrees == 0) return bitmap.toRgbImage()
        val matrix = Matrix().apply { postRotate(degrees.toFloat()) }
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, matrix, true).toRgbImage()
    }

    private fun imageOnly() =
        PickVisualMediaRequest.Builder().setMediaType(ActivityResultContracts.PickVisualMedia.ImageOnly).build()

    private fun runOnPhoto(uri: Uri) {
        stopCamera()
        results.text = "running on the photo..."
        lifecycleScope.launch {
            try {
                val (lines, bitmap) = withContext(inference) {
                    val s = session ?: throw IllegalStateException("the model is not open yet")
                    val result = s.run(decode(uri).toRgbImage())
                    result.lines to result.image.toBitmap()
                }
                show(lines, bitmap)
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                showError("photo: ${e.message ?: e}")
            }
        }
    }

    /** The photo, upright by its EXIF orientation (ImageDecoder applies it on API 28+, [exifUpright] below),
     *  longest side at most [MAX_SIDE], in software memory. */
    private fun decode(uri: Uri): Bitmap {
        if (Build.VERSION.SDK_INT >= 28) {
            return ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, info, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
                val longest = maxOf(info.size.width, info.size.height)
                if (longest > MAX_SIDE) decoder.setTargetSampleSize((longest + MAX_SIDE - 1) / MAX_SIDE)
            }
        }
        val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
        contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, bounds) }
        val options = BitmapFactory.Options().apply {
            inSampleSize = maxOf(1, (maxOf(bounds.outWidth, bounds.outHeight) + MAX_SIDE - 1) / MAX_SIDE)
        }
        val stored = contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it, null, options) }
            ?: throw IllegalStateException("cannot decode $uri as an image")
        return exifUpright(stored, uri)
    }

    /** [bitmap] turned as the EXIF orientation of [uri] says: mirrored first when flipped, then rotated
     *  clockwise (androidx ExifInterface's convention; Pillow's exif_transpose gives the same pixels).
     *  BitmapFactory ignores the tag; a photo without one, or whose tag cannot be read, stays as it is. */
    private fun exifUpright(bitmap: Bitmap, uri: Uri): Bitmap {
        val exif = (try {
            contentResolver.openInputStream(uri)?.use { ExifInterface(it) }
        } catch (e: IOException) {
            null
        }) ?: return bitmap
        val degrees = exif.rotationDegrees
        if (degrees == 0 && !exif.isFlipped) return bitmap
        val turn = Matrix().apply {
            if (exif.isFlipped) postScale(-1f, 1f)
            postRotate(degrees.toFloat())
        }
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, turn, true)
    }

    private fun runRawSample() {
        results.text = "running the ISP on the RAW sample..."
        lifecycleScope.launch {
            try {
                val (lines, bitmap) = withContext(inference) {
                    val s = session ?: throw IllegalStateException("the model is not open yet")
                    val raw = sample ?: DemoCatalog.parseSample(
                        String(readAsset(DemoCatalog.SAMPLE_JSON), Charsets.UTF_8), readAsset(DemoCatalog.SAMPLE_BIN))
                        .also { sample = it }
                    val result = s.runRaw(raw)
                    result.lines to result.image.toBitmap()
                }
                show(lines, bitmap)
            } catch (e: CancellationException) {
                throw e
            } catch (e: java.io.FileNotFoundException) {
                showError("no RAW sample in the APK: run `bash android_demo/export_models.sh` and rebuild the app")
            } catch (e: Exception) {
                showError("RAW sample: ${e.message ?: e}")
            }
        }
    }

    private fun openBenchmark() {
        val entry = selected ?: return
        startActivity(Intent(this, BenchmarkActivity::class.java).putExtra(BenchmarkActivity.EXTRA_ASSET, entry.assetPath))
    }

    private fun show(lines: List<String>, bitmap: Bitmap) {
        picture.setImageBitmap(bitmap)
        results.text = lines.joinToString("\n")
    }

    private fun showError(message: String) {
        results.text = "error: $message"
    }

    override fun onDestroy() {
        super.onDestroy()
        camera?.unbindAll()
        inferenceExecutor.execute {
            session?.close()
            session = null
        }
        inferenceExecutor.shutdown()
    }

    companion object {
        /** Gallery photos are decoded with their longest side at most this (memory; the models resize anyway). */
        const val MAX_SIDE = 2048
    }
}
