"""Split runs: one archive coloured (``colorize-split``), or one dataset embedded (``embed-split``), by several
GPU workers at once.

``colorize-split`` plans the archive as ``colorize`` does, cuts the photos to colour into shares
(:mod:`colorization.colorize.shares`), starts one ``colorize-share`` run per share through a deployment on the
``gpu`` pool (each ``gpu`` worker is pinned to one device and runs one flow at a time: ``make worker`` with
``COLORIZATION_GPUS``), waits for them, and merges their outcomes into ``OUTPUT``'s manifest. It uses no
accelerator itself: deploy it on the ``cpu`` pool, or it would hold a ``gpu`` worker that a share needs.
Workers on other machines take shares too when they reach the same server and see the same paths.
``embed-split`` deals the dataset's shards to ``embed-share`` runs the same way; each writes its shards'
embedding files, which need no merging.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.settings import get_current_settings
from prefect.states import Failed
from pydantic import Field

from colorization.colorize import catalog, shares
from colorization.colorize.catalog import COLORIZED, COLOUR, ERROR
from colorization.colorize.loop import LoopReport
from colorization.colorize.render import Upsample
from colorization.dataset.embeddings import deal
from colorization.dataset.shards import Dataset
from colorization.errors import ConfigError
from colorization.network.card import RANDOM_WARNING
from colorization.photos.archive import iter_entries
from colorization.photos.images import DEFAULT_MAX_PIXELS
from colorization.preflight import DEFAULT_HEAD, Head, check_colorize, check_embed
from flows.colorize import TrainedModel, merge_shares, run_summary
from flows.common import locked, remove_temps, resolve_weights
from flows.paths import project_path

SHARE_DEPLOYMENT = "colorize-share/gpu"
EMBED_SHARE_DEPLOYMENT = "embed-share/gpu"
UNSTARTED_WARNING_SECONDS = 300  # share runs still scheduled after this long: probably no gpu worker


@flow(name="colorize-split")
@locked("output", catalog.LOCK_NAME)
def colorize_split(
    input: Path,
    output: Path,
    model: Path = Path("data/models/samples"),
    gpus: Annotated[int, Field(ge=1)] = 2,
    deployment: str = SHARE_DEPLOYMENT,
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
    poll_seconds: Annotated[float, Field(gt=0)] = 5.0,
) -> dict:
    """Colour ``input`` into ``output`` as ``colorize`` does, split into ``gpus`` shares, each a run of
    ``deployment`` (on the ``gpu`` pool, whose workers take one run each at a time). ``workers`` and
    ``dask_address`` are each share's Dask cluster. Fails, after merging what was done, when a share did not
    complete; the next run (split or not) redoes what is left.
    """
    logger = get_run_logger()
    source, output, model_dir = project_path(input), project_path(output), project_path(model)
    card = check_colorize(source, output, model_dir, resolve_weights(weights), batch_size, workers, max_pixels,
                          temperature, allow_empty, saturation)
    trained = TrainedModel(card, weights, temperature, saturation)
    _check_deployment(deployment)
    if card.random:
        logger.warning("%s: %s", model_dir, RANDOM_WARNING)
    remove_temps(output, "an interrupted run", recursive=True)
    ledger = catalog.Ledger(output)
    merge_shares(output, ledger, wait)
    work = catalog.plan(iter_entries(source), ledger.pieces(), output, trained.id, recolor, overwrite)
    ledger.add(work.records)
    ledger.flush()
    try:
        parts = shares.write(output, work.pending, gpus)
    finally:
        work.pending.path.unlink(missing_ok=True)  # cut into the shares' own worklists, or stale if that failed
    sizes = [len(shares.entries(part)) for part in parts]
    logger.info("%s: %d photos, %d to process in %d shares, %d left as they are", source, work.found,
                len(work.pending), len(parts), work.kept)
    for sheet in shares.sheets(output):
        sheet.unlink()
    parameters = {"input": str(source), "output": str(output), "model": str(model_dir), "weights": weights,
                  "batch_size": batch_size, "recolor": recolor, "workers": workers, "dask_address": dask_address,
                  "max_pixels": max_pixels, "upsample": upsample, "temperature": temperature,
                  "saturation": saturation}
    started = time.perf_counter()
    runs = [run_deployment(deployment, parameters={**parameters, "share": str(part)}, timeout=0,
                           idempotency_key=f"{flow_run.id}-{i}") for i, part in enumerate(parts)]
    total = len(work.pending)
    finished = _wait_for(runs, f"Colouring into {output}", poll_seconds,
                         lambda: min(1.0, sum(shares.settled(s) for s in shares.pending(output)) / max(total, 1)))
    merged = merge_shares(output, ledger, wait=True)
    remove_temps(output, "a share's lost Dask worker", recursive=True)  # every share has ended
    seconds = time.perf_counter() - started
    settled = sum(merged.counts[status] for status in (COLORIZED, COLOUR, ERROR))
    report = LoopReport(merged.counts, merged.errors, left=len(work.pending) - settled,
                        stopped=_stopped(finished, "run again to redo them"))
    report.tally(work.records)
    summary = run_summary(work.found, work, report, seconds)
    create_table_artifact(key="colorize-split-summary", table=[summary],
                          description=f"Colorize run into {output} in {len(parts)} shares; contact sheets: "
                                      + ", ".join(str(s) for s in shares.sheets(output)))
    create_table_artifact(key="colorize-split-shares", table=_shares_table(finished, sizes, "photos"),
                          description="One child run per share")
    logger.info("%s", ", ".join(f"{k}: {v}" for k, v in summary.items()))
    if report.stopped:
        logger.error("%s", report.stopped)
        return Failed(message=report.stopped)
    return summary


@flow(name="embed-split")
@locked("dataset")
def embed_split(
    dataset: Path,
    weights: str = "imagenet",
    head: Head = DEFAULT_HEAD,
    batch_size: Annotated[int, Field(ge=1)] = 64,
    gpus: Annotated[int, Field(ge=1)] = 2,
    deployment: str = EMBED_SHARE_DEPLOYMENT,
    wait: bool = False,
    poll_seconds: Annotated[float, Field(gt=0)] = 5.0,
) -> dict:
    """Embed ``dataset`` as ``embed`` does, its shards dealt into ``gpus`` shares, each a run of ``deployment``
    on the ``gpu`` pool. Shards already embedded are skipped by the share that holds them. Fails when a share
    did not complete; the next run embeds what is left.
    """
    logger = get_run_logger()
    data = Dataset(project_path(dataset))
    weights = resolve_weights(weights)
    check_embed(data.root, weights, batch_size)
    _check_deployment(deployment)
    for folder in sorted(data.root.glob("embeddings/*/")):
        remove_temps(folder, "a killed run")  # the shares leave each other's alone
    parts = deal(data.shards(), gpus)
    logger.info("%s: %d shards in %d shares", data.root, sum(map(len, parts)), len(parts))
    parameters = {"dataset": str(data.root), "weights": weights, "head": head, "batch_size": batch_size}
    runs = [run_deployment(deployment, parameters={**parameters, "shards": part}, timeout=0,
                           idempotency_key=f"{flow_run.id}-{i}") for i, part in enumerate(parts)]
    names = {name for part in parts for name in part}
    finished = _wait_for(runs, f"Embedding {data.root}", poll_seconds, lambda: max(
        (len(names & {p.name for p in folder.iterdir()}) for folder in data.root.glob("embeddings/*/")),
        default=0) / max(len(names), 1))
    stopped = _stopped(finished, "run again to finish")
    table = _shares_table(finished, [len(p) for p in parts], "shards")
    create_table_artifact(key="embed-split-shares", table=table, description="One child run per share")
    if stopped:
        logger.error("%s", stopped)
        return Failed(message=stopped)
    return {"shards": sum(map(len, parts)), "shares": len(parts)}


def _check_deployment(name: str) -> None:
    """Refuse to start when the share runs' deployment is missing, before any share is written."""
    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise ConfigError(f"no deployment {name} on the server at {get_current_settings().api.url}: "
                              "run make deploy (it deploys prefect.yaml)") from None


def _wait_for(runs: list[FlowRun], description: str, poll_seconds: float, done: Callable[[], float]
              ) -> list[FlowRun]:
    """The child runs once every one has ended, with a progress artifact of ``done()`` (0 to 1) meanwhile.
    Says once in the log when some have not started after :data:`UNSTARTED_WARNING_SECONDS`."""
    if not runs:
        return []
    progress = create_progress_artifact(0.0, key="split-progress", description=description)
    ids: list[UUID] = [run.id for run in runs]
    warn_at = time.monotonic() + UNSTARTED_WARNING_SECONDS
    with get_client(sync_client=True) as client:
        while True:
            current = [client.read_flow_run(i) for i in ids]
            if all(run.state is not None and run.state.is_final() for run in current):
                update_progress_artifact(progress, 100.0)
                return current
            waiting = [run.name for run in current if run.state is None or run.state.is_scheduled()]
            if waiting and time.monotonic() > warn_at:
                get_run_logger().warning("%d share runs not started yet (%s): is a gpu worker running for each "
                                         "(make worker, COLORIZATION_GPUS)?", len(waiting), ", ".join(waiting))
                warn_at = float("inf")
            update_progress_artifact(progress, 100.0 * done())
            time.sleep(poll_seconds)


def _stopped(runs: list[FlowRun], advice: str) -> str | None:
    """What stopped a split run: the share runs that did not complete, and ``advice``; None when all did."""
    failed = [f"{run.name} ({run.state.name}: {run.state.message or 'no message'})"
              for run in runs if not run.state.is_completed()]
    return f"{len(failed)} of {len(runs)} shares did not complete: {'; '.join(failed)}; {advice}" if failed else None


def _shares_table(runs: list[FlowRun], sizes: list[int], unit: str) -> list[dict]:
    return [{"share": i, "run": run.name, "state": run.state.name, unit: size}
            for i, (run, size) in enumerate(zip(runs, sizes))]

