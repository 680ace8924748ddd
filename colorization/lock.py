"""One run at a time per folder: an exclusive ``flock`` on a lock file inside the folder.

Two runs writing the same output folder or dataset would both do all the work and overwrite each other's
manifest rows, or delete each other's fresh shards as "interrupted". A stage therefore holds the lock of the
folder it writes for its whole run. The kernel releases a ``flock`` when its holder dies, however it dies, so a
killed run never leaves a stale lock behind. The lock file names its holder (pid, host, start time, stage,
command line) so that a refused run can say who is in the way.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from colorization.errors import ConfigError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class FolderBusy(ConfigError):
    """Another run holds the folder's lock; the message names it."""


def holder(lock_file: Path) -> dict:
    """Who holds (or last held) ``lock_file``: pid, host, since, stage, command; empty when unknown."""
    try:
        return json.loads(lock_file.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def busy_message(folder: Path, lock_file: Path) -> str:
    """'FOLDER is in use by pid P on HOST since TIME (STAGE)', as far as the lock file tells."""
    info = holder(lock_file)
    if not info:
        return f"{folder} is in use by another run"
    return f"{folder} is in use by pid {info['pid']} on {info['host']} since {info['since']} ({info['stage']})"


def ensure_free(folder: Path, lock_name: str = LOCK_FILE) -> None:
    """Raise :class:`FolderBusy` if a run holds ``folder``'s lock now; takes nothing and creates nothing.

    For an early refusal (the command line asks before it starts a Prefect server); the run itself still takes
    the lock with :func:`folder_lock`.
    """
    lock_file = folder / lock_name
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:  # no lock file (a new folder) or none readable: nobody can be holding it
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FolderBusy(f"{busy_message(folder, lock_file)}; wait for it or pass --wait") from None
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(
    folder: Path,
    stage: str,
    *,
    wait: bool = False,
    lock_name: str = LOCK_FILE,
    notify: Callable[[str], None] = log.warning,
) -> Iterator[Path]:
    """Hold ``folder``'s exclusive lock for the ``with`` block; yields the lock file.

    When another run holds it: raise :class:`FolderBusy` naming that run, or with ``wait`` block until it is
    free, telling ``notify`` once that it waits. The lock file is created (with its folders) if needed and
    never deleted: deleting it would let a third run lock a new file while the second still waits on the old.
    """
    lock_file = folder / lock_name
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create its lock file {lock_file} ({exc.strerror})") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = busy_message(folder, lock_file)
            if not wait:
                raise FolderBusy(f"{message}; wait for it or pass --wait") from None
            notify(f"{message}; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
            "stage": stage,
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield lock_file
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor releases the flock
