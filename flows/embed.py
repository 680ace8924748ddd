"""The ``embed`` flow: Xception embeddings of every shard, computed once and stored beside the shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from pydantic import Field

from colorization.dataset.embeddings import embed_dataset, storage_type, write_extractor_info
from colorization.dataset.layout import describe
from colorization.dataset.shards import Dataset
from colorization.network import device
from colorization.network.extractor import RANDOM_WARNING, load_extractor
from colorization.preflight import DEFAULT_HEAD, Head, check_embed
from flows.common import GPU_LIMIT, gpu_slot, locked, pinned_device, progress_bar, resolve_weights
from flows.paths import project_path


@task(name="embed-shards", tags=[GPU_LIMIT])
def embed_shards(dataset: Path, weights: str, head: str, batch_size: int, only: list[str] | None = None) -> dict:
    """Load the extractor and embed every shard not yet embedded (of ``only``, when given), holding the
    accelerator's concurrency slot."""
    logger = get_run_logger()
    with gpu_slot():
        extractor = load_extractor(weights, head)
        if extractor.random:
            logger.warning(RANDOM_WARNING)
        logger.info("extractor %s (%s per photo, stored as %s) on %s, batch %d", extractor.id,
                    describe(extractor.shape), storage_type(extractor.shape), device.describe(), batch_size)
        data = Dataset(dataset)
        write_extractor_info(data.embeddings_dir(extractor.id), extractor.id, weights, head)
        progress = create_progress_artifact(0.0, key="embed-progress", description="Shards embedded")
        with progress_bar(unit="shard", desc="embed") as bar:

            def on_shard(done: int, total: int) -> None:
                update_progress_artifact(progress, 100.0 * done / total)
                bar.total = total
                bar.update()
                logger.info("embedded shard %d/%d", done, total)

            report = embed_dataset(
                data, extractor.id, lambda lightness: extractor.embed(lightness, batch_size), extractor.shape,
                on_shard, only,
            )
    return {
        "extractor_id": extractor.id,
        "weights": "RANDOM WEIGHTS (not a real model)" if extractor.random else weights,
        "device": device.describe(),
        "stored as": storage_type(extractor.shape),
        "shards": report.shards,
        "already embedded": report.skipped,
        "images": report.images,
        "images/s": round(report.images_per_second, 2),
    }


@flow(name="embed")
@locked("dataset")
def embed(
    dataset: Path,
    weights: str = "imagenet",
    head: Head = DEFAULT_HEAD,
    batch_size: Annotated[int, Field(ge=1)] = 64,
    wait: bool = False,
) -> dict:
    """Compute the Xception embedding of every photo in ``dataset`` once, into ``embeddings/<extractor-id>/``.

    ``weights`` is ``imagenet`` (downloaded once into the Keras cache), a local weights file, or ``none``
    (random, for tests only). ``head`` ``maps`` (the default) stores Xception's exit-flow and middle-flow maps at
    their own sizes, which the model stacks on one 16x16 grid; ``hypercolumn`` stores them stacked, ``spatial``
    or ``middle`` one of them, the others a vector; a model trained on maps fuses them spatially. Shards already
    embedded by the same extractor are skipped. The run holds the dataset's lock; ``wait`` waits for another run
    that holds it instead of failing.
    """
    logger = get_run_logger()
    data = Dataset(project_path(dataset))
    weights = resolve_weights(weights)
    check_embed(data.root, weights, batch_size)
    summary = embed_shards(data.root, weights, head, batch_size)
    create_table_artifact(key="embed-summary", table=[summary], description="Embed run summary")
    logger.info("%s", ", ".join(f"{k}: {v}" for k, v in summary.items()))
    return summary


@flow(name="embed-share")
def embed_share(
    dataset: Path,
    shards: list[str],
    weights: str = "imagenet",
    head: Head = DEFAULT_HEAD,
    batch_size: Annotated[int, Field(ge=1)] = 64,
) -> dict:
    """Embed the named ``shards`` of ``dataset`` (one share of an ``embed-split`` run) on the accelerator of the
    worker that runs it. It takes no lock: the split run holds the dataset's, and shares never overlap."""
    root = project_path(dataset)
    summary = {**embed_shards(root, resolve_weights(weights), head, batch_size, only=shards),
               "pinned device": pinned_device()}
    create_table_artifact(key="embed-summary", table=[summary], description=f"Embed run summary ({len(shards)} shards)")
    get_run_logger().info("%s", ", ".join(f"{k}: {v}" for k, v in summary.items()))
    return summary
