"""`make demo` as a user runs it: the whole chain on the bundled photos, and a second run that does nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def make_demo(data: Path) -> str:
    """Run the README's demo command with its outputs under ``data``, one epoch, random weights; its output."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "demo", f"DEMO_DATA={data}", "EPOCHS=1",
                           "WEIGHTS=none"], env=env, capture_output=True, text=True, timeout=900)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output


def snapshot(data: Path) -> dict[str, int]:
    """Modification times of the model and of every coloured photo."""
    files = [data / "models" / "samples" / "model.keras", data / "models" / "samples" / "model.json"]
    files += [p for p in (data / "colorized" / "samples").rglob("*") if p.is_file() and ".colorize" not in p.parts]
    return {str(p.relative_to(data)): p.stat().st_mtime_ns for p in files}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_twice_colours_nothing_the_second_time(tmp_path):
    data = tmp_path / "demo"
    make_demo(data)
    first = snapshot(data)
    manifest = data / "colorized" / "samples" / ".colorize" / "manifest.parquet"
    coloured = pd.read_parquet(manifest).set_index("source")["model_id"]
    assert sum(name.endswith(".jpg") for name in first) >= 4, first

    make_demo(data)
    assert snapshot(data) == first, "the second run re-saved the model or re-coloured photos"
    assert pd.read_parquet(manifest).set_index("source")["model_id"].equals(coloured)
