"""The ``colorization`` command: one subcommand per flow.

``--version`` prints the installed version; ``COMMAND --help`` each option with its default, and examples.

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
from typing import NoReturn, get_args

from colorization import preflight, quiet
from colorization.dataset.shards import ROWS_PER_SHARD
from colorization.errors import ConfigError
from colorization.lock import LOCK_FILE, ensure_free
from colorization.photos.images import DEFAULT_MAX_PIXELS, Framing
from colorization.photos.lab import GREY_THRESHOLD
from colorization.preflight import ACTIVATIONS, DEFAULT_HEAD, HEADS, KEEPS, LOSSES, OBJECTIVES, SCHEDULES
from flows.paths import project_path

OBJECTIVE_HELP = ("what the decoder learns: regression (a,b directly, the paper's; see --loss) or classification "
                  "(Zhang et al. 2016: rebalanced cross-entropy over a,b bins)")
SCHEDULE_HELP = "learning rate over the epochs: a half cosine down to 2%% of the initial rate, or constant"
DROPOUT_HELP = "share of the embedding's channels dropped at each training step (0 drops none; QUALITY.md)"
KEEP_HELP = "which epoch's weights to save: the one with the lowest validation loss (best), or the last"
LOSS_HELP = ("a regression model's loss on a,b: huber (squared for small errors, absolute for large; colours unseen "
             "photos more faithfully, QUALITY.md) or mse, the paper's")
ACTIVATION_HELP = ("of the fusion and decoder layers: leaky_relu (no unit can stop learning for good; a ReLU "
                   "run can stall at one colour, QUALITY.md) or relu, the paper's")
TEMPERATURE_HELP = "annealed-mean temperature of a classification model (default: its card's, 0.38)"
SATURATION_HELP = ("scale the predicted colour's chroma: above 1 more vivid, below 1 paler (default: 1, the "
                   "model's own; README's colorize section has the measured trade-off)")

SATURATIONS_HELP = ("scale the predicted colour's chroma, as colorize does (default: 1, the model's own); "
                    "several score each model at each, to choose one for an archive, e.g. --saturation 1 1.25 1.5")

HEAD_HELP = ("what Xception gives the model: maps, its exit and middle flows' maps at their own sizes, which the "
             "model stacks on one 16x16 grid and fuses spatially (colours best, QUALITY.md; ~130 KB a photo on "
             "disk); hypercolumn, the same stacked before storing (~250 KB; models trained before maps existed); "
             "spatial, the exit flow's 10x10x2048 map alone (~50 KB); middle, the middle flow's 19x19x728 map; "
             "avg_pool, the 2048-d pooled features; or predictions, the paper's 1000-class softmax")


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
    preflight.check_preprocess(args.source, args.dataset, args.size, args.rows_per_shard, args.workers,
                               args.framing, args.grey_threshold)
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
        grey_threshold=args.grey_threshold,
        framing=args.framing,
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
          dropout=args.dropout, keep=args.keep, loss=args.loss, activation=args.activation, seed=args.seed,
          wait=args.wait)


def _pipeline(args: argparse.Namespace) -> None:
    preflight.check_pipeline(args.source, args.dataset, args.model_dir, args.size,
                             "imagenet" if args.weights == "auto" else args.weights, args.epochs, args.batch_size,
                             args.width, args.workers, args.resume, args.validation_percent, args.dropout)
    _start(args, args.dataset, args.model_dir, keras=True)
    from colorization.network.extractor import RANDOM_WARNING, imagenet_available
    from flows.train import pipeline

    weights = args.weights
    if weights == "auto":
        weights = "imagenet" if imagenet_available(args.head) else "none"
        if weights == "none":
            print(f"\n*** --weights auto: no ImageNet Xception weights here (offline?), so random ones. "
                  f"{RANDOM_WARNING}. For a real model pass --weights imagenet where Keras can download them, or "
                  "--weights FILE (README: embed). ***\n", file=sys.stderr)
    pipeline(source=args.source, dataset=args.dataset, model_dir=args.model_dir, size=args.size, weights=weights,
             head=args.head, epochs=args.epochs, batch_size=args.batch_size, width=args.width, workers=args.workers,
             resume=args.resume, validation_percent=args.validation_percent, objective=args.objective,
             schedule=args.schedule, dropout=args.dropout, keep=args.keep, loss=args.loss,
             activation=args.activation, seed=args.seed, wait=args.wait)


def _colorize(args: argparse.Namespace) -> None:
    from colorization.colorize.catalog import LOCK_NAME

    preflight.check_colorize(args.input, args.output, args.model, args.weights, args.batch_size, args.workers,
                             args.max_pixels, args.temperature, args.allow_empty, args.saturation)
    _start(args, args.output, lock_name=LOCK_NAME)
    from flows.colorize import colorize

    colorize(input=args.input, output=args.output, model=args.model, weights=args.weights,
             batch_size=args.batch_size, recolor=args.recolor, overwrite=args.overwrite, workers=args.workers,
             dask_address=args.dask_address, max_pixels=args.max_pixels, upsample=args.upsample,
             temperature=args.temperature, saturation=args.saturation, allow_empty=args.allow_empty, wait=args.wait)


def _evaluate(args: argparse.Namespace) -> None:
    preflight.check_evaluate(args.photos, [args.model, *args.compare], args.report, args.long_side, args.batch_size,
                             args.temperature, args.saturation, args.max_pixels)
    from flows.common import start_api
    from flows.evaluate import evaluate

    start_api()
    evaluate(model=args.model, photos=args.photos, report_dir=args.report, compare=args.compare,
             long_side=args.long_side, batch_size=args.batch_size, max_pixels=args.max_pixels, upsample=args.upsample,
             temperature=args.temperature, saturation=args.saturation)


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one ``colorization: error:`` line (no usage dump), like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"colorization: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's help ends with its default, unless the help says it already or the option is a flag or has
    no default; descriptions and the examples epilog are printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        nothing = action.default is None or action.default is False or action.default == [] \
            or action.default is argparse.SUPPRESS  # by identity: a default of 0 or 0.0 is worth showing
        if not action.option_strings or "default" in text or nothing:
            return text
        return f"{text} (default: %(default)s)"


def _version() -> str:
    """The installed package's version (``pip install -e .``), or the source's when it is run uninstalled."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("colorization")
    except PackageNotFoundError:
        from colorization import __version__

        return f"{__version__} (not installed)"


def _command(commands: argparse._SubParsersAction, name: str, summary: str, examples: str) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does, lists its options with their defaults, then examples."""
    return commands.add_parser(name, help=summary, description=summary[:1].upper() + summary[1:] + ".",
                               epilog="examples:\n" + examples.strip("\n"), formatter_class=_HelpFormatter)


def _add_max_pixels(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse larger photos (default: {DEFAULT_MAX_PIXELS:_}, i.e. "
                             f"{DEFAULT_MAX_PIXELS // 1_000_000} MP)")


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="if another run is using the folder, wait for it to finish instead of exiting")


VERBOSE_HELP = ("show every detail: Prefect's task-run lines from the Dask workers, TensorFlow's C++ log, and "
                "whatever else a normal run keeps off the terminal")


def _add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", default=default, help=VERBOSE_HELP)


def _add_upsample(command: argparse.ArgumentParser) -> None:
    command.add_argument("--upsample", choices=["bicubic", "guided"], default="bicubic",
                         help="predicted colour to full size: bicubic, or guided by the photo's lightness "
                              "(edge-aware, slower)")


def _add_workers(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--workers", type=int, default=None,
                         help=f"local Dask worker processes {what} (default: one per core)")
    command.add_argument("--dask-address", default=None, metavar="ADDR",
                         help="use the Dask scheduler at ADDR, e.g. tcp://scheduler:8786 (default: a local "
                              "cluster, or COLORIZATION_DASK_ADDRESS when set)")


DEMO_MODEL = "data/models/samples"  # colorize's default model: make demo's, in the project
MAIN_EPILOG = """\
Paths are taken from the current folder. Runs report to the Prefect server named by PREFECT_API_URL when it
is set; otherwise each command starts a temporary one (allowed 120 s to start, or
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS if larger, and one retry). A run holds a lock on the folder
it writes; a second run on it exits with status 2 naming the first, or waits for it with --wait.

examples:
  colorization pipeline data/samples/photos --dataset data/datasets/samples --model-dir data/models/samples
  colorization colorize data/samples/archive data/colorized/samples --model data/models/samples
  colorization colorize --help      # a command's options, their defaults, and examples
"""
PREPROCESS_EXAMPLES = """
  colorization preprocess data/samples/photos --dataset data/datasets/samples --size 128
  colorization preprocess /archives/scans --dataset /data/scans --workers 8 --keep-grey
"""
EMBED_EXAMPLES = """
  colorization embed --dataset data/datasets/samples
  colorization embed --dataset data/datasets/samples \\
      --weights ~/xception_weights_tf_dim_ordering_tf_kernels_notop.h5   # offline: a local weights file
"""
TRAIN_EXAMPLES = """
  colorization train --dataset data/datasets/samples --model-dir data/models/samples --epochs 25 --width 0.5
  colorization train --dataset data/datasets/samples --model-dir data/models/samples --epochs 40 --resume
"""
PIPELINE_EXAMPLES = """
  colorization pipeline data/samples/photos --dataset data/datasets/samples --model-dir data/models/samples \\
      --size 128 --width 0.5 --epochs 25 --weights auto --resume          # what make demo runs
"""
COLORIZE_EXAMPLES = """
  colorization colorize data/samples/archive data/colorized/samples --model data/models/samples
  colorization colorize parish.zip parish-colour --model data/models/parish --upsample guided --wait
"""
EVALUATE_EXAMPLES = """
  colorization evaluate data/samples/photos --model data/models/samples
  colorization evaluate photos.tar --model models/a --compare models/b --report reports/a-vs-b
  colorization evaluate photos --model models/a --saturation 1 1.25 1.5   # which saturation for an archive
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="colorization",
        description="Learn to colour black-and-white photos, then colour whole photo archives: one subcommand per "
        "Prefect flow.",
        epilog=MAIN_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _add_verbose(parser, False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pre = _command(commands, "preprocess", "photo folder -> Lab Parquet shards (incremental)", PREPROCESS_EXAMPLES)
    pre.add_argument("source", type=_path, help="folder tree of photos")
    pre.add_argument("--dataset", type=_path, required=True, help="dataset folder to create or extend (required)")
    pre.add_argument("--size", type=int, default=256, help="square size in pixels, a multiple of 8")
    pre.add_argument("--framing", choices=get_args(Framing),
                     help="whole: the whole photo squeezed into the square, as colorize shows photos to the model "
                          "(a new dataset's default); crop: its centre square (default: the dataset's own)")
    pre.add_argument("--rows-per-shard", type=int, default=ROWS_PER_SHARD, help="photos per shard file")
    _add_workers(pre, "for decoding")
    pre.add_argument("--keep-grey", action="store_true", help="keep grey and sepia photos in the shards")
    pre.add_argument("--grey-threshold", type=float, default=GREY_THRESHOLD,
                     help="a,b spread (Lab units) under which a photo counts as grey or toned")
    _add_wait(pre)
    pre.set_defaults(run=_preprocess)

    emb = _command(commands, "embed", "shards -> Xception embeddings, once per photo", EMBED_EXAMPLES)
    emb.add_argument("--dataset", type=_path, required=True, help="dataset folder written by preprocess (required)")
    emb.add_argument("--weights", type=_weights, default="imagenet",
                     help="Xception weights: imagenet (Keras download), none (random: tests only), or a file")
    emb.add_argument("--head", choices=HEADS, default=DEFAULT_HEAD, help=HEAD_HELP)
    emb.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    _add_wait(emb)
    emb.set_defaults(run=_embed)

    trn = _command(commands, "train", "train the fusion model from shards + embeddings", TRAIN_EXAMPLES)
    trn.add_argument("--dataset", type=_path, required=True,
                     help="dataset folder with shards and embeddings (required)")
    trn.add_argument("--model-dir", type=_path, required=True,
                     help="where model.keras, model.json and checkpoints go (required)")
    _add_training(trn, learning_rate=True)
    trn.add_argument("--extractor", default=None, metavar="ID",
                     help="embedding set to use when the dataset has several (default: its only one)")
    _add_wait(trn)
    trn.set_defaults(run=_train)

    pipe = _command(commands, "pipeline", "preprocess -> embed -> train from one photo folder", PIPELINE_EXAMPLES)
    pipe.add_argument("source", type=_path, help="folder tree of colour photos to learn from")
    pipe.add_argument("--dataset", type=_path, required=True, help="dataset folder to create or extend (required)")
    pipe.add_argument("--model-dir", type=_path, required=True,
                      help="where model.keras, model.json and checkpoints go (required)")
    pipe.add_argument("--size", type=int, default=256, help="square size in pixels, a multiple of 8")
    pipe.add_argument("--weights", type=_weights, default="imagenet",
                      help="Xception weights: imagenet, none (random: tests only), a file, or auto (imagenet when "
                           "it can be had, else random weights, with a warning)")
    pipe.add_argument("--head", choices=HEADS, default=DEFAULT_HEAD, help=HEAD_HELP)
    _add_training(pipe, learning_rate=False)
    pipe.add_argument("--workers", type=int, default=None,
                      help="local Dask worker processes for preprocessing (default: one per core)")
    _add_wait(pipe)
    pipe.set_defaults(run=_pipeline)

    col = _command(commands, "colorize", "colour a photo archive at full resolution (incremental)",
                   COLORIZE_EXAMPLES)
    col.add_argument("input", type=_path, help="folder tree, .zip or .tar of photos (never modified)")
    col.add_argument("output", type=_path, help="folder that mirrors the input with coloured photos")
    col.add_argument("--model", type=_path, default=project_path(DEMO_MODEL),
                     help=f"trained model folder (default: the demo's, {project_path(DEMO_MODEL)}, wherever the "
                          "command runs)")
    col.add_argument("--weights", type=_weights, default=None,
                     help="Xception weights the model was trained with (default: as recorded in its card)")
    col.add_argument("--batch-size", type=int, default=8, help="photos per network batch")
    col.add_argument("--recolor", action="store_true", help="also colour photos that are already in colour")
    col.add_argument("--overwrite", action="store_true", help="redo everything, replacing existing outputs")
    _add_workers(col, "for decoding and encoding")
    _add_max_pixels(col)
    _add_wait(col)
    _add_upsample(col)
    col.add_argument("--temperature", type=float, default=None, help=TEMPERATURE_HELP)
    col.add_argument("--saturation", type=float, default=1.0, help=SATURATION_HELP)
    col.add_argument("--allow-empty", action="store_true",
                     help="an input folder with no photo is nothing to do, not an error (for a scheduled inbox)")
    col.set_defaults(run=_colorize)

    ev = _command(commands, "evaluate", "score models on colour photos, beside the grey baseline", EVALUATE_EXAMPLES)
    ev.add_argument("photos", type=_path, help="folder tree, .zip or .tar of colour photos (never modified)")
    ev.add_argument("--model", type=_path, required=True, help="trained model folder (required)")
    ev.add_argument("--report", type=_path, default=None, help="report folder (default: MODEL/evaluation)")
    ev.add_argument("--compare", type=_path, nargs="+", default=[], metavar="MODEL",
                    help="more models to score on the same photos (default: none)")
    ev.add_argument("--long-side", type=int, default=512, help="resize originals to this long side, in pixels")
    ev.add_argument("--batch-size", type=int, default=8, help="photos per network batch")
    _add_max_pixels(ev)
    _add_upsample(ev)
    ev.add_argument("--temperature", type=float, default=None, help=TEMPERATURE_HELP)
    ev.add_argument("--saturation", type=float, nargs="+", default=[1.0], metavar="SATURATION",
                    help=SATURATIONS_HELP)
    ev.set_defaults(run=_evaluate)
    for command in commands.choices.values():  # also after the subcommand, without resetting one given before it
        _add_verbose(command, argparse.SUPPRESS)
    return parser


def _add_training(command: argparse.ArgumentParser, learning_rate: bool) -> None:
    """The training options of train and pipeline (pipeline keeps the default learning rate)."""
    command.add_argument("--epochs", type=int, default=10, help="total epochs, counting resumed ones")
    command.add_argument("--batch-size", type=int, default=32, help="photos per training step")
    if learning_rate:
        command.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's initial learning rate")
    command.add_argument("--width", type=float, default=1.0,
                         help="filter multiplier of every layer; 1.0 = the paper's 6.6 M parameters")
    command.add_argument("--resume", action="store_true", help="continue the checkpoint in --model-dir")
    command.add_argument("--validation-percent", type=float, default=10.0,
                         help="share of the photos held out for validation, in percent")
    command.add_argument("--objective", choices=OBJECTIVES, default="regression", help=OBJECTIVE_HELP)
    command.add_argument("--schedule", choices=SCHEDULES, default="cosine", help=SCHEDULE_HELP)
    command.add_argument("--dropout", type=float, default=0.5, help=DROPOUT_HELP)
    command.add_argument("--keep", choices=KEEPS, default="best", help=KEEP_HELP)
    command.add_argument("--loss", choices=LOSSES, default="huber", help=LOSS_HELP)
    command.add_argument("--activation", choices=ACTIVATIONS, default="leaky_relu", help=ACTIVATION_HELP)
    command.add_argument("--seed", type=int, default=0,
                         help="initial weights and batch order (the validation split is by photo, not by seed)")


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
