"""What colorize has done to an archive: ``OUTPUT/.colorize/manifest.parquet``, and what a re-run must redo.

One row per input photo, its history: source, bytes, modified, hash, status (colorized | colour | error),
output, model_id, error, and ``time``, when that outcome was recorded (UTC). A photo a run leaves as it is
keeps its row untouched. A re-run redoes a photo when it is new or changed (size or modification time), when
the model changed, or when its output has gone missing; ``colour`` photos are redone only with ``recolor``.
Photos are claimed (status ``pending``) before their render starts, so the outputs of a killed run are known
to be this tool's own and are redone, never mistaken for someone else's files. The manifest has one writer,
:class:`Ledger`, which appends each flush's rows as a small part beside ``manifest.parquet`` and folds the parts
into it now and then and at the end of a run (:mod:`colorization.manifest`), so recording a batch costs the same
whatever the size of the archive; :func:`read_manifest` reads both. Planning walks the source and reads the
manifest side by side, both in name order, and writes the photos to do to a worklist on disk
(``OUTPUT/.colorize/worklist.parquet``, :mod:`colorization.colorize.worklist`), which the run reads a batch at a
time: planning and running hold the same memory whatever the archive's size and however much there is to do.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from colorization import manifest
from colorization.colorize import worklist
from colorization.errors import ConfigError, as_transient
from colorization.photos.archive import Entry

STATE_DIR = ".colorize"
LOCK_NAME = f"{STATE_DIR}/lock"  # held by the run colouring into the folder (colorization.lock)
SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("bytes", pa.int64()),
        (manifest.MODIFIED, manifest.MODIFIED_TYPE),
        ("hash", pa.string()),
        ("status", pa.string()),
        ("output", pa.string()),
        ("model_id", pa.string()),
        ("error", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
    ]
)
# What a manifest row's ``status`` says of its photo:
COLORIZED = "colorized"  # coloured into OUTPUT by the row's model
COLOUR = "colour"  # already in colour, left alone (unless --recolor)
ERROR = "error"  # unreadable or refused; ``error`` says why; retried once the file changes (size or mtime)
PENDING = "pending"  # claimed before rendering starts: a run killed mid-render left at most these behind
_LEGACY_UNCHANGED = "unchanged"  # written by earlier versions over colorized rows that a run left alone


def check_paths(source: Path, output: Path) -> None:
    """Refuse a missing input, and an output inside the input (nothing is ever written inside INPUT)."""
    if not source.exists():
        raise ConfigError(f"{source}: no such folder or archive")
    if source.is_dir() and output.resolve().is_relative_to(source.resolve()):
        raise ConfigError(f"{output}: the output folder must not be inside the input folder {source}")


def manifest_path(output: Path) -> Path:
    return output / STATE_DIR / "manifest.parquet"


def sheet_path(output: Path) -> Path:
    """The contact sheet of ``output`` (colorization.colorize.gallery.html_contact_sheet), rewritten by every run."""
    return output / STATE_DIR / "gallery.html"


def read_manifest(output: Path) -> pd.DataFrame:
    """The manifest of ``output`` (empty when there is none), base and parts merged (:mod:`colorization.manifest`);
    manifests of earlier versions read as well."""
    return _normalize(manifest.read_table(manifest_path(output), SCHEMA)).to_pandas()


def _normalize(rows: pa.Table) -> pa.Table:
    """Rows of earlier versions as this one writes them."""
    status = rows["status"]
    fixed = pc.if_else(pc.equal(status, _LEGACY_UNCHANGED), COLORIZED, status)
    return rows.set_column(rows.schema.get_field_index("status"), "status", fixed)


class Ledger:
    """The manifest of ``output`` and its only writer; its rows are read from disk as they are asked for
    (:meth:`pieces` a piece at a time, as :func:`plan` reads them; :meth:`table` whole).

    Rows are added (or put back) as outcomes arrive and written together by :meth:`flush`, which appends only
    them to the manifest (a small part file, written atomically), so a flush costs the same whatever the size of
    the archive; :meth:`compact` folds the parts into ``manifest.parquet`` (also done by itself when the parts
    grow large). A write that fails for a transient reason (disk full, permissions) raises
    :class:`TransientError`; the rows stay unsaved and the manifest on disk stays as the last flush left it.
    ``path`` puts the manifest elsewhere than ``OUTPUT/.colorize`` (a share's own, :mod:`colorization.colorize.shares`).
    """

    def __init__(self, output: Path, path: Path | None = None):
        self.output = output
        self.path = path or manifest_path(output)
        self._manifest = manifest.Manifest(self.path, SCHEMA, _normalize)
        self._unsaved: dict[str, dict | None] = {}

    def frame(self) -> pd.DataFrame:
        """The rows, unsaved ones included, as a table sorted by source."""
        return self._manifest.frame(self._unsaved)

    def table(self) -> pa.Table:
        """The rows, unsaved ones included, as an Arrow table sorted by source."""
        return self._manifest.table(self._unsaved)

    def pieces(self) -> Iterator[pa.Table]:
        """:meth:`table` in consecutive pieces, read from disk a piece at a time: what :func:`plan` reads."""
        return self._manifest.pieces(self._unsaved)

    def add(self, records: list[dict]) -> None:
        """Add rows, each replacing the row of the same source."""
        self._unsaved.update((r["source"], r) for r in records)

    def add_table(self, rows: pa.Table) -> None:
        """Record a table of rows (each replacing the row of the same source) as one part: a piece of a split
        run's share, merged without a Python object for each row. Rows added before are flushed first; a failure
        to write raises :class:`TransientError` if transient."""
        self.flush()
        with _writing(self.path):
            self._manifest.append_table(rows)

    def put_back(self, source: str, row: dict | None) -> None:
        """Restore the row a source had before (None: it had none)."""
        self._unsaved[source] = row

    def flush(self) -> None:
        """Append the rows changed since the last flush to the manifest (nothing when none changed)."""
        if not self._unsaved:
            return
        with _writing(self.path):
            self._manifest.append(self._unsaved)
        self._unsaved = {}

    def compact(self) -> None:
        """Fold the parts flushed so far into ``manifest.parquet``, so that other tools can read it alone. A
        failure leaves the parts (the rows are safe in them) and raises :class:`TransientError` if transient."""
        with _writing(self.path):
            self._manifest.compact()


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Raise a failure to write ``path`` as :class:`TransientError` where it is one (disk full, permissions)."""
    try:
        yield
    except OSError as exc:
        raise as_transient(exc, f"writing {path}") or exc


def worklist_path(output: Path) -> Path:
    """Where :func:`plan` writes the photos a run of ``output`` will colour."""
    return output / STATE_DIR / "worklist.parquet"


@dataclass
class Plan:
    """Photos to process now (on disk, each with its manifest row, put back if a run stops), rows for entries
    refused while planning, how many are left as they are and how many were found."""

    pending: worklist.Worklist
    records: list[dict]
    kept: int
    found: int = 0


_PLAN_COLUMNS = ("status", "bytes", manifest.MODIFIED, "model_id")  # what plan needs of a row
PLAN_CHUNK = 8192  # entries joined with the manifest at a time


def plan(entries: Iterable[Entry], rows: pa.Table | Iterable[pa.Table], output: Path, model_id: str,
         recolor: bool = False, overwrite: bool = False) -> Plan:
    """Split the source's entries into work to do, entries refused and work already done (see the module
    docstring). ``entries`` come in name order (:func:`colorization.photos.archive.iter_entries`) and ``rows``,
    the manifest, in source order (:meth:`Ledger.pieces`, or a table): both are read as a stream, and the photos
    to do are written to :func:`worklist_path` as they are found, so planning holds memory for one chunk of
    them whatever the archive's size."""
    records, kept, found = [], 0, 0
    with _writing(worklist_path(output)), worklist.writing(worklist_path(output), SCHEMA) as add:
        for chunk, matched, table, position in _joined(entries, rows):
            pending, taken = [], []
            for entry, row, at in zip(chunk, matched, position):
                if not _redo(entry, row, output, model_id, recolor, overwrite):
                    kept += 1
                elif (error := _refusal(entry, row, output, overwrite)) is not None:
                    records.append(record(entry, ERROR, model_id, error=error))
                else:
                    pending.append(entry)
                    taken.append(at)
            found += len(chunk)
            add(pending, table, np.array(taken, np.int64))
    return Plan(worklist.Worklist(worklist_path(output)), records, kept, found)


def _refusal(entry: Entry, row: dict | None, output: Path, overwrite: bool) -> str | None:
    """Why an entry that needs doing is refused (None: it is not)."""
    if not entry.safe:
        return f"{entry.name}: unsafe path in archive, skipped"
    if entry.skip:
        return f"{entry.name}: {entry.skip}"
    ours = row is not None and row["status"] in (COLORIZED, PENDING)
    if (output / entry.name).exists() and not ours and not overwrite:
        return f"{entry.name}: an output exists that colorize did not write; pass --overwrite to replace it"
    return None


def _joined(entries: Iterable[Entry], rows: pa.Table | Iterable[pa.Table]
            ) -> Iterator[tuple[list[Entry], list[dict | None], pa.Table, np.ndarray]]:
    """:func:`manifest.join` of the entries and the manifest, with each entry's row as far as :func:`plan` needs
    it (None: it has none): only the rows found become Python objects, and only the columns plan reads."""
    pieces = [rows] if isinstance(rows, pa.Table) else rows
    for chunk, here, position in manifest.join(entries, pieces, SCHEMA, PLAN_CHUNK, lambda entry: entry.name):
        found = here.select(_PLAN_COLUMNS).take(position[position >= 0])
        modified = found.schema.get_field_index(manifest.MODIFIED)
        found = found.set_column(modified, manifest.MODIFIED, found[manifest.MODIFIED].cast(pa.int64()))
        matched = iter(found.to_pylist())
        yield chunk, [next(matched) if at >= 0 else None for at in position], here, position


def _redo(entry: Entry, row: dict | None, output: Path, model_id: str, recolor: bool, overwrite: bool) -> bool:
    if overwrite or row is None or row["status"] == PENDING:
        return True
    if (row["bytes"], row[manifest.MODIFIED]) != (entry.size, entry.mtime_ns):
        return True
    if row["status"] == COLORIZED:
        return row["model_id"] != model_id or not (output / entry.name).exists()
    return row["status"] == COLOUR and recolor


def record(entry: Entry, status: str, model_id: str, digest: str | None = None, error: str | None = None) -> dict:
    """A manifest row for ``entry``, stamped now."""
    return {
        "source": entry.name,
        "bytes": entry.size,
        manifest.MODIFIED: entry.mtime_ns,
        "hash": digest,
        "status": status,
        "output": entry.name if status in (COLORIZED, PENDING) else None,
        "model_id": model_id,
        "error": error,
        "time": datetime.datetime.now(datetime.timezone.utc),
    }
