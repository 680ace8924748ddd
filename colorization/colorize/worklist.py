"""The photos a colorize run will colour, kept on disk: a Parquet file in name order, written as planning finds
them and read back a batch at a time as the loop reaches them.

Each photo comes with the manifest row it had before the run (null: none), which the loop puts back if the run
stops before the photo settles. Held in memory, a first run's photos to do took ~0.2 KB each and a re-run
under a new model 0.8 KB more for their rows: a million photos meant up to a gigabyte, held for the whole run.
Kept in a file, they cost a run one batch of memory whatever the archive's size (BENCHMARKS.md, "manifests").
A split run's shares are slices of a worklist (:mod:`colorization.colorize.shares`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from colorization.atomic import atomic_path
from colorization.batching import batched
from colorization.photos.archive import Entry

PREVIOUS = "previous"  # the column of each photo's manifest row before the run (a struct; null: none)
READ_ROWS = 8192  # rows read from the file at a time
_ENTRY_FIELDS = [("name", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64())]

Add = Callable[[Sequence[Entry], pa.Table, np.ndarray], None]


def _file_schema(rows: pa.Schema) -> pa.Schema:
    """A worklist's columns, for a manifest whose rows have the schema ``rows``."""
    return pa.schema([*_ENTRY_FIELDS, pa.field(PREVIOUS, pa.struct(list(rows)))])


@contextlib.contextmanager
def writing(path: Path, rows: pa.Schema) -> Iterator[Add]:
    """Write a worklist at ``path`` (atomically: it appears whole when the block ends, or not at all).

    Yields ``add(entries, table, at)``: append ``entries`` in order, the previous row of ``entries[i]`` being
    row ``at[i]`` of ``table`` (rows of the manifest's schema), or none where ``at[i]`` is negative.
    """
    schema = _file_schema(rows)
    kind = schema.field(PREVIOUS).type

    def add(entries: Sequence[Entry], table: pa.Table, at: np.ndarray) -> None:
        if not entries:
            return
        missing = at < 0
        taken = table.select(rows.names).cast(rows).take(pa.array(np.where(missing, 0, at), mask=missing))
        previous = pa.StructArray.from_arrays([column.combine_chunks() for column in taken.columns],
                                              fields=list(kind), mask=pa.array(missing))
        columns = [[e.name for e in entries], [e.size for e in entries], [e.mtime_ns for e in entries]]
        writer.write_table(pa.Table.from_arrays([*map(pa.array, columns), previous], schema=schema),
                           row_group_size=READ_ROWS)

    with atomic_path(path) as temp, pq.ParquetWriter(temp, schema) as writer:
        yield add


def write(path: Path, entries: Iterable[Entry], rows: pa.Schema) -> Worklist:
    """A worklist at ``path`` of ``entries`` with no previous rows (a split run's share: a child puts a claim
    back as a removal of its share's own row)."""
    with writing(path, rows) as add:
        for batch in batched(entries, READ_ROWS):
            add(batch, rows.empty_table(), np.full(len(batch), -1))
    return Worklist(path)


class Worklist:
    """A worklist on disk (:func:`writing`): its length, its photos, and its photos in batches with their rows."""

    def __init__(self, path: Path):
        self.path = path
        self._rows = pq.ParquetFile(path).metadata.num_rows

    def __len__(self) -> int:
        return self._rows

    def __iter__(self) -> Iterator[Entry]:
        """The photos, in order."""
        return (entry for entry, _ in self._read())

    def batches(self, size: int) -> Iterator[list[tuple[Entry, dict | None]]]:
        """The photos ``size`` at a time (the last batch may be smaller), each with its previous row or None."""
        return batched(self._read(), size)

    def sizes(self) -> Iterator[int]:
        """Each photo's size in bytes, in order, without reading the rest."""
        for batch in pq.ParquetFile(self.path).iter_batches(READ_ROWS, columns=["size"], use_threads=False):
            yield from batch.column(0).to_pylist()

    def _read(self) -> Iterator[tuple[Entry, dict | None]]:
        for batch in pq.ParquetFile(self.path).iter_batches(READ_ROWS, use_threads=False):
            names, sizes, times, previous = (column.to_pylist() for column in batch.columns)
            yield from ((Entry(*fields), row) for *fields, row in zip(names, sizes, times, previous))
        pa.default_memory_pool().release_unused()
