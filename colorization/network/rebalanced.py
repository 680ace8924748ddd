"""Class rebalancing for the regression objective: the regression loss with each pixel weighted by how rare its
colour is in the training set.

Regression's loss is lowest at the mean of a pixel's plausible colours, which for anything whose colour the grey
photo cannot tell is a faded brown: the common colours of photos (greys, browns, skin) outvote the rare,
saturated ones. Zhang et al. (2016) fixed that for their classification objective by weighting each pixel by its
colour bin's rarity (:mod:`colorization.dataset.prior`); this module applies the same per-bin weights to the
Huber or squared error of a,b / 128, raised to a ``strength`` between 0 (the plain loss) and 1 (Zhang's
weights). Only ``keras`` and ``keras.ops``: it runs under TensorFlow, JAX or PyTorch.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from colorization.network import colour_classes
from colorization.photos import lab

PACKAGE = "colorization"
HUBER_DELTA = 0.03  # in a,b / 128: where the Huber loss turns from squared to absolute (3.84 a,b units)


def pixel_error(y_true, y_pred, loss: str):
    """Per-pixel error (batch, H, W) of a,b / 128: ``huber`` (squared below HUBER_DELTA, absolute above) or
    ``mse``, each averaged over a and b like Keras' own losses."""
    if loss == "huber":
        return keras.losses.huber(y_true, y_pred, delta=HUBER_DELTA)
    return keras.losses.mean_squared_error(y_true, y_pred)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RebalancedRegression(keras.losses.Loss):
    """``loss`` (``huber`` or ``mse``) of a,b / 128, each target pixel weighted by ``bin_weights`` of its
    nearest colour bin raised to ``strength``, and divided by the batch's mean weight so that the loss keeps
    the plain loss's scale (and ``strength`` 0 gives the plain loss exactly)."""

    def __init__(self, bin_weights: list[float], strength: float = 1.0, loss: str = "huber",
                 name: str = "rebalanced_regression", **kwargs):
        super().__init__(name=name, **kwargs)
        if len(bin_weights) != len(colour_classes.ab_bins()):
            raise ValueError(f"{len(bin_weights)} weights for {len(colour_classes.ab_bins())} bins")
        self.bin_weights = [float(w) for w in bin_weights]
        self.strength = float(strength)
        self.loss = loss
        nearest = colour_classes.encoding_table()[0][:, 0]
        self._pixel_weights = (np.asarray(self.bin_weights) ** self.strength)[nearest].astype(np.float32)

    def call(self, y_true, y_pred):
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        key = colour_classes.table_key(ops.cast(ops.clip(ops.round(y_true * lab.AB_SCALE), -128, 127), "int32"))
        weights = ops.take(self._pixel_weights, key, axis=0)
        return pixel_error(y_true, y_pred, self.loss) * weights / ops.mean(weights)

    def get_config(self) -> dict:
        return {**super().get_config(), "bin_weights": self.bin_weights, "strength": self.strength,
                "loss": self.loss}
