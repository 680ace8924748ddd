"""Colorize under real failures: a full disk, and runs killed with SIGKILL while they write."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorization.atomic import TEMP_NAME
from colorization.colorize import catalog
from flows.cli import main
from flows.colorize import colorize
from tests.helpers import kill_a_dask_worker, start_cli

pytestmark = pytest.mark.slow



def grey_pngs(paths: list[Path], folder: Path) -> Path:
    """Grey PNGs (lossless, so their outputs are large) of the given photos, in two subfolders."""
    for i, path in enumerate(paths):
        target = folder / f"roll{i % 2}" / f"{path.stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.open(path).convert("L").save(target)
    return folder


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if TEMP_NAME.fullmatch(p.name)]


def finished(root: Path) -> list[Path]:
    """The output photos under ``root`` that were renamed into place: not temps, not the run's own folder."""
    return [p for p in sorted(root.rglob("*.png"))
            if ".colorize" not in p.parts and not TEMP_NAME.fullmatch(p.name)]


def outputs(root: Path) -> dict[str, str]:
    """Each finished output's hash; read only once nothing writes there (a temp may be renamed meanwhile)."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in finished(root)}


def start_cli_colorize(source: Path, out: Path, model: Path, workers: int) -> subprocess.Popen:
    """``colorization colorize`` one photo per batch, its stderr in ``OUT.stderr`` (see :func:`start_cli`)."""
    return start_cli(["colorize", str(source), str(out), "--model", str(model), "--batch-size", "1", "--workers",
                      str(workers)], out.with_name(f"{out.name}.stderr"))


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MB tmpfs, unmounted afterwards; skips where mounting is impossible (not root, no privilege)."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_stops_cleanly_and_the_next_run_finishes(prefect_harness, tiny_model, sample_paths, tmp_path,
                                                            small_tmpfs, capsys):
    source = grey_pngs(sample_paths[:12], tmp_path / "in")
    out = small_tmpfs / "out"
    args = ["colorize", str(source), str(out), "--model", str(tiny_model), "--batch-size", "2", "--workers", "1"]

    assert main(args) == 1
    err = capsys.readouterr().err
    line = re.search(r"colorization: colorize failed: (.*)", err).group(1)
    assert re.fullmatch(r"No space left on device writing (roll[01]/\S+\.png|\.colorize/manifest\.parquet); "
                        r"free space and run again — \d+ photos left to do", line), line
    assert "Traceback" not in err
    left = int(re.search(r"(\d+) photos left to do", line).group(1))
    rows = catalog.read_manifest(out)
    assert 0 < left <= 12 and "error" not in set(rows["status"]), "a full disk is no fault of the photos"
    for name in rows.loc[rows["status"] == "colorized", "source"]:
        Image.open(out / name).load()  # what was recorded as done is complete
    assert temps(out) == []

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_tmpfs)], check=True)
    assert main(args) == 0
    rows = catalog.read_manifest(out)
    assert len(rows) == 12 and set(rows["status"]) == {"colorized"} and len(outputs(out)) == 12
    assert temps(out) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_killed_run_leaves_nothing_behind(prefect_harness, tiny_model, sample_paths, tmp_path, seed):
    """SIGKILL the whole process group of a CLI run while it writes; the next run cleans up and finishes with
    outputs byte-identical to those of a run never interrupted."""
    source = grey_pngs(sample_paths[:10], tmp_path / "in")
    reference = tmp_path / "reference"
    colorize(input=source, output=reference, model=tiny_model, batch_size=1, workers=1)

    out = tmp_path / "killed"
    process = start_cli_colorize(source, out, tiny_model, workers=1)
    rng = np.random.default_rng(seed)
    after = int(rng.integers(0, 4))  # outputs to let through before waiting for the next write
    try:
        deadline = time.monotonic() + 180
        while process.poll() is None and time.monotonic() < deadline:
            if out.is_dir() and (temps(out) or len(finished(out)) > after):
                time.sleep(rng.uniform(0, 0.2))
                break
            time.sleep(0.005)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    colorize(input=source, output=out, model=tiny_model, batch_size=1, workers=1)
    assert temps(out) == []
    assert outputs(out) == outputs(reference) and len(outputs(out)) == 10
    assert set(catalog.read_manifest(out)["status"]) == {"colorized"}


def test_killed_dask_worker_ends_in_a_completed_run_or_one_clear_line(prefect_harness, tiny_model, sample_paths,
                                                                     tmp_path):
    """SIGKILL one Dask worker of a running colorize: the run completes (Dask and task retries) or fails with
    one line, never a corrupt or half-written file, and the next run finishes the archive."""
    source = grey_pngs(sample_paths[:10], tmp_path / "in")
    out = tmp_path / "out"
    process = start_cli_colorize(source, out, tiny_model, workers=2)
    killed = kill_a_dask_worker(process, lambda: out.is_dir() and bool(temps(out) or finished(out)))
    assert killed, "the run ended before a worker could be killed"
    err = out.with_name("out.stderr").read_text()
    assert "Traceback" not in err
    if process.returncode:
        assert process.returncode == 1 and re.search(r"^colorization: colorize failed: .+$", err, re.M), err
    for name in outputs(out):
        Image.open(out / name).load()  # every output there is whole
    assert temps(out) == []

    colorize(input=source, output=out, model=tiny_model, batch_size=1, workers=1)
    rows = catalog.read_manifest(out)
    assert len(outputs(out)) == 10 and set(rows["status"]) == {"colorized"} and temps(out) == []
