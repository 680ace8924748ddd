"""The fusion colorization network of Deep Koalarization (Baldassarre et al., 2017), in Keras 3.

L (stored 0..255) -> conv encoder to 1/8 of the size -> the Xception embedding repeated over that grid and
concatenated -> 1x1 fusion conv -> decoder of convs and 2x upsamplings -> a,b as ``tanh`` = ab / 128.
An embedding that is a feature map (the ``spatial`` head) is resized onto the grid instead of repeated, so each
position is fused with the semantics found there, as Larsson et al. (2016, "Learning Representations for
Automatic Colorization") colour from a pretrained network's spatial features. Several maps (the ``maps`` head)
are first stacked into one hypercolumn, each resized to a common grid. Only ``keras`` layers and ops are
used, so the same code trains under TensorFlow, JAX or PyTorch.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from colorization.atomic import atomic_path
from colorization.dataset.layout import Shape, as_list, as_shape, channels, is_several, parts, row_shape, spans
from colorization.errors import ConfigError
from colorization.network.card import CARD_FILE, DOWNSAMPLING, MODEL_FILE, ModelCard

# The paper's layers (Baldassarre et al. 2017, tables 1 and 2) at width 1.0; sizes for a 256x256 input.
ENCODER = [  # (filters, stride) of each 3x3 ReLU conv
    (64, 2),  # encoder_0: 128x128
    (128, 1),  # encoder_1
    (128, 2),  # encoder_2: 64x64
    (256, 1),  # encoder_3
    (256, 2),  # encoder_4: 32x32, the grid the embedding is laid over
    (512, 1),  # encoder_5
    (512, 1),  # encoder_6
    (256, 1),  # encoder_7
]
FUSION = 256  # filters of the 1x1 conv over [encoder features, embedding] at each grid position
DECODER = [  # (filters, then 2x upsampling?) of each 3x3 ReLU conv
    (128, True),  # decoder_0: 64x64
    (64, False),  # decoder_1
    (64, True),  # decoder_2: 128x128
    (32, False),  # decoder_3
]  # then the 2-filter tanh conv "ab" and a last 2x upsampling to 256x256
HYPERCOLUMN_GRID = 16  # the grid several maps are stacked on: between the exit flow's 10x10 and the middle's 19x19


def _filters(base: int, width: float) -> int:
    return max(4, round(base * width))


@keras.saving.register_keras_serializable(package="colorization")
class ResizeMap(keras.layers.Layer):
    """A feature map (n, h, w, c) resized bilinearly to ``size``x``size``: a spatial embedding laid over the
    encoder's grid (antialiased, so a map larger than the grid is averaged rather than sampled)."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, feature_map):
        return resized(feature_map, self.size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="colorization")
class Hypercolumn(keras.layers.Layer):
    """Several feature maps, stored flat one after another (n, total), each resized to ``size``x``size`` and
    stacked channel-wise (Larsson et al. 2016's hypercolumns): what the ``hypercolumn`` head stores, made from
    the ``maps`` head's smaller rows on the accelerator."""

    def __init__(self, maps: list, size: int, **kwargs):
        super().__init__(**kwargs)
        self.maps = as_shape(maps)
        self.size = size

    def call(self, flat):
        return stacked([keras.ops.reshape(flat[:, start:stop], (-1, *part)) for start, stop, part in spans(self.maps)],
                       self.size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, channels(self.maps))

    def get_config(self) -> dict:
        return {**super().get_config(), "maps": as_list(self.maps), "size": self.size}


def resized(feature_map, size: int):
    """A feature map (n, h, w, c) resized bilinearly to ``size``x``size``, antialiased: a map larger than that is
    averaged rather than sampled."""
    return keras.ops.image.resize(feature_map, (size, size), interpolation="bilinear", antialias=True)


def stacked(maps: list, size: int):
    """Feature maps resized to one ``size``x``size`` grid and concatenated channel-wise."""
    return keras.ops.concatenate([resized(feature_map, size) for feature_map in maps], axis=-1)


def fusion_kind(embedding_shape: Shape) -> str:
    """``global`` for a vector embedding (the paper's fusion), ``spatial`` for an (h, w, c) feature map or
    several of them."""
    several = is_several(embedding_shape)
    valid = all(len(part) == 3 for part in parts(embedding_shape)) if several else len(embedding_shape) in (1, 3)
    if not valid:
        raise ConfigError(f"an embedding must be a vector, an (h, w, c) map or several maps, got {embedding_shape}")
    return "spatial" if several or len(embedding_shape) == 3 else "global"


def embedding_grid(embedding: keras.KerasTensor, grid: int, shape: Shape) -> keras.KerasTensor:
    """The embedding of ``shape`` over the encoder's ``grid``x``grid``: a vector repeated at every position
    (global fusion), or a feature map, or several stacked on :data:`HYPERCOLUMN_GRID`, resized to the grid
    (spatial fusion)."""
    if is_several(shape):
        embedding = Hypercolumn(list(shape), HYPERCOLUMN_GRID, name="hypercolumn")(embedding)
    if fusion_kind(shape) == "spatial":
        return ResizeMap(grid, name="embedding_grid")(embedding)
    repeated = keras.layers.RepeatVector(grid * grid, name="repeat_embedding")(embedding)
    return keras.layers.Reshape((grid, grid, embedding.shape[-1]), name="embedding_grid")(repeated)


def build_model(size: int = 256, embedding_shape: int | Shape = 1000, width: float = 1.0, classes: int = 0,
                dropout: float = 0.0, activation: str = "relu") -> keras.Model:
    """The network for ``size``x``size`` inputs and embeddings of ``embedding_shape`` (a vector's length, an
    (h, w, c) map or several; see :func:`fusion_kind`); ``width`` scales every layer's filters (1.0 = the
    paper's).

    ``dropout`` > 0 drops that share of the embedding's channels, whole, at each training step (spatial
    dropout on the grid, Tompson et al. 2015): with 2048 semantic channels and a few thousand photos the
    decoder otherwise learns to recognise training photos by their embedding instead of colouring them.

    ``activation`` of the fusion and decoder convs: the paper's ``relu``, or ``leaky_relu`` (slope 0.2 below
    zero). A ReLU unit that stops firing for every photo gets no gradient and never fires again; when that
    happens to the narrow last decoder layer, the output is one colour for every pixel and training stalls for
    good (seen on the hypercolumn: QUALITY.md, "A stall at the mean colour"). A leaky unit cannot die.

    ``classes`` > 0 swaps the regression head for Zhang et al.'s classification head: logits over that many
    a,b bins at half the input size (:mod:`colorization.network.classification` decodes them).
    """
    if size % DOWNSAMPLING:
        raise ConfigError(f"the model size must be a multiple of {DOWNSAMPLING}, got {size}")
    if width <= 0:
        raise ConfigError(f"--width must be positive, got {width}")
    shape = as_shape(embedding_shape)
    lightness = keras.Input((size, size, 1), name="L")
    embedding = keras.Input(row_shape(shape), name="embedding")

    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_L")(lightness)
    for i, (filters, stride) in enumerate(ENCODER):
        x = keras.layers.Conv2D(_filters(filters, width), 3, strides=stride, padding="same", activation="relu",
                                name=f"encoder_{i}")(x)

    grid = embedding_grid(embedding, size // DOWNSAMPLING, shape)
    if dropout:
        grid = keras.layers.SpatialDropout2D(dropout, name="embedding_dropout")(grid)
    x = keras.layers.Concatenate(name="fuse")([x, keras.ops.cast(grid, x.dtype)])
    x = keras.layers.Conv2D(_filters(FUSION, width), 1, activation=activation, name="fusion")(x)

    for i, (filters, upsample) in enumerate(DECODER):
        x = keras.layers.Conv2D(_filters(filters, width), 3, padding="same", activation=activation,
                                name=f"decoder_{i}")(x)
        if upsample:
            x = keras.layers.UpSampling2D(2, name=f"upsample_{i}")(x)
    if classes:
        logits = keras.layers.Conv2D(classes, 1, dtype="float32", name="ab_logits")(x)
        return keras.Model({"L": lightness, "embedding": embedding}, logits, name="koalarization_classes")
    x = keras.layers.Conv2D(2, 3, padding="same", activation="tanh", dtype="float32", name="ab")(x)
    ab = keras.layers.UpSampling2D(2, name="upsample_out", dtype="float32")(x)
    return keras.Model({"L": lightness, "embedding": embedding}, ab, name="koalarization")


def save_trained(model: keras.Model, model_dir: Path, card: dict) -> None:
    """Write ``model.keras`` and its card ``model.json`` atomically.

    The model is saved for inference: architecture and weights, without the optimizer's state (twice the
    weights again for Adam), which only resuming needs and the training checkpoint keeps.
    """
    inference = keras.Model.from_config(model.get_config())
    inference.set_weights(model.get_weights())
    with atomic_path(model_dir / MODEL_FILE) as temp:
        inference.save(temp)
    with atomic_path(model_dir / CARD_FILE) as temp:
        temp.write_text(json.dumps(card, indent=2) + "\n")


def load_trained(card: ModelCard, extractor_id: str | None = None) -> keras.Model:
    """The trained network of ``card``; refuses a model trained on another extractor's embeddings."""
    if extractor_id is not None and card.extractor_id != extractor_id:
        raise ConfigError(
            f"{card.model_dir}: model was trained on embeddings of {card.extractor_id}, not {extractor_id}"
        )
    return keras.models.load_model(card.model_file, compile=False)
