"""Training input: shards joined with their embeddings, streamed in shuffled, flipped, prefetched batches.

Memory stays bounded whatever the dataset size: at most two windows of ``shards_in_memory`` shards are
decoded at a time (the one being served and the next).
Rows are split into training and validation by a hash of their id, so the split never changes when the
dataset grows. Embeddings are vectors (n, dim) or feature maps (n, h, w, c) alike.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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

    def slice(self, start: int, stop: int) -> Rows:
        """Rows ``start:stop`` as views, without copying."""
        return Rows(self.L[start:stop], self.ab[start:stop], self.embedding[start:stop])

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
        threads: int = 4,
    ) -> Iterator[Batch]:
        """One pass over the split. With ``rng``, shard order and rows within each window of
        ``shards_in_memory`` shards are shuffled; ``flip`` mirrors a random half of each batch.

        ``threads`` decode the next window's shards while the current one is served, and convert batches a few
        ahead: shard decoding and conversion release the GIL, so a GPU is fed several cores' worth. The output
        is the same for any number of threads: every random draw is made here, in order.
        """
        order = rng.permutation(len(self.parts)) if rng is not None else np.arange(len(self.parts))
        windows = [order[start : start + shards_in_memory] for start in range(0, len(order), shards_in_memory)]
        with ThreadPoolExecutor(threads, thread_name_prefix="batches") as pool:
            converting: deque[Future[Batch]] = deque()

            def convert(rows: Rows) -> Iterator[Batch]:
                mirror = rng.random(len(rows)) < 0.5 if flip and rng is not None else None
                converting.append(pool.submit(to_batch, rows, mirror))
                while len(converting) > threads or (converting and converting[0].done()):
                    yield converting.popleft().result()

            reading = [pool.submit(self.read, self.parts[i]) for i in windows[0]] if windows else []
            carry: Rows | None = None
            for number in range(len(windows)):
                window = [job.result() for job in reading]
                if number + 1 < len(windows):
                    reading = [pool.submit(self.read, self.parts[i]) for i in windows[number + 1]]
                rows = Rows.concat(([carry] if carry is not None else []) + window)
                if rng is not None:
                    rows = rows.take(rng.permutation(len(rows)))
                full = len(rows) - len(rows) % batch_size
                for begin in range(0, full, batch_size):
                    yield from convert(rows.slice(begin, begin + batch_size))
                carry = rows.slice(full, len(rows))
            if carry is not None and len(carry):
                yield from convert(carry)
            while converting:
                yield converting.popleft().result()


def to_batch(rows: Rows, mirror: np.ndarray | None = None) -> Batch:
    """Model inputs (L as float 0..255, embedding as float32) and target ab / 128; the rows where ``mirror`` is
    true are mirrored left to right.

    A mirrored photo gets its feature map mirrored too, so the map still lies over what it describes.
    """
    if mirror is not None and mirror.any():
        rows = Rows(*(_mirrored(array, mirror) for array in (rows.L, rows.ab, rows.embedding)))
    return {"L": model_inputs(rows.L), "embedding": rows.embedding.astype(np.float32)}, model_target(rows.ab)


def _mirrored(array: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    """A copy of ``array`` (n, h, w, ...) with rows ``mirror`` flipped along w; vectors (n, dim) unchanged."""
    if array.ndim < 3:
        return array
    result = array.copy()
    result[mirror] = array[mirror, :, ::-1]
    return result


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
