"""The ``colorization`` command: one subcommand per flow.

Paths on the command line are taken from the current folder. Problems with the arguments print one line
starting ``colorization: error:`` and exit with status 2; a run that fails exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from colorization.errors import ConfigError

HEADS = ["predictions", "avg_pool", "spatial"]  # colorization.extractor.HEADS, without importing Keras here
HEAD_HELP = ("1000-class softmax as in the paper (default), 2048-d pooled features, or the 10x10x2048 map "
             "they are pooled from (the model then fuses it spatially)")


def _path(value: str) -> Path:
    return Path(value).expanduser().resolve()


def _weights(value: str) -> str:
    """A weights keyword as it is, a weights file as an absolute path (flows take relative ones from the
    project root, the command line from the current folder)."""
    return value if value in ("imagenet", "none", "auto") else str(_path(value))


def _check_weights(weights: str | None) -> None:
    if weights not in (None, "imagenet", "none", "auto") and not Path(weights).is_file():
        raise ConfigError(f"{weights}: no such weights file (use --weights imagenet, none, or a file path)")


def _preprocess(args: argparse.Namespace) -> None:
    from colorization.preprocess import check_params
    from colorization.shards import Dataset
    from flows.preprocess import preprocess

    check_params(args.source, args.size, args.rows_per_shard)
    Dataset(args.dataset).check_size(args.size)
    preprocess(
        source=args.source,
        dataset=args.dataset,
        size=args.size,
        rows_per_shard=args.rows_per_shard,
        workers=args.workers,
        dask_address=args.dask_address,
        keep_grey=args.keep_grey,
    )


def _embed(args: argparse.Namespace) -> None:
    from colorization.shards import Dataset

    Dataset(args.dataset).size()
    _check_weights(args.weights)
    from flows.embed import embed

    embed(dataset=args.dataset, weights=args.weights, head=args.head, batch_size=args.batch_size)


def _train(args: argparse.Namespace) -> None:
    from colorization.shards import Dataset
    from colorization.training import TrainConfig, pick_extractor
    from flows.train import train

    TrainConfig(args.epochs, args.batch_size, args.learning_rate, args.width, args.validation_percent).check()
    pick_extractor(Dataset(args.dataset), args.extractor)
    train(dataset=args.dataset, model_dir=args.model_dir, epochs=args.epochs, batch_size=args.batch_size,
          learning_rate=args.learning_rate, width=args.width, resume=args.resume, extractor=args.extractor,
          validation_percent=args.validation_percent)


def _pipeline(args: argparse.Namespace) -> None:
    from colorization.extractor import RANDOM_WARNING, imagenet_available
    from colorization.preprocess import check_params
    from colorization.training import TrainConfig
    from flows.train import pipeline

    check_params(args.source, args.size, 512)
    TrainConfig(args.epochs, args.batch_size, 1e-3, args.width, args.validation_percent).check()
    _check_weights(args.weights)
    weights = args.weights
    if weights == "auto":
        weights = "imagenet" if imagenet_available(args.head) else "none"
        if weights == "none":
            print(f"\n*** No ImageNet Xception weights (offline?). {RANDOM_WARNING}. ***\n", file=sys.stderr)
    pipeline(source=args.source, dataset=args.dataset, model_dir=args.model_dir, size=args.size, weights=weights,
             head=args.head, epochs=args.epochs, batch_size=args.batch_size, width=args.width, workers=args.workers,
             resume=args.resume, validation_percent=args.validation_percent)


def _colorize(args: argparse.Namespace) -> None:
    from colorization.card import read_card
    from colorization.catalog import check_paths
    from flows.colorize import colorize

    check_paths(args.input, args.output)
    read_card(args.model)
    _check_weights(args.weights)
    colorize(input=args.input, output=args.output, model=args.model, weights=args.weights,
             batch_size=args.batch_size, recolor=args.recolor, overwrite=args.overwrite, workers=args.workers,
             dask_address=args.dask_address, max_pixels=args.max_pixels)


def _evaluate(args: argparse.Namespace) -> None:
    from colorization.card import read_card
    from flows.evaluate import evaluate

    for model in [args.model, *args.compare]:
        read_card(model)
    if not args.photos.exists():
        raise ConfigError(f"{args.photos}: no such folder or archive")
    if args.long_side < 32:
        raise ConfigError(f"--long-side must be at least 32, got {args.long_side}")
    evaluate(model=args.model, photos=args.photos, report_dir=args.report, compare=args.compare,
             long_side=args.long_side, batch_size=args.batch_size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorization", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    pre = commands.add_parser("preprocess", help="photo folder -> Lab Parquet shards (incremental)")
    pre.add_argument("source", type=_path, help="folder tree of photos")
    pre.add_argument("--dataset", type=_path, required=True, help="dataset folder to create or extend")
    pre.add_argument("--size", type=int, default=256, help="square crop size in pixels (default 256)")
    pre.add_argument("--rows-per-shard", type=int, default=512, help="photos per shard file (default 512)")
    pre.add_argument("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
    pre.add_argument("--dask-address", default=None, help="use this Dask scheduler instead of a local cluster")
    pre.add_argument("--keep-grey", action="store_true", help="keep grey and sepia photos in the shards")
    pre.set_defaults(run=_preprocess)

    emb = commands.add_parser("embed", help="shards -> Xception embeddings, once per photo")
    emb.add_argument("--dataset", type=_path, required=True, help="dataset folder written by preprocess")
    emb.add_argument("--weights", type=_weights, default="imagenet",
                     help="imagenet (Keras download), none (random; tests), or a file")
    emb.add_argument("--head", choices=HEADS, default="predictions", help=HEAD_HELP)
    emb.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    emb.set_defaults(run=_embed)

    trn = commands.add_parser("train", help="train the fusion model from shards + embeddings")
    trn.add_argument("--dataset", type=_path, required=True, help="dataset folder with shards and embeddings")
    trn.add_argument("--model-dir", type=_path, required=True, help="where model.keras, model.json and checkpoints go")
    trn.add_argument("--epochs", type=int, default=10, help="total epochs, counting resumed ones (default 10)")
    trn.add_argument("--batch-size", type=int, default=32, help="default 32")
    trn.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default 0.001)")
    trn.add_argument("--width", type=float, default=1.0, help="filter multiplier; 1.0 = the paper (default)")
    trn.add_argument("--resume", action="store_true", help="continue the checkpoint in --model-dir")
    trn.add_argument("--extractor", default=None, help="embedding set to use when the dataset has several")
    trn.add_argument("--validation-percent", type=float, default=10.0, help="share of photos held out (default 10)")
    trn.set_defaults(run=_train)

    pipe = commands.add_parser("pipeline", help="preprocess -> embed -> train from one photo folder")
    pipe.add_argument("source", type=_path, help="folder tree of colour photos to learn from")
    pipe.add_argument("--dataset", type=_path, required=True)
    pipe.add_argument("--model-dir", type=_path, required=True)
    pipe.add_argument("--size", type=int, default=256)
    pipe.add_argument("--weights", type=_weights, default="imagenet",
                      help="imagenet, none, a file, or auto (imagenet when obtainable, else random with a warning)")
    pipe.add_argument("--head", choices=HEADS, default="predictions", help=HEAD_HELP)
    pipe.add_argument("--epochs", type=int, default=10)
    pipe.add_argument("--batch-size", type=int, default=32)
    pipe.add_argument("--width", type=float, default=1.0)
    pipe.add_argument("--workers", type=int, default=None)
    pipe.add_argument("--resume", action="store_true")
    pipe.add_argument("--validation-percent", type=float, default=10.0)
    pipe.set_defaults(run=_pipeline)

    col = commands.add_parser("colorize", help="colour a photo archive at full resolution (incremental)")
    col.add_argument("input", type=_path, help="folder tree, .zip or .tar of photos (never modified)")
    col.add_argument("output", type=_path, help="folder that mirrors the input with coloured photos")
    col.add_argument("--model", type=_path, default=_path("data/models/samples"), help="trained model folder")
    col.add_argument("--weights", type=_weights, default=None,
                     help="Xception weights the model was trained with (default: as recorded in its card)")
    col.add_argument("--batch-size", type=int, default=8, help="photos per network batch (default 8)")
    col.add_argument("--recolor", action="store_true", help="also colour photos that are already in colour")
    col.add_argument("--overwrite", action="store_true", help="redo everything, replacing existing outputs")
    col.add_argument("--workers", type=int, default=None, help="local Dask workers for decoding and encoding")
    col.add_argument("--dask-address", default=None, help="use this Dask scheduler instead of a local cluster")
    col.add_argument("--max-pixels", type=int, default=200_000_000, help="refuse larger photos (default 200 MP)")
    col.set_defaults(run=_colorize)

    ev = commands.add_parser("evaluate", help="score models on colour photos, beside the grey baseline")
    ev.add_argument("photos", type=_path, help="folder tree, .zip or .tar of colour photos (never modified)")
    ev.add_argument("--model", type=_path, required=True, help="trained model folder")
    ev.add_argument("--report", type=_path, default=None, help="report folder (default: MODEL/evaluation)")
    ev.add_argument("--compare", type=_path, nargs="+", default=[], help="more models to score on the same photos")
    ev.add_argument("--long-side", type=int, default=512, help="resize originals to this long side (default 512)")
    ev.add_argument("--batch-size", type=int, default=8, help="photos per network batch (default 8)")
    ev.set_defaults(run=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], None] = args.run
    try:
        run(args)
    except ConfigError as exc:
        print(f"colorization: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the flow has logged the details; end with one line, not a traceback
        print(f"colorization: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
