"""Camera-size test photos for the benchmarks: the bundled samples upscaled to about 12 megapixels, cached."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from colorization.atomic import atomic_path
from colorization.photos.discover import find_images

PROJECT_ROOT = Path(__file__).resolve().parents[1]

SAMPLES = PROJECT_ROOT / "data" / "samples" / "photos"
CACHE = PROJECT_ROOT / "data" / "benchmarks" / "camera"
CAMERA_PIXELS = 12_000_000  # 4000x3000 at 4:3; every sample ends up at 8 megapixels or more
JPEG_QUALITY = 90


def camera_photo(sample: Path, grey: bool = False) -> Path:
    """The cached camera-size version of ``sample``, made (LANCZOS upscale, JPEG quality 90) if missing;
    with ``grey``, a one-channel greyscale JPEG like a scanned black-and-white print."""
    target = CACHE / ("grey" if grey else "") / sample.name
    if not target.exists():
        image = Image.open(sample).convert("L" if grey else "RGB")
        scale = math.sqrt(CAMERA_PIXELS / (image.width * image.height))
        size = (round(image.width * scale), round(image.height * scale))
        with atomic_path(target) as temp:
            image.resize(size, Image.Resampling.LANCZOS).save(temp, quality=JPEG_QUALITY)
    return target


def build_source(folder: Path, count: int, grey: bool = False) -> list[Path]:
    """Fill ``folder`` with ``count`` links to camera-size photos, cycling through the samples."""
    samples = find_images(SAMPLES)
    folder.mkdir(parents=True)
    links = []
    for index in range(count):
        sample = samples[index % len(samples)]
        link = folder / f"{index:05d}-{sample.name}"
        link.symlink_to(camera_photo(sample, grey))
        links.append(link)
    return links


def sample_of(photo: Path) -> Path:
    """The bundled sample a photo of :func:`build_source` was made from."""
    return SAMPLES / photo.resolve().name
