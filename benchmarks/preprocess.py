"""Preprocess throughput on camera-size photos: the seed's loop against this project's flow on 1 and 2 workers.

The issue asks the preprocess stage to run at least 3x as fast as the seed on one worker, and 1.7x faster
again on two. This script measures images per second on the same N camera-size JPEGs (about 12 megapixels,
upscaled from the bundled sample photos and cached in ``data/benchmarks/camera/``; above 40 the samples repeat):

(a) baseline, written the seed's way: ``keras.utils.load_img(path, target_size=(size, size))`` (a full decode,
    then a resize that squashes the photo, no crop) and ``skimage.color.rgb2lab``, one photo at a time in one
    process; nothing is written. Imports and one warm-up photo are left out of the timing.
(b) the ``preprocess`` flow with 1 Dask worker and (c) with 2, each run into a fresh dataset with N // 4 rows
    per shard.

(d) per photo in one process, against its floor: the reduced-scale decode alone (Pillow's DCT-scaled JPEG
    decode to at least ``size`` pixels on the shorter side, what every photo must cost) and the stage's work on
    the same photos (:func:`colorization.dataset.preprocess.process_files`: read, hash, decode, orient, square,
    Lab, grey detection, colourfulness, shard write). The issue's aim is a ratio of at most 1.5.

Two figures are given for the flow. End to end is the flow summary's ``images/s``: its shard phase, which
includes starting and stopping the local Dask cluster (several seconds, whatever N). Steady state is N over the
window from the first shard task's start to the last one's end, as recorded by Prefect: every per-photo and
per-task cost, without the cluster's fixed start-up. The default N makes each flow run last tens of seconds.

Run as ``.venv/bin/python benchmarks/preprocess.py [--images N] [--size 256] [--per-photo-only]``. Prefect
starts its temporary server when ``PREFECT_API_URL`` is unset, as it does for the ``colorization`` command;
``--per-photo-only`` measures (d) alone, without Prefect.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from camera import CAMERA_PIXELS, JPEG_QUALITY, build_source  # benchmarks/ is on sys.path when run as a script
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

from colorization.photos.discover import find_images
from flows.preprocess import preprocess

SHARDS = 4
DEFAULT_IMAGES = 600
AIM_SPEEDUP = 3.0  # (b) / (a)
AIM_SCALING = 1.7  # (c) / (b)
AIM_DECODE_RATIO = 1.5  # (d): per photo against its reduced-scale decode


@dataclass(frozen=True)
class FlowFigures:
    """What one flow run measured."""

    end_to_end: float  # images/s from the flow's summary
    steady: float  # images/s over the shard tasks' window
    seconds: float  # wall time of the whole flow call
    shards: int


def seed_baseline(paths: list[Path], size: int) -> float:
    """Images/s of the seed's loop: keras ``load_img`` resized to ``size``x``size``, then ``rgb2lab``."""
    os.environ.pop("KERAS_BACKEND", None)
    from keras.utils import img_to_array, load_img
    from skimage.color import rgb2lab

    def convert(path: Path) -> None:
        rgb2lab(img_to_array(load_img(path, target_size=(size, size))) / 255)

    convert(paths[0])
    started = time.perf_counter()
    for path in paths:
        convert(path)
    return len(paths) / (time.perf_counter() - started)


def per_photo_against_decode(paths: list[Path], size: int, folder: Path) -> tuple[float, float]:
    """Seconds per photo of the reduced-scale decode alone and of ``process_files`` on the same photos, the
    shard written once for all of them (as the flow writes one per ``rows_per_shard`` photos)."""
    from PIL import Image

    from colorization.dataset.preprocess import process_files

    def decode(path: Path) -> None:
        with Image.open(path) as image:
            scale = size / min(image.size)
            image.draft(None, (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            image.load()

    decode(paths[0])
    started = time.perf_counter()
    for path in paths:
        decode(path)
    floor = (time.perf_counter() - started) / len(paths)
    source = paths[0].parent
    relatives = [path.relative_to(source).as_posix() for path in paths]
    process_files(source, relatives[:1], folder / "warm-up.parquet", size)
    started = time.perf_counter()
    process_files(source, relatives, folder / "all.parquet", size)
    return floor, (time.perf_counter() - started) / len(paths)


def shard_window(flow_run_id: UUID, shards: int) -> float:
    """Seconds from the first shard task's start to the last one's end, in the subflow of a preprocess run."""
    subflows = FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=subflows)
    if len(tasks) != shards or any(t.start_time is None or t.end_time is None for t in tasks):
        raise RuntimeError(f"flow run {flow_run_id}: expected {shards} finished shard tasks, found {len(tasks)}")
    return (max(t.end_time for t in tasks) - min(t.start_time for t in tasks)).total_seconds()


def measure_flow(source: Path, dataset: Path, size: int, workers: int) -> FlowFigures:
    """Run the preprocess flow on every photo of ``source`` into the new folder ``dataset``."""
    count = len(find_images(source))
    rows_per_shard = max(1, count // SHARDS)
    started = time.perf_counter()
    state = preprocess(
        source=source, dataset=dataset, size=size, rows_per_shard=rows_per_shard, workers=workers, return_state=True
    )
    seconds = time.perf_counter() - started
    summary = state.result()
    if summary["written"] + summary["grey"] != count:
        raise RuntimeError(f"the flow did not process every photo of {source}: {summary}")
    shards = math.ceil(count / rows_per_shard)
    window = shard_window(state.state_details.flow_run_id, shards)
    return FlowFigures(summary["images/s"], count / window, seconds, shards)


def verdict(ratio: float, aim: float) -> str:
    return f"{ratio:.2f} ({'met' if ratio >= aim else 'missed'})"


def report(count: int, size: int, baseline: float, one: FlowFigures, two: FlowFigures, load: float,
           per_photo: tuple[float, float]) -> None:
    """Print the command, the machine and the table of rates and ratios."""
    rows = [
        ("(a) seed baseline, 1 process", f"{baseline:.2f}", f"{baseline:.2f}"),
        ("(b) flow, 1 worker", f"{one.end_to_end:.2f}", f"{one.steady:.2f}"),
        ("(c) flow, 2 workers", f"{two.end_to_end:.2f}", f"{two.steady:.2f}"),
        (
            f"(b)/(a), aim >= {AIM_SPEEDUP}",
            verdict(one.end_to_end / baseline, AIM_SPEEDUP),
            verdict(one.steady / baseline, AIM_SPEEDUP),
        ),
        (
            f"(c)/(b), aim >= {AIM_SCALING}",
            verdict(two.end_to_end / one.end_to_end, AIM_SCALING),
            verdict(two.steady / one.steady, AIM_SCALING),
        ),
    ]
    print()
    print(f"command:  {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine:  {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    print(f"load:     1-minute load average {load:.2f} at the start (other work on the machine skews the figures)")
    print(f"photos:   {count} JPEGs of about {CAMERA_PIXELS / 1e6:.0f} megapixels (quality {JPEG_QUALITY}) "
          f"to {size}x{size}; each flow run writes {one.shards} shards")
    print(f"flow calls, whole wall time: 1 worker {one.seconds:.1f} s, 2 workers {two.seconds:.1f} s")
    print()
    print(f"{'images/s':<30}{'end to end':>16}{'steady state':>16}")
    for label, end_to_end, steady in rows:
        print(f"{label:<30}{end_to_end:>16}{steady:>16}")
    print()
    print("end to end: the flow summary's images/s (shard phase, Dask cluster start and stop included).")
    print("steady state: photos / (last shard task end - first shard task start), from Prefect's task runs.")
    print("The baseline's timing has no start-up in it, so its two columns are the same figure.")
    floor, work = per_photo
    ratio = work / floor
    print()
    print(f"(d) per photo, one process: reduced-scale decode {floor * 1000:.1f} ms, process_files "
          f"{work * 1000:.1f} ms: ratio {ratio:.2f} (aim <= {AIM_DECODE_RATIO}: "
          f"{'met' if ratio <= AIM_DECODE_RATIO else 'missed'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--images", type=int, default=DEFAULT_IMAGES, help=f"camera-size photos to process (default {DEFAULT_IMAGES})"
    )
    parser.add_argument("--size", type=int, default=256, help="square output size in pixels (default 256)")
    parser.add_argument("--per-photo-only", action="store_true", help="measure (d) alone: no flow, no Prefect")
    args = parser.parse_args()
    if args.images < SHARDS:
        parser.error(f"--images must be at least {SHARDS}")

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="preprocess-benchmark-") as temp:
        work = Path(temp)
        photos = build_source(work / "source", args.images)
        for photo in photos:
            photo.read_bytes()  # every variant then reads from the page cache, none from disk
        per_photo = per_photo_against_decode(photos, args.size, work)
        print(f"(d) per photo: decode {per_photo[0] * 1000:.1f} ms, process_files {per_photo[1] * 1000:.1f} ms, "
              f"ratio {per_photo[1] / per_photo[0]:.2f} (aim <= {AIM_DECODE_RATIO})", flush=True)
        if args.per_photo_only:
            return
        baseline = seed_baseline(photos, args.size)
        print(f"(a) seed baseline: {baseline:.2f} images/s", flush=True)
        runs = {}
        for workers in (1, 2):
            runs[workers] = measure_flow(work / "source", work / f"dataset-{workers}", args.size, workers)
            print(f"flow, {workers} worker(s): {runs[workers].end_to_end:.2f} images/s end to end", flush=True)
    report(args.images, args.size, baseline, runs[1], runs[2], load, per_photo)


if __name__ == "__main__":
    main()
