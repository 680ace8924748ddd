"""The ``colorization`` command: one subcommand per flow.

Paths on the command line are taken from the current folder. Problems with the arguments print one line
starting ``colorization: error:`` and exit with status 2, before any flow or Prefect server starts; so does a
folder another run is using (``--wait`` waits for it instead). A run that fails exits with status 1. With
``PREFECT_API_URL`` set, runs report to that server; otherwise a temporary one is started for the command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from colorization import preflight, quiet
from colorization.errors import ConfigError
from colorization.images import DEFAULT_MAX_PIXELS
from colorization.lock import LOCK_FILE, ensure_free
from colorization.preflight import HEADS, KEEPS, OBJECTIVES, SCHEDULES
from colorization.shards import ROWS_PER_SHARD

OBJECTIVE_HELP = ("regression (MSE on a,b, the paper's; default) or classification (Zhang et al. 2016: "
                  "rebalanced cross-entropy over a,b bins)")
DROPOUT_HELP = "share of the embedding's channels dropped at each training step (default 0: none)"
KEEP_HELP = "save the weights of the epoch with the lowest validation loss (best) or of the last epoch (default)"
SCHEDULE_HELP = "learning rate over the epochs: a half cosine down to 2%% of --learning-rate (default) or constant"
TEMPERATURE_HELP = "annealed-mean temperature of a classification model (default: its card's, 0.38)"

HEAD_HELP = ("what Xception gives the model: the 10x10x2048 feature map, fused spatially (default: it colours "
             "best, QUALITY.md), the 2048-d pooled features, or the paper's 1000-class softmax")


def _path(value: str) -> Path:
    return Path(value).expanduser().resolve()


def _weights(value: str) -> str:
    """A weights keyword as it is, a weights file as an absolute path (flows take relative ones from the
    project root, the command line from the current folder)."""
    return value if value in ("imagenet", "none", "auto") else str(_path(value))


def _start(args: argparse.Namespace, *folders: Path, lock_name: str = LOCK_FILE, keras: bool = False) -> None:
    """After the checks: refuse folders another run holds (unless ``--wait``), import Keras for a command whose
    flow module needs it (quietly: :mod:`colorization.quiet`), then start the Prefect API."""
    if not args.wait:
        for folder in folders:
            ensure_free(folder, lock_name)
    if keras:
        quiet.import_keras()
    from flows.common import start_api

    start_api()


def _preprocess(args: argparse.Namespace) -> None:
    preflight.check_preprocess(args.source, args.dataset, args.size, args.rows_per_shard, args.workers)
    _start(args, args.dataset)
    from flows.preprocess import preprocess

    preprocess(
        source=args.source,
        dataset=args.dataset,
        size=args.size,
        rows_per_shard=args.rows_per_shard,
        workers=args.workers,
        dask_address=args.dask_address,
        keep_grey=args.keep_grey,
        wait=args.wait,
    )


def _embed(args: argparse.Namespace) -> None:
    preflight.check_embed(args.dataset, args.weights, args.batch_size)
    _start(args, args.dataset, keras=True)
    from flows.embed import embed

    embed(dataset=args.dataset, weights=args.weights, head=args.head, batch_size=args.batch_size, wait=args.wait)


def _train(args: argparse.Namespace) -> None:
    preflight.check_train(args.dataset, args.model_dir, args.epochs, args.batch_size, args.learning_rate,
                          args.width, args.resume, args.extractor, args.validation_percent, args.dropout)
    _start(args, args.model_dir, keras=True)
    from flows.train import train

    train(dataset=args.dataset, model_dir=args.model_dir, epochs=args.epochs, batch_size=args.batch_size,
          learning_rate=args.learning_rate, width=args.width, resume=args.resume, extractor=args.extractor,
          validation_percent=args.validation_percent, objective=args.objective, schedule=args.schedule,
          dropout=args.dropout, keep=args.keep, wait=args.wait)


def _pipeline(args: argparse.Namespace) -> None:
    preflight.check_pipeline(args.source, args.dataset, args.model_dir, args.size,
                             "imagenet" if args.weights == "auto" else args.weights, args.epochs, args.batch_size,
                             args.width, args.workers, args.resume, args.validation_percent, args.dropout)
    _start(args, args.dataset, args.model_dir, keras=True)
    from colorization.extractor import RANDOM_WARNING, imagenet_available
    from flows.train import pipeline

    weights = args.weights
    if weights == "auto":
        weights = "imagenet" if imagenet_available(args.head) else "none"
        if weights == "none":
            print(f"\n*** No ImageNet Xception weights (offline?). {RANDOM_WARNING}. ***\n", file=sys.stderr)
    pipeline(source=args.source, dataset=args.dataset, model_dir=args.model_dir, size=args.size, weights=weights,
             head=args.head, epochs=args.epochs, batch_size=args.batch_size, width=args.width, workers=args.workers,
             resume=args.resume, validation_percent=args.validation_percent, objective=args.objective,
             schedule=args.schedule, dropout=args.dropout, keep=args.keep, wait=args.wait)


def _colorize(args: argparse.Namespace) -> None:
    from colorization.catalog import LOCK_NAME

    preflight.check_colorize(args.input, args.output, args.model, args.weights, args.batch_size, args.workers,
                             args.max_pixels, args.temperature, args.allow_empty)
    _start(args, args.output, lock_name=LOCK_NAME)
    from flows.colorize import colorize

    colorize(input=args.input, output=args.output, model=args.model, weights=args.weights,
             batch_size=args.batch_size, recolor=args.recolor, overwrite=args.overwrite, workers=args.workers,
             dask_address=args.dask_address, max_pixels=args.max_pixels, upsample=args.upsample,
             temperature=args.temperature, allow_empty=args.allow_empty, wait=args.wait)


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one ``colorization: error:`` line (no usage dump), like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"colorization: error: {message} (see {self.prog} --help)\n")


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="if another run is using the folder, wait for it to finish instead of exiting")


VERBOSE_HELP = ("show every detail: Prefect's task-run lines from the Dask workers, TensorFlow's C++ log, and "
                "whatever else a normal run keeps off the terminal")


def _add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help=VERBOSE_HELP)


def _evaluate(args: argparse.Namespace) -> None:
    preflight.check_evaluate(args.photos, [args.model, *args.compare], args.report, args.long_side, args.batch_size,
                             args.temperature)
    from flows.common import start_api
    from flows.evaluate import evaluate

    start_api()
    evaluate(model=args.model, photos=args.photos, report_dir=args.report, compare=args.compare,
             long_side=args.long_side, batch_size=args.batch_size, upsample=args.upsample,
             temperature=args.temperature)


def _add_upsample(command: argparse.ArgumentParser) -> None:
    command.add_argument("--upsample", choices=["bicubic", "guided"], default="bicubic",
                         help="predicted colour to full size: bicubic (default) or guided by the photo's lightness "
                              "(edge-aware, slower)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="colorization",
        description=__doc__.splitlines()[0],
        epilog="Runs report to the Prefect server named by PREFECT_API_URL when it is set; otherwise each command "
        "starts a temporary one (allowed 120 s to start, or PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS if "
        "larger, and one retry). A run holds a lock on the folder it writes; a second run on it exits with "
        "status 2 naming the first, or waits for it with --wait.",
    )
    _add_verbose(parser, False)
    commands = parser.add_subparsers(dest="command", required=True)

    pre = commands.add_parser("preprocess", help="photo folder -> Lab Parquet shards (incremental)")
    pre.add_argument("source", type=_path, help="folder tree of photos")
    pre.add_argument("--dataset", type=_path, required=True, help="dataset folder to create or extend")
    pre.add_argument("--size", type=int, default=256, help="square crop size in pixels (default 256)")
    pre.add_argument("--rows-per-shard", type=int, default=ROWS_PER_SHARD,
                     help=f"photos per shard file (default {ROWS_PER_SHARD})")
    pre.add_argument("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
    pre.add_argument("--dask-address", default=None, help="use this Dask scheduler instead of a local cluster")
    pre.add_argument("--keep-grey", action="store_true", help="keep grey and sepia photos in the shards")
    _add_wait(pre)
    pre.set_defaults(run=_preprocess)

    emb = commands.add_parser("embed", help="shards -> Xception embeddings, once per photo")
    emb.add_argument("--dataset", type=_path, required=True, help="dataset folder written by preprocess")
    emb.add_argument("--weights", type=_weights, default="imagenet",
                     help="imagenet (Keras download), none (random; tests), or a file")
    emb.add_argument("--head", choices=HEADS, default="spatial", help=HEAD_HELP)
    emb.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    _add_wait(emb)
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
    trn.add_argument("--objective", choices=OBJECTIVES, default="regression", help=OBJECTIVE_HELP)
    trn.add_argument("--schedule", choices=SCHEDULES, default="cosine", help=SCHEDULE_HELP)
    trn.add_argument("--dropout", type=float, default=0.0, help=DROPOUT_HELP)
    trn.add_argument("--keep", choices=KEEPS, default="last", help=KEEP_HELP)
    _add_wait(trn)
    trn.set_defaults(run=_train)

    pipe = commands.add_parser("pipeline", help="preprocess -> embed -> train from one photo folder")
    pipe.add_argument("source", type=_path, help="folder tree of colour photos to learn from")
    pipe.add_argument("--dataset", type=_path, required=True)
    pipe.add_argument("--model-dir", type=_path, required=True)
    pipe.add_argument("--size", type=int, default=256)
    pipe.add_argument("--weights", type=_weights, default="imagenet",
                      help="imagenet, none, a file, or auto (imagenet when obtainable, else random with a warning)")
    pipe.add_argument("--head", choices=HEADS, default="spatial", help=HEAD_HELP)
    pipe.add_argument("--epochs", type=int, default=10)
    pipe.add_argument("--batch-size", type=int, default=32)
    pipe.add_argument("--width", type=float, default=1.0)
    pipe.add_argument("--workers", type=int, default=None)
    pipe.add_argument("--resume", action="store_true")
    pipe.add_argument("--validation-percent", type=float, default=10.0, help="share of photos held out (default 10)")
    pipe.add_argument("--objective", choices=OBJECTIVES, default="regression", help=OBJECTIVE_HELP)
    pipe.add_argument("--schedule", choices=SCHEDULES, default="cosine", help=SCHEDULE_HELP)
    pipe.add_argument("--dropout", type=float, default=0.0, help=DROPOUT_HELP)
    pipe.add_argument("--keep", choices=KEEPS, default="last", help=KEEP_HELP)
    _add_wait(pipe)
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
    col.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                     help=f"refuse larger photos (default {DEFAULT_MAX_PIXELS // 1_000_000} MP)")
    _add_wait(col)
    _add_upsample(col)
    col.add_argument("--temperature", type=float, default=None, help=TEMPERATURE_HELP)
    col.add_argument("--allow-empty", action="store_true",
                     help="an input folder with no photo is nothing to do, not an error (for a scheduled inbox)")
    col.set_defaults(run=_colorize)

    ev = commands.add_parser("evaluate", help="score models on colour photos, beside the grey baseline")
    ev.add_argument("photos", type=_path, help="folder tree, .zip or .tar of colour photos (never modified)")
    ev.add_argument("--model", type=_path, required=True, help="trained model folder")
    ev.add_argument("--report", type=_path, default=None, help="report folder (default: MODEL/evaluation)")
    ev.add_argument("--compare", type=_path, nargs="+", default=[], help="more models to score on the same photos")
    ev.add_argument("--long-side", type=int, default=512, help="resize originals to this long side (default 512)")
    ev.add_argument("--batch-size", type=int, default=8, help="photos per network batch (default 8)")
    _add_upsample(ev)
    ev.add_argument("--temperature", type=float, default=None, help=TEMPERATURE_HELP)
    ev.set_defaults(run=_evaluate)
    for command in commands.choices.values():  # also after the subcommand, without resetting one given before it
        _add_verbose(command, argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet.configure(args.verbose)  # before anything loads TensorFlow
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
