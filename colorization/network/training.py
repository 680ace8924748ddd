"""Training the fusion model: epochs, validation metrics that mean something for colour, checkpoints.

A checkpoint (``MODEL_DIR/checkpoint/``) holds the full model with its optimizer state and the run's history,
written atomically after every epoch, so a killed run continues from the last finished epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np

from colorization.atomic import atomic_path, remove_stale_temps
from colorization.colorize import render
from colorization.dataset import prior
from colorization.dataset.batches import Split, prefetch
from colorization.dataset.embeddings import pick_extractor, read_extractor_info
from colorization.dataset.layout import Shape, as_list, as_shape, channels
from colorization.dataset.shards import Dataset
from colorization.errors import ConfigError
from colorization.evaluation import metrics
from colorization.network import classification, colour_classes, device
from colorization.network.card import (
    CARD_FILE,
    CHECKPOINT_DIR,
    MODEL_FILE,
    STATE_FILE,
    checkpoint_extractor,
    has_checkpoint,
    is_random_id,
    read_card,
    read_state,
)
from colorization.network.model import build_model, fusion_kind, save_trained
from colorization.photos import lab
from colorization.preflight import (
    check_activation,
    check_dropout,
    check_hyperparameters,
    check_keep,
    check_loss,
    check_model_dir,
    check_objective,
    check_schedule,
)

log = logging.getLogger(__name__)

HUBER_DELTA = 0.03  # in a,b / 128: where the Huber loss turns from squared to absolute (3.84 a,b units)
COSINE_FLOOR = 0.02  # the cosine schedule's last learning rate, as a share of the first
BEST_WEIGHTS = "best.weights.h5"  # in the checkpoint: the weights of the epoch with the lowest validation loss
FEW_TO_CHOOSE_BY = 20  # validation photos below which the best epoch, or a stall, is mostly chance
STALL_EPOCHS = 4  # a run is judged for a stall once it has this many epochs
STALL_MARGIN = 0.02  # how far below the first epoch's a learning run's validation loss has fallen by then
# What a checkpoint written before an option existed did: its run goes on the same way when resumed.
BEFORE_OPTIONS = {"schedule": "constant", "dropout": 0.0, "keep": "last", "loss": "mse", "activation": "relu"}


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
    objective: str = "regression"
    schedule: str = "cosine"
    dropout: float = 0.5
    keep: str = "best"
    loss: str = "huber"
    activation: str = "leaky_relu"

    def check(self) -> None:
        check_hyperparameters(self.epochs, self.batch_size, self.learning_rate, self.width, self.validation_percent)
        check_objective(self.objective)
        check_schedule(self.schedule)
        check_dropout(self.dropout)
        check_keep(self.keep)
        check_loss(self.loss)
        check_activation(self.activation)

    def learning_rate_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1-based): constant, or a half cosine from ``learning_rate`` down to
        ``COSINE_FLOOR`` of it at the last epoch, so the final weights settle instead of the last steps' noise
        (Loshchilov & Hutter 2017, SGDR, without restarts)."""
        if self.schedule == "constant" or self.epochs == 1:
            return self.learning_rate
        progress = min(epoch - 1, self.epochs - 1) / (self.epochs - 1)
        return self.learning_rate * (COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


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
    embedding_shape: Shape
    history: list[EpochResult] = field(default_factory=list)

    @property
    def epochs_done(self) -> int:
        return len(self.history)


def is_stalled(history: list[EpochResult]) -> bool:
    """Whether a run of at least ``STALL_EPOCHS`` epochs never brought its validation loss ``STALL_MARGIN`` below
    the first epoch's: it learns nothing that carries to photos it has not seen. Typically every pixel gets the
    same faint colour (QUALITY.md, "A stall at the mean colour"); an overfitting run looks the same."""
    losses = [h.val_loss for h in history]
    if len(losses) < STALL_EPOCHS or not np.isfinite(losses[0]):
        return False
    return not any(loss < (1 - STALL_MARGIN) * losses[0] for loss in losses[1:])


def regression_loss(name: str) -> keras.losses.Loss:
    """The regression loss on a,b / 128: ``mse``, the paper's; or ``huber``, squared below HUBER_DELTA (about 4
    a,b units) and absolute above, so that pixels whose colour cannot be told from the grey photo (a shirt of
    any colour) weigh linearly, not quadratically, in the fit. Huber colours unseen photos more faithfully
    (QUALITY.md, "Loss")."""
    return keras.losses.Huber(delta=HUBER_DELTA) if name == "huber" else keras.losses.MeanSquaredError()


def compile_model(model: keras.Model, learning_rate: float, loss: str | keras.losses.Loss = "mse") -> None:
    """Adam on ``loss``: by default the mean squared error of ab / 128, the paper's loss."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)


def distribution_scope() -> contextlib.AbstractContextManager:
    """``MirroredStrategy`` across all GPUs under TensorFlow when there are several; otherwise nothing."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if len(tf.config.list_physical_devices("GPU")) > 1:
            return tf.distribute.MirroredStrategy().scope()
    return contextlib.nullcontext()


Decode = Callable[[np.ndarray], np.ndarray]


def predict(model: keras.Model, inputs: dict, decode: Decode | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The network's raw output for one batch, and ``decode`` of it as float32 ab / 128 (the output itself
    for regression)."""
    output = np.asarray(model.predict_on_batch(inputs), np.float32)
    return output, output if decode is None else decode(output)


def predictions(
    model: keras.Model, batches: Iterator, decode: Decode | None = None
) -> Iterator[tuple[dict, np.ndarray, np.ndarray, np.ndarray]]:
    """(inputs, target, output, predicted ab / 128) of each batch (see :func:`predict`)."""
    for inputs, target in batches:
        yield inputs, target, *predict(model, inputs, decode)


def to_srgb(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """8-bit sRGB of one model-size row: L as the model input (0..255) and ab / 128, through colorize's own
    conversion (``render.colorize_pixels``), so training scores what users get."""
    return render.colorize_pixels(lightness / np.float32(lab.L_SCALE), lab.from_model_output(ab))


def validation_metrics(
    model: keras.Model,
    batches: Iterator,
    max_images: int = 256,
    loss: keras.losses.Loss | None = None,
    decode: Decode | None = None,
) -> tuple[float, float, float, float]:
    """Validation loss, PSNR (dB) of the reconstructed sRGB against the original, and mean colourfulness of
    predictions and originals. Loss (``loss``, by default the mean squared error of ab / 128) covers the whole
    split; the image metrics, on ``decode``d predictions, its first ``max_images``."""
    loss = loss or keras.losses.MeanSquaredError()
    total, count, psnrs, colour_pred, colour_true = 0.0, 0, [], [], []
    for inputs, target, output, predicted in predictions(model, batches, decode):
        total += float(keras.ops.convert_to_numpy(loss(target, output))) * len(target)
        count += len(target)
        for i in range(min(len(target), max_images - len(psnrs))):
            rgb_pred = to_srgb(inputs["L"][i, ..., 0], predicted[i])
            rgb_true = to_srgb(inputs["L"][i, ..., 0], target[i])
            psnrs.append(metrics.psnr(rgb_pred, rgb_true))
            colour_pred.append(metrics.colorfulness(rgb_pred))
            colour_true.append(metrics.colorfulness(rgb_true))
    if not count:
        return float("nan"), float("nan"), float("nan"), float("nan")
    return total / count, float(np.mean(psnrs)), float(np.mean(colour_pred)), float(np.mean(colour_true))


def score_validation(
    model: keras.Model, batches: Iterator, max_images: int = 1000, decode: Decode | None = None
) -> dict:
    """Every figure of :mod:`colorization.evaluation.metrics` on the first ``max_images`` validation rows at model size,
    for the model (its predictions ``decode``d) and for the grey baseline: the card's ``evaluation``."""
    scores: dict[str, list[metrics.Score]] = {"model": [], "grey": []}
    for inputs, target, _, predicted in predictions(model, batches, decode):
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
        self.extractor_id = pick_extractor(dataset, extractor_id or checkpoint_extractor(model_dir))
        self.train_split = Split(dataset, self.extractor_id, validation=False, percent=config.validation_percent)
        self.val_split = Split(dataset, self.extractor_id, validation=True, percent=config.validation_percent)
        if self.train_split.size == 0:
            raise ConfigError(f"{dataset.root}: no training rows (is the dataset empty?)")
        self.model: keras.Model | None = None
        self.decode: Decode | None = None
        self.state: State | None = None
        self.evaluation: dict = {}

    @property
    def checkpoint_dir(self) -> Path:
        return self.model_dir / CHECKPOINT_DIR

    def is_saved(self) -> bool:
        """Whether the final model and its card are in ``model_dir`` (a kill can fall between checkpoint and them)."""
        return (self.model_dir / MODEL_FILE).is_file() and (self.model_dir / CARD_FILE).is_file()

    def start(self, resume: bool) -> None:
        """Build a new model, or load the checkpoint with its optimizer state when ``resume``.

        Temporary files that a killed run left in the model folder or its checkpoint are removed first.
        """
        for folder in (self.model_dir, self.checkpoint_dir):
            if removed := remove_stale_temps(folder):
                log.info("%s: removed %d temporary files left by an interrupted run", folder, removed)
        check_model_dir(self.model_dir, resume)
        if has_checkpoint(self.model_dir):
            self._load_checkpoint()
        else:
            self._build()
        if self.state.config.keep == "best" and self.val_split.size < FEW_TO_CHOOSE_BY:
            log.warning("%d validation photos are too few to choose the best epoch by; the saved model may be an "
                        "early, faded one (use --keep last, or a larger --validation-percent)", self.val_split.size)

    def _build(self) -> None:
        """A new model and run state from ``config``."""
        size = self.dataset.size()
        shape = self.train_split.shape
        classes, loss = 0, regression_loss(self.config.loss)
        if self.config.objective == "classification":
            weights = prior.dataset_weights(self.dataset, self.config.validation_percent)
            classes, loss = len(weights), classification.RebalancedCrossEntropy(weights.tolist())
        keras.utils.set_random_seed(self.config.seed)
        with distribution_scope(), device.dtype_policy(device.compute_policy(self.config.mixed_precision)):
            self.model = build_model(size, shape, self.config.width, classes, self.config.dropout,
                                     self.config.activation)
            compile_model(self.model, self.config.learning_rate, loss)
        self.state = State(self.config, self.extractor_id, size, shape)
        self.decode = self._decoder()

    def _load_checkpoint(self) -> None:
        saved = read_state(self.model_dir)
        if saved["extractor_id"] != self.extractor_id:
            raise ConfigError(
                f"{self.checkpoint_dir}: trained on embeddings of {saved['extractor_id']}, not {self.extractor_id}"
            )
        config = TrainConfig(**{**BEFORE_OPTIONS, **saved["config"], "epochs": self.config.epochs})
        if config.objective != self.config.objective:
            raise ConfigError(f"{self.checkpoint_dir}: a {config.objective} run; resume it with --objective "
                              f"{config.objective}, or choose another --model-dir")
        history = [EpochResult(**row) for row in saved["history"]]
        # Checkpoints written before feature maps recorded only a vector's length.
        shape = as_shape(saved["embedding_shape"] if "embedding_shape" in saved else saved["embedding_dim"])
        self.state = State(config, saved["extractor_id"], saved["size"], shape, history)
        with distribution_scope(), device.dtype_policy(device.compute_policy(config.mixed_precision)):
            self.model = keras.models.load_model(self.checkpoint_dir / MODEL_FILE)
        self.decode = self._decoder()
        log.info("resuming %s after epoch %d", self.model_dir, self.state.epochs_done)

    def _decoder(self) -> Decode | None:
        """ab / 128 from the network's output: None for regression (the output is ab / 128), the annealed mean
        at the default temperature for classification."""
        if self.state.config.objective != "classification":
            return None
        head = classification.decoder(self.model, colour_classes.DEFAULT_TEMPERATURE)
        return lambda output: np.asarray(keras.ops.convert_to_numpy(head(output)), np.float32)

    def predict(self, inputs: dict) -> np.ndarray:
        """Predicted ab / 128 of one batch, whatever the objective."""
        return predict(self.model, inputs, self.decode)[1]

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
            self.model.optimizer.learning_rate = config.learning_rate_at(epoch)
            started = time.perf_counter()
            history = self.model.fit(batches, epochs=1, steps_per_epoch=self.train_split.steps(config.batch_size),
                                     shuffle=False, verbose=0)
            seconds = time.perf_counter() - started
            val_loss, psnr, colour_pred, colour_true = validation_metrics(
                self.model, prefetch(self.val_split.batches(config.batch_size)), loss=self._validation_loss(),
                decode=self.decode,
            )
            result = EpochResult(epoch, float(history.history["loss"][-1]), val_loss, psnr, colour_pred, colour_true,
                                 self.train_split.size / seconds)
            self.state.history.append(result)
            if config.keep == "best" and result.epoch == self.best_epoch():
                with atomic_path(self.checkpoint_dir / BEST_WEIGHTS) as temp:
                    self.model.save_weights(temp)
            self._save_checkpoint()
            if on_epoch is not None:
                on_epoch(result)
        if config.keep == "best":
            self.model.load_weights(self.checkpoint_dir / BEST_WEIGHTS)
            log.info("%s: keeping the weights of epoch %d, the lowest validation loss", self.model_dir,
                     self.best_epoch())
        self.evaluation = score_validation(self.model, prefetch(self.val_split.batches(config.batch_size)),
                                           decode=self.decode)
        log.info("validation split scored on %d photos", self.evaluation["photos"])
        card = self.card()
        save_trained(self.model, self.model_dir, card)
        return card

    def best_epoch(self) -> int:
        """The finished epoch with the lowest validation loss (the first of equals), or the last epoch when
        none has a finite one."""
        finite = [h for h in self.state.history if np.isfinite(h.val_loss)]
        if not finite:
            return self.state.epochs_done
        return min(finite, key=lambda h: h.val_loss).epoch

    def stalled(self) -> bool | None:
        """Whether the run so far has stalled (:func:`is_stalled`); None when the validation split is too small
        for its loss to tell (a few photos' loss wanders whatever the model learns)."""
        if self.val_split.size < FEW_TO_CHOOSE_BY:
            return None
        return is_stalled(self.state.history)

    def stall_note(self) -> str | None:
        """What to tell the user when the run so far has stalled, else None."""
        if not self.stalled():
            return None
        first, *rest = (h.val_loss for h in self.state.history)
        return (f"{self.model_dir}: training has stalled: validation loss {first:.4g} after epoch 1, no lower than "
                f"{min(rest):.4g} in the {len(rest)} epochs since. The model is learning nothing that carries to "
                "photos it has not seen (often one faint colour for every pixel). Train again with another --seed "
                "or a lower --learning-rate, or give it more photos.")

    def kept_epoch(self) -> int:
        """The epoch whose weights the saved model has."""
        return self.best_epoch() if self.state.config.keep == "best" else self.state.epochs_done

    def _validation_loss(self) -> keras.losses.Loss | None:
        """The training loss for the validation split: the compiled one for classification (its weights are
        the run's), None (the mean squared error) for regression."""
        return self.model.loss if self.state.config.objective == "classification" else None

    def _save_checkpoint(self) -> None:
        with atomic_path(self.checkpoint_dir / MODEL_FILE) as temp:
            self.model.save(temp)
        state = {**asdict(self.state), "history": [asdict(h) for h in self.state.history]}
        with atomic_path(self.checkpoint_dir / STATE_FILE) as temp:
            temp.write_text(json.dumps(state, indent=2) + "\n")

    def objective_card(self) -> dict:
        """The card's ``objective``, ``bins`` (Q) and default decoding ``temperature`` (None for regression)."""
        if self.state.config.objective != "classification":
            return {"objective": "regression", "bins": None, "temperature": None}
        return {"objective": "classification", "bins": int(self.model.output.shape[-1]),
                "temperature": colour_classes.DEFAULT_TEMPERATURE}

    def card(self) -> dict:
        """The model card written beside ``model.keras``."""
        kept = next((h for h in self.state.history if h.epoch == self.kept_epoch()), None)
        extractor = read_extractor_info(self.dataset.embeddings_dir(self.extractor_id))
        return {
            "model": "koalarization",
            "extractor_id": self.extractor_id,
            "extractor_weights": extractor.get("weights"),
            "extractor_head": extractor.get("head"),
            "random_extractor": is_random_id(self.extractor_id),
            "size": self.state.size,
            "width": self.state.config.width,
            **self.objective_card(),
            "embedding_dim": channels(self.state.embedding_shape),
            "embedding_shape": as_list(self.state.embedding_shape),
            "fusion": fusion_kind(self.state.embedding_shape),
            "dataset": str(self.dataset.root),
            "framing": self.dataset.framing(),
            "train_images": self.train_split.size,
            "validation_images": self.val_split.size,
            "epochs": self.state.epochs_done,
            "kept_epoch": self.kept_epoch(),
            "metrics": kept.row() if kept else {},
            "evaluation": self.evaluation,
            "stalled": self.stalled(),
            "history": [h.row() for h in self.state.history],
            "config": asdict(self.state.config),
            "backend": device.describe(),
            "git_commit": git_commit(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
