"""Training throughput: the seed's way (Xception inside the input generator) against precomputed embeddings.

The seed computed the Xception embedding of every training photo inside its batch generator, one ``predict``
per photo, in every epoch. This stage computes embeddings once (``embed``) and training only reads them. Both
are timed here for one epoch over the same photos, with the same fusion model, size and batch:

(a) seed's way: each batch's embeddings computed in the generator, one Xception ``predict`` per photo;
(b) this stage: ``Split.batches`` joining shards with stored embeddings, prefetched on a thread;
(c) the network alone: the same batches, materialised once as arrays in memory, so no shard reading, flipping
    or conversion is timed; (b)/(c) says how much of the accelerator the input pipeline leaves idle;
(d) the input pipeline alone: (b)'s batches drawn as fast as they come, no network: what it can feed at most;
    with each number of batch threads in ``--threads``, and the process's CPU time a photo, in user space and in
    the kernel, and its page faults a photo: whether the threads wait on each other or on the kernel (a batch
    is ~110 MB of fresh arrays at 256x256 with ``maps`` rows);
(e) with ``--row-groups R``: (d) again after the embedding files are rewritten in Parquet row groups of R rows
    (embed writes one row group a file, whose column Arrow decompresses on one thread; row groups it reads in
    parallel), to see whether reading them limits the pipeline on a machine with many cores;
(f) with ``--float16``: (d) again after the embedding files are rewritten in float16, as embed stored feature
    maps before session 32 (now float8 e5m2, half the bytes: ``benchmarks/embedding_precision.py``), then once
    more in float8, so that both formats are compared after the same warm-up (the first pipeline runs of a
    process pay more in the kernel: fresh memory).

Each runs ``model.fit`` (``--epochs`` epochs, default 1) after a warm-up step (compilation is not timed).
Random weights are used: speed does not depend on weight values. ``--head spatial`` measures the model that
fuses a 10x10x2048 map instead of a vector (and batches that carry 200 times more embedding bytes).

Run as ``.venv/bin/python benchmarks/train.py [--size 128] [--width 0.5] [--batch-size 8] [--repeat 2]``; on a
GPU (``benchmarks/gpu.sh``) with ``--size 256 --width 1.0 --batch-size 64 --mixed-precision --skip-seed``.
It needs no Prefect: only the library, so it runs where only Keras and its backend are installed.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colorization.dataset.batches import THREADS, Batch, Split, prefetch
from colorization.dataset.embeddings import embed_dataset, read_embeddings, storage_type, write_embeddings
from colorization.dataset.layout import describe
from colorization.dataset.preprocess import plan_shards, process_files
from colorization.dataset.shards import Dataset
from colorization.network import device
from colorization.network.extractor import HEADS, grey_input, load_extractor
from colorization.network.model import build_model
from colorization.network.training import compile_model

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "photos"


def build_dataset(folder: Path, size: int, repeat: int, rows_per_shard: int = 32) -> Dataset:
    """The bundled photos, ``repeat`` times over (as distinct rows), in shards of ``rows_per_shard``."""
    names = sorted(p.name for p in SAMPLES.iterdir())
    data = Dataset(folder)
    data.ensure(size)
    copies = folder / "photos"
    for index in range(repeat):
        (copies / str(index)).mkdir(parents=True)
        for name in names:
            (copies / str(index) / name).symlink_to(SAMPLES / name)
    relatives = [f"{i}/{n}" for i in range(repeat) for n in names]
    with ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")) as pool:  # no fork of a GPU process
        jobs = [pool.submit(process_files, copies, files, data.shards_dir / shard, size)
                for shard, files in plan_shards(relatives, rows_per_shard, 0)]
        for job in jobs:
            job.result()
    return data


def seed_batches(split: Split, extractor, batch_size: int) -> Iterator[Batch]:
    """The seed's generator: stored rows, but each photo's embedding computed afresh, one predict per photo."""
    for inputs, target in split.batches(batch_size, np.random.default_rng(0), flip=True):
        embeddings = [extractor.model.predict(grey_input(inputs["L"][i : i + 1, ..., 0].astype(np.uint8)), verbose=0)
                      for i in range(len(target))]
        yield {"L": inputs["L"], "embedding": np.concatenate(embeddings).astype(np.float32)}, target


def fit_rate(model, batches: Iterator[Batch], steps: int, images: int, epochs: int) -> float:
    """Images/s of ``model.fit`` over ``epochs`` epochs of ``steps`` batches from the endless ``batches``."""
    began = time.perf_counter()
    model.fit(batches, epochs=epochs, steps_per_epoch=steps, shuffle=False, verbose=0)
    return images * epochs / (time.perf_counter() - began)


@dataclass
class Feed:
    """What drawing batches cost: images/s, and the process's CPU ms a photo in user space and in the kernel,
    and its page faults a photo (minor: memory the kernel maps and zeroes on first touch)."""

    rate: float
    user_ms: float
    kernel_ms: float
    faults: float

    def __str__(self) -> str:
        return (f"{self.rate:8.2f} images/s, CPU {self.user_ms:.2f} ms user + {self.kernel_ms:.2f} ms kernel, "
                f"{self.faults:.0f} page faults a photo")


def pipeline_rate(batches: Iterator[Batch], steps: int, images: int, epochs: int) -> Feed:
    """What drawing ``steps`` x ``epochs`` batches from ``batches``, with nothing consuming them, costs."""
    before, began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps * epochs):
        next(batches)
    seconds, after = time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF)
    photos = images * epochs
    return Feed(photos / seconds, 1000 * (after.ru_utime - before.ru_utime) / photos,
                1000 * (after.ru_stime - before.ru_stime) / photos, (after.ru_minflt - before.ru_minflt) / photos)


def rewrite(split: Split, rows: int | None = None, dtype: str | None = None) -> None:
    """Rewrite each embedding file of ``split`` with the same values, in row groups of ``rows`` rows (default
    one a file) and as ``dtype`` (default: as embed stores them)."""
    for part in split.parts:
        ids, values = read_embeddings(part.embeddings, split.extractor_id)
        write_embeddings(part.embeddings, ids, values, split.extractor_id, split.shape, row_group_rows=rows,
                         dtype=dtype or storage_type(split.shape))


def in_memory(split: Split, batch_size: int) -> Iterator[Batch]:
    """One epoch of the stage's batches, materialised now (not inside the timed ``fit``), then served again and
    again from memory (a generator, as ``fit`` takes)."""
    batches = list(split.batches(batch_size, np.random.default_rng(0), flip=True))
    return (batch for batch in itertools.cycle(batches))


def endless(split: Split, batch_size: int, threads: int = THREADS) -> Iterator[Batch]:
    """The stage's prefetched batches, epoch after epoch."""
    rng = np.random.default_rng(0)
    while True:
        yield from prefetch(split.batches(batch_size, rng, flip=True, threads=threads))


def feeds_at(split: Split, batch_size: int, steps: int, epochs: int, threads: list[int]) -> dict[int, Feed]:
    """(d)'s measurement with each number of batch threads, over the embedding files as they are now."""
    return {count: pipeline_rate(endless(split, batch_size, count), steps, split.size, epochs) for count in threads}


def _threads(count: int) -> str:
    return f"{count} thread{'s' if count != 1 else ''}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="times the bundled photos are used (default 2)")
    parser.add_argument("--rows-per-shard", type=int, default=32,
                        help="photos a shard (default 32; preprocess's own default is 512): a window of 4 shards "
                             "of 32 holds only 2 batches of 64, so small shards leave the batch builders idle")
    parser.add_argument("--mixed-precision", action="store_true", help="float16 compute (as on a GPU by default)")
    parser.add_argument("--skip-seed", action="store_true", help="skip (a): the seed's way is slow on a GPU")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs of (b) and (c) (default 1)")
    parser.add_argument("--head", choices=HEADS, default="predictions", help="extractor head (default predictions)")
    parser.add_argument("--threads", type=int, nargs="+", default=[THREADS, 1], metavar="T",
                        help=f"batch threads of (d) and (e), one measurement each (default {THREADS} 1)")
    parser.add_argument("--float16", action="store_true",
                        help="also measure (f): the pipeline with the embedding files in float16, as before float8")
    parser.add_argument("--row-groups", type=int, metavar="R",
                        help="also measure (e): the pipeline with embedding files in row groups of R rows")
    args = parser.parse_args()

    policy = device.compute_policy(args.mixed_precision or None)
    extractor = load_extractor("none", args.head, mixed_precision=args.mixed_precision or None)
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        data = build_dataset(Path(tmp) / "dataset", args.size, args.repeat, args.rows_per_shard)
        embed_dataset(data, extractor.id, lambda lightness: extractor.embed(lightness, 32), extractor.shape)
        split = Split(data, extractor.id, validation=False, percent=0.01)
        steps = split.steps(args.batch_size)
        with device.dtype_policy(policy):
            model = build_model(args.size, extractor.shape, args.width)
            compile_model(model, 1e-3)
        fit_rate(model, in_memory(split, args.batch_size), steps, split.size, 1)  # compiles every batch shape
        extractor.model.predict(grey_input(np.zeros((1, args.size, args.size), np.uint8)), verbose=0)
        seed = None if args.skip_seed else fit_rate(model, seed_batches(split, extractor, args.batch_size), steps,
                                                    split.size, 1)
        stage = fit_rate(model, endless(split, args.batch_size), steps, split.size, args.epochs)
        network = fit_rate(model, in_memory(split, args.batch_size), steps, split.size, args.epochs)
        feeds = feeds_at(split, args.batch_size, steps, args.epochs, args.threads)
        grouped, halves, again = {}, {}, {}
        if args.row_groups:
            rewrite(split, args.row_groups)
            grouped = feeds_at(split, args.batch_size, steps, args.epochs, args.threads)
        if args.float16:
            rewrite(split, dtype="float16")
            halves = feeds_at(split, args.batch_size, steps, args.epochs, args.threads)
            rewrite(split)
            again = feeds_at(split, args.batch_size, steps, args.epochs, args.threads)

    print(f"command:  {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine:  {os.cpu_count()} CPUs, {platform.platform()}, {device.describe()}, "
          f"load {os.getloadavg()[0]:.2f} at the end")
    print(f"setup:    {split.size} photos at {args.size}x{args.size} in shards of {args.rows_per_shard}, "
          f"width {args.width}, batch {args.batch_size}, "
          f"{steps} steps x {args.epochs} epochs, dtype policy {policy}; RANDOM weights (speed only); "
          f"head {args.head}, embedding {describe(extractor.shape)} stored as {storage_type(extractor.shape)}, "
          f"{model.count_params():,d} parameters")
    if seed is not None:
        print(f"(a) seed's way, Xception per photo in the generator: {seed:8.2f} images/s")
    print(f"(b) precomputed embeddings, prefetched batches:      {stage:8.2f} images/s")
    print(f"(c) network alone, the same batches from memory:     {network:8.2f} images/s  "
          f"(b)/(c) = {stage / network:.0%}")
    single = feeds.get(1)
    for threads, feed in feeds.items():
        gain = f", {feed.rate / single.rate:.2f}x one thread" if single and threads != 1 else ""
        label = f"(d) input pipeline alone, no network, {_threads(threads)}:"
        print(f"{label:52s} {feed}  (d)/(c) = {feed.rate / network:.2f}{gain}")
    for threads, feed in grouped.items():
        label = f"(e) (d) in row groups of {args.row_groups}, {_threads(threads)}:"
        print(f"{label:52s} {feed}  (e)/(d) = {feed.rate / feeds[threads].rate:.2f}")
    for threads, feed in halves.items():
        label = f"(f) (d) with float16 files, {_threads(threads)}:"
        print(f"{label:52s} {feed}")
        label = f"    then as stored again, {_threads(threads)}:"
        print(f"{label:52s} {again[threads]}  float8/float16 = {again[threads].rate / feed.rate:.2f}")
    if seed is not None:
        print(f"(b)/(a) = {stage / seed:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
