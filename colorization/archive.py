"""Where the photos to colour come from: a folder tree, a .zip or a .tar archive, read in place.

Archive members are read as bytes, never extracted; a member whose name would escape the output folder
(absolute, or with ``..``) is listed as unsafe and never written anywhere.
"""

from __future__ import annotations

import datetime
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from colorization.discover import find_images, is_image_name
from colorization.errors import ConfigError, ImageError


@dataclass(frozen=True)
class Entry:
    """One photo of the source: its relative name, size and modification time."""

    name: str
    size: int
    mtime_ns: int

    @property
    def safe(self) -> bool:
        path = PurePosixPath(self.name)
        return not path.is_absolute() and ".." not in path.parts and not self.name.startswith(("/", "\\"))


def _is_archive(path: Path) -> str | None:
    if path.is_file():
        if zipfile.is_zipfile(path):
            return "zip"
        if tarfile.is_tarfile(path):
            return "tar"
    return None


def list_entries(source: Path) -> list[Entry]:
    """The photos of a folder tree or archive, sorted by name."""
    kind = _is_archive(source)
    if kind == "zip":
        with zipfile.ZipFile(source) as archive:
            entries = [
                Entry(info.filename, info.file_size, _zip_mtime_ns(info))
                for info in archive.infolist()
                if not info.is_dir() and is_image_name(info.filename)
            ]
    elif kind == "tar":
        with tarfile.open(source) as archive:
            entries = [
                Entry(member.name, member.size, int(member.mtime * 1e9))
                for member in archive.getmembers()
                if member.isfile() and is_image_name(member.name)
            ]
    elif source.is_dir():
        entries = []
        for path in find_images(source):
            stat = path.stat()
            entries.append(Entry(path.relative_to(source).as_posix(), stat.st_size, stat.st_mtime_ns))
    else:
        raise ConfigError(f"{source}: not a folder, .zip or .tar archive")
    return sorted(entries, key=lambda e: e.name)


def _zip_mtime_ns(info: zipfile.ZipInfo) -> int:
    return int(datetime.datetime(*info.date_time).timestamp() * 1e9)


def read_entry(source: Path, name: str) -> bytes:
    """The bytes of one photo of ``source``; a problem raises :class:`ImageError` naming it."""
    label = f"{source}:{name}" if source.is_file() else str(source / name)
    try:
        kind = _is_archive(source)
        if kind == "zip":
            with zipfile.ZipFile(source) as archive:
                data = archive.read(name)
        elif kind == "tar":
            with tarfile.open(source) as archive:
                member = archive.extractfile(name)
                data = member.read() if member is not None else b""
        else:
            data = (source / name).read_bytes()
    except (OSError, KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise ImageError(f"{label}: cannot read ({exc})") from exc
    if not data:
        raise ImageError(f"{label}: empty file (0 bytes)")
    return data
