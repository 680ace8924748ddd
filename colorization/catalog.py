"""What colorize has done to an archive: ``OUTPUT/.colorize/manifest.parquet``, and what a re-run must redo.

One row per input photo, its history: source, bytes, mtime_ns, hash, status (colorized | colour | error),
output, model_id, error, and ``time``, when that outcome was recorded (UTC). A photo a run leaves as it is
keeps its row untouched. A re-run redoes a photo when it is new or changed (size or modification time), when
the model changed, or when its output has gone missing; ``colour`` photos are redone only with ``recolor``.
Photos are claimed (status ``pending``) before their render starts, so the outputs of a killed run are known
to be this tool's own and are redone, never mistaken for someone else's files. The manifest has one writer,
:class:`Ledger`.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from colorization import manifest
from colorization.archive import Entry
from colorization.errors import ConfigError, as_transient

STATE_DIR = ".colorize"
LOCK_NAME = f"{STATE_DIR}/lock"  # held by the run colouring into the folder (colorization.lock)
SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("bytes", pa.int64()),
        ("mtime_ns", pa.int64()),
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
ERROR = "error"  # unreadable or refused; ``error`` says why, and the next run tries it again
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


def read_manifest(output: Path) -> pd.DataFrame:
    """The manifest of ``output`` (empty when there is none); manifests of earlier versions read as well."""
    rows = manifest.read(manifest_path(output), SCHEMA)
    rows.loc[rows["status"] == _LEGACY_UNCHANGED, "status"] = COLORIZED
    return rows


class Ledger:
    """The manifest of ``output`` in memory and its only writer.

    Rows are added (or put back) as outcomes arrive and written together, atomically, by :meth:`flush`. A
    write that fails for a transient reason (disk full, permissions) raises :class:`TransientError`; the rows
    stay unsaved and the manifest on disk stays as the last flush left it.
    """

    def __init__(self, output: Path):
        self.output = output
        self.rows = {row["source"]: row for row in read_manifest(output).to_dict("records")}
        self._unsaved: dict[str, dict | None] = {}

    def frame(self) -> pd.DataFrame:
        """The rows, unsaved ones included, as a table sorted by source."""
        rows = {**self.rows, **self._unsaved}
        records = [rows[source] for source in sorted(rows) if rows[source] is not None]
        return pd.DataFrame.from_records(records, columns=SCHEMA.names)

    def get(self, source: str) -> dict | None:
        return self._unsaved[source] if source in self._unsaved else self.rows.get(source)

    def add(self, records: list[dict]) -> None:
        """Add rows, each replacing the row of the same source."""
        self._unsaved.update((r["source"], r) for r in records)

    def put_back(self, source: str, row: dict | None) -> None:
        """Restore the row a source had before (None: it had none)."""
        self._unsaved[source] = row

    def flush(self) -> None:
        """Write the manifest if anything changed since the last flush."""
        if not self._unsaved:
            return
        try:
            manifest.write(manifest_path(self.output), self.frame(), SCHEMA)
        except OSError as exc:
            raise as_transient(exc, f"writing {STATE_DIR}/manifest.parquet") or exc
        self.rows = {s: r for s, r in {**self.rows, **self._unsaved}.items() if r is not None}
        self._unsaved = {}


@dataclass
class Plan:
    """Entries to process now, rows for entries refused while planning, and how many are left as they are."""

    pending: list[Entry]
    records: list[dict]
    kept: int


def plan(entries: list[Entry], rows: pd.DataFrame, output: Path, model_id: str, recolor: bool = False,
         overwrite: bool = False) -> Plan:
    """Split the source's entries into work to do, entries refused and work already done (see the module
    docstring)."""
    previous = {row["source"]: row for row in rows.to_dict("records")}
    pending, records, kept = [], [], 0
    for entry in entries:
        row = previous.get(entry.name)
        ours = row is not None and row["status"] in (COLORIZED, PENDING)
        if not _redo(entry, row, output, model_id, recolor, overwrite):
            kept += 1
        elif not entry.safe:
            records.append(record(entry, ERROR, model_id, error=f"{entry.name}: unsafe path in archive, skipped"))
        elif entry.skip:
            records.append(record(entry, ERROR, model_id, error=f"{entry.name}: {entry.skip}"))
        elif (output / entry.name).exists() and not ours and not overwrite:
            error = f"{entry.name}: an output exists that colorize did not write; pass --overwrite to replace it"
            records.append(record(entry, ERROR, model_id, error=error))
        else:
            pending.append(entry)
    return Plan(pending, records, kept)


def _redo(entry: Entry, row: dict | None, output: Path, model_id: str, recolor: bool, overwrite: bool) -> bool:
    if overwrite or row is None or row["status"] == PENDING:
        return True
    if (row["bytes"], row["mtime_ns"]) != (entry.size, entry.mtime_ns):
        return True
    if row["status"] == COLORIZED:
        return row["model_id"] != model_id or not (output / entry.name).exists()
    return row["status"] == COLOUR and recolor


def record(entry: Entry, status: str, model_id: str, digest: str | None = None, error: str | None = None) -> dict:
    """A manifest row for ``entry``, stamped now."""
    return {
        "source": entry.name,
        "bytes": entry.size,
        "mtime_ns": entry.mtime_ns,
        "hash": digest,
        "status": status,
        "output": entry.name if status in (COLORIZED, PENDING) else None,
        "model_id": model_id,
        "error": error,
        "time": datetime.datetime.now(datetime.timezone.utc),
    }
