"""Atomic file output: write to a temporary name beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".tmp-"


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` in one rename, else it is removed.

    The temporary name keeps the target's suffix (some writers choose the format from it) and sits in the same
    folder, so the rename never crosses file systems. A killed process leaves at most a ``.tmp-`` file, never
    a half-written target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f"{TEMP_MARK}{uuid.uuid4().hex[:8]}-{target.name}")
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temporary files left in ``folder`` by a killed run; returns how many."""
    removed = 0
    for path in Path(folder).glob(f"{TEMP_MARK}*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
