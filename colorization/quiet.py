"""A calm terminal: the native libraries' start-up chatter kept off a normal run, back with ``--verbose``.

TensorFlow's C++ core logs through absl, which writes every message issued before its own initialisation to
stderr whatever the level asked for (``WARNING: All log messages before absl::InitializeLog() is called are
written to STDERR``, then ``I0000 ... cudart_stub.cc:31] Could not find cuda drivers ...``), and later ones
down to INFO unless ``TF_CPP_MIN_LOG_LEVEL``, read once when TensorFlow loads, says otherwise. So a quiet run
sets that level before anything imports TensorFlow and imports Keras (hence TensorFlow) with file descriptor 2
filtered: native log lines are dropped, anything else (a Python warning, another thread's log line) passes.

``COLORIZATION_VERBOSE`` (set by the command line's ``-v``) turns all of this off; being in the environment, it
reaches every process a run starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from types import ModuleType

VERBOSE_ENV = "COLORIZATION_VERBOSE"
TF_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_TF_LOG_LEVEL = "3"  # errors too: on a machine without CUDA, a normal start logs "E0000 ... cuInit"

# absl's notice, glog-style lines ("I0000 00:00:1795704031.415456   29321 port.cc:153] ...": before absl starts,
# the seconds count from 1970), and the second line of TensorFlow's CPU-feature message.
NATIVE_NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.\-]+:\d+\] "
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags"
)


def is_verbose() -> bool:
    """Whether this run was asked for every detail (``COLORIZATION_VERBOSE`` set to anything but 0/false/no)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def configure(verbose: bool) -> None:
    """Set this process's verbosity, and its children's, before any native library loads.

    Quiet: TensorFlow's C++ logging down to fatal errors, unless ``TF_CPP_MIN_LOG_LEVEL`` is set already.
    Verbose: ``COLORIZATION_VERBOSE=1``, and TensorFlow's own default level.
    """
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    elif not is_verbose():
        os.environ.setdefault(TF_LOG_LEVEL_ENV, QUIET_TF_LOG_LEVEL)


@contextlib.contextmanager
def native_stderr_filtered(noise: re.Pattern[bytes] = NATIVE_NOISE) -> Iterator[None]:
    """Run the block with file descriptor 2 going through a filter that drops the lines ``noise`` matches.

    Lines are passed on as they come, by a thread reading a pipe, so nothing else is lost or held back, even if
    the block crashes the process. Does nothing when verbose, or where descriptor 2 cannot be duplicated.
    """
    if is_verbose():
        yield
        return
    try:
        target = os.dup(2)
    except OSError:
        yield
        return
    read_end, write_end = os.pipe()

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:  # ends when every write end is closed
                if not noise.match(line):
                    os.write(target, line)
        os.close(target)

    thread = threading.Thread(target=forward, name="native-stderr-filter", daemon=True)
    thread.start()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(target, 2)  # closes the pipe's last write end (unless a child process inherited it)
        thread.join(timeout=5)


def import_keras() -> ModuleType:
    """Keras, imported (with its backend) under :func:`native_stderr_filtered` the first time."""
    if "keras" not in sys.modules:
        configure(verbose=False)
        with native_stderr_filtered():
            import keras  # noqa: F401
    return sys.modules["keras"]


HEARTBEAT_FAILURE = "Failed to communicate with scheduler during heartbeat"


class HeartbeatFailureAsWarning(logging.Filter):
    """A Dask worker's failed heartbeat as one warning line instead of an error with a traceback.

    On a busy machine a local cluster's workers can send a last heartbeat after their scheduler has closed; Dask
    logs that as an ERROR with the connection's traceback, though the run finished and nothing was lost. A
    worker that really lost its scheduler mid-run says so again, and its tasks fail on their own.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(HEARTBEAT_FAILURE):
            reason = record.exc_info[1] if record.exc_info else None
            record.msg, record.args = "lost contact with the scheduler (heartbeat failed: %s)", (reason,)
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
            record.exc_info = record.exc_text = None
        return True


def dask_setup(worker: object) -> None:
    """Dask's preload hook (``preload=["colorization.quiet"]``), run in each worker process as it starts."""
    logging.getLogger("distributed.worker").addFilter(HeartbeatFailureAsWarning())
