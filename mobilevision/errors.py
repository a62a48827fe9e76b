"""One exception type per failure class, all derived from MobileVisionError.

The CLI turns any MobileVisionError into a one-line message and exit code 2. Modules
that must stay torch-free (the runtime) import only this file.
"""
import errno


class MobileVisionError(Exception):
    """Base class: a problem the user can fix; the message names it and the fix."""


class ModelNotFound(MobileVisionError):
    """A model name that is not in the zoo."""


class WeightsError(MobileVisionError):
    """A weights file that is missing, unreadable or not a checkpoint."""


class IncompatibleWeights(WeightsError):
    """A checkpoint whose keys or shapes belong to another architecture."""


class UnknownTarget(MobileVisionError):
    """An export target or precision that does not exist."""


class ExportError(MobileVisionError):
    """The converter of a target failed."""


class ExportParityError(ExportError):
    """An exported artifact does not compute what the PyTorch model computes."""


class ArtifactError(MobileVisionError):
    """An artifact that cannot be read (missing, corrupt, unknown format, no metadata)."""


class BackendUnavailable(MobileVisionError):
    """A runtime backend that is not installed or cannot run on this machine."""


class InputMismatch(MobileVisionError):
    """An input array whose shape, dtype or rank is not what the model expects."""


class DataError(MobileVisionError):
    """A dataset folder or file that cannot be used (missing, empty classes, one class, bad layout)."""


class TrainingError(MobileVisionError):
    """A training run that cannot start or continue (bad options, nothing to resume, loss diverged)."""


# Set (to anything) to let runtimes' own log lines through, as the CLI's --debug does.
DEBUG_ENV = "MOBILEVISION_DEBUG"

# The fix to name for an OS error on a path the user gave (write sites turn these into one line).
OS_FIXES = {errno.ENOSPC: "free space on that disk, or write elsewhere",
             errno.EDQUOT: "free space (disk quota exceeded), or write elsewhere",
             errno.EACCES: "check its permissions, or use another path",
             errno.EPERM: "check its permissions, or use another path",
             errno.EROFS: "the file system is read-only: use another path",
             errno.ENOTDIR: "a part of the path is a file, not a folder: use another path",
             errno.EISDIR: "it is a folder: give a file name",
             errno.EEXIST: "something already exists there: use another path",
             errno.ENOENT: "check the path",
             errno.ENAMETOOLONG: "use a shorter path"}


def os_problem(e: OSError) -> str:
    """'<reason> (<fix>)' for an OS error, e.g. 'No space left on device (free space on that disk, ...)'."""
    return f"{e.strerror or type(e).__name__} ({OS_FIXES.get(e.errno, 'check the path')})"
