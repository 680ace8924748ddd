"""Embed throughput: the seed's one-photo-at-a-time Xception calls against batched ones and the embed stage.

The issue asks the ``embed`` stage, end to end from shards, to reach at least 90% of the throughput of bare
batched inference on the same photos. This script measures images per second of the Xception embedder from
``colorization.network.extractor.load_extractor(weights, head)``, for each ``--heads`` (default ``predictions``), on the
bundled photos in
``data/samples/photos`` (repeated when N is larger), preprocessed into a temporary dataset of several shards:

(a) the seed's way: one ``model.predict`` call per photo (a batch of 1), on the first ``--seed-images`` photos;
(b) one bare batched ``model.predict(grey_input(L), batch_size=B)`` on all N photos' L arrays, already in memory;
(c) the stage end to end: ``colorization.dataset.embeddings.embed_dataset`` over the dataset's shards, timed around the
    whole call, so reading shards and writing the embedding files are included;
(d) the stage around a network that costs nothing (random values of the embedding's shape, made before timing):
    what reading shards and writing embedding files allow at most. On a CPU the network hides it; on a GPU,
    where (b) runs at thousands of photos/s, (c)/(b) can reach the 90% aim only if (d) is well above (b).
    ``--writers 1 2 4 8`` runs (d) once for each number of writer threads (default: the stage's own,
    ``WRITERS``, which depends on the cores); use several shards, since the last shard's write is never
    overlapped.

(b) and (c) run ``--repeats`` times, alternating, and the fastest run of each counts, since other processes
slow a run down but never speed it up. (c) also gives what each head costs on disk: the bytes of its embedding
files (zstd; feature maps in float8 e5m2 since session 32, vectors in float16) per photo, beside the raw float16
size; the ``spatial`` map is 10x10x2048 per photo where
``predictions`` is 1000 values. With several heads, a final table compares them. Each line also gives the
process's CPU time, much steadier than wall time on a shared machine: a gap in CPU time is work the stage adds,
a gap in wall time alone is waiting.
By default (N=128, 4 shards, B=32) every shard is one full batch, as in real datasets whose shards (512 rows)
are whole multiples of the batch; with shards smaller than B, (c) runs smaller batches than (b).

The model is warmed up first with one predict for every batch shape the three measurements use, so graph
tracing and compilation are not counted. ``--weights none`` (the default) builds Xception with random weights:
the embeddings are meaningless, but throughput does not depend on weight values. Plain Keras 3, so it runs
under any backend, e.g. ``KERAS_BACKEND=jax`` on a GPU machine.

Run as ``.venv/bin/python benchmarks/embed.py [--images N] [--size 256] [--batch-size 32] [--weights none]
[--heads predictions avg_pool spatial] [--mixed-precision]``
from the project root.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shlex
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from colorization.dataset.embeddings import WRITERS, embed_dataset  # noqa: E402
from colorization.dataset.layout import Shape, describe, row_shape  # noqa: E402
from colorization.dataset.preprocess import plan_shards, process_files  # noqa: E402
from colorization.dataset.shards import ERROR, Dataset, read_shard  # noqa: E402
from colorization.network import device  # noqa: E402
from colorization.network.extractor import HEADS, Extractor, grey_input, load_extractor  # noqa: E402
from colorization.photos.discover import find_images  # noqa: E402

SAMPLES = PROJECT_ROOT / "data" / "samples" / "photos"
AIM = 0.90  # (c) / (b)


def build_dataset(root: Path, samples: list[Path], count: int, size: int, shards: int) -> Dataset:
    """A dataset of ``count`` of ``samples`` (cycled) in ``shards`` shards, grey ones kept so every row counts."""
    source = root / "photos"
    source.mkdir(parents=True)
    relatives = []
    for index in range(count):
        sample = samples[index % len(samples)]
        link = source / f"{index:05d}-{sample.name}"
        link.symlink_to(sample)
        relatives.append(link.name)
    dataset = Dataset(root / "dataset")
    dataset.ensure(size)
    rows_per_shard = max(1, -(-count // shards))
    with ProcessPoolExecutor(mp_context=multiprocessing.get_context("spawn")) as pool:  # no fork of a GPU process
        results = [pool.submit(process_files, source, batch, dataset.shards_dir / name, size, keep_grey=True)
                   for name, batch in plan_shards(relatives, rows_per_shard, 0)]
        errors = [r["error"] for result in results for r in result.result().records if r["status"] == ERROR]
    if errors:
        raise RuntimeError(f"preprocessing failed: {errors[0]}")
    return dataset


def batch_lengths(rows: int, batch_size: int) -> set[int]:
    """The batch lengths ``predict`` sees for ``rows`` rows split into batches of ``batch_size``."""
    lengths = {min(rows, batch_size)}
    if rows > batch_size and rows % batch_size:
        lengths.add(rows % batch_size)
    return lengths


def warm_up(extractor: Extractor, size: int, lengths: set[int]) -> None:
    """One predict per batch length, so tracing and compilation happen before any timing."""
    for length in sorted(lengths):
        extractor.model.predict(grey_input(np.zeros((length, size, size), np.uint8)), batch_size=length, verbose=0)


@dataclass
class Timing:
    """Wall and process CPU seconds of one measurement over ``images`` photos."""

    images: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.images / self.wall

    def line(self, label: str) -> str:
        return f"{label:44s} {self.rate:6.2f} images/s  ({self.images} in {self.wall:.1f} s; cpu {self.cpu:.1f} s)"


def clocks() -> tuple[float, float]:
    """Wall clock and this process's CPU time (all threads), to pass to :func:`since`."""
    return time.perf_counter(), time.process_time()


def since(images: int, start: tuple[float, float]) -> Timing:
    """The :class:`Timing` of ``images`` photos from ``start`` (see :func:`clocks`) until now."""
    wall, cpu = clocks()
    return Timing(images, wall - start[0], cpu - start[1])


def seed_way(extractor: Extractor, lightness: np.ndarray) -> Timing:
    """(a): one ``predict`` call per photo."""
    start = clocks()
    for index in range(len(lightness)):
        extractor.model.predict(grey_input(lightness[index : index + 1]), verbose=0)
    return since(len(lightness), start)


def batched(extractor: Extractor, lightness: np.ndarray, batch_size: int) -> Timing:
    """(b): one batched ``predict`` on arrays already in memory."""
    start = clocks()
    extractor.model.predict(grey_input(lightness), batch_size=batch_size, verbose=0)
    return since(len(lightness), start)


def stage(extractor: Extractor, dataset: Dataset, batch_size: int) -> Timing:
    """(c): ``embed_dataset`` from shards to embedding files, timed around the whole call."""
    start = clocks()
    report = embed_dataset(dataset, extractor.id, lambda lightness: extractor.embed(lightness, batch_size),
                           extractor.shape)
    timing = since(report.images, start)
    if report.shards != len(dataset.shards()):
        raise RuntimeError(f"embed_dataset embedded {report.shards} of {len(dataset.shards())} shards")
    return timing


def stage_floor(extractor: Extractor, dataset: Dataset, writers: int) -> Timing:
    """(d): ``embed_dataset`` with a free network and ``writers`` writer threads, into an embedding folder of its
    own (removed after)."""
    rows = max(len(read_shard(shard, ["id"]).ids) for shard in dataset.shards())
    values = np.random.default_rng(0).standard_normal((rows, *row_shape(extractor.shape)), np.float32)
    values = values.astype(np.float16)
    floor_id = f"floor-{extractor.id}"
    start = clocks()
    report = embed_dataset(dataset, floor_id, lambda lightness: values[: len(lightness)], extractor.shape,
                           writers=writers)
    timing = since(report.images, start)
    shutil.rmtree(dataset.embeddings_dir(floor_id))
    return timing


@dataclass
class HeadResult:
    """One head's best runs and what its embeddings of one photo take: raw float16 and in the stage's files."""

    head: str
    shape: Shape
    seed: Timing
    bare: Timing
    stage: Timing
    disk_bytes: float

    @property
    def raw_bytes(self) -> int:
        return 2 * int(np.prod(row_shape(self.shape)))

    def row(self) -> str:
        return (f"{self.head:12s} {describe(self.shape):>22s} {self.raw_bytes:>10,d} "
                f"{self.disk_bytes:>12,.0f} {self.bare.rate:>8.2f} {self.stage.rate:>8.2f} "
                f"{self.stage.cpu / self.stage.images:>10.3f}")


def files_bytes(folder: Path) -> int:
    """Total size of the embedding files in ``folder``."""
    return sum(path.stat().st_size for path in folder.glob("part-*.parquet"))


def measure_head(head: str, args: argparse.Namespace, dataset: Dataset, lightness: np.ndarray,
                 lengths: set[int], seed_count: int) -> HeadResult:
    """(a), then (b) and (c) ``--repeats`` times alternating, for one head; prints every run."""
    extractor = load_extractor(args.weights, head, mixed_precision=args.mixed_precision)
    print(f"\n== head {head}: extractor {extractor.id} ({describe(extractor.shape)} per photo), "
          f"dtype policy {extractor.model.dtype_policy.name}")
    started = time.perf_counter()
    warm_up(extractor, args.size, lengths)
    print(f"warm-up (not timed below): one predict per batch length {sorted(lengths)}, "
          f"{time.perf_counter() - started:.1f} s")

    seed = seed_way(extractor, lightness[:seed_count])
    print(seed.line("(a) seed, predict per photo"), flush=True)
    bare_runs, stage_runs = [], []
    for run in range(1, args.repeats + 1):
        bare_runs.append(batched(extractor, lightness, args.batch_size))
        print(bare_runs[-1].line(f"(b) bare batched predict, run {run}"), flush=True)
        shutil.rmtree(dataset.embeddings_dir(extractor.id), ignore_errors=True)
        stage_runs.append(stage(extractor, dataset, args.batch_size))
        print(stage_runs[-1].line(f"(c) embed_dataset, run {run}"), flush=True)
    disk = files_bytes(dataset.embeddings_dir(extractor.id)) / len(lightness)
    floors = {writers: stage_floor(extractor, dataset, writers) for writers in args.writers}

    bare = max(bare_runs, key=lambda timing: timing.rate)
    end_to_end = max(stage_runs, key=lambda timing: timing.rate)
    print(seed.line("(a) seed, predict per photo"))
    print(bare.line(f"(b) bare batched, best of {args.repeats}"))
    print(end_to_end.line(f"(c) embed_dataset, best of {args.repeats}"))
    ratio = end_to_end.rate / bare.rate
    print(f"b/a = {bare.rate / seed.rate:.2f}x    c/b = {ratio:.1%} (aim: at least {AIM:.0%}, "
          f"{'met' if ratio >= AIM else 'NOT met'})")
    for writers, floor in floors.items():
        label = f"(d) embed_dataset, free network, {writers} writer{'s' * (writers > 1)}"
        print(f"{floor.line(label)}  d/b = {floor.rate / bare.rate:.1f}x")
    print(f"cpu s/image: a {seed.cpu / seed.images:.3f}, b {bare.cpu / bare.images:.3f}, "
          f"c {end_to_end.cpu / end_to_end.images:.3f} (steadier than wall time when other processes share the cores)")
    result = HeadResult(head, extractor.shape, seed, bare, end_to_end, disk)
    print(f"disk: {disk:,.0f} bytes/photo in the embedding files (raw float16 {result.raw_bytes:,d})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="photos for (b) and (c) (default 128)")
    parser.add_argument("--seed-images", type=int, default=16, help="photos for (a), one call each (default 16)")
    parser.add_argument("--size", type=int, default=256, help="stored photo size (default 256)")
    parser.add_argument("--batch-size", type=int, default=32, help="predict batch size B (default 32)")
    parser.add_argument("--shards", type=int, default=4, help="shards in the dataset for (c) (default 4)")
    parser.add_argument(
        "--repeats", type=int, default=2, help="runs of (b) and (c), alternating; the best counts (default 2)"
    )
    parser.add_argument("--weights", default="none", help="imagenet, none (random) or a weights file (default none)")
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=["predictions"],
                        help="extractor heads to measure, one after the other (default predictions)")
    parser.add_argument(
        "--mixed-precision",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="force mixed_float16 on or off (default: on with a GPU, off without)",
    )
    parser.add_argument("--writers", type=int, nargs="+", default=[WRITERS],
                        help=f"writer threads for (d), one run each (default: the stage's own, here {WRITERS})")
    args = parser.parse_args()
    if min(args.images, args.seed_images, args.size, args.batch_size, args.shards, args.repeats, *args.writers) < 1:
        parser.error("--images, --seed-images, --size, --batch-size, --shards, --repeats and --writers must be "
                     "positive")
    seed_count = min(args.seed_images, args.images)

    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"device: {device.describe()}")
    if args.weights == "none":
        print("NOTE: RANDOM WEIGHTS (--weights none): embeddings are meaningless; throughput does not depend on "
              "them, but their compressed size on disk does")

    with tempfile.TemporaryDirectory(prefix="embed-bench-") as temp:
        samples = find_images(SAMPLES)
        dataset = build_dataset(Path(temp), samples, args.images, args.size, args.shards)
        shard_rows = [len(read_shard(path, ["id"])) for path in dataset.shards()]
        lightness = np.concatenate([read_shard(path, ["L"]).L for path in dataset.shards()])
        print(f"photos: {args.images} ({len(samples)} distinct) at {args.size}x{args.size} in {len(shard_rows)} "
              f"shards of {shard_rows} rows; (a) on the first {seed_count}, (b) and (c) on all {args.images}; "
              f"batch size {args.batch_size}")
        lengths = {1} | batch_lengths(args.images, args.batch_size)
        for rows in shard_rows:
            lengths |= batch_lengths(rows, args.batch_size)
        results = [measure_head(head, args, dataset, lightness, lengths, seed_count) for head in args.heads]

    if len(results) > 1:
        print(f"\n{'head':12s} {'per photo':>22s} {'raw B':>10s} {'on disk B':>12s} {'(b) im/s':>8s} "
              f"{'(c) im/s':>8s} {'(c) cpu s':>10s}")
        for result in results:
            print(result.row())

if __name__ == "__main__":
    main()
