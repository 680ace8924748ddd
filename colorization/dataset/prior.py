"""Class rebalancing of Zhang, Isola & Efros 2016 (*Colorful Image Colorization*, section 2.2): per-bin weights
from the training set's a,b distribution, so that rare, saturated colours are not drowned by the common greys
and browns of photos.

p = the share of training pixels whose nearest bin is q; p~ = p smoothed with a Gaussian over the bins
(sigma = 5 a,b units); w ~ 1 / ((1 - lambda) p~ + lambda / Q) with lambda = 0.5, scaled so that
E_p~[w] = sum_q p~_q w_q = 1. The smoothing is a Gaussian-weighted average of the neighbouring in-gamut bins
(each row of the kernel sums to 1), so a uniform distribution stays exactly uniform at the gamut's edge.

The bin counts are computed once per shard (:func:`shard_bin_counts`; shards never change once written) and
kept in ``DATASET/ab_prior.json`` (:data:`PRIOR_FILE`), keyed by shard name with the shard's size and
modification time: a new shard is counted when it appears, a removed or rewritten one leaves the sum.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from colorization.atomic import atomic_path
from colorization.dataset.batches import is_validation
from colorization.dataset.shards import Dataset, read_shard
from colorization.network import colour_classes

PRIOR_FILE = "ab_prior.json"
SMOOTHING = 5.0
UNIFORM_MIX = 0.5
VERSION = 1


def shard_bin_counts(shard: Path, validation_percent: float) -> np.ndarray:
    """How many pixels of the shard's training rows fall nearest each bin: (Q,) int64. Validation rows (by
    :func:`colorization.dataset.batches.is_validation`) are left out, so the held-out photos do not shape the loss."""
    rows = read_shard(shard, ["id", "ab"])
    train = np.array([not is_validation(i, validation_percent) for i in rows.ids], bool)
    nearest = colour_classes.nearest_bin(rows.ab[train]) if train.any() else np.zeros(0, np.int32)
    return np.bincount(nearest.ravel(), minlength=len(colour_classes.ab_bins())).astype(np.int64)


def smoothed_distribution(counts: np.ndarray, sigma: float = SMOOTHING) -> np.ndarray:
    """p~: the bin probabilities of ``counts`` (Q,), each replaced by the Gaussian-weighted average of its
    neighbours' (sigma in a,b units), normalised to sum to 1."""
    counts = np.asarray(counts, np.float64)
    if counts.sum() <= 0:
        raise ValueError("no pixels to estimate the a,b distribution from")
    bins = colour_classes.ab_bins().astype(np.float64)
    kernel = np.exp(-((bins[:, None, :] - bins[None, :, :]) ** 2).sum(axis=-1) / (2 * sigma**2))
    smoothed = (kernel / kernel.sum(axis=1, keepdims=True)) @ (counts / counts.sum())
    return smoothed / smoothed.sum()


def rebalancing_weights(counts: np.ndarray, sigma: float = SMOOTHING, mix: float = UNIFORM_MIX) -> np.ndarray:
    """Per-bin loss weights (Q,) float64 from bin counts (see the module docstring); E_p~[w] = 1."""
    smoothed = smoothed_distribution(counts, sigma)
    weights = 1.0 / ((1 - mix) * smoothed + mix / len(smoothed))
    return weights / (smoothed @ weights)


def _stamp(shard: Path) -> dict:
    stat = shard.stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _stored(dataset: Dataset, validation_percent: float) -> dict[str, dict]:
    """Counts in the prior file that still describe a current shard, by shard name."""
    path = dataset.root / PRIOR_FILE
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    if (saved.get("version"), saved.get("bins"), saved.get("validation_percent")) != (
        VERSION, len(colour_classes.ab_bins()), validation_percent
    ):
        return {}
    current = {shard.name: _stamp(shard) for shard in dataset.shards()}
    return {name: entry for name, entry in saved["shards"].items()
            if current.get(name) == {k: entry[k] for k in ("bytes", "mtime_ns")}}


def _saved_names(path: Path) -> set[str]:
    return set(json.loads(path.read_text())["shards"])


def missing_shards(dataset: Dataset, validation_percent: float) -> list[Path]:
    """The shards whose bin counts are not stored (new, rewritten, or all of them for another split)."""
    stored = _stored(dataset, validation_percent)
    return [shard for shard in dataset.shards() if shard.name not in stored]


def store(dataset: Dataset, validation_percent: float, counts: dict[str, np.ndarray]) -> np.ndarray:
    """Add new shards' counts to the prior file (dropping shards that are gone) and return the weights of the
    current shards. Written atomically, and only when something changed."""
    shards = {shard.name: shard for shard in dataset.shards()}
    stored = _stored(dataset, validation_percent)
    entries = {**stored, **{name: {**_stamp(shards[name]), "counts": np.asarray(c).tolist()}
                            for name, c in counts.items()}}
    entries = {name: entries[name] for name in shards if name in entries}
    if not entries:
        raise ValueError(f"{dataset.root}: no shards to estimate the a,b distribution from")
    weights = rebalancing_weights(np.sum([entry["counts"] for entry in entries.values()], axis=0))
    path = dataset.root / PRIOR_FILE
    if path.is_file() and not counts and entries.keys() == stored.keys() == _saved_names(path):
        return weights
    document = {"version": VERSION, "grid": colour_classes.GRID, "bins": len(colour_classes.ab_bins()),
                "validation_percent": validation_percent, "smoothing": SMOOTHING, "uniform_mix": UNIFORM_MIX,
                "weights": np.round(weights, 6).tolist(), "shards": entries}
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(document) + "\n")
    return weights


def dataset_weights(
    dataset: Dataset,
    validation_percent: float,
    count: Callable[[list[Path], float], list[np.ndarray]] | None = None,
) -> np.ndarray:
    """The rebalancing weights of the dataset's training pixels, counting only the shards not yet counted.

    ``count`` maps shards to their counts; by default one after the other here (the train flow counts them on
    its Dask cluster first, so this finds nothing left to do).
    """
    missing = missing_shards(dataset, validation_percent)
    count = count or (lambda shards, percent: [shard_bin_counts(s, percent) for s in shards])
    counted = count(missing, validation_percent) if missing else []
    return store(dataset, validation_percent, {shard.name: c for shard, c in zip(missing, counted)})
