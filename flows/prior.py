"""The ``ab-prior`` flow: the a,b bin counts of a dataset's training pixels, one Dask task per new shard.

The class-rebalancing weights of the classification objective come from them (``colorization.dataset.prior``); they
are stored beside the shards, so each shard is counted once, whatever the number of training runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import flow, get_run_logger, task

from colorization.dataset import prior
from colorization.dataset.shards import Dataset
from flows.common import dask_runner
from flows.paths import project_path


@task(name="count-ab-bins")
def count_shard(shard: Path, validation_percent: float) -> np.ndarray:
    """How many training pixels of one shard fall nearest each a,b bin."""
    return prior.shard_bin_counts(shard, validation_percent)


@flow(name="ab-prior-shards")
def count_shards(shards: list[Path], validation_percent: float) -> list[np.ndarray]:
    """One task per shard, on the flow's task runner."""
    futures = [count_shard.submit(shard, validation_percent) for shard in shards]
    return [future.result() for future in futures]


@flow(name="ab-prior")
def ab_prior(
    dataset: Path,
    validation_percent: float = 10.0,
    workers: int | None = None,
    dask_address: str | None = None,
) -> list[float]:
    """Count the shards of ``dataset`` not counted yet, in parallel, store the counts with the dataset and
    return the rebalancing weights."""
    data = Dataset(project_path(dataset))
    missing = prior.missing_shards(data, validation_percent)
    counts: list[np.ndarray] = []
    if missing:
        get_run_logger().info("%s: counting the a,b bins of %d shards", data.root, len(missing))
        runner = dask_runner(workers, dask_address, len(missing))
        counts = count_shards.with_options(task_runner=runner)(missing, validation_percent)
    weights = prior.store(data, validation_percent, {shard.name: c for shard, c in zip(missing, counts)})
    get_run_logger().info("rebalancing weights of %s: %.3g to %.3g", data.root, weights.min(), weights.max())
    return weights.tolist()
