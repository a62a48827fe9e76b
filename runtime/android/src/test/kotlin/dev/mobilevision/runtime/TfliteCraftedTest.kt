package dev.mobilevision.runtime

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** A .tflite flatbuffer is untrusted: lengths read from it are bounded before anything is allocated. */
class TfliteCraftedTest {
    /**
     * The smallest flatbuffer the reader walks: a root table with `buffers` (field 4) and `metadata`
     * (field 6), one metadata entry named [name] pointing at buffer 0, whose data vector holds [data]
     * behind the length [dataLength] (the real length unless a test forges it).
     */
    private fun flatbuffer(data: ByteArray, dataLength: Int = data.size, name: String = ModelMetadata.METADATA_KEY,
                           nameLength: Int = name.length): ByteBuffer {
        val b = ByteBuffer.allocate(256).order(ByteOrder.LITTLE_ENDIAN)
        fun shorts(at: Int, vararg v: Int) = v.forEachIndexed { i, x -> b.putShort(at + 2 * i, x.toShort()) }
        b.putInt(0, 32)                                         // root table at 32
        shorts(8, 18, 12, 0, 0, 0, 0, 4, 0, 8)                  // root vtable: buffers at +4, metadata at +8
        b.putInt(32, 32 - 8); b.putInt(36, 64 - 36); b.putInt(40, 80 - 40)
        b.putInt(64, 1); b.putInt(68, 120 - 68)                 // buffers: [table at 120]
        b.putInt(80, 1); b.putInt(84, 140 - 84)                 // metadata: [entry at 140]
        shorts(96, 6, 8, 4)                                     // buffer vtable: data at +4
        b.putInt(120, 120 - 96); b.putInt(124, 200 - 124)
        shorts(104, 8, 12, 4, 8)                                // entry vtable: name at +4, buffer at +8
        b.putInt(140, 140 - 104); b.putInt(144, 160 - 144); b.putInt(148, 0)
        b.putInt(160, nameLength); name.toByteArray().forEachIndexed { i, x -> b.put(164 + i, x) }
        b.putInt(200, dataLength); data.forEachIndexed { i, x -> b.put(204 + i, x) }
        return b
    }

    private fun refused(contains: String, buffer: ByteBuffer) {
        try {
            TfliteMetadata.readJson(buffer)
            fail("expected an ArtifactException mentioning '$contains'")
        } catch (e: ArtifactException) {
            assertTrue("message '${e.message}' should mention '$contains'", e.message!!.contains(contains))
        }
    }

    @Test
    fun wellFormedEntryIsRead() {
        assertEquals("""{"a": 1}""", TfliteMetadata.readJson(flatbuffer("""{"a": 1}""".toByteArray())))
    }

    @Test
    fun forgedLengthsAreRefusedBeforeAllocating() {
        refused("claims 2147483647 bytes", flatbuffer("{}".toByteArray(), dataLength = Int.MAX_VALUE))
        refused("claims 100 bytes", flatbuffer("{}".toByteArray(), dataLength = 100))   // past the end of the file
        refused("claims -1 bytes", flatbuffer("{}".toByteArray(), nameLength = -1))
    }

    @Test
    fun invalidUtf8IsRefused() {
        refused("not UTF-8", flatbuffer(byteArrayOf(0x7b, 0xff.toByte(), 0xfe.toByte(), 0x7d)))
    }
}
