"""The evaluate stage: colour as colorize does, score beside grey, report that opens in a browser."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from colorization.colorize import render
from colorization.evaluation import metrics
from colorization.evaluation.samples import load_sample
from colorization.network.card import RANDOM_WARNING
from flows.cli import main
from tests.helpers import copy_samples, grey_copy, plant_bad_files


def test_evaluation_colours_exactly_like_colorize(sample_paths, tmp_path):
    sample = load_sample(sample_paths[0].read_bytes(), sample_paths[0].name, long_side=96)
    assert max(sample.original.shape[:2]) == 96 and sample.grey.shape == sample.original.shape
    ab = np.random.default_rng(0).normal(0, 30, (32, 32, 2)).astype(np.float32)
    Image.fromarray(sample.grey).save(tmp_path / "grey.png")
    data = (tmp_path / "grey.png").read_bytes()
    render.render(data, "grey.png", ab, tmp_path / "out.png", max_pixels=10**8)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), sample.colour(ab))
    assert np.array_equal(render.prepare(data, "grey.png", 32, 10**8).lightness, sample.lightness(32))
    assert load_sample(grey_copy(sample_paths[0], tmp_path / "g.jpg").read_bytes(), "g.jpg", 96) is None


@pytest.fixture(scope="module")
def evaluated(prefect_harness, tiny_model, sample_paths, tmp_path_factory):
    photos = tmp_path_factory.mktemp("eval-photos")
    copy_samples(sample_paths[:4], photos / "colour")
    grey_copy(sample_paths[4], photos / "old" / "scan.jpg")
    plant_bad_files(photos / "bad", sample_paths[0])
    other = tmp_path_factory.mktemp("other") / "tiny"
    shutil.copytree(tiny_model, other)
    report = tmp_path_factory.mktemp("report")
    assert main(["evaluate", str(photos), "--model", str(tiny_model), "--compare", str(other), "--report",
                 str(report), "--long-side", "64", "--batch-size", "3"]) == 0
    return report, tiny_model.name


def test_report_files_and_figures(evaluated):
    report, label = evaluated
    summary = json.loads((report / "metrics.json").read_text())
    photos = summary["photos"]
    assert photos["found"] == 8 and photos["scored"] == 4
    assert photos["grey"] == ["old/scan.jpg"] and len(photos["errors"]) == 3
    assert set(summary["models"]) == {label, "tiny"} and summary["long_side"] == 64
    grey = summary["grey"]["figures"]
    assert grey["colorfulness"]["mean"] == 0 and grey["colorfulness_ratio"]["mean"] == 0
    assert grey["colorfulness_original"]["mean"] > 5
    model = summary["models"][label]
    assert model["warning"] == RANDOM_WARNING and model["random_extractor"]
    assert len(model["auc_curve"]) == 151 and model["auc_curve"][-1] <= 1
    assert set(model["examples"]) == {"best", "median", "worst"}
    for stats in [*grey.values(), *model["figures"].values()]:
        assert stats["n"] == 4 and stats["ci95"][0] <= stats["mean"] <= stats["ci95"][1]
    assert summary["models"]["tiny"]["figures"] == model["figures"], "the same model scores the same"
    rows = pd.read_parquet(report / "photos.parquet")
    assert len(rows) == 4 * 3 and set(rows.model) == {label, "tiny", "grey"}
    assert set(rows.columns) >= set(metrics.FIGURES) | {"photo", "model"}
    assert len(list((report / "images").glob("*.jpg"))) == 2 * 3 * 3
    assert not list(report.rglob(".tmp-*"))


def test_dashboard_artifacts(evaluated):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["evaluate-metrics", "evaluate-report", "evaluate-skipped"])))
    latest = {a.key: a for a in sorted(found, key=lambda a: a.created)}
    assert set(latest) == {"evaluate-metrics", "evaluate-report", "evaluate-skipped"}
    assert "RANDOM WEIGHTS" in latest["evaluate-report"].data
    assert latest["evaluate-report"].data.count("data:image/svg+xml") == 2


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_opens_in_a_browser_with_its_images(evaluated):
    from playwright.sync_api import sync_playwright

    report, _ = evaluated
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto((report / "report.html").as_uri())
            page.wait_for_load_state("load")
            widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete && i.naturalWidth)")
            assert len(widths) == 18 and all(w > 0 for w in widths), widths
            assert page.locator("svg").count() == 2
            assert page.locator("svg polyline").count() == 3, "grey and both models"
            assert page.get_by_text("RANDOM WEIGHTS").count() == 2
            assert "grey baseline" in page.locator("table").first.inner_text()
        finally:
            browser.close()


def test_evaluate_with_guided_upsampling_and_saturation(prefect_harness, tiny_model, sample_paths, tmp_path):
    copy_samples(sample_paths[:2], tmp_path / "photos")
    report = tmp_path / "report"
    assert main(["evaluate", str(tmp_path / "photos"), "--model", str(tiny_model), "--report", str(report),
                 "--long-side", "64", "--upsample", "guided", "--saturation", "2"]) == 0
    summary = json.loads((report / "metrics.json").read_text())
    assert summary["upsample"] == "guided" and summary["photos"]["scored"] == 2
    [model] = summary["models"].values()
    assert model["saturation"] == 2 and model["model_id"].endswith("/S2")

    sweep = tmp_path / "sweep"  # several saturations: each model scored at each, from one prediction
    assert main(["evaluate", str(tmp_path / "photos"), "--model", str(tiny_model), "--report", str(sweep),
                 "--long-side", "64", "--upsample", "guided", "--saturation", "1", "2"]) == 0
    models = json.loads((sweep / "metrics.json").read_text())["models"]
    assert list(models) == [f"{tiny_model.name}, saturation 1", f"{tiny_model.name}, saturation 2"]
    one, two = models.values()
    assert (one["saturation"], two["saturation"]) == (1, 2) and two["model_id"] == model["model_id"]
    assert two["figures"] == model["figures"], "the same scores as a run at that saturation alone"
    assert two["figures"]["colorfulness_ratio"]["mean"] > one["figures"]["colorfulness_ratio"]["mean"]
    sample = load_sample(sample_paths[0].read_bytes(), sample_paths[0].name, long_side=64)
    ab = np.random.default_rng(0).normal(0, 30, (32, 32, 2)).astype(np.float32)
    assert np.array_equal(sample.colour(ab, "guided"), render.colorize_pixels(sample.grey, ab, "guided"))
    assert not np.array_equal(sample.colour(ab, "guided"), sample.colour(ab))


def test_evaluate_refuses_bad_arguments(tiny_model, tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing"), "--model", str(tiny_model)]) == 2
    assert main(["evaluate", str(tmp_path), "--model", str(tmp_path)]) == 2
    assert "no trained model" in capsys.readouterr().err
