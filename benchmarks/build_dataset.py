"""Build a training dataset (shards + embeddings) with the library alone: no Prefect, no Dask, any Keras backend.

The preprocess and embed flows need a Prefect server and a Dask cluster; a rented GPU machine for a quality
experiment has neither. This script does the same work with the same library functions (``process_files`` per
shard on a process pool, then ``embed_dataset``), so ``benchmarks/ablation.py`` can train on its output there:

    python benchmarks/build_dataset.py PHOTOS DATASET --size 256 --weights W.weights.h5 --head hypercolumn

It skips nothing and resumes nothing: point it at a new DATASET folder. Photos that fail to decode are reported
and left out, as preprocess does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from colorization.dataset.embeddings import embed_dataset, write_extractor_info
from colorization.dataset.preprocess import plan_shards, process_files
from colorization.dataset.shards import WRITTEN, Dataset
from colorization.errors import ConfigError
from colorization.photos.discover import find_images
from colorization.preflight import DEFAULT_HEAD


def preprocess(photos: Path, dataset: Dataset, size: int, rows_per_shard: int, workers: int) -> int:
    """Write the photos as shards of ``size``; returns how many photos were kept."""
    dataset.ensure(size)
    dataset.shards_dir.mkdir(parents=True, exist_ok=True)
    relatives = sorted(str(p.relative_to(photos)) for p in find_images(photos))
    plans = plan_shards(relatives, rows_per_shard, 0)
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(process_files, [photos] * len(plans), [files for _, files in plans],
                                [dataset.shards_dir / name for name, _ in plans], [size] * len(plans)))
    records = [r for result in results for r in result.records]
    for record in records:
        if record.get("error"):
            print(f"skipped: {record['error']}", file=sys.stderr)
    return sum(r["status"] == WRITTEN for r in records)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--weights", default="imagenet", help="as embed's --weights")
    parser.add_argument("--head", default=DEFAULT_HEAD, help="as embed's --head")
    parser.add_argument("--rows-per-shard", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.dataset.exists() and any(args.dataset.iterdir()):
        raise ConfigError(f"{args.dataset}: not empty; build into a new folder")

    from colorization.network.extractor import load_extractor  # Keras only once the photos are written

    dataset = Dataset(args.dataset)
    started = time.perf_counter()
    kept = preprocess(args.photos, dataset, args.size, args.rows_per_shard, args.workers)
    print(f"preprocess: {kept} photos at {args.size}x{args.size} in {len(dataset.shards())} shards, "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    extractor = load_extractor(args.weights, args.head)
    write_extractor_info(dataset.embeddings_dir(extractor.id), extractor.id, args.weights, args.head)
    report = embed_dataset(dataset, extractor.id, lambda lightness: extractor.embed(lightness, args.batch_size),
                           extractor.shape)
    print(f"embed: {report.images} photos with {extractor.id} in {report.seconds:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
