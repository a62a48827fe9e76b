package dev.mobilevision.runtime

/**
 * A small strict JSON reader (RFC 8259) for the metadata and golden files, so the core needs no
 * library and no Android types. Objects become [Map] (insertion order kept), arrays [List], numbers
 * [Double], plus [String], [Boolean] and null.
 */
object Json {
    fun parse(text: String): Any? {
        val p = Parser(text)
        p.skipSpace()
        val value = p.value()
        p.skipSpace()
        if (p.pos != text.length) p.fail("unexpected trailing text")
        return value
    }

    private class Parser(val s: String) {
        var pos = 0

        fun fail(what: String): Nothing = throw ArtifactException("invalid JSON at character $pos: $what")

        fun skipSpace() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        fun value(): Any? {
            if (pos >= s.length) fail("unexpected end of input")
            return when (val c = s[pos]) {
                '{' -> obj()
                '[' -> array()
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c in '0'..'9') number() else fail("unexpected character '$c'")
            }
        }

        private fun literal(word: String, v: Any?): Any? {
            if (!s.startsWith(word, pos)) fail("expected '$word'")
            pos += word.length
            return v
        }

        private fun obj(): Map<String, Any?> {
            val out = LinkedHashMap<String, Any?>()
            pos++
            skipSpace()
            if (pos < s.length && s[pos] == '}') { pos++; return out }
            while (true) {
                skipSpace()
                if (pos >= s.length || s[pos] != '"') fail("expected a member name")
                val key = string()
                skipSpace()
                if (pos >= s.length || s[pos] != ':') fail("expected ':'")
                pos++
                skipSpace()
                out[key] = value()
                skipSpace()
                if (pos >= s.length) fail("unterminated object")
                when (s[pos++]) {
                    ',' -> continue
                    '}' -> return out
                    else -> { pos--; fail("expected ',' or '}'") }
                }
            }
        }

        private fun array(): List<Any?> {
            val out = ArrayList<Any?>()
            pos++
            skipSpace()
            if (pos < s.length && s[pos] == ']') { pos++; return out }
            while (true) {
                skipSpace()
                out.add(value())
                skipSpace()
                if (pos >= s.length) fail("unterminated array")
                when (s[pos++]) {
                    ',' -> continue
                    ']' -> return out
                    else -> { pos--; fail("expected ',' or ']'") }
                }
            }
        }

        private fun string(): String {
            val sb = StringBuilder()
            pos++
            while (true) {
                if (pos >= s.length) fail("unterminated string")
                val c = s[pos++]
                when {
                    c == '"' -> return sb.toString()
                    c == '\\' -> {
                        if (pos >= s.length) fail("unterminated escape")
                        when (val e = s[pos++]) {
                            '"', '\\', '/' -> sb.append(e)
                            'b' -> sb.append('\b')
                            'f' -> sb.append('\u000C')
                            'n' -> sb.append('\n')
                            'r' -> sb.append('\r')
                            't' -> sb.append('\t')
                            'u' -> {
                                if (pos + 4 > s.length) fail("truncated \\u escape")
                                val hex = s.substring(pos, pos + 4)
                                sb.append(hex.toIntOrNull(16)?.toChar() ?: fail("bad \\u escape '$hex'"))
                                pos += 4
                            }
                            else -> fail("bad escape '\\$e'")
                        }
                    }
                    c < ' ' -> fail("control character in string")
                    else -> sb.append(c)
                }
            }
        }

        private fun number(): Double {
            val start = pos
            if (s[pos] == '-') pos++
            while (pos < s.length && (s[pos].isDigit() || s[pos] in ".eE+-")) pos++
            val token = s.substring(start, pos)
            // Python's json writes NaN/Infinity for non-finite floats; accept them as well.
            return token.toDoubleOrNull() ?: fail("bad number '$token'")
        }
    }
}

/** Typed access to a parsed JSON object, with errors that name the missing or wrong field. */
@Suppress("UNCHECKED_CAST")
internal class JsonObject(private val map: Map<String, Any?>, private val where: String) {
    fun has(key: String) = map[key] != null
    fun raw(key: String): Any? = map[key]

    fun string(key: String): String = map[key] as? String ?: bad(key, "a string")
    fun stringOrNull(key: String): String? = if (has(key)) string(key) else null
    fun double(key: String): Double = (map[key] as? Double) ?: bad(key, "a number")
    fun doubleOrNull(key: String): Double? = if (has(key)) double(key) else null
    fun int(key: String): Int = double(key).let { if (it == Math.rint(it)) it.toInt() else bad(key, "an integer") }
    fun intOrNull(key: String): Int? = if (has(key)) int(key) else null
    fun long(key: String): Long = double(key).let { if (it == Math.rint(it)) it.toLong() else bad(key, "an integer") }
    fun longOrNull(key: String): Long? = if (has(key)) long(key) else null
    fun bool(key: String): Boolean = map[key] as? Boolean ?: bad(key, "true or false")
    fun boolOrNull(key: String): Boolean? = if (has(key)) bool(key) else null
    fun obj(key: String): JsonObject = JsonObject(map[key] as? Map<String, Any?> ?: bad(key, "an object"), "$where.$key")
    fun objOrNull(key: String): JsonObject? = if (has(key)) obj(key) else null
    fun list(key: String): List<Any?> = map[key] as? List<Any?> ?: bad(key, "an array")
    fun listOrNull(key: String): List<Any?>? = if (has(key)) list(key) else null
    fun objects(key: String): List<JsonObject> = list(key).mapIndexed { i, v ->
        JsonObject(v as? Map<String, Any?> ?: bad("$key[$i]", "an object"), "$where.$key[$i]")
    }
    fun strings(key: String): List<String> = list(key).mapIndexed { i, v -> v as? String ?: bad("$key[$i]", "a string") }
    fun doubles(key: String): List<Double> = list(key).mapIndexed { i, v -> v as? Double ?: bad("$key[$i]", "a number") }
    fun ints(key: String): List<Int> = doubles(key).mapIndexed { i, v ->
        if (v == Math.rint(v)) v.toInt() else bad("$key[$i]", "an integer")
    }

    /** A copy of the whole object as plain maps/lists (for fields the runtime only carries). */
    fun toMap(): Map<String, Any?> = map

    private fun bad(key: String, what: String): Nothing =
        throw ArtifactException("malformed mobilevision metadata: $where.$key must be $what; re-export the artifact")

    companion object {
        fun parse(text: String, where: String): JsonObject {
            @Suppress("UNCHECKED_CAST")
            val v = Json.parse(text) as? Map<String, Any?>
                ?: throw ArtifactException("$where is not a JSON object; re-export the artifact")
            return JsonObject(v, where)
        }
    }
}
