"""The ``train`` flow (deployment ``train/train``) and the ``pipeline`` flow: photos to a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from pydantic import Field

from colorization.colorize.gallery import markdown_gallery
from colorization.dataset.shards import Dataset
from colorization.evaluation.metrics import DIRECTION, grey_baseline
from colorization.network.card import checkpoint_extractor, head_of_id, is_random_id
from colorization.network.training import STALL_EPOCHS, EpochResult, TrainConfig, Trainer, to_srgb
from colorization.preflight import (
    DEFAULT_HEAD,
    Activation,
    Head,
    Keep,
    Loss,
    Objective,
    Schedule,
    check_pipeline,
    check_train,
)
from flows.common import LiveTable, gpu_slot, locked, resolve_weights
from flows.embed import embed
from flows.paths import project_path
from flows.preprocess import preprocess
from flows.prior import ab_prior

RANDOM_NOTE = (  # names no option: --weights none and a --weights auto that found no ImageNet weights both lead here
    "**WARNING: trained on embeddings of an Xception with RANDOM weights. This model is a plumbing test, not a "
    "colorizer: embed with --weights imagenet or a weights file for a real one.**"
)

METRIC_COLUMNS = {  # EpochResult's fields, with units, as the dashboard's train-metrics table names them
    "epoch": "epoch",
    "loss": "loss (training)",
    "val_loss": "loss (validation)",
    "psnr": "PSNR (dB)",
    "colorfulness": "colourfulness (model)",
    "colorfulness_true": "colourfulness (originals)",
    "images_per_second": "photos/s (training)",
}


@flow(name="train")
@locked("model_dir")
def train(
    dataset: Path = Path("data/datasets/samples"),
    model_dir: Path = Path("data/models/samples"),
    epochs: Annotated[int, Field(ge=1)] = 10,
    batch_size: Annotated[int, Field(ge=1)] = 32,
    learning_rate: Annotated[float, Field(gt=0)] = 1e-3,
    width: Annotated[float, Field(gt=0)] = 1.0,
    resume: bool = False,
    extractor: str | None = None,
    validation_percent: Annotated[float, Field(gt=0, lt=100)] = 10.0,
    seed: int = 0,
    objective: Objective = "regression",
    schedule: Schedule = "cosine",
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5,
    keep: Keep = "best",
    loss: Loss = "huber",
    activation: Activation = "leaky_relu",
    wait: bool = False,
) -> dict:
    """Train the fusion model on ``dataset``'s shards and embeddings into ``model_dir``.

    ``epochs`` is the total: ``resume`` continues a run's checkpoint up to it, with its optimizer state. A retry
    of a crashed flow run resumes by itself. ``extractor`` picks the embedding set when there are several.
    ``objective``: ``regression`` (a,b directly, the paper's; ``loss`` below) or ``classification`` (Zhang et
    al.'s rebalanced classification over a,b bins; the bin counts are taken first, one Dask task per shard not
    counted yet).
    ``schedule``: the learning rate falls along a half cosine over the epochs (default), or stays constant.
    ``dropout`` drops that share of the embedding's channels while training; ``keep`` saves the weights of the
    epoch with the lowest validation loss (``best``) or of the last epoch. ``loss`` is a regression model's:
    ``huber`` or the paper's ``mse``. ``activation``: ``leaky_relu`` or the paper's ``relu``, of the fusion and
    decoder layers (a ReLU run can stall at one colour for good). The defaults colour unseen photos best of what
    was measured (QUALITY.md). A run whose validation loss has not fallen after 4 epochs is warned about.
    The run holds ``model_dir``'s lock; ``wait`` waits for another run that holds it instead of failing.
    """
    logger = get_run_logger()
    dataset, model_dir, resume = project_path(dataset), project_path(model_dir), resume or flow_run.run_count > 1
    check_train(dataset, model_dir, epochs, batch_size, learning_rate, width, resume, extractor, validation_percent,
                dropout)
    config = TrainConfig(epochs, batch_size, learning_rate, width, validation_percent, seed, objective=objective,
                         schedule=schedule, dropout=dropout, keep=keep, loss=loss, activation=activation)
    trainer = Trainer(Dataset(dataset), model_dir, config, extractor)
    if objective == "classification":
        ab_prior(dataset=dataset, validation_percent=validation_percent)
    if is_random_id(trainer.extractor_id):
        logger.warning(RANDOM_NOTE.replace("*", ""))
    trainer.start(resume=resume)
    logger.info(
        "training %s (%s): %d train / %d validation images, embeddings %s, epochs %d..%d",
        trainer.model_dir, trainer.state.config.objective, trainer.train_split.size, trainer.val_split.size,
        trainer.extractor_id, trainer.state.epochs_done + 1, epochs,
    )
    rows = [_metrics_row(h) for h in trainer.state.history]
    table = LiveTable("train-metrics", f"Epochs of {trainer.model_dir}, figures on the validation split")

    def on_epoch(result: EpochResult) -> None:
        rows.append(_metrics_row(result))
        table.show(rows)
        logger.info("%s", ", ".join(f"{k} {v}" for k, v in result.row().items()))
        if result.epoch == STALL_EPOCHS and (note := trainer.stall_note()):
            logger.warning(note)

    with gpu_slot():
        card = trainer.run(on_epoch)
    _publish_samples(trainer, card)
    _publish_evaluation(card)
    stalled = trainer.stall_note()
    if stalled:
        logger.warning(stalled)
    _publish_model(trainer.model_dir, card, stalled)
    return card


def _metrics_row(result: EpochResult) -> dict:
    """One epoch as the dashboard's table shows it: columns named with their units."""
    return {METRIC_COLUMNS[name]: value for name, value in result.row().items()}


def _publish_model(model_dir: Path, card: dict, stalled: str | None = None) -> None:
    """Where the model is and what to do with it: paths as text (a browser opens no file:// link from the
    dashboard), under the ``stalled`` warning when the run learnt nothing."""
    lines = [
        f"**Model**: `{model_dir / 'model.keras'}` (card: `{model_dir / 'model.json'}`), the weights of epoch "
        f"{card['kept_epoch']} of {card['epochs']}.",
        f"**Next**: `colorization evaluate PHOTOS --model {model_dir}` to score it on photos it never saw, "
        f"`colorization colorize ARCHIVE --model {model_dir}` to colour an archive.",
    ]
    if card["random_extractor"]:
        lines.insert(0, RANDOM_NOTE)
    if stalled:
        lines.insert(0, f"**WARNING: {stalled}**")
    create_markdown_artifact(key="train-model", markdown="\n\n".join(lines), description="The trained model")


def _publish_samples(trainer: Trainer, card: dict, count: int = 6) -> None:
    """Before/after thumbnails of validation photos: grey input, prediction, original."""
    split = trainer.val_split if trainer.val_split.size else trainer.train_split
    inputs, target = next(split.batches(count))
    predicted = trainer.predict(inputs)
    rows = []
    for i in range(len(target)):
        predicted_rgb, original = (to_srgb(inputs["L"][i, ..., 0], ab) for ab in (predicted[i], target[i]))
        rows.append((f"validation {i + 1}", [grey_baseline(original), predicted_rgb, original]))
    metrics = card["metrics"]
    note = (
        f"{card['epochs']} epochs, val loss {metrics.get('val_loss')}, PSNR {metrics.get('psnr')} dB, "
        f"colourfulness {metrics.get('colorfulness')} (originals {metrics.get('colorfulness_true')})."
    )
    if card["random_extractor"]:
        note = RANDOM_NOTE + "\n\n" + note
    create_markdown_artifact(
        key="train-samples",
        markdown=markdown_gallery("Before / after (validation)", ["grey input", "model", "original"], rows, note),
        description="Validation samples",
    )


def _publish_evaluation(card: dict) -> None:
    """The validation split scored at model size (card ``evaluation``): model beside grey, figure by figure."""
    evaluation = card["evaluation"]
    rows = [
        {"figure": name, "better": DIRECTION[name],
         "model": evaluation["model"][name]["mean"], "grey": evaluation["grey"][name]["mean"]}
        for name in ("psnr", "ssim", "auc", "delta_e", "colorfulness_ratio")
    ]
    get_run_logger().info("validation (%d photos), model vs grey: %s", evaluation["photos"],
                          ", ".join(f"{r['figure']} {r['model']:.4g} vs {r['grey']:.4g}" for r in rows
                                    if r["model"] is not None))
    create_table_artifact(key="train-evaluation", table=rows,
                          description=f"Validation split, {evaluation['photos']} photos, means; grey = a,b set to 0")


@flow(name="pipeline")
def pipeline(
    source: Path = Path("data/samples/photos"),
    dataset: Path = Path("data/datasets/samples"),
    model_dir: Path = Path("data/models/samples"),
    size: Annotated[int, Field(ge=32)] = 256,
    weights: str = "imagenet",
    head: Head = DEFAULT_HEAD,
    epochs: Annotated[int, Field(ge=1)] = 10,
    batch_size: Annotated[int, Field(ge=1)] = 32,
    width: Annotated[float, Field(gt=0)] = 1.0,
    workers: Annotated[int | None, Field(ge=1)] = None,
    resume: bool = False,
    validation_percent: Annotated[float, Field(gt=0, lt=100)] = 10.0,
    objective: Objective = "regression",
    schedule: Schedule = "cosine",
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.5,
    keep: Keep = "best",
    loss: Loss = "huber",
    activation: Activation = "leaky_relu",
    seed: int = 0,
    wait: bool = False,
) -> dict:
    """preprocess -> embed -> train from one photo folder, each stage a subflow (and each incremental).

    Each stage holds its folder's lock while it runs; ``wait`` waits for other runs that hold them. A resumed
    run keeps the head it was started with (as it keeps its other options): ``head`` applies to new runs.
    """
    check_pipeline(project_path(source), project_path(dataset), project_path(model_dir), size,
                   resolve_weights(weights), epochs, batch_size, width, workers, resume, validation_percent,
                   dropout)
    started = checkpoint_extractor(project_path(model_dir)) if resume else None
    kept = head if started is None else head_of_id(started)
    if kept != head:
        get_run_logger().info("%s: resuming a run started with --head %s, which it keeps (not %s)", model_dir,
                              kept, head)
    preprocess(source=source, dataset=dataset, size=size, workers=workers, wait=wait)
    summary = embed(dataset=dataset, weights=weights, head=kept, wait=wait)
    if is_random_id(summary["extractor_id"]):  # on the run the user opened, not only on its subflows
        get_run_logger().warning(RANDOM_NOTE.replace("*", ""))
    return train(dataset=dataset, model_dir=model_dir, epochs=epochs, batch_size=batch_size, width=width,
                 resume=resume, extractor=summary["extractor_id"], validation_percent=validation_percent,
                 wait=wait, objective=objective, schedule=schedule, dropout=dropout, keep=keep, loss=loss,
                 activation=activation, seed=seed)
