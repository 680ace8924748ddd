"""Edge-aware upsampling of predicted colour: the fast guided filter, guided by the photo's own lightness.

The network predicts a,b on a coarse grid (128² or 256² for the whole frame); resized bicubically to a 12 MP
photo they bleed across every edge finer than a grid cell. The guided filter (He, Sun & Tang, "Guided Image
Filtering", TPAMI 2013) models the output locally as a linear function of a guide, ``q = A·I + B``, fitted to
the input in each window; its fast variant (He & Sun, "Fast Guided Filter", arXiv:1505.00996, 2015) fits the
coefficients at low resolution, upsamples them and applies them to the full-resolution guide. Here the guide is
the photo's CIELab L, the input the predicted a,b at their own resolution: the coefficients are fitted on the
model's grid against L averaged down to it, so colour edges follow the edges of the full-resolution L.

The price is softer colour inside flat regions, where the filter averages the predicted a,b over two windows:
on the bundled photos (smooth chroma, JPEG 4:2:0) their true a,b upsampled from 64² come out closer with
bicubic (mean |Δa| + |Δb| 2.2 against 3.4 guided; ``benchmarks/upsample_quality.py``), yet to the eye (the
bison sample, from 32²) horns, legs and distant animals keep their own brown where bicubic tints them with the
grass's green, and a sharp edge between two flat colours loses most of its bleeding (``tests/test_guided.py``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from colorization.photos import lab

RADIUS = 1
"""Window radius in cells of the model's grid (1: 3x3 cells, about 3/256 of the frame), wide enough to span the
blur of bicubic colour across an edge. Each step wider smooths the colour of flat regions more (the filter
averages the predicted a,b over two windows there): on the bundled photos, upsampling their true a,b from 64²
against their full-size L, radius 1 had the lowest error, 2 and 3 rose by 25% and 40%."""

EPSILON = 1e-3
"""Regularisation for a guide scaled to 0..1 as in the paper (L / 100 here): windows whose L varies by much
less than √ε ≈ 3 L units keep the smooth predicted colour, stronger edges in L become colour edges. On the same
photos 1e-3 and 3e-3 had the lowest error; 1e-4 copies shading and texture into the colour, 1e-2 lets an edge between
regions of similar lightness bleed as bicubic does."""

GUIDE_RANGE = 100.0  # CIELab L spans 0..100; ε is relative to it


def guided_upsample(guide: np.ndarray, low: np.ndarray, radius: int = RADIUS, epsilon: float = EPSILON,
                    offset: float = 128) -> list[np.ndarray]:
    """``low`` (h, w, C), on a grid covering the same frame as ``guide`` (H, W) float L, upsampled to (H, W)
    along the guide's edges; returns C uint8 planes holding ``round(q) + offset``, clipped to 0..255 (the
    8-bit form :func:`colorization.photos.lab.lab_to_srgb_fast` reads).

    Coefficients are fitted on the low grid, interpolated bilinearly along columns once (h x W), then along
    rows and applied band by band: besides the guide and the two uint8 outputs, a 12 MP photo needs the
    coefficient rows at full width (4 x 256 x 4000 float32, 16 MB, plus as much for their steps) and
    cache-sized float32 bands.
    """
    height, width = guide.shape
    low_height, low_width = low.shape[:2]
    small_guide = np.asarray(Image.fromarray(np.ascontiguousarray(guide, np.float32), "F").resize(
        (low_width, low_height), Image.Resampling.BOX), np.float64) / GUIDE_RANGE
    slope, intercept = _coefficients(small_guide, np.asarray(low, np.float64), radius, epsilon)
    columns = _linear(width, low_width)
    row_first, _, row_weight = _linear(height, low_height)
    # each coefficient as (C, h, W), its rows at full width, and each row's step to the next (0 after the last)
    coefficients = [np.ascontiguousarray(np.moveaxis(_lerp(m, *columns, axis=1), -1, 0), np.float32)
                    for m in (slope, intercept)]
    steps = [np.diff(m, axis=1, append=m[:, -1:]) for m in coefficients]
    scale = np.float32(1 / GUIDE_RANGE)
    out = [np.empty((height, width), np.uint8) for _ in range(low.shape[2])]
    for band in lab.blocks(height):
        index, weight = row_first[band], row_weight[band, None]
        intensity = guide[band] * scale
        for channel, plane in enumerate(out):
            q = coefficients[0][channel, index] + steps[0][channel, index] * weight
            q *= intensity
            q += coefficients[1][channel, index] + steps[1][channel, index] * weight
            q += np.float32(offset + 0.5)
            np.clip(q, 0, 255, out=q)
            plane[band] = q
    return out


def _coefficients(guide: np.ndarray, source: np.ndarray, radius: int,
                  epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """The window-averaged linear coefficients (slope, intercept), each (h, w, C), of the guided filter
    (Algorithm 1 of He et al. 2013) with box windows of side 2·radius + 1."""
    side = 2 * radius + 1

    def box(planes: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(planes, (side, side, 1)[: planes.ndim], mode="reflect")

    mean_i = box(guide)[..., None]
    variance = box(guide * guide)[..., None] - mean_i * mean_i
    mean_p = box(source)
    slope = (box(guide[..., None] * source) - mean_i * mean_p) / (variance + epsilon)
    return box(slope), box(mean_p - slope * mean_i)


def _linear(size: int, low_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``size`` output positions, the two low-grid samples around it and the weight of the second:
    bilinear interpolation with pixel centres aligned as Pillow aligns them, clamped at the borders."""
    position = np.clip((np.arange(size) + 0.5) * (low_size / size) - 0.5, 0, low_size - 1)
    first = np.minimum(position.astype(np.int64), max(low_size - 2, 0))
    return first, np.minimum(first + 1, low_size - 1), (position - first).astype(np.float32)


def _lerp(plane: np.ndarray, first: np.ndarray, second: np.ndarray, weight: np.ndarray, axis: int) -> np.ndarray:
    """``plane`` interpolated linearly along ``axis`` at the positions given by :func:`_linear`."""
    shape = [1] * plane.ndim
    shape[axis] = len(weight)
    start = np.take(plane, first, axis=axis)
    return start + (np.take(plane, second, axis=axis) - start) * weight.reshape(shape)
