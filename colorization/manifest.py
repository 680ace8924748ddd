"""Manifests: Parquet tables with one row per source file, appended to as work finishes and compacted now and then.

The dataset's manifest (preprocess) and the archive's manifest (colorize) share this code and differ only in
their schema, which has a ``source`` and a ``status`` column (never null in a real row).

On disk a manifest is a base file (``manifest.parquet``, the only file of earlier versions) and, beside it, the
changes since it was last written: ``manifest.parts/part-NNNNNN.parquet``, one small file per :meth:`Manifest.append`,
each written atomically (temporary name, then rename), so that recording a batch costs the same whatever the
size of the manifest. Reading takes the base, then the parts in order, a later row for a source replacing an
earlier one; a row whose ``status`` is null removes its source. When the parts hold more rows than
:data:`COMPACT_FRACTION` of the base, or than :data:`COMPACT_MAX_ROWS` (and at the end of a run), the merged
table is written as the new base and the parts are deleted, oldest first: the amortised cost stays constant per
row up to a few million rows, and what the writer holds between compactions stays bounded. The base is written
sorted by source, in row groups of :data:`PIECE_ROWS`, and says so in its schema's metadata, so that it can be
read, merged and rewritten a piece at a time without holding it whole.

A killed run leaves a readable manifest at every step: a part is whole or absent, and between writing the new
base and deleting the last part, the parts still there are the newest ones (a suffix of the history), whose
rows the base already holds: reading base + any such suffix gives the same table, so re-reading and
re-compacting are idempotent. A finished run leaves the base alone, so other tools (DuckDB, pandas) may read
``manifest.parquet`` directly; while a run is going (or after a killed one) use :func:`read`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from colorization.atomic import atomic_path
from colorization.batching import batched

MODIFIED = "modified"  # the column of the source file's modification time, exact to the nanosecond
MODIFIED_TYPE = pa.timestamp("ns", tz="UTC")
COMPACT_FRACTION = 0.25  # compact when the parts hold more rows than this fraction of the base ...
COMPACT_MIN_ROWS = 2048  # ... and at least this many rows (a new archive's first batches) ...
COMPACT_MAX_ROWS = 65_536  # ... and at most this many: what a writer holds between compactions stays bounded
_COMBINE_TABLES = 256  # the tables of recent parts held apart before they are combined (Manifest._write_part)
PIECE_ROWS = 16_384  # rows of the base read, merged and written at a time (a row group each): see _read_pieces
_SORTED = {b"colorization.sorted_by": b"source"}  # in the schema of a base written sorted (all since 2026-11-27)
_PART_NAME = re.compile(r"part-(\d{6,})\.parquet")
T = TypeVar("T")


def parts_dir(path: Path) -> Path:
    """The folder of the parts appended to the manifest at ``path``: ``manifest.parts`` beside ``manifest.parquet``."""
    return path.with_name(f"{path.stem}.parts")


def part_paths(path: Path) -> list[Path]:
    """The parts of the manifest at ``path``, oldest first (temporary files of unfinished writes are not parts)."""
    folder = parts_dir(path)
    if not folder.is_dir():
        return []
    parts = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _PART_NAME.fullmatch(p.name))]
    return [p for _, p in sorted(parts)]


def read(path: Path, schema: pa.Schema) -> pd.DataFrame:
    """The manifest at ``path`` (base and parts merged, sorted by source), or an empty one with the schema's
    columns."""
    return read_table(path, schema).to_pandas()


def read_table(path: Path, schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """:func:`read` as an Arrow table, of only ``columns`` if given (they must include ``source`` and
    ``status``)."""
    schema = pa.schema([schema.field(name) for name in columns]) if columns else schema
    base = _read_file(path, schema) if path.exists() else schema.empty_table()
    parts = part_paths(path)
    if not parts:
        return base
    rows = _latest(pa.concat_tables([base, *(_read_file(p, schema) for p in parts)]))
    return rows.filter(pc.is_valid(rows["status"])).sort_by("source")


def _latest(rows: pa.Table) -> pa.Table:
    """The last row of each source in ``rows`` (in no particular order), removals (null status) included."""
    order = pa.array(np.arange(len(rows)))
    grouped = rows.append_column("_order", order).group_by("source", use_threads=False)
    return rows.take(grouped.aggregate([("_order", "max")])["_order_max"])


def _read_file(path: Path, schema: pa.Schema) -> pa.Table:
    """One file of a manifest, in ``schema`` (its columns only are read)."""
    stored = pq.ParquetFile(path)
    legacy = {MODIFIED: "mtime_ns"} if "mtime_ns" in stored.schema_arrow.names else {}
    return _conform(stored.read(columns=[legacy.get(name, name) for name in schema.names]), schema)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Rows of a manifest file in ``schema``. Files of earlier versions held the source file's modification
    time as integer nanoseconds (``mtime_ns``); they are read as today's timestamp column ``modified``."""
    if "mtime_ns" in table.column_names:
        table = table.rename_columns([MODIFIED if n == "mtime_ns" else n for n in table.column_names])
    return table.select(schema.names).cast(schema)


def _read_pieces(path: Path, schema: pa.Schema) -> Iterator[pa.Table]:
    """The rows of one manifest file, :data:`PIECE_ROWS` at a time. Small row groups read in one thread keep
    the reader's memory small: row groups of 64k rows read with threads raised a process's memory by 55 MB for
    a 100k-row manifest, 16k-row groups read in one thread by 20 MB (BENCHMARKS.md, "manifests")."""
    for batch in pq.ParquetFile(path).iter_batches(PIECE_ROWS, use_threads=False):
        yield _conform(pa.Table.from_batches([batch]), schema)
    pa.default_memory_pool().release_unused()


def _written_sorted(footer: pq.FileMetaData) -> bool:
    """Whether a base says in its footer that it was written sorted by source (:func:`write`)."""
    metadata = footer.schema.to_arrow_schema().metadata or {}
    return all(metadata.get(key) == value for key, value in _SORTED.items())


def join(items: Iterable[T], pieces: Iterable[pa.Table], schema: pa.Schema, chunk: int,
         name: Callable[[T], str] = str) -> Iterator[tuple[list[T], pa.Table, np.ndarray]]:
    """Match the photos a walk finds with their manifest rows, both read as streams.

    ``items`` (each a photo whose source is ``name(item)``) must come in source order, as
    :func:`colorization.photos.discover.iter_relative` yields them, and ``pieces`` are the manifest in
    consecutive pieces sorted by source (:meth:`Manifest.pieces`). Yields the items ``chunk`` at a time, each
    chunk with the manifest's rows (``schema``'s columns) after the previous chunk's last source up to its own,
    and the position of each item's row among them (-1: none). Rows past the last item are not read. One
    join in Arrow per chunk: a join holds a chunk and a piece or two whatever the sizes.
    """
    pieces = iter(pieces)
    window, more, last = schema.empty_table(), True, ""
    for batch in batched(items, chunk):
        names = [name(item) for item in batch]
        if names[0] < last or names != sorted(names):
            raise ValueError(f"photos must come in name order ({names[0]!r} after {last!r})")
        last = names[-1]
        while more and (not len(window) or window["source"][-1].as_py() < last):
            piece = next(pieces, None)
            more = piece is not None
            window = pa.concat_tables([window, piece.select(schema.names)]) if more else window
        covered = pc.sum(pc.less_equal(window["source"], last)).as_py() or 0
        here, window = window.slice(0, covered), window.slice(covered)
        position = pc.index_in(pa.array(names, pa.string()), value_set=here["source"]).fill_null(-1).to_numpy()
        yield batch, here, position


def nanoseconds(modified: pd.Timestamp | None) -> int | None:
    """A manifest's ``modified`` time as the integer nanoseconds ``os.stat`` gives, to compare exactly."""
    return None if modified is None or pd.isna(modified) else pd.Timestamp(modified).value


def write(path: Path, manifest: pd.DataFrame | pa.Table | Iterable[pa.Table], schema: pa.Schema) -> int:
    """Write the whole manifest (sorted by source) atomically as the new base, then delete the parts it
    supersedes; it may come as consecutive pieces (:func:`_merge`), written as they come. Returns its rows."""
    if isinstance(manifest, pd.DataFrame):
        manifest = pa.Table.from_pandas(manifest, schema=schema, preserve_index=False)
    schema = schema.with_metadata(_SORTED)
    rows = 0
    with atomic_path(path) as temp, pq.ParquetWriter(temp, schema) as writer:
        for piece in [manifest] if isinstance(manifest, pa.Table) else manifest:
            writer.write_table(piece.cast(schema), row_group_size=PIECE_ROWS)
            rows += len(piece)
    for part in part_paths(path):  # oldest first: what a crash leaves is a suffix, already in the base
        part.unlink(missing_ok=True)
    return rows


def _merge(base: Iterable[pa.Table], changes: pa.Table) -> Iterator[pa.Table]:
    """:func:`_overlay` of ``base``, given as consecutive pieces sorted by source, and ``changes``, in
    consecutive sorted pieces: the merged table never exists whole."""
    changes = changes.sort_by("source")
    sources = changes["source"].to_pylist()  # Python strings for the changes only, to place them
    start = 0
    for piece in base:
        if not len(piece):
            continue
        end = bisect.bisect_right(sources, piece["source"][-1].as_py())
        yield _overlay(piece, changes.slice(start, end - start)) if end > start else piece
        start = end
    rest = changes.slice(start)
    yield rest.filter(pc.is_valid(rest["status"]))


def _overlay(base: pa.Table, changes: pa.Table) -> pa.Table:
    """``base`` with ``changes`` (one row per source) over it: rows replaced, added, or removed (null status);
    sorted by source."""
    kept = base.filter(pc.invert(pc.is_in(base["source"], value_set=changes["source"])))
    added = changes.filter(pc.is_valid(changes["status"]))
    return pa.concat_tables([kept, added]).sort_by("source")


class Manifest:
    """A manifest's rows, and its writer (a manifest has one writer at a time: the lock's holder).

    The base stays on disk: :meth:`pieces` and compaction read a base written sorted (:func:`write`) a piece at
    a time, so that a run that plans, appends and compacts holds no copy of it whatever the archive's size; only
    :meth:`table` holds it whole (and a base of an earlier version, unsorted or with a killed run's parts beside
    it, is read whole until the first compaction). Rows appended since the last compaction are kept apart, as
    the Arrow tables of their parts, until the next one folds them in: an append never copies the table, and
    what the writer holds is bounded by :data:`COMPACT_MAX_ROWS`. ``normalize`` adjusts the rows read (say,
    statuses of earlier versions).
    """

    def __init__(self, path: Path, schema: pa.Schema, normalize: Callable[[pa.Table], pa.Table] | None = None):
        self.path, self.schema = path, schema
        self._normalize = normalize or (lambda table: table)
        self._recent: list[pa.Table] = []  # rows appended since the base was written, a table per part
        parts = part_paths(path)
        self._part_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        self._next_part = int(_PART_NAME.fullmatch(parts[-1].name).group(1)) + 1 if parts else 0
        footer = pq.ParquetFile(path).metadata if path.exists() else None
        self._base_rows = footer.num_rows if footer else 0
        # The base can be read a piece at a time when it is sorted and no parts of a killed run lie beside it.
        self._streamed = not parts and (footer is None or _written_sorted(footer))

    def _whole_base(self) -> pa.Table:
        """The base (with any parts of a killed run beside it) read whole, sorted by source."""
        table = self._normalize(read_table(self.path, self.schema))
        sources = table["source"]
        if len(table) > 1 and pc.any(pc.less(sources[1:], sources[:-1])).as_py():  # an earlier version's
            table = table.sort_by("source")
        return table

    def _base_pieces(self) -> Iterator[pa.Table]:
        """The base in consecutive pieces sorted by source, read from disk a piece at a time when it allows."""
        if self._streamed:
            if self.path.exists():
                yield from (self._normalize(piece) for piece in _read_pieces(self.path, self.schema))
            return
        base = self._whole_base()
        yield from (base.slice(start, PIECE_ROWS) for start in range(0, len(base), PIECE_ROWS))

    def table(self, changes: dict[str, dict | None] | None = None) -> pa.Table:
        """The whole table, sorted by source, with ``changes`` (not yet appended) over it: :meth:`pieces` joined."""
        return pa.concat_tables([self.schema.empty_table(), *self.pieces(changes)])

    def pieces(self, changes: dict[str, dict | None] | None = None) -> Iterator[pa.Table]:
        """:meth:`table` in consecutive pieces sorted by source, without reading the base whole."""
        changes = self._changes(changes)
        if not len(changes):
            yield from self._base_pieces()
            return
        yield from _merge(self._base_pieces(), changes)

    def frame(self, changes: dict[str, dict | None] | None = None) -> pd.DataFrame:
        """:meth:`table` as a DataFrame."""
        return self.table(changes).to_pandas()

    def append(self, changes: dict[str, dict | None]) -> None:
        """Record ``changes`` (source → row, None removing the source's row) as a new part, then compact if the
        parts have grown large. An error writing the part leaves the manifest as it was."""
        if not changes:
            return
        self._write_part(self._changes_table(changes))
        self._compact_if_large()

    def _compact_if_large(self) -> None:
        if self._part_rows > max(COMPACT_MIN_ROWS, min(COMPACT_FRACTION * self._base_rows, COMPACT_MAX_ROWS)):
            self._rewrite(self._changes())

    def append_table(self, rows: pa.Table) -> None:
        """:meth:`append` of rows held as an Arrow table (one per source): a piece of a split run's share
        without a Python object for each row."""
        if not len(rows):
            return
        self._write_part(rows.select(self.schema.names).cast(self.schema))
        self._compact_if_large()

    def _write_part(self, table: pa.Table) -> None:
        """``table`` as the next part, written atomically, and held until the next compaction. A flush's few rows
        make a table of their own, each with its own buffers; every :data:`_COMBINE_TABLES` they are combined
        into one (holding them apart raised a 100k-photo run's peak by 20 MB)."""
        with atomic_path(parts_dir(self.path) / f"part-{self._next_part:06d}.parquet") as temp:
            pq.write_table(table, temp)
        self._next_part += 1
        self._part_rows += len(table)
        self._recent.append(table)
        if len(self._recent) >= _COMBINE_TABLES:
            self._recent = [pa.concat_tables(self._recent).combine_chunks()]

    def compact(self) -> None:
        """Write base and parts merged as the new base and delete the parts (nothing to do when there are none)."""
        if self._recent or self._part_rows:
            self._rewrite(self._changes())

    def _rewrite(self, changes: pa.Table) -> None:
        """Write the base with ``changes`` (every row since it was written, one per source) over it as the new
        base, a piece at a time."""
        self._base_rows = write(self.path, _merge(self._base_pieces(), changes), self.schema)
        self._streamed = True
        self._recent, self._part_rows, self._next_part = [], 0, 0
        # Hand the merge's buffers back: Arrow's pool keeps freed memory otherwise, and a run's memory would grow
        # by several copies of the table (BENCHMARKS.md, "manifests").
        pa.default_memory_pool().release_unused()

    def _changes(self, changes: dict[str, dict | None] | None = None) -> pa.Table:
        """The rows appended since the last compaction with ``changes`` over them: the last row of each source."""
        tables = [*self._recent, *([self._changes_table(changes)] if changes else [])]
        return _latest(pa.concat_tables(tables)) if tables else self.schema.empty_table()

    def _changes_table(self, changes: dict[str, dict | None]) -> pa.Table:
        rows = [row if row is not None else {"source": source} for source, row in changes.items()]
        return pa.Table.from_pylist(rows, schema=self.schema)
