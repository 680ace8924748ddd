"""The colorize loop of the library without Prefect or Dask: plain futures, a fake network, real files."""

from __future__ import annotations

import errno
import io
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from colorization.atomic import atomic_path, remove_stale_temps
from colorization.colorize import catalog
from colorization.colorize.loop import LoopReport, colorize_pending, prepare_batch, render_to_file
from colorization.dataset.preprocess import process_files
from colorization.evaluation import metrics
from colorization.photos.archive import Entry, iter_entries, list_entries

SIZE = 32


def tint(lightness: np.ndarray) -> np.ndarray:
    """A fake network: the same warm a,b everywhere."""
    return np.broadcast_to(np.array([20.0, 30.0], np.float32), (*lightness.shape, 2)).copy()


@pytest.fixture
def photos(tmp_path, sample_paths) -> Path:
    """Four grey photos (JPEG and PNG) and a colour one."""
    root = tmp_path / "in"
    (root / "box").mkdir(parents=True)
    for i, path in enumerate(sample_paths[:4]):
        grey = Image.open(path).convert("L").resize((96, 72))
        grey.save(root / "box" / f"grey{i}.{'png' if i % 2 else 'jpg'}")
    Image.open(sample_paths[5]).resize((96, 72)).save(root / "colour.jpg")
    return root


def run_loop(source: Path, output: Path, pool: ThreadPoolExecutor, render=render_to_file, batch_size: int = 2,
             model: str = "m1"):
    """Plan and colour as the flow does: the tree walked and the manifest read side by side."""
    ledger = catalog.Ledger(output)
    ledger._manifest._whole_base = whole_base_never_read
    work = catalog.plan(iter_entries(source), ledger.pieces(), output, model)
    report = colorize_pending(
        work.pending, ledger, model,
        lambda batch: pool.submit(prepare_batch, source, batch, SIZE, 10**8),
        tint,
        lambda entry, ab, thumb: pool.submit(render, source, entry, ab, output, 10**8, thumb),
        batch_size, records=work.records,
    )
    return work, report


def whole_base_never_read():
    raise AssertionError("a run that plans, records and compacts reads the manifest a piece at a time, never whole")


def test_loop_colours_records_and_keeps_history(photos, tmp_path):
    out = tmp_path / "out"
    with ThreadPoolExecutor(2) as pool:
        work, report = run_loop(photos, out, pool)
        rows = catalog.read_manifest(out).set_index("source")
        assert rows["status"].to_dict() == {f"box/grey{i}.{'png' if i % 2 else 'jpg'}": "colorized" for i in range(4)} \
            | {"colour.jpg": "colour"}
        assert report.stopped is None and report.left == 0 and len(report.gallery) == 4
        assert report.counts == {"colorized": 4, "colour": 1} and report.errors == [], "counts, not rows"
        assert str(rows["time"].dtype) == "datetime64[us, UTC]" and rows["time"].notna().all()
        coloured = np.asarray(Image.open(out / "box" / "grey1.png"))
        assert metrics.colorfulness(coloured) > 5, "the fake network's tint is in the output"
        assert not (out / "colour.jpg").exists()

        again, second = run_loop(photos, out, pool)
    assert len(again.pending) == 0 and again.kept == 5 and second.counts == {}
    assert catalog.read_manifest(out).equals(rows.reset_index()), "rows left as they are are untouched"


def test_transient_failure_stops_and_leaves_photos_for_the_next_run(photos, tmp_path, monkeypatch):
    import colorization.colorize.loop as loop

    out = tmp_path / "out"
    written = []

    def full_disk_after_two(data, name, *args):
        if len(written) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / f".tmp-0123abcd-{name}"))
        written.append(name)
        return render(data, name, *args)

    render = loop.render
    monkeypatch.setattr(loop, "render", full_disk_after_two)
    with ThreadPoolExecutor(1) as pool:
        _, report = run_loop(photos, out, pool)
    assert report.stopped == \
        "No space left on device writing box/grey2.jpg; free space and run again — 2 photos left to do"
    rows = catalog.read_manifest(out).set_index("source")
    assert set(rows.index) == {*written, "colour.jpg"} and set(rows["status"]) == {"colorized", "colour"}

    monkeypatch.setattr(loop, "render", render)
    with ThreadPoolExecutor(1) as pool:
        work, report = run_loop(photos, out, pool)
    assert [e.name for e in work.pending] == ["box/grey2.jpg", "box/grey3.png"] and report.stopped is None
    assert set(catalog.read_manifest(out)["status"]) == {"colorized", "colour"}


def test_a_stopped_run_puts_back_the_rows_its_photos_had(photos, tmp_path, monkeypatch):
    """A new model claims every grey photo; the disk fills at the first render: the manifest keeps what the
    photos had (coloured by the old model), from the rows planning read, not a claim or a missing row."""
    import colorization.colorize.loop as loop

    out = tmp_path / "out"
    with ThreadPoolExecutor(1) as pool:
        run_loop(photos, out, pool)
        before = catalog.read_manifest(out)

        def full_disk(data, name, *args):
            raise OSError(errno.ENOSPC, "No space left on device", str(out / f".tmp-0123abcd-{name}"))

        monkeypatch.setattr(loop, "render", full_disk)
        work, report = run_loop(photos, out, pool, model="m2")
    previous = [row for batch in work.pending.batches(3) for _, row in batch]
    assert report.stopped and len(previous) == 4 and {row["model_id"] for row in previous} == {"m1"}
    assert catalog.read_manifest(out).equals(before), "every claim put back as it was"


def test_stale_temps_are_ours_only(tmp_path):
    (tmp_path / "a" / ".colorize").mkdir(parents=True)
    ours = [tmp_path / ".tmp-0123abcd-x.jpg", tmp_path / "a" / ".colorize" / ".tmp-89abcdef-manifest.parquet"]
    theirs = [tmp_path / ".tmp-notours.jpg", tmp_path / "a" / ".tmp-0123ABCD-x.jpg", tmp_path / "a" / "x.jpg"]
    for path in ours + theirs:
        path.write_bytes(b"")
    (tmp_path / "a" / ".tmp-00000000-link.jpg").symlink_to(theirs[2])
    with atomic_path(tmp_path / "b" / "y.jpg") as temp:
        temp.write_bytes(b"y")
        ours.append(temp)  # the name atomic_path really uses matches
    assert remove_stale_temps(tmp_path) == 1
    assert remove_stale_temps(tmp_path, recursive=True) == 1
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)
    assert (tmp_path / "a" / ".tmp-00000000-link.jpg").is_symlink() and (tmp_path / "b" / "y.jpg").read_bytes() == b"y"


def test_tar_with_symlink_member_gets_a_row(photos, tmp_path):
    archive = tmp_path / "scans.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(photos / "box" / "grey0.jpg", arcname="grey0.jpg")
        link = tarfile.TarInfo("link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd.jpg"
        tar.addfile(link)
    out = tmp_path / "out"
    with ThreadPoolExecutor(1) as pool:
        _, report = run_loop(archive, out, pool)
    rows = catalog.read_manifest(out).set_index("source")
    assert rows["status"].to_dict() == {"grey0.jpg": "colorized", "link.jpg": "error"}
    assert report.counts == {"colorized": 1, "error": 1}
    assert report.errors == [("link.jpg", rows.loc["link.jpg", "error"])], "the refused entry is listed with why"
    assert rows.loc["link.jpg", "error"] == "link.jpg: symbolic link in archive, skipped"
    assert not (out / "link.jpg").exists()


def test_gif_first_frame_is_coloured_and_preprocessed(tmp_path, sample_paths):
    root = tmp_path / "in"
    root.mkdir()
    frames = [Image.open(p).convert("L").resize((80, 60)) for p in sample_paths[:2]]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    out = tmp_path / "out"
    with ThreadPoolExecutor(1) as pool:
        _, report = run_loop(root, out, pool)
    assert report.counts == {"colorized": 1} and report.errors == []
    result = Image.open(out / "anim.gif")
    assert result.format == "GIF" and result.size == (80, 60)
    assert metrics.colorfulness(np.asarray(result.convert("RGB"))) > 5

    shard = process_files(root, ["anim.gif"], tmp_path / "part-00000.parquet", SIZE, keep_grey=True)
    assert [r["status"] for r in shard.records] == ["grey"] and shard.shard == "part-00000.parquet"


def test_gif_decodes_its_first_frame():
    from colorization.photos.images import decode

    frames = [Image.new("L", (8, 8), 40), Image.new("L", (8, 8), 200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    photo = decode(buffer.getvalue(), "a.gif")
    assert np.asarray(photo.image)[0, 0].tolist() == [40, 40, 40]


def test_progress_ends_at_every_photo_done(photos, tmp_path):
    """Renders still running after the last batch are counted too: the bar and the dashboard end at 100%."""
    import time

    def slow_render(*args):
        time.sleep(0.3)
        return render_to_file(*args)

    out, calls = tmp_path / "out", []
    ledger = catalog.Ledger(out)
    work = catalog.plan(list_entries(photos), ledger.table(), out, "m1")
    with ThreadPoolExecutor(2) as pool:
        colorize_pending(
            work.pending, ledger, "m1",
            lambda batch: pool.submit(prepare_batch, photos, batch, SIZE, 10**8),
            tint,
            lambda entry, ab, thumb: pool.submit(slow_render, photos, entry, ab, out, 10**8, thumb),
            2, records=work.records, on_progress=lambda done, total: calls.append((done, total)),
        )
    assert calls[-1] == (5, 5), calls


def test_a_report_tallies_an_arrow_table_as_it_tallies_rows():
    """A split run's merged shares are counted from their Arrow table, the errors kept with their reasons."""
    entries = [Entry(f"p{i}.jpg", 10, i) for i in range(5)]
    rows = [catalog.record(entries[0], "colorized", "m1"), catalog.record(entries[1], "error", "m1", error="bad"),
            catalog.record(entries[2], "colour", "m1"), catalog.record(entries[3], "colorized", "m1"),
            catalog.record(entries[4], "error", "m1", error="worse")]
    by_rows, by_table = LoopReport(), LoopReport()
    by_rows.tally(rows)
    by_table.tally_table(pa.Table.from_pylist(rows, schema=catalog.SCHEMA))
    assert by_table.counts == by_rows.counts == {"colorized": 2, "error": 2, "colour": 1}
    assert by_table.errors == by_rows.errors == [("p1.jpg", "bad"), ("p4.jpg", "worse")]
