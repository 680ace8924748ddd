"""The dataset layout and the one shard schema every stage reads.

A dataset folder holds::

    dataset.json                       size, framing and schema version, fixed when the dataset is created
    manifest.parquet                   one row per source file: what became of it
    manifest.parts/part-NNNNNN.parquet rows a run appended since (read together: colorization.manifest)
    shards/part-NNNNN.parquet          the photos as quantised Lab, ``rows_per_shard`` rows each
    worklist.parquet                   while preprocess runs: the photos it has yet to do (deleted at its end)
    embeddings/<extractor-id>/part-NNNNN.parquet   one embedding per shard row, same order

Shards are immutable once written: later runs add new shards, never rewrite old ones. Training reads a shard's
``id``, ``L`` and ``ab``; ``source``, ``width``, ``height`` (the original photo's) and ``colorfulness`` are there
for people who query a dataset (pandas, DuckDB), e.g. to pick photos by size or colour.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from colorization import manifest
from colorization.atomic import atomic_path
from colorization.errors import ConfigError
from colorization.photos.images import Framing

SCHEMA_VERSION = 2  # 2: pixels as fixed-size binary (1: Arrow tensors, still read)
ROWS_PER_SHARD = 512  # photos per shard file: about 25 MB at 256x256
_SHARD_NAME = re.compile(r"part-(\d{5,})\.parquet")

MANIFEST_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("id", pa.string()),
        ("status", pa.string()),
        ("shard", pa.string()),
        ("error", pa.string()),
        ("bytes", pa.int64()),
        (manifest.MODIFIED, manifest.MODIFIED_TYPE),
    ]
)
# What a manifest row's ``status`` says of its source file:
WRITTEN = "written"  # in the row's shard
GREY = "grey"  # grey or toned: in a shard only with keep_grey
ERROR = "error"  # unreadable; ``error`` says why; retried once the file changes (size or mtime)


def manifest_record(source: str, **values) -> dict:
    """A manifest row for ``source`` with every :data:`MANIFEST_SCHEMA` column: ``values`` over an error with
    no reason yet, so a file that fails half-way is still recorded."""
    return {**dict.fromkeys(MANIFEST_SCHEMA.names), "status": ERROR, **values, "source": source}


def shard_schema(size: int) -> pa.Schema:
    """Arrow schema of a shard of ``size``x``size`` photos.

    Each photo's pixels are one fixed-size binary value, row-major, with their numpy dtype and shape in the
    field's metadata. Parquet stores that as plain bytes; the Arrow tensor type of schema 1 was stored as a list
    column, whose per-element levels made reading a shard five times slower (BENCHMARKS.md).
    """
    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("colorfulness", pa.float32()),
            _pixel_field("L", np.uint8, (size, size)),
            _pixel_field("ab", np.int8, (size, size, 2)),
        ],
        metadata={"colorization.schema_version": str(SCHEMA_VERSION)},
    )


def _pixel_field(name: str, dtype: type, shape: tuple[int, ...]) -> pa.Field:
    metadata = {"dtype": np.dtype(dtype).name, "shape": json.dumps(shape)}
    return pa.field(name, pa.binary(int(np.prod(shape)) * np.dtype(dtype).itemsize), metadata=metadata)


def _pixel_array(values: np.ndarray, dtype: type) -> pa.Array:
    """One fixed-size binary value per photo, sharing the bytes of ``values`` (n, ...)."""
    data = np.ascontiguousarray(values, dtype)
    width = int(np.prod(data.shape[1:])) * data.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(data), [None, pa.py_buffer(data)])


def _pixels(array: pa.Array, field: pa.Field) -> np.ndarray:
    """The (n, ...) numpy view of a pixel column: fixed-size binary (schema 2) or an Arrow tensor (schema 1)."""
    if isinstance(array, pa.ExtensionArray):
        return array.to_numpy_ndarray()
    dtype, shape = np.dtype(field.metadata[b"dtype"].decode()), tuple(json.loads(field.metadata[b"shape"]))
    width = array.type.byte_width
    data = np.frombuffer(array.buffers()[1], np.uint8, len(array) * width, array.offset * width)
    return data.view(dtype).reshape(len(array), *shape)


@dataclass
class ShardRows:
    """Photos of one shard as numpy arrays; ``L`` is (n, size, size) uint8 and ``ab`` (n, size, size, 2) int8."""

    ids: list[str]
    sources: list[str]
    width: np.ndarray
    height: np.ndarray
    colorfulness: np.ndarray
    L: np.ndarray
    ab: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def write_shard(path: str | Path, rows: ShardRows) -> None:
    """Write ``rows`` as one Parquet shard, atomically."""
    size = rows.L.shape[1]
    table = pa.Table.from_arrays(
        [
            pa.array(rows.ids, pa.string()),
            pa.array(rows.sources, pa.string()),
            pa.array(rows.width, pa.int32()),
            pa.array(rows.height, pa.int32()),
            pa.array(rows.colorfulness, pa.float32()),
            _pixel_array(rows.L, np.uint8),
            _pixel_array(rows.ab, np.int8),
        ],
        schema=shard_schema(size),
    )
    with atomic_path(path) as temp:
        pq.write_table(table, temp, compression="zstd", row_group_size=len(rows) or None)


def read_shard(path: str | Path, columns: list[str] | None = None) -> ShardRows:
    """Read a shard; the pixel arrays are views on Arrow's buffers, not copied row by row."""
    table = pq.read_table(path, memory_map=True, columns=columns)

    def column(name: str) -> pa.Array | None:
        if name not in table.column_names:
            return None
        chunked = table.column(name)
        return chunked.chunk(0) if chunked.num_chunks == 1 else chunked.combine_chunks()

    def tensor(name: str) -> np.ndarray | None:
        array = column(name)
        return None if array is None else _pixels(array, table.schema.field(name))

    def values(name: str) -> np.ndarray | list | None:
        array = column(name)
        if array is None:
            return None
        return array.to_pylist() if pa.types.is_string(array.type) else array.to_numpy(zero_copy_only=False)

    return ShardRows(
        ids=values("id"),
        sources=values("source"),
        width=values("width"),
        height=values("height"),
        colorfulness=values("colorfulness"),
        L=tensor("L"),
        ab=tensor("ab"),
    )


def shard_index(path: str | Path) -> int:
    """The number NNNNN of ``part-NNNNN.parquet``."""
    match = _SHARD_NAME.fullmatch(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not a shard file name")
    return int(match.group(1))


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass(frozen=True)
class Dataset:
    """Paths of a dataset folder (see the module docstring)."""

    root: Path

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def info_path(self) -> Path:
        return self.root / "dataset.json"

    @property
    def worklist_path(self) -> Path:
        """The photos a preprocess run has yet to do (:func:`colorization.dataset.preprocess.plan`)."""
        return self.root / "worklist.parquet"

    def embeddings_dir(self, extractor_id: str) -> Path:
        return self.root / "embeddings" / extractor_id

    def shards(self) -> list[Path]:
        """Shard files in index order."""
        if not self.shards_dir.is_dir():
            return []
        return sorted((p for p in self.shards_dir.iterdir() if _SHARD_NAME.fullmatch(p.name)), key=shard_index)

    def size(self) -> int:
        """The photo size the dataset was created with."""
        return self._info()["size"]

    def framing(self) -> Framing:
        """How the dataset's photos were made square (:data:`images.Framing`); ``crop`` for datasets written
        before the choice was recorded, which all cropped."""
        return self._info()["framing"]

    def _info(self) -> dict:
        """``dataset.json``'s size, framing and schema version, refusing a dataset written by a newer version."""
        if not self.info_path.exists():
            raise ConfigError(f"{self.root}: not a dataset (no dataset.json); run preprocess first")
        try:
            info = json.loads(self.info_path.read_text())
            info = {"size": int(info["size"]), "framing": info.get("framing", "crop"),
                    "schema_version": int(info.get("schema_version", SCHEMA_VERSION))}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.info_path}: not a dataset description ({exc!r})") from exc
        if info["framing"] not in get_args(Framing):
            raise ConfigError(f"{self.info_path}: unknown framing {info['framing']!r}")
        if info["schema_version"] > SCHEMA_VERSION:
            raise ConfigError(f"{self.root}: written by a newer colorization (dataset schema "
                              f"{info['schema_version']}, this version reads up to {SCHEMA_VERSION}); upgrade, "
                              "or preprocess into a new folder")
        return info

    def check(self, size: int, framing: Framing | None = None) -> None:
        """Refuse a size or framing (None: the dataset's own) that differs from an existing dataset's."""
        if not self.info_path.exists():
            return
        info = self._info()
        if info["size"] != size:
            raise ConfigError(
                f"{self.root}: dataset was built at size {info['size']}, not {size}; use another dataset folder"
            )
        if framing is not None and info["framing"] != framing:
            raise ConfigError(
                f"{self.root}: dataset was built with framing {info['framing']!r}, not {framing!r}; leave "
                "--framing out to add to it, or use another dataset folder"
            )

    def ensure(self, size: int, framing: Framing | None = None) -> Framing:
        """Create ``dataset.json`` for a new dataset (framing ``whole`` unless given), or refuse a size or framing
        that differs from the existing one; returns the dataset's framing.

        An older dataset's schema version is raised to this one's, since the shards a run adds are written in
        it: an older colorization then refuses the dataset instead of misreading them. Its framing, when it
        had none recorded, is written down as ``crop``.
        """
        self.check(size, framing)
        exists = self.info_path.exists()
        info = {"size": size, "framing": self.framing() if exists else framing or "whole",
                "schema_version": SCHEMA_VERSION}
        if not exists or json.loads(self.info_path.read_text()) != info:
            with atomic_path(self.info_path) as temp:
                temp.write_text(json.dumps(info, indent=2) + "\n")
        return info["framing"]

    def read_manifest(self) -> pd.DataFrame:
        """The manifest (base and parts merged, see :mod:`colorization.manifest`), empty (with its columns) for
        a new dataset."""
        return manifest.read(self.manifest_path, MANIFEST_SCHEMA)

    def open_manifest(self) -> manifest.Manifest:
        """The manifest's writer: appends rows as shards finish, compacts now and then."""
        return manifest.Manifest(self.manifest_path, MANIFEST_SCHEMA)
