"""The colorize stage end to end on a small archive with a tiny random model."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from colorization.colorize import catalog, render
from colorization.errors import ConfigError
from colorization.evaluation import metrics
from colorization.photos import lab
from colorization.photos.archive import Entry, list_entries
from flows.cli import main
from flows.colorize import colorize
from tests import icc
from tests.helpers import parse_sheet, plant_bad_files, resolve_link

ARTIST = 0x013B
PROFILE = icc.rgb_profile(icc.SRGB_PRIMARIES_D50, gamma=2.2, name="archive scanner")


def grey_from(path: Path) -> Image.Image:
    return Image.open(path).convert("L")


@pytest.fixture
def archive(tmp_path, sample_paths):
    """Nested folders: a rotated grey JPEG with EXIF, ICC and DPI; a grey PNG; a colour photo; bad files."""
    root = tmp_path / "archive"
    (root / "1920s" / "family").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[ARTIST] = "Parish photographer"
    grey_from(sample_paths[0]).convert("RGB").save(
        root / "1920s" / "family" / "wedding.jpg", quality=92, exif=exif.tobytes(), icc_profile=PROFILE, dpi=(300, 300)
    )
    grey_from(sample_paths[1]).save(root / "1920s" / "harbour.png")
    Image.open(sample_paths[2]).save(root / "colour.jpg", quality=90)
    plant_bad_files(root / "damaged", sample_paths[3])
    return root


def digest_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_colorize_archive_end_to_end(prefect_harness, tiny_model, archive, tmp_path, sample_paths):
    before = digest_tree(archive)
    out = tmp_path / "coloured"

    summary = colorize(input=archive, output=out, model=tiny_model, batch_size=2, workers=2)

    assert (summary["photos"], summary["colorized"], summary["colour"], summary["errors"]) == (6, 2, 1, 3)
    assert digest_tree(archive) == before, "originals must never change"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and ".colorize" not in p.parts) \
        == ["1920s/family/wedding.jpg", "1920s/harbour.png"]
    assert not catalog.worklist_path(out).exists(), "the run's list of photos to do goes when it ends"

    # The rotated JPEG: upright, same size as the upright original, metadata carried over, L kept.
    original = Image.open(archive / "1920s" / "family" / "wedding.jpg")
    result = Image.open(out / "1920s" / "family" / "wedding.jpg")
    assert result.format == "JPEG" and result.size == (original.height, original.width)
    assert result.getexif().get(0x0112, 1) == 1 and result.getexif()[ARTIST] == "Parish photographer"
    assert result.info["icc_profile"] == PROFILE
    assert tuple(round(v) for v in result.info["dpi"]) == (300, 300)
    upright = np.asarray(original.transpose(Image.Transpose.ROTATE_270).convert("RGB"))
    difference = np.abs(lab.lightness(np.asarray(result.convert("RGB"))) - lab.lightness(upright))
    assert difference.mean() < 1.5

    # The PNG: lossless, so L is kept to within 8-bit rounding and clipping of out-of-gamut colours.
    png_in = np.asarray(Image.open(archive / "1920s" / "harbour.png").convert("RGB"))
    png_out = Image.open(out / "1920s" / "harbour.png")
    assert png_out.format == "PNG" and png_out.mode == "RGB" and png_out.size == (png_in.shape[1], png_in.shape[0])
    png_difference = np.abs(lab.lightness(np.asarray(png_out)) - lab.lightness(png_in))
    assert png_difference.mean() < 1.0 and np.percentile(png_difference, 99) < 3.0
    assert metrics.colorfulness(np.asarray(png_out)) > metrics.colorfulness(png_in), "colour was added"

    manifest = catalog.read_manifest(out).set_index("source")
    assert manifest["status"].to_dict() == {
        "1920s/family/wedding.jpg": "colorized", "1920s/harbour.png": "colorized", "colour.jpg": "colour",
        "damaged/empty.png": "error", "damaged/notes.jpg": "error", "damaged/truncated.jpg": "error",
    }
    assert "truncated" in manifest.loc["damaged/truncated.jpg", "error"]
    assert manifest.loc["1920s/harbour.png", "model_id"].startswith("xception-predictions-RANDOM")
    sheet_path = out / ".colorize" / "gallery.html"
    gallery = sheet_path.read_text(encoding="utf-8")
    assert "RANDOM WEIGHTS" in gallery
    sheet = parse_sheet(gallery)
    assert sorted(c.name for c in sheet.cards) == ["1920s/family/wedding.jpg", "1920s/harbour.png"]
    for card in sheet.cards:
        assert len(card.images) == 2, "before and after"
        assert {resolve_link(sheet_path, href) for href in card.links} == {out / card.name}, "links to the full size"
        assert (card.width, card.height) == Image.open(out / card.name).size
    assert sheet.model_ids == [manifest.loc["1920s/harbour.png", "model_id"]]
    assert sorted(sheet.errors) == ["damaged/empty.png", "damaged/notes.jpg", "damaged/truncated.jpg"]
    assert "truncated" in sheet.errors["damaged/truncated.jpg"]

    # A re-run does nothing and touches no row; it first removes the temporary files of a killed run (ours only).
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.*") if ".colorize" not in p.parts}
    rows = catalog.read_manifest(out)
    assert str(rows["time"].dtype) == "datetime64[us, UTC]" and rows["time"].notna().all()
    stale = [out / "1920s" / "family" / ".tmp-0123abcd-wedding.jpg",
             out / ".colorize" / ".tmp-89abcdef-manifest.parquet"]
    foreign = [out / ".tmp-notes.txt", out / "1920s" / "tmp-0123abcd-x.jpg"]
    for path in stale + foreign:
        path.write_bytes(b"partial")
    again = colorize(input=archive, output=out, model=tiny_model, batch_size=2, workers=1)
    assert (again["colorized"], again["left as they are"], again["colour"], again["errors"]) == (0, 6, 0, 0)
    assert again["outcome"] == "nothing to do"
    assert catalog.read_manifest(out).equals(rows), "a photo left as it is keeps its row untouched"
    assert not any(p.exists() for p in stale) and all(p.read_bytes() == b"partial" for p in foreign)
    for path in foreign:
        path.unlink()
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    grey_from(sample_paths[4]).save(archive / "1920s" / "added.jpg", quality=90)
    more = colorize(input=archive, output=out, model=tiny_model, batch_size=2, workers=1)
    assert (more["colorized"], more["left as they are"], more["outcome"]) == (1, 6, "done")
    assert (out / "1920s" / "added.jpg").is_file()
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_zip_input_and_unsafe_member(prefect_harness, tiny_model, tmp_path, sample_paths):
    buffer = io.BytesIO()
    grey_from(sample_paths[5]).save(buffer, "JPEG", quality=90)
    source = tmp_path / "scans.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("box1/scan.jpg", buffer.getvalue())
        archive.writestr("../evil.jpg", buffer.getvalue())
    out = tmp_path / "nested" / "out"

    summary = colorize(input=source, output=out, model=tiny_model, workers=1)

    assert (summary["colorized"], summary["errors"]) == (1, 1)
    assert Image.open(out / "box1" / "scan.jpg").size == Image.open(io.BytesIO(buffer.getvalue())).size
    assert not (tmp_path / "nested" / "evil.jpg").exists() and not (tmp_path / "evil.jpg").exists()
    assert "unsafe path" in catalog.read_manifest(out).set_index("source").loc["../evil.jpg", "error"]


def test_a_run_stopped_by_an_unexpected_error_leaves_no_worklist(prefect_harness, tiny_model, tmp_path, sample_paths,
                                                                  monkeypatch):
    import flows.colorize

    archive, out = tmp_path / "archive", tmp_path / "coloured"
    archive.mkdir()
    grey_from(sample_paths[0]).save(archive / "one.png")

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the loop")

    monkeypatch.setattr(flows.colorize, "colorize_pending", broken)
    with pytest.raises(RuntimeError, match="a bug in the loop"):
        colorize(input=archive, output=out, model=tiny_model, workers=1)
    assert not catalog.worklist_path(out).exists(), "stale once the run has stopped: the next run plans anew"


def test_empty_inbox_is_nothing_to_do_only_when_allowed(prefect_harness, tiny_model, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    with pytest.raises(ConfigError, match="inbox: no photos here"):
        colorize(input=inbox, output=tmp_path / "out", model=tiny_model, workers=1)

    summary = colorize(input=inbox, output=tmp_path / "out", model=tiny_model, workers=1, allow_empty=True)

    assert (summary["outcome"], summary["photos"], summary["errors"]) == ("nothing to do", 0, 0)
    assert not any(p.is_file() and not p.is_relative_to(tmp_path / "out" / catalog.STATE_DIR)
                   for p in (tmp_path / "out").rglob("*"))


def manifest_with(output: Path, records: list[dict]) -> pa.Table:
    """The manifest of ``output`` with ``records`` added, as the ledger holds it before a flush."""
    ledger = catalog.Ledger(output)
    ledger.add(records)
    return ledger.table()


@pytest.mark.parametrize("fmt, suffix, exact", [("JPEG", "jpg", False), ("PNG", "png", True),
                                                ("TIFF", "tif", True), ("WEBP", "webp", False)])
def test_a_grey_photo_renders_as_rgb_in_its_own_format(tmp_path, sample_paths, fmt, suffix, exact):
    """Grey photos take the lookup table's RGBX result straight into the encoder; every format gets RGB."""
    grey = grey_from(sample_paths[1])
    source = io.BytesIO()
    grey.save(source, fmt, **({"quality": 95} if fmt != "PNG" and fmt != "TIFF" else {}))
    ab = np.random.default_rng(1).normal(0, 25, (8, 8, 2)).astype(np.float32)
    target = tmp_path / f"out.{suffix}"
    before, after = render.render(source.getvalue(), target.name, ab, target, 10**8, thumbnail=64)
    expected = render.colorize_pixels(np.asarray(Image.open(io.BytesIO(source.getvalue()))), ab)
    with Image.open(target) as written:
        assert (written.format, written.mode, written.size) == (fmt, "RGB", grey.size)
        pixels = np.asarray(written)
    difference = np.abs(pixels.astype(int) - expected).mean()
    assert difference == 0 if exact else difference < 3, difference
    assert max(after.shape[:2]) == 64 and after.shape[2] == 3 and before.shape == after.shape
    assert np.abs(after.astype(int) - np.asarray(Image.fromarray(expected).resize(after.shape[1::-1]))).mean() < 4



def test_renders_in_a_row_reuse_memory_without_mixing_photos(tmp_path, sample_paths):
    """One thread's renders share their working memory; photos of any size in any order come out right."""
    rng = np.random.default_rng(2)
    photos = []
    for path, size in zip(sample_paths, [(120, 90), (40, 70), (200, 150), (40, 70)]):
        source = io.BytesIO()
        grey_from(path).resize(size).save(source, "PNG")
        photos.append((source.getvalue(), rng.normal(0, 25, (8, 8, 2)).astype(np.float32)))
    for n, (data, ab) in enumerate(photos):
        render.render(data, f"{n}.png", ab, tmp_path / f"{n}.png", 10**8)
    for n, (data, ab) in enumerate(photos):
        expected = render.colorize_pixels(np.asarray(Image.open(io.BytesIO(data))), ab)
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"{n}.png")), expected), n


def test_plan_redoes_changed_files_and_all_after_a_model_change(tmp_path):
    entries = [Entry("a.jpg", 10, 1), Entry("b.jpg", 20, 2), Entry("c.jpg", 30, 3)]
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    records = [catalog.record(entries[0], "colorized", "m1"), catalog.record(entries[1], "colorized", "m1"),
               catalog.record(entries[2], "colour", "m1")]
    manifest = manifest_with(tmp_path, records)

    assert [e.name for e in catalog.plan(entries, manifest, tmp_path, "m1").pending] == []
    changed = [Entry("a.jpg", 11, 1)] + entries[1:]
    assert [e.name for e in catalog.plan(changed, manifest, tmp_path, "m1").pending] == ["a.jpg"]
    assert [e.name for e in catalog.plan(entries, manifest, tmp_path, "m2").pending] == ["a.jpg", "b.jpg"]
    assert [e.name for e in catalog.plan(entries, manifest, tmp_path, "m1", recolor=True).pending] == ["c.jpg"]
    os.remove(tmp_path / "b.jpg")
    assert [e.name for e in catalog.plan(entries, manifest, tmp_path, "m1").pending] == ["b.jpg"]


def test_a_failed_photo_is_retried_once_its_file_changes(tmp_path):
    broken = Entry("scan.jpg", 10, 1)
    manifest = manifest_with(tmp_path, [catalog.record(broken, "error", "m1", error="truncated")])

    assert not catalog.plan([broken], manifest, tmp_path, "m1").pending, "the same bytes would fail the same way"
    assert not catalog.plan([broken], manifest, tmp_path, "m2").pending, "a new model cannot read it either"
    repaired = Entry("scan.jpg", 12, 2)
    assert list(catalog.plan([repaired], manifest, tmp_path, "m1").pending) == [repaired]


def test_outputs_of_a_killed_run_are_redone_not_mistaken_for_foreign_files(tmp_path):
    entry = Entry("a.jpg", 10, 1)
    (tmp_path / "a.jpg").write_bytes(b"rendered before the kill, never recorded as done")
    claimed = manifest_with(tmp_path, [catalog.record(entry, "pending", "m1")])
    work = catalog.plan([entry], claimed, tmp_path, "m1")
    assert list(work.pending) == [entry] and work.records == []


def test_existing_foreign_output_is_kept_unless_overwrite(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"someone else's file")
    work = catalog.plan([Entry("a.jpg", 1, 1)], catalog.Ledger(tmp_path).pieces(), tmp_path, "m")
    assert len(work.pending) == 0 and "pass --overwrite" in work.records[0]["error"]
    assert len(catalog.plan([Entry("a.jpg", 1, 1)], catalog.Ledger(tmp_path).pieces(), tmp_path, "m",
                            overwrite=True).pending) == 1


def test_output_inside_input_and_missing_model_are_refused(archive, tmp_path, capsys):
    with pytest.raises(ConfigError, match="must not be inside the input folder"):
        catalog.check_paths(archive, archive / "out")
    assert main(["colorize", str(archive), str(tmp_path / "out"), "--model", str(tmp_path / "nomodel")]) == 2
    assert "no trained model here" in capsys.readouterr().err


def test_list_entries_of_folder_zip_and_tar(archive, tmp_path):
    import tarfile

    names = [e.name for e in list_entries(archive)]
    assert names[:2] == ["1920s/family/wedding.jpg", "1920s/harbour.png"]
    tar_path = tmp_path / "a.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(archive, arcname=".")
    assert sorted(e.name.removeprefix("./") for e in list_entries(tar_path)) == sorted(names)


def test_guided_upsampling_keeps_lightness(prefect_harness, tiny_model, tmp_path, sample_paths):
    source = tmp_path / "scans"
    source.mkdir()
    grey_from(sample_paths[6]).save(source / "street.png")
    out = tmp_path / "guided"

    summary = colorize(input=source, output=out, model=tiny_model, workers=1, upsample="guided")

    assert (summary["colorized"], summary["upsample"]) == (1, "guided")
    grey = np.asarray(Image.open(source / "street.png").convert("RGB"))
    result = np.asarray(Image.open(out / "street.png"))
    difference = np.abs(lab.lightness(result) - lab.lightness(grey))
    assert result.shape == grey.shape and difference.mean() < 1.0 and np.percentile(difference, 99) < 3.0
    assert metrics.colorfulness(result) > metrics.colorfulness(grey), "colour was added"


def test_a_share_run_colours_only_its_photos_and_the_next_run_merges_them(prefect_harness, tiny_model, tmp_path,
                                                                         sample_paths):
    """What a colorize-split child does on its GPU worker, without the worker: colour one share of the archive
    into OUTPUT and record it in the share's manifest; any later run on OUTPUT folds that into the manifest."""
    from colorization.colorize import shares
    from flows.colorize import colorize_share

    archive, out = tmp_path / "archive", tmp_path / "coloured"
    archive.mkdir()
    for path in sample_paths[:3]:
        grey_from(path).save(archive / f"{path.stem}.png")
    entries = list_entries(archive)
    ledger = catalog.Ledger(out)
    [share] = shares.write(out, catalog.plan(entries[:2], ledger.pieces(), out, "m1").pending, 1)

    summary = colorize_share(input=archive, output=out, share=share, model=tiny_model, batch_size=2, workers=1)

    assert (summary["photos"], summary["colorized"]) == (2, 2)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(e.name for e in entries[:2])
    assert catalog.read_manifest(out).empty, "the archive's manifest is the parent's to write"
    assert shares.sheet_path(out, share).is_file() and not catalog.sheet_path(out).exists()

    again = colorize(input=archive, output=out, model=tiny_model, batch_size=2, workers=1)

    assert again["colorized"] == 1 and again["left as they are"] == 2, "the share's photos are not coloured twice"
    assert set(catalog.read_manifest(out)["status"]) == {"colorized"} and len(catalog.read_manifest(out)) == 3
    assert shares.pending(out) == []


def test_split_run_without_its_share_deployment_stops_before_writing_shares(prefect_harness, tiny_model, tmp_path,
                                                                           sample_paths):
    from colorization.colorize import shares
    from flows.split import colorize_split

    archive, out = tmp_path / "archive", tmp_path / "coloured"
    archive.mkdir()
    grey_from(sample_paths[0]).save(archive / "one.png")
    with pytest.raises(ConfigError, match="no deployment colorize-share/gpu .*make deploy"):
        colorize_split(input=archive, output=out, model=tiny_model, gpus=2)
    assert shares.pending(out) == [] and catalog.read_manifest(out).empty


def test_a_model_whose_training_stalled_is_named_as_such_when_it_colours(prefect_harness, tiny_model, tmp_path,
                                                                         sample_paths, caplog):
    model = tmp_path / "stalled-model"
    shutil.copytree(tiny_model, model)
    card = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps({**card, "stalled": True}))
    archive = tmp_path / "archive"
    archive.mkdir()
    grey_from(sample_paths[0]).save(archive / "one.png")

    colorize(input=archive, output=tmp_path / "out", model=model, workers=1)

    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "training stalled" in r.getMessage()]
    assert any(getattr(r, "flow_run_id", None) for r in warnings), "on the run's own log, for the dashboard"
    assert str(model) in warnings[0].getMessage() and "--seed" in warnings[0].getMessage()


def test_saturation_scales_the_colour_and_a_new_saturation_colours_again(prefect_harness, tiny_model, tmp_path,
                                                                        sample_paths):
    archive, out = tmp_path / "archive", tmp_path / "coloured"
    archive.mkdir()
    grey_from(sample_paths[0]).save(archive / "one.png")

    def chroma_and_hue() -> tuple[float, float]:
        ab = lab.rgb_to_lab(np.asarray(Image.open(out / "one.png").convert("RGB")))[..., 1:].reshape(-1, 2).mean(0)
        return float(np.hypot(*ab)), float(np.degrees(np.arctan2(ab[1], ab[0])))

    colorize(input=archive, output=out, model=tiny_model, workers=1)
    plain = chroma_and_hue()
    again = colorize(input=archive, output=out, model=tiny_model, workers=1, saturation=1.6)
    vivid = chroma_and_hue()

    assert again["colorized"] == 1 and again["saturation"] == 1.6, "another saturation colours the photo again"
    assert vivid[0] > 1.4 * plain[0] and abs(vivid[1] - plain[1]) < 5, (plain, vivid)
    assert catalog.read_manifest(out)["model_id"].iloc[0].endswith("/S1.6")
    same = colorize(input=archive, output=out, model=tiny_model, workers=1, saturation=1.6)
    assert same["left as they are"] == 1
