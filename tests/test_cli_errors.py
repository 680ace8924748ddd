"""Bad invocations of every subcommand: one ``colorization: error:`` line and exit 2, before any server starts.

The commands run as real processes with ``PREFECT_API_URL`` pointing where nothing listens: a command that
reached for a Prefect server (or started a flow) would fail differently, and slowly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from colorization import preflight
from colorization.dataset.shards import Dataset
from flows.cli import main
from tests.test_lock import hold

ROOT = Path(__file__).resolve().parents[1]
NOWHERE = "http://127.0.0.1:9/api"  # nothing listens on the discard port


def fake_model(folder: Path, card: dict | None = None) -> Path:
    """A model folder that passes the checks without Keras: a zip with Keras' members, and a card."""
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("metadata.json", "{}")
    card = card or {"extractor_id": "fake", "size": 32, "width": 0.5, "embedding_shape": [16]}
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def place(tmp_path_factory, sample_paths) -> Path:
    """Photos, an empty folder, a file, models good and bad, a dataset with embeddings, a model dir with a run."""
    root = tmp_path_factory.mktemp("cli")
    (root / "photos").mkdir()
    shutil.copy2(sample_paths[0], root / "photos")
    (root / "empty" / "sub").mkdir(parents=True)
    (root / "empty" / "notes.txt").write_text("no photos here\n")
    (root / "file").write_text("a regular file\n")
    fake_model(root / "model")
    fake_model(root / "sizeless-model", {"extractor_id": "fake", "width": 0.5, "embedding_shape": [16]})
    (fake_model(root / "bad-model") / "model.keras").write_text("not a zip\n")
    with zipfile.ZipFile(root / "zip-model.keras", "w") as archive:
        archive.writestr("weights.h5", "")
    fake_model(root / "zip-model")
    shutil.copy2(root / "zip-model.keras", root / "zip-model" / "model.keras")
    data = Dataset(root / "ds")
    data.ensure(32)
    data.embeddings_dir("fake").mkdir(parents=True)
    (root / "run" / "checkpoint").mkdir(parents=True)
    (root / "run" / "checkpoint" / "state.json").write_text("{}")
    return root


def run_cli(arguments: list[str], cwd: Path, env: dict | None = None) -> tuple[int, str, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *arguments], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": NOWHERE, "PREFECT_HOME": str(cwd / ".prefect"),
             **(env or {})},
    )
    return done.returncode, done.stderr, time.perf_counter() - started


CASES = [
    # colorize
    ("colorize photos out --model model --batch-size 0", ["--batch-size must be at least 1, got 0"]),
    ("colorize photos out --model model --batch-size -1", ["--batch-size must be at least 1, got -1"]),
    ("colorize photos out --model model --workers 0", ["--workers must be at least 1, got 0"]),
    ("colorize photos out --model model --saturation 0", ["--saturation must be positive, got 0.0"]),
    ("colorize photos out --model model --max-pixels 0", ["--max-pixels must be at least 1, got 0"]),
    ("evaluate photos --model model --max-pixels 0", ["--max-pixels must be at least 1, got 0"]),
    ("colorize photos out --model bad-model", ["bad-model/model.keras: not a Keras model file"]),
    ("colorize photos out --model zip-model", ["zip-model/model.keras: not a Keras model file", "config.json"]),
    ("colorize photos out --model nomodel", ["nomodel: no trained model here"]),
    ("colorize photos out --model sizeless-model", ["sizeless-model/model.json: not a model card", "'size'"]),
    ("colorize photos file --model model", ["file: OUTPUT is a file, not a folder"]),
    ("colorize photos file/out --model model", ["OUTPUT cannot be created", "file is a file"]),
    ("colorize empty out --model model", ["empty: no photos here"]),
    ("colorize missing out --model model", ["missing: no such folder or archive"]),
    ("colorize photos photos/out --model model", ["must not be inside the input folder"]),
    ("colorize photos out --model model --weights nothing.h5", ["nothing.h5: no such weights file"]),
    ("colorize photos out --batch-size many", ["--batch-size: invalid int value: 'many'"]),
    # preprocess
    ("preprocess photos --dataset file", ["file: --dataset is a file, not a folder"]),
    ("preprocess photos --dataset new --size 36", ["--size must be a multiple of 8", "got 36"]),
    ("preprocess photos --dataset new --size 16", ["--size must be at least 32, got 16"]),
    ("preprocess photos --dataset new --workers 0", ["--workers must be at least 1, got 0"]),
    ("preprocess photos --dataset new --rows-per-shard 0", ["--rows-per-shard must be at least 1, got 0"]),
    ("preprocess photos --dataset new --grey-threshold -1", ["--grey-threshold must be at least 0, got -1.0"]),
    ("preprocess photos --dataset ds --size 64", ["dataset was built at size 32, not 64"]),
    ("preprocess empty --dataset new", ["empty: no photos here"]),
    ("preprocess missing --dataset new", ["missing: no such folder"]),
    # embed
    ("embed --dataset ds --batch-size 0", ["--batch-size must be at least 1, got 0"]),
    ("embed --dataset file", ["file: --dataset is a file, not a dataset folder"]),
    ("embed --dataset empty", ["empty: not a dataset (no dataset.json)"]),
    ("embed --dataset ds --weights nothing.h5", ["nothing.h5: no such weights file"]),
    ("embed --dataset ds --head entry", ["--head: invalid choice: 'entry'"]),
    # train
    ("train --dataset ds --model-dir m --epochs 0", ["--epochs must be at least 1, got 0"]),
    ("train --dataset ds --model-dir m --batch-size 0", ["--batch-size must be at least 1, got 0"]),
    ("train --dataset ds --model-dir m --learning-rate 0", ["--learning-rate must be positive, got 0.0"]),
    ("train --dataset ds --model-dir m --width 0", ["--width must be positive, got 0.0"]),
    ("train --dataset ds --model-dir m --activation elu", ["--activation: invalid choice: 'elu'"]),
    ("train --dataset ds --model-dir m --seed x", ["--seed: invalid int value: 'x'"]),
    ("train --dataset ds --model-dir run", ["run: already holds a training run; pass --resume"]),
    ("train --dataset ds --model-dir run --resume", ["run/checkpoint/model.keras: not a Keras model file"]),
    ("train --dataset ds --model-dir file", ["file: --model-dir is a file, not a folder"]),
    ("train --dataset file --model-dir m", ["file: --dataset is a file, not a dataset folder"]),
    ("train --dataset ds --model-dir m --extractor other", ["no embeddings from other (have: fake)"]),
    # pipeline
    ("pipeline photos --dataset new --model-dir m --epochs 0", ["--epochs must be at least 1, got 0"]),
    ("pipeline photos --dataset new --model-dir m --width 0", ["--width must be positive, got 0.0"]),
    ("pipeline photos --dataset new --model-dir m --size 100", ["--size must be a multiple of 8", "got 100"]),
    ("pipeline photos --dataset new --model-dir run", ["run: already holds a training run"]),
    ("pipeline empty --dataset new --model-dir m", ["empty: no photos here"]),
    ("pipeline photos --dataset file --model-dir m", ["file: --dataset is a file, not a folder"]),
]


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c for c, _ in CASES])
def test_bad_invocation_is_one_line_and_exit_2(place, command, expected):
    code, err, seconds = run_cli(command.split(), place)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("colorization: error:"), err
    for words in expected:
        assert words in err
    assert seconds < 15, f"took {seconds:.1f} s: something started that should not have"
    assert not (place / "new").exists() and not (place / "m").exists() and not (place / "out").exists()


def test_read_only_output_is_refused(place, capsys, monkeypatch):
    """No read-only file system can be mounted here, so the statvfs flag it would set is faked."""
    real = os.statvfs

    def read_only(path):
        result = real(path)
        return os.statvfs_result((*result[:8], result.f_flag | os.ST_RDONLY, *result[9:]))

    monkeypatch.setattr(preflight.os, "statvfs", read_only)
    code = main(["colorize", str(place / "photos"), str(place / "ro-out"), "--model", str(place / "model")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("colorization: error:") and "ro-out: OUTPUT is on a read-only file system" in err


def test_busy_output_is_refused_by_the_cli(place):
    holder = hold(place / "busy-out", lock_name=".colorize/lock")
    try:
        code, err, seconds = run_cli(["colorize", "photos", "busy-out", "--model", "model"], place)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"colorization: error: {place / 'busy-out'} is in use by pid {holder.pid} on ")
    assert "(colorize); wait for it or pass --wait" in err
    assert seconds < 15


def test_temporary_server_gets_a_patient_start_and_one_retry(monkeypatch):
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    from flows.common import SERVER_STARTUP_SECONDS, start_api

    timeouts = []

    def start(self, timeout=None):
        timeouts.append(timeout)
        if len(timeouts) == 1:
            raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server.")
        self.port = 8123

    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    monkeypatch.setattr(SubprocessASGIServer, "stop", lambda self: None)
    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})  # a server object of its own, not the harness's
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_ENABLED: True}, restore_defaults={PREFECT_API_URL}):
        assert start_api() == "http://127.0.0.1:8123/api"
    assert timeouts == [SERVER_STARTUP_SECONDS, SERVER_STARTUP_SECONDS] and SERVER_STARTUP_SECONDS >= 60
    with temporary_settings(updates={PREFECT_API_URL: NOWHERE}):
        assert start_api() is None, "a configured server is used as it is"
