"""Training input: shards joined with their embeddings, streamed in shuffled, flipped, prefetched batches.

Memory stays bounded whatever the dataset size: at most ``shards_in_memory`` shards are decoded at a time.
Rows are split into training and validation by a hash of their id, so the split never changes when the
dataset grows. Embeddings are vectors (n, dim) or feature maps (n, h, w, c) alike.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colorization.dataset.embeddings import read_aligned
from colorization.dataset.shards import Dataset, read_shard
from colorization.errors import ConfigError
from colorization.photos.lab import model_inputs, model_target

Batch = tuple[dict[str, np.ndarray], np.ndarray]


def is_validation(row_id: str, percent: float) -> bool:
    """Whether a row belongs to the validation split: a stable function of its id."""
    bucket = int.from_bytes(hashlib.blake2b(row_id.encode(), digest_size=4).digest(), "big") % 10_000
    return bucket < percent * 100


@dataclass(frozen=True)
class Part:
    """One shard, its embedding file and which of its rows belong to the split."""

    shard: Path
    embeddings: Path
    rows: np.ndarray


@dataclass
class Rows:
    """Decoded rows of one or more shards."""

    L: np.ndarray
    ab: np.ndarray
    embedding: np.ndarray

    def __len__(self) -> int:
        return len(self.L)

    def take(self, index: np.ndarray) -> Rows:
        return Rows(self.L[index], self.ab[index], self.embedding[index])

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        return Rows(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("L", "ab", "embedding")))


class Split:
    """The training or validation rows of a dataset, for one extractor's embeddings."""

    def __init__(self, dataset: Dataset, extractor_id: str, validation: bool, percent: float = 10.0):
        folder = dataset.embeddings_dir(extractor_id)
        self.extractor_id = extractor_id
        self.parts: list[Part] = []
        for shard in dataset.shards():
            embeddings = folder / shard.name
            if not embeddings.exists():
                raise ConfigError(f"{shard}: no embeddings from {extractor_id}; run embed first")
            ids = read_shard(shard, ["id"]).ids
            rows = np.flatnonzero([is_validation(i, percent) == validation for i in ids])
            if len(rows):
                self.parts.append(Part(shard, embeddings, rows))
        self.size = sum(len(p.rows) for p in self.parts)

    def steps(self, batch_size: int) -> int:
        return -(-self.size // batch_size)

    def read(self, part: Part) -> Rows:
        shard = read_shard(part.shard, ["id", "L", "ab"])
        embedding = read_aligned(part.shard, part.embeddings, self.extractor_id, shard.ids)
        return Rows(shard.L[part.rows], shard.ab[part.rows], embedding[part.rows])

    def batches(
        self,
        batch_size: int,
        rng: np.random.Generator | None = None,
        flip: bool = False,
        shards_in_memory: int = 4,
    ) -> Iterator[Batch]:
        """One pass over the split. With ``rng``, shard order and rows within each window of
        ``shards_in_memory`` shards are shuffled; ``flip`` mirrors a random half of each batch."""
        order = rng.permutation(len(self.parts)) if rng is not None else np.arange(len(self.parts))
        carry: Rows | None = None
        for start in range(0, len(order), shards_in_memory):
            window = [self.read(self.parts[i]) for i in order[start : start + shards_in_memory]]
            rows = Rows.concat(([carry] if carry is not None else []) + window)
            if rng is not None:
                rows = rows.take(rng.permutation(len(rows)))
            full = len(rows) - len(rows) % batch_size
            for begin in range(0, full, batch_size):
                yield to_batch(rows.take(np.arange(begin, begin + batch_size)), rng if flip else None)
            carry = rows.take(np.arange(full, len(rows)))
        if carry is not None and len(carry):
            yield to_batch(carry, rng if flip else None)


def to_batch(rows: Rows, flip_rng: np.random.Generator | None = None) -> Batch:
    """Model inputs (L as float 0..255, embedding as float32) and target ab / 128.

    A mirrored photo gets its feature map mirrored too, so the map still lies over what it describes.
    """
    lightness = model_inputs(rows.L)
    target = model_target(rows.ab)
    embedding = rows.embedding.astype(np.float32)
    if flip_rng is not None:
        mirror = flip_rng.random(len(rows)) < 0.5
        lightness[mirror] = lightness[mirror, :, ::-1]
        target[mirror] = target[mirror, :, ::-1]
        if embedding.ndim == 4:
            embedding[mirror] = embedding[mirror, :, ::-1]
    return {"L": lightness, "embedding": embedding}, target


def prefetch(batches: Iterator[Batch], depth: int = 4) -> Iterator[Batch]:
    """Produce batches on a background thread, ``depth`` ahead, so the accelerator does not wait on I/O."""
    buffer: queue.Queue = queue.Queue(depth)
    done = object()

    def produce() -> None:
        try:
            for item in batches:
                buffer.put(item)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            buffer.put(exc)
        buffer.put(done)

    threading.Thread(target=produce, daemon=True, name="batch-prefetch").start()
    while (item := buffer.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
