"""The Xception feature extractor that turns a photo's L channel into the embedding the model fuses.

Keras 3 only (``import keras``), so it runs under TensorFlow, JAX or PyTorch. The network takes stored L
values as a grey image of any size; resizing to 299x299 and Xception's own input scaling happen inside the
model, on the accelerator.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import random
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np

from colorization.dataset.layout import Shape, channels
from colorization.errors import ConfigError
from colorization.network import device
from colorization.network.card import RANDOM_WARNING, make_extractor_id
from colorization.network.model import HYPERCOLUMN_GRID, stacked
from colorization.photos import lab
from colorization.preflight import HEADS, check_weights

log = logging.getLogger(__name__)

# Where each head cuts Xception: the 1000-class softmax, the 2048-d pooled features, the exit flow's last
# activation before pooling (10x10x2048 for the 299x299 input), whose spatial mean is exactly ``avg_pool``, and
# the middle flow's output as the exit flow first activates it (19x19x728: finer, less abstract).
HEAD_LAYERS = {"predictions": "predictions", "avg_pool": "avg_pool", "spatial": "block14_sepconv2_act",
               "middle": "block13_sepconv1_act"}
# A hypercolumn (Larsson et al. 2016) stacks several layers' maps at each position: here the exit flow's and
# the middle flow's. ``maps`` stores both at their own sizes and the model stacks them on one grid, 16x16x2776;
# ``hypercolumn`` stores them stacked (1.5x the raw bytes, twice the bytes on disk), as models before it did.
HYPERCOLUMN = ("spatial", "middle")
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/xception/"
XCEPTION_SIZE = 299
RANDOM_SEED = 1712_03400  # any fixed number gives stable random weights; this one is the paper's arXiv id
OFFLINE_HINT = (
    "on a machine without internet, download the file elsewhere and pass its path: "
    "--weights /path/to/xception_weights_tf_dim_ordering_tf_kernels.h5 "
    "(or ..._notop.h5 for every --head but predictions)"
)


def grey_input(lightness: np.ndarray) -> np.ndarray:
    """Stored L (n, h, w) uint8 to the grey image a viewer sees: (n, h, w, 1) float32 in 0..255."""
    return lab.lightness_to_grey(lightness)[..., None].astype(np.float32)


@keras.saving.register_keras_serializable(package="colorization")
class XceptionInput(keras.layers.Layer):
    """Grey 0..255 of any size to Xception's input: 299x299, three equal channels, scaled to [-1, 1].

    The scaling is ``keras.applications.xception.preprocess_input``. (The seed fed raw L in 0..100 without it,
    far from what ImageNet weights expect.)
    """

    def call(self, grey):
        resized = keras.ops.image.resize(grey, (XCEPTION_SIZE, XCEPTION_SIZE), interpolation="bilinear")
        return keras.applications.xception.preprocess_input(keras.ops.repeat(resized, 3, axis=-1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], XCEPTION_SIZE, XCEPTION_SIZE, 3)


@dataclass
class Extractor:
    """An Xception embedding network, the id that names the embeddings it makes, and their shape: ``(dim,)``
    for a vector head, ``(10, 10, 2048)`` for ``spatial``, ``(19, 19, 728)`` for ``middle``, ``(16, 16, 2776)``
    for ``hypercolumn``, both of those maps for ``maps`` (:mod:`colorization.dataset.layout`)."""

    model: keras.Model
    id: str
    random: bool
    shape: Shape

    @property
    def dim(self) -> int:
        """Channels of the embedding: its length for a vector head, its depth (summed for ``maps``) for a map."""
        return channels(self.shape)

    def embed(self, lightness: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Embeddings (n, *row shape) float16 of stored L arrays (n, h, w) uint8 (several maps come flat)."""
        out = self.model.predict(grey_input(lightness), batch_size=batch_size, verbose=0)
        return np.asarray(out, dtype=np.float16)


def load_extractor(
    weights: str = "imagenet", head: str = "predictions", mixed_precision: bool | None = None
) -> Extractor:
    """Build Xception with ``weights`` (``imagenet``, ``none`` or a file path) and the chosen ``head``.

    ``predictions`` is the 1000-class softmax (as in the paper); ``avg_pool`` the 2048-d pooled features;
    ``spatial`` the 10x10x2048 map those features are pooled from, so that the model can place semantics where
    they are in the photo (Larsson et al. 2016, "Learning Representations for Automatic Colorization", colour
    from a pretrained network's spatial features rather than from one global vector); ``middle`` the middle
    flow's 19x19x728 map, twice as fine and less abstract; ``maps`` both maps at their own sizes, which the model
    stacks on one 16x16 grid; ``hypercolumn`` both maps stacked so before they are stored.
    Mixed precision is used on a GPU unless ``mixed_precision`` says otherwise.
    """
    if head not in HEADS:
        raise ConfigError(f"--head must be one of {', '.join(HEADS)}, got {head!r}")
    random = weights == "none"
    with device.dtype_policy(device.compute_policy(mixed_precision)):
        if random:
            log.warning(RANDOM_WARNING)
            keras.utils.set_random_seed(RANDOM_SEED)
            with _private_initializer_seeds(RANDOM_SEED):
                backbone = keras.applications.Xception(weights=None, include_top=True)
        elif weights == "imagenet":
            backbone = _imagenet(head)
        else:
            backbone = _from_file(Path(weights), head)
        backbone, maps = _with_head(backbone, head)
        grey = keras.Input((None, None, 1), name="grey")
        model = keras.Model(grey, backbone(XceptionInput(name="xception_input")(grey)), name="xception_embedder")
    shape = maps or tuple(int(d) for d in model.output.shape[1:])
    return Extractor(model, make_extractor_id(head, weights_checksum(backbone), random), random, shape)


_SEEDING = threading.Lock()


@contextlib.contextmanager
def _private_initializer_seeds(seed: int) -> Iterator[None]:
    """Keras initializers draw their seeds from Python's global ``random`` as layers are built; other threads
    of the process (a Dask client, Prefect's) draw from it too, so the "seeded" random weights changed from
    one load to the next. Give the initializers a generator of their own, seeded as ``set_random_seed`` seeds
    the global one (so the weights, and the extractor id, are those of an undisturbed build)."""
    from keras.src.random import seed_generator  # where make_default_seed looks up ``python_random``

    with _SEEDING:
        shared = seed_generator.python_random
        seed_generator.python_random = random.Random(seed)
        try:
            yield
        finally:
            seed_generator.python_random = shared


def weights_checksum(model: keras.Model) -> str:
    """A short hash of every weight value: equal for equal weights, whichever file they came from."""
    digest = hashlib.blake2b(digest_size=6)
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight.value), np.float32).tobytes())
    return digest.hexdigest()


def _with_head(model: keras.Model, head: str) -> tuple[keras.Model, Shape | None]:
    """The model cut at the head's layer (:data:`HEAD_LAYERS`), or at both :data:`HYPERCOLUMN` layers; and, for
    ``maps``, the two maps' shapes (other heads' embeddings have their output's shape).

    ``hypercolumn`` stacks the two maps on :data:`HYPERCOLUMN_GRID` as the fusion model's
    :class:`~colorization.network.model.Hypercolumn` does; ``maps`` flattens each and lays them one after
    another, for the model to stack. A no-top Xception that Keras pooled (``pooling="avg"``) already ends at
    ``avg_pool``'s output, under another layer name.
    """
    if head in ("hypercolumn", "maps"):
        maps = [model.get_layer(HEAD_LAYERS[name]).output for name in HYPERCOLUMN]
        if head == "hypercolumn":
            return keras.Model(model.input, stacked(maps, HYPERCOLUMN_GRID), name="xception_hypercolumn"), None
        return _flat_maps(keras.Model(model.input, maps, name="xception_exit_and_middle"))
    names = [layer.name for layer in model.layers]
    if HEAD_LAYERS[head] not in names or names[-1] == HEAD_LAYERS[head]:
        return model, None
    return keras.Model(model.input, model.get_layer(HEAD_LAYERS[head]).output, name=f"xception_{head}"), None


def _flat_maps(cut: keras.Model) -> tuple[keras.Model, Shape]:
    """``cut``'s maps of a 299x299 image, each flattened, laid one after another; and their shapes. (A weights
    file's no-top model takes images of any size, so its maps have no size until it is given one.)"""
    image = keras.Input((XCEPTION_SIZE, XCEPTION_SIZE, 3), name="image")
    maps = cut(image)
    shapes = tuple(tuple(int(d) for d in feature_map.shape[1:]) for feature_map in maps)
    flat = [keras.ops.reshape(feature_map, (-1, math.prod(shape))) for feature_map, shape in zip(maps, shapes)]
    return keras.Model(image, keras.ops.concatenate(flat, axis=-1), name="xception_maps"), shapes


def imagenet_available(head: str = "predictions") -> bool:
    """Whether the ImageNet weights are in the Keras cache or can be downloaded now."""
    try:
        _imagenet_weights_file(head)
    except Exception:  # the download raises whatever the network layer raises
        return False
    return True


def _imagenet_weights_file(head: str) -> str:
    name = "xception_weights_tf_dim_ordering_tf_kernels" + ("" if head == "predictions" else "_notop") + ".h5"
    return keras.utils.get_file(name, IMAGENET_URL + name, cache_subdir="models")


def _imagenet(head: str) -> keras.Model:
    """Keras' own ImageNet weights, downloaded once into the Keras cache (``~/.keras/models``)."""
    try:
        if head == "predictions":
            return keras.applications.Xception(weights="imagenet", include_top=True)
        return keras.applications.Xception(weights="imagenet", include_top=False, pooling="avg")
    except Exception as exc:  # the download raises whatever the network layer raises
        raise ConfigError(f"could not get the ImageNet Xception weights ({exc}); {OFFLINE_HINT}") from exc


def _from_file(path: Path, head: str) -> keras.Model:
    """Xception with weights from a local file: the official ``.h5`` (with or without top) or a Keras 3 save."""
    check_weights(str(path))
    try:
        with h5py.File(path, "r"):
            pass
    except OSError as exc:
        raise ConfigError(f"{path}: not a readable HDF5 weights file ({exc})") from exc
    layouts = [True] if head == "predictions" else [True, False]
    problems = []
    for include_top in layouts:
        model = keras.applications.Xception(
            weights=None, include_top=include_top, pooling=None if include_top else "avg"
        )
        try:
            with warnings.catch_warnings():
                # A functional model's op container holds no weights; Keras 3 warns that it found none to load.
                # Layers with weights that do not match still raise (tests/test_embed.py).
                warnings.filterwarnings("ignore", message="Skipping nested container at '_operations_by_depth")
                model.load_weights(path)
        except Exception as exc:  # Keras raises ValueError or KeyError for mismatched layouts
            problems.append(f"{'with' if include_top else 'without'} top: {str(exc).splitlines()[0][:160]}")
            continue
        return model
    hint = "" if head != "predictions" else " (a _notop file serves every --head but predictions)"
    raise ConfigError(f"{path}: these weights do not fit Xception{hint}; {'; '.join(problems)}")
