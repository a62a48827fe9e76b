package dev.mobilevision.runtime

import java.nio.ByteBuffer

/**
 * The artifact formats this library opens, told apart by the file name's suffix: [TFLITE] runs on
 * LiteRT, [PTE] (an ExecuTorch program) on ExecuTorch. Both keep their metadata in a `<file>.json`
 * sidecar of the same schema; a .tflite may also embed it (read first), a .pte's embedded copy is not read.
 */
enum class ModelFormat(val suffix: String, val runtime: String) {
    TFLITE(".tflite", "LiteRT"),
    PTE(".pte", "ExecuTorch");

    /** The metadata of [name] in this format: from the model's bytes ([model], read only for a .tflite) or
     *  [sidecarJson], the text of its `<name>.json` sidecar (null when there is none). */
    fun metadata(name: String, sidecarJson: String?, model: () -> ByteBuffer): ModelMetadata = when (this) {
        TFLITE -> TfliteMetadata.read(model(), sidecarJson)
        PTE -> ModelMetadata.fromJson(sidecarJson ?: name.substringAfterLast('/').let {
            throw ArtifactException("'$it' has no '${sidecar(it)}' sidecar beside it, where a .pte keeps its mobilevision " +
                "metadata; copy the .pte.json the exporter wrote next to the .pte")
        })
    }

    companion object {
        /** The format of [name] (a file name or path) by its suffix, or an [ArtifactException] naming the ones known. */
        fun of(name: String): ModelFormat = entries.firstOrNull { name.endsWith(it.suffix, ignoreCase = true) }
            ?: throw ArtifactException("'${name.substringAfterLast('/')}' is not a model this runtime opens: give a " +
                entries.joinToString(" or ") { "${it.suffix} (${it.runtime})" })

        /** The metadata sidecar's name for the model file [name]: `<name>.json`. */
        fun sidecar(name: String): String = "$name.json"
    }
}
