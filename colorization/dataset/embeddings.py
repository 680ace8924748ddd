"""Embedding files: one per shard, same rows in the same order, named by the extractor that made them.

``DATASET/embeddings/<extractor-id>/part-NNNNN.parquet`` holds ``id`` and ``embedding``: each photo's values
(C order) as one fixed-size binary value, its shape (``(dim,)``, ``(h, w, c)`` or several maps,
:mod:`colorization.dataset.layout`) and the values' type in the file's metadata: feature maps in float8 e5m2
(:mod:`colorization.dataset.float8`, one byte a value), vectors in little-endian float16. Both read back as
float16. The extractor id is also stored in the metadata, so embeddings of different networks are never mixed.
Files of earlier versions hold maps in float16 (no type key), or a fixed-size list of float16, and vectors
without the shape key; all still read, and one embedding set may hold files of each kind.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from colorization.atomic import atomic_path, remove_stale_temps
from colorization.dataset import float8
from colorization.dataset.layout import Shape, as_shape, describe, is_several, row_shape
from colorization.dataset.shards import Dataset, read_shard
from colorization.errors import ConfigError

EXTRACTOR_KEY = b"colorization.extractor_id"
SHAPE_KEY = b"colorization.embedding_shape"
DTYPE_KEY = b"colorization.embedding_dtype"
FLOAT16 = "float16"
TYPES = (FLOAT16, float8.NAME)  # how values may be stored (DTYPE_KEY); files without the key hold float16
INFO_FILE = "extractor.json"
# Shards' embeddings compressed and written at once, beside the network (zstd releases the GIL): on an H200
# machine's cores a writer kept up with ~145 photos' maps a second in float16 where Xception makes ~690
# (BENCHMARKS.md; float8 halves what a writer compresses); each holds a shard's maps (0.48 GB at 512 rows).
WRITERS = max(2, min(4, (os.cpu_count() or 1) // 4))


def write_extractor_info(folder: Path, extractor_id: str, weights: str, head: str) -> None:
    """Record which weights made an embedding set, so later stages can rebuild the same extractor."""
    with atomic_path(folder / INFO_FILE) as temp:
        temp.write_text(json.dumps({"id": extractor_id, "weights": weights, "head": head}, indent=2) + "\n")


def read_extractor_info(folder: Path) -> dict:
    """What :func:`write_extractor_info` recorded, or an empty dict for sets made without it."""
    path = folder / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def storage_type(shape: Shape) -> str:
    """How embed stores values of ``shape``: feature maps in float8 e5m2 (half the bytes of float16, the same
    colours: QUALITY.md), vectors (2-4 KB a photo) in float16."""
    return float8.NAME if is_several(shape) or len(shape) == 3 else FLOAT16


def write_embeddings(
    path: Path, ids: list[str], embeddings: np.ndarray, extractor_id: str, shape: Shape | None = None,
    row_group_rows: int | None = None, dtype: str = FLOAT16,
) -> None:
    """Write one shard's embeddings (n, *shape) atomically, as ``dtype`` (``float16``, or ``float8_e5m2``:
    :func:`storage_type`); ``shape`` says how a flat row holds several maps (default: the array's own row
    shape). The file is one Parquet row group unless ``row_group_rows`` says otherwise (Arrow reads several row
    groups in parallel: benchmarks/train.py).

    A photo's values are one binary value, not a list of float16: Parquet stores float16 as two-byte
    fixed-length values, one at a time, which made writing a hypercolumn map (1.4 MB raw) ~6x and reading it ~5x
    slower for the same bytes on disk. Without dictionary encoding or statistics for the values: dictionaries of
    activations only cost time (and bytes).
    """
    if dtype not in TYPES:
        raise ValueError(f"embeddings are stored as {' or '.join(TYPES)}, not {dtype}")
    values = np.ascontiguousarray(embeddings, "<f2")
    shape = values.shape[1:] if shape is None else shape
    if row_shape(shape) != values.shape[1:]:
        raise ValueError(f"{path}: embeddings of {values.shape[1:]} values a photo do not hold {shape}")
    if dtype == float8.NAME:
        values = float8.encode(values)
    row_bytes = int(np.prod(values.shape[1:])) * values.itemsize
    column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(row_bytes), len(values), [None, pa.py_buffer(values)])
    table = pa.table({"id": pa.array(ids, pa.string()), "embedding": column})
    table = table.replace_schema_metadata(
        {EXTRACTOR_KEY: extractor_id.encode(), SHAPE_KEY: json.dumps(shape).encode(), DTYPE_KEY: dtype.encode()}
    )
    with atomic_path(path) as temp:
        pq.write_table(table, temp, compression="zstd", use_dictionary=False, write_statistics=["id"],
                       row_group_size=row_group_rows)


def read_embeddings(path: Path, extractor_id: str | None = None) -> tuple[list[str], np.ndarray]:
    """Row ids and embeddings (n, *row shape) float16 of one file (:func:`colorization.dataset.layout.row_shape`:
    several maps come flat), refusing one made by another extractor."""
    table = pq.read_table(path, memory_map=True)
    metadata = table.schema.metadata or {}
    stored = metadata.get(EXTRACTOR_KEY, b"").decode()
    if extractor_id is not None and stored != extractor_id:
        raise ConfigError(f"{path}: embeddings made by {stored or 'an unknown extractor'}, not {extractor_id}")
    column = table.column("embedding").combine_chunks()
    shape = _stored_shape(metadata, column.type)
    values_shape = row_shape(shape)
    values = int(np.prod(values_shape))
    if pa.types.is_fixed_size_binary(column.type):
        dtype = metadata.get(DTYPE_KEY, FLOAT16.encode()).decode()
        if dtype not in TYPES:
            raise ConfigError(f"{path}: embeddings stored as {dtype}, which this version cannot read; "
                              "delete it and run embed again")
        stored = np.dtype(np.uint8 if dtype == float8.NAME else "<f2")
        if column.type.byte_width != stored.itemsize * values:
            raise ConfigError(f"{path}: its values of {column.type.byte_width} bytes a photo do not hold the "
                              f"shape it records, {describe(shape)}; delete it and run embed again")
        start = column.offset * column.type.byte_width
        flat = np.frombuffer(column.buffers()[1], stored, len(column) * values, start)
        if dtype == float8.NAME:
            flat = float8.decode(flat)
    else:
        flat = column.values.to_numpy(zero_copy_only=False)
    return table.column("id").to_pylist(), flat.reshape(len(column), *values_shape)


def embedding_shape(path: Path) -> Shape:
    """One photo's embedding shape in a file, ``(dim,)``, ``(h, w, c)`` or several maps, from its schema alone."""
    schema = pq.read_schema(path)
    return _stored_shape(schema.metadata or {}, schema.field("embedding").type)


def _stored_shape(metadata: dict[bytes, bytes], column_type: pa.DataType) -> Shape:
    """The shape recorded in a file's metadata; vectors of the list's length for files written before maps
    existed (always lists of float16)."""
    return as_shape(json.loads(metadata[SHAPE_KEY])) if SHAPE_KEY in metadata else (column_type.list_size,)


def read_aligned(
    shard: Path, embeddings: Path, extractor_id: str, shard_ids: list[str] | None = None
) -> np.ndarray:
    """A shard's embeddings, checked row by row against the shard's ids (read from it unless given)."""
    if shard_ids is None:
        shard_ids = read_shard(shard, columns=["id"]).ids
    ids, values = read_embeddings(embeddings, extractor_id)
    if ids != shard_ids:
        raise ConfigError(f"{embeddings}: rows do not match {shard}; delete it and run embed again")
    return values


@dataclass
class EmbedReport:
    """What one embed run did; ``seconds`` covers the whole loop, I/O included."""

    shards: int = 0
    skipped: int = 0
    images: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def embed_dataset(
    dataset: Dataset,
    extractor_id: str,
    embed: Callable[[np.ndarray], np.ndarray],
    shape: Shape,
    on_shard: Callable[[int, int], None] | None = None,
    only: Collection[str] | None = None,
    writers: int = WRITERS,
) -> EmbedReport:
    """Embed every shard that has no embedding file yet, in shard order; ``embed`` gives one photo's
    embedding of ``shape`` (the extractor's: the files record it, and several maps come flat, so it cannot be
    told from the arrays).

    The next shard is read and earlier results written on background threads while ``embed`` runs, so the
    network never waits on disk; at most ``writers`` shards' results wait to be written, each compressed and
    written by a thread of its own, so a network faster than the disk waits for it instead of filling memory (a
    shard of ``maps`` rows is ~0.48 GB).
    Each file is written atomically: a killed run resumes where it stopped.
    ``on_shard(done, total)`` is called, on the calling thread, as each shard's embeddings are handed to the
    writer. ``only`` limits the run to the shards of those names (one share of a split run, :func:`deal`); such a
    run leaves temporary files alone, since other runs write beside it.
    """
    folder = dataset.embeddings_dir(extractor_id)
    folder.mkdir(parents=True, exist_ok=True)
    if only is None:
        remove_stale_temps(folder)
    shards = [s for s in dataset.shards() if only is None or s.name in only]
    pending = [s for s in shards if not (folder / s.name).exists()]
    report = EmbedReport(skipped=len(shards) - len(pending))
    if not pending:
        return report
    started = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="embed-read") as reader, ThreadPoolExecutor(
        writers, thread_name_prefix="embed-write"
    ) as writer:
        next_rows = reader.submit(read_shard, pending[0], ["id", "L"])
        writes: deque[Future] = deque()
        for done, shard in enumerate(pending, start=1):
            rows = next_rows.result()
            if done < len(pending):
                next_rows = reader.submit(read_shard, pending[done], ["id", "L"])
            values = embed(rows.L)
            while len(writes) >= writers:
                writes.popleft().result()
            writes.append(writer.submit(write_embeddings, folder / shard.name, rows.ids, values, extractor_id, shape,
                                        dtype=storage_type(shape)))
            if on_shard is not None:
                on_shard(done, len(pending))
            report.shards += 1
            report.images += len(rows)
        for write in writes:
            write.result()
    report.seconds = time.perf_counter() - started
    return report


def deal(shards: Sequence[Path], parts: int) -> list[list[str]]:
    """Shard names dealt round-robin into at most ``parts`` shares, none empty: shards added by later
    preprocess runs (the ones not embedded yet) are spread over every share, not left to the last one."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    return [[s.name for s in shards[i::parts]] for i in range(min(parts, len(shards)))]


def pick_extractor(dataset: Dataset, extractor_id: str | None) -> str:
    """The embedding set to train on: the one given, or the only one the dataset has."""
    folder = dataset.root / "embeddings"
    available = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if extractor_id is not None:
        if extractor_id not in available:
            have = ", ".join(available) or "none"
            raise ConfigError(f"{dataset.root}: no embeddings from {extractor_id} (have: {have})")
        return extractor_id
    if len(available) != 1:
        raise ConfigError(
            f"{dataset.root}: {'no embeddings; run embed first' if not available else 'several embedding sets'}"
            + (f" ({', '.join(available)}); choose one with --extractor" if len(available) > 1 else "")
        )
    return available[0]
