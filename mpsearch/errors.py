"""One exception tree. Every message states what is wrong, the value, and how to fix it.

The CLI prints ``MpsearchError`` messages as one line and exits non-zero; anything else is a bug and
shows a traceback only with ``--debug``.
"""


class MpsearchError(Exception):
    """Base class: a problem the user can fix from the message alone."""

    exit_code = 2


class InvalidSpecError(MpsearchError, ValueError):
    """A network spec, format menu, objective or option is malformed."""


class UnsupportedConfigError(MpsearchError):
    """The backend or device cannot run what was asked (a format, a shape, a missing dependency)."""


class BackendUnavailableError(UnsupportedConfigError):
    """The backend cannot start here (no GPU, missing extra, missing data file)."""


class StudyMismatchError(MpsearchError):
    """Resuming a stored study with a different spec, menu, objective set, backend or device."""


class StorageError(MpsearchError):
    """A study storage cannot be opened, or a study is missing from it."""


class ObjectiveError(MpsearchError):
    """A plug-in objective failed at run time (raised, returned NaN/inf or a non-number)."""

    exit_code = 1


class KernelCheckError(MpsearchError):
    """A GPU kernel failed its correctness check against the float64 reference; it is never timed."""

    exit_code = 1
