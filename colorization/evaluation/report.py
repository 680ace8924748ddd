"""The evaluation report: ``metrics.json``, ``photos.parquet`` and a self-contained ``report.html``.

The HTML page has no script and loads nothing from the network: charts are inline SVG drawn here, example
photos are JPEG files written beside it (``images/``). Every file is written atomically.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from colorization.atomic import atomic_path
from colorization.evaluation import metrics
from colorization.network.card import RANDOM_WARNING

GREY = "grey"
COLUMNS = ("original", GREY, "result")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
SHOWN = ("auc", "delta_e", "psnr", "ssim", "colorfulness", "colorfulness_original", "colorfulness_ratio")
LABELS = {
    "auc": "AuC of ab error (0..150)", "delta_e": "mean ΔE2000", "psnr": "PSNR (dB)", "ssim": "SSIM",
    "colorfulness": "colourfulness", "colorfulness_original": "colourfulness of originals",
    "colorfulness_ratio": "colourfulness ratio",
}


@dataclass
class Scored:
    """The scores of one model (or of the grey baseline) over the evaluated photos, in photo order."""

    label: str
    scores: list[metrics.Score]
    info: dict = field(default_factory=dict)

    @property
    def random(self) -> bool:
        return bool(self.info.get("random_extractor"))

    def entry(self, photos: list[str]) -> dict:
        """Its part of ``metrics.json``."""
        entry = {**self.info, "figures": metrics.summarize_scores(self.scores),
                 "auc_curve": [round(float(v), 6) for v in metrics.mean_curve(self.scores)]}
        if self.scores and self.label != GREY:
            entry["examples"] = {k: photos[i] for k, i in examples_of(self.scores).items()}
        if self.random:
            entry["warning"] = RANDOM_WARNING
        return entry


def examples_of(scores: list[metrics.Score]) -> dict[str, int]:
    """Indices of the best, median and worst photos by AuC."""
    order = np.argsort([s.auc for s in scores], kind="stable")
    return {"best": int(order[-1]), "median": int(order[len(order) // 2]), "worst": int(order[0])}


def summary(photos: list[str], runs: list[Scored], grey: Scored, context: dict) -> dict:
    """The content of ``metrics.json``: ``context`` (source, counts, skipped photos...), the thresholds of the
    AuC curves, then per model and for grey the mean, median and 95% bootstrap interval of each figure."""
    return {
        **context,
        "auc_thresholds": metrics.THRESHOLDS.tolist(),
        "grey": grey.entry(photos),
        "models": {run.label: run.entry(photos) for run in runs},
    }


def photos_frame(photos: list[str], runs: list[Scored]) -> pd.DataFrame:
    """One row per photo and model (grey included): every figure."""
    rows = [{"photo": photo, "model": run.label, **score.figures()}
            for run in runs for photo, score in zip(photos, run.scores)]
    return pd.DataFrame(rows, columns=["photo", "model", *metrics.FIGURES])


def _cell(figures: dict, name: str, grey: dict | None) -> str:
    """One table cell; judged against ``grey`` (green better, red worse) unless that is None."""
    stats = figures[name]
    if stats["mean"] is None:
        return "<td>–</td>"
    verdict = None if grey is None else metrics.better(name, stats["mean"], grey[name]["mean"],
                                                       figures["colorfulness_original"]["mean"])
    css = {True: "better", False: "worse", None: ""}[verdict]
    low, high = stats["ci95"]
    return (f"<td class='{css}'><b>{stats['mean']:.4g}</b><br><small>median {stats['median']:.4g}; "
            f"95% {low:.4g}–{high:.4g}</small></td>")


def table_html(report: dict) -> str:
    """Figures as rows; grey then each model as columns. Cells that beat grey are green, worse ones red."""
    grey = report["grey"]["figures"]
    models = report["models"]
    head = "".join(f"<th>{html.escape(label)}</th>" for label in models)
    rows = []
    for name in SHOWN:
        cells = _cell(grey, name, None) + "".join(_cell(m["figures"], name, grey) for m in models.values())
        rows.append(f"<tr><th>{LABELS[name]}</th><td>{metrics.DIRECTION[name]}</td>{cells}</tr>")
    return (f"<table><tr><th>figure</th><th>better</th><th>grey baseline</th>{head}</tr>"
            + "".join(rows) + "</table>")


def table_rows(report: dict) -> list[dict]:
    """The same table for a dashboard artifact: one row per figure, means."""
    def mean(entry: dict, name: str) -> float | None:
        value = entry["figures"][name]["mean"]
        return None if value is None else round(value, 4)

    return [{"figure": name, "better": metrics.DIRECTION[name], GREY: mean(report["grey"], name),
             **{label: mean(entry, name) for label, entry in report["models"].items()}} for name in SHOWN]


def _svg_frame(width: int, height: int, x_label: str, y_label: str, x_max: float, y_max: float,
               margin: int = 44) -> tuple[list[str], Callable[[float, float], tuple[float, float]]]:
    """SVG axes with ticks; returns the elements and a function mapping data (x, y) to pixels."""
    inner_w, inner_h = width - 2 * margin, height - 2 * margin

    def at(x: float, y: float) -> tuple[float, float]:
        return margin + inner_w * x / x_max, height - margin - inner_h * y / y_max

    parts = [f"<rect x='{margin}' y='{margin}' width='{inner_w}' height='{inner_h}' fill='none' stroke='#999'/>"]
    for fraction in (0, 0.25, 0.5, 0.75, 1):
        x, _ = at(fraction * x_max, 0)
        _, y = at(0, fraction * y_max)
        parts.append(f"<text x='{x:.1f}' y='{height - margin + 16}' text-anchor='middle'>{fraction * x_max:.3g}</text>")
        parts.append(f"<text x='{margin - 6}' y='{y + 4:.1f}' text-anchor='end'>{fraction * y_max:.3g}</text>")
    parts.append(f"<text x='{width / 2}' y='{height - 6}' text-anchor='middle'>{html.escape(x_label)}</text>")
    parts.append(f"<text x='12' y='{height / 2}' transform='rotate(-90 12 {height / 2})' "
                 f"text-anchor='middle'>{html.escape(y_label)}</text>")
    return parts, at


def _colours(labels: list[str]) -> list[str]:
    """Grey for the baseline, then one palette colour per model in order, the same in every chart."""
    models = [label for label in labels if label != GREY]
    return ["#777" if label == GREY else PALETTE[models.index(label) % len(PALETTE)] for label in labels]


def _legend(labels: list[str], x: int, y: int) -> list[str]:
    out = []
    for i, (label, colour) in enumerate(zip(labels, _colours(labels))):
        out.append(f"<rect x='{x}' y='{y + 16 * i - 9}' width='10' height='10' fill='{colour}'/>"
                   f"<text x='{x + 14}' y='{y + 16 * i}'>{html.escape(label)}</text>")
    return out


def curves_svg(curves: dict[str, list[float]], width: int = 520, height: int = 340) -> str:
    """The AuC curves (share of pixels within each ab threshold) as an inline SVG; grey dashed."""
    parts, at = _svg_frame(width, height, "ab error threshold (Lab units)", "share of pixels within it",
                           float(metrics.AUC_MAX_THRESHOLD), 1.0)
    for (label, curve), colour in zip(curves.items(), _colours(list(curves))):
        points = " ".join("%.1f,%.1f" % at(t, v) for t, v in zip(metrics.THRESHOLDS, curve))
        dashes = " stroke-dasharray='5 4'" if label == GREY else ""
        parts.append(f"<polyline fill='none' stroke-width='2' stroke='{colour}'{dashes} points='{points}'/>")
    parts += _legend(list(curves), width - 170, 150)
    return _svg(width, height, parts, "AuC curves")


def scatter_svg(points: dict[str, tuple[list[float], list[float]]], width: int = 520, height: int = 340) -> str:
    """Colourfulness of each result against its original's, one colour per model, with the diagonal."""
    top = max([1.0] + [max(xs + ys, default=0) for xs, ys in points.values()]) * 1.05
    parts, at = _svg_frame(width, height, "colourfulness of the original", "colourfulness of the result", top, top)
    (x0, y0), (x1, y1) = at(0, 0), at(top, top)
    parts.append(f"<line x1='{x0}' y1='{y0}' x2='{x1:.1f}' y2='{y1:.1f}' stroke='#bbb'/>")
    for (xs, ys), colour in zip(points.values(), _colours(list(points))):
        parts += ["<circle cx='%.1f' cy='%.1f' r='3' fill-opacity='0.6' fill='%s'/>" % (*at(x, y), colour)
                  for x, y in zip(xs, ys)]
    parts += _legend(list(points), 60, 62)
    return _svg(width, height, parts, "colourfulness scatter")


def charts(report: dict, frame: pd.DataFrame) -> tuple[str, str]:
    """The AuC curves of grey and every model, and the colourfulness scatter of every model, as SVG."""
    curves = {GREY: report["grey"]["auc_curve"], **{k: v["auc_curve"] for k, v in report["models"].items()}}
    models = frame[frame.model != GREY]
    scatter = {label: (rows.colorfulness_original.tolist(), rows.colorfulness.tolist())
               for label, rows in models.groupby("model", sort=False)}
    return curves_svg(curves), scatter_svg(scatter)


def _svg(width: int, height: int, parts: list[str], title: str) -> str:
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-size='11' "
            f"role='img' aria-label='{title}'>" + "".join(parts) + "</svg>")


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-.") or "model"


def write_images(folder: Path, triptychs: dict[str, list[tuple[str, str, list[np.ndarray]]]]) -> dict:
    """Write each example (original, grey, result) as JPEGs under ``folder/images``; returns the same structure
    with relative paths in place of the arrays."""
    written: dict[str, list[tuple[str, str, list[str]]]] = {}
    for index, (label, rows) in enumerate(triptychs.items()):
        written[label] = []
        for rank, photo, panels in rows:
            paths = []
            for column, pixels in zip(COLUMNS, panels):
                relative = f"images/{index}-{slug(label)}-{rank}-{column}.jpg"
                with atomic_path(folder / relative) as temp:
                    Image.fromarray(pixels).save(temp, "JPEG", quality=88)
                paths.append(relative)
            written[label].append((rank, photo, paths))
    return written


def page(report: dict, frame: pd.DataFrame, images_: dict[str, list[tuple[str, str, list[str]]]]) -> str:
    """The report as one HTML page."""
    random = [label for label, entry in report["models"].items() if "warning" in entry]
    banner = "".join(f"<p class='warning'>{html.escape(label)}: {RANDOM_WARNING}. Its colours are meaningless."
                     "</p>" for label in random)
    photos = report["photos"]
    skipped = "".join(f"<li>{html.escape(name)}: grey or toned, not scored</li>" for name in photos["grey"])
    skipped += "".join(f"<li>{html.escape(e['photo'])}: {html.escape(e['error'])}</li>" for e in photos["errors"])
    examples = "".join(
        f"<h3>{html.escape(label)}</h3><table><tr><th>photo</th>"
        + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr>"
        + "".join(f"<tr><td>{rank}<br><small>{html.escape(photo)}</small></td>"
                  + "".join(f"<td><img src='{html.escape(p)}' alt='{c}'></td>" for c, p in zip(COLUMNS, paths))
                  + "</tr>" for rank, photo, paths in rows)
        + "</table>"
        for label, rows in images_.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Colorization evaluation</title><style>"
        "body{font-family:sans-serif;margin:1.5em}td,th{padding:4px 8px;text-align:left;vertical-align:top}"
        "table{border-collapse:collapse}tr{border-bottom:1px solid #ddd}.better{background:#e3f4e3}"
        ".worse{background:#f8e1e1}.warning{background:#c00;color:#fff;padding:1em;font-weight:bold}"
        "img{max-width:min(300px,26vw);height:auto}svg{margin-right:1em}</style></head><body>"
        f"<h1>Colorization evaluation</h1>{banner}"
        f"<p>{photos['scored']} colour photos of <code>{html.escape(str(report['source']))}</code> scored at a long "
        f"side of at most {report['long_side']} px ({photos['found']} found, {len(photos['grey'])} grey, "
        f"{len(photos['errors'])} unreadable). The <b>grey baseline</b> is each original's L with a = b = 0: a "
        "model is useful where it beats it (green), harmful where it is worse (red). Means with median and 95% "
        "bootstrap interval of the mean.</p>"
        + table_html(report)
        + (f"<h2>Not scored</h2><ul>{skipped}</ul>" if skipped else "")
        + "<h2>AuC curves and colourfulness</h2>" + "".join(charts(report, frame))
        + "<h2>Best, median and worst photos by AuC</h2>" + examples
        + "</body></html>\n"
    )


def write_report(folder: Path, report: dict, frame: pd.DataFrame,
                 triptychs: dict[str, list[tuple[str, str, list[np.ndarray]]]]) -> Path:
    """Write ``metrics.json``, ``photos.parquet``, ``images/`` and ``report.html`` into ``folder``."""
    with atomic_path(folder / "metrics.json") as temp:
        temp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    with atomic_path(folder / "photos.parquet") as temp:
        frame.to_parquet(temp, index=False)
    written = write_images(folder, triptychs)
    with atomic_path(folder / "report.html") as temp:
        temp.write_text(page(report, frame, written))
    return folder / "report.html"
