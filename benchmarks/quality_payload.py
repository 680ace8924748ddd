"""Pack a training photo set and ImageNet weights small enough for one call of the device tool (64 MiB in all).

``benchmarks/gpu_quality.sh`` trains QUALITY.md's models on a lent GPU, where neither the photos nor the weights
are. Both are too large to travel as they are (1,231 photos of ``../shared/photos``: 111 MB; Xception without its
top: 84 MB), so this writes what the GPU run needs and nothing more:

- each photo as preprocess would see it at ``--size`` with the default ``--framing whole`` (decoded, oriented,
  squeezed into the square), saved as WebP at ``--quality``; photos preprocess would leave out as grey are left
  out here too;
- the weights rounded to float16 and xz-compressed; ``gpu_quality.sh`` unpacks a ``.xz`` file itself.
  Evaluate with the same float16 file here (``xz -dk``), so that the extractor id matches the model's card.

Run as ``.venv/bin/python benchmarks/quality_payload.py PHOTOS WEIGHTS OUT [--size 256] [--quality 85]``, then
carry ``OUT`` (a folder git ignores) to the device and there run
``bash benchmarks/gpu_quality.sh OUT/photos OUT/xception16.weights.h5.xz ...``.
"""

from __future__ import annotations

import argparse
import lzma
import sys
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from colorization.errors import ImageError
from colorization.photos import images, lab
from colorization.photos.discover import find_images

LIMIT = 64 * 2**20  # what one device call carries, the repository included


def pack_photos(photos: Path, out: Path, size: int, quality: int) -> tuple[int, int]:
    """The colour photos of ``photos`` as ``size`` squares in WebP; returns (written, left out)."""
    out.mkdir(parents=True, exist_ok=True)
    written = left_out = 0
    for path in find_images(photos):
        try:
            photo = images.decode(images.read_bytes(path), path, min_side=size)
        except ImageError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            left_out += 1
            continue
        square = images.fit_square(photo.image, size, "whole")
        if lab.is_monochrome(*lab.quantize(lab.rgb_to_lab(square))):
            left_out += 1
            continue
        name = path.relative_to(photos).with_suffix(".webp").as_posix().replace("/", "__")
        Image.fromarray(square).save(out / name, "WEBP", quality=quality)
        written += 1
    return written, left_out


def halve_weights(source, target) -> None:
    """Copy a Keras ``.weights.h5`` (a path or a file object) to ``target`` with every float32 array rounded to
    float16: half the bytes, and the arrays load into the float32 model as they are."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        _copy_halved(src, dst)


def _copy_halved(src: h5py.Group, dst: h5py.Group) -> None:
    dst.attrs.update(src.attrs)
    for name, item in src.items():
        if isinstance(item, h5py.Group):
            _copy_halved(item, dst.create_group(name))
            continue
        value = item[()]
        dst.create_dataset(name, data=value.astype(np.float16) if value.dtype == np.float32 else value)
        dst[name].attrs.update(item.attrs)


def pack_weights(weights: Path, target: Path) -> None:
    """``weights`` halved (:func:`halve_weights`) and xz-compressed into ``target``."""
    halved = target.with_suffix("")
    halve_weights(weights, halved)
    with halved.open("rb") as raw, lzma.open(target, "wb", preset=9) as packed:
        while chunk := raw.read(2**20):
            packed.write(chunk)
    halved.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("weights", type=Path, help="ImageNet Xception without its top (.weights.h5)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args()
    written, left_out = pack_photos(args.photos, args.out / "photos", args.size, args.quality)
    pack_weights(args.weights, args.out / "xception16.weights.h5.xz")
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{written} photos ({left_out} left out), weights, {total / 2**20:.1f} MiB in {args.out}: "
          f"{(LIMIT - total) / 2**20:.1f} MiB of a device call's {LIMIT / 2**20:.0f} left for repository, wheels")
    return 0 if total < LIMIT else 1


if __name__ == "__main__":
    raise SystemExit(main())
