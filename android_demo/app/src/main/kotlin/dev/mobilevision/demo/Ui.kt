package dev.mobilevision.demo

// Small Android view helpers shared by the two screens (the layouts are built in code: no XML).

import android.app.Activity
import android.graphics.Typeface
import android.os.Build
import android.view.View
import android.view.WindowInsets
import android.widget.Button
import android.widget.LinearLayout
import android.widget.TextView
import kotlin.math.roundToInt

internal fun Activity.dp(value: Int): Int = (value * resources.displayMetrics.density).roundToInt()

internal fun Activity.textView(sizeSp: Float = 14f, mono: Boolean = false, text: String = ""): TextView =
    TextView(this).apply {
        this.text = text
        textSize = sizeSp
        if (mono) typeface = Typeface.MONOSPACE
        setTextIsSelectable(true)
    }

/** A horizontal row of equally wide buttons. */
internal fun Activity.buttonRow(vararg buttons: Button): LinearLayout = LinearLayout(this).apply {
    orientation = LinearLayout.HORIZONTAL
    for (b in buttons) addView(b, LinearLayout.LayoutParams(0, LinearLayout.LayoutParams.WRAP_CONTENT, 1f))
}

internal fun Activity.button(text: String, onClick: () -> Unit): Button = Button(this).apply {
    this.text = text
    isAllCaps = false
    setOnClickListener { onClick() }
}

/** A full-width child for a vertical LinearLayout. */
internal fun fullWidth(): LinearLayout.LayoutParams =
    LinearLayout.LayoutParams(LinearLayout.LayoutParams.MATCH_PARENT, LinearLayout.LayoutParams.WRAP_CONTENT)

/** Pads [root] by the system bars on Android 15+, where an app targeting SDK 35+ is drawn edge to edge. */
internal fun padForSystemBars(root: View) {
    if (Build.VERSION.SDK_INT < 35) return
    root.setOnApplyWindowInsetsListener { v, insets ->
        val bars = insets.getInsets(WindowInsets.Type.systemBars())
        v.setPadding(bars.left, bars.top, bars.right, bars.bottom)
        insets
    }
}

internal fun Activity.readAsset(path: String): ByteArray = assets.open(path).use { it.readBytes() }
