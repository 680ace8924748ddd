"""Training the fusion model: epochs, validation metrics that mean something for colour, checkpoints.

A checkpoint (``MODEL_DIR/checkpoint/``) holds the full model with its optimizer state and the run's history,
written atomically after every epoch, so a killed run continues from the last finished epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np

from colorization import device, lab, metrics, render
from colorization import model as net
from colorization.atomic import atomic_path, remove_stale_temps
from colorization.batches import Split, prefetch
from colorization.card import CARD_FILE, read_card
from colorization.embeddings import embedding_shape, read_extractor_info
from colorization.errors import ConfigError
from colorization.shards import Dataset

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class TrainConfig:
    """What a training run is asked to do; stored in the checkpoint so a resume keeps the same settings."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    width: float = 1.0
    validation_percent: float = 10.0
    seed: int = 0
    mixed_precision: bool | None = None

    def check(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate must be positive, got {self.learning_rate}")
        if not self.width > 0:
            raise ConfigError(f"--width must be positive, got {self.width}")
        if not 0 < self.validation_percent < 100:
            raise ConfigError(f"validation percent must be between 0 and 100, got {self.validation_percent}")


@dataclass
class EpochResult:
    """Figures of one epoch; ``psnr`` and colourfulness are measured on the validation split."""

    epoch: int
    loss: float
    val_loss: float
    psnr: float
    colorfulness: float
    colorfulness_true: float
    images_per_second: float

    def row(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class State:
    """The run so far: its config, extractor, one photo's embedding shape and one result per finished epoch."""

    config: TrainConfig
    extractor_id: str
    size: int
    embedding_shape: tuple[int, ...]
    history: list[EpochResult] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return len(self.history)


def compile_model(model: keras.Model, learning_rate: float) -> None:
    """Adam on the mean squared error of ab / 128, the paper's loss."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")


def distribution_scope() -> contextlib.AbstractContextManager:
    """``MirroredStrategy`` across all GPUs under TensorFlow when there are several; otherwise nothing."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if len(tf.config.list_physical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()


def pick_extractor(dataset: Dataset, extractor_id: str | None) -> str:
    """The embedding set to train on: the one given, or the only one the dataset has."""
    folder = dataset.root / "embeddings"
    available = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if extractor_id is not None:
        if extractor_id not in available:
            have = ", ".join(available) or "none"
            raise ConfigError(f"{dataset.root}: no embeddings from {extractor_id} (have: {have})")
        return extractor_id
    if len(available) != 1:
        raise ConfigError(
            f"{dataset.root}: {'no embeddings; run embed first' if not available else 'several embedding sets'}"
            + (f" ({', '.join(available)}); choose one with --extractor" if len(available) > 1 else "")
        )
    return available[0]


def predictions(model: keras.Model, batches: Iterator) -> Iterator[tuple[dict, np.ndarray, np.ndarray]]:
    """(inputs, target, predicted) of each batch, predictions as float32 ab / 128."""
    for inputs, target in batches:
        yield inputs, target, np.asarray(model.predict_on_batch(inputs), np.float32)


def to_srgb(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """8-bit sRGB of one model-size row: L as the model input (0..255) and ab / 128, through colorize's own
    conversion (``render.colorize_pixels``), so training scores what users get."""
    return render.colorize_pixels(lightness / np.float32(lab.L_SCALE), ab * np.float32(lab.AB_SCALE))


def validation_metrics(
    model: keras.Model, batches: Iterator, max_images: int = 256
) -> tuple[float, float, float, float]:
    """Validation loss, PSNR (dB) of the reconstructed sRGB against the original, and mean colourfulness of
    predictions and originals. Loss covers the whole split; the image metrics its first ``max_images``."""
    squared, count, psnrs, colour_pred, colour_true = 0.0, 0, [], [], []
    for inputs, target, predicted in predictions(model, batches):
        squared += float(np.sum((predicted - target) ** 2))
        count += target.size
        for i in range(min(len(target), max_images - len(psnrs))):
            rgb_pred = to_srgb(inputs["L"][i, ..., 0], predicted[i])
            rgb_true = to_srgb(inputs["L"][i, ..., 0], target[i])
            psnrs.append(metrics.psnr(rgb_pred, rgb_true))
            colour_pred.append(metrics.colorfulness(rgb_pred))
            colour_true.append(metrics.colorfulness(rgb_true))
    if not count:
        return float("nan"), float("nan"), float("nan"), float("nan")
    return squared / count, float(np.mean(psnrs)), float(np.mean(colour_pred)), float(np.mean(colour_true))


def score_validation(model: keras.Model, batches: Iterator, max_images: int = 1000) -> dict:
    """Every figure of :mod:`colorization.metrics` on the first ``max_images`` validation rows at model size,
    for the model and for the grey baseline: the card's ``evaluation``."""
    scores: dict[str, list[metrics.Score]] = {"model": [], "grey": []}
    for inputs, target, predicted in predictions(model, batches):
        for i in range(min(len(target), max_images - len(scores["model"]))):
            original = to_srgb(inputs["L"][i, ..., 0], target[i])
            scores["model"].append(metrics.score(to_srgb(inputs["L"][i, ..., 0], predicted[i]), original))
            scores["grey"].append(metrics.score(metrics.grey_baseline(original), original))
        if len(scores["model"]) >= max_images:
            break
    return {"photos": len(scores["model"]), **{k: metrics.summarize_scores(v) for k, v in scores.items()}}


def git_commit() -> str | None:
    """The project's current commit, when it is run from a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class Trainer:
    """Train (or continue training) a model in ``model_dir`` on one dataset's shards and embeddings."""

    def __init__(self, dataset: Dataset, model_dir: Path, config: TrainConfig, extractor_id: str | None = None):
        config.check()
        self.dataset = dataset
        self.model_dir = model_dir
        self.config = config
        self.extractor_id = pick_extractor(dataset, extractor_id)
        self.train_split = Split(dataset, self.extractor_id, validation=False, percent=config.validation_percent)
        self.val_split = Split(dataset, self.extractor_id, validation=True, percent=config.validation_percent)
        if self.train_split.size == 0:
            raise ConfigError(f"{dataset.root}: no training rows (is the dataset empty?)")
        self.model: keras.Model | None = None
        self.state: State | None = None
        self.evaluation: dict = {}

    @property
    def checkpoint_dir(self) -> Path:
        return self.model_dir / CHECKPOINT_DIR

    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / STATE_FILE).is_file()

    def is_saved(self) -> bool:
        """Whether the final model and its card are in ``model_dir`` (a kill can fall between checkpoint and them)."""
        return (self.model_dir / net.MODEL_FILE).is_file() and (self.model_dir / CARD_FILE).is_file()

    def start(self, resume: bool) -> None:
        """Build a new model, or load the checkpoint with its optimizer state when ``resume``.

        Temporary files that a killed run left in the model folder or its checkpoint are removed first.
        """
        for folder in (self.model_dir, self.checkpoint_dir):
            if removed := remove_stale_temps(folder):
                log.info("%s: removed %d temporary files left by an interrupted run", folder, removed)
        if resume and self.has_checkpoint():
            self._load_checkpoint()
            return
        if self.has_checkpoint():
            raise ConfigError(
                f"{self.model_dir}: already holds a training run; pass --resume to continue it, "
                "or choose another --model-dir"
            )
        size = self.dataset.size()
        shape = embedding_shape(self.train_split.parts[0].embeddings)
        keras.utils.set_random_seed(self.config.seed)
        with distribution_scope(), device.dtype_policy(device.compute_policy(self.config.mixed_precision)):
            self.model = net.build_model(size, shape, self.config.width)
            compile_model(self.model, self.config.learning_rate)
        self.state = State(self.config, self.extractor_id, size, shape)

    def _load_checkpoint(self) -> None:
        saved = json.loads((self.checkpoint_dir / STATE_FILE).read_text())
        if saved["extractor_id"] != self.extractor_id:
            raise ConfigError(
                f"{self.checkpoint_dir}: trained on embeddings of {saved['extractor_id']}, not {self.extractor_id}"
            )
        config = TrainConfig(**{**saved["config"], "epochs": self.config.epochs})
        history = [EpochResult(**row) for row in saved["history"]]
        # Checkpoints written before feature maps recorded only a vector's length.
        shape = tuple(saved["embedding_shape"]) if "embedding_shape" in saved else (saved["embedding_dim"],)
        self.state = State(config, saved["extractor_id"], saved["size"], shape, history)
        with distribution_scope(), device.dtype_policy(device.compute_policy(config.mixed_precision)):
            self.model = keras.models.load_model(self.checkpoint_dir / net.MODEL_FILE)
        log.info("resuming %s after epoch %d", self.model_dir, self.state.epochs_done)

    def run(self, on_epoch: Callable[[EpochResult], None] | None = None) -> dict:
        """Train up to ``config.epochs`` epochs in total, checkpointing each; returns the model card.

        A resumed run with no epoch left keeps the saved model and card as they are, so that a re-run changes
        nothing downstream (colorize would otherwise see a new file and colour its archive again).
        """
        assert self.model is not None and self.state is not None, "call start() first"
        config = self.state.config
        if self.state.epochs_done >= self.config.epochs and self.is_saved():
            log.info("%s: already trained for %d epochs; nothing to do", self.model_dir, self.state.epochs_done)
            return read_card(self.model_dir)
        for epoch in range(self.state.epochs_done + 1, self.config.epochs + 1):
            rng = np.random.default_rng([config.seed, epoch])
            batches = prefetch(self.train_split.batches(config.batch_size, rng, flip=True))
            started = time.perf_counter()
            history = self.model.fit(batches, epochs=1, steps_per_epoch=self.train_split.steps(config.batch_size),
                                     shuffle=False, verbose=0)
            seconds = time.perf_counter() - started
            val_loss, psnr, colour_pred, colour_true = validation_metrics(
                self.model, prefetch(self.val_split.batches(config.batch_size))
            )
            result = EpochResult(epoch, float(history.history["loss"][-1]), val_loss, psnr, colour_pred, colour_true,
                                 self.train_split.size / seconds)
            self.state.history.append(result)
            self._save_checkpoint()
            if on_epoch is not None:
                on_epoch(result)
        self.evaluation = score_validation(self.model, prefetch(self.val_split.batches(config.batch_size)))
        log.info("validation split scored on %d photos", self.evaluation["photos"])
        card = self.card()
        net.save(self.model, self.model_dir, card)
        return card

    def _save_checkpoint(self) -> None:
        with atomic_path(self.checkpoint_dir / net.MODEL_FILE) as temp:
            self.model.save(temp)
        state = {**asdict(self.state), "history": [asdict(h) for h in self.state.history]}
        with atomic_path(self.checkpoint_dir / STATE_FILE) as temp:
            temp.write_text(json.dumps(state, indent=2) + "\n")

    def card(self) -> dict:
        """The model card written beside ``model.keras``."""
        last = self.state.history[-1] if self.state.history else None
        return {
            "model": "koalarization",
            "extractor_id": self.extractor_id,
            "extractor_weights": read_extractor_info(self.dataset.embeddings_dir(self.extractor_id)).get("weights"),
            "random_extractor": "RANDOM" in self.extractor_id,
            "size": self.state.size,
            "width": self.state.config.width,
            "embedding_dim": self.state.embedding_shape[-1],
            "embedding_shape": list(self.state.embedding_shape),
            "fusion": net.fusion_kind(self.state.embedding_shape),
            "dataset": str(self.dataset.root),
            "train_images": self.train_split.size,
            "validation_images": self.val_split.size,
            "epochs": self.state.epochs_done,
            "metrics": last.row() if last else {},
            "evaluation": self.evaluation,
            "history": [h.row() for h in self.state.history],
            "config": asdict(self.state.config),
            "backend": device.describe(),
            "git_commit": git_commit(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
