"""The trained network side of colouring: a model with the extractor it was trained with."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from colorization import classification, lab
from colorization import model as net
from colorization.card import RANDOM_WARNING, model_id, read_card
from colorization.errors import ConfigError
from colorization.extractor import Extractor, load_extractor

log = logging.getLogger(__name__)


class Colorizer:
    """A trained model and the extractor whose embeddings it was trained on."""

    def __init__(self, model: keras.Model, card: dict, extractor: Extractor, model_id: str,
                 temperature: float | None = None):
        self.model = model
        self.card = card
        self.extractor = extractor
        self.id = model_id
        self.temperature = (temperature or card["temperature"]) if self.objective == "classification" else None
        self.network = model if self.temperature is None else classification.with_decoder(model, self.temperature)

    @property
    def size(self) -> int:
        return int(self.card["size"])

    @property
    def objective(self) -> str:
        """``regression`` (the network predicts a,b) or ``classification`` (a distribution over a,b bins)."""
        return self.card.get("objective", "regression")

    @classmethod
    def load(cls, model_dir: Path, weights: str | None = None, temperature: float | None = None) -> Colorizer:
        """Load ``model_dir`` and rebuild its extractor from ``weights``, by default those recorded in the card
        (ImageNet when it records none); a model trained on random embeddings gets them again. A classification
        model decodes with ``temperature`` (default: its card's); a regression model has none to set.

        Refuses weights whose extractor id differs from the one the model was trained with.
        """
        if temperature is not None and not temperature > 0:
            raise ConfigError(f"--temperature must be positive, got {temperature}")
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
        if temperature is not None and card.get("objective") != "classification":
            log.warning("%s: a regression model; --temperature applies to classification models only", model_dir)
        return cls(model, card, extractor, model_id(model_dir, temperature), temperature)

    def predict_ab(self, lightness: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """a,b in Lab units (n, size, size, 2) for stored L arrays (n, size, size) uint8."""
        embedding = self.extractor.embed(lightness, batch_size).astype(np.float32)
        inputs = {"L": lightness.astype(np.float32)[..., None], "embedding": embedding}
        predicted = self.network.predict(inputs, batch_size=batch_size, verbose=0)
        return np.asarray(predicted, np.float32) * lab.AB_SCALE
