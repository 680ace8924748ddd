"""The ``colorize`` flow: every black-and-white photo of an archive back in colour, at full resolution.

The loop itself is the library's (:func:`colorization.colorize.loop.colorize_pending`); this flow wires it to
Prefect tasks on Dask workers (decoding and encoding), the network in this process holding the ``gpu``
slot, artifacts and a progress bar. The Dask cluster and the model are started only when there is work.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import numpy as np
from distributed import KilledWorker
from distributed.comm import CommClosedError
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.states import Failed
from prefect_dask.task_runners import PrefectDaskFuture
from pydantic import Field

from colorization.atomic import atomic_path
from colorization.colorize import catalog, shares
from colorization.colorize.catalog import COLORIZED, COLOUR, ERROR
from colorization.colorize.gallery import SheetPhoto, html_contact_sheet, image_size, markdown_gallery
from colorization.colorize.loop import (
    LoopReport,
    PrepareResult,
    RenderResult,
    colorize_pending,
    prepare_batch,
    render_to_file,
)
from colorization.colorize.render import Upsample
from colorization.errors import TransientError
from colorization.network.card import RANDOM_WARNING, STALLED_WARNING, ModelCard
from colorization.photos.archive import Entry, iter_entries
from colorization.photos.images import DEFAULT_MAX_PIXELS
from colorization.preflight import check_colorize
from colorization.quiet import import_keras
from flows.common import (
    dask_runner,
    gpu_slot,
    locked,
    pinned_device,
    progress_bar,
    remove_temps,
    resolve_weights,
)
from flows.paths import project_path

LOST_WORKER = (KilledWorker, CommClosedError)


# A transient failure (disk full, permissions) is returned rather than raised: it stops the run with one clear
# message instead of a traceback per task. Retries cover anything else that goes wrong on a worker.
@task(name="prepare-photos", retries=1, retry_delay_seconds=2)
def prepare_photos(source: Path, entries: list[Entry], size: int, max_pixels: int
                   ) -> list[PrepareResult] | TransientError:
    """Small L, colour flag and content hash of each photo of a batch, or the reason it cannot be read."""
    try:
        return prepare_batch(source, entries, size, max_pixels)
    except TransientError as exc:
        return exc


@task(name="render-photo", retries=1, retry_delay_seconds=2)
def render_photo(source: Path, entry: Entry, ab: np.ndarray, output: Path, max_pixels: int, thumbnail: int,
                 upsample: Upsample = "bicubic") -> RenderResult | TransientError:
    """Colour one photo at full resolution into ``output``; returns its status (and thumbnails if asked)."""
    try:
        return render_to_file(source, entry, ab, output, max_pixels, thumbnail, upsample)
    except TransientError as exc:
        return exc


class _TaskFuture:
    """A task submitted to Dask, as the library loop expects it; a transient failure it returned is raised."""

    def __init__(self, future: PrefectDaskFuture):
        self.future = future

    def result(self):
        value = self.future.result()
        if isinstance(value, TransientError):
            raise value
        return value

    def done(self) -> bool:
        return self.future.wrapped_future.done()

    def cancel(self) -> bool:
        self.future.wrapped_future.cancel()
        return True


@flow(name="colorize")
@locked("output", catalog.LOCK_NAME)
def colorize(
    input: Path,
    output: Path,
    model: Path = Path("data/models/samples"),
    weights: str | None = None,
    batch_size: Annotated[int, Field(ge=1)] = 8,
    recolor: bool = False,
    overwrite: bool = False,
    workers: Annotated[int | None, Field(ge=1)] = None,
    dask_address: str | None = None,
    max_pixels: Annotated[int, Field(ge=1)] = DEFAULT_MAX_PIXELS,
    upsample: Upsample = "bicubic",
    temperature: Annotated[float | None, Field(gt=0)] = None,
    saturation: Annotated[float, Field(gt=0)] = 1.0,
    allow_empty: bool = False,
    wait: bool = False,
) -> dict:
    """Colour every black-and-white photo under ``input`` (a folder, .zip or .tar) into ``output``.

    ``output`` mirrors the input tree, each photo in its original format with its metadata; photos already in
    colour are left alone unless ``recolor``. Only new or changed photos are processed on a re-run (all of
    them after a model change). ``weights`` defaults to the Xception weights recorded in the model's card; it
    must give the extractor the model was trained with. A transient failure (disk full, permissions, a lost
    worker) ends the run in a Failed state whose message says what to do; the next run retries what is left.
    ``upsample`` brings the predicted colour to full size: ``bicubic``, or ``guided`` by the photo's lightness so
    that colour stops at its edges (slower; README). ``temperature`` sets a classification model's annealed-mean
    decoding (default: its card's); ``saturation`` scales the predicted colour's chroma (above 1 more vivid,
    README); photos coloured at another temperature or saturation are coloured again. ``allow_empty``
    makes an input folder with no photo a run with nothing to do rather than an error (the nightly inbox). The
    run holds ``output``'s lock; ``wait`` waits for another run that holds it instead of failing.
    """
    logger = get_run_logger()
    source, output, model_dir = project_path(input), project_path(output), project_path(model)
    card = check_colorize(source, output, model_dir, resolve_weights(weights), batch_size, workers, max_pixels,
                          temperature, allow_empty, saturation)
    trained = TrainedModel(card, weights, temperature, saturation)
    remove_temps(output, "an interrupted run", recursive=True)
    ledger = catalog.Ledger(output)
    merge_shares(output, ledger, wait)
    work = catalog.plan(iter_entries(source), ledger.pieces(), output, trained.id, recolor, overwrite)
    logger.info("%s: %d photos, %d to process, %d left as they are", source, work.found, len(work.pending),
                work.kept)
    try:
        report, seconds = _colour(source, output, trained, work, ledger, batch_size, recolor, workers,
                                  dask_address, max_pixels, upsample)
    finally:
        work.pending.path.unlink(missing_ok=True)  # a failed run's worklist is stale: the next run plans anew
    remove_temps(output, "a Dask worker lost during this run", recursive=True)  # the lock keeps others out
    return _close(output, work.found, work, report, seconds, trained, upsample, catalog.sheet_path(output))


@flow(name="colorize-share")
@locked("share")
def colorize_share(
    input: Path,
    output: Path,
    share: Path,
    model: Path,
    weights: str | None = None,
    batch_size: Annotated[int, Field(ge=1)] = 8,
    recolor: bool = False,
    workers: Annotated[int | None, Field(ge=1)] = None,
    dask_address: str | None = None,
    max_pixels: Annotated[int, Field(ge=1)] = DEFAULT_MAX_PIXELS,
    upsample: Upsample = "bicubic",
    temperature: Annotated[float | None, Field(gt=0)] = None,
    saturation: Annotated[float, Field(gt=0)] = 1.0,
    wait: bool = False,
) -> dict:
    """Colour one share of a split run (``colorize-split``) into ``output``, on the accelerator of the worker
    that runs it; outcomes go to the share's own manifest, which the parent merges into ``output``'s.

    The parent planned the photos and holds ``output``'s lock; this run holds the share's. It leaves other
    runs' temporary files alone: the parent removes what lost workers left once every share has ended.
    """
    source, output, share_dir = project_path(input), project_path(output), project_path(share)
    trained = TrainedModel(ModelCard.read(project_path(model)), weights, temperature, saturation)
    pending = shares.entries(share_dir)
    work = catalog.Plan(pending, [], 0, len(pending))
    get_run_logger().info("%s: share %s, %d photos, on device %s", source, share_dir.name, len(pending),
                          pinned_device())
    report, seconds = _colour(source, output, trained, work, shares.ledger(output, share_dir), batch_size, recolor,
                              workers, dask_address, max_pixels, upsample)
    return _close(output, len(pending), work, report, seconds, trained, upsample,
                  shares.sheet_path(output, share_dir), **{"pinned device": pinned_device()})


def merge_shares(output: Path, ledger: catalog.Ledger, wait: bool) -> LoopReport:
    """Fold shares left in ``output`` (a split run's, :mod:`colorization.colorize.shares`) into its manifest."""
    merged = shares.merge(output, ledger, wait)
    if merged.counts:
        get_run_logger().info("%s: %d rows of a split run merged into its manifest", output, merged.counts.total())
    return merged


@dataclass(frozen=True)
class TrainedModel:
    """A model as a run colours with it: its card, its extractor's weights (default: the card's) and how its
    output becomes colour."""

    card: ModelCard
    weights: str | None
    temperature: float | None
    saturation: float

    @property
    def id(self) -> str:
        """What the manifest records as the photos' model: a change of any part colours them again."""
        return self.card.model_id(self.temperature, self.saturation)


def _colour(source: Path, output: Path, trained: TrainedModel, work: catalog.Plan, ledger: catalog.Ledger,
            batch_size: int, recolor: bool, workers: int | None, dask_address: str | None, max_pixels: int,
            upsample: Upsample) -> tuple[LoopReport, float]:
    """Run the library's loop over ``work`` with renders on Dask and the network here; returns its report and
    the seconds it took."""
    started = time.perf_counter()
    predict = _predictor(trained, batch_size) if work.pending else _nothing_to_predict
    with (dask_runner(workers, dask_address, max(1, len(work.pending))) as runner,
          progress_bar(total=len(work.pending), unit="photo", desc="colorize") as bar):
        progress = create_progress_artifact(0.0, key="colorize-progress", description=f"Colouring {source}") \
            if work.pending else None

        def submit_prepare(batch: list[Entry]) -> _TaskFuture:
            return _TaskFuture(runner.submit(prepare_photos, {"source": source, "entries": batch,
                                                              "size": trained.card.size, "max_pixels": max_pixels}))

        def submit_render(entry: Entry, ab: np.ndarray, thumbnail: int) -> _TaskFuture:
            return _TaskFuture(runner.submit(render_photo, {"source": source, "entry": entry, "ab": ab,
                                                            "output": output, "max_pixels": max_pixels,
                                                            "thumbnail": thumbnail, "upsample": upsample}))

        def on_progress(done: int, total: int) -> None:
            bar.update(done - bar.n)
            update_progress_artifact(progress, 100.0 * done / total)

        report = colorize_pending(
            work.pending, ledger, trained.id, submit_prepare, predict, submit_render, batch_size,
            recolor, records=work.records, transient=LOST_WORKER, on_progress=on_progress,
        )
    return report, time.perf_counter() - started


def _close(output: Path, found: int, work: catalog.Plan, report: LoopReport, seconds: float,
           trained: TrainedModel, upsample: Upsample, sheet: Path, **extra: str) -> dict:
    """Log and publish what a run did; its summary, or a Failed state when a transient failure stopped it."""
    logger = get_run_logger()
    summary = {**run_summary(found, work, report, seconds), "upsample": upsample, "saturation": trained.saturation,
               **extra}
    for _, error in report.errors:
        logger.warning("%s", error)
    _publish(output, summary, report, trained.card.random, trained.id, sheet)
    logger.info("%s; contact sheet: %s", ", ".join(f"{k}: {v}" for k, v in summary.items()), sheet)
    if not work.pending and not work.records:
        logger.info("nothing to do: all %d photos are left as they are", work.kept)
    if report.stopped:
        logger.error("colorize stopped: %s", report.stopped)
        return Failed(message=report.stopped)
    return summary


def _predictor(trained: TrainedModel, batch_size: int) -> Callable[[np.ndarray], np.ndarray]:
    """The network as the loop calls it, holding the ``gpu`` slot.

    Loaded here, before any task is submitted: a model trained on random embeddings rebuilds its extractor
    from Python's global random generator, which the threads of a running Dask client would disturb.
    """
    import_keras()  # here, not at the top: Dask workers never import Keras
    from colorization.network.colorizer import Colorizer

    with gpu_slot():
        colorizer = Colorizer.load(trained.card, resolve_weights(trained.weights), trained.temperature,
                                   trained.saturation)
    if colorizer.extractor.random:
        get_run_logger().warning("%s: %s", trained.card.model_dir, RANDOM_WARNING)
    if trained.card.stalled:
        get_run_logger().warning("%s: %s", trained.card.model_dir, STALLED_WARNING)

    def predict(lightness: np.ndarray) -> np.ndarray:
        with gpu_slot():
            return colorizer.predict_ab(lightness, batch_size)

    return predict


def _nothing_to_predict(lightness: np.ndarray) -> np.ndarray:
    raise AssertionError("no photo to colour, so the model was not loaded")


def run_summary(found: int, work: catalog.Plan, report: LoopReport, seconds: float) -> dict:
    """What a run did to ``found`` photos, counted from the rows it recorded (its ``colorize-summary``)."""
    processed = len(work.pending) - report.left
    if report.stopped:
        outcome = "stopped"
    elif work.pending or work.records:
        outcome = "done"
    else:
        outcome = "nothing to do"
    return {
        "outcome": outcome,
        "photos": found,
        "colorized": report.counts[COLORIZED],
        "colour": report.counts[COLOUR],
        "errors": report.counts[ERROR],
        "left as they are": work.kept,
        "left to do": report.left,
        "images/s": round(processed / seconds, 3) if processed and seconds > 0 else 0.0,
    }


def _publish(output: Path, summary: dict, report: LoopReport, random: bool, model_id: str, sheet_path: Path
             ) -> None:
    note = f"**WARNING: {RANDOM_WARNING}. These colours are meaningless.**" if random else ""
    create_table_artifact(key="colorize-summary", table=[summary],
                          description=f"Colorize run into {output}; contact sheet: {sheet_path}")
    errors = [{"source": source, "error": error} for source, error in report.errors]
    if errors:
        create_table_artifact(key="colorize-errors", table=errors, description="Photos that could not be coloured")
    columns = ["before", "after"]
    if report.gallery or errors:  # a run with nothing to show keeps the last sheet
        photos = [SheetPhoto(name, thumbnails, image_size(output / name)) for name, thumbnails in report.gallery]
        sheet = html_contact_sheet(
            f"Colorized: {output}", columns, photos, model_id=model_id, created=datetime.now(timezone.utc),
            errors=[(e["source"], e["error"]) for e in errors], note=note.replace("*", ""),
            more=max(0, summary["colorized"] - len(photos)),
        )
        try:
            with atomic_path(sheet_path) as temp:
                temp.write_text(sheet, encoding="utf-8")
        except OSError as exc:
            get_run_logger().warning("contact sheet not written: %s", exc.strerror or exc)
    if report.gallery:
        where = (f"Coloured into `{output}`; every photo of this run is on the contact sheet "
                 f"`{sheet_path}` (open it in a browser).")
        create_markdown_artifact(
            key="colorize-gallery",
            markdown=markdown_gallery("Before / after", columns, report.gallery[:4], f"{note}\n\n{where}".strip()),
            description=f"A few photos coloured into {output}",
        )
