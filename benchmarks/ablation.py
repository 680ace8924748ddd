"""Train the colour-quality ablation's models from one dataset, with the library alone (no Prefect, any backend).

QUALITY.md compares model variants on photos they never saw. Training them is the slow part on a CPU, so this
script trains every variant from one dataset (shards + stored embeddings) with ``colorization.network.training.Trainer``
and nothing else: it runs where only Keras and a backend are installed, e.g. under ``KERAS_BACKEND=jax`` on a
GPU machine. Each variant is written to ``OUT/NAME/`` (``model.keras`` and its card), ready for

    colorization evaluate PHOTOS --model OUT/paper --compare OUT/classification ...

which scores them all on the same photos beside the grey baseline. The script prints each variant's training
photos/s and final validation figures. Models are trained in float32 (no mixed precision), so that they load
and run the same on a CPU.

Run as ``python benchmarks/ablation.py DATASET OUT [--variants regression classification ...] [--epochs 25]
[--extractor ID]``; the extractor's embeddings (``--head``) decide between the paper's global vector and the
spatial map.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path

from colorization.dataset.shards import Dataset
from colorization.network import device
from colorization.network.training import BEFORE_OPTIONS, TrainConfig, Trainer

FIGURES = ("psnr", "ssim", "auc", "delta_e", "colorfulness_ratio")
PLAIN = BEFORE_OPTIONS  # training as the paper's: constant rate, no dropout, last epoch, MSE
VARIANTS: dict[str, dict] = {
    "regression": {"objective": "regression"},  # today's defaults: Huber, cosine, dropout 0.5, best epoch
    "regression-mse": {"objective": "regression", "loss": "mse"},
    "regression-plain": {"objective": "regression", **PLAIN},
    "regression-cosine": {"objective": "regression", **PLAIN, "schedule": "cosine"},
    "regression-wide": {"objective": "regression", "width": 1.0},
    "regression-long": {"objective": "regression", "epochs_factor": 2},
    "regression-dropout-0.7": {"objective": "regression", "dropout": 0.7},
    "regression-relu": {"objective": "regression", "activation": "relu"},
    "classification": {"objective": "classification"},
    "classification-plain": {"objective": "classification", **PLAIN},
    "classification-wide": {"objective": "classification", "width": 1.0},
    "classification-long": {"objective": "classification", "epochs_factor": 2},
}


def train_variant(dataset: Dataset, out: Path, name: str, base: TrainConfig, extractor: str | None) -> dict:
    """Train one variant from scratch into ``out/name``; returns its card with the training photos/s."""
    options = dict(VARIANTS[name])
    epochs = base.epochs * options.pop("epochs_factor", 1)
    config = TrainConfig(**{**base.__dict__, "epochs": epochs, **options})
    trainer = Trainer(dataset, out / name, config, extractor)
    trainer.start(resume=False)
    started = time.perf_counter()
    card = trainer.run()
    seconds = time.perf_counter() - started
    return {**card, "photos_per_second": trainer.train_split.size * epochs / seconds, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="dataset with shards and one set of embeddings")
    parser.add_argument("out", type=Path, help="folder for one model folder per variant")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["regression", "classification"])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--validation-percent", type=float, default=10.0)
    parser.add_argument("--extractor", default=None, help="embedding set, when the dataset has several")
    parser.add_argument("--seed", type=int, default=0, help="weights and batch order (the split is by photo id)")
    args = parser.parse_args()

    base = TrainConfig(args.epochs, args.batch_size, 1e-3, args.width, args.validation_percent, seed=args.seed,
                       mixed_precision=False)
    dataset = Dataset(args.dataset)
    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, {device.describe()}")
    failed = 0
    for name in args.variants:
        try:
            card = train_variant(dataset, args.out, name, base, args.extractor)
        except Exception:  # one variant failing must not cost the others their run
            failed += 1
            print(f"{name}: FAILED\n{traceback.format_exc()}", flush=True)
            continue
        evaluation = card.get("evaluation", {})
        figures = ", ".join(f"{f} {evaluation['model'][f]['mean']:.4g} vs {evaluation['grey'][f]['mean']:.4g}"
                            for f in FIGURES if f in evaluation.get("model", {}))
        print(f"{name}: {card['epochs']} epochs in {card['seconds']:.0f} s, {card['photos_per_second']:.0f} "
              f"photos/s; validation ({evaluation.get('photos')} photos), model vs grey: {figures}"
              f"{'; STALLED (validation loss never fell)' if card.get('stalled') else ''}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
