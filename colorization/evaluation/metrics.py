"""How good a colouring is: figures that compare a coloured photo (8-bit sRGB) with its original.

Every function takes what a user sees — the sRGB result and the sRGB original, same size — so that training,
evaluation and the dashboards all score the same thing. Each figure is only meaningful beside the same figure
for the *grey baseline* (:func:`grey_baseline`: the original's L with a = b = 0, what colouring nothing gives):
grey already scores a high PSNR and SSIM, because L carries most of a photo's structure.

=====================  ================================================  ==================
figure                 definition                                        better
=====================  ================================================  ==================
``psnr``               :func:`psnr`, dB, capped at :data:`PSNR_CAP`      higher
``ssim``               :func:`ssim`, -1..1                               higher
``auc``                :func:`auc` of the ab error, 0..1                 higher
``delta_e``            :func:`delta_e`, mean CIEDE2000                   lower
``colorfulness``       :func:`colorfulness` of the result                closer to original
``colorfulness_ratio`` result / original colourfulness                   closer to 1
=====================  ================================================  ==================

Nothing here imports a deep-learning framework.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from skimage import color
from skimage import metrics as skmetrics

from colorization.photos import lab

PSNR_CAP = 100.0
AUC_MAX_THRESHOLD = 150
THRESHOLDS = np.arange(AUC_MAX_THRESHOLD + 1)
FIGURES = ("psnr", "ssim", "auc", "delta_e", "colorfulness", "colorfulness_original", "colorfulness_ratio")
DIRECTION = {
    "psnr": "higher", "ssim": "higher", "auc": "higher", "delta_e": "lower",
    "colorfulness": "closer to original", "colorfulness_original": "reference", "colorfulness_ratio": "closer to 1",
}


def psnr(result: np.ndarray, original: np.ndarray) -> float:
    """Peak signal-to-noise ratio of 8-bit sRGB ``result`` against ``original``, in dB (higher is better).

    ``10 log10(255² / MSE)`` over all pixels and channels: ``skimage.metrics.peak_signal_noise_ratio`` with
    ``data_range=255``. Identical images (MSE 0, PSNR infinite) score :data:`PSNR_CAP`, as does anything above
    it, so that means and intervals stay finite.
    """
    if np.array_equal(result, original):
        return PSNR_CAP
    return min(PSNR_CAP, float(skmetrics.peak_signal_noise_ratio(original, result, data_range=255)))


def ssim(result: np.ndarray, original: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004) of 8-bit sRGB images, 1 when identical (higher is better).

    ``skimage.metrics.structural_similarity`` on the RGB channels (``channel_axis=-1``, ``data_range=255``,
    7x7 uniform window, shrunk to the largest odd size that fits images smaller than that).
    """
    window = min(7, *(s if s % 2 else s - 1 for s in original.shape[:2]))
    return float(skmetrics.structural_similarity(original, result, channel_axis=-1, data_range=255,
                                                 win_size=window))


def colorfulness(rgb: np.ndarray) -> float:
    """Colourfulness of an 8-bit RGB image (Hasler & Süsstrunk, *Measuring colourfulness in natural images*,
    SPIE 5007, 2003): with ``rg = R - G`` and ``yb = (R + G) / 2 - B``,
    ``M = sqrt(σ_rg² + σ_yb²) + 0.3 sqrt(μ_rg² + μ_yb²)``. 0 for grey; ~33 is "fairly", above ~59 "highly"
    colourful. Not a quality by itself: compare a result's with its original's (:func:`score`'s ratio).
    """
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def ab_error(result_lab: np.ndarray, original_lab: np.ndarray) -> np.ndarray:
    """Per-pixel Euclidean distance between the a,b of two CIELab images (..., 3), in Lab units."""
    return np.hypot(result_lab[..., 1] - original_lab[..., 1], result_lab[..., 2] - original_lab[..., 2])


def accuracy_curve(errors: np.ndarray) -> np.ndarray:
    """Share of pixels whose error is at most each threshold of :data:`THRESHOLDS` (0, 1, ..., 150).

    Zhang, Isola & Efros, *Colorful Image Colorization*, ECCV 2016, section 3.1 ("AuC": raw accuracy of the
    predicted ab within a threshold, swept from 0 to 150).
    """
    steps = np.minimum(np.ceil(errors.reshape(-1)), AUC_MAX_THRESHOLD + 1).astype(np.int64)
    counts = np.bincount(steps, minlength=AUC_MAX_THRESHOLD + 2)[: AUC_MAX_THRESHOLD + 1]
    return np.cumsum(counts) / max(errors.size, 1)


def auc(errors: np.ndarray) -> float:
    """Area under :func:`accuracy_curve`, normalised to 0..1 (its mean over the 151 thresholds): 1 when every
    pixel's ab is exact, 0 when every pixel is more than 150 units off (higher is better)."""
    return float(accuracy_curve(errors).mean())


def delta_e(result_lab: np.ndarray, original_lab: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference (Sharma, Wu & Dalal 2005; ``skimage.color.deltaE_ciede2000``) between
    two CIELab images: 0 when identical, about 1 is a just noticeable difference (lower is better)."""
    return float(np.mean(color.deltaE_ciede2000(original_lab, result_lab)))


def grey_baseline(original: np.ndarray) -> np.ndarray:
    """The grey baseline of an 8-bit sRGB photo (h, w, 3): its own CIELab L with a = b = 0, in 8-bit sRGB.

    Built by the conversion colorize uses (``lab.lab_to_srgb_fast``), so it is exactly what colouring with
    a,b = 0 would give, and the grey photo a model is asked to colour.
    """
    flat = np.zeros(original.shape[:2], np.float32)
    return lab.lab_to_srgb_fast(lab.lightness(original), flat, flat)


@dataclass
class Score:
    """Every figure of one coloured photo against its original, and its AuC curve."""

    psnr: float
    ssim: float
    auc: float
    delta_e: float
    colorfulness: float
    colorfulness_original: float
    colorfulness_ratio: float
    curve: np.ndarray = field(repr=False)

    def figures(self) -> dict[str, float]:
        """The figures without the curve, in :data:`FIGURES` order."""
        row = asdict(self)
        return {name: row[name] for name in FIGURES}


def score(result: np.ndarray, original: np.ndarray) -> Score:
    """Score an 8-bit sRGB ``result`` (h, w, 3) against its ``original`` of the same size.

    The Lab figures (AuC, ΔE) convert both images with ``lab.rgb_to_lab`` (``skimage.color.rgb2lab``'s
    formula, D65, faster), so they measure the colours a viewer gets, after gamut mapping and 8-bit rounding.
    """
    if result.shape != original.shape:
        raise ValueError(f"result {result.shape} and original {original.shape} differ in size")
    result_lab, original_lab = lab.rgb_to_lab(result), lab.rgb_to_lab(original)
    curve = accuracy_curve(ab_error(result_lab, original_lab))
    ours, theirs = colorfulness(result), colorfulness(original)
    return Score(
        psnr=psnr(result, original),
        ssim=ssim(result, original),
        auc=float(curve.mean()),
        delta_e=delta_e(result_lab, original_lab),
        colorfulness=ours,
        colorfulness_original=theirs,
        colorfulness_ratio=ours / theirs if theirs > 0 else float("nan"),
        curve=curve,
    )


def better(name: str, value: float | None, grey: float | None, original: float | None = None) -> bool | None:
    """Whether ``value`` of figure ``name`` beats the grey baseline's ``grey`` (None when it cannot tell);
    ``original`` is the originals' colourfulness, the target of ``colorfulness``."""
    direction = DIRECTION[name]
    if direction == "reference" or value is None or grey is None or np.isnan(value) or np.isnan(grey):
        return None
    if direction == "higher":
        return value > grey
    if direction == "lower":
        return value < grey
    target = 1.0 if direction == "closer to 1" else original
    return None if target is None else abs(value - target) < abs(grey - target)


def summarize(values: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, float | list[float] | int]:
    """Mean, median and 95% bootstrap interval of the mean (percentile method, ``resamples`` resamplings of the
    photos with replacement, seeded so reports are reproducible) of one figure over photos; NaNs ignored."""
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if not len(values):
        return {"n": 0, "mean": None, "median": None, "ci95": [None, None]}
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"n": int(len(values)), "mean": float(values.mean()), "median": float(np.median(values)),
            "ci95": [float(low), float(high)]}


def summarize_scores(scores: list[Score]) -> dict[str, dict]:
    """:func:`summarize` of every figure over the photos' scores."""
    return {name: summarize(np.array([getattr(s, name) for s in scores])) for name in FIGURES}


def mean_curve(scores: list[Score]) -> np.ndarray:
    """The mean :func:`accuracy_curve` over photos (each photo weighs the same, whatever its size)."""
    return np.mean([s.curve for s in scores], axis=0) if scores else np.zeros(len(THRESHOLDS))
