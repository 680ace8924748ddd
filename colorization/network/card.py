"""The model card (``model.json``) beside a trained ``model.keras``, readable without loading any framework."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from colorization.dataset.layout import Shape, as_shape
from colorization.errors import ConfigError

MODEL_FILE = "model.keras"
CARD_FILE = "model.json"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
KERAS_MEMBERS = ("config.json", "metadata.json")
DOWNSAMPLING = 8  # the encoder halves the photo 3 times, so model sizes are multiples of 8
RANDOM_WARNING = "RANDOM WEIGHTS: this Xception was not trained; its embeddings are meaningless (tests only)"
RANDOM_MARK = "RANDOM"  # in the id of embeddings made by an untrained Xception
STALLED_WARNING = ("its training stalled (the card says \"stalled\": true), so it colours no better than grey; "
                   "train it again with another --seed (README: train)")


def make_extractor_id(head: str, checksum: str, random: bool) -> str:
    """The id that names an embedding set and the models trained on it: ``xception-HEAD-[RANDOM-]CHECKSUM``."""
    return f"xception-{head}-{RANDOM_MARK + '-' if random else ''}{checksum}"


def is_random_id(extractor_id: str) -> bool:
    """Whether an extractor id (:func:`make_extractor_id`) names embeddings of an untrained Xception."""
    return RANDOM_MARK in extractor_id.split("-")


def check_keras_file(path: Path) -> None:
    """Refuse a file that is not a Keras 3 save (a zip with its config and metadata), without loading Keras.

    Keras itself reports such a file as "File not found", which sends people looking for the wrong problem.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [name for name in KERAS_MEMBERS if name not in archive.namelist()]
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path}: not a Keras model file ({exc})") from exc
    if missing:
        raise ConfigError(f"{path}: not a Keras model file (no {', '.join(missing)} inside)")


def read_card(model_dir: Path) -> dict:
    """The model card, or a clear error when ``model_dir`` holds no trained model or a damaged one."""
    path = model_dir / CARD_FILE
    if not path.is_file() or not (model_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{model_dir}: no trained model here ({MODEL_FILE} and {CARD_FILE}); run train first")
    check_keras_file(model_dir / MODEL_FILE)
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not a model card ({exc})") from exc


def has_checkpoint(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a training run (a checkpoint written after its first epoch)."""
    return (model_dir / CHECKPOINT_DIR / STATE_FILE).is_file()


def read_state(model_dir: Path) -> dict:
    """The state of the run checkpointed in ``model_dir`` (its config, extractor id, shape and history), or a
    clear error when the file is not one."""
    path = model_dir / CHECKPOINT_DIR / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path}: not a training checkpoint's state ({exc})") from exc
    if not isinstance(state, dict) or "extractor_id" not in state:
        raise ConfigError(f"{path}: not a training checkpoint's state (no extractor_id)")
    return state


def checkpoint_extractor(model_dir: Path) -> str | None:
    """The extractor id of the run checkpointed in ``model_dir``, whose embeddings resuming it needs; None
    when there is no run."""
    return read_state(model_dir)["extractor_id"] if has_checkpoint(model_dir) else None


@dataclass(frozen=True)
class ModelCard:
    """A trained model's card, typed: read once per run with :meth:`read`, then passed to whoever needs it.

    ``data`` keeps the whole card as written (history, evaluation, ...) for reports.
    """

    model_dir: Path
    extractor_id: str
    extractor_weights: str  # imagenet, none or a file path: what rebuilds the extractor at colorize time
    head: str  # where Xception is cut (preflight.HEADS)
    random: bool  # trained on embeddings of an untrained Xception (tests only)
    size: int
    width: float
    embedding_shape: Shape
    objective: str  # regression or classification
    temperature: float | None  # a classification model's default annealed-mean temperature
    stalled: bool  # its validation loss never fell: it learnt nothing that carries to unseen photos
    data: dict = field(repr=False, compare=False)

    @classmethod
    def read(cls, model_dir: Path) -> ModelCard:
        """The card of ``model_dir``, or a clear error when it holds no trained model or a damaged one."""
        data = read_card(model_dir)
        try:
            extractor_id = data["extractor_id"]
            shape = data.get("embedding_shape") or data["embedding_dim"]
            return cls(
                model_dir=model_dir,
                extractor_id=extractor_id,
                extractor_weights=data.get("extractor_weights") or "imagenet",
                head=data.get("extractor_head") or head_of_id(extractor_id),
                random=is_random_id(extractor_id),
                size=int(data["size"]),
                width=float(data["width"]),
                embedding_shape=as_shape(shape),
                objective=data.get("objective", "regression"),
                temperature=data.get("temperature"),
                stalled=data.get("stalled") is True,
                data=data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{model_dir / CARD_FILE}: not a model card (missing or bad {exc})") from exc

    @property
    def model_file(self) -> Path:
        return self.model_dir / MODEL_FILE

    @cached_property
    def digest(self) -> str:
        """:func:`computation_digest` of the model file, computed once per card."""
        return computation_digest(self.model_file)

    def model_id(self, temperature: float | None = None, saturation: float = 1.0) -> str:
        """Names the model by what it computes: its extractor, its architecture and its weight values, for a
        classification model the decoding temperature (``temperature``, by default the card's), and the
        ``saturation`` its colours are scaled by when it is not 1.

        Not by the bytes of ``model.keras``: that zip also records when it was saved, so the same weights saved
        twice would look like a new model and an archive would be coloured again for nothing.
        """
        name = f"{self.extractor_id}/{self.digest}"
        if self.objective == "classification":
            name += f"/T{temperature or self.temperature:g}"
        if saturation != 1:
            name += f"/S{saturation:g}"
        return name


def head_of_id(extractor_id: str) -> str:
    """The head an extractor id names (``xception-HEAD-...``): how cards written before they recorded it, and
    resumed runs, find theirs."""
    return extractor_id.split("-")[1] if extractor_id.startswith("xception-") else "predictions"


def computation_digest(model_file: Path) -> str:
    """A short hash of a ``.keras`` file's architecture (``config.json``) and weights (``model.weights.h5``)."""
    digest = hashlib.blake2b(digest_size=6)
    try:
        with zipfile.ZipFile(model_file) as archive:
            config = json.loads(archive.read("config.json"))
            weights = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{model_file}: not a Keras model file ({exc})") from exc
    digest.update(json.dumps(config, sort_keys=True).encode())
    with h5py.File(io.BytesIO(weights), "r") as h5:
        names: list[str] = []
        h5.visit(names.append)
        for name in sorted(names):
            if isinstance(h5[name], h5py.Dataset):
                values = np.ascontiguousarray(h5[name][()])
                digest.update(f"{name}:{values.dtype.str}:{values.shape}".encode())
                digest.update(values.tobytes())
    return digest.hexdigest()
