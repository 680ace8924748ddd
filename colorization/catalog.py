"""What colorize has done to an archive: ``OUTPUT/.colorize/manifest.parquet``, and what a re-run must redo.

One row per input photo: source, bytes, mtime_ns, hash, status (colorized | colour | error | unchanged),
output, model_id, error. A re-run redoes a photo when it is new or changed (size or modification time), when
the model changed, or when its output has gone missing; ``colour`` photos are redone only with ``recolor``.
Photos are claimed (status ``pending``) before their render starts, so the outputs of a killed run are known
to be this tool's own and are redone, never mistaken for someone else's files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from colorization import manifest
from colorization.archive import Entry
from colorization.errors import ConfigError
from colorization.render import COLORIZED, COLOUR, ERROR, PENDING, UNCHANGED

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
    ]
)


def check_paths(source: Path, output: Path) -> None:
    """Refuse a missing input, and an output inside the input (nothing is ever written inside INPUT)."""
    if not source.exists():
        raise ConfigError(f"{source}: no such folder or archive")
    if source.is_dir() and output.resolve().is_relative_to(source.resolve()):
        raise ConfigError(f"{output}: the output folder must not be inside the input folder {source}")


def manifest_path(output: Path) -> Path:
    return output / STATE_DIR / "manifest.parquet"


def read_manifest(output: Path) -> pd.DataFrame:
    return manifest.read(manifest_path(output), SCHEMA)


def write_manifest(output: Path, rows: pd.DataFrame) -> None:
    manifest.write(manifest_path(output), rows, SCHEMA)


merge = manifest.merge


@dataclass
class Plan:
    """Entries to process now, and records for those left as they are."""

    pending: list[Entry]
    skipped: list[dict]


def plan(entries: list[Entry], rows: pd.DataFrame, output: Path, model_id: str, recolor: bool = False,
         overwrite: bool = False) -> Plan:
    """Split the source's entries into work to do and work already done (see the module docstring)."""
    previous = {row["source"]: row for row in rows.to_dict("records")}
    pending, skipped = [], []
    for entry in entries:
        row = previous.get(entry.name)
        ours = row is not None and row["status"] in (COLORIZED, UNCHANGED, PENDING)
        if not entry.safe:
            skipped.append(record(entry, ERROR, model_id, error=f"{entry.name}: unsafe path in archive, skipped"))
        elif not _redo(entry, row, output, model_id, recolor, overwrite):
            skipped.append({**row, "status": UNCHANGED} if ours else row)
        elif (output / entry.name).exists() and not ours and not overwrite:
            error = f"{output / entry.name}: exists and was not written by colorize; pass --overwrite to replace it"
            skipped.append(record(entry, ERROR, model_id, error=error))
        else:
            pending.append(entry)
    return Plan(pending, skipped)


def _redo(entry: Entry, row: dict | None, output: Path, model_id: str, recolor: bool, overwrite: bool) -> bool:
    if overwrite or row is None or row["status"] == PENDING:
        return True
    if (row["bytes"], row["mtime_ns"]) != (entry.size, entry.mtime_ns):
        return True
    if row["status"] in (COLORIZED, UNCHANGED):
        return row["model_id"] != model_id or not (output / entry.name).exists()
    return row["status"] == COLOUR and recolor


def record(entry: Entry, status: str, model_id: str, digest: str | None = None, error: str | None = None) -> dict:
    """A manifest row for ``entry``."""
    return {
        "source": entry.name,
        "bytes": entry.size,
        "mtime_ns": entry.mtime_ns,
        "hash": digest,
        "status": status,
        "output": entry.name if status in (COLORIZED, PENDING) else None,
        "model_id": model_id,
        "error": error,
    }
