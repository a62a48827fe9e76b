package dev.mobilevision.runtime

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Reads the mobilevision metadata the exporter embeds in a .tflite flatbuffer: the entry named
 * [ModelMetadata.METADATA_KEY] in `Model.metadata`, whose buffer holds the JSON. Only the few
 * tables needed are walked (TFLite schema: Model.buffers = field 4, Model.metadata = field 6;
 * Metadata.name = 0, .buffer = 1; Buffer.data = 0, .offset = 1, .size = 2), so no flatbuffers
 * library is needed.
 */
object TfliteMetadata {
    /** The embedded metadata JSON of a .tflite file's bytes, or null when there is none. */
    /** A length read from the file, refused before anything is allocated when it is negative, past the
     *  metadata cap or past the [available] bytes. */
    private fun checkedLength(length: Long, available: Long): Int {
        val cap = 4L * ModelMetadata.MAX_JSON_CHARS
        if (length < 0 || length > cap || length > available) {
            throw ArtifactException("the .tflite metadata entry claims $length bytes (at most ${minOf(cap, maxOf(available, 0))} " +
                "possible); re-export the model")
        }
        return length.toInt()
    }

    /** Strict UTF-8 (invalid bytes are an error, as in the Python reader, not U+FFFD). */
    private fun utf8(bytes: ByteArray): String = try {
        Charsets.UTF_8.newDecoder()
            .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
            .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT)
            .decode(ByteBuffer.wrap(bytes)).toString()
    } catch (e: java.nio.charset.CharacterCodingException) {
        throw ArtifactException("the .tflite metadata entry is not UTF-8 text; re-export the model", e)
    }

    fun readJson(model: ByteBuffer): String? {
        val b = model.duplicate().order(ByteOrder.LITTLE_ENDIAN)
        val base = b.position()
        try {
            val root = base + b.getInt(base)
            val metadata = vector(b, root, 6) ?: return null
            val buffers = vector(b, root, 4) ?: throw ArtifactException("the .tflite has metadata but no buffers")
            for (i in 0 until b.getInt(metadata)) {
                val entry = tableAt(b, metadata + 4 + 4 * i)
                val name = field(b, entry, 0)?.let { string(b, it) } ?: continue
                if (name != ModelMetadata.METADATA_KEY) continue
                val index = field(b, entry, 1)?.let { b.getInt(it) } ?: 0
                if (index < 0 || index >= b.getInt(buffers)) throw ArtifactException("metadata buffer $index is out of range")
                val buffer = tableAt(b, buffers + 4 + 4 * index)
                val data = field(b, buffer, 0)?.let { it + b.getInt(it) }
                val bytes = if (data != null && b.getInt(data) > 0) {
                    ByteArray(checkedLength(b.getInt(data).toLong(), b.limit() - data - 4L))
                        .also { b.position(data + 4); b.get(it) }
                } else {
                    // large models keep buffers after the flatbuffer: offset from the file start + size
                    val offset = field(b, buffer, 1)?.let { b.getLong(it) } ?: 0L
                    val size = field(b, buffer, 2)?.let { b.getLong(it) } ?: 0L
                    if (offset <= 1L || size <= 0L) return null
                    if (offset > b.limit() - base) throw ArtifactException("metadata buffer offset $offset is past the " +
                        "end of the file; re-export the model")
                    ByteArray(checkedLength(size, b.limit() - base - offset)).also { b.position(base + offset.toInt()); b.get(it) }
                }
                return utf8(bytes).trimEnd('\u0000')
            }
            return null
        } catch (e: IndexOutOfBoundsException) {
            throw ArtifactException("not a valid .tflite flatbuffer (truncated or corrupt); re-export the model", e)
        } catch (e: IllegalArgumentException) {
            throw ArtifactException("not a valid .tflite flatbuffer (truncated or corrupt); re-export the model", e)
        }
    }

    /** The metadata of a .tflite: the embedded entry, else [sidecarJson] (the `.tflite.json` file's text). */
    fun read(model: ByteBuffer, sidecarJson: String? = null): ModelMetadata {
        val text = readJson(model) ?: sidecarJson
            ?: throw ArtifactException("the model carries no mobilevision metadata (no embedded entry, no " +
                ".tflite.json sidecar); export it with `mobilevision export MODEL --target tflite`")
        return ModelMetadata.fromJson(text)
    }

    private fun tableAt(b: ByteBuffer, ref: Int): Int = ref + b.getInt(ref)

    /** Absolute position of field [index] of the table at [table], or null when absent. */
    private fun field(b: ByteBuffer, table: Int, index: Int): Int? {
        val vtable = table - b.getInt(table)
        val vsize = b.getShort(vtable).toInt() and 0xFFFF
        val at = 4 + 2 * index
        if (at >= vsize) return null
        val off = b.getShort(vtable + at).toInt() and 0xFFFF
        return if (off == 0) null else table + off
    }

    private fun vector(b: ByteBuffer, table: Int, index: Int): Int? = field(b, table, index)?.let { it + b.getInt(it) }

    private fun string(b: ByteBuffer, ref: Int): String {
        val at = ref + b.getInt(ref)
        val bytes = ByteArray(checkedLength(b.getInt(at).toLong(), b.limit() - at - 4L))
        b.position(at + 4)
        b.get(bytes)
        return String(bytes, Charsets.UTF_8)
    }
}
