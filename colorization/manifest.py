"""Manifests: Parquet tables with one row per source file, appended to as work finishes and compacted now and then.

The dataset's manifest (preprocess) and the archive's manifest (colorize) share this code and differ only in
their schema, which has a ``source`` and a ``status`` column (never null in a real row).

On disk a manifest is a base file (``manifest.parquet``, the only file of earlier versions) and, beside it, the
changes since it was last written: ``manifest.parts/part-NNNNNN.parquet``, one small file per :meth:`Manifest.append`,
each written atomically (temporary name, then rename), so that recording a batch costs the same whatever the
size of the manifest. Reading takes the base, then the parts in order, a later row for a source replacing an
earlier one; a row whose ``status`` is null removes its source. When the parts hold more rows than
:data:`COMPACT_FRACTION` of the base (and at the end of a run) the merged table is written as the new base and
the parts are deleted, oldest first: the amortised cost stays constant per row. The base is written sorted by
source, in row groups of :data:`PIECE_ROWS`, and says so in its schema's metadata, so that it can be read,
merged and rewritten a piece at a time without holding it whole.

A killed run leaves a readable manifest at every step: a part is whole or absent, and between writing the new
base and deleting the last part, the parts still there are the newest ones (a suffix of the history), whose
rows the base already holds: reading base + any such suffix gives the same table, so re-reading and
re-compacting are idempotent. A finished run leaves the base alone, so other tools (DuckDB, pandas) may read
``manifest.parquet`` directly; while a run is going (or after a killed one) use :func:`read`.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from colorization.atomic import atomic_path

MODIFIED = "modified"  # the column of the source file's modification time, exact to the nanosecond
MODIFIED_TYPE = pa.timestamp("ns", tz="UTC")
COMPACT_FRACTION = 0.25  # compact when the parts hold more rows than this fraction of the base ...
COMPACT_MIN_ROWS = 2048  # ... and at least this many rows (a new archive's first batches)
PIECE_ROWS = 16_384  # rows of the base read, merged and written at a time (a row group each): see _read_pieces
_SORTED = {b"colorization.sorted_by": b"source"}  # in the schema of a base written sorted (all since 2026-11-27)
_PART_NAME = re.compile(r"part-(\d{6,})\.parquet")


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


def read_table(path: Path, schema: pa.Schema) -> pa.Table:
    """:func:`read` as an Arrow table."""
    base = _read_file(path, schema) if path.exists() else schema.empty_table()
    parts = part_paths(path)
    if not parts:
        return base
    rows = pa.concat_tables([base, *(_read_file(p, schema) for p in parts)])
    order = pa.array(np.arange(len(rows)))
    last = rows.append_column("_order", order).group_by("source").aggregate([("_order", "max")])["_order_max"]
    rows = rows.take(last)
    return rows.filter(pc.is_valid(rows["status"])).sort_by("source")


def _read_file(path: Path, schema: pa.Schema) -> pa.Table:
    """One file of a manifest, in ``schema``."""
    return _conform(pq.read_table(path), schema)


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


class SourceIndex:
    """Where each source of a column of strings sits, found through 64-bit hashes of the strings.

    Sixteen bytes a row and no Python object per row: a pandas index of the sources held each as a Python
    string (~100 bytes a row with its hash table) and made them anew at every compaction.
    """

    _SLICE = 65_536  # sources hashed at a time, so that only this many Python strings exist at once

    def __init__(self, sources: pa.ChunkedArray | pa.Array):
        if isinstance(sources, pa.ChunkedArray):  # one chunk (a merged table's) is used as it is, not copied
            sources = sources.chunk(0) if sources.num_chunks == 1 else sources.combine_chunks()
        self._sources = sources
        hashes = np.empty(len(self._sources), np.int64)
        for start in range(0, len(hashes), self._SLICE):
            strings = self._sources.slice(start, self._SLICE).to_pylist()
            hashes[start : start + len(strings)] = np.fromiter(map(hash, strings), np.int64, len(strings))
        self._order = np.argsort(hashes, kind="stable")
        self._hashes = hashes[self._order]

    def find(self, source: str) -> int | None:
        """The row of ``source`` (None: it has none)."""
        key = hash(source)
        at = int(np.searchsorted(self._hashes, key))
        while at < len(self._hashes) and self._hashes[at] == key:  # more than one only on a hash collision
            row = int(self._order[at])
            if self._sources[row].as_py() == source:
                return row
            at += 1
        return None


class SourceRows:
    """Rows of a manifest held as one Arrow table and found by source through a :class:`SourceIndex`: a
    manifest's base once read, and the rows a planned run would put back (~140 bytes a row, where a dict of
    each took 600)."""

    def __init__(self, table: pa.Table):
        self.table = table
        self._index = SourceIndex(table["source"])

    def __len__(self) -> int:
        return len(self.table)

    def __iter__(self) -> Iterator[str]:
        return iter(self.table["source"].to_pylist())

    def __contains__(self, source: str) -> bool:
        return self._index.find(source) is not None

    def get(self, source: str) -> dict | None:
        """The row of ``source`` (None: it has none)."""
        row = self._index.find(source)
        return None if row is None else self.table.slice(row, 1).to_pylist()[0]


class Manifest:
    """A manifest's rows, and its writer (a manifest has one writer at a time: the lock's holder).

    The base stays on disk until a lookup or the whole table is asked for (:meth:`get`, :meth:`table`); then
    it is read as :class:`SourceRows`. :meth:`pieces` and compaction read a base written
    sorted (:func:`write`) a piece at a time instead, so that a run that only plans, appends and compacts holds
    no copy of it: a re-run of a large archive that finds a few new photos holds memory for those only. Rows
    appended since the last compaction are kept apart until the next one folds them in, so an append never
    copies the table. ``normalize`` adjusts the rows read (say, statuses of earlier versions).
    ``full_rewrite`` writes the whole manifest at every append instead (what earlier versions did; for
    benchmarks).
    """

    def __init__(self, path: Path, schema: pa.Schema, normalize: Callable[[pa.Table], pa.Table] | None = None,
                 full_rewrite: bool = False):
        self.path, self.schema, self.full_rewrite = path, schema, full_rewrite
        self._normalize = normalize or (lambda table: table)
        self._base: pa.Table | None = None  # read when first needed (:meth:`_loaded`)
        self._rows: SourceRows | None = None  # the base with its index, made when a lookup needs it
        self._recent: dict[str, dict | None] = {}  # rows appended since the base was read or compacted
        parts = part_paths(path)
        self._part_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        self._next_part = int(_PART_NAME.fullmatch(parts[-1].name).group(1)) + 1 if parts else 0
        footer = pq.ParquetFile(path).metadata if path.exists() else None
        self._base_rows = footer.num_rows if footer else 0
        # The base can be read a piece at a time when it is sorted and no parts of a killed run lie beside it.
        self._streamed = not parts and (footer is None or _written_sorted(footer))

    def _loaded(self) -> SourceRows:
        """The base (with any parts beside it) and its index, read the first time they are needed."""
        if self._base is None:
            table = self._normalize(read_table(self.path, self.schema))
            sources = table["source"]
            if len(table) > 1 and pc.any(pc.less(sources[1:], sources[:-1])).as_py():  # an earlier version's
                table = table.sort_by("source")
            self._base = table
        if self._rows is None:
            self._rows = SourceRows(self._base)
        return self._rows

    def _base_pieces(self) -> Iterator[pa.Table]:
        """The base in consecutive pieces sorted by source: read from disk unless it is in memory."""
        if self._base is None and self._streamed:
            if self.path.exists():
                yield from (self._normalize(piece) for piece in _read_pieces(self.path, self.schema))
            return
        base = self._base if self._base is not None else self._loaded().table
        yield from (base.slice(start, PIECE_ROWS) for start in range(0, len(base), PIECE_ROWS))

    def __len__(self) -> int:
        rows = self._loaded()
        return len(rows) + sum((r is not None) - (s in rows) for s, r in self._recent.items())

    def get(self, source: str) -> dict | None:
        """The row of ``source`` (None: it has none)."""
        if source in self._recent:
            return self._recent[source]
        return self._loaded().get(source)

    def table(self, changes: dict[str, dict | None] | None = None) -> pa.Table:
        """The whole table, sorted by source, with ``changes`` (not yet appended) over it."""
        base = self._loaded().table
        changes = {**self._recent, **(changes or {})}
        if not changes:
            return base
        return _overlay(base, self._changes_table(changes))

    def pieces(self, changes: dict[str, dict | None] | None = None) -> Iterator[pa.Table]:
        """:meth:`table` in consecutive pieces sorted by source, without reading the base whole."""
        changes = {**self._recent, **(changes or {})}
        if not changes:
            yield from self._base_pieces()
            return
        yield from _merge(self._base_pieces(), self._changes_table(changes))

    def frame(self, changes: dict[str, dict | None] | None = None) -> pd.DataFrame:
        """:meth:`table` as a DataFrame."""
        return self.table(changes).to_pandas()

    def append(self, changes: dict[str, dict | None]) -> None:
        """Record ``changes`` (source → row, None removing the source's row) as a new part, then compact if the
        parts have grown large. An error writing the part leaves the manifest as it was."""
        if not changes:
            return
        if self.full_rewrite:
            write(self.path, self.table(changes), self.schema)
            self._recent.update(changes)
            self._part_rows = 0
            return
        self._write_part(self._changes_table(changes))
        self._recent.update(changes)
        if self._part_rows > max(COMPACT_MIN_ROWS, COMPACT_FRACTION * self._base_rows):
            self._rewrite(self._changes_table(self._recent), keep=True)

    def append_table(self, rows: pa.Table) -> None:
        """Record ``rows`` (one per source, each replacing the source's row) as one part, then fold everything
        into the base at once: many rows (a split run's share) without a Python object for each."""
        if not len(rows):
            return
        rows = rows.select(self.schema.names).cast(self.schema)
        self._write_part(rows)
        older = self._changes_table(self._recent) if self._recent else self.schema.empty_table()
        older = older.filter(pc.invert(pc.is_in(older["source"], value_set=rows["source"])))
        try:
            self._rewrite(pa.concat_tables([older, rows]))
        except BaseException:  # the part holds the rows: keep them here too, as a plain append would
            self._recent.update((row["source"], row) for row in rows.to_pylist())
            raise

    def _write_part(self, table: pa.Table) -> None:
        """``table`` as the next part, written atomically."""
        with atomic_path(parts_dir(self.path) / f"part-{self._next_part:06d}.parquet") as temp:
            pq.write_table(table, temp)
        self._next_part += 1
        self._part_rows += len(table)

    def compact(self) -> None:
        """Write base and parts merged as the new base and delete the parts (nothing to do when there are none)."""
        if not self._recent and not self._part_rows:
            return
        self._rewrite(self._changes_table(self._recent) if self._recent else self.schema.empty_table())

    def _rewrite(self, changes: pa.Table, keep: bool = False) -> None:
        """Write the base with ``changes`` (every row since it was written, one per source) over it as the new
        base, a piece at a time. With ``keep`` (the parts outgrew the base: a run that writes much, whose next
        compaction is near) the new base stays in memory for that compaction to merge; otherwise the base is let
        go, to be read again a piece at a time, so that a run that changes little holds none of it."""
        kept: list[pa.Table] = []
        pieces = _merge(self._base_pieces(), changes)
        self._base_rows = write(self.path, (kept.append(p) or p for p in pieces) if keep else pieces, self.schema)
        self._base = pa.concat_tables(kept) if keep else None
        self._rows = None
        self._streamed = True
        self._recent, self._part_rows, self._next_part = {}, 0, 0
        # Hand the merge's buffers back: Arrow's pool keeps freed memory otherwise, and a run's memory would grow
        # by several copies of the table (BENCHMARKS.md, "manifests").
        pa.default_memory_pool().release_unused()

    def _changes_table(self, changes: dict[str, dict | None]) -> pa.Table:
        rows = [row if row is not None else {"source": source} for source, row in changes.items()]
        return pa.Table.from_pylist(rows, schema=self.schema)
