"""Lab conversion and quantisation round trip, grey and sepia detection, colourfulness."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from colorization.evaluation import metrics
from colorization.photos import images, lab


@pytest.fixture(scope="module")
def squares(sample_paths) -> list[np.ndarray]:
    return [images.fit_square(images.load(p, min_side=128).image, 128) for p in sample_paths[:12]]


def test_rgb_to_lab_matches_skimage(squares):
    from skimage import color

    for rgb in squares[:4]:
        assert np.abs(lab.rgb_to_lab(rgb) - color.rgb2lab(rgb)).max() < 2e-3
    every_colour = np.stack(np.meshgrid(*[np.arange(0, 256, 5)] * 3), axis=-1).astype(np.uint8)
    assert np.abs(lab.rgb_to_lab(every_colour) - color.rgb2lab(every_colour)).max() < 2e-3


def test_quantised_lab_round_trip_error_is_bounded(squares):
    """Storage costs at most half a step: L within 0.2 (100/255/2), a and b within 0.5; back in sRGB, under 0.6
    levels on average and at most 4 (dark saturated colours, where half an a,b step is several levels)."""
    for rgb in squares:
        exact = lab.rgb_to_lab(rgb)
        restored = lab.dequantize(*lab.quantize(exact))
        assert np.abs(restored[..., 0] - exact[..., 0]).max() <= 0.197
        assert np.abs(restored[..., 1:] - exact[..., 1:]).max() <= 0.5 + 1e-4
        back = lab.lab_to_rgb(restored).astype(int)
        assert np.abs(back - rgb).mean() < 0.6
        assert np.abs(back - rgb).max() <= 4


def test_quantize_clips_into_storage_range():
    lightness, ab = lab.quantize(np.array([[120.0, 300.0, -300.0], [-5.0, 0.4, -0.6]], np.float32))
    assert lightness.tolist() == [255, 0]
    assert ab.tolist() == [[127, -128], [0, -1]]
    assert lightness.dtype == np.uint8 and ab.dtype == np.int8


def test_lightness_to_grey_matches_skimage():
    stored = np.arange(256, dtype=np.uint8)
    grey = lab.lightness_to_grey(stored)
    reference = lab.lab_to_rgb(lab.dequantize(stored, np.zeros((256, 2), np.int8)))
    assert np.array_equal(grey, reference[:, 0])
    assert grey[0] == 0 and grey[255] == 255 and np.all(np.diff(grey.astype(int)) >= 0)


def test_colour_photos_are_not_monochrome(squares):
    for rgb in squares:
        assert not lab.is_monochrome(*lab.quantize(lab.rgb_to_lab(rgb)))


@pytest.mark.parametrize("tint", [None, ("#2b1a0e", "#f5e6c8"), ("#0b2a4a", "#e0f0ff")], ids=["grey", "sepia", "cyan"])
def test_grey_and_toned_photos_are_monochrome(squares, tint):
    for rgb in squares:
        grey = Image.fromarray(rgb).convert("L")
        toned = np.asarray(grey.convert("RGB") if tint is None else ImageOps.colorize(grey, *tint))
        lightness, ab = lab.quantize(lab.rgb_to_lab(toned))
        assert lab.is_monochrome(lightness, ab), lab.chroma_spread(lightness, ab)


@pytest.mark.parametrize("shape", [(64, 48), (3, 5), (1, 1)])
def test_chroma_spread_is_the_98th_percentile_of_residual_chroma(shape):
    rng = np.random.default_rng(sum(shape))
    lightness = rng.integers(0, 256, shape, dtype=np.uint8)
    ab = rng.integers(-60, 60, shape + (2,)).astype(np.int8)
    bins = lightness.ravel() // 8
    residuals = []
    for channel in (ab[..., 0].ravel().astype(float), ab[..., 1].ravel().astype(float)):
        means = {b: channel[bins == b].mean() for b in np.unique(bins)}
        residuals.append(channel - np.array([means[b] for b in bins]))
    expected = np.percentile(np.hypot(*residuals), 98)
    assert lab.chroma_spread(lightness, ab) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_colorfulness_orders_grey_dull_vivid():
    grey = np.full((16, 16, 3), 128, np.uint8)
    dull = grey.copy()
    dull[:, 8:] = (140, 120, 110)
    vivid = grey.copy()
    vivid[:, :8] = (255, 0, 0)
    vivid[:, 8:] = (0, 0, 255)
    assert metrics.colorfulness(grey) == 0
    assert 0 < metrics.colorfulness(dull) < metrics.colorfulness(vivid)


def test_fast_full_resolution_conversions_match_skimage(squares):
    for rgb in squares[:4]:
        exact = lab.rgb_to_lab(rgb)
        assert np.abs(lab.lightness(rgb) - exact[..., 0]).max() < 1e-3
        grey = np.repeat(rgb[..., :1], 3, axis=-1)
        assert np.abs(lab.lightness(grey) - lab.rgb_to_lab(grey)[..., 0]).max() < 1e-3
        fast = lab.lab_to_srgb_fast(exact[..., 0], exact[..., 1], exact[..., 2]).astype(int)
        assert np.abs(fast - lab.lab_to_rgb(exact)).max() <= 1


def test_out_of_gamut_colours_keep_their_lightness():
    rng = np.random.default_rng(0)
    wild = rng.normal(0, 90, (64, 64, 2)).astype(np.float32)
    lightness_ = rng.uniform(0, 100, (64, 64)).astype(np.float32)
    rgb = lab.lab_to_srgb_fast(lightness_, wild[..., 0], wild[..., 1])
    assert np.abs(lab.lightness(rgb) - lightness_).max() < 0.8, "only 8-bit rounding may move L"
    clipped = lab.lab_to_rgb(np.concatenate([lightness_[..., None], wild], axis=-1))
    assert np.abs(lab.lightness(clipped) - lightness_).max() > 5, "per-channel clipping would have moved L"
    assert metrics.colorfulness(rgb) > 20, "colour is reduced only as far as the gamut needs"


def test_lightness_of_one_channel_grey_equals_three_channel_grey():
    grey = np.random.default_rng(1).integers(0, 256, (32, 48), dtype=np.uint8)
    assert np.array_equal(lab.lightness(grey), lab.lightness(np.repeat(grey[..., None], 3, axis=-1)))
    a, b = np.full((32, 48), 140, np.uint8), np.full((32, 48), 100, np.uint8)
    from_pixels = lab.lab_to_srgb_fast(grey, a, b, ab_offset=128)
    assert np.array_equal(from_pixels, lab.lab_to_srgb_fast(lab.lightness(grey), a, b, ab_offset=128))


def test_grey_photo_lookup_table_gives_the_conversion_exactly():
    """Every (grey, a, b) in uint8 has its entry: random triples, the extremes and out-of-gamut corners."""
    rng = np.random.default_rng(2)
    grey, a, b = (rng.integers(0, 256, (64, 96), dtype=np.uint8) for _ in range(3))
    grey[0, :4], a[0, :4], b[0, :4] = [0, 255, 255, 0], [0, 255, 0, 255], [255, 0, 0, 255]
    expected = lab.lab_to_srgb_fast(grey, a, b, ab_offset=lab.AB_OFFSET)
    assert np.array_equal(lab.grey_to_srgb(grey, a, b), expected)
    assert lab.grey_to_srgb(grey, a, b).shape == (64, 96, 3) and lab.grey_to_srgb(grey, a, b).flags.c_contiguous
