"""The model card (``model.json``) beside a trained ``model.keras``, readable without loading any framework."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np

from colorization.errors import ConfigError

MODEL_FILE = "model.keras"
CARD_FILE = "model.json"
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.json"
KERAS_MEMBERS = ("config.json", "metadata.json")
DOWNSAMPLING = 8  # the encoder halves the photo 3 times, so model sizes are multiples of 8
RANDOM_WARNING = "RANDOM WEIGHTS: this Xception was not trained; its embeddings are meaningless (tests only)"


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


def model_id(model_dir: Path, temperature: float | None = None) -> str:
    """Names a trained model by what it computes: its extractor, its architecture and its weight values, and
    for a classification model the decoding temperature (``temperature``, by default the card's).

    Not by the bytes of ``model.keras``: that zip also records when it was saved, so the same weights saved
    twice would look like a new model and an archive would be coloured again for nothing.
    """
    card = read_card(model_dir)
    name = f"{card['extractor_id']}/{computation_digest(model_dir / MODEL_FILE)}"
    if card.get("objective") == "classification":
        name += f"/T{temperature or card['temperature']:g}"
    return name


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
