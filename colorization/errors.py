"""Exceptions the library raises for problems a user can fix."""

from __future__ import annotations

import errno
import os


class ConfigError(ValueError):
    """A parameter or path given by the user is unusable; the message says which and why."""


class ImageError(ValueError):
    """One input file could not be read as a photo; the message names the file and the reason."""


class TransientError(RuntimeError):
    """Work failed for a reason outside the photo (disk full, quota, permissions, I/O, a lost worker).

    Such a failure is never recorded against the photo: the run stops and the next one retries it. ``advice``
    tells the user what to do before running again.
    """

    def __init__(self, message: str, advice: str = "run again"):
        super().__init__(message)
        self.advice = advice


_ADVICE = {
    errno.ENOSPC: "free space and run again",
    errno.EDQUOT: "free space (disk quota exceeded) and run again",
    errno.EACCES: "fix the permissions and run again",
    errno.EPERM: "fix the permissions and run again",
    errno.EROFS: "make the folder writable and run again",
    errno.EIO: "check the disk and run again",
}
TRANSIENT_ERRNOS = frozenset(_ADVICE)


def as_transient(exc: OSError, action: str) -> TransientError | None:
    """A :class:`TransientError` saying ``<reason> <action>`` (say, ``writing a/b.jpg``) when ``exc`` comes
    from the machine rather than the photo, else None."""
    if exc.errno not in TRANSIENT_ERRNOS:
        return None
    return TransientError(f"{exc.strerror or os.strerror(exc.errno)} {action}", _ADVICE[exc.errno])
