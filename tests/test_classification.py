"""The classification objective (Zhang et al. 2016): bins, soft targets, rebalancing, decoding, end to end."""

from __future__ import annotations

import json
import shutil
import warnings

import keras
import numpy as np
import pytest
from PIL import Image
from skimage import color

from colorization.dataset import prior
from colorization.dataset.batches import Split
from colorization.errors import ConfigError
from colorization.network import classification, colour_classes
from colorization.network.card import ModelCard
from colorization.network.model import build_model, save_trained
from colorization.network.training import TrainConfig, Trainer
from colorization.photos import lab
from flows.cli import main
from tests.helpers import FAKE_EXTRACTOR

Q = 261
TINY = TrainConfig(epochs=2, batch_size=4, learning_rate=2e-3, width=0.125, validation_percent=20.0,
                   objective="classification")


def in_srgb_gamut(lab_values: np.ndarray) -> np.ndarray:
    """Whether each Lab colour (n, 3) is an sRGB colour, computed with scikit-image (no clipping)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xyz = color.lab2xyz(lab_values[None])[0]
    linear = xyz @ color.colorconv.rgb_from_xyz.T
    return np.all((linear >= -1e-6) & (linear <= 1 + 1e-6), axis=1)


def test_bins_are_the_in_gamut_cells_of_a_10_unit_grid():
    bins = colour_classes.ab_bins()
    assert bins.shape == (Q, 2) and np.all(bins % 10 == 0) and np.abs(bins).max() <= 110
    # Every kept cell holds an sRGB colour at some L (a 1-unit grid over the cell, L = 0..100) ...
    offsets = np.stack(np.meshgrid(np.arange(-5, 6), np.arange(-5, 6)), -1).reshape(-1, 2)
    lightness = np.arange(0, 101, 1.0)
    points = (bins[:, None, None, :] + offsets[None, :, None, :]).repeat(len(lightness), axis=2)
    lab_values = np.concatenate([np.broadcast_to(lightness[None, None, :, None], points.shape[:3] + (1,)), points],
                                axis=-1)
    assert in_srgb_gamut(lab_values.reshape(-1, 3)).reshape(len(bins), -1).any(axis=1).all()
    # ... and every 8-bit sRGB colour (here a stride-5 cube, through scikit-image) falls in a kept cell.
    levels = np.arange(0, 256, 5, dtype=np.uint8)
    cube = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    cells = {tuple(c) for c in np.rint(color.rgb2lab(cube[None])[0][:, 1:] / 10).astype(int) * 10}
    assert cells <= {tuple(b) for b in bins.astype(int)}


def test_soft_encoding_sums_to_one_and_peaks_at_the_nearest_bin():
    bins = colour_classes.ab_bins()
    ab = np.array([[0.0, 0.0], [23.0, -41.0], [60.0, 60.0], [-3.0, 4.0]], np.float32)
    indices, weights = colour_classes.soft_encode(ab)
    assert indices.shape == weights.shape == (4, 5)
    assert np.allclose(weights.sum(axis=1), 1, atol=1e-6)
    nearest = np.argmin(((ab[:, None] - bins[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(indices[:, 0], nearest) and np.all(np.diff(weights, axis=1) <= 1e-7)
    assert tuple(bins[indices[0, 0]]) == (0, 0) and weights[0, 0] > 0.5  # a centre: its own bin dominates
    table_indices, table_weights = colour_classes.encoding_table()
    stored = np.array([[23, -41], [-3, 4]])
    key = colour_classes.table_key(stored)
    assert np.array_equal(table_indices[key], indices[[1, 3]]) and np.allclose(table_weights[key], weights[[1, 3]])
    assert np.array_equal(colour_classes.nearest_bin(stored), nearest[[1, 3]])


def test_rebalancing_weights_uniform_normalised_and_favouring_rare_colours():
    assert np.allclose(prior.rebalancing_weights(np.full(Q, 7)), 1.0)
    counts = np.random.default_rng(0).pareto(1.0, Q) * 1000
    weights = prior.rebalancing_weights(counts)
    smoothed = prior.smoothed_distribution(counts)
    assert smoothed @ weights == pytest.approx(1.0) and smoothed.sum() == pytest.approx(1.0)
    order = np.argsort(smoothed)
    assert np.all(np.diff(weights[order]) <= 1e-12), "rarer bins weigh more"


def test_prior_is_stored_with_the_dataset_reused_and_updated_when_shards_change(embedded_dataset):
    calls: list[list[str]] = []

    def count(shards, percent):
        calls.append([s.name for s in shards])
        return [prior.shard_bin_counts(s, percent) for s in shards]

    first = prior.dataset_weights(embedded_dataset, 20.0, count)
    path = embedded_dataset.root / prior.PRIOR_FILE
    stored = json.loads(path.read_text())
    assert calls == [["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]]
    assert stored["bins"] == Q and sorted(stored["shards"]) == calls[0]
    pixels = sum(sum(entry["counts"]) for entry in stored["shards"].values())
    assert pixels == Split(embedded_dataset, FAKE_EXTRACTOR, validation=False, percent=20.0).size * 32 * 32

    mtime = path.stat().st_mtime_ns
    assert np.array_equal(prior.dataset_weights(embedded_dataset, 20.0, count), first)
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime, "nothing recounted, nothing rewritten"

    shards = embedded_dataset.shards()
    shutil.copy(shards[0], embedded_dataset.shards_dir / "part-00003.parquet")
    shards[1].unlink()
    prior.dataset_weights(embedded_dataset, 20.0, count)
    assert calls[-1] == ["part-00003.parquet"]
    assert sorted(json.loads(path.read_text())["shards"]) == ["part-00000.parquet", "part-00002.parquet",
                                                              "part-00003.parquet"]
    prior.dataset_weights(embedded_dataset, 10.0, count)
    assert len(calls[-1]) == 3, "another validation split: every shard counted again"


def test_annealed_mean_from_mode_to_mean():
    bins = colour_classes.ab_bins()
    logits = np.random.default_rng(1).normal(0, 2, (3, Q)).astype(np.float32)
    mean = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True) @ bins
    decoded = keras.ops.convert_to_numpy(classification.annealed_mean(logits, 1.0)) * lab.AB_SCALE
    assert np.allclose(decoded, mean, atol=1e-3)
    cold = keras.ops.convert_to_numpy(classification.annealed_mean(logits, 1e-3)) * lab.AB_SCALE
    assert np.allclose(cold, bins[np.argmax(logits, axis=1)], atol=1e-3)


def test_loss_is_log_q_for_a_flat_prediction_and_lower_at_the_target():
    loss = classification.RebalancedCrossEntropy(np.ones(Q).tolist())
    target = np.zeros((2, 4, 4, 2), np.float32)
    target[..., 0] = 40 / lab.AB_SCALE  # a = 40, b = 0
    flat = np.zeros((2, 2, 2, Q), np.float32)
    assert float(loss(target, flat)) == pytest.approx(np.log(Q), rel=1e-5)
    peaked = flat.copy()
    peaked[..., colour_classes.nearest_bin(np.array([40, 0]))] = 5.0
    assert float(loss(target, peaked)) < np.log(Q)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert float(restored(target, peaked)) == pytest.approx(float(loss(target, peaked)))


def test_classification_training_card_resume_and_objective_checks(embedded_dataset, tmp_path):
    trainer = Trainer(embedded_dataset, tmp_path / "m", TINY)
    trainer.start(resume=False)
    card = trainer.run()
    assert (card["objective"], card["bins"], card["temperature"]) == ("classification", Q, 0.38)
    assert card["config"]["objective"] == "classification"
    assert all(np.isfinite([h["loss"], h["val_loss"], h["psnr"], h["colorfulness"]]).all() for h in card["history"])
    assert card["evaluation"]["model"]["psnr"]["mean"] == pytest.approx(card["metrics"]["psnr"], abs=1e-4)
    assert (embedded_dataset.root / prior.PRIOR_FILE).is_file()
    inputs, _ = next(trainer.val_split.batches(2))
    ab = trainer.predict(inputs)
    assert ab.shape == (len(ab), 32, 32, 2) and np.abs(ab).max() <= 110 / 128

    with pytest.raises(ConfigError, match="a classification run; resume it with --objective classification"):
        Trainer(embedded_dataset, tmp_path / "m", TrainConfig(**{**TINY.__dict__, "objective": "regression"})) \
            .start(resume=True)
    again = Trainer(embedded_dataset, tmp_path / "m", TrainConfig(**{**TINY.__dict__, "epochs": 3}))
    again.start(resume=True)
    assert isinstance(again.model.loss, classification.RebalancedCrossEntropy)
    assert again.run()["epochs"] == 3

    regression = Trainer(embedded_dataset, tmp_path / "r", TrainConfig(**{**TINY.__dict__, "epochs": 1,
                                                                          "objective": "regression"}))
    regression.start(resume=False)
    assert (regression.run()["objective"], regression.model.output.shape[-1]) == ("regression", 2)


@pytest.fixture(scope="module")
def classification_model(tmp_path_factory, random_extractor):
    """A classification model at 32x32 on the random extractor's embeddings, its logits tilted to one
    colourful bin so that colour is visibly added."""
    model_dir = tmp_path_factory.mktemp("classes")
    model = build_model(32, random_extractor.dim, 0.125, Q)
    bias = np.zeros(Q, np.float32)
    bias[colour_classes.nearest_bin(np.array([30, 50]))] = 4.0
    model.get_layer("ab_logits").bias.assign(bias)
    card = {"extractor_id": random_extractor.id, "size": 32, "width": 0.125, "random_extractor": True,
            "objective": "classification", "bins": Q, "temperature": 0.38, "embedding_shape": [random_extractor.dim]}
    save_trained(model, model_dir, card)
    return model_dir


def test_colorizer_decodes_classification_models_in_lab_units(classification_model):
    from colorization.network.colorizer import Colorizer

    colorizer = Colorizer.load(classification_model)
    lightness = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    ab = colorizer.predict_ab(lightness)
    assert ab.shape == (3, 32, 32, 2) and np.abs(ab).max() <= 110
    assert np.allclose(ab.mean(axis=(0, 1, 2)), [30, 50], atol=8)
    cold = Colorizer.load(classification_model, temperature=0.05)
    assert cold.temperature == 0.05 and colorizer.temperature == 0.38
    assert np.abs(cold.predict_ab(lightness) - [30, 50]).max() < np.abs(ab - [30, 50]).max()
    assert ModelCard.read(classification_model).model_id() == colorizer.id and colorizer.id.endswith("/T0.38")
    assert cold.id.endswith("/T0.05")
    with pytest.raises(ConfigError, match="--temperature must be positive"):
        Colorizer.load(classification_model, temperature=0)


def test_classification_model_colours_a_photo_through_the_colorize_flow(
    prefect_harness, classification_model, tmp_path, sample_paths
):
    from flows.colorize import colorize

    folder = tmp_path / "scans"
    folder.mkdir()
    Image.open(sample_paths[0]).convert("L").save(folder / "old.png")
    summary = colorize(input=folder, output=tmp_path / "out", model=classification_model, batch_size=2, workers=1)
    assert summary["colorized"] == 1
    result = lab.rgb_to_lab(np.asarray(Image.open(tmp_path / "out" / "old.png").convert("RGB")))
    assert np.abs(result[..., 1:]).max() <= 128 and result[..., 1:].mean(axis=(0, 1))[1] > 5, "colour was added"
    again = colorize(input=folder, output=tmp_path / "out", model=classification_model, temperature=0.2, workers=1)
    assert again["colorized"] == 1, "another temperature colours the photo again"


def test_train_flow_counts_the_prior_on_dask_and_cards_the_objective(prefect_harness, embedded_dataset, tmp_path):
    from flows.train import train

    card = train(dataset=embedded_dataset.root, model_dir=tmp_path / "m", epochs=1, batch_size=4, width=0.125,
                 validation_percent=20.0, objective="classification")
    assert card["objective"] == "classification" and card["bins"] == Q
    assert len(json.loads((embedded_dataset.root / prior.PRIOR_FILE).read_text())["shards"]) == 3


@pytest.mark.parametrize(
    ("command", "message"),
    [(["train", "--objective", "bogus"], "argument --objective: invalid choice: 'bogus'"),
     (["pipeline", "SRC", "--objective", "mse"], "argument --objective: invalid choice: 'mse'"),
     (["colorize", "IN", "OUT", "--temperature", "0"], "--temperature must be positive")],
)
def test_cli_refuses_bad_objective_and_temperature(command, message, embedded_dataset, classification_model,
                                                   sample_paths, tmp_path, capsys):
    paths = {"SRC": str(sample_paths[0].parent), "IN": str(sample_paths[0].parent), "OUT": str(tmp_path / "out")}
    argv = [paths.get(a, a) for a in command]
    if argv[0] == "train":
        argv += ["--dataset", str(embedded_dataset.root), "--model-dir", str(tmp_path / "m")]
    elif argv[0] == "pipeline":
        argv += ["--dataset", str(tmp_path / "d"), "--model-dir", str(tmp_path / "m")]
    else:
        argv += ["--model", str(classification_model)]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse refuses a value outside its choices by exiting
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
