"""The ``preprocess`` flow: a photo folder to Lab Parquet shards, in parallel on Dask, incrementally."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.futures import as_completed
from pydantic import Field

from colorization.dataset.preprocess import (
    ShardResult,
    pending_files,
    plan_shards,
    process_files,
    remove_orphan_shards,
)
from colorization.dataset.shards import ERROR, GREY, ROWS_PER_SHARD, WRITTEN, Dataset, shard_index
from colorization.manifest import parts_dir
from colorization.photos import lab
from colorization.photos.discover import find_images
from colorization.photos.images import Framing
from colorization.preflight import MIN_SIZE, check_preprocess
from flows.common import dask_runner, locked, progress_bar, remove_temps
from flows.paths import project_path

SHARD_RETRIES = 2


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
    source: Path, dataset: Path, plan: list[tuple[str, list[str]]], size: int, grey_threshold: float,
    keep_grey: bool, framing: Framing, progress: UUID | None = None,
) -> list[ShardResult]:
    """Run one task per shard and record each in the manifest as soon as it finishes (appending its rows; the
    manifest is compacted at the end, see :mod:`colorization.manifest`). ``progress`` is the parent run's
    progress artifact (the one its user watches) to advance."""
    logger = get_run_logger()
    data = Dataset(dataset)
    manifest = data.open_manifest()
    futures = [
        preprocess_shard.submit(source, data.shards_dir / name, files, size, grey_threshold, keep_grey, framing)
        for name, files in plan
    ]
    results = []
    with progress_bar(total=sum(len(files) for _, files in plan), unit="photo", desc="preprocess") as bar:
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            manifest.append({record["source"]: record for record in result.records})  # this shard's rows only
            results.append(result)
            bar.update(len(result.records))
            if progress is not None:
                update_progress_artifact(progress, 100.0 * done / len(plan))
            logger.info(
                "shard %d/%d %s: %d written, %d grey, %d errors",
                done, len(plan), result.shard or "(none)", result.count(WRITTEN), result.count(GREY),
                result.count(ERROR),
            )
    manifest.compact()  # manifest.parquet alone is whole again, for readers other than the library
    return results


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
    manifest = data.read_manifest()
    remove_orphan_shards(data, manifest)
    _remove_temps(data, "an interrupted run")
    found = find_images(source)
    pending = pending_files(source, found, manifest)
    existing = data.shards()
    plan = plan_shards(pending, rows_per_shard, shard_index(existing[-1]) + 1 if existing else 0)
    logger.info("%s: %d photos to process into %d shards of %s (framing: %s)", source, len(pending), len(plan),
                root, framing)

    started = time.perf_counter()
    results = []
    if plan:
        runner = dask_runner(workers, dask_address, len(plan))
        progress = create_progress_artifact(0.0, key="preprocess-progress", description=f"Shards of {source}")
        try:
            results = preprocess_shards.with_options(task_runner=runner)(
                source, root, plan, size, grey_threshold, keep_grey, framing, progress
            )
        finally:
            _remove_temps(data, "a Dask worker lost during this run")  # the lock keeps other runs' writes out
    seconds = time.perf_counter() - started

    summary = _summary(len(found), len(pending), results, seconds)
    errors = [r for result in results for r in result.records if r["status"] == ERROR]
    for record in errors:
        logger.warning("%s", record["error"])
    _publish(summary, errors)
    logger.info("%s", ", ".join(f"{k}: {v}" for k, v in summary.items()))
    if pending and summary["written"] + summary["grey"] == 0:
        raise RuntimeError(f"none of the {len(pending)} new files under {source} could be read")
    return summary


def _remove_temps(data: Dataset, left_by: str) -> None:
    """Delete the temporary files of shard and manifest writes that never finished."""
    for folder in (data.shards_dir, parts_dir(data.manifest_path)):
        remove_temps(folder, left_by)


def _summary(found: int, processed: int, results: list[ShardResult], seconds: float) -> dict:
    def count(status: str) -> int:
        return sum(r.count(status) for r in results)

    return {
        "found": found,
        "new": processed,
        "written": count(WRITTEN),
        "grey": count(GREY),
        "errors": count(ERROR),
        "shards": sum(r.shard is not None for r in results),
        "MB": round(sum(r.megabytes for r in results), 2),
        "images/s": round(processed / seconds, 2) if processed and seconds > 0 else 0.0,
    }


def _publish(summary: dict, errors: list[dict]) -> None:
    create_table_artifact(key="preprocess-summary", table=[summary], description="Preprocess run summary")
    if errors:
        create_table_artifact(
            key="preprocess-errors",
            table=[{"source": r["source"], "error": r["error"]} for r in errors],
            description="Files that could not be read",
        )
