"""The ``evaluate`` flow: how well one or more models colour photos whose colours are known.

Each colour photo is turned grey, coloured the way colorize does it, and compared with its original; every
figure is reported beside the grey baseline's on the same photos (README: Evaluate).
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import Field

from colorization.colorize.gallery import markdown_gallery
from colorization.colorize.render import Upsample
from colorization.errors import ConfigError, ImageError
from colorization.evaluation import metrics, report
from colorization.evaluation.samples import Sample, colour_samples, colour_samples_at, load_sample
from colorization.network.card import RANDOM_WARNING
from colorization.photos.archive import list_entries, read_entry
from colorization.photos.images import DEFAULT_MAX_PIXELS
from colorization.preflight import check_evaluate, saturations
from colorization.quiet import import_keras
from flows.common import gpu_slot
from flows.paths import project_path

if TYPE_CHECKING:
    from colorization.network.colorizer import Colorizer

Saturation = Annotated[float, Field(gt=0)]


@flow(name="evaluate")
def evaluate(
    model: Path = Path("data/models/samples"),
    photos: Path = Path("data/samples/photos"),
    report_dir: Path | None = None,
    compare: list[Path] | None = None,
    long_side: Annotated[int, Field(ge=32)] = 512,
    batch_size: Annotated[int, Field(ge=1)] = 8,
    max_pixels: Annotated[int, Field(ge=1)] = DEFAULT_MAX_PIXELS,
    upsample: Upsample = "bicubic",
    temperature: Annotated[float | None, Field(gt=0)] = None,
    saturation: Saturation | Annotated[list[Saturation], Field(min_length=1)] = 1.0,
) -> dict:
    """Score ``model`` (and each of ``compare``, on the same photos) on the colour photos of ``photos`` (a
    folder, .zip or .tar), beside the grey baseline; writes ``metrics.json``, ``photos.parquet`` and
    ``report.html`` into ``report_dir`` (default ``MODEL/evaluation``). Grey and unreadable photos are listed,
    not scored. ``upsample`` is colorize's (``bicubic`` or ``guided``). ``temperature`` sets the annealed-mean
    decoding of classification models (default: each card's), ``saturation`` every model's chroma, as colorize
    does; several saturations score each model at each, from one prediction, to choose one for an archive.
    Returns the content of ``metrics.json``.
    """
    import_keras()  # here, not at the top: the CLI's argument checks stay light
    from colorization.network.colorizer import Colorizer

    logger = get_run_logger()
    source = project_path(photos)
    model_dirs = [project_path(model), *(project_path(p) for p in compare or [])]
    folder = project_path(report_dir) if report_dir else model_dirs[0] / "evaluation"
    cards = check_evaluate(source, model_dirs, folder, long_side, batch_size, temperature, saturation)
    levels = saturations(saturation)
    entries = list_entries(source)
    with gpu_slot():
        models = [Colorizer.load(card, temperature=temperature, saturation=levels[0]) for card in cards]
    scored = [(_label(name, level, len(levels)), d, model.with_saturation(level))
              for name, d, model in zip(_labels(model_dirs), model_dirs, models) for level in levels]
    colorizers = [c for _, _, c in scored]
    runs = [report.Scored(label, [], {"model_dir": str(d), "model_id": c.id, "size": c.size,
                                      "random_extractor": c.extractor.random, "objective": c.objective,
                                      "temperature": c.temperature, "saturation": c.saturation})
            for label, d, c in scored]
    for d, model in zip(model_dirs, models):
        if model.extractor.random:
            logger.warning("%s: %s. Its scores only test the plumbing.", d, RANDOM_WARNING)
    grey = report.Scored(report.GREY, [])
    names: list[str] = []
    skipped: dict[str, list] = {"grey": [], "errors": []}
    logger.info("%s: %d photos, long side %d px, models: %s", source, len(entries), long_side,
                ", ".join(r.label for r in runs))
    for start in range(0, len(entries), batch_size):
        samples = _load(source, [e.name for e in entries[start : start + batch_size]], long_side, max_pixels,
                        skipped)
        names += [s.name for s in samples]
        grey.scores += [metrics.score(s.grey, s.original) for s in samples]
        for number, model in enumerate(models):
            if samples:
                with gpu_slot():
                    coloured = colour_samples_at(model, samples, batch_size, levels, upsample)
                for run, results in zip(runs[number * len(levels):], coloured):
                    run.scores += [metrics.score(r, s.original) for r, s in zip(results, samples)]
        logger.info("scored %d of %d photos", len(names), len(entries))
    for error in skipped["errors"]:
        logger.warning("%s", error["error"])
    if not names:
        raise ConfigError(f"{source}: no colour photo to score ({len(skipped['grey'])} grey, "
                          f"{len(skipped['errors'])} unreadable)")
    context = {"source": str(source), "long_side": long_side, "upsample": upsample,
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "photos": {"found": len(entries), "scored": len(names), **skipped}}
    summary = report.summary(names, runs, grey, context)
    frame = report.photos_frame(names, [grey, *runs])
    triptychs = {run.label: _triptychs(source, run, colorizer, names, long_side, max_pixels, upsample)
                 for run, colorizer in zip(runs, colorizers)}
    page = report.write_report(folder, summary, frame, triptychs)
    _publish(summary, frame, triptychs)
    for run in runs:
        figures = summary["models"][run.label]["figures"]
        logger.info("%s vs grey: %s", run.label, ", ".join(
            f"{name} {figures[name]['mean']:.4g} vs {summary['grey']['figures'][name]['mean']:.4g}"
            for name in ("auc", "delta_e", "psnr", "ssim", "colorfulness_ratio") if figures[name]["mean"] is not None))
    logger.info("report: %s", page)
    return summary


def _label(name: str, saturation: float, levels: int) -> str:
    """A run's label: the model's, with its saturation when each model is scored at several."""
    return f"{name}, saturation {saturation:g}" if levels > 1 else name


def _labels(model_dirs: list[Path]) -> list[str]:
    """Each model's folder name, numbered when two are the same."""
    names = [d.name or str(d) for d in model_dirs]
    return [f"{n} ({i + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _load(source: Path, names: list[str], long_side: int, max_pixels: int, skipped: dict) -> list[Sample]:
    """The colour photos among ``names``; grey and unreadable ones are added to ``skipped``."""
    samples = []
    for name in names:
        try:
            sample = load_sample(read_entry(source, name), name, long_side, max_pixels)
        except (ImageError, OSError) as exc:
            skipped["errors"].append({"photo": name, "error": str(exc)})
            continue
        if sample is None:
            skipped["grey"].append(name)
        else:
            samples.append(sample)
    return samples


def _triptychs(source: Path, run: report.Scored, colorizer: Colorizer, names: list[str], long_side: int,
               max_pixels: int, upsample: Upsample) -> list[tuple[str, str, list]]:
    """Original, grey and result of the model's best, median and worst photos by AuC, coloured again (nothing
    but the scores was kept, so memory stays flat however many photos were scored)."""
    chosen = report.examples_of(run.scores)
    samples = _load(source, [names[i] for i in chosen.values()], long_side, max_pixels, {"grey": [], "errors": []})
    with gpu_slot():
        results = colour_samples(colorizer, samples, len(samples), upsample)
    return [(rank, s.name, [s.original, s.grey, r]) for rank, s, r in zip(chosen, samples, results)]


def _svg_image(svg: str, alt: str) -> str:
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def _publish(summary: dict, frame, triptychs: dict) -> None:
    """The report's table, charts and examples as dashboard artifacts."""
    warnings = [f"**WARNING: {label}: {RANDOM_WARNING}. Its colours are meaningless.**"
                for label, entry in summary["models"].items() if "warning" in entry]
    photos = summary["photos"]
    create_table_artifact(key="evaluate-metrics", table=report.table_rows(summary),
                          description=f"{photos['scored']} photos of {summary['source']}, means; grey = a,b set to 0")
    skipped = [{"photo": p, "reason": "grey or toned"} for p in photos["grey"]]
    skipped += [{"photo": e["photo"], "reason": e["error"]} for e in photos["errors"]]
    if skipped:
        create_table_artifact(key="evaluate-skipped", table=skipped, description="Photos not scored")
    curves, scatter = report.charts(summary, frame)
    charts = _svg_image(curves, "AuC curves") + " " + _svg_image(scatter, "colourfulness, original vs result")
    galleries = "\n".join(
        markdown_gallery(f"{label}: best, median and worst by AuC", list(report.COLUMNS),
                         [(f"{rank}: {photo}", panels) for rank, photo, panels in rows])
        for label, rows in triptychs.items()
    )
    create_markdown_artifact(key="evaluate-report", markdown="\n\n".join([*warnings, charts, galleries]),
                             description="Evaluation charts and examples")
