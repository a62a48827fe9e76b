package dev.mobilevision.runtime

import kotlin.math.exp

/** One class of a classification: its index, label (the index as text when the metadata has no labels) and probability. */
data class Classification(val index: Int, val label: String, val score: Double)

/** Top-k classes of an image, as the Python runtime's `Model.classify`. */
class ImageClassifier(val model: Model) : AutoCloseable {
    private val pre = model.metadata.requireTask("classify").requirePreprocessing()

    fun classify(image: RgbImage, topK: Int = 5): List<Classification> {
        val out = model.predict(listOf(ImagePreprocessor.preprocess(image, pre)))
        return topK(out.values.first(), topK, model.metadata.labels, model.metadata.scores)
    }

    override fun close() = model.close()

    companion object {
        /** Per class: float32 softmax rounding around sum 1 (as the Python runtime's PROBABILITY_SLACK). */
        const val PROBABILITY_SLACK = 1e-4

        /** A graph's softmax output as doubles, refused when it is not a distribution (metadata that lies). */
        fun probabilities(out: FloatArray): DoubleArray {
            val p = DoubleArray(out.size) { out[it].toDouble() }
            val sum = p.sum()
            if (p.any { !it.isFinite() || it < -PROBABILITY_SLACK } ||
                Math.abs(sum - 1.0) > PROBABILITY_SLACK * maxOf(1, p.size)) {
                throw ArtifactException("the metadata says the output holds probabilities, but its ${p.size} values " +
                    "sum to $sum; re-export the artifact")
            }
            return p
        }

        /** Softmax in double precision of float32 logits (max subtracted first). */
        fun softmax(logits: FloatArray): DoubleArray {
            if (logits.isEmpty()) throw InputMismatchException("softmax of an empty logits vector")
            val max = logits.maxOf { it.toDouble() }
            val e = DoubleArray(logits.size) { exp(logits[it].toDouble() - max) }
            val sum = e.sum()
            return DoubleArray(e.size) { e[it] / sum }
        }

        /** The [k] most probable classes (ties keep index order), k clamped to 1..classes, of logits (softmax
         *  applied here) or, with [scores] "probabilities", of a model whose graph ends in a softmax. */
        fun topK(logits: FloatArray, k: Int, labels: List<String>?, scores: String? = null): List<Classification> {
            if (logits.isEmpty()) throw InputMismatchException("top-k of an empty output vector")
            val p = if (scores == "probabilities") probabilities(logits) else softmax(logits)
            val n = k.coerceIn(1, p.size)
            return p.indices.sortedByDescending { p[it] }.take(n).map { i ->
                Classification(i, labels?.getOrNull(i) ?: i.toString(), p[i])
            }
        }
    }
}
