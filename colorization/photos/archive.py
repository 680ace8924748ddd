"""Where the photos to colour come from: a folder tree, a .zip or a .tar archive, read in place.

Archive members are read as bytes, never extracted; a member whose name would escape the output folder
(absolute, or with ``..``) is listed as unsafe and never written anywhere, and a tar member that is a link or
a device is listed with the reason it is skipped. Each process keeps the archive open between photos, and
reads one photo at a time (Dask workers here run one task at a time).
"""

from __future__ import annotations

import datetime
import functools
import os
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from colorization.errors import ConfigError, ImageError, as_transient
from colorization.photos.discover import is_image_name, iter_relative


@dataclass(frozen=True, slots=True)
class Entry:
    """One photo of the source: its relative name, size and modification time; ``skip`` says why a member
    that is not a regular file is not read. (Slots: an archive's listing holds one per photo.)"""

    name: str
    size: int
    mtime_ns: int
    skip: str | None = None

    @property
    def safe(self) -> bool:
        path = PurePosixPath(self.name)
        return not path.is_absolute() and ".." not in path.parts and not self.name.startswith(("/", "\\"))


Archive = zipfile.ZipFile | tarfile.TarFile


def _archive(source: Path) -> Archive | None:
    """The archive at ``source`` (None for a folder), opened once per process and reused for every photo.

    Reopening it per photo would read a zip's directory, or scan a whole tar, again for each member. The cache
    is keyed by size and modification time, so a replaced archive is opened afresh.
    """
    if not source.is_file():
        return None
    stat = source.stat()
    return _open_archive(source, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _open_archive(source: Path, size: int, mtime_ns: int) -> Archive:
    if zipfile.is_zipfile(source):
        return zipfile.ZipFile(source)
    if tarfile.is_tarfile(source):
        archive = tarfile.open(source)
        archive.getmembers()  # index every member once
        return archive
    raise ConfigError(f"{source}: not a folder, .zip or .tar archive")


def list_entries(source: Path) -> list[Entry]:
    """The photos of a folder tree or archive, sorted by name."""
    return list(iter_entries(source))


def iter_entries(source: Path) -> Iterator[Entry]:
    """The photos of a folder tree or archive in the order of their names; a folder tree's are made as its walk
    goes, so that a run over a large tree need not hold them all (an archive's index is in memory anyway)."""
    archive = _archive(source)
    if isinstance(archive, zipfile.ZipFile):
        entries = [
            Entry(info.filename, info.file_size, _zip_mtime_ns(info))
            for info in archive.infolist()
            if not info.is_dir() and is_image_name(info.filename)
        ]
    elif isinstance(archive, tarfile.TarFile):
        entries = [
            Entry(member.name, member.size, int(member.mtime * 1e9), _tar_skip(member))
            for member in archive.getmembers()
            if not member.isdir() and is_image_name(member.name)
        ]
    elif source.is_dir():
        for name in iter_relative(source):
            stat = os.stat(os.path.join(source, name))
            yield Entry(name, stat.st_size, stat.st_mtime_ns)
        return
    else:
        raise ConfigError(f"{source}: not a folder, .zip or .tar archive")
    yield from sorted(entries, key=lambda e: e.name)


def _tar_skip(member: tarfile.TarInfo) -> str | None:
    """Why a tar member is not read as a photo (None for a regular file)."""
    if member.isfile():
        return None
    if member.issym():
        return "symbolic link in archive, skipped"
    if member.islnk():
        return "hard link in archive, skipped"
    return "device or special file in archive, skipped"


def _zip_mtime_ns(info: zipfile.ZipInfo) -> int:
    return int(datetime.datetime(*info.date_time).timestamp() * 1e9)


def read_entry(source: Path, name: str) -> bytes:
    """The bytes of one photo of ``source``; a problem with the photo raises :class:`ImageError` naming it (by
    its path relative to ``source``), one with the machine (permissions, I/O) :class:`TransientError`."""
    try:
        archive = _archive(source)
        if isinstance(archive, zipfile.ZipFile):
            data = archive.read(name)
        elif isinstance(archive, tarfile.TarFile):
            member = archive.extractfile(name)
            data = member.read() if member is not None else b""
        else:
            data = (source / name).read_bytes()
    except OSError as exc:
        transient = as_transient(exc, f"reading {name}")
        raise transient or ImageError(f"{name}: cannot read ({exc.strerror or exc})") from exc
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise ImageError(f"{name}: cannot read ({exc})") from exc
    if not data:
        raise ImageError(f"{name}: empty file (0 bytes)")
    return data
