"""Training input: shards joined with their embeddings, streamed in shuffled, flipped, prefetched batches.

Memory stays bounded whatever the dataset size: at most two windows of ``shards_in_memory`` shards are
decoded at a time (the one being served and the next).
Rows are split into training and validation by a hash of their id, so the split never changes when the
dataset grows. Embeddings are vectors (n, dim), feature maps (n, h, w, c) or several maps stored flat alike
(:mod:`colorization.dataset.layout`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colorization.dataset.embeddings import embedding_shape, read_aligned
from colorization.dataset.layout import Shape, copy_mirrored
from colorization.dataset.shards import Dataset, read_shard
from colorization.errors import ConfigError
from colorization.photos.lab import model_inputs, model_target

Batch = tuple[dict[str, np.ndarray], np.ndarray]
THREADS = max(4, min(8, os.cpu_count() or 1))  # batch builders: a GPU machine's cores, at most 8 batches in flight


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
    """Decoded rows of a shard; ``shape`` is one photo's embedding's (default: its array's row shape)."""

    L: np.ndarray
    ab: np.ndarray
    embedding: np.ndarray
    shape: Shape | None = None

    def __post_init__(self) -> None:
        if self.shape is None:
            self.shape = self.embedding.shape[1:]

    def __len__(self) -> int:
        return len(self.L)


class Window:
    """Rows of several shards served as one sequence without being copied together (a window of hypercolumn
    maps is gigabytes): each batch gathers its own rows from them, on a worker thread.

    ``members`` are decoded rows with the positions among them that belong to the window, in window order.
    """

    def __init__(self, members: list[tuple[Rows, np.ndarray]]):
        self.members = members
        lengths = [len(positions) for _, positions in members]
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def batch(self, index: np.ndarray, mirror: np.ndarray | None = None) -> Batch:
        """Model inputs (L as float 0..255, the embedding as stored, float16) and target ab / 128 of rows
        ``index``; those where ``mirror`` is true are mirrored left to right, feature maps with their photo, so
        a map still lies over what it describes.

        The embedding stays float16: the model casts its input itself (exactly, on the accelerator), where
        converting it here cost as much as reading it and sent the GPU twice the bytes.
        """
        rows = self.take(index, mirror)
        return {"L": model_inputs(rows.L), "embedding": rows.embedding}, model_target(rows.ab)

    def take(self, index: np.ndarray, mirror: np.ndarray | None = None) -> Rows:
        """Rows ``index`` copied out, those where ``mirror`` is true flipped along w."""
        picks = self._picks(index)
        mirror = np.zeros(len(picks), bool) if mirror is None else mirror
        shape = self.members[0][0].shape
        gathered = (_gathered(picks, field, mirror, shape) for field in ("L", "ab", "embedding"))
        return Rows(*gathered, shape=shape)

    def _picks(self, index: np.ndarray) -> list[tuple[Rows, int]]:
        """The decoded rows and the position in them of each row of the window in ``index``."""
        member = np.searchsorted(self.ends, index, side="right")
        return [(self.members[m][0], int(self.members[m][1][i - self.starts[m]])) for m, i in zip(member, index)]


def _gathered(picks: list[tuple[Rows, int]], field: str, mirror: np.ndarray, shape: Shape) -> np.ndarray:
    """One field of the picked rows stacked, rows where ``mirror`` is true flipped along w (a photo's (h, w, ...)
    values, each map of an embedding of ``shape``; vectors are never flipped), copied in one pass."""
    first = getattr(picks[0][0], field)
    result = np.empty((len(picks), *first.shape[1:]), first.dtype)
    row_layout = shape if field == "embedding" else first.shape[1:]
    for out, ((rows, row), flipped) in enumerate(zip(picks, mirror)):
        values = getattr(rows, field)[row]
        if flipped:
            copy_mirrored(result[out], values, row_layout)
        else:
            result[out] = values
    return result


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
        self.shape = embedding_shape(self.parts[0].embeddings) if self.parts else None

    def steps(self, batch_size: int) -> int:
        return -(-self.size // batch_size)

    def read(self, part: Part) -> tuple[Rows, np.ndarray]:
        """A part's shard decoded whole, and the positions of the split's rows in it (copying them out would
        cost as much as decoding)."""
        shard = read_shard(part.shard, ["id", "L", "ab"])
        embedding = read_aligned(part.shard, part.embeddings, self.extractor_id, shard.ids)
        return Rows(shard.L, shard.ab, embedding, self.shape), part.rows

    def batches(
        self,
        batch_size: int,
        rng: np.random.Generator | None = None,
        flip: bool = False,
        shards_in_memory: int = 4,
        threads: int = THREADS,
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

            def convert(window: Window, index: np.ndarray) -> Iterator[Batch]:
                mirror = rng.random(len(index)) < 0.5 if flip and rng is not None else None
                converting.append(pool.submit(window.batch, index, mirror))
                while len(converting) > threads or (converting and converting[0].done()):
                    yield converting.popleft().result()

            reading = [pool.submit(self.read, self.parts[i]) for i in windows[0]] if windows else []
            carry: list[tuple[Rows, np.ndarray]] = []
            for number in range(len(windows)):
                window = Window(carry + [job.result() for job in reading])
                if number + 1 < len(windows):
                    reading = [pool.submit(self.read, self.parts[i]) for i in windows[number + 1]]
                shuffled = rng.permutation(len(window)) if rng is not None else np.arange(len(window))
                full = len(window) - len(window) % batch_size
                for begin in range(0, full, batch_size):
                    yield from convert(window, shuffled[begin : begin + batch_size])
                rest = shuffled[full:]
                carry = [(window.take(rest), np.arange(len(rest)))] if len(rest) else []
            if carry:
                yield from convert(Window(carry), carry[0][1])
            while converting:
                yield converting.popleft().result()


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
