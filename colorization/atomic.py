"""Atomic file output: write to a temporary name beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".tmp-"
TEMP_NAME = re.compile(rf"{re.escape(TEMP_MARK)}[0-9a-f]{{8}}-.+", re.DOTALL)  # exactly what atomic_path names


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` in one rename, else it is removed.

    The temporary name keeps the target's suffix (some writers choose the format from it) and sits in the same
    folder, so the rename never crosses file systems. A killed process leaves at most a ``.tmp-`` file, never
    a half-written target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f"{TEMP_MARK}{uuid.uuid4().hex[:8]}-{target.name}")  # matches TEMP_NAME
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def remove_stale_temps(folder: str | Path, recursive: bool = False) -> int:
    """Delete temporary files a killed run left in ``folder`` (and its subfolders if ``recursive``); returns
    how many.

    Only regular files named exactly as :func:`atomic_path` names them are removed; other files, links and
    folders are never touched, and symlinked folders are not followed.
    """
    removed = 0
    for parent, subfolders, files in os.walk(folder):
        for name in files:
            path = Path(parent, name)
            if TEMP_NAME.fullmatch(name) and path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
        if not recursive:
            subfolders.clear()
    return removed
