"""Spatial semantic features end to end: a feature map is stored, batched, fused onto the encoder's grid,
trained, saved, loaded through ``Colorizer`` and used to colour photos; vector embeddings keep the paper's model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from colorization.dataset.batches import Rows, Split, Window
from colorization.dataset.embeddings import embedding_shape
from colorization.dataset.shards import Dataset
from colorization.errors import ConfigError
from colorization.evaluation.samples import colour_samples, load_sample
from colorization.network.colorizer import Colorizer
from colorization.network.model import build_model, fusion_kind
from colorization.network.training import STATE_FILE, TrainConfig, Trainer
from flows.cli import main
from flows.colorize import colorize
from tests.helpers import copy_samples, grey_copy, train_tiny

TINY = TrainConfig(epochs=2, batch_size=4, learning_rate=2e-3, width=0.125, validation_percent=20.0)


def test_fusion_is_chosen_by_the_embedding_shape():
    spatial = build_model(32, (10, 10, 24), 0.125)
    out = spatial({"L": np.zeros((2, 32, 32, 1), np.float32), "embedding": np.ones((2, 10, 10, 24), np.float32)})
    assert tuple(out.shape) == (2, 32, 32, 2)
    assert tuple(spatial.get_layer("embedding_grid").output.shape) == (None, 4, 4, 24)
    assert tuple(spatial.get_layer("fuse").output.shape) == (None, 4, 4, 32 + 24)
    assert "repeat_embedding" not in [layer.name for layer in spatial.layers]
    paper = build_model(32, 16, 0.125)
    assert "repeat_embedding" in [layer.name for layer in paper.layers]
    assert fusion_kind((16,)) == "global" and fusion_kind((10, 10, 24)) == "spatial"
    with pytest.raises(ConfigError, match="a vector, an"):
        build_model(32, (10, 24), 0.125)


def test_the_map_is_resized_over_the_grid_not_averaged_away():
    model = build_model(64, (2, 2, 1), 0.125)
    grid = model.get_layer("embedding_grid")
    left_right = np.array([[[[0.0], [1.0]], [[0.0], [1.0]]]], np.float32)
    resized = np.asarray(grid(left_right))[0, ..., 0]
    assert resized.shape == (8, 8) and resized[:, 0].max() < 0.2 and resized[:, -1].min() > 0.8


def test_batches_carry_maps_and_mirror_them_with_the_photo(spatial_dataset, spatial_extractor):
    split = Split(spatial_dataset, spatial_extractor.id, validation=False, percent=20.0)
    inputs, _ = next(split.batches(3))
    assert inputs["embedding"].shape == (3, 10, 10, 2048) and inputs["embedding"].dtype == np.float16
    model = build_model(32, (10, 10, 2048), 0.125)  # the model casts the stored float16 itself, exactly
    as_float32 = {**inputs, "embedding": inputs["embedding"].astype(np.float32)}
    assert np.array_equal(np.asarray(model(inputs)), np.asarray(model(as_float32)))

    rng = np.random.default_rng(0)
    rows = Rows(rng.integers(0, 255, (8, 16, 16), np.uint8), rng.integers(-60, 60, (8, 16, 16, 2), np.int8),
                rng.normal(size=(8, 5, 5, 3)).astype(np.float16))
    mirror = np.arange(len(rows)) % 3 == 0
    everything = np.arange(len(rows))
    window = Window([(rows, everything)])
    inputs, target = window.batch(everything, mirror)
    mirrored = [not np.array_equal(inputs["L"][i, ..., 0], rows.L[i]) for i in range(len(rows))]
    assert mirrored == list(mirror)
    assert np.array_equal(target[mirror] * 128, rows.ab[mirror][:, :, ::-1].astype(np.float32))
    for i, flipped in enumerate(mirrored):
        expected = rows.embedding[i, :, ::-1] if flipped else rows.embedding[i]
        assert np.array_equal(inputs["embedding"][i], expected)

    index = np.array([5, 0, 3])
    gathered, gathered_target = window.batch(index, mirror[index])
    assert np.array_equal(gathered["embedding"], inputs["embedding"][index])
    assert np.array_equal(gathered["L"], inputs["L"][index]) and np.array_equal(gathered_target, target[index])


def test_a_window_serves_the_chosen_rows_of_several_shards_in_order_without_joining_them():
    rng = np.random.default_rng(1)
    shards = [Rows(rng.integers(0, 255, (n, 4, 4), np.uint8), rng.integers(-60, 60, (n, 4, 4, 2), np.int8),
                   rng.normal(size=(n, 2, 2, 3)).astype(np.float16)) for n in (5, 3)]
    window = Window([(shards[0], np.array([1, 4])), (shards[1], np.array([0, 2]))])
    assert len(window) == 4
    inputs, target = window.batch(np.array([3, 0, 2]))
    expected = [(shards[1], 2), (shards[0], 1), (shards[1], 0)]
    for i, (rows, row) in enumerate(expected):
        assert np.array_equal(inputs["L"][i, ..., 0], rows.L[row]) and np.array_equal(inputs["embedding"][i],
                                                                                      rows.embedding[row])
        assert np.array_equal(target[i] * 128, rows.ab[row].astype(np.float32))
    taken = window.take(np.array([2, 1]))
    assert np.array_equal(taken.embedding, np.stack([shards[1].embedding[0], shards[0].embedding[4]]))


def test_spatial_model_trains_loads_and_colours(prefect_harness, spatial_dataset, spatial_extractor, sample_paths,
                                                tmp_path):
    model_dir = tmp_path / "model"
    trainer = Trainer(spatial_dataset, model_dir, TINY)
    trainer.start(resume=False)
    card = trainer.run()
    assert card["fusion"] == "spatial" and card["embedding_shape"] == [10, 10, 2048]
    assert card["extractor_id"] == spatial_extractor.id and card["epochs"] == 2
    assert np.isfinite(card["metrics"]["loss"]) and card["evaluation"]["photos"] == card["validation_images"]

    colorizer = Colorizer.load(model_dir)
    assert colorizer.card.head == "spatial" and colorizer.extractor.id == spatial_extractor.id
    sample = load_sample(sample_paths[0].read_bytes(), sample_paths[0].name, long_side=48)
    coloured = colour_samples(colorizer, [sample], batch_size=2)
    assert coloured[0].shape == sample.original.shape

    grey_copy(sample_paths[1], tmp_path / "archive" / "scan.jpg")
    summary = colorize(input=tmp_path / "archive", output=tmp_path / "out", model=model_dir, workers=1)
    assert summary["colorized"] == 1 and (tmp_path / "out" / "scan.jpg").is_file()


def test_vector_models_keep_global_fusion_and_old_checkpoints_resume(embedded_dataset, tmp_path):
    model_dir = tmp_path / "model"
    _, card = train_tiny(embedded_dataset, model_dir)
    assert card["fusion"] == "global" and card["embedding_shape"] == [16] and card["embedding_dim"] == 16

    state_file = model_dir / "checkpoint" / STATE_FILE
    state = json.loads(state_file.read_text())
    state["embedding_dim"] = state.pop("embedding_shape")[0]  # a checkpoint written before feature maps
    state_file.write_text(json.dumps(state))
    again = Trainer(embedded_dataset, model_dir, TrainConfig(**{**TINY.__dict__, "epochs": 2}))
    again.start(resume=True)
    assert again.run()["embedding_shape"] == [16]


def test_cli_pipeline_with_spatial_head_embeds_maps_and_trains_a_spatial_model(prefect_harness, sample_paths, tmp_path):
    copy_samples(sample_paths[:6], tmp_path / "photos")
    assert main(["pipeline", str(tmp_path / "photos"), "--dataset", str(tmp_path / "ds"), "--model-dir",
                 str(tmp_path / "m"), "--size", "32", "--weights", "none", "--head", "spatial", "--epochs", "1",
                 "--batch-size", "4", "--width", "0.125", "--workers", "1"]) == 0
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["fusion"] == "spatial" and card["extractor_id"].startswith("xception-spatial-RANDOM-")
    folder = Dataset(tmp_path / "ds").embeddings_dir(card["extractor_id"])
    assert all(embedding_shape(path) == (10, 10, 2048) for path in folder.glob("part-*.parquet"))

    # Resumed without --head (whose default is maps), the run keeps the head it was started with.
    assert main(["pipeline", str(tmp_path / "photos"), "--dataset", str(tmp_path / "ds"), "--model-dir",
                 str(tmp_path / "m"), "--size", "32", "--weights", "none", "--epochs", "2", "--resume",
                 "--batch-size", "4", "--width", "0.125", "--workers", "1"]) == 0
    resumed = json.loads((tmp_path / "m" / "model.json").read_text())
    assert resumed["extractor_id"] == card["extractor_id"] and resumed["epochs"] == 2
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
