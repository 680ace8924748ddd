"""How one photo's embedding values are laid out: a vector ``(dim,)``, a feature map ``(h, w, c)``, or several
maps ``((h, w, c), ...)`` stored one after another in one flat row.

Several maps are what the ``maps`` head stores: Xception's exit-flow and middle-flow maps at their own sizes,
which the model stacks into a hypercolumn itself (:class:`colorization.network.model.Hypercolumn`). Stored that
way they take a third fewer raw bytes than stacked on a common grid, and half the bytes on disk.
An array of such embeddings is ``(n, total)``; of a vector or a single map, ``(n, *shape)`` as always.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

Shape = tuple[int, ...] | tuple[tuple[int, ...], ...]


def as_shape(value: int | Sequence) -> Shape:
    """A shape from its JSON form (a list, or a list of lists for several maps) or a vector's length."""
    if isinstance(value, int):
        return (value,)
    if value and not isinstance(value[0], int):
        return tuple(tuple(int(d) for d in part) for part in value)
    return tuple(int(d) for d in value)


def as_list(shape: Shape) -> list:
    """The JSON form of a shape: a list, or a list of lists for several maps (what :func:`as_shape` reads)."""
    return [list(part) for part in shape] if is_several(shape) else list(shape)


def is_several(shape: Shape) -> bool:
    """Whether ``shape`` is several maps, stored flat one after another."""
    return bool(shape) and not isinstance(shape[0], int)


def parts(shape: Shape) -> tuple[tuple[int, ...], ...]:
    """The arrays a photo's values hold: one for a vector or a map, one per map for several."""
    return shape if is_several(shape) else (shape,)  # type: ignore[return-value]


def row_shape(shape: Shape) -> tuple[int, ...]:
    """The shape of one photo's values as an array: ``shape`` itself, or the flat total for several maps."""
    return (sum(math.prod(part) for part in parts(shape)),) if is_several(shape) else shape  # type: ignore[return-value]


def channels(shape: Shape) -> int:
    """Channels at each grid position once the parts are stacked: a vector's length or the maps' depths summed."""
    return sum(part[-1] for part in parts(shape))


def spans(shape: Shape) -> Iterator[tuple[int, int, tuple[int, ...]]]:
    """Where each map of several lies in a flat row: ``(start, stop, its shape)``."""
    start = 0
    for part in parts(shape):
        yield start, start + math.prod(part), part
        start += math.prod(part)


def split(row: np.ndarray, shape: Shape) -> Iterator[np.ndarray]:
    """Views of a flat row (or of the last axis of a batch of rows) as each of the maps of ``shape``."""
    for start, stop, part in spans(shape):
        yield row[..., start:stop].reshape(*row.shape[:-1], *part)


def copy_mirrored(out: np.ndarray, row: np.ndarray, shape: Shape) -> None:
    """Copy one photo's embedding ``row`` into ``out`` mirrored left to right, every map with its photo (so a
    map still lies over what it describes). A vector has no left or right: it is copied as it is."""
    pairs = zip(split(out, shape), split(row, shape)) if is_several(shape) else [(out, row)]
    for target, source in pairs:
        target[...] = source[:, ::-1] if source.ndim >= 2 else source


def describe(shape: Shape) -> str:
    """``10x10x2048``, or ``10x10x2048 + 19x19x728`` for several maps."""
    return " + ".join("x".join(map(str, part)) for part in parts(shape))
