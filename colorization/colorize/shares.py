"""One archive's work split over several runs at once (one per GPU, on one machine or several): shares on disk.

A parent run, holding ``OUTPUT``'s lock, plans the archive as a single run would, cuts the photos to colour
into contiguous slices of about equal bytes (:func:`cut`) and writes each as a share, a worklist
(:mod:`colorization.colorize.worklist`) at ``OUTPUT/.colorize/shares/NNN/worklist.parquet``. A child run colours
one share into ``OUTPUT`` and records its outcomes in the share's own manifest beside it (same schema and writer
as the archive's, :class:`Ledger`), holding the share's lock instead of ``OUTPUT``'s: shares never overlap, so
children never write the same file. When the children end, the parent folds each share's rows into the
archive's manifest (:func:`merge`), which stays the one record of what was done; a share is deleted only after
its rows are flushed there.

A killed parent or child leaves shares behind; the next run on ``OUTPUT`` merges them before it plans, waiting
for (or refusing, without ``wait``) a child that still holds its share. Merging twice adds the same rows
twice, which changes nothing.
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.compute as pc

from colorization import manifest
from colorization.colorize import worklist
from colorization.colorize.catalog import PENDING, SCHEMA, STATE_DIR, Ledger
from colorization.colorize.loop import LoopReport
from colorization.colorize.worklist import Worklist
from colorization.lock import folder_lock

log = logging.getLogger(__name__)

SHARES_DIR = f"{STATE_DIR}/shares"
WORKLIST_FILE = "worklist.parquet"
MANIFEST_FILE = "manifest.parquet"


def cut(sizes: Iterable[int], total: int, parts: int) -> Iterator[int]:
    """The share of each photo, in order: ``parts`` contiguous slices of about equal bytes (``total`` being the
    sum of ``sizes``); a share may get no photo, and then has no folder.

    Contiguous in the archive's order, so a child reads neighbouring files (one folder, one stretch of a tar);
    cut by bytes rather than count, since decoding and rendering cost grows with a photo's size.
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    done = 0
    for size in sizes:
        yield min(parts - 1, done * parts // max(total, 1))
        done += max(size, 1)


def shares_dir(output: Path) -> Path:
    return output / SHARES_DIR


def write(output: Path, pending: Worklist, parts: int) -> list[Path]:
    """Cut ``pending`` (a parent run's worklist) into at most ``parts`` shares of ``output`` (:func:`cut`) and
    return their folders, each holding its photos as a worklist of its own, a batch at a time. A share's photos
    carry no previous rows: a child puts back a claim as a removal of its own row, which :func:`merge` skips,
    so the archive keeps the row it had."""
    total = sum(max(size, 1) for size in pending.sizes())
    shares = itertools.groupby(zip(cut(pending.sizes(), total, parts), pending), key=lambda pair: pair[0])
    folders = []
    for number, (_, pairs) in enumerate(shares):  # numbered on without the shares that got no photo
        folder = shares_dir(output) / f"{number:03d}"
        worklist.write(folder / WORKLIST_FILE, (entry for _, entry in pairs), SCHEMA)
        folders.append(folder)
    return folders


def entries(share: Path) -> Worklist:
    """The photos a share holds, in order."""
    return Worklist(share / WORKLIST_FILE)


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
        statuses = manifest.read_table(share / MANIFEST_FILE, SCHEMA, ("source", "status")).column("status")
    except FileNotFoundError:  # a part folded into the base between listing and reading it
        return 0
    return len(statuses) - pc.sum(pc.equal(statuses, PENDING)).as_py() if len(statuses) else 0


def pending(output: Path) -> list[Path]:
    """The shares of ``output`` not merged yet, oldest first."""
    folder = shares_dir(output)
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def merge(output: Path, into: Ledger, wait: bool = False) -> LoopReport:
    """Fold every share of ``output`` into its manifest (``into``), delete the shares, and compact the manifest;
    returns what was merged, counted by status.

    Each share is merged holding its lock: a child still colouring it makes this wait (``wait``) or raise
    :class:`colorization.lock.FolderBusy` naming that run. Rows a child never settled (a claim it put back) were
    written as removals of the share's own row and are not merged, so the archive keeps the row it had. A share
    goes in a piece of its manifest at a time, each an Arrow table written as a part: a share may hold a million
    rows, and merging it holds memory for one piece.
    """
    merged = LoopReport()
    for share in pending(output):
        with folder_lock(share, "colorize (merging a share)", wait=wait):
            rows = 0
            for piece in ledger(output, share).pieces():
                into.add_table(piece)
                merged.tally_table(piece)
                rows += len(piece)
        shutil.rmtree(share)  # its rows are in the archive's parts
        log.info("%s: share %s merged (%d rows)", output, share.name, rows)
    into.compact()
    return merged
