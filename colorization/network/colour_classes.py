"""Colour classes of Zhang, Isola & Efros 2016, *Colorful Image Colorization* (ECCV; arXiv:1603.08511).

Instead of regressing a,b (whose mean-squared error rewards the faded average of the plausible colours), the
network predicts a distribution over quantised a,b. This module holds the numpy side: the bins and the
soft-encoded targets. Pure numpy, no framework.

**Bins** (:func:`ab_bins`): centres of a 10-unit grid, a and b multiples of 10 in [-110, 110], kept when their
cell (the square of side 10 around the centre) holds the a,b of some 8-bit sRGB colour, at any L. That is
exactly the set of bins that real pixels fall in: **Q = 261**. The a,b of the whole sRGB gamut is found from the
surface of the RGB cube (6 x 256 x 256 colours), whose projection on the a,b plane is the whole gamut's.
Zhang et al. report 313 "in-gamut" bins; their exact criterion is not published (keeping the centres that are
themselves in gamut for some L gives only 225). Pixels never fall into the extra bins, so they only widen the
softmax.

**Soft encoding** (:func:`soft_encode`): a pixel's a,b is spread over its 5 nearest bins with Gaussian weights
(sigma = 5 a,b units), normalised to sum to 1 (the paper's section 2.1). Stored a,b are integers in
[-128, 127], so :func:`encoding_table` encodes each of the 65,536 possible pairs once and training only looks
them up.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from colorization.photos import lab

GRID = 10
AB_LIMIT = 110
NEIGHBOURS = 5
SIGMA = 5.0
DEFAULT_TEMPERATURE = 0.38  # the paper's annealed-mean temperature
_STORED = np.arange(-128, 128)  # every a (and b) value a shard can hold


@cache
def ab_bins() -> np.ndarray:
    """The (Q, 2) float32 a,b centres of the in-gamut bins, sorted by a then b (see the module docstring)."""
    levels = np.arange(256, dtype=np.uint8)
    u, v = (x.ravel() for x in np.meshgrid(levels, levels, indexing="ij"))
    surface = []
    for level in (0, 255):
        fixed = np.full_like(u, level)
        surface += [np.stack(face, axis=1) for face in ((fixed, u, v), (u, fixed, v), (u, v, fixed))]
    ab = lab.rgb_to_lab(np.concatenate(surface))[:, 1:]
    cells = np.unique(np.clip(np.rint(ab / GRID), -AB_LIMIT // GRID, AB_LIMIT // GRID).astype(np.int32), axis=0)
    return (cells * GRID).astype(np.float32)


def soft_encode(
    ab: np.ndarray, neighbours: int = NEIGHBOURS, sigma: float = SIGMA, chunk: int = 16384
) -> tuple[np.ndarray, np.ndarray]:
    """The ``neighbours`` nearest bins of each a,b (..., 2), nearest first, as indices into :func:`ab_bins`
    (..., k) int32, and their Gaussian weights (..., k) float32, which sum to 1."""
    bins = ab_bins()
    flat = np.asarray(ab, np.float32).reshape(-1, 2)
    indices = np.empty((len(flat), neighbours), np.int32)
    weights = np.empty((len(flat), neighbours), np.float32)
    for start in range(0, len(flat), chunk):
        part = flat[start : start + chunk]
        squared = ((part[:, None, :] - bins[None, :, :]) ** 2).sum(axis=-1)
        nearest = np.argpartition(squared, neighbours - 1, axis=1)[:, :neighbours]
        distances = np.take_along_axis(squared, nearest, axis=1)
        order = np.argsort(distances, axis=1, kind="stable")
        nearest, distances = np.take_along_axis(nearest, order, 1), np.take_along_axis(distances, order, 1)
        gaussian = np.exp(-(distances - distances[:, :1]) / (2 * sigma**2))  # shifted: same ratios, no underflow
        indices[start : start + chunk] = nearest
        weights[start : start + chunk] = gaussian / gaussian.sum(axis=1, keepdims=True)
    shape = np.shape(ab)[:-1] + (neighbours,)
    return indices.reshape(shape), weights.reshape(shape)


@cache
def encoding_table() -> tuple[np.ndarray, np.ndarray]:
    """:func:`soft_encode` of every stored a,b pair: indices and weights (65536, k), row :func:`table_key`."""
    a, b = np.meshgrid(_STORED, _STORED, indexing="ij")
    indices, weights = soft_encode(np.stack([a.ravel(), b.ravel()], axis=1))
    indices.setflags(write=False)
    weights.setflags(write=False)
    return indices, weights


def table_key(ab):
    """The :func:`encoding_table` row of stored a,b (..., 2) int32 in [-128, 127]: a numpy array, or a tensor
    (the loss computes it on the accelerator with the same arithmetic)."""
    return (ab[..., 0] + 128) * 256 + (ab[..., 1] + 128)


def nearest_bin(ab: np.ndarray) -> np.ndarray:
    """The index of the nearest bin of each stored a,b (..., 2)."""
    return encoding_table()[0][table_key(np.asarray(ab, np.int32)), 0]
