"""The Keras side of colour classification (Zhang, Isola & Efros 2016, *Colorful Image Colorization*,
arXiv:1603.08511): the class-rebalanced cross-entropy and the annealed-mean decoding.

The network's classification head predicts logits over the :func:`colour_classes.ab_bins` at half the input
size (the paper predicts at a quarter; here the head replaces the regression head, before the last 2x
upsampling). Targets stay what the batches hold for regression, a,b / 128 at full size: the loss rounds them
back to the stored integers and looks their soft encoding up, so no (pixels x Q) target ever travels.
Only ``keras`` and ``keras.ops``: it runs under TensorFlow, JAX or PyTorch.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from colorization.network import colour_classes
from colorization.photos import lab

PACKAGE = "colorization"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RebalancedCrossEntropy(keras.losses.Loss):
    """Cross-entropy of the predicted bin distribution against the soft-encoded target, each target pixel
    weighted by the rebalancing weight of its nearest bin (the paper's equation 2).

    ``y_true`` is a,b / 128 (batch, H, W, 2); ``y_pred`` logits (batch, h, w, Q) with H = f h. Each prediction
    serves the f x f target pixels of its block (as if it were upsampled by nearest neighbour): the loss of a
    block is the mean of its pixels' losses.
    """

    def __init__(self, bin_weights: list[float], name: str = "rebalanced_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.bin_weights = [float(w) for w in bin_weights]
        indices, soft = colour_classes.encoding_table()
        if len(self.bin_weights) != len(colour_classes.ab_bins()):
            raise ValueError(f"{len(self.bin_weights)} weights for {len(colour_classes.ab_bins())} bins")
        self._indices = indices
        self._coefficients = (soft * np.asarray(self.bin_weights, np.float32)[indices[:, :1]]).astype(np.float32)

    def call(self, y_true, y_pred):
        key = colour_classes.table_key(ops.cast(ops.clip(ops.round(y_true * lab.AB_SCALE), -128, 127), "int32"))
        height, width = y_pred.shape[1], y_pred.shape[2]
        factor = ops.shape(y_true)[1] // height
        neighbours = self._indices.shape[1]

        def blocks(table: np.ndarray):
            values = ops.reshape(ops.take(table, key, axis=0), (-1, height, factor, width, factor, neighbours))
            values = ops.transpose(values, (0, 1, 3, 2, 4, 5))
            return ops.reshape(values, (-1, height, width, factor * factor * neighbours))

        log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        picked = ops.take_along_axis(log_p, blocks(self._indices), axis=-1)
        return -ops.sum(blocks(self._coefficients) * picked, axis=-1) / ops.cast(factor * factor, "float32")

    def get_config(self) -> dict:
        return {**super().get_config(), "bin_weights": self.bin_weights}


def annealed_mean(logits, temperature: float):
    """a,b / 128 (..., 2) of logits (..., Q): the mean of softmax(log p / T) over the bin centres (the paper's
    equation 5). T = 1 is the distribution's mean, T -> 0 its mode; 0.38 is the paper's compromise between the
    mean's faded colours and the mode's patchy ones. log p / T = logits / T up to a constant."""
    centres = colour_classes.ab_bins() / np.float32(lab.AB_SCALE)
    annealed = ops.softmax(ops.cast(logits, "float32") / np.float32(temperature), axis=-1)
    return ops.matmul(annealed, centres)


@keras.saving.register_keras_serializable(package=PACKAGE)
class AnnealedMean(keras.layers.Layer):
    """:func:`annealed_mean` as a layer."""

    def __init__(self, temperature: float = colour_classes.DEFAULT_TEMPERATURE, **kwargs):
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, logits):
        return annealed_mean(logits, self.temperature)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)

    def get_config(self) -> dict:
        return {**super().get_config(), "temperature": self.temperature}


def decoder(model: keras.Model, temperature: float) -> keras.Sequential:
    """Logits of ``model`` -> a,b / 128 at the model's input size: annealed mean, then bilinear upsampling
    (smooth, as the decoded a,b of neighbouring blocks blend). Callable on numpy logits or on ``model.output``."""
    factor = model.input["L"].shape[1] // model.output.shape[1]
    return keras.Sequential(
        [AnnealedMean(temperature, dtype="float32"),
         keras.layers.UpSampling2D(factor, interpolation="bilinear", dtype="float32")],
        name="annealed_mean",
    )


def with_decoder(model: keras.Model, temperature: float) -> keras.Model:
    """``model`` followed by its :func:`decoder`: inputs -> a,b / 128, decoded on the accelerator."""
    return keras.Model(model.input, decoder(model, temperature)(model.output), name=f"{model.name}_decoded")
