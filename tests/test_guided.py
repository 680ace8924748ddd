"""Guided upsampling of predicted a,b: shapes, flat cases, and sharper colour edges than bicubic."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from colorization.colorize import guided, render
from colorization.photos import lab


def test_shape_dtype_and_constant_colour_stays_constant():
    guide = np.random.default_rng(0).uniform(0, 100, (45, 70)).astype(np.float32)
    constant = np.broadcast_to(np.float32([12.0, -30.0]), (16, 16, 2))
    a, b = guided.guided_upsample(guide, constant)
    assert a.shape == b.shape == (45, 70) and a.dtype == b.dtype == np.uint8
    assert np.all(a == 128 + 12) and np.all(b == 128 - 30)


def test_flat_guide_gives_the_box_smoothed_bilinear_result():
    """With nothing to follow, the filter is two box means of the input, then bilinear interpolation."""
    ab = np.random.default_rng(1).normal(0, 20, (24, 24, 2)).astype(np.float32)
    a, b = guided.guided_upsample(np.full((150, 200), 50, np.float32), ab)
    side = 2 * guided.RADIUS + 1
    smoothed = ndimage.uniform_filter(ndimage.uniform_filter(ab, (side, side, 1), mode="reflect"), (side, side, 1),
                                      mode="reflect")
    for channel, plane in enumerate((a, b)):
        expected = np.asarray(Image.fromarray(smoothed[..., channel]).resize((200, 150), Image.Resampling.BILINEAR))
        assert np.abs(plane.astype(np.float32) - 128 - expected).max() <= 0.51


def two_regions(height: int = 300, width: int = 400) -> tuple[np.ndarray, np.ndarray, int]:
    """A photo of two flat regions (dark red left, light blue right) meeting at a sharp vertical edge off the
    model grid: its sRGB pixels, its true a,b and the edge's column."""
    edge = int(width * 0.37)
    lightness = np.where(np.arange(width) < edge, 35.0, 70.0)[None].repeat(height, 0)
    ab = np.where((np.arange(width) < edge)[..., None], [40.0, 25.0], [-15.0, -30.0])[None].repeat(height, 0)
    rgb = lab.lab_to_rgb(np.concatenate([lightness[..., None], ab], axis=-1))
    return rgb, ab, edge


def test_guided_colour_edge_is_sharper_than_bicubic():
    rgb, ab, edge = two_regions()
    low = np.stack([np.asarray(Image.fromarray(ab[..., c].astype(np.float32)).resize((32, 32), Image.Resampling.BOX))
                    for c in range(2)], axis=-1)  # what a perfect model would predict on its 32x32 grid
    beside = slice(edge - 30, edge + 30)  # 30 px either side: about 2.4 grid cells, where bicubic bleeds

    def error(upsample: render.Upsample) -> float:
        result = lab.rgb_to_lab(render.colorize_pixels(rgb, low, upsample))
        return float(np.abs(result[:, beside, 1:] - ab[:, beside]).sum(-1).mean())

    bicubic, edge_aware = error("bicubic"), error("guided")
    assert edge_aware < 0.5 * bicubic, (edge_aware, bicubic)  # measured: 2.8 against 8.2
    assert bicubic > 3, "the test photo must show bleeding to remove"


def test_guided_render_keeps_the_photos_lightness():
    rgb, _, _ = two_regions(90, 120)
    grey = lab.lightness_to_grey(np.rint(lab.lightness(rgb) * lab.L_SCALE).astype(np.uint8))
    ab = np.random.default_rng(2).normal(0, 25, (16, 16, 2)).astype(np.float32)
    for pixels in (grey, np.repeat(grey[..., None], 3, axis=-1)):
        result = render.colorize_pixels(pixels, ab, "guided")
        assert result.shape == (90, 120, 3) and result.dtype == np.uint8
        difference = np.abs(lab.lightness(result) - lab.lightness(pixels))
        assert difference.mean() < 0.5 and difference.max() < 3
    assert np.array_equal(render.colorize_pixels(grey, ab, "guided"),
                          render.colorize_pixels(lab.lightness(grey), ab, "guided")), "uint8 and float L agree"
