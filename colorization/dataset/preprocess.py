"""Photos to Lab shards: the work behind the ``preprocess`` flow. :func:`plan` finds the photos to do and
:func:`process_files` makes one shard of them."""

from __future__ import annotations

import collections
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from colorization import manifest
from colorization.atomic import atomic_path
from colorization.batching import batched
from colorization.dataset.shards import (
    ERROR,
    GREY,
    MANIFEST_SCHEMA,
    WRITTEN,
    Dataset,
    ShardRows,
    manifest_record,
    shard_name,
    write_shard,
)
from colorization.errors import ImageError
from colorization.evaluation import metrics
from colorization.manifest import MODIFIED
from colorization.photos import images, lab
from colorization.photos.discover import iter_relative

log = logging.getLogger(__name__)

PLAN_CHUNK = 8192  # photos joined with the manifest at a time
_WORKLIST = pa.schema([("source", pa.string())])  # the photos a run has yet to process (Dataset.worklist_path)
ERRORS_KEPT = 1000  # errors a run's summary lists; the manifest records every one


def content_id(relative: str, data: bytes) -> str:
    """Stable row id: the relative path and a hash of the file's bytes."""
    return f"{relative}@{hashlib.blake2b(data, digest_size=8).hexdigest()}"


@dataclass
class Plan:
    """What a run has to do: the photos to process, in a file (:attr:`Dataset.worklist_path`, written by
    :func:`plan`, read by :func:`pending_shards`), how many they are and how many were found, and the shards the
    manifest knows."""

    worklist: Path
    pending: int
    found: int
    known_shards: set[str]


def plan(source: Path, dataset: Dataset) -> Plan:
    """Which photos under ``source`` still need processing into ``dataset``, written to its worklist.

    Photos already written or flagged grey are done. Photos that failed are tried again only when their size
    or modification time changed (the user replaced them); otherwise the same error would just repeat. The
    walk (in name order) and the manifest (a piece at a time) are read side by side, and the photos to do are
    written as they are found: planning holds the same memory whatever the dataset's size.
    """
    known: set[str] = set()
    pieces = _noting_shards(dataset.open_manifest().pieces(), known)
    pending = found = 0
    with atomic_path(dataset.worklist_path) as temp, pq.ParquetWriter(temp, _WORKLIST) as writer:
        for names, rows, position in manifest.join(iter_relative(source), pieces, MANIFEST_SCHEMA, PLAN_CHUNK):
            todo = _to_do(source, names, rows, position)
            writer.write_table(pa.table([pa.array(todo, pa.string())], schema=_WORKLIST))
            pending, found = pending + len(todo), found + len(names)
    collections.deque(pieces, maxlen=0)  # rows of photos gone from the source name shards too
    return Plan(dataset.worklist_path, pending, found, known)


def pending_photos(worklist: Path) -> int:
    """How many photos a worklist (:func:`plan`) holds, from its footer."""
    return pq.ParquetFile(worklist).metadata.num_rows


def pending_shards(worklist: Path, rows_per_shard: int, first_index: int) -> Iterator[tuple[str, list[str]]]:
    """The photos of a worklist (:func:`plan`) as (shard file name, files), read from it as they are asked for."""
    return plan_shards(_sources(worklist), rows_per_shard, first_index)


def _sources(worklist: Path) -> Iterator[str]:
    for batch in pq.ParquetFile(worklist).iter_batches(PLAN_CHUNK, use_threads=False):
        yield from batch.column(0).to_pylist()


def _noting_shards(pieces: Iterable[pa.Table], known: set[str]) -> Iterator[pa.Table]:
    """``pieces`` of the manifest, adding the shards they name to ``known`` as they are read."""
    for piece in pieces:
        known.update(pc.unique(pc.drop_null(piece["shard"])).to_pylist())
        yield piece


def _to_do(source: Path, names: list[str], rows: pa.Table, position: np.ndarray) -> list[str]:
    """Of ``names``, those new (no row: position -1) or failed and changed since (rows: their manifest rows)."""
    new = position < 0
    failed = np.flatnonzero(~new)[np.asarray(pc.equal(rows["status"].take(position[~new]), ERROR), bool)]
    retry = rows.take(position[failed])
    redo = new.copy()
    stamps = zip(retry["bytes"].to_pylist(), retry[MODIFIED].cast(pa.int64()).to_pylist())
    for at, stamp in zip(failed, stamps):
        redo[at] = _stamp(source / names[at]) != stamp
    return [name for name, todo in zip(names, redo) if todo]


def _stamp(path: Path) -> tuple[int, int] | None:
    """A file's size and modification time (None: gone since the walk found it)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def remove_orphan_shards(dataset: Dataset, known: set[str]) -> list[Path]:
    """Delete shards the manifest does not know (``known``, :attr:`Plan.known_shards`): a killed run wrote
    them but never recorded them."""
    orphans = [p for p in dataset.shards() if p.name not in known]
    for path in orphans:
        log.warning("%s: removing shard of an interrupted run (not in the manifest)", path)
        path.unlink()
    return orphans


@dataclass
class ShardResult:
    """What one shard's worth of files became; small enough to return from a distributed task."""

    shard: str | None
    records: list[dict] = field(default_factory=list)
    megabytes: float = 0.0

    def count(self, status: str) -> int:
        return sum(r["status"] == status for r in self.records)


@dataclass
class Tally:
    """What a run's shards became, summed as they finish: counts, megabytes written and the first
    :data:`ERRORS_KEPT` errors (the manifest has them all), so a run of any size holds the same."""

    written: int = 0
    grey: int = 0
    errors: int = 0
    shards: int = 0
    megabytes: float = 0.0
    first_errors: list[dict] = field(default_factory=list)

    def add(self, result: ShardResult) -> list[dict]:
        """Count one shard in; returns its errors (source and reason), for the run to log."""
        errors = [{"source": r["source"], "error": r["error"]} for r in result.records if r["status"] == ERROR]
        self.written += result.count(WRITTEN)
        self.grey += result.count(GREY)
        self.errors += len(errors)
        self.shards += result.shard is not None
        self.megabytes += result.megabytes
        self.first_errors.extend(errors[: ERRORS_KEPT - len(self.first_errors)])
        return errors


def process_files(
    source: Path,
    relatives: list[str],
    shard_path: Path,
    size: int,
    grey_threshold: float = lab.GREY_THRESHOLD,
    keep_grey: bool = False,
    framing: images.Framing = "whole",
) -> ShardResult:
    """Load, make square (``framing``) and convert ``relatives`` (paths under ``source``) and write them as one shard.

    Grey and toned photos are recorded as ``grey`` and left out unless ``keep_grey``. Unreadable files are
    recorded as ``error`` with the reason. No shard is written when nothing qualifies.
    """
    records: list[dict] = []
    kept: list[tuple[str, str, int, int, float, np.ndarray, np.ndarray]] = []
    for relative in relatives:
        path = source / relative
        record = manifest_record(relative)
        try:
            stat = path.stat()
            record.update({"bytes": stat.st_size, MODIFIED: stat.st_mtime_ns})
            data = images.read_bytes(path)
            record["id"] = content_id(relative, data)
            photo = images.decode(data, path, min_side=size)
            rgb = images.fit_square(photo.image, size, framing)
            lightness, ab = lab.quantize(lab.rgb_to_lab(rgb))
            grey = lab.is_monochrome(lightness, ab, grey_threshold)
            record["status"] = GREY if grey else WRITTEN
            if keep_grey or not grey:
                record["shard"] = shard_path.name
                colourfulness = metrics.colorfulness(rgb)
                kept.append((record["id"], relative, photo.width, photo.height, colourfulness, lightness, ab))
        except (ImageError, OSError) as exc:
            record["error"] = str(exc)
            log.warning("%s", exc)
        records.append(record)
    if not kept:
        return ShardResult(None, records)
    ids, sources, widths, heights, colourfulness, lightness, ab = zip(*kept)
    rows = ShardRows(list(ids), list(sources), np.array(widths), np.array(heights), np.array(colourfulness),
                     np.stack(lightness), np.stack(ab))
    write_shard(shard_path, rows)
    return ShardResult(shard_path.name, records, os.path.getsize(shard_path) / 1e6)


def plan_shards(pending: Iterable[str], rows_per_shard: int, first_index: int) -> Iterator[tuple[str, list[str]]]:
    """Split pending files into (shard file name, files) batches, numbering on from ``first_index``."""
    return ((shard_name(index), files) for index, files in enumerate(batched(pending, rows_per_shard), first_index))
