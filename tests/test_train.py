"""The train stage: the model learns, resumes with its optimizer state, saves faithfully, refuses mismatches."""

from __future__ import annotations

import json
import re
import shutil
import time

import keras
import numpy as np
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from colorization.dataset.batches import Split, is_validation
from colorization.dataset.shards import read_shard
from colorization.errors import ConfigError
from colorization.network.card import ModelCard
from colorization.network.model import build_model, load_trained, save_trained
from colorization.network.training import EpochResult, TrainConfig, Trainer, compile_model, is_stalled
from flows.cli import main
from flows.train import pipeline, train
from tests.helpers import FAKE_EXTRACTOR, SAMPLES, copy_samples, train_tiny

TINY = TrainConfig(epochs=2, batch_size=4, learning_rate=2e-3, width=0.125, validation_percent=20.0)


def artifacts(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return sorted(found, key=lambda a: a.created)


def test_model_shapes_and_width():
    model = build_model(64, 16, 0.25)
    out = model({"L": np.zeros((2, 64, 64, 1), np.float32), "embedding": np.zeros((2, 16), np.float32)})
    assert tuple(out.shape) == (2, 64, 64, 2)
    assert model.get_layer("encoder_0").filters == 16 and model.get_layer("fusion").filters == 64
    assert build_model(64, 16, 1.0).count_params() > 10 * model.count_params()
    with pytest.raises(ConfigError, match="multiple of 8"):
        build_model(60, 16)


def test_tiny_model_overfits_a_fixed_batch(embedded_dataset):
    split = Split(embedded_dataset, FAKE_EXTRACTOR, validation=False, percent=1.0)
    inputs, target = next(split.batches(4))
    keras.utils.set_random_seed(0)
    model = build_model(32, 16, 0.25)
    compile_model(model, 3e-3)
    before = float(model.evaluate(inputs, target, verbose=0))
    model.fit(inputs, target, batch_size=4, epochs=300, verbose=0)
    after = float(model.evaluate(inputs, target, verbose=0))
    assert after < before / 10, (before, after)


def split_ids(split: Split) -> set[str]:
    return {read_shard(part.shard, ["id"]).ids[row] for part in split.parts for row in part.rows}


def test_split_is_stable_disjoint_and_batches_cover_it(embedded_dataset):
    train_split = Split(embedded_dataset, FAKE_EXTRACTOR, validation=False, percent=20.0)
    val_split = Split(embedded_dataset, FAKE_EXTRACTOR, validation=True, percent=20.0)
    assert train_split.size + val_split.size == 10 and val_split.size > 0
    train_ids, val_ids = split_ids(train_split), split_ids(val_split)
    assert not train_ids & val_ids and len(train_ids | val_ids) == 10
    assert split_ids(Split(embedded_dataset, FAKE_EXTRACTOR, validation=True, percent=20.0)) == val_ids
    assert all(is_validation(i, 20.0) for i in val_ids) and not any(is_validation(i, 20.0) for i in train_ids)
    seen = sum(len(t) for _, t in train_split.batches(3, np.random.default_rng(0), flip=True, shards_in_memory=1))
    assert seen == train_split.size
    inputs, target = next(train_split.batches(3))
    assert inputs["L"].shape == (3, 32, 32, 1) and inputs["embedding"].shape == (3, 16)
    assert target.dtype == np.float32 and np.abs(target).max() <= 1.0


def test_batches_are_the_same_whatever_the_number_of_threads(embedded_dataset):
    split = Split(embedded_dataset, FAKE_EXTRACTOR, validation=False, percent=20.0)

    def one_pass(threads: int) -> list:
        return list(split.batches(3, np.random.default_rng(7), flip=True, shards_in_memory=1, threads=threads))

    single, several = one_pass(1), one_pass(4)
    assert [len(t) for _, t in single] == [len(t) for _, t in several] and sum(len(t) for _, t in single) == split.size
    for (inputs, target), (other_inputs, other_target) in zip(single, several):
        assert np.array_equal(target, other_target) and np.array_equal(inputs["L"], other_inputs["L"])
        assert np.array_equal(inputs["embedding"], other_inputs["embedding"])


def test_resume_continues_epoch_numbering_and_optimizer_state(embedded_dataset, tmp_path):
    model_dir = tmp_path / "model"
    last = TrainConfig(**{**TINY.__dict__, "keep": "last"})  # so the model in memory is the last epoch's
    first = Trainer(embedded_dataset, model_dir, last)
    first.start(resume=False)
    first.run()
    steps = first.train_split.steps(TINY.batch_size)
    saved_moments = [np.array(v) for v in first.model.optimizer.variables]

    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        Trainer(embedded_dataset, model_dir, TINY).start(resume=False)

    second = Trainer(embedded_dataset, model_dir, TrainConfig(**{**last.__dict__, "epochs": 3}))
    second.start(resume=True)
    assert int(second.model.optimizer.iterations) == 2 * steps
    for saved, loaded in zip(saved_moments, second.model.optimizer.variables):
        assert np.array_equal(saved, np.array(loaded)), "optimizer state must survive the checkpoint"
    card = second.run()
    assert card["epochs"] == 3 and [h["epoch"] for h in card["history"]] == [1, 2, 3]
    assert int(second.model.optimizer.iterations) == 3 * steps


def test_saved_model_predicts_identically_and_refuses_other_extractor(embedded_dataset, tmp_path):
    trainer = Trainer(embedded_dataset, tmp_path / "model", TrainConfig(**{**TINY.__dict__, "epochs": 1}))
    trainer.start(resume=False)
    card = trainer.run()
    inputs, _ = next(trainer.val_split.batches(4))
    typed = ModelCard.read(tmp_path / "model")
    loaded = load_trained(typed, FAKE_EXTRACTOR)
    before, after = trainer.model.predict_on_batch(inputs), loaded.predict_on_batch(inputs)
    assert np.array_equal(np.asarray(before), np.asarray(after))
    assert typed.data == json.loads((tmp_path / "model" / "model.json").read_text()) == card
    assert (typed.extractor_id, typed.size, typed.width, typed.objective, typed.random) == \
        (FAKE_EXTRACTOR, 32, 0.125, "regression", False)
    assert card["extractor_id"] == FAKE_EXTRACTOR and card["size"] == 32 and card["train_images"] > 0
    assert card["framing"] == "whole", "the card says how its photos were made square"
    evaluation = card["evaluation"]
    assert evaluation["photos"] == card["validation_images"] > 0
    assert evaluation["grey"]["colorfulness"]["mean"] == 0 and evaluation["grey"]["auc"]["mean"] < 1
    assert evaluation["model"]["psnr"]["mean"] == pytest.approx(card["metrics"]["psnr"], abs=1e-4), \
        "the epoch's PSNR and the final scoring render and score alike"
    with pytest.raises(ConfigError, match="trained on embeddings of fake-extractor-16, not xception-predictions-abc"):
        load_trained(typed, "xception-predictions-abc")
    with pytest.raises(ConfigError, match="no trained model here"):
        ModelCard.read(tmp_path)


def test_train_flow_publishes_metrics_samples_and_model(prefect_harness, embedded_dataset, tmp_path):
    card = train(dataset=embedded_dataset.root, model_dir=tmp_path / "m", epochs=2, batch_size=4, width=0.125,
                 validation_percent=20.0)
    assert card["epochs"] == 2 and (tmp_path / "m" / "model.keras").is_file()
    epochs = json.loads(artifacts("train-metrics")[-1].data)  # this run's one table, grown in place
    assert [row["epoch"] for row in epochs] == [1, 2]
    assert {"PSNR (dB)", "photos/s (training)", "loss (validation)"} <= set(epochs[1])
    samples = artifacts("train-samples")[-1].data
    assert samples.count("data:image/jpeg;base64,") >= 3 and "model" in samples and "original" in samples
    assert str(tmp_path / "m") in str(artifacts("train-model")[-1].data)
    assert "grey" in str(artifacts("train-evaluation")[-1].data)


def test_demo_validation_split_holds_at_least_four_photos(sample_paths):
    from colorization.dataset.preprocess import content_id

    percent = float(re.search(r"--validation-percent (\S+)", (SAMPLES.parents[2] / "Makefile").read_text())[1])
    held_out = [p for p in sample_paths if is_validation(content_id(p.name, p.read_bytes()), percent)]
    assert len(held_out) >= 4, f"demo validation split: {len(held_out)} photos at {percent}%"


def test_pipeline_runs_all_stages_and_warns_about_random_weights(prefect_harness, sample_paths, tmp_path, caplog):
    copy_samples(sample_paths[:6], tmp_path / "photos")
    state = pipeline(source=tmp_path / "photos", dataset=tmp_path / "ds", model_dir=tmp_path / "m", size=32,
                     weights="none", epochs=1, batch_size=4, width=0.125, workers=1, return_state=True)
    card = state.result()
    assert card["random_extractor"] and "RANDOM" in card["extractor_id"] and card["epochs"] == 1
    parent = str(state.state_details.flow_run_id)
    assert any("RANDOM" in r.getMessage() for r in caplog.records if getattr(r, "flow_run_id", None) == parent), \
        "the warning is on the run the user opened, not only on its subflows"
    assert "RANDOM weights" in artifacts("train-samples")[-1].data


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--epochs", "0"], "--epochs must be at least 1"), (["--width", "-1"], "--width must be positive")],
)
def test_cli_train_bad_parameters(embedded_dataset, tmp_path, capsys, extra, message):
    code = main(["train", "--dataset", str(embedded_dataset.root), "--model-dir", str(tmp_path / "m"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


def test_cli_train_without_embeddings(tiny_dataset, tmp_path, capsys):
    assert main(["train", "--dataset", str(tiny_dataset.root), "--model-dir", str(tmp_path / "m")]) == 2
    assert "no embeddings; run embed first" in capsys.readouterr().err


def test_retried_flow_run_resumes_by_itself(prefect_harness, embedded_dataset, tmp_path, monkeypatch):
    import flows.train

    options = {"dataset": embedded_dataset.root, "model_dir": tmp_path / "m", "batch_size": 4, "width": 0.125,
               "validation_percent": 20.0}
    train(epochs=1, **options)
    failed = train(epochs=2, return_state=True, **options)
    assert failed.is_failed() and "pass --resume" in str(failed.result(raise_on_failure=False))
    monkeypatch.setattr(flows.train.flow_run, "run_count", 2)  # what Prefect reports when a run is retried
    card = train(epochs=2, **options)
    assert card["epochs"] == 2 and [h["epoch"] for h in card["history"]] == [1, 2]


def test_model_id_names_what_the_model_computes_not_when_it_was_saved(tmp_path):
    def model_id(model_dir):
        return ModelCard.read(model_dir).model_id()

    model = build_model(32, 16, 0.125)
    card = {"extractor_id": FAKE_EXTRACTOR, "size": 32, "width": 0.125, "embedding_dim": 16}
    save_trained(model, tmp_path / "a", card)
    time.sleep(1.1)  # the zip records its save time to the second
    save_trained(model, tmp_path / "b", card)
    assert (tmp_path / "a" / "model.keras").read_bytes() != (tmp_path / "b" / "model.keras").read_bytes()
    assert model_id(tmp_path / "a") == model_id(tmp_path / "b")
    model.get_layer("ab").bias.assign([0.0, 1e-3])
    save_trained(model, tmp_path / "c", card)
    assert model_id(tmp_path / "c") != model_id(tmp_path / "a")
    (tmp_path / "c" / "model.keras").write_text("not a zip")
    with pytest.raises(ConfigError, match="model.keras: not a Keras model file"):
        model_id(tmp_path / "c")


def test_resume_with_nothing_left_saves_nothing_and_clears_stale_temps(embedded_dataset, tmp_path):
    model_dir = tmp_path / "model"
    _, card = train_tiny(embedded_dataset, model_dir)
    saved = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir() if p.is_file()}
    stale = [model_dir / ".tmp-1a2b3c4d-model.keras", model_dir / "checkpoint" / ".tmp-5e6f7a8b-state.json"]
    for path in stale:
        path.write_bytes(b"half written")

    again = Trainer(embedded_dataset, model_dir, TrainConfig(**{**TINY.__dict__, "epochs": 1}))
    again.start(resume=True)
    assert not any(p.exists() for p in stale)
    assert again.run() == card
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir() if p.is_file()} == saved


def test_resume_continues_on_its_own_embeddings_when_the_dataset_has_gained_another_set(embedded_dataset, tmp_path):
    """A run started on one embedding set, resumed after embed made a second (say, with a new default head),
    continues on its own set without being told which; a new run still has to choose."""
    model_dir = tmp_path / "model"
    train_tiny(embedded_dataset, model_dir)
    shutil.copytree(embedded_dataset.embeddings_dir(FAKE_EXTRACTOR), embedded_dataset.embeddings_dir("another-set"))
    _, card = train_tiny(embedded_dataset, model_dir, epochs=2, resume=True)
    assert card["extractor_id"] == FAKE_EXTRACTOR and card["epochs"] == 2
    with pytest.raises(ConfigError, match="several embedding sets"):
        train_tiny(embedded_dataset, tmp_path / "new")


def test_a_damaged_checkpoint_state_is_named(embedded_dataset, tmp_path):
    model_dir = tmp_path / "model"
    train_tiny(embedded_dataset, model_dir)
    (model_dir / "checkpoint" / "state.json").write_text('{"history": [')
    with pytest.raises(ConfigError, match=r"checkpoint/state.json: not a training checkpoint's state"):
        train_tiny(embedded_dataset, model_dir, epochs=2, resume=True)


def test_resume_saves_the_model_a_kill_left_unsaved(embedded_dataset, tmp_path):
    model_dir = tmp_path / "model"
    train_tiny(embedded_dataset, model_dir)
    (model_dir / "model.keras").unlink()  # killed after the last checkpoint, before the final save
    _, card = train_tiny(embedded_dataset, model_dir, resume=True)
    assert card["epochs"] == 1 and (model_dir / "model.keras").is_file()


def test_cosine_schedule_lowers_the_rate_each_epoch_and_constant_keeps_it(embedded_dataset, tmp_path):
    rates: dict[str, list[float]] = {}
    for schedule in ("cosine", "constant"):
        config = TrainConfig(**{**TINY.__dict__, "epochs": 3, "schedule": schedule})
        trainer = Trainer(embedded_dataset, tmp_path / schedule, config)
        trainer.start(resume=False)
        seen = rates.setdefault(schedule, [])
        card = trainer.run(on_epoch=lambda _, t=trainer, s=seen: s.append(float(t.model.optimizer.learning_rate)))
        assert card["config"]["schedule"] == schedule
    assert rates["constant"] == pytest.approx([2e-3] * 3)
    assert rates["cosine"] == pytest.approx([2e-3, 2e-3 * 0.51, 2e-3 * 0.02])
    with pytest.raises(ConfigError, match="--schedule must be cosine or constant, got 'step'"):
        Trainer(embedded_dataset, tmp_path / "x", TrainConfig(**{**TINY.__dict__, "schedule": "step"}))


def test_checkpoint_from_before_schedules_resumes_at_a_constant_rate_with_mse_and_relu(embedded_dataset, tmp_path):
    model_dir = tmp_path / "model"
    old = TrainConfig(**{**TINY.__dict__, "epochs": 1, "loss": "mse", "activation": "relu"})
    first = Trainer(embedded_dataset, model_dir, old)
    first.start(resume=False)
    first.run()
    state_file = model_dir / "checkpoint" / "state.json"
    state = json.loads(state_file.read_text())
    del state["config"]["schedule"], state["config"]["loss"], state["config"]["activation"]
    state_file.write_text(json.dumps(state))
    second = Trainer(embedded_dataset, model_dir, TINY)
    second.start(resume=True)
    assert (second.state.config.schedule, second.state.config.loss) == ("constant", "mse")
    assert isinstance(second.model.loss, keras.losses.MeanSquaredError)
    assert second.model.get_layer("decoder_3").activation.__name__ == "relu"
    card = second.run()
    assert (card["config"]["schedule"], card["config"]["loss"], card["config"]["activation"]) == \
        ("constant", "mse", "relu")


def test_regression_loss_is_huber_by_default_and_mse_on_request(embedded_dataset, tmp_path):
    from colorization.network.training import HUBER_DELTA

    huber = Trainer(embedded_dataset, tmp_path / "huber", TINY)
    huber.start(resume=False)
    assert isinstance(huber.model.loss, keras.losses.Huber) and huber.config.loss == "huber"
    target, near, far = np.zeros((1, 4, 4, 2)), np.full((1, 4, 4, 2), HUBER_DELTA / 2), np.full((1, 4, 4, 2), 0.5)
    assert float(huber.model.loss(target, near)) == pytest.approx(0.5 * (HUBER_DELTA / 2) ** 2, rel=1e-5)
    assert float(huber.model.loss(target, far)) == pytest.approx(HUBER_DELTA * (0.5 - HUBER_DELTA / 2), rel=1e-5), \
        "large errors weigh linearly"
    assert huber.run()["config"]["loss"] == "huber"
    mse = Trainer(embedded_dataset, tmp_path / "mse", TrainConfig(**{**TINY.__dict__, "loss": "mse"}))
    mse.start(resume=False)
    assert isinstance(mse.model.loss, keras.losses.MeanSquaredError)
    with pytest.raises(ConfigError, match="--loss must be huber or mse, got 'l1'"):
        Trainer(embedded_dataset, tmp_path / "x", TrainConfig(**{**TINY.__dict__, "loss": "l1"}))


def test_dropout_drops_whole_embedding_channels_in_training_only():
    model = build_model(32, 16, 0.25, dropout=0.5)
    inputs = {"L": np.full((2, 32, 32, 1), 128, np.float32), "embedding": np.ones((2, 16), np.float32)}
    probe = keras.Model(model.inputs, model.get_layer("embedding_dropout").output)
    trained = np.asarray(probe(inputs, training=True))
    dropped = np.all(trained == 0, axis=(1, 2))
    assert 0 < dropped.mean() < 1, "a share of channels, each dropped over the whole grid"
    assert np.all((trained == 0) | np.isclose(trained, 2.0)), "kept channels are scaled by 1 / (1 - rate)"
    assert np.array_equal(np.asarray(probe(inputs, training=False)), np.ones((2, 4, 4, 16), np.float32))
    assert "embedding_dropout" not in [layer.name for layer in build_model(32, 16, 0.25).layers]
    with pytest.raises(ConfigError, match="--dropout must be at least 0 and below 1, got 1.0"):
        TrainConfig(dropout=1.0).check()


def scripted_validation_losses(monkeypatch, losses: list[float]) -> None:
    """Make each epoch's validation loss the next of ``losses``; the other figures stay measured."""
    import colorization.network.training as training

    scripted, real = iter(losses), training.validation_metrics

    def validation_metrics(*args, **kwargs):
        _, psnr, colour, colour_true = real(*args, **kwargs)
        return next(scripted), psnr, colour, colour_true

    monkeypatch.setattr(training, "validation_metrics", validation_metrics)


@pytest.mark.parametrize("losses, stalled", [
    ([0.0243, 0.0243, 0.0244, 0.0245], True),  # the ReLU run of QUALITY.md: one colour for every pixel
    ([0.0225, 0.0232, 0.0232, 0.0235, 0.0227], True),  # overfitting from the first epoch
    ([0.0245, 0.0235, 0.0229, 0.0210], False),  # a run that learns
    ([0.0243, 0.0244, 0.0244, 0.0245, 0.0245, 0.0230], False),  # a late start still counts
    ([0.0243, 0.0244, 0.0244], False),  # too early to tell
])
def test_a_run_whose_validation_loss_never_falls_is_stalled(losses, stalled):
    history = [EpochResult(i + 1, 0.0025, loss, 20.5, 3.0, 54.0, 10.0) for i, loss in enumerate(losses)]
    assert is_stalled(history) is stalled


def test_train_warns_on_the_dashboard_when_a_run_stalls(prefect_harness, embedded_dataset, tmp_path, monkeypatch,
                                                        caplog):
    import colorization.network.training as training

    monkeypatch.setattr(training, "FEW_TO_CHOOSE_BY", 1)  # the test dataset holds out a handful of photos
    scripted_validation_losses(monkeypatch, [0.03, 0.0299, 0.0301, 0.0300])
    card = train(dataset=embedded_dataset.root, model_dir=tmp_path / "m", epochs=4, batch_size=4, width=0.125,
                 validation_percent=20.0, keep="last")
    assert card["stalled"] is True
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "has stalled" in r.getMessage()]
    assert len(warnings) == 2, "once when epoch 4 shows it, once at the end"
    assert "validation loss 0.03 after epoch 1, no lower than 0.0299 in the 3 epochs since" in warnings[0]
    assert "--seed" in warnings[0] and str(tmp_path / "m") in warnings[0]
    assert "WARNING" in artifacts("train-model")[-1].data and "has stalled" in artifacts("train-model")[-1].data


def test_a_few_validation_photos_cannot_tell_a_stall(embedded_dataset, tmp_path, monkeypatch, caplog):
    """The demo holds out 4 photos; their loss wanders whatever the model learns, so no stall is called."""
    scripted_validation_losses(monkeypatch, [0.03, 0.0299, 0.0301, 0.0300])
    trainer, card = train_tiny(embedded_dataset, tmp_path / "m", epochs=4, keep="last")
    assert trainer.val_split.size < 20 and card["stalled"] is None and trainer.stall_note() is None


def test_a_leaky_decoder_unit_still_learns_where_a_relu_one_is_dead(embedded_dataset):
    """A ReLU unit whose input is below zero for every photo gets no gradient and never fires again; the default
    leaky_relu passes a fifth of it, so the unit can come back."""
    split = Split(embedded_dataset, FAKE_EXTRACTOR, validation=False, percent=1.0)
    inputs, target = next(split.batches(4))
    changed = {}
    for activation in ("relu", "leaky_relu"):
        keras.utils.set_random_seed(0)
        model = build_model(32, 16, 0.25, activation=activation)
        compile_model(model, 1e-2)
        last = model.get_layer("decoder_3")
        kernel, bias = last.get_weights()
        last.set_weights([kernel, np.full_like(bias, -100.0)])  # below zero for any input: dead under ReLU
        model.train_on_batch(inputs, target)
        changed[activation] = not np.array_equal(kernel, last.get_weights()[0])
    assert changed == {"relu": False, "leaky_relu": True}


def test_training_builds_leaky_fusion_and_decoder_layers_unless_asked_for_relu(embedded_dataset, tmp_path):
    for activation, expected in (("leaky_relu", "leaky_relu"), ("relu", "relu")):
        config = TrainConfig(**{**TINY.__dict__, "activation": activation})
        trainer = Trainer(embedded_dataset, tmp_path / activation, config)
        trainer.start(resume=False)
        activations = {layer.name: layer.activation.__name__ for layer in trainer.model.layers
                       if layer.name.startswith(("encoder", "fusion", "decoder"))}
        assert activations["fusion"] == activations["decoder_3"] == expected
        assert activations["encoder_7"] == "relu"
    with pytest.raises(ConfigError, match="--activation must be leaky_relu or relu, got 'elu'"):
        Trainer(embedded_dataset, tmp_path / "x", TrainConfig(**{**TINY.__dict__, "activation": "elu"}))


def test_keep_best_saves_the_epoch_with_the_lowest_validation_loss(embedded_dataset, tmp_path, monkeypatch, caplog):
    scripted_validation_losses(monkeypatch, [0.5, 0.2, 0.4])  # epoch 2 is the best
    trainer = Trainer(embedded_dataset, tmp_path / "m", TrainConfig(**{**TINY.__dict__, "epochs": 3, "keep": "best"}))
    trainer.start(resume=False)
    assert "validation photos are too few to choose the best epoch by" in caplog.text
    weights = {}
    card = trainer.run(on_epoch=lambda r: weights.__setitem__(r.epoch, trainer.model.get_weights()))
    assert card["epochs"] == 3 and card["kept_epoch"] == 2 and card["metrics"]["epoch"] == 2
    saved = load_trained(ModelCard.read(tmp_path / "m"))
    for kept, loaded in zip(weights[2], saved.get_weights()):
        assert np.array_equal(kept, loaded)
    assert not all(np.array_equal(a, b) for a, b in zip(weights[3], saved.get_weights()))
