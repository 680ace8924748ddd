"""Evaluation: colour photos whose originals are known, exactly as colorize would, and score the results.

A colour photo is decoded and resized (its longer side at most ``long_side``, so evaluation stays fast), turned
into its grey baseline (its L with a = b = 0: the grey photo a user would bring), then coloured by colorize's
own steps — :func:`render.prepare_image` for the model's small L, the model's ``predict_ab``, and
:func:`render.colorize_pixels` at the evaluation size — and the result is compared with the original.
Nothing here imports a deep-learning framework at run time: the model comes in loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from colorization.colorize import render
from colorization.evaluation import metrics
from colorization.photos import images, lab

if TYPE_CHECKING:
    from colorization.network.colorizer import Colorizer


@dataclass
class Sample:
    """One colour photo at evaluation size and its grey baseline (both 8-bit sRGB, h x w x 3)."""

    name: str
    original: np.ndarray
    grey: np.ndarray

    def lightness(self, size: int) -> np.ndarray:
        """The model-size L of the grey photo, as colorize's :func:`render.prepare` computes it."""
        return render.prepare_image(Image.fromarray(self.grey), self.name, size).lightness

    def colour(self, ab_small: np.ndarray, upsample: render.Upsample = "bicubic") -> np.ndarray:
        """The grey photo coloured with predicted a,b, by colorize's own pixel work."""
        return render.colorize_pixels(self.grey, ab_small, upsample)


def load_sample(data: bytes, name: str, long_side: int, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                grey_threshold: float = lab.GREY_THRESHOLD) -> Sample | None:
    """The photo as a :class:`Sample`, or None when it is grey or toned (nothing to score colour against).

    Unreadable files raise :class:`colorization.errors.ImageError`. The photo is never enlarged.
    """
    image = images.decode(data, name, min_side=long_side, max_pixels=max_pixels).image
    if max(image.size) > long_side:
        scale = long_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    original = np.asarray(image)
    if lab.is_monochrome(*lab.quantize(lab.rgb_to_lab(original)), grey_threshold):
        return None
    return Sample(name, original, metrics.grey_baseline(original))


def colour_samples(model: Colorizer, samples: list[Sample], batch_size: int,
                   upsample: render.Upsample = "bicubic") -> list[np.ndarray]:
    """Colour a batch of samples with ``model``, in one network batch of at most ``batch_size``."""
    return colour_samples_at(model, samples, batch_size, [model.saturation], upsample)[0]


def colour_samples_at(model: Colorizer, samples: list[Sample], batch_size: int, saturations: Sequence[float],
                      upsample: render.Upsample = "bicubic") -> list[list[np.ndarray]]:
    """The samples coloured at each of ``saturations`` in place of the model's own, from one prediction."""
    ab = model.predict_ab(np.stack([s.lightness(model.size) for s in samples]), batch_size)
    return [[sample.colour(ab_small * np.float32(saturation / model.saturation), upsample)
             for sample, ab_small in zip(samples, ab)] for saturation in saturations]

