"""The trained network side of colouring: a model with the extractor it was trained with."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from colorization import lab
from colorization import model as net
from colorization.card import RANDOM_WARNING, model_id, read_card
from colorization.errors import ConfigError
from colorization.extractor import Extractor, load_extractor

log = logging.getLogger(__name__)


class Colorizer:
    """A trained model and the extractor whose embeddings it was trained on."""

    def __init__(self, model: keras.Model, card: dict, extractor: Extractor, model_id: str):
        self.model = model
        self.card = card
        self.extractor = extractor
        self.id = model_id

    @property
    def size(self) -> int:
        return int(self.card["size"])

    @classmethod
    def load(cls, model_dir: Path, weights: str | None = None) -> Colorizer:
        """Load ``model_dir`` and rebuild its extractor from ``weights``, by default those recorded in the card
        (ImageNet when it records none); a model trained on random embeddings gets them again.

        Refuses weights whose extractor id differs from the one the model was trained with.
        """
        card = read_card(model_dir)
        expected = card["extractor_id"]
        head = expected.split("-")[1] if expected.startswith("xception-") else "predictions"
        weights = weights or card.get("extractor_weights") or "imagenet"
        if "RANDOM" in expected:
            log.warning("%s: %s", model_dir, RANDOM_WARNING)
            weights = "none"
        extractor = load_extractor(weights, head)
        if extractor.id != expected:
            raise ConfigError(
                f"{model_dir}: model was trained on embeddings of {expected}; --weights {weights} gives {extractor.id}"
            )
        model, card = net.load(model_dir, extractor.id)
        return cls(model, card, extractor, model_id(model_dir))

    def predict_ab(self, lightness: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """a,b in Lab units (n, size, size, 2) for stored L arrays (n, size, size) uint8."""
        embedding = self.extractor.embed(lightness, batch_size).astype(np.float32)
        inputs = {"L": lightness.astype(np.float32)[..., None], "embedding": embedding}
        predicted = self.model.predict(inputs, batch_size=batch_size, verbose=0)
        return np.asarray(predicted, np.float32) * lab.AB_SCALE
