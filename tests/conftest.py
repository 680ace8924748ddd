"""Shared fixtures: one Prefect test harness per session, sample photos, tiny datasets and models.

Plain helper functions live in :mod:`tests.helpers`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import SAMPLES, copy_samples, fake_embedded_copy


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect server and database shared by every test that runs a flow; fails the run if the
    server outlives it (a test that took over its process handle would leave it running after pytest)."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import prefect_test_harness

    from flows.common import ANALYTICS_ENV

    os.environ.setdefault(ANALYTICS_ENV, "false")  # as for the command line's temporary server: no telemetry errors
    with prefect_test_harness(server_startup_timeout=120):
        process = SubprocessASGIServer._instances[None].server_process
        yield
    if process.poll() is None:
        process.kill()
        pytest.fail(f"the test harness's Prefect server (pid {process.pid}) was still running after the harness")


@pytest.fixture(scope="session")
def sample_paths() -> list[Path]:
    paths = sorted(SAMPLES.glob("*.jpg"))
    assert len(paths) >= 24, "the bundled sample photos are missing"
    return paths


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, sample_paths):
    """A dataset of 3 shards (4 + 4 + 2 photos at 32x32), built with the library, no Prefect involved."""
    from colorization.dataset.preprocess import plan_shards, process_files
    from colorization.dataset.shards import Dataset

    source = tmp_path_factory.mktemp("tiny-photos")
    copy_samples(sample_paths[:10], source)
    data = Dataset(tmp_path_factory.mktemp("tiny-dataset"))
    data.ensure(32)
    for name, files in plan_shards(sorted(p.name for p in source.iterdir()), 4, 0):
        process_files(source, files, data.shards_dir / name, 32)
    return data


@pytest.fixture(scope="session")
def random_extractor():
    """Xception with random (seeded) weights: shapes and plumbing only, never quality."""
    from colorization.network.extractor import load_extractor

    return load_extractor("none", "predictions")


@pytest.fixture
def embedded_dataset(tiny_dataset, tmp_path):
    """A private copy of the tiny dataset with cheap deterministic 16-d embeddings (no Xception)."""
    return fake_embedded_copy(tiny_dataset, tmp_path / "embedded")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, random_extractor):
    """A fusion model with random weights at 32x32, carded as trained on the random extractor's embeddings."""
    from colorization.network.model import build_model, save_trained

    model_dir = tmp_path_factory.mktemp("model")
    card = {"extractor_id": random_extractor.id, "size": 32, "width": 0.125, "random_extractor": True,
            "embedding_shape": [random_extractor.dim]}
    model = build_model(32, random_extractor.dim, 0.125)
    model.get_layer("ab").bias.assign([0.2, 0.3])  # a visible tint, so that "colour was added" can be checked
    save_trained(model, model_dir, card)
    return model_dir


@pytest.fixture(scope="session")
def spatial_extractor():
    """Xception's ``spatial`` head with random (seeded) weights: 10x10x2048 maps, plumbing only."""
    from colorization.network.extractor import load_extractor

    return load_extractor("none", "spatial")


@pytest.fixture
def spatial_dataset(tiny_dataset, spatial_extractor, tmp_path):
    """A private copy of the tiny dataset with cheap deterministic 10x10x2048 maps (no Xception run), filed
    under the random spatial extractor's id so that a model trained on them loads through ``Colorizer``.

    Each map is the photo's L and ab sampled on a 10x10 grid, tiled over the channels: it varies over the photo.
    """
    from colorization.dataset.embeddings import write_embeddings
    from colorization.dataset.shards import Dataset, read_shard

    data = Dataset(tmp_path / "spatial")
    shutil.copytree(tiny_dataset.root, data.root)
    height, width, channels = spatial_extractor.shape
    for shard in data.shards():
        rows = read_shard(shard)
        ys = np.linspace(0, rows.L.shape[1] - 1, height).round().astype(int)
        xs = np.linspace(0, rows.L.shape[2] - 1, width).round().astype(int)
        grid = np.concatenate([rows.L[:, ys][:, :, xs, None] / 255, rows.ab[:, ys][:, :, xs] / 64], axis=-1)
        maps = np.tile(grid, (1, 1, 1, -(-channels // grid.shape[-1])))[..., :channels]
        write_embeddings(data.embeddings_dir(spatial_extractor.id) / shard.name, rows.ids, maps, spatial_extractor.id)
    return data
