"""Training and decoding speed of the two objectives, network alone: regression (the paper's MSE) against
classification (Zhang et al. 2016: rebalanced cross-entropy over the a,b bins, annealed-mean decoding).

Random weights, random inputs and random stored-like a,b targets held in memory, so only the network, the loss
and the decoding are timed (after a warm-up step that compiles). It also checks that the classification loss
falls on a fixed batch, which is what the backend must get right (gathers, reshapes under its compiler).

Run as ``.venv/bin/python benchmarks/objectives.py [--size 64] [--width 0.25] [--batch-size 8]``; on a GPU
under JAX with ``--size 256 --width 1.0 --batch-size 32 --mixed-precision`` (no Prefect, no TensorFlow needed).
"""

from __future__ import annotations

import argparse
import sys
import time

import keras
import numpy as np

from colorization.network import classification, colour_classes, device
from colorization.network.model import build_model
from colorization.network.training import compile_model
from colorization.photos import lab


def timed(run, repeats: int) -> float:
    """Seconds per call of ``run`` after one warm-up call."""
    run()
    started = time.perf_counter()
    for _ in range(repeats):
        run()
    return (time.perf_counter() - started) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per objective (default 10)")
    parser.add_argument("--mixed-precision", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n = args.batch_size
    inputs = {"L": rng.uniform(0, 255, (n, args.size, args.size, 1)).astype(np.float32),
              "embedding": rng.uniform(0, 1, (n, 1000)).astype(np.float32)}
    target = rng.integers(-80, 80, (n, args.size, args.size, 2)).astype(np.float32) / lab.AB_SCALE
    classes = len(colour_classes.ab_bins())
    weights = np.random.default_rng(1).uniform(0.5, 2.0, classes)
    policy = device.compute_policy(args.mixed_precision or None)
    print(f"{device.describe()}, {args.size}x{args.size}, width {args.width}, batch {n}, policy {policy}, Q {classes}")
    for objective in ("regression", "classification"):
        keras.utils.set_random_seed(0)
        with device.dtype_policy(policy):
            model = build_model(args.size, 1000, args.width, classes if objective == "classification" else 0)
            loss = classification.RebalancedCrossEntropy(weights.tolist()) if objective == "classification" else "mse"
            compile_model(model, 1e-3, loss)
        first = float(model.train_on_batch(inputs, target))
        step = timed(lambda: model.train_on_batch(inputs, target), args.steps)
        last = float(model.train_on_batch(inputs, target))
        network = classification.with_decoder(model, 0.38) if objective == "classification" else model
        decode = timed(lambda: network.predict_on_batch(inputs), args.steps)
        ab = np.asarray(network.predict_on_batch(inputs), np.float32) * lab.AB_SCALE
        print(f"{objective:>14}: train {n / step:8.1f} images/s, predict+decode {n / decode:8.1f} images/s, "
              f"loss {first:.4f} -> {last:.4f} after {args.steps + 2} steps, ab {ab.min():.1f}..{ab.max():.1f} "
              f"{ab.shape}")
        if not last < first or not np.isfinite(ab).all():
            print(f"FAILED: {objective} did not learn a fixed batch, or decoded non-finite a,b")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
