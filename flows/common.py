"""Helpers shared by the flows: path resolution and the Dask task runner."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import dask
from prefect.client.orchestration import get_client
from prefect_dask import DaskTaskRunner

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GPU_LIMIT = "gpu"  # the global concurrency limit that serialises work on the accelerator


def project_path(path: str | Path) -> Path:
    """An absolute path; relative ones are taken from the project root, where deployments run."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def resolve_weights(weights: str | None) -> str | None:
    """``imagenet``, ``none`` and unset as they are; a weights file relative to the project root."""
    return weights if weights in (None, "imagenet", "none") else str(project_path(weights))


def dask_runner(workers: int | None, address: str | None, tasks: int) -> DaskTaskRunner:
    """A Dask task runner on an existing scheduler, or a local cluster of single-threaded worker processes.

    The local cluster gets one worker per core by default, never more workers than tasks. Its workers are
    pointed at the API this flow reports to, so that without a configured server they share the flow's
    temporary one instead of each starting their own. Workers of an existing cluster need ``PREFECT_API_URL``
    set in their own environment. ``COLORIZATION_DASK_ADDRESS`` names a cluster for runs that do not.
    """
    address = address or os.environ.get("COLORIZATION_DASK_ADDRESS")
    if address:
        return DaskTaskRunner(address=address)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # Dask's default MALLOC_TRIM_THRESHOLD_ makes glibc map and page-fault every large numpy temporary afresh:
    # image work ran 1.5x slower in workers than in a plain process (benchmarks/preprocess.py).
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": max(1, min(workers or os.cpu_count() or 1, tasks)),
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "silence_logs": logging.WARNING,
            "env": {"PREFECT_API_URL": api_url},
        },
    )
