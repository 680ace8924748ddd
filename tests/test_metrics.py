"""The metrics against answers worked out by hand, and the grey baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from colorization.colorize import render
from colorization.evaluation import metrics
from tests.helpers import gradient_rgb


def test_identical_images_score_perfectly():
    image = gradient_rgb()
    score = metrics.score(image, image)
    assert score.psnr == metrics.PSNR_CAP, "infinite PSNR is capped, so means stay finite"
    assert score.ssim == pytest.approx(1.0)
    assert score.auc == 1.0 and score.delta_e == 0.0
    assert score.colorfulness_ratio == pytest.approx(1.0)
    assert np.all(score.curve == 1.0) and len(score.curve) == 151


def test_psnr_of_a_uniform_offset():
    original = np.full((8, 8, 3), 100, np.uint8)
    # MSE 25: 10 log10(255² / 25) = 20 log10(51)
    assert metrics.psnr(original + 5, original) == pytest.approx(20 * math.log10(51))


def test_ssim_of_two_flat_images():
    c1 = (0.01 * 255) ** 2  # no variance: SSIM is the luminance term (2 μx μy + C1) / (μx² + μy² + C1)
    expected = (2 * 100 * 110 + c1) / (100**2 + 110**2 + c1)
    assert metrics.ssim(np.full((9, 9, 3), 110, np.uint8), np.full((9, 9, 3), 100, np.uint8)) == pytest.approx(expected)


def test_colorfulness_of_half_red_half_blue():
    image = np.zeros((4, 4, 3), np.uint8)
    image[:, :2, 0] = 255
    image[:, 2:, 2] = 255
    # rg = R - G: 255 and 0, mean 127.5, sd 127.5; yb = (R + G) / 2 - B: 127.5 and -255, mean -63.75, sd 191.25
    expected = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, 63.75)
    assert metrics.colorfulness(image) == pytest.approx(expected)
    assert metrics.colorfulness(np.full((4, 4, 3), 77, np.uint8)) == 0


def test_auc_by_hand():
    # share within t: 1/4 for t = 0..9, 2/4 for 10..75, 3/4 for 76..150, and 200 is never within
    expected = (10 * 0.25 + 66 * 0.5 + 75 * 0.75) / 151
    assert metrics.auc(np.array([0.0, 10.0, 200.0, 75.5])) == pytest.approx(expected)
    original, shifted = np.zeros((3, 3, 3)), np.zeros((3, 3, 3))
    shifted[..., 1:] = (3, 4)  # ab error 5 everywhere: 0 below t = 5, 1 from there
    assert metrics.auc(metrics.ab_error(shifted, original)) == pytest.approx(146 / 151)


def test_delta_e_2000_by_hand_and_published_pair():
    darker, lighter = np.array([[[47.5, 0, 0]]]), np.array([[[52.5, 0, 0]]])
    assert metrics.delta_e(lighter, darker) == pytest.approx(5.0)  # greys around L = 50: S_L = 1, ΔE00 = ΔL
    # Sharma, Wu & Dalal (2005), table 1, pair 1
    first, second = np.array([[[50.0, 2.6772, -79.7751]]]), np.array([[[50.0, 0.0, -82.7485]]])
    assert metrics.delta_e(second, first) == pytest.approx(2.0425, abs=1e-4)


def test_grey_baseline_keeps_lightness_and_has_no_colour():
    original = gradient_rgb(40, 56)
    grey = metrics.grey_baseline(original)
    assert metrics.colorfulness(grey) == 0
    assert np.array_equal(grey, render.colorize_pixels(original, np.zeros((4, 4, 2), np.float32))), \
        "the grey baseline is colorize's own output for a,b = 0"
    score = metrics.score(grey, original)
    assert score.colorfulness == 0 and score.colorfulness_ratio == 0
    assert 0 < score.auc < 1 and score.delta_e > 1 and score.psnr < metrics.PSNR_CAP


def test_summary_and_verdicts():
    flat = metrics.summarize(np.array([2.0, 2.0, 2.0]))
    assert flat == {"n": 3, "mean": 2.0, "median": 2.0, "ci95": [2.0, 2.0]}
    spread = metrics.summarize(np.array([1.0, 2.0, 3.0, float("nan")]))
    assert spread["n"] == 3 and spread["median"] == 2.0 and 1.0 <= spread["ci95"][0] < 2.0 < spread["ci95"][1] <= 3.0
    assert metrics.summarize(np.array([]))["mean"] is None
    assert metrics.better("delta_e", 5.0, 8.0) and not metrics.better("auc", 0.8, 0.9)
    assert metrics.better("colorfulness_ratio", 1.3, 0.0) and not metrics.better("colorfulness_ratio", 2.5, 0.0)
    assert metrics.better("colorfulness", 30.0, 0.0, original=35.0)
    assert metrics.better("psnr", float("nan"), 20.0) is None
    assert metrics.better("colorfulness_original", 30.0, 30.0) is None
