package dev.mobilevision.runtime

/** Every error the runtime raises: one message that names the problem and the fix. */
open class MobileVisionException(message: String, cause: Throwable? = null) : RuntimeException(message, cause)

/** The artifact or its metadata cannot be used (missing, malformed, newer schema, wrong task). */
class ArtifactException(message: String, cause: Throwable? = null) : MobileVisionException(message, cause)

/** The caller's input does not fit the model (shape, size, box, pattern, levels). */
class InputMismatchException(message: String) : MobileVisionException(message)

/** No requested accelerator could open the model; [attempts] says why each one failed. */
class AcceleratorUnavailableException(message: String, val attempts: List<Fallback>) : MobileVisionException(message)
