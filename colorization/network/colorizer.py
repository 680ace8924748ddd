"""The trained network side of colouring: a model with the extractor it was trained with."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from colorization.errors import ConfigError
from colorization.network import classification
from colorization.network.card import RANDOM_WARNING, STALLED_WARNING, ModelCard
from colorization.network.extractor import Extractor, load_extractor
from colorization.network.model import load_trained
from colorization.photos import lab
from colorization.preflight import check_decoding

log = logging.getLogger(__name__)


class Colorizer:
    """A trained model and the extractor whose embeddings it was trained on."""

    def __init__(self, model: keras.Model, card: ModelCard, extractor: Extractor, temperature: float | None = None,
                 saturation: float = 1.0):
        self.model = model
        self.card = card
        self.extractor = extractor
        self.temperature = (temperature or card.temperature) if card.objective == "classification" else None
        self.saturation = saturation
        self.id = card.model_id(self.temperature, saturation)
        self.network = model if self.temperature is None else classification.with_decoder(model, self.temperature)

    @property
    def size(self) -> int:
        return self.card.size

    @property
    def objective(self) -> str:
        """``regression`` (the network predicts a,b) or ``classification`` (a distribution over a,b bins)."""
        return self.card.objective

    @classmethod
    def load(cls, model: Path | ModelCard, weights: str | None = None, temperature: float | None = None,
             saturation: float = 1.0) -> Colorizer:
        """Load a model (its folder, or its card when the caller has read it) and rebuild its extractor from
        ``weights``, by default those recorded in the card; a model trained on random embeddings gets them
        again. A classification model decodes with ``temperature`` (default: its card's); a regression model
        has none to set. ``saturation`` scales every predicted a,b (hue kept, chroma times ``saturation``): above 1
        more vivid colours, below 1 paler.

        Refuses weights whose extractor id differs from the one the model was trained with.
        """
        check_decoding(temperature, saturation)
        card = model if isinstance(model, ModelCard) else ModelCard.read(model)
        weights = weights or card.extractor_weights
        if card.random:
            log.warning("%s: %s", card.model_dir, RANDOM_WARNING)
            weights = "none"
        if card.stalled:
            log.warning("%s: %s", card.model_dir, STALLED_WARNING)
        extractor = load_extractor(weights, card.head)
        if extractor.id != card.extractor_id:
            raise ConfigError(f"{card.model_dir}: model was trained on embeddings of {card.extractor_id}; "
                              f"--weights {weights} gives {extractor.id}")
        if temperature is not None and card.objective != "classification":
            log.warning("%s: a regression model; --temperature applies to classification models only",
                        card.model_dir)
        return cls(load_trained(card, extractor.id), card, extractor, temperature, saturation)

    def with_saturation(self, saturation: float) -> Colorizer:
        """The same model and extractor (nothing loaded again), colouring at another ``saturation``."""
        check_decoding(None, saturation)
        return Colorizer(self.model, self.card, self.extractor, self.temperature, saturation)

    def predict_ab(self, lightness: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """a,b in Lab units (n, size, size, 2) for stored L arrays (n, size, size) uint8, times the saturation."""
        embedding = self.extractor.embed(lightness, batch_size).astype(np.float32)
        inputs = {"L": lab.model_inputs(lightness), "embedding": embedding}
        ab = lab.from_model_output(self.network.predict(inputs, batch_size=batch_size, verbose=0))
        return ab if self.saturation == 1 else ab * np.float32(self.saturation)
