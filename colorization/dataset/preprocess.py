"""Photos to Lab shards: the work behind the ``preprocess`` flow, one shard at a time."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from colorization.dataset.shards import (
    ERROR,
    GREY,
    WRITTEN,
    Dataset,
    ShardRows,
    manifest_record,
    shard_name,
    write_shard,
)
from colorization.errors import ImageError
from colorization.evaluation import metrics
from colorization.manifest import MODIFIED, nanoseconds
from colorization.photos import images, lab

log = logging.getLogger(__name__)


def content_id(relative: str, data: bytes) -> str:
    """Stable row id: the relative path and a hash of the file's bytes."""
    return f"{relative}@{hashlib.blake2b(data, digest_size=8).hexdigest()}"


def pending_files(source: Path, paths: list[Path], manifest: pd.DataFrame) -> list[str]:
    """Which of ``paths`` (found under ``source``) still need processing, as relative paths.

    Files already written or flagged grey are done. Files that failed are tried again only when their size or
    modification time changed (the user replaced them); otherwise the same error would just repeat.
    """
    done = {row.source: row for row in manifest.itertuples(index=False)}
    pending = []
    for path in paths:
        relative = path.relative_to(source).as_posix()
        previous = done.get(relative)
        if previous is None:
            pending.append(relative)
        elif previous.status == ERROR:
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) != (previous.bytes, nanoseconds(previous.modified)):
                pending.append(relative)
    return pending


def remove_orphan_shards(dataset: Dataset, manifest: pd.DataFrame) -> list[Path]:
    """Delete shards no manifest row points to: a killed run wrote them but never recorded them."""
    known = set(manifest["shard"].dropna())
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


def plan_shards(pending: list[str], rows_per_shard: int, first_index: int) -> list[tuple[str, list[str]]]:
    """Split pending files into (shard file name, files) batches, numbering on from ``first_index``."""
    return [
        (shard_name(first_index + n), pending[start : start + rows_per_shard])
        for n, start in enumerate(range(0, len(pending), rows_per_shard))
    ]
