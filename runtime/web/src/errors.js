// The error classes the package throws: every message is one line that names the problem and the fix
// (as the Python runtime's mobilevision.errors and the Kotlin core's Errors.kt).

/** Every error of this package. */
export class MobileVisionError extends Error {
  /** @param {string} message @param {{cause?: unknown}} [options] */
  constructor(message, options) {
    super(oneLine(message), options);
    this.name = new.target.name;
  }
}

/** The artifact or its metadata cannot be used (missing, malformed, newer schema, not ONNX). */
export class ArtifactError extends MobileVisionError {}

/** The caller's input does not fit (not an image, wrong sizes, wrong task method, bad options). */
export class InputError extends MobileVisionError {}

/** `text` on one line, at most 600 characters (messages quote untrusted names and runtime errors).
 * @param {unknown} text @returns {string} */
export function oneLine(text, max = 600) {
  const s = String(text).replace(/\s*\n\s*/g, " ").trim();
  return s.length > max ? s.slice(0, max - 3) + "..." : s;
}

/** The message of anything thrown, on one line. @param {unknown} e @returns {string} */
export function reason(e, max = 600) {
  return oneLine(e instanceof Error ? e.message || e.name : String(e), max);
}
