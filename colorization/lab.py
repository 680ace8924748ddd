"""CIELab conversion, quantisation for storage, and colour statistics.

Storage quantisation: L in [0, 100] is stored as uint8 on 0..255; a and b are rounded and clipped to int8.
The model predicts ``ab / 128`` through a tanh.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
from skimage import color

AB_SCALE = 128.0
L_SCALE = 255.0 / 100.0


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """8-bit sRGB (..., 3) to float32 CIELab (D65)."""
    return color.rgb2lab(rgb).astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELab (..., 3) to 8-bit sRGB, out-of-gamut colours clipped (silently: predictions often leave the gamut)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Conversion from CIE-LAB", category=UserWarning)
        rgb = color.lab2rgb(lab)
    return np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def quantize(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float Lab (..., 3) to storage form: L as uint8 (..., ) and ab as int8 (..., 2)."""
    lightness = np.rint(np.clip(lab[..., 0], 0.0, 100.0) * L_SCALE).astype(np.uint8)
    ab = np.rint(np.clip(lab[..., 1:], -128.0, 127.0)).astype(np.int8)
    return lightness, ab


def dequantize(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Storage form back to float32 Lab (..., 3); the inverse of :func:`quantize`."""
    out = np.empty(lightness.shape + (3,), np.float32)
    out[..., 0] = lightness / np.float32(L_SCALE)
    out[..., 1:] = ab
    return out


@cache
def _grey_lut() -> np.ndarray:
    """The sRGB grey level of each stored L value (a = b = 0): 256 entries."""
    lab = np.zeros((256, 3), np.float64)
    lab[:, 0] = np.arange(256) / L_SCALE
    return lab_to_rgb(lab)[:, 0]


def lightness_to_grey(lightness: np.ndarray) -> np.ndarray:
    """Stored L (uint8) to the 8-bit grey sRGB value a viewer shows for it (exact, via a lookup table)."""
    return _grey_lut()[lightness]


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of an 8-bit RGB image; 0 for grey, above ~60 very colourful."""
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def chroma_spread(lightness: np.ndarray, ab: np.ndarray) -> float:
    """Chroma that a single tone curve cannot explain, in ab units (98th percentile).

    Each pixel's ab is compared with the mean ab of pixels of similar lightness (32 bins). Grey photos score 0;
    so do sepia, selenium or cyanotype prints, whose tint is a function of lightness. Colour photos spread far
    beyond: on the bundled photos the least colourful scores above 3, while toned prints stay below 2.
    """
    bins = lightness.reshape(-1) >> 3
    flat = ab.reshape(-1, 2).astype(np.float32)
    counts = np.maximum(np.bincount(bins, minlength=32), 1)
    tone = np.stack([np.bincount(bins, flat[:, i], minlength=32) / counts for i in (0, 1)], axis=1)
    return float(np.percentile(np.hypot(*(flat - tone[bins]).T), 98))


def is_monochrome(lightness: np.ndarray, ab: np.ndarray, threshold: float = 2.5) -> bool:
    """Whether a photo is grey or toned (sepia and the like): :func:`chroma_spread` below ``threshold``."""
    return chroma_spread(lightness, ab) < threshold
