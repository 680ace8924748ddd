"""Which accelerator the active Keras backend sees, without importing a framework it does not use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras


def has_gpu() -> bool:
    """Whether the active Keras backend (TensorFlow, JAX or PyTorch) has a GPU to run on."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def describe() -> str:
    """A short device description for logs and artifacts, e.g. ``jax/gpu`` or ``tensorflow/cpu``."""
    return f"{keras.backend.backend()}/{'gpu' if has_gpu() else 'cpu'}"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under a Keras dtype policy (e.g. ``mixed_float16``), restoring the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def compute_policy(mixed_precision: bool | None = None) -> str:
    """``mixed_float16`` on a GPU (or when forced), ``float32`` otherwise."""
    use_mixed = has_gpu() if mixed_precision is None else mixed_precision
    return "mixed_float16" if use_mixed else "float32"
