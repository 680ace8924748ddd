"""The ``preprocess`` flow: a photo folder to Lab Parquet shards, in parallel on Dask, incrementally."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from pydantic import Field

from colorization.dataset.preprocess import (
    Plan,
    ShardResult,
    Tally,
    pending_photos,
    pending_shards,
    plan,
    process_files,
    remove_orphan_shards,
)
from colorization.dataset.shards import ERROR, GREY, ROWS_PER_SHARD, WRITTEN, Dataset, shard_index
from colorization.manifest import parts_dir
from colorization.photos import lab
from colorization.photos.images import Framing
from colorization.preflight import MIN_SIZE, check_preprocess
from flows.common import completed, dask_runner, locked, progress_bar, remove_temps
from flows.paths import project_path

SHARD_RETRIES = 2
IN_FLIGHT = 64  # shard tasks submitted and unfinished at a time (more with more workers)


@task(name="preprocess-shard", retries=SHARD_RETRIES, retry_delay_seconds=1)
def preprocess_shard(
    source: Path, shard_path: Path, relatives: list[str], size: int, grey_threshold: float, keep_grey: bool,
    framing: Framing,
) -> ShardResult:
    """One shard: its files decoded, converted and written together; returns paths and counts only.

    Retried when it fails as a whole (a worker's file system hiccup, a killed process): the shard is written
    atomically under the same name and recorded only once it is done, so a retry never leaves a corrupt one.
    """
    return process_files(source, relatives, shard_path, size, grey_threshold, keep_grey, framing)


@flow(name="preprocess-shards")
def preprocess_shards(
    source: Path, dataset: Path, worklist: Path, first_shard: int, rows_per_shard: int, size: int,
    grey_threshold: float, keep_grey: bool, framing: Framing, in_flight: int = IN_FLIGHT,
    progress: UUID | None = None,
) -> Tally:
    """Process the photos of ``worklist`` (:func:`~colorization.dataset.preprocess.plan`) in shards of
    ``rows_per_shard``, numbered from ``first_shard``, one task each, ``in_flight`` tasks at a time, and record
    each shard in the manifest as soon as it finishes (appending its rows; the manifest is compacted now and
    then and at the end, see :mod:`colorization.manifest`). ``progress`` is the parent run's progress artifact
    (the one its user watches) to advance."""
    logger = get_run_logger()
    data = Dataset(dataset)
    manifest = data.open_manifest()
    photos = pending_photos(worklist)
    shards = math.ceil(photos / rows_per_shard)
    futures = (
        preprocess_shard.submit(source, data.shards_dir / name, files, size, grey_threshold, keep_grey, framing)
        for name, files in pending_shards(worklist, rows_per_shard, first_shard)
    )
    tally = Tally()
    with progress_bar(total=photos, unit="photo", desc="preprocess") as bar:
        for done, future in enumerate(completed(futures, in_flight), start=1):
            result = future.result()
            manifest.append({record["source"]: record for record in result.records})  # this shard's rows only
            errors = tally.add(result)
            bar.update(len(result.records))
            if progress is not None:
                update_progress_artifact(progress, 100.0 * done / shards)
            logger.info(
                "shard %d/%d %s: %d written, %d grey, %d errors",
                done, shards, result.shard or "(none)", result.count(WRITTEN), result.count(GREY),
                result.count(ERROR),
            )
            for error in errors:
                logger.warning("%s", error["error"])
    manifest.compact()  # manifest.parquet alone is whole again, for readers other than the library
    return tally


@flow(name="preprocess")
@locked("dataset")
def preprocess(
    source: Path,
    dataset: Path,
    size: Annotated[int, Field(ge=MIN_SIZE)] = 256,
    rows_per_shard: Annotated[int, Field(ge=1)] = ROWS_PER_SHARD,
    workers: Annotated[int | None, Field(ge=1)] = None,
    dask_address: str | None = None,
    keep_grey: bool = False,
    grey_threshold: Annotated[float, Field(ge=0)] = lab.GREY_THRESHOLD,
    framing: Framing | None = None,
    wait: bool = False,
) -> dict:
    """Convert every new photo under ``source`` into ``dataset``'s shards and manifest.

    Relative paths are taken from the project root. Photos already in the manifest are skipped, so a re-run
    costs only the folder scan. Grey and toned photos are flagged and kept out unless ``keep_grey``. Photos are
    made square by ``framing`` (:data:`~colorization.photos.images.Framing`): a new dataset's default is the
    whole frame, as colorize shows photos to the model; an existing dataset keeps its own. The run
    holds the dataset's lock; ``wait`` waits for another run that holds it instead of failing.
    """
    logger = get_run_logger()
    source, root = project_path(source), project_path(dataset)
    check_preprocess(source, root, size, rows_per_shard, workers, framing)
    data = Dataset(root)
    framing = data.ensure(size, framing)
    _remove_temps(data, "an interrupted run")
    work = plan(source, data)
    remove_orphan_shards(data, work.known_shards)
    existing = data.shards()
    shards = math.ceil(work.pending / rows_per_shard)
    logger.info("%s: %d photos to process into %d shards of %s (framing: %s)", source, work.pending, shards,
                root, framing)

    started = time.perf_counter()
    tally = Tally()
    try:
        if work.pending:
            runner = dask_runner(workers, dask_address, shards)
            progress = create_progress_artifact(0.0, key="preprocess-progress", description=f"Shards of {source}")
            tally = preprocess_shards.with_options(task_runner=runner)(
                source, root, work.worklist, shard_index(existing[-1]) + 1 if existing else 0, rows_per_shard,
                size, grey_threshold, keep_grey, framing, max(IN_FLIGHT, 2 * (workers or 0)), progress
            )
    finally:
        work.worklist.unlink(missing_ok=True)
        _remove_temps(data, "a Dask worker lost during this run")  # the lock keeps other runs' writes out
    seconds = time.perf_counter() - started

    summary = _summary(work, tally, seconds)
    _publish(summary, tally)
    logger.info("%s", ", ".join(f"{k}: {v}" for k, v in summary.items()))
    if work.pending and tally.written + tally.grey == 0:
        raise RuntimeError(f"none of the {work.pending} new files under {source} could be read")
    return summary


def _remove_temps(data: Dataset, left_by: str) -> None:
    """Delete the temporary files of shard and manifest writes that never finished."""
    for folder in (data.shards_dir, parts_dir(data.manifest_path)):
        remove_temps(folder, left_by)


def _summary(work: Plan, tally: Tally, seconds: float) -> dict:
    return {
        "found": work.found,
        "new": work.pending,
        "written": tally.written,
        "grey": tally.grey,
        "errors": tally.errors,
        "shards": tally.shards,
        "MB": round(tally.megabytes, 2),
        "images/s": round(work.pending / seconds, 2) if work.pending and seconds > 0 else 0.0,
    }


def _publish(summary: dict, tally: Tally) -> None:
    create_table_artifact(key="preprocess-summary", table=[summary], description="Preprocess run summary")
    if tally.errors:
        shown = "" if tally.errors == len(tally.first_errors) else \
            f" (the first {len(tally.first_errors)} of {tally.errors}; the manifest lists them all)"
        create_table_artifact(key="preprocess-errors", table=tally.first_errors,
                              description=f"Files that could not be read{shown}")
