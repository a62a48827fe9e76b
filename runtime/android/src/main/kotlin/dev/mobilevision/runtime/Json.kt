package dev.mobilevision.runtime

/**
 * A small strict JSON reader (RFC 8259) for the metadata and golden files, so the core needs no
 * library and no Android types. Objects become [Map] (insertion order kept), arrays [List], numbers
 * [Double], plus [String], [Boolean] and null. As export/metadata.py reads untrusted metadata, it
 * refuses nesting deeper than [MAX_DEPTH], integers longer than [MAX_INT_DIGITS] digits, numbers
 * beyond double range, NaN and Infinity, and duplicate keys.
 */
object Json {
    const val MAX_DEPTH = 32
    const val MAX_INT_DIGITS = 20

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
        private var depth = 0

        fun fail(what: String): Nothing = throw ArtifactException("invalid JSON at character $pos: $what")

        fun skipSpace() {
            while (pos < s.length && (s[pos] == ' ' || s[pos] == '\n' || s[pos] == '\r' || s[pos] == '\t')) pos++
        }

        fun value(): Any? {
            if (pos >= s.length) fail("unexpected end of input")
            for (word in NON_FINITE) if (s.startsWith(word, pos)) fail("$word is not JSON (Python writes it for a non-finite float)")
            return when (val c = s[pos]) {
                '{' -> nested { obj() }
                '[' -> nested { array() }
                '"' -> string()
                't' -> literal("true", true)
                'f' -> literal("false", false)
                'n' -> literal("null", null)
                else -> if (c == '-' || c in '0'..'9') number() else fail("unexpected character ${shown(c.toString())}")
            }
        }

        /** Bounds the recursion, so a deeply nested text is an error rather than a StackOverflowError. */
        private inline fun <T> nested(body: () -> T): T {
            if (++depth > MAX_DEPTH) throw ArtifactException("JSON nests deeper than $MAX_DEPTH levels")
            return body().also { depth-- }
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
                if (key in out) fail("duplicate key ${shown(key)}")
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
                                if (!hex.all { it in '0'..'9' || it.lowercaseChar() in 'a'..'f' }) fail("bad \\u escape ${shown(hex)}")
                                sb.append(hex.toInt(16).toChar())
                                pos += 4
                            }
                            else -> fail("bad escape ${shown("\\$e")}")
                        }
                    }
                    c < ' ' -> fail("control character in string")
                    else -> sb.append(c)
                }
            }
        }

        /** RFC 8259's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
        private fun number(): Double {
            val start = pos
            if (s[pos] == '-') pos++
            val intStart = pos
            if (!digits()) fail("bad number ${shown(s.substring(start, pos))}")
            if (s[intStart] == '0' && pos - intStart > 1) { pos = intStart + 1; fail("number with a leading zero") }
            var integer = true
            if (pos < s.length && s[pos] == '.') {
                pos++; integer = false
                if (!digits()) fail("no digit after the decimal point")
            }
            if (pos < s.length && (s[pos] == 'e' || s[pos] == 'E')) {
                pos++; integer = false
                if (pos < s.length && (s[pos] == '+' || s[pos] == '-')) pos++
                if (!digits()) fail("no digit in the exponent")
            }
            val token = s.substring(start, pos)
            if (integer && pos - intStart > MAX_INT_DIGITS) fail("an integer of ${pos - intStart} digits (over $MAX_INT_DIGITS)")
            val v = token.toDouble()
            if (v.isInfinite()) fail("the number ${shown(token)} is beyond double range")
            return v
        }

        /** Skips [0-9]*; true when there was at least one digit. */
        private fun digits(): Boolean {
            val from = pos
            while (pos < s.length && s[pos] in '0'..'9') pos++
            return pos > from
        }
    }

    private val NON_FINITE = listOf("NaN", "Infinity", "-Infinity")
}

/** [v] for an error message: quoted when a string, control characters escaped, cut to a short one-line form. */
internal fun shown(v: Any?, depth: Int = 0): String = when (v) {
    is String -> "'" + (if (v.length > 40) v.take(37) + "..." else v).map { c ->
        if (c < ' ' || c in '\u007f'..'\u009f') "\\u%04x".format(c.code) else c.toString()
    }.joinToString("") + "'"
    is Double -> if (v == Math.rint(v) && Math.abs(v) < 1e18) v.toLong().toString() else v.toString()
    is List<*> -> if (depth > 1) "[...]" else
        v.take(4).joinToString(", ", "[", if (v.size > 4) ", ...]" else "]") { shown(it, depth + 1) }
    is Map<*, *> -> if (depth > 1 || v.size > 2) "{...}" else
        v.entries.joinToString(", ", "{", "}") { shown(it.key, depth + 1) + ": " + shown(it.value, depth + 1) }
    else -> v.toString()
}

/**
 * Typed access to a parsed JSON object of untrusted metadata. [get] is a required field, [optional]
 * one with a default (absent: null; JSON null is an error, as in export/metadata.py), [nullable] one
 * whose absence and null both mean "none". Errors name the field by its path.
 */
internal class JsonObject(private val map: Map<String, Any?>, val path: String) {
    operator fun get(key: String): JsonField =
        if (key in map) JsonField(map[key], "$path.$key") else JsonField(null, "$path.$key").fail("is missing")
    fun optional(key: String): JsonField? = if (key in map) JsonField(map[key], "$path.$key") else null
    fun nullable(key: String): JsonField? = map[key]?.let { JsonField(it, "$path.$key") }
    val keys: Set<String> get() = map.keys

    /** This object, refusing keys outside [known] (the nested parts of the schema are closed). */
    fun only(known: Collection<String>): JsonObject = apply {
        map.keys.firstOrNull { it !in known }?.let { JsonField(null, path).fail("has the unknown field ${shown(it)}") }
    }

    /** The whole object as plain maps/lists (for fields the runtime only carries). */
    fun toMap(): Map<String, Any?> = map

    companion object {
        fun parse(text: String, where: String): JsonObject {
            val v = try {
                Json.parse(text)
            } catch (e: ArtifactException) {
                throw ArtifactException("malformed mobilevision metadata: ${e.message}; re-export the artifact", e)
            }
            @Suppress("UNCHECKED_CAST")
            return JsonObject(v as? Map<String, Any?>
                ?: throw ArtifactException("$where is not a JSON object; re-export the artifact"), where)
        }
    }
}

/** One JSON value at [path] ("metadata.preprocessing.crop[0]"), converted with its type and range checked. */
internal class JsonField(val value: Any?, val path: String) {
    fun fail(problem: String): Nothing =
        throw ArtifactException("malformed mobilevision metadata: $path $problem; re-export the artifact")

    private fun must(what: String): Nothing = fail("must be $what, got ${shown(value)}")

    /** At most [MAX_STR] characters, none of them a control character, one of [choices] when given. */
    fun string(choices: Collection<String> = emptyList()): String {
        val v = value as? String ?: must("a string")
        val chars = v.codePointCount(0, v.length)   // as Python's len()
        if (chars > MAX_STR) fail("must be at most $MAX_STR characters, got $chars")
        if (v.any { it < ' ' || it in '\u007f'..'\u009f' }) must("a string without control characters")
        if (choices.isNotEmpty() && v !in choices) must("one of ${choices.joinToString(", ")}")
        return v
    }

    fun long(lo: Long, hi: Long): Long {
        val v = value as? Double
        if (v == null || v != Math.rint(v) || v < lo.toDouble() || v > hi.toDouble()) must("an integer in $lo..$hi")
        return v.toLong()
    }

    fun int(lo: Int, hi: Int): Int = long(lo.toLong(), hi.toLong()).toInt()

    /** A finite number >= [lo], and > [above] when given. */
    fun number(lo: Double = Double.NEGATIVE_INFINITY, above: Double? = null): Double {
        val v = (value as? Double)?.takeIf { it.isFinite() } ?: must("a finite number")
        if (v < lo) must("a number >= ${shown(lo)}")
        if (above != null && v <= above) must("a number > ${shown(above)}")
        return v
    }

    fun bool(): Boolean = value as? Boolean ?: must("true or false")

    /** A list of [lo]..[hi] items. */
    fun list(lo: Int, hi: Int): List<JsonField> {
        val v = value as? List<*> ?: must("a list")
        if (v.size !in lo..hi) fail("has ${v.size} items, expected ${if (lo == hi) "$lo" else "$lo..$hi"}")
        return v.mapIndexed { i, item -> JsonField(item, "$path[$i]") }
    }

    fun ints(lo: Int, hi: Int, items: IntRange): List<Int> = list(items.first, items.last).map { it.int(lo, hi) }
    fun numbers(items: IntRange, lo: Double = Double.NEGATIVE_INFINITY, above: Double? = null): List<Double> =
        list(items.first, items.last).map { it.number(lo, above) }
    fun strings(items: IntRange): List<String> = list(items.first, items.last).map { it.string() }

    @Suppress("UNCHECKED_CAST")
    fun obj(): JsonObject = JsonObject(value as? Map<String, Any?> ?: must("an object"), path)

    companion object {
        /** Characters in a name, label or version (export/metadata.py MAX_STR). */
        const val MAX_STR = 1024
    }
}
