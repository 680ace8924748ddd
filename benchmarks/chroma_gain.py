"""How far a colour gain moves a trained model along the fidelity / colourfulness trade-off.

A regression model trained on a squared or Huber loss hedges towards grey where the photo does not tell the
colour, so its colours are pale. The simplest remedy, multiplying its predicted a,b by a gain g > 1 before
rendering, buys colourfulness; this measures what it costs on photos the model never saw, scored exactly as
``colorization evaluate`` scores them (long side 512, colorize's own rendering), against the grey baseline.

A classification model's annealed-mean temperature moves it along the same trade-off from the other side
(``--temperature``), so both can be compared on one scale.

``--gamma G`` bends the gain instead of applying it evenly: each pixel's chroma c becomes
``gain * c * (c / median c) ** (G - 1)``, so G < 1 lifts pale pixels more than vivid ones and G > 1 the other way.

Two models are best compared at the same colourfulness, photo by photo: ``--against OTHER --pairs 1:1.25 1.1:1.4``
prints MODEL at the first gain minus OTHER at the second, with 95% intervals of the paired differences.

Run as ``.venv/bin/python benchmarks/chroma_gain.py PHOTOS MODEL [--weights W] [--gains 1 1.5 2] [--temperature T]
[--gamma G] [--against OTHER --pairs GAIN:OTHER_GAIN ...]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from colorization.evaluation import metrics
from colorization.evaluation.samples import load_sample
from colorization.network.colorizer import Colorizer
from colorization.photos.archive import list_entries, read_entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="colour photos the model never saw (folder, .zip or .tar)")
    parser.add_argument("model", type=Path, help="a trained model folder")
    parser.add_argument("--weights", help="extractor weights (default: the card's)")
    parser.add_argument("--temperature", type=float, help="a classification model's decoding temperature")
    parser.add_argument("--gains", type=float, nargs="+", default=[1.0, 1.25, 1.5, 1.75, 2.0, 2.5])
    parser.add_argument("--gamma", type=float, default=1.0, help="chroma curve before the gain (1: even gain)")
    parser.add_argument("--long-side", type=int, default=512)
    parser.add_argument("--against", type=Path, help="a second model folder (with its card's weights), compared "
                        "photo by photo (--pairs)")
    parser.add_argument("--pairs", nargs="+", default=[], metavar="GAIN:OTHER_GAIN",
                        help="gains of MODEL and of --against to compare, e.g. 1:1.25 (default: each gain to itself)")
    args = parser.parse_args()
    colorizer = Colorizer.load(args.model, args.weights, args.temperature)
    loaded = (load_sample(read_entry(args.photos, e.name), e.name, args.long_side) for e in list_entries(args.photos))
    samples = [sample for sample in loaded if sample is not None]
    ab = _bend(_predict(colorizer, samples), args.gamma)
    grey = [metrics.score(s.grey, s.original) for s in samples]
    print(f"{len(samples)} colour photos of {args.photos}, model {colorizer.id}")
    print(f"{'gain':>5} {'PSNR':>6} {'-grey [95% interval]':>22} {'wins':>5} {'SSIM':>6} {'AuC':>6} "
          f"{'-grey [95% interval]':>25} {'ΔE':>6} {'colour/orig':>11}")
    for gain in [0.0, *args.gains]:
        scores = [metrics.score(s.colour(a * gain), s.original) for s, a in zip(samples, ab)]
        psnr = np.array([s.psnr - g.psnr for s, g in zip(scores, grey)])
        auc = np.array([s.auc - g.auc for s, g in zip(scores, grey)])
        figures = {name: np.nanmean([getattr(s, name) for s in scores]) for name in metrics.FIGURES}
        print(f"{gain:5.2f} {figures['psnr']:6.2f} {_paired(psnr, '+.2f'):>22} {(psnr > 0).mean():5.0%} "
              f"{figures['ssim']:6.3f} {figures['auc']:6.3f} {_paired(auc, '+.4f'):>25} {figures['delta_e']:6.2f} "
              f"{figures['colorfulness_ratio']:11.2f}")
    if args.against:
        other = Colorizer.load(args.against)
        pairs = [tuple(map(float, pair.split(":"))) for pair in args.pairs] or [(g, g) for g in args.gains]
        _compare(samples, ab, _predict(other, samples), pairs, f"{colorizer.id} - {other.id}")
    return 0


def _predict(colorizer: Colorizer, samples: list) -> np.ndarray:
    return colorizer.predict_ab(np.stack([s.lightness(colorizer.size) for s in samples]))


def _bend(ab: np.ndarray, gamma: float) -> np.ndarray:
    """Predicted a,b with each pixel's chroma c scaled by (c / median c) ** (gamma - 1); hue kept."""
    if gamma == 1.0:
        return ab
    chroma = np.hypot(ab[..., 0], ab[..., 1])
    return ab * ((np.maximum(chroma, 1e-6) / np.median(chroma)) ** (gamma - 1.0))[..., None]


def _compare(samples: list, ab: np.ndarray, other_ab: np.ndarray, pairs: list[tuple[float, float]], title: str
             ) -> None:
    """Per-photo differences of one model at one gain minus another at another, with 95% intervals."""
    print(f"\npaired, {title} (95% intervals)")
    print(f"{'gains':>11} {'PSNR':>22} {'AuC':>25} {'ΔE':>22} {'colour/orig':>22}")
    for gain, other_gain in pairs:
        scores = [metrics.score(s.colour(a * gain), s.original) for s, a in zip(samples, ab)]
        others = [metrics.score(s.colour(a * other_gain), s.original) for s, a in zip(samples, other_ab)]
        cells = [_paired(np.array([getattr(x, name) - getattr(y, name) for x, y in zip(scores, others)]), spec)
                 for name, spec in (("psnr", "+.2f"), ("auc", "+.4f"), ("delta_e", "+.2f"),
                                    ("colorfulness_ratio", "+.3f"))]
        print(f"{gain:5.2f}:{other_gain:<5.2f} {cells[0]:>22} {cells[1]:>25} {cells[2]:>22} {cells[3]:>22}")


def _paired(differences: np.ndarray, spec: str) -> str:
    """Mean of per-photo differences with its bootstrap 95% interval, as evaluate reports intervals."""
    stats = metrics.summarize(differences)
    low, high = stats["ci95"]
    return f"{stats['mean']:{spec}} [{low:{spec}}, {high:{spec}}]"


if __name__ == "__main__":
    raise SystemExit(main())
