"""One archive's work split over several runs at once (one per GPU, on one machine or several): shares on disk.

A parent run, holding ``OUTPUT``'s lock, plans the archive as a single run would, cuts the photos to colour
into contiguous slices of about equal bytes (:func:`partition`) and writes each as a share:
``OUTPUT/.colorize/shares/NNN/entries.parquet``. A child run colours one share into ``OUTPUT`` and records its
outcomes in the share's own manifest beside it (same schema and writer as the archive's, :class:`Ledger`),
holding the share's lock instead of ``OUTPUT``'s: shares never overlap, so children never write the same file.
When the children end, the parent folds each share's rows into the archive's manifest (:func:`merge`), which
stays the one record of what was done; a share is deleted only after its rows are flushed there.

A killed parent or child leaves shares behind; the next run on ``OUTPUT`` merges them before it plans, waiting
for (or refusing, without ``wait``) a child that still holds its share. Merging twice adds the same rows
twice, which changes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from colorization import manifest
from colorization.atomic import atomic_path
from colorization.colorize.catalog import PENDING, SCHEMA, STATE_DIR, Ledger
from colorization.lock import folder_lock
from colorization.photos.archive import Entry

log = logging.getLogger(__name__)

SHARES_DIR = f"{STATE_DIR}/shares"
ENTRIES_FILE = "entries.parquet"
MANIFEST_FILE = "manifest.parquet"
_ENTRY_SCHEMA = pa.schema([("name", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                           ("skip", pa.string())])


def partition(entries: Sequence[Entry], parts: int) -> list[list[Entry]]:
    """``entries`` in at most ``parts`` contiguous slices of about equal bytes, none empty.

    Contiguous in the archive's order, so a child reads neighbouring files (one folder, one stretch of a tar);
    cut by bytes rather than count, since decoding and rendering cost grows with a photo's size.
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    total = sum(max(e.size, 1) for e in entries)
    slices: list[list[Entry]] = [[] for _ in range(parts)]
    done = 0
    for entry in entries:
        slices[min(parts - 1, done * parts // total)].append(entry)
        done += max(entry.size, 1)
    return [s for s in slices if s]


def shares_dir(output: Path) -> Path:
    return output / SHARES_DIR


def write(output: Path, index: int, entries: Sequence[Entry]) -> Path:
    """Write share ``index`` of ``output`` (its entries, atomically) and return its folder."""
    folder = shares_dir(output) / f"{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    rows = pa.Table.from_pylist([dataclasses.asdict(e) for e in entries], schema=_ENTRY_SCHEMA)
    with atomic_path(folder / ENTRIES_FILE) as temp:
        pq.write_table(rows, temp)
    return folder


def entries(share: Path) -> list[Entry]:
    """The entries a share holds, in order."""
    return [Entry(**row) for row in pq.read_table(share / ENTRIES_FILE, schema=_ENTRY_SCHEMA).to_pylist()]


def ledger(output: Path, share: Path) -> Ledger:
    """The writer of a share's own manifest (``manifest.parquet`` and its parts inside the share's folder)."""
    return Ledger(output, path=share / MANIFEST_FILE)


def sheet_path(output: Path, share: Path) -> Path:
    """The contact sheet of the child run that colours ``share``: ``OUTPUT/.colorize/gallery-NNN.html``, kept
    after the share is merged (``catalog.sheet_path`` is the single runs' sheet)."""
    return output / STATE_DIR / f"gallery-{share.name}.html"


def sheets(output: Path) -> list[Path]:
    """The contact sheets of the last split run's children."""
    return sorted((output / STATE_DIR).glob("gallery-[0-9]*.html"))


def settled(share: Path) -> int:
    """How many photos of a share a running child has recorded an outcome for (claims not counted); 0 while
    its manifest is being compacted."""
    try:
        statuses = manifest.read_table(share / MANIFEST_FILE, SCHEMA).column("status")
    except FileNotFoundError:  # a part folded into the base between listing and reading it
        return 0
    return len(statuses) - pc.sum(pc.equal(statuses, PENDING)).as_py() if len(statuses) else 0


def pending(output: Path) -> list[Path]:
    """The shares of ``output`` not merged yet, oldest first."""
    folder = shares_dir(output)
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def merge(output: Path, into: Ledger, wait: bool = False) -> pa.Table:
    """Fold every share of ``output`` into its manifest (``into``) and delete the shares; returns the rows merged.

    Each share is merged holding its lock: a child still colouring it makes this wait (``wait``) or raise
    :class:`colorization.lock.FolderBusy` naming that run. Rows a child never settled (a claim it put back) were
    written as removals of the share's own row and are not merged, so the archive keeps the row it had. The
    rows stay Arrow tables throughout: a share may hold a million of them.
    """
    merged = []
    for share in pending(output):
        with folder_lock(share, "colorize (merging a share)", wait=wait):
            rows = ledger(output, share).table()
            into.add_table(rows)
        shutil.rmtree(share)
        merged.append(rows)
        log.info("%s: share %s merged (%d rows)", output, share.name, len(rows))
    return pa.concat_tables(merged) if merged else SCHEMA.empty_table()
