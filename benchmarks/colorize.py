"""Colorize on camera-size photos: where the time goes, speed against the seed's way, and memory.

The issue asks that everything besides the network (decode, colour conversion, upsampling, encode) take at
most 30% of the per-photo time on a 12 MP photo, that the stage run at least 3x as fast as a seed-style
full-resolution path, and that peak memory stay flat (and under 2.5 GB) whatever the archive size.

On N camera-size greyscale JPEGs (about 12 megapixels, upscaled from the bundled samples, see ``camera.py``), with the
paper's model (width 1.0 at 256x256) and random weights (speed does not depend on weight values):

(a) per-photo split: the library steps run one after the other in this process — prepare (DCT-scaled decode
    to model size), network (Xception + fusion model, in batches), render (full decode, L + upsampled ab to
    sRGB, JPEG encode, write) — so each is timed alone;
(b) seed-style path, one photo at a time: full decode, skimage ``rgb2lab`` at full size, resize L to 256,
    one ``predict`` per photo for Xception and the model, skimage resize of ab back, ``lab2rgb``, encode;
(c) the ``colorize`` flow end to end (Dask workers for decode/render, batches for the network);
(d) peak memory (RSS of the flow process and its Dask workers, sampled every 0.2 s) of the flow on
    ``--small`` and ``--large`` archives, each in a fresh process;
(e) render with ``upsample="guided"`` against ``"bicubic"`` on the same photos and a,b, alternating photo by
    photo so that both see the same load: the whole render and its pixel work alone (``colorize_pixels``);
(f) render against its I/O floor, alternating photo by photo: the floor is Pillow's full decode of the photo
    and a JPEG encode of it at the output's settings (``images.SAVE_OPTIONS``); the grey photos' lookup table
    (``lab.grey_to_srgb``) is built before, its one-off cost per process printed beside; and the floor of a
    colour result: the same decode, and a JPEG encode of the colour photo render makes (three channels, where
    the grey photo's own encode has one; handed to Pillow as render hands it, RGBX without a copy).

The a,b that (e) and (f) render are each photo's own colours at the default model's 128x128 (``--ab own``):
what a perfect model predicts, smooth as real predictions are. Render's cost depends on it: the lookup table
is read where a,b lead and the encoder compresses what it is given, and noise (``--ab noise``, normal with
sd 20 at 256x256, what this script used before) costs a third more than a real model's predictions.

Run as ``.venv/bin/python benchmarks/colorize.py [--images 24] [--small 20] [--large 200] [--workers 2]``;
``--split-only`` prints (a), (e) and (f) alone and needs no Prefect or Dask (``benchmarks/gpu.sh`` runs it on a GPU
machine); ``--floor-only`` prints (f) alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from camera import build_source  # benchmarks/ is on sys.path when run as a script

SIZE = 256
BATCH = 8


def make_model(folder: Path) -> Path:
    """The paper-size fusion model with random weights, carded for the seeded random Xception."""
    from colorization.network.extractor import load_extractor
    from colorization.network.model import build_model, save_trained

    extractor = load_extractor("none")
    save_trained(build_model(SIZE, extractor.dim, 1.0), folder, {"extractor_id": extractor.id, "size": SIZE,
                                                                 "width": 1.0, "random_extractor": True,
                                                                 "embedding_shape": list(extractor.shape)})
    return folder


def split(paths: list[Path], model_dir: Path, out: Path) -> dict:
    """Seconds per photo of each library step, run one after the other."""
    from colorization.colorize.render import prepare, render
    from colorization.network.colorizer import Colorizer

    colorizer = Colorizer.load(model_dir)
    colorizer.predict_ab(np.zeros((BATCH, SIZE, SIZE), np.uint8), BATCH)  # compile once, outside the timing
    times = {"prepare": 0.0, "network": 0.0, "render": 0.0}
    for start in range(0, len(paths), BATCH):
        batch = paths[start : start + BATCH]
        began = time.perf_counter()
        prepared = [prepare(p.read_bytes(), p.name, SIZE, 10**9) for p in batch]
        times["prepare"] += time.perf_counter() - began
        began = time.perf_counter()
        ab = colorizer.predict_ab(np.stack([p.lightness for p in prepared]), BATCH)
        times["network"] += time.perf_counter() - began
        began = time.perf_counter()
        for path, ab_small in zip(batch, ab):
            render(path.read_bytes(), path.name, ab_small, out / path.name, 10**9)
        times["render"] += time.perf_counter() - began
    return {step: seconds / len(paths) for step, seconds in times.items()}


def colours(paths: list[Path], field: str) -> list[np.ndarray]:
    """The a,b to render each photo with (module docstring): its colour original's at 128x128, or noise."""
    from camera import sample_of

    from colorization.photos import images, lab

    if field == "noise":
        return [np.random.default_rng(0).normal(0, 20, (SIZE, SIZE, 2)).astype(np.float32)] * len(paths)
    own = []
    for path in paths:
        rgb = images.fit_square(images.load(sample_of(path), min_side=128).image, 128)
        own.append(lab.quantize(lab.rgb_to_lab(rgb))[1].astype(np.float32))
    return own


def upsampling(paths: list[Path], out: Path, field: str) -> dict:
    """Seconds per photo of render and of its pixel work, for each upsampling, alternating photo by photo."""
    from PIL import Image

    from colorization.colorize.render import colorize_pixels, render

    times = {(mode, part): 0.0 for mode in ("bicubic", "guided") for part in ("render", "pixels")}
    for path, ab in zip(paths, colours(paths, field)):
        pixels = np.asarray(Image.open(path))
        for mode in ("bicubic", "guided"):
            began = time.perf_counter()
            render(path.read_bytes(), path.name, ab, out / f"{mode}-{path.name}", 10**9, upsample=mode)
            times[mode, "render"] += time.perf_counter() - began
            began = time.perf_counter()
            colorize_pixels(pixels, ab, mode)
            times[mode, "pixels"] += time.perf_counter() - began
    return {key: seconds / len(paths) for key, seconds in times.items()}


def print_upsampling(times: dict) -> None:
    print("(e) per photo, render with each upsampling (alternating photo by photo):")
    for part, label in (("render", "render (decode, colour, encode, write)"), ("pixels", "colorize_pixels alone")):
        bicubic, guided = times["bicubic", part], times["guided", part]
        print(f"    {label:<40} bicubic {bicubic:6.3f} s, guided {guided:6.3f} s: guided/bicubic = "
              f"{guided / bicubic:.2f} (+{guided - bicubic:.3f} s)")


def floor_and_render(paths: list[Path], out: Path, field: str) -> dict:
    """Seconds per photo of the I/O floor (full decode + JPEG encode at the output's settings) and of render,
    alternating photo by photo, and of render's colour conversion by table lookup and band by band."""
    import io

    from PIL import Image

    from colorization.colorize.render import render, upsample_ab
    from colorization.photos import images, lab

    times = {"floor": 0.0, "render": 0.0, "table lookup": 0.0, "band by band": 0.0, "colour floor": 0.0}
    ab_all = colours(paths, field)
    render(paths[0].read_bytes(), paths[0].name, ab_all[0], out / "warm-up.jpg", 10**9)  # as a worker's 2nd photo
    for path, ab in zip(paths, ab_all):
        began = time.perf_counter()
        with Image.open(path) as photo:
            photo.load()
            decoded = time.perf_counter()
            photo.save(io.BytesIO(), "JPEG", **images.SAVE_OPTIONS["JPEG"])
            times["floor"] += time.perf_counter() - began
            grey = np.asarray(photo)
        times["colour floor"] += decoded - began
        began = time.perf_counter()
        render(path.read_bytes(), path.name, ab, out / f"floor-{path.name}", 10**9)
        times["render"] += time.perf_counter() - began
        a, b = upsample_ab(ab, grey.shape[::-1])
        conversions = {"band by band": lambda: lab.lab_to_srgb_fast(grey, a, b, ab_offset=lab.AB_OFFSET),
                       "table lookup": lambda: lab.grey_to_srgb(grey, a, b, pad=True)}  # last: render's own result
        for name, convert in conversions.items():
            began = time.perf_counter()
            colour = convert()
            times[name] += time.perf_counter() - began
        began = time.perf_counter()
        images.as_image(colour).save(io.BytesIO(), "JPEG", **images.SAVE_OPTIONS["JPEG"])
        times["colour floor"] += time.perf_counter() - began
    return {step: seconds / len(paths) for step, seconds in times.items()}


def build_grey_table() -> float:
    """Seconds to build the grey photos' lookup table, as a Dask worker's first photo does; every later step
    of this process finds it built."""
    from colorization.photos import lab

    began = time.perf_counter()
    lab.grey_to_srgb(*np.zeros((3, 1, 1), np.uint8))
    return time.perf_counter() - began


def print_floor(times: dict, table: float) -> None:
    ratio = times["render"] / times["floor"]
    print(f"(f) per photo: I/O floor (full decode + JPEG encode) {times['floor']:.3f} s, render "
          f"{times['render']:.3f} s: render/floor = {ratio:.2f} (aim <= 2: {'met' if ratio <= 2 else 'missed'})")
    print(f"    its colour conversion: table lookup {times['table lookup']:.3f} s, band by band (before) "
          f"{times['band by band']:.3f} s: {times['band by band'] / times['table lookup']:.2f}x; the table is built "
          f"once per process in {table:.2f} s")
    print(f"    the floor of a colour result (decode the grey photo, encode the colour one) "
          f"{times['colour floor']:.3f} s: render/that = {times['render'] / times['colour floor']:.2f}")


def seed_style(paths: list[Path], model_dir: Path, out: Path) -> float:
    """Images/s of the seed's full-resolution way, one photo at a time with skimage conversions."""
    from PIL import Image
    from skimage import color, transform

    from colorization.network.colorizer import Colorizer
    from colorization.network.extractor import grey_input

    colorizer = Colorizer.load(model_dir)

    def colour(path: Path) -> None:
        rgb = np.asarray(Image.open(path).convert("RGB")) / 255.0  # the seed read every photo as RGB
        lab = color.rgb2lab(rgb)
        small = transform.resize(lab[..., 0], (SIZE, SIZE))
        stored = np.rint(small * 2.55).astype(np.uint8)[None]
        embedding = colorizer.extractor.model.predict(grey_input(stored), verbose=0)
        ab = colorizer.model.predict({"L": stored[..., None].astype(np.float32), "embedding": embedding}, verbose=0)
        lab[..., 1:] = transform.resize(ab[0] * 128, lab.shape[:2])
        result = (np.clip(color.lab2rgb(lab), 0, 1) * 255).astype(np.uint8)
        Image.fromarray(result).save(out / path.name, quality=95)

    colour(paths[0])
    began = time.perf_counter()
    for path in paths:
        colour(path)
    return len(paths) / (time.perf_counter() - began)


def run_flow(source: Path, model_dir: Path, output: Path, workers: int) -> dict:
    """The colorize flow in this process; returns its summary."""
    from flows.colorize import colorize

    return colorize(input=source, output=output, model=model_dir, batch_size=BATCH, workers=workers)


def peak_memory(count: int, model_dir: Path, work: Path, workers: int) -> tuple[float, float]:
    """Peak RSS (GB) of a fresh process running the flow on ``count`` photos, and its images/s."""
    source = work / f"memory-{count}"
    build_source(source, count, grey=True)
    command = [sys.executable, __file__, "--flow-only", str(source), str(model_dir), str(work / f"out-{count}"),
               str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               cwd=Path(__file__).parent)
    peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    summary = json.loads(process.stdout.read().strip().splitlines()[-1])
    return peak / 1e9, summary["images/s"]


def print_split(args: argparse.Namespace, steps: dict) -> None:
    """The setup and figure (a): seconds per photo of each step and the share of everything but the network."""
    from colorization.network import device

    total = sum(steps.values())
    rest = steps["prepare"] + steps["render"]
    print(f"command:  {shlex.join([sys.executable, *sys.argv])}")
    print(f"machine:  {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
          f"{device.describe()}, load {os.getloadavg()[0]:.2f} at the end")
    print(f"photos:   {args.images} greyscale JPEGs of about 12 MP; model width 1.0 at {SIZE}x{SIZE}, random weights\n")
    print("(a) per photo, steps one after the other:")
    for step, seconds in steps.items():
        print(f"    {step:<8} {seconds:6.3f} s  ({100 * seconds / total:4.1f}%)")
    print(f"    rest (everything but the network): {100 * rest / total:.1f}% of {total:.3f} s  (aim <= 30%: "
          f"{'met' if rest / total <= 0.30 else 'missed'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="photos for the split, seed and flow figures")
    parser.add_argument("--seed-images", type=int, default=6, help="photos for the (slow) seed-style path")
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--large", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--split-only", action="store_true", help="measure (a), (e) and (f) only: no flow")
    parser.add_argument("--floor-only", action="store_true", help="measure (f) only: render against its floor")
    parser.add_argument("--ab", choices=("own", "noise"), default="own",
                        help="a,b rendered in (e) and (f): each photo's own colours, or noise")
    parser.add_argument("--flow-only", nargs=4, metavar=("SOURCE", "MODEL", "OUTPUT", "WORKERS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flow_only:
        source, model_dir, output, workers = args.flow_only
        print(json.dumps(run_flow(Path(source), Path(model_dir), Path(output), int(workers))))
        return 0

    with tempfile.TemporaryDirectory(prefix="colorize-bench-") as tmp:
        work = Path(tmp)
        table = build_grey_table()
        photos = build_source(work / "photos", args.images, grey=True)
        for folder in ("split", "seed", "flow"):
            (work / folder).mkdir()
        floor = floor_and_render(photos, work / "split", args.ab)
        if args.floor_only:
            print_floor(floor, table)
            return 0
        model_dir = make_model(work / "model")
        steps = split(photos, model_dir, work / "split")
        upsample_times = upsampling(photos, work / "split", args.ab)
        if args.split_only:
            print_split(args, steps)
            print_upsampling(upsample_times)
            print_floor(floor, table)
            return 0
        seed = seed_style(photos[: args.seed_images], model_dir, work / "seed")
        flow = run_flow(work / "photos", model_dir, work / "flow", args.workers)
        small = peak_memory(args.small, model_dir, work, args.workers)
        large = peak_memory(args.large, model_dir, work, args.workers)

    print_split(args, steps)
    print_upsampling(upsample_times)
    print_floor(floor, table)
    stage_speed = flow["images/s"]
    print(f"(b) seed-style full-resolution path: {seed:.3f} images/s ({args.seed_images} photos)")
    print(f"(c) colorize flow, {args.workers} workers: {stage_speed:.3f} images/s; (c)/(b) = {stage_speed / seed:.2f} "
          f"(aim >= 3: {'met' if stage_speed / seed >= 3 else 'missed'})")
    print(f"(d) peak RSS: {small[0]:.2f} GB for {args.small} photos ({small[1]:.3f} images/s), {large[0]:.2f} GB for "
          f"{args.large} photos ({large[1]:.3f} images/s); ratio {large[0] / small[0]:.2f} "
          f"(aim: flat and <= 2.5 GB: {'met' if large[0] <= 2.5 and large[0] / small[0] < 1.25 else 'missed'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
