"""Checks of a stage's parameters and paths before it starts, one function per stage.

The command line calls them before it starts any flow or Prefect server, so a bad argument costs a second and
one error line instead of a server start-up and a traceback; each flow calls the same function first, so runs
of a deployment get the same checks. They raise :class:`ConfigError` naming the option or path and the
problem, and never load a framework (no Keras, no Prefect).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

from colorization.colorize.catalog import check_paths
from colorization.dataset.embeddings import pick_extractor
from colorization.dataset.shards import Dataset
from colorization.errors import ConfigError
from colorization.network.card import (
    CHECKPOINT_DIR,
    DOWNSAMPLING,
    MODEL_FILE,
    ModelCard,
    check_keras_file,
    has_checkpoint,
)
from colorization.photos.archive import list_entries
from colorization.photos.discover import IMAGE_SUFFIXES, iter_images
from colorization.photos.images import Framing

MIN_SIZE = 32
WEIGHT_KEYWORDS = ("imagenet", "none")
# what Xception can give the model
Head = Literal["predictions", "avg_pool", "spatial", "middle", "hypercolumn", "maps"]
HEADS: tuple[str, ...] = get_args(Head)
DEFAULT_HEAD: Head = "maps"  # the hypercolumn, the best colours measured on unseen photos (QUALITY.md), stored small
Objective = Literal["regression", "classification"]  # what the model can learn
Schedule = Literal["cosine", "constant"]  # how the learning rate moves over a run's epochs
Keep = Literal["best", "last"]  # which epoch's weights a run saves as its model
Loss = Literal["huber", "mse"]  # what a regression model minimises
Activation = Literal["leaky_relu", "relu"]  # of the fusion and decoder layers
OBJECTIVES: tuple[str, ...] = get_args(Objective)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
KEEPS: tuple[str, ...] = get_args(Keep)
LOSSES: tuple[str, ...] = get_args(Loss)
ACTIVATIONS: tuple[str, ...] = get_args(Activation)


def at_least(option: str, value: float | None, minimum: float = 1) -> None:
    """Refuse an option below ``minimum``; ``None`` (the option's default) passes."""
    if value is not None and value < minimum:
        raise ConfigError(f"{option} must be at least {minimum}, got {value}")


def positive(option: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{option} must be positive, got {value}")


def check_size(size: int) -> None:
    """A photo size the model can be built at: at least ``MIN_SIZE`` and a multiple of its downsampling."""
    at_least("--size", size, MIN_SIZE)
    if size % DOWNSAMPLING:
        raise ConfigError(f"--size must be a multiple of {DOWNSAMPLING} (the model halves it 3 times), got {size}")


def check_hyperparameters(
    epochs: int, batch_size: int, learning_rate: float, width: float, validation_percent: float = 10.0
) -> None:
    at_least("--epochs", epochs)
    at_least("--batch-size", batch_size)
    positive("--learning-rate", learning_rate)
    positive("--width", width)
    check_validation_percent(validation_percent)


def one_of(option: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuse a value outside an option's ``choices``, naming them."""
    if value not in choices:
        raise ConfigError(f"{option} must be {' or '.join(choices)}, got {value!r}")


def check_objective(objective: str) -> None:
    one_of("--objective", objective, OBJECTIVES)


def check_dropout(dropout: float) -> None:
    if not 0 <= dropout < 1:
        raise ConfigError(f"--dropout must be at least 0 and below 1, got {dropout}")


def check_keep(keep: str) -> None:
    one_of("--keep", keep, KEEPS)


def check_loss(loss: str) -> None:
    one_of("--loss", loss, LOSSES)


def check_activation(activation: str) -> None:
    one_of("--activation", activation, ACTIVATIONS)


def check_schedule(schedule: str) -> None:
    one_of("--schedule", schedule, SCHEDULES)


def check_validation_percent(percent: float) -> None:
    if not 0 < percent < 100:
        raise ConfigError(f"--validation-percent must be between 0 and 100, got {percent}")


def check_weights(weights: str | None) -> None:
    """``imagenet``, ``none``, unset (the model card's), or an existing file."""
    if weights is not None and weights not in WEIGHT_KEYWORDS and not Path(weights).is_file():
        raise ConfigError(f"{weights}: no such weights file (use --weights imagenet, none, or a file path)")


def writable_folder(path: Path, option: str) -> None:
    """Refuse a folder a run could not create or write: a regular file, or on a read-only or foreign place."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path}: {option} is a file, not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{path}: {option} cannot be created, {existing} is a file")
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise ConfigError(f"{path}: {option} is on a read-only file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{path}: {option} is not writable ({existing} does not allow it)")


def existing_dataset(dataset: Path) -> Dataset:
    """A dataset written by preprocess (a folder with ``dataset.json``)."""
    if dataset.exists() and not dataset.is_dir():
        raise ConfigError(f"{dataset}: --dataset is a file, not a dataset folder")
    data = Dataset(dataset)
    data.size()
    return data


def has_photos(source: Path) -> bool:
    """Whether a folder tree, .zip or .tar holds at least one photo (stops at the first in a folder)."""
    if source.is_dir():
        return next(iter_images(source), None) is not None
    return bool(list_entries(source))


def _no_photos(source: Path) -> ConfigError:
    suffixes = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
    return ConfigError(f"{source}: no photos here (looked for {suffixes}, hidden folders skipped)")


def check_model_dir(model_dir: Path, resume: bool) -> None:
    """A folder to train into: writable, and holding no training run unless ``resume`` continues it."""
    writable_folder(model_dir, "--model-dir")
    if not has_checkpoint(model_dir):
        return
    if not resume:
        raise ConfigError(
            f"{model_dir}: already holds a training run; pass --resume to continue it, or choose another --model-dir"
        )
    check_keras_file(model_dir / CHECKPOINT_DIR / MODEL_FILE)


def check_preprocess(
    source: Path, dataset: Path, size: int, rows_per_shard: int | None = None, workers: int | None = None,
    framing: Framing | None = None, grey_threshold: float = 0.0,
) -> None:
    if not source.is_dir():
        raise ConfigError(f"{source}: no such folder")
    check_size(size)
    at_least("--rows-per-shard", rows_per_shard)
    at_least("--grey-threshold", grey_threshold, 0)
    at_least("--workers", workers)
    writable_folder(dataset, "--dataset")
    Dataset(dataset).check(size, framing)
    if not has_photos(source):
        raise _no_photos(source)


def check_embed(dataset: Path, weights: str, batch_size: int) -> None:
    at_least("--batch-size", batch_size)
    check_weights(weights)
    existing_dataset(dataset)
    writable_folder(dataset, "--dataset")


def check_train(
    dataset: Path, model_dir: Path, epochs: int, batch_size: int, learning_rate: float, width: float, resume: bool,
    extractor: str | None, validation_percent: float = 10.0, dropout: float = 0.0,
) -> None:
    check_hyperparameters(epochs, batch_size, learning_rate, width, validation_percent)
    check_dropout(dropout)
    pick_extractor(existing_dataset(dataset), extractor)
    check_model_dir(model_dir, resume)


def check_pipeline(
    source: Path, dataset: Path, model_dir: Path, size: int, weights: str, epochs: int, batch_size: int,
    width: float, workers: int | None, resume: bool, validation_percent: float = 10.0, dropout: float = 0.0,
) -> None:
    """The checks of every stage that can be made before the first one has run."""
    check_dropout(dropout)
    at_least("--epochs", epochs)
    at_least("--batch-size", batch_size)
    positive("--width", width)
    check_validation_percent(validation_percent)
    check_weights(weights)
    check_model_dir(model_dir, resume)
    check_preprocess(source, dataset, size, workers=workers)


def check_decoding(temperature: float | None, saturation: float = 1.0) -> None:
    """How a model's output becomes colour: ``temperature`` unset (the model card's) or positive, ``saturation``
    positive."""
    if temperature is not None:
        positive("--temperature", temperature)
    positive("--saturation", saturation)


def check_colorize(
    source: Path, output: Path, model_dir: Path, weights: str | None, batch_size: int, workers: int | None,
    max_pixels: int, temperature: float | None = None, allow_empty: bool = False, saturation: float = 1.0,
) -> ModelCard:
    """The model's card, read while checking. ``allow_empty`` accepts a folder with no photo in it (a
    scheduled inbox on a quiet day)."""
    check_decoding(temperature, saturation)
    at_least("--batch-size", batch_size)
    at_least("--workers", workers)
    at_least("--max-pixels", max_pixels)
    check_paths(source, output)
    writable_folder(output, "OUTPUT")
    card = ModelCard.read(model_dir)
    check_weights(weights)
    if not (allow_empty and source.is_dir()) and not has_photos(source):
        raise _no_photos(source)
    return card


def saturations(saturation: float | Sequence[float]) -> list[float]:
    """Evaluate's saturations, one or several, each once, in the order given."""
    values = [saturation] if isinstance(saturation, (int, float)) else list(saturation)
    if not values:
        raise ConfigError("--saturation needs at least one value")
    return list(dict.fromkeys(float(value) for value in values))


def check_evaluate(photos: Path, models: list[Path], report_dir: Path | None, long_side: int, batch_size: int,
                   temperature: float | None = None, saturation: float | Sequence[float] = 1.0,
                   max_pixels: int | None = None) -> list[ModelCard]:
    """The models' cards, read while checking; ``saturation`` may be several, each model scored at each."""
    for value in saturations(saturation):
        check_decoding(temperature, value)
    at_least("--long-side", long_side, MIN_SIZE)
    at_least("--batch-size", batch_size)
    at_least("--max-pixels", max_pixels)
    if not photos.exists():
        raise ConfigError(f"{photos}: no such folder or archive")
    cards = [ModelCard.read(model_dir) for model_dir in models]
    writable_folder(report_dir or models[0] / "evaluation", "--report")
    if not has_photos(photos):
        raise _no_photos(photos)
    return cards
