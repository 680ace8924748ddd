"""The model card (``model.json``) beside a trained ``model.keras``, readable without loading any framework."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from colorization.errors import ConfigError

MODEL_FILE = "model.keras"
CARD_FILE = "model.json"
RANDOM_WARNING = "RANDOM WEIGHTS: this Xception was not trained; its embeddings are meaningless (tests only)"


def read_card(model_dir: Path) -> dict:
    """The model card, or a clear error when ``model_dir`` holds no trained model."""
    path = model_dir / CARD_FILE
    if not path.is_file() or not (model_dir / MODEL_FILE).is_file():
        raise ConfigError(f"{model_dir}: no trained model here ({MODEL_FILE} and {CARD_FILE}); run train first")
    return json.loads(path.read_text())


def model_id(model_dir: Path) -> str:
    """Names a trained model by its extractor and the bytes of its weights: outputs of another model differ."""
    card = read_card(model_dir)
    digest = hashlib.blake2b((model_dir / MODEL_FILE).read_bytes(), digest_size=6).hexdigest()
    return f"{card['extractor_id']}/{digest}"
