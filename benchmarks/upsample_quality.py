"""How close each upsampling brings a,b known at low resolution to the photo's true full-size a,b.

Without a good trained model, a perfect one stands in: each bundled colour photo's own a,b at ``--grid``²
(LANCZOS, as ``render.prepare`` makes the model's input) are brought back to full size, bicubically or guided
by the photo's full-size L for several radii and ε, and compared with the true a,b: mean |Δa| + |Δb| over the
whole photo and within 4 px of an L edge (gradient above 4 L units per pixel), where bleeding shows. This is
how ``colorization.colorize.guided``'s defaults were chosen.

Run as ``.venv/bin/python benchmarks/upsample_quality.py [--grid 64]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from colorization.colorize.guided import guided_upsample
from colorization.colorize.render import upsample_ab
from colorization.photos import lab
from colorization.photos.discover import find_images

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "photos"


def errors(planes: list[np.ndarray], true_ab: np.ndarray, near_edges: np.ndarray) -> tuple[float, float]:
    """Mean |Δa| + |Δb| of 8-bit a,b planes against the true a,b: everywhere, and near edges."""
    difference = np.abs(np.stack(planes, axis=-1).astype(np.float32) - lab.AB_OFFSET - true_ab).sum(axis=-1)
    return float(difference.mean()), float(difference[near_edges].mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=64, help="side of the low-resolution a,b (default 64)")
    args = parser.parse_args()
    settings = [(radius, epsilon) for radius in (1, 2, 3) for epsilon in (1e-4, 1e-3, 3e-3, 1e-2)]
    results: dict[str, list[tuple[float, float]]] = {}
    photos = find_images(SAMPLES)
    for path in photos:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        full = lab.rgb_to_lab(rgb)
        small = np.asarray(Image.fromarray(rgb).resize((args.grid, args.grid), Image.Resampling.LANCZOS,
                                                       reducing_gap=3.0))
        low_ab = lab.rgb_to_lab(small)[..., 1:]
        near_edges = ndimage.binary_dilation(np.hypot(*np.gradient(full[..., 0])) > 4, iterations=4)
        results.setdefault("bicubic", []).append(
            errors(upsample_ab(low_ab, (rgb.shape[1], rgb.shape[0])), full[..., 1:], near_edges))
        for radius, epsilon in settings:
            results.setdefault(f"guided r={radius} eps={epsilon:g}", []).append(
                errors(guided_upsample(full[..., 0], low_ab, radius, epsilon), full[..., 1:], near_edges))
    print(f"{len(photos)} photos of {SAMPLES}, a,b from {args.grid}x{args.grid}; mean |Δa| + |Δb| (lower is better)")
    print(f"{'':<28} {'whole photo':>12} {'near edges':>12}")
    for name, values in sorted(results.items(), key=lambda item: np.mean(item[1], axis=0)[0]):
        whole, near = np.mean(values, axis=0)
        print(f"{name:<28} {whole:12.3f} {near:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
