"""Shard writing and reading: schema 2 (pixels as fixed-size binary) against schema 1 (Arrow tensors), same photos.

Training and embedding read every shard's ``L`` (and ``ab``) once per epoch or run; on a GPU machine that read
is what the accelerator waits on (BENCHMARKS.md, GPU); preprocess writes each shard once. This writes the same
rows both ways, zstd-compressed like ``write_shard``, and times the writes and ``read_shard`` of each, in one
process:

    .venv/bin/python benchmarks/shards.py [--size 256] [--photos 128] [--repeats 3]

The photos are ``--photos-dir`` (default: the bundled samples) at ``--size``, repeated to ``--photos`` rows when
there are fewer. Repeated rows compress far better than distinct photos, so give a folder with enough photos
for figures to record (BENCHMARKS.md used ``../shared/photos/train``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from colorization.dataset.preprocess import process_files  # noqa: E402
from colorization.dataset.shards import ShardRows, read_shard, write_shard  # noqa: E402
from colorization.photos.discover import find_images  # noqa: E402

SAMPLES = PROJECT_ROOT / "data" / "samples" / "photos"


def sample_rows(source: Path, folder: Path, size: int, photos: int) -> ShardRows:
    """The first ``photos`` photos of ``source`` as shard rows at ``size``, repeated when there are fewer."""
    names = [str(p.relative_to(source)) for p in find_images(source)][:photos]
    process_files(source, names, folder / "samples.parquet", size, keep_grey=True)
    rows = read_shard(folder / "samples.parquet")
    take = np.arange(photos) % len(rows)
    return ShardRows([f"{rows.ids[i]}-{n}" for n, i in enumerate(take)], [rows.sources[i] for i in take],
                     rows.width[take], rows.height[take], rows.colorfulness[take], rows.L[take], rows.ab[take])


def write_schema_1(path: Path, rows: ShardRows) -> None:
    """The same rows with schema 1's pixel columns (Arrow fixed-shape tensors)."""
    table = pa.table({"id": rows.ids, "L": pa.FixedShapeTensorArray.from_numpy_ndarray(rows.L),
                      "ab": pa.FixedShapeTensorArray.from_numpy_ndarray(rows.ab)})
    pq.write_table(table, path, compression="zstd", row_group_size=len(rows))


def best_seconds(action, repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``action()``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photos-dir", type=Path, default=SAMPLES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shards-bench-") as tmp:
        folder = Path(tmp)
        rows = sample_rows(args.photos_dir, folder, args.size, args.photos)
        old, new = folder / "schema-1.parquet", folder / "schema-2.parquet"
        writes = [len(rows) / best_seconds(lambda: write(path, rows), args.repeats)
                  for write, path in ((write_schema_1, old), (write_shard, new))]
        assert np.array_equal(read_shard(old).L, read_shard(new).L), "both shards must hold the same pixels"
        before, after = (len(rows) / best_seconds(lambda: read_shard(path, ["id", "L", "ab"]), args.repeats)
                         for path in (old, new))
        sizes = [path.stat().st_size / len(rows) / 1e3 for path in (old, new)]
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}")
    distinct = len(set(rows.sources))
    print(f"photos:  {len(rows)} rows at {args.size}x{args.size} from {distinct} photos of {args.photos_dir}, zstd, "
          f"one row group{'' if distinct == len(rows) else ' (REPEATED rows: disk figures flatter schema 2)'}")
    print(f"schema 1 (Arrow tensors):     {writes[0]:7.0f} photos/s written, {before:7.0f} read, "
          f"{sizes[0]:6.1f} KB/photo on disk")
    print(f"schema 2 (fixed-size binary): {writes[1]:7.0f} photos/s written, {after:7.0f} read, "
          f"{sizes[1]:6.1f} KB/photo on disk")
    print(f"schema 2 / schema 1: {writes[1] / writes[0]:.2f}x write speed, {after / before:.2f}x read speed, "
          f"{sizes[1] / sizes[0]:.0%} of the bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
