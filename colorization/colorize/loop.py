"""The colorize loop: prepare → predict → render, batch by batch, each outcome recorded in the manifest.

The loop knows nothing of Prefect or Dask. The steps that run elsewhere come in as callables returning
futures (anything with ``result()`` and ``done()``, such as :class:`concurrent.futures.Future`):
``submit_prepare(entries)`` gives a list of :class:`PrepareResult`, ``submit_render(entry, ab, thumbnail)`` a
:class:`RenderResult`; the network comes in as ``predict(lightness) -> ab``. :func:`prepare_batch` and
:func:`render_to_file` are the steps colorize submits; another stage can render somewhere else.

Memory stays bounded whatever the archive's size: the photos to do are read from their worklist a batch at a
time, ``PREPARE_AHEAD`` batches are being prepared ahead, at most ``RENDER_BATCHES × batch_size`` renders are in
flight, and the run's report counts outcomes instead of keeping their rows (only errors are kept, to be listed).
Photos are claimed in the manifest before their render is submitted (see :mod:`colorization.colorize.catalog`);
each flush appends only its own rows to the manifest, which is compacted now and then and at the end. A transient
failure (disk full, permissions, I/O, a lost worker) stops the loop: nothing more is submitted, renders in
flight are waited for and recorded, and photos not done keep the row they had, so that the next run retries
them; bad photos are recorded as errors and the loop goes on.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from colorization.colorize import catalog
from colorization.colorize.catalog import COLORIZED, COLOUR, ERROR, PENDING
from colorization.colorize.render import Prepared, Upsample, file_hash, prepare, render
from colorization.colorize.worklist import Worklist
from colorization.errors import ImageError, TransientError, as_transient
from colorization.photos.archive import Entry, read_entry

log = logging.getLogger(__name__)

GALLERY_SIZE = 8  # photos whose before/after thumbnails are kept for the gallery
THUMBNAIL = 256  # long side (px) of the before/after thumbnails the first GALLERY_SIZE renders return
PREPARE_AHEAD = 2  # batches being prepared while the network works on the current one
RENDER_BATCHES = 2  # batches' worth of renders in flight: bounds the a,b planes held in memory

T = TypeVar("T", covariant=True)


class Future(Protocol[T]):
    """What the loop needs of a submitted step (:class:`concurrent.futures.Future` has it)."""

    def result(self) -> T: ...

    def done(self) -> bool: ...

    def cancel(self) -> bool: ...


@dataclass
class PrepareResult:
    """One photo ready for the network (``prepared``, with its content hash), or why it cannot be read."""

    entry: Entry
    digest: str | None = None
    prepared: Prepared | None = None
    error: str | None = None


@dataclass
class RenderResult:
    """What rendering one photo gave: its status, the reason of an error, (before, after) thumbnails if asked."""

    status: str
    error: str | None = None
    thumbs: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class LoopReport:
    """What one run of the loop did: how many photos ended in each status, the photos that could not be
    coloured (source, error), gallery thumbnails, photos not done and why."""

    counts: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[str, str]] = field(default_factory=list)
    gallery: list[tuple[str, list[np.ndarray]]] = field(default_factory=list)
    left: int = 0
    stopped: str | None = None

    def tally(self, rows: Iterable[dict]) -> None:
        """Count manifest rows by status, keeping the errors'."""
        for row in rows:
            self.counts[row["status"]] += 1
            if row["status"] == ERROR:
                self.errors.append((row["source"], row["error"]))

    def tally_table(self, rows: pa.Table) -> None:
        """:meth:`tally` of rows held as an Arrow table (a split run's merged shares): no Python object per row
        but the errors'."""
        for count in pc.value_counts(rows["status"]).to_pylist():
            self.counts[count["values"]] += count["counts"]
        errors = rows.filter(pc.equal(rows["status"], ERROR))
        self.errors += zip(errors["source"].to_pylist(), errors["error"].to_pylist())


def prepare_batch(source: Path, entries: list[Entry], size: int, max_pixels: int) -> list[PrepareResult]:
    """Small L, colour flag and content hash of each photo of a batch, or the reason it cannot be read.

    A bad photo gives an error result; a transient failure raises :class:`TransientError`.
    """
    results = []
    for entry in entries:
        try:
            data = read_entry(source, entry.name)
            results.append(PrepareResult(entry, file_hash(data), prepare(data, entry.name, size, max_pixels)))
        except ImageError as exc:
            results.append(PrepareResult(entry, error=str(exc)))
    return results


def render_to_file(source: Path, entry: Entry, ab: np.ndarray, output: Path, max_pixels: int,
                   thumbnail: int, upsample: Upsample = "bicubic") -> RenderResult:
    """Colour one photo at full resolution into ``output`` (atomically, mirroring its place under ``source``).

    A bad photo gives an error result; a transient failure (disk full, permissions) raises
    :class:`TransientError` naming the file.
    """
    try:
        data = read_entry(source, entry.name)
        thumbs = render(data, entry.name, ab.astype(np.float32), output / entry.name, max_pixels, thumbnail,
                        upsample)
        return RenderResult(COLORIZED, thumbs=thumbs)
    except ImageError as exc:
        return RenderResult(ERROR, error=str(exc))
    except OSError as exc:
        transient = as_transient(exc, f"writing {entry.name}")
        if transient is not None:
            raise transient from exc
        return RenderResult(ERROR, error=f"{entry.name}: cannot write the output ({exc.strerror or exc})")


def colorize_pending(
    pending: Worklist,
    ledger: catalog.Ledger,
    model_id: str,
    submit_prepare: Callable[[list[Entry]], Future[list[PrepareResult]]],
    predict: Callable[[np.ndarray], np.ndarray],
    submit_render: Callable[[Entry, np.ndarray, int], Future[RenderResult]],
    batch_size: int,
    recolor: bool = False,
    records: Sequence[dict] = (),
    transient: tuple[type[BaseException], ...] = (),
    on_progress: Callable[[int, int], None] | None = None,
) -> LoopReport:
    """Prepare, predict and render ``pending``, recording every outcome through ``ledger``.

    ``records`` are rows to record first (entries refused while planning). Photos already in colour are
    recorded as ``colour`` unless ``recolor``. ``transient`` adds exception types that mean the machine failed
    rather than the photo (say, a lost Dask worker). ``on_progress(done, total)`` is called after each batch
    and once more when the last renders are in. Each photo's row in the manifest before the run comes with it
    in ``pending`` and is put back if the run stops before the photo settles. Returns when every photo has an
    outcome, or after a transient failure with ``stopped`` saying what happened and what to do.
    """
    report = LoopReport()
    report.tally(records)
    ledger.add(list(records))
    batches = pending.batches(batch_size)
    preparing: deque[tuple[dict[str, dict | None], Future[list[PrepareResult]]]] = deque()

    def prepare_next() -> None:
        """Submit the next batch, keeping the rows its photos had (read a batch at a time: flat memory)."""
        batch = next(batches, None)
        if batch is not None:
            preparing.append(({e.name: row for e, row in batch}, submit_prepare([e for e, _ in batch])))

    rendering: deque[tuple[PrepareResult, Future[RenderResult]]] = deque()
    claimed: dict[str, dict | None] = {}  # rows photos had before they were claimed, until they settle
    thumbnails = 0

    def settle(item: PrepareResult, status: str, error: str | None = None) -> None:
        row = catalog.record(item.entry, status, model_id, item.digest, error)
        report.tally([row])
        ledger.add([row])
        claimed.pop(item.entry.name, None)

    def settled() -> int:
        """Photos of ``pending`` with an outcome: every row counted but those recorded while planning."""
        return report.counts.total() - len(records)

    def finish(item: PrepareResult, future: Future[RenderResult]) -> None:
        result = future.result()
        settle(item, result.status, result.error)
        if result.thumbs is not None:
            report.gallery.append((item.entry.name, list(result.thumbs)))

    try:
        for _ in range(PREPARE_AHEAD):
            prepare_next()
        while preparing:
            before, future = preparing.popleft()
            items = future.result()
            prepare_next()
            to_colour = []
            for item in items:
                if item.error is not None:
                    settle(item, ERROR, item.error)
                elif item.prepared.colour and not recolor:
                    settle(item, COLOUR)
                else:
                    to_colour.append(item)
            claimed.update((item.entry.name, before[item.entry.name]) for item in to_colour)
            ledger.add([catalog.record(i.entry, PENDING, model_id, i.digest) for i in to_colour])
            ledger.flush()  # claims are on disk before any render starts
            if to_colour:
                ab = predict(np.stack([item.prepared.lightness for item in to_colour]))
                for item, ab_small in zip(to_colour, ab):
                    thumbnail = THUMBNAIL if thumbnails < GALLERY_SIZE else 0
                    thumbnails += 1
                    rendering.append((item, submit_render(item.entry, ab_small.astype(np.float16), thumbnail)))
            while len(rendering) > RENDER_BATCHES * batch_size or (rendering and rendering[0][1].done()):
                finish(*rendering.popleft())
            ledger.flush()
            if on_progress is not None:
                on_progress(settled(), len(pending))
        while rendering:
            finish(*rendering.popleft())
        ledger.flush()
        if on_progress is not None and pending:  # the last renders finish after the last batch
            on_progress(settled(), len(pending))
    except Exception as exc:
        stop = _as_stop(exc, transient)
        if stop is None:
            raise
        report.stopped = f"{stop}; {stop.advice}"
        log.warning("colorize stopping: %s", stop)
        _wind_down(preparing, rendering, finish, transient)
        for source, row in claimed.items():
            ledger.put_back(source, row)
        try:
            ledger.flush()
        except TransientError as again:
            log.warning("%s: the manifest keeps its last state; photos claimed in it will be redone", again)
    try:
        ledger.compact()
    except TransientError as exc:
        log.warning("%s: the manifest's latest rows stay in its parts; the next run folds them in", exc)
    report.left = len(pending) - settled()
    if report.stopped:
        report.stopped += f" — {report.left} photos left to do"
    return report


def _as_stop(exc: BaseException, transient: tuple[type[BaseException], ...]) -> TransientError | None:
    """``exc`` as the reason to stop the run, or None when it is a bug to raise."""
    if isinstance(exc, TransientError):
        return exc
    if isinstance(exc, OSError):
        return as_transient(exc, f"at {exc.filename}" if exc.filename else "in the colorize run")
    if transient and isinstance(exc, transient):
        return TransientError(f"a worker was lost ({type(exc).__name__}: {exc})")
    return None


def _wind_down(preparing: deque, rendering: deque, finish: Callable, transient: tuple[type[BaseException], ...]
               ) -> None:
    """After a transient failure: drop the batches being prepared and record the renders already in flight
    (those that fail too are left for the next run)."""
    for _, future in preparing:
        future.cancel()
    while rendering:
        try:
            finish(*rendering.popleft())
        except Exception as exc:
            if _as_stop(exc, transient) is None:
                raise
