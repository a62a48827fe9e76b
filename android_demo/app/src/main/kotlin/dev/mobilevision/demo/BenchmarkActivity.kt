package dev.mobilevision.demo

import android.os.Bundle
import android.widget.HorizontalScrollView
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import androidx.activity.ComponentActivity
import androidx.lifecycle.lifecycleScope
import dev.mobilevision.runtime.android.assetFactory
import dev.mobilevision.runtime.android.assetMetadata
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.isActive
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/**
 * Latency of one model on CPU, GPU and NPU in turn, each alone (as `mobilevision bench --device`):
 * load, first inference, median / mean / p90 / min / max / std over the timed runs, GMAC/s, where
 * it ran and why an accelerator did not. Measured off the main thread; leaving the screen stops the
 * measurement within one timed run.
 */
class BenchmarkActivity : ComponentActivity() {
    private lateinit var progress: TextView
    private lateinit var report: TextView
    private val again by lazy { button("Run again") { start() } }
    private var job: Job? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val column = LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            setPadding(dp(12), dp(12), dp(12), dp(12))
        }
        column.addView(textView(20f, text = "Benchmark"), fullWidth())
        progress = textView()
        column.addView(progress, fullWidth())
        report = textView(12f, mono = true)
        column.addView(HorizontalScrollView(this).apply { addView(report) }, fullWidth())
        column.addView(again, fullWidth())
        val root = ScrollView(this).apply { addView(column) }
        padForSystemBars(root)
        setContentView(root)
        start()
    }

    private fun start() {
        val asset = intent.getStringExtra(EXTRA_ASSET)
        if (asset == null) {
            progress.text = "error: no model given: open this screen from the main screen"
            return
        }
        if (job?.isActive == true) return
        again.isEnabled = false
        job = lifecycleScope.launch {
            try {
                val metadata = withContext(Dispatchers.IO) { assetMetadata(this@BenchmarkActivity, asset) }
                val factory = assetFactory(this@BenchmarkActivity, asset, metadata)   // LiteRT or ExecuTorch, by suffix
                val header = BenchReport.header(metadata)
                val outcomes = ArrayList<BenchOutcome>()
                report.text = header.joinToString("\n")
                for (accelerator in BenchReport.ACCELERATORS) {
                    progress.text = "measuring on the $accelerator (${BenchReport.WARMUP} warm-up + ${BenchReport.RUNS} timed runs)..."
                    outcomes += withContext(Dispatchers.Default) {
                        BenchReport.measure(metadata, factory, accelerator) { isActive }   // leaving the screen stops it
                    }
                    report.text = (header + "" + BenchReport.table(outcomes)).joinToString("\n")
                }
                progress.text = "done"
            } catch (e: CancellationException) {
                throw e
            } catch (e: Exception) {
                progress.text = "error: ${e.message ?: e}"
            }
            again.isEnabled = true
        }
    }

    companion object {
        /** The .tflite or .pte asset path to benchmark (e.g. "models/emo_1m.tflite"). */
        const val EXTRA_ASSET = "dev.mobilevision.demo.ASSET"
    }
}
