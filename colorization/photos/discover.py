"""Find the photos in a folder tree."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif"})  # gif: 1st frame


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the supported image suffixes (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def iter_images(root: str | Path) -> Iterator[Path]:
    """Every image file below ``root``, in the order the folders are walked.

    Symlinked folders are followed once each: a folder whose real path was already visited is skipped, so a
    link loop cannot recurse forever. Hidden folders (``.name``) are skipped; they hold tool state such as the
    colorize manifest.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    seen: set[str] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        yield from (Path(folder, f) for f in files if is_image_name(f) and not f.startswith("."))


def find_images(root: str | Path) -> list[Path]:
    """Every image file below ``root`` (see :func:`iter_images`), sorted by relative path."""
    root = Path(root)
    return sorted(iter_images(root), key=lambda p: p.relative_to(root).as_posix())
