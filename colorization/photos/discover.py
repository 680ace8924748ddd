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
    """Every image file below ``root``, in the order of their paths relative to it (as ``/``-separated
    strings sort), found as the walk goes: only the names of the folders being walked are held, so that
    listing a tree of a million photos holds no list of them.

    Symlinked folders are followed once each: a folder whose real path was already visited is skipped, so a
    link loop cannot recurse forever. Hidden folders and files (``.name``) are skipped; they hold tool state
    such as the colorize manifest. Folders that cannot be read are passed over, as ``os.walk`` does.
    """
    root = Path(root)
    yield from (root / relative for relative in iter_relative(root))


def iter_relative(root: str | Path) -> Iterator[str]:
    """:func:`iter_images` as ``/``-separated paths relative to ``root``, made without pathlib: listing a tree
    takes half the time, and holds none of the names pathlib interns."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root}: no such folder")
    yield from _walk(os.fspath(root), "", set())


def _walk(folder: str, prefix: str, seen: set[str]) -> Iterator[str]:
    real = os.path.realpath(folder)
    if real in seen:
        return
    seen.add(real)
    try:
        with os.scandir(folder) as scan:
            # A folder sorts as its name with "/" after it: that is where its photos' paths fall among its
            # siblings' ("a.jpg" < "a/b.jpg" < "a0.jpg"), so the walk yields paths in sorted order.
            names = sorted(f"{item.name}/" if _is_folder(item) else item.name for item in scan
                           if not item.name.startswith(".") and (_is_folder(item) or is_image_name(item.name)))
    except OSError:
        return
    for name in names:
        if name.endswith("/"):
            yield from _walk(os.path.join(folder, name[:-1]), prefix + name, seen)
        else:
            yield prefix + name


def _is_folder(item: os.DirEntry) -> bool:
    try:
        return item.is_dir()  # follows links
    except OSError:
        return False


def find_images(root: str | Path) -> list[Path]:
    """Every image file below ``root`` (see :func:`iter_images`), sorted by relative path."""
    return list(iter_images(root))  # the walk yields them in that order
