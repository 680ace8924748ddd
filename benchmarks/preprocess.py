"""Preprocess throughput on camera-size photos: the seed's loop against this project's flow on 1 and 2 workers.

The issue asks the preprocess stage to run at least 3x as fast as the seed on one worker, and 1.7x faster
again on two. This script measures images per second on the same N camera-size JPEGs (about 12 megapixels,
upscaled from the bundled sample photos and cached in ``data/benchmarks/camera/``; above 40 the samples repeat):

(a) baseline, written the seed's way: ``keras.utils.load_img(path, target_size=(size, size))`` (a full decode,
    then a resize that squashes the photo, no crop) and ``skimage.color.rgb2lab``, one photo at a time in one
    process; nothing is written. Imports and one warm-up photo are left out of the timing.
(b) the ``preprocess`` flow with 1 Dask worker and (c) with 2, each into a fresh dataset (4 shards). The
    end-to-end figure is the flow summary's ``images/s``: the shard phase, including the start and stop of
    the local Dask cluster.

The cluster's fixed start-up cost weighs on small runs, so each flow is also run on one photo per worker and
the steady-state figure is (N - W) / (T_N - T_W), from the wall times T of the two whole flow calls.

Run as ``.venv/bin/python benchmarks/preprocess.py [--images N] [--size 256]`` from the project root. Prefect
starts its temporary server when ``PREFECT_API_URL`` is unset, as it does for the ``colorization`` command.
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
from collections.abc import Callable
from pathlib import Path

from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from colorization.atomic import atomic_path  # noqa: E402
from colorization.discover import find_images  # noqa: E402

SAMPLES = PROJECT_ROOT / "data" / "samples" / "photos"
CACHE = PROJECT_ROOT / "data" / "benchmarks" / "camera"
CAMERA_PIXELS = 12_000_000  # 4000x3000 at 4:3; every sample ends up at 8 megapixels or more
JPEG_QUALITY = 90
SHARDS = 4
AIM_SPEEDUP = 3.0  # (b) / (a)
AIM_SCALING = 1.7  # (c) / (b)


def camera_photo(sample: Path) -> Path:
    """The cached camera-size version of ``sample``, made (LANCZOS upscale, JPEG quality 90) if missing."""
    target = CACHE / sample.name
    if not target.exists():
        image = Image.open(sample).convert("RGB")
        scale = math.sqrt(CAMERA_PIXELS / (image.width * image.height))
        size = (round(image.width * scale), round(image.height * scale))
        with atomic_path(target) as temp:
            image.resize(size, Image.Resampling.LANCZOS).save(temp, quality=JPEG_QUALITY)
    return target


def build_source(folder: Path, count: int) -> list[Path]:
    """Fill ``folder`` with ``count`` links to camera-size photos, cycling through the samples."""
    samples = find_images(SAMPLES)
    folder.mkdir(parents=True)
    links = []
    for index in range(count):
        link = folder / f"{index:05d}-{samples[index % len(samples)].name}"
        link.symlink_to(camera_photo(samples[index % len(samples)]))
        links.append(link)
    return links


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


def run_flow(source: Path, dataset: Path, size: int, rows_per_shard: int, workers: int) -> tuple[float, float]:
    """One run of the preprocess flow into a fresh dataset: the summary's images/s and the call's wall seconds."""
    from flows.preprocess import preprocess

    started = time.perf_counter()
    summary = preprocess(
        source=source, dataset=dataset, size=size, rows_per_shard=rows_per_shard, workers=workers
    )
    seconds = time.perf_counter() - started
    if summary["new"] != len(find_images(source)) or summary["errors"]:
        raise RuntimeError(f"flow run on {source} did not process every photo: {summary}")
    return summary["images/s"], seconds


def measure_flow(work: Path, photos: list[Path], size: int, workers: int) -> tuple[float, float, float]:
    """End-to-end images/s of the flow on ``photos``, its wall seconds, and the steady-state images/s."""
    small = work / f"small-{workers}"
    small.mkdir()
    for photo in photos[:workers]:
        (small / photo.name).symlink_to(photo.resolve())
    _, small_seconds = run_flow(small, work / f"dataset-small-{workers}", size, 1, workers)
    rate, seconds = run_flow(
        photos[0].parent, work / f"dataset-{workers}", size, max(1, len(photos) // SHARDS), workers
    )
    return rate, seconds, (len(photos) - workers) / (seconds - small_seconds)


def verdict(ratio: float, aim: float) -> str:
    return f"{ratio:5.2f}  ({'met' if ratio >= aim else 'missed'})"


def report(size: int, count: int, baseline: float, flows: dict[int, tuple[float, float, float]]) -> None:
    """Print the machine, the command and the table of rates and ratios."""
    one, two = flows[1], flows[2]
    rows: list[tuple[str, Callable[[int], str]]] = [
        ("(a) seed baseline, 1 process", lambda i: f"{baseline:7.2f}"),
        ("(b) flow, 1 worker", lambda i: f"{one[i]:7.2f}"),
        ("(c) flow, 2 workers", lambda i: f"{two[i]:7.2f}"),
        (f"(b)/(a), aim >= {AIM_SPEEDUP}", lambda i: verdict(one[i] / baseline, AIM_SPEEDUP)),
        (f"(c)/(b), aim >= {AIM_SCALING}", lambda i: verdict(two[i] / one[i], AIM_SCALING)),
    ]
    print()
    print(f"command:  {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine:  {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    print(f"photos:   {count} JPEGs of about {CAMERA_PIXELS / 1e6:.0f} megapixels, quality {JPEG_QUALITY}, "
          f"to {size}x{size}; flows write {SHARDS} shards")
    print(f"flow wall time (whole call): 1 worker {one[1]:.1f} s, 2 workers {two[1]:.1f} s")
    print()
    print(f"{'images/s':<32}{'end-to-end':>14}{'steady-state':>16}")
    for label, cell in rows:
        print(f"{label:<32}{cell(0):>14}{cell(2):>16}")
    print()
    print("end-to-end: the flow summary (shard phase, Dask cluster start and stop included);")
    print("steady-state: (N - W) / (T_N - T_W) from whole flow calls on N and on W photos (fixed costs cancel).")
    print("The baseline has no start-up in its timing, so both of its columns are the same figure.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="number of camera-size photos (default 24)")
    parser.add_argument("--size", type=int, default=256, help="square output size in pixels (default 256)")
    args = parser.parse_args()
    if args.images < 2 * SHARDS:
        parser.error(f"--images must be at least {2 * SHARDS}")

    with tempfile.TemporaryDirectory(prefix="preprocess-benchmark-") as temp:
        work = Path(temp)
        photos = build_source(work / "source", args.images)
        for photo in photos:
            photo.read_bytes()  # every variant reads from the page cache, none from disk
        baseline = seed_baseline(photos, args.size)
        print(f"(a) seed baseline: {baseline:.2f} images/s", flush=True)
        flows = {}
        for workers in (1, 2):
            flows[workers] = measure_flow(work, photos, args.size, workers)
            print(f"flow, {workers} worker(s): {flows[workers][0]:.2f} images/s end to end", flush=True)
    report(args.size, args.images, baseline, flows)


if __name__ == "__main__":
    main()
