"""Photo-side work of colouring, free of any deep-learning framework so that Dask workers stay light.

A photo goes through three steps so that only small arrays ever travel between processes:

1. :func:`prepare` decodes it at a reduced scale (DCT scaling for JPEGs) into the model's small L, and tells
   whether it is already in colour;
2. :class:`colorization.network.colorizer.Colorizer` predicts a,b for a batch of small L;
3. :func:`render` decodes the original at full size, takes its exact L, upsamples the predicted a,b
   (bicubic, or guided by the full-size L: :mod:`colorization.colorize.guided`), converts L+ab to sRGB and encodes the
   result like the original (format, EXIF, ICC, DPI).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from colorization.atomic import atomic_path
from colorization.colorize import guided
from colorization.photos import images, lab

Upsample = Literal["guided", "bicubic"]
"""How predicted a,b reach full size: ``bicubic`` resizing, or ``guided`` by the photo's L (edge-aware)."""


@dataclass
class Prepared:
    """A photo ready for the network: its small stored L and whether it already has colour."""

    name: str
    lightness: np.ndarray
    colour: bool


def prepare(data: bytes, name: str, size: int, max_pixels: int, grey_threshold: float = lab.GREY_THRESHOLD
            ) -> Prepared:
    """The model-size L of a photo (whole frame squeezed to ``size``x``size``) and its colour flag."""
    photo = images.decode(data, name, min_side=size, max_pixels=max_pixels)
    return prepare_image(photo.image, name, size, grey_threshold)


def prepare_image(image: Image.Image, name: str, size: int, grey_threshold: float = lab.GREY_THRESHOLD) -> Prepared:
    """:func:`prepare` of a decoded 8-bit sRGB image, for photos that are already in memory (evaluation)."""
    lightness, ab = lab.quantize(lab.rgb_to_lab(images.fit_square(image, size)))
    return Prepared(name, lightness, not lab.is_monochrome(lightness, ab, grey_threshold))


def upsample_ab(ab: np.ndarray, size: tuple[int, int], out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Predicted a,b (h, w, 2) resized bicubically to ``size`` = (width, height), as two uint8 planes holding
    ``a + 128`` and ``b + 128``: whole ab units, the precision of the shards the model learnt from, which
    OpenCV resizes to 12 MP in a few milliseconds (Pillow took 60 ms a plane). ``out``: planes to write into."""
    planes = np.clip(np.rint(ab) + lab.AB_OFFSET, 0, 255).astype(np.uint8)
    return tuple(cv2.resize(np.ascontiguousarray(planes[..., c]), size, dst=None if out is None else out[c],
                            interpolation=cv2.INTER_CUBIC) for c in range(2))


def colorize_pixels(pixels: np.ndarray, ab_small: np.ndarray, upsample: Upsample = "bicubic", pad: bool = False,
                    reuse: bool = False) -> np.ndarray:
    """Full-resolution colour of sRGB (h, w, 3) or grey (h, w) uint8 pixels, or of a float CIELab L plane
    (h, w): their own L with the predicted a,b upsampled to their size. The one Lab -> sRGB conversion of
    results: colorize writes it to files, evaluation and training score it in memory.

    ``guided`` needs L as a float plane (the guide), which grey 8-bit photos otherwise avoid. With ``pad``, a
    grey 8-bit photo's result comes as RGBX (h, w, 4), which :func:`images.as_image` wraps without a copy. With
    ``reuse`` as well, that result and its upsampled a,b are written into memory this thread reuses at its next
    call (:func:`_scratch`): the result must be used up before then, as :func:`render` does.
    """
    height, width = pixels.shape[:2]
    scratch = _scratch(pixels.shape) if reuse and pad and pixels.dtype == np.uint8 else None
    if upsample == "guided":
        lightness = pixels if pixels.dtype != np.uint8 else lab.lightness(pixels)
        a, b = guided.guided_upsample(lightness, ab_small, offset=lab.AB_OFFSET)
    else:
        lightness = pixels if pixels.ndim == 2 else lab.lightness(pixels)
        a, b = upsample_ab(ab_small, (width, height), None if scratch is None else scratch[1:])
    if pixels.ndim == 2 and pixels.dtype == np.uint8 and a.dtype == np.uint8:  # a grey photo: the lookup table
        return lab.grey_to_srgb(pixels, a, b, pad, None if scratch is None else scratch[0])
    return lab.lab_to_srgb_fast(lightness, a, b, ab_offset=lab.AB_OFFSET)


def render(data: bytes, name: str, ab_small: np.ndarray, target: Path, max_pixels: int,
           thumbnail: int = 0, upsample: Upsample = "bicubic") -> tuple[np.ndarray, np.ndarray] | None:
    """Colour one photo at full size and write it to ``target`` atomically, in the original's format.

    Returns (before, after) thumbnails of at most ``thumbnail`` pixels when asked, for galleries.
    """
    photo = images.decode(data, name, max_pixels=max_pixels, keep_grey=True)
    result = images.as_image(colorize_pixels(images.pixels(photo.image), ab_small, upsample, pad=True, reuse=True))
    encoded = images.encode_like(result, photo)
    with atomic_path(target) as temp:
        temp.write_bytes(encoded)
    if not thumbnail:
        return None
    return _thumbnail(photo.image, thumbnail), _thumbnail(result, thumbnail)


REUSED_MAX_PIXELS = 50_000_000  # grey photos up to this size render into memory kept by each thread
_kept = threading.local()


def _scratch(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The RGBX result and the a and b planes of a grey photo of ``shape``, carved from one buffer that each
    thread keeps from one render to the next: fresh arrays (72 MB for 12 MP) cost render ~8 ms of page faults
    a photo. None for colour photos and above :data:`REUSED_MAX_PIXELS`."""
    if len(shape) != 2 or shape[0] * shape[1] > REUSED_MAX_PIXELS:
        return None
    pixels = shape[0] * shape[1]
    memory = getattr(_kept, "memory", None)
    if memory is None or len(memory) < 6 * pixels:
        memory = _kept.memory = np.empty(6 * pixels, np.uint8)
    return (memory[: 4 * pixels].reshape(*shape, 4), memory[4 * pixels : 5 * pixels].reshape(shape),
            memory[5 * pixels : 6 * pixels].reshape(shape))


def _thumbnail(image: Image.Image, side: int) -> np.ndarray:
    small = image.convert("RGB")
    small.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return np.asarray(small)


def file_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()
