"""The preprocess flow on a real Dask LocalCluster under the session's Prefect harness."""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowFilter, FlowFilterName

import flows.preprocess
from colorization.colorize import render
from colorization.dataset.preprocess import plan
from colorization.dataset.shards import GREY, WRITTEN, Dataset, read_shard, shard_schema
from colorization.photos.images import DEFAULT_MAX_PIXELS
from flows.cli import main
from flows.common import completed
from flows.preprocess import preprocess, preprocess_shard, preprocess_shards
from tests.helpers import copy_samples, grey_copy, kill_a_dask_worker, plant_bad_files, start_cli
from tests.test_lock import hold


def latest_artifact(key: str):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return max(found, key=lambda a: a.created)


@pytest.fixture
def photo_tree(tmp_path, sample_paths):
    source = tmp_path / "photos"
    copy_samples(sample_paths[:6], source / "a")
    copy_samples(sample_paths[6:10], source / "b" / "c")
    grey_copy(sample_paths[10], source / "old_grey.jpg")
    bad = plant_bad_files(source / "bad", sample_paths[0])
    return source, bad


def test_preprocess_writes_shards_manifest_and_is_incremental(prefect_harness, tmp_path, photo_tree, sample_paths):
    source, bad = photo_tree
    dataset = tmp_path / "dataset"

    summary = preprocess(source=source, dataset=dataset, size=32, rows_per_shard=4, workers=2)

    assert summary["found"] == 14 and summary["new"] == 14
    assert (summary["written"], summary["grey"], summary["errors"]) == (10, 1, 3)
    data = Dataset(dataset)
    shards = data.shards()
    # 14 files in sorted order, 4 per task: the last task holds only bad and grey files, so it writes no shard.
    assert [p.name for p in shards] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert summary["shards"] == 3
    assert pq.read_schema(shards[0]).equals(shard_schema(32), check_metadata=False)

    manifest = data.read_manifest().set_index("source")
    assert len(manifest) == 14
    assert manifest.loc["old_grey.jpg", "status"] == "grey" and pd.isna(manifest.loc["old_grey.jpg", "shard"])
    for name, reason in bad.items():
        row = manifest.loc[f"bad/{name}"]
        assert row.status == "error" and reason in row.error and name in row.error
    rows = [read_shard(p) for p in shards]
    assert sum(len(r) for r in rows) == 10
    for shard, shard_rows in zip(shards, rows):
        assert shard_rows.L.shape[1:] == (32, 32) and shard_rows.ab.shape[1:] == (32, 32, 2)
        for row_id, row_source in zip(shard_rows.ids, shard_rows.sources):
            assert manifest.loc[row_source, "id"] == row_id and manifest.loc[row_source, "shard"] == shard.name
            assert row_id.startswith(row_source + "@")
    assert all(rows[0].width > 0) and all(rows[0].colorfulness > 5)

    table = latest_artifact("preprocess-summary")
    assert '"found": 14' in str(table.data) or "'found': 14" in str(table.data)
    progress = latest_artifact("preprocess-progress")
    assert progress.data == 100.0 and progress.flow_run_id == table.flow_run_id, "on the run the user opened"
    errors = str(latest_artifact("preprocess-errors").data)
    assert "truncated.jpg" in errors and "empty.png" in errors
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["preprocess-shards"])))
    [child] = [run for run in children if run.parameters["dataset"] == str(dataset)]
    assert ".jpg" not in json.dumps(child.parameters), \
        "the photos travel in a file: Prefect refuses parameters over 512 KB (about 20,000 photos)"

    # A re-run finds nothing new and rewrites nothing.
    mtimes = [p.stat().st_mtime_ns for p in shards]
    again = preprocess(source=source, dataset=dataset, size=32, rows_per_shard=4, workers=2)
    assert again["new"] == 0 and again["written"] == 0
    assert [p.stat().st_mtime_ns for p in data.shards()] == mtimes

    # New photos, a file that failed replaced by a good one, and a shard left by an interrupted run: only the
    # new and the replaced photos are processed, the orphan goes.
    copy_samples(sample_paths[11:13], source / "later")
    (source / "bad" / "truncated.jpg").write_bytes(sample_paths[13].read_bytes())
    orphan = data.shards_dir / "part-00009.parquet"
    orphan.write_bytes(shards[0].read_bytes())
    more = preprocess(source=source, dataset=dataset, size=32, rows_per_shard=4, workers=2)
    assert (more["new"], more["written"], more["errors"]) == (3, 3, 0)
    assert not orphan.exists()
    assert [p.name for p in data.shards()][-1] == "part-00003.parquet"
    assert read_shard(data.shards()[-1]).sources == ["bad/truncated.jpg", *(f"later/{p.name}" for p in
                                                                              sorted(sample_paths[11:13]))]
    assert len(data.read_manifest()) == 16 and not data.worklist_path.exists()


def test_keep_grey_puts_grey_photos_in_shards(prefect_harness, tmp_path, sample_paths):
    source = tmp_path / "photos"
    grey_copy(sample_paths[0], tmp_path / "g.jpg")
    source.mkdir()
    (tmp_path / "g.jpg").rename(source / "g.jpg")
    summary = preprocess(source=source, dataset=tmp_path / "ds", size=32, keep_grey=True, workers=1)
    assert summary["grey"] == 1
    rows = read_shard(Dataset(tmp_path / "ds").shards()[0])
    assert rows.sources == ["g.jpg"] and np.abs(rows.ab.astype(int)).max() <= 1


def test_the_model_trains_on_the_whole_frame_colorize_shows_it(prefect_harness, tmp_path, sample_paths, capsys):
    source = tmp_path / "photos"
    copy_samples(sample_paths[:1], source)
    photo = next(source.iterdir())
    preprocess(source=source, dataset=tmp_path / "ds", size=32, workers=1)
    preprocess(source=source, dataset=tmp_path / "cropped", size=32, workers=1, framing="crop")

    shown = render.prepare(photo.read_bytes(), photo.name, 32, DEFAULT_MAX_PIXELS).lightness
    assert np.array_equal(read_shard(Dataset(tmp_path / "ds").shards()[0]).L[0], shown)
    cropped = read_shard(Dataset(tmp_path / "cropped").shards()[0]).L[0]
    assert np.abs(cropped.astype(int) - shown).mean() > 5, "the centre crop is another picture"
    assert Dataset(tmp_path / "cropped").framing() == "crop"

    code = main(["preprocess", str(source), "--dataset", str(tmp_path / "cropped"), "--size", "32", "--framing",
                 "whole"])
    assert code == 2 and "built with framing 'crop', not 'whole'" in capsys.readouterr().err


def test_run_fails_when_nothing_is_readable(prefect_harness, tmp_path, sample_paths):
    plant_bad_files(tmp_path / "bad", sample_paths[0])
    state = preprocess(source=tmp_path / "bad", dataset=tmp_path / "ds", size=32, workers=1, return_state=True)
    assert state.is_failed()
    assert "none of the 3 new files" in str(state.result(raise_on_failure=False))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["preprocess", "{tmp}/missing", "--dataset", "{tmp}/ds"], "missing: no such folder"),
        (["preprocess", "{tmp}", "--dataset", "{tmp}/ds", "--size", "16"], "--size must be at least 32, got 16"),
    ],
)
def test_cli_bad_parameters_give_one_line(tmp_path, capsys, arguments, message):
    code = main([a.format(tmp=tmp_path) for a in arguments])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("colorization: error:") and message in err


def test_shard_task_is_retried_after_a_failure(prefect_harness, tmp_path, sample_paths, monkeypatch):
    """A shard task that fails once (a killed worker, a file system hiccup) is retried and the run completes."""
    assert preprocess_shard.retries >= 1
    source = tmp_path / "photos"
    copy_samples(sample_paths[:3], source)
    data = Dataset(tmp_path / "ds")
    data.ensure(32)
    real, calls = flows.preprocess.process_files, []

    def flaky(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OSError("the worker's file system went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(flows.preprocess, "process_files", flaky)  # tasks run on threads of this process, not Dask
    work = plan(source, data)
    tally = preprocess_shards(source, data.root, work.worklist, 0, 8, 32, 2.5, True, "whole")
    assert len(calls) == 2
    assert (tally.written + tally.grey, tally.shards) == (3, 1)
    assert len(data.read_manifest()) == 3 and len(read_shard(data.shards()[0])) == 3


def test_completed_keeps_a_window_of_tasks_in_flight():
    """Tasks are submitted as earlier ones finish, never more than the window unfinished at a time: a huge
    dataset's run holds the shards under way, not one task per shard."""
    lock, running, most, submitted = threading.Lock(), [0], [0], []

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return i

    def submit(pool: ThreadPoolExecutor):
        for i in range(20):
            submitted.append(i)
            yield pool.submit(work, i)

    with ThreadPoolExecutor(8) as pool:
        results = []
        for future in completed(submit(pool), 3):
            assert len(submitted) - len(results) <= 3
            results.append(future.result())
    assert sorted(results) == list(range(20)) and most[0] <= 3


def test_flow_refuses_a_dataset_another_run_holds(prefect_harness, tmp_path, sample_paths):
    copy_samples(sample_paths[:1], tmp_path / "photos")
    holder = hold(tmp_path / "ds")
    try:
        state = preprocess(source=tmp_path / "photos", dataset=tmp_path / "ds", size=32, return_state=True)
    finally:
        holder.kill()
        holder.wait()
    assert state.is_failed()
    assert f"is in use by pid {holder.pid}" in str(state.result(raise_on_failure=False))
    assert not (tmp_path / "ds" / "dataset.json").exists()


@pytest.mark.slow
def test_killed_dask_worker_loses_no_photo_and_leaves_no_broken_shard(prefect_harness, tmp_path, sample_paths):
    """SIGKILL one Dask worker of a running preprocess: the run completes (task retries) or fails with one line;
    every shard on disk is whole, no temporary file is left, and the next run has every photo in a shard."""
    source, dataset = tmp_path / "photos", tmp_path / "ds"
    copy_samples(sample_paths[:16], source)
    log = tmp_path / "preprocess.stderr"
    process = start_cli(["preprocess", str(source), "--dataset", str(dataset), "--size", "64", "--rows-per-shard",
                         "1", "--workers", "2"], log)
    killed = kill_a_dask_worker(process, lambda: any((dataset / "shards").glob("*")))
    assert killed, "the run ended before a worker could be killed"
    err = log.read_text()
    assert "Traceback" not in err, err[-3000:]
    if process.returncode:
        assert process.returncode == 1 and re.search(r"^colorization: preprocess failed: .+$", err, re.M), err
    data = Dataset(dataset)
    for shard in data.shards():
        read_shard(shard)  # every shard there is whole
    assert not list((dataset / "shards").glob(".tmp-*"))

    assert main(["preprocess", str(source), "--dataset", str(dataset), "--size", "64", "--workers", "1"]) == 0
    manifest = data.read_manifest()
    assert sorted(manifest["source"]) == sorted(p.name for p in source.iterdir())
    assert set(manifest["status"]) <= {WRITTEN, GREY}
    in_shards = [i for shard in data.shards() for i in read_shard(shard, ["id"]).ids]
    written = manifest[manifest["status"] == WRITTEN]
    assert sorted(in_shards) == sorted(written["id"]), "each photo in exactly one shard, as the manifest says"
