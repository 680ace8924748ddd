"""The per-folder run lock, with real processes: refusal naming the holder, release on SIGKILL, waiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colorization.lock import FolderBusy, ensure_free, folder_lock, holder

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from pathlib import Path
from colorization.lock import folder_lock
with folder_lock(Path(sys.argv[1]), "colorize", lock_name=sys.argv[2]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def hold(folder: Path, seconds: float = 60, lock_name: str = ".lock") -> subprocess.Popen:
    """Another process holding ``folder``'s lock for ``seconds``; returns once it holds it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), lock_name, str(seconds)],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert process.stdout.readline().strip() == "locked"
    return process


@pytest.fixture
def holder_process(tmp_path):
    process = hold(tmp_path)
    yield process
    process.kill()
    process.wait()


def test_second_run_is_refused_naming_the_holder(tmp_path, holder_process):
    started = time.perf_counter()
    with pytest.raises(FolderBusy) as refused, folder_lock(tmp_path, "preprocess"):
        pass
    message = str(refused.value)
    assert message.startswith(f"{tmp_path} is in use by pid {holder_process.pid} on ")
    assert "(colorize); wait for it or pass --wait" in message and "since 20" in message
    assert time.perf_counter() - started < 1
    with pytest.raises(FolderBusy, match=f"pid {holder_process.pid}"):
        ensure_free(tmp_path)
    assert holder(tmp_path / ".lock")["stage"] == "colorize"


def test_lock_is_free_after_the_holder_is_killed(tmp_path, holder_process):
    holder_process.send_signal(signal.SIGKILL)
    holder_process.wait()
    ensure_free(tmp_path)
    with folder_lock(tmp_path, "preprocess") as lock_file:
        assert holder(lock_file)["pid"] == os.getpid() and holder(lock_file)["stage"] == "preprocess"
    assert holder(lock_file) == {}, "a released lock names nobody"


def test_wait_blocks_until_the_holder_finishes(tmp_path):
    process = hold(tmp_path, seconds=2)
    told = []
    started = time.perf_counter()
    with folder_lock(tmp_path, "colorize", wait=True, notify=told.append):
        waited = time.perf_counter() - started
    assert process.wait(timeout=10) == 0
    assert waited > 1.5, "the lock was taken while the other run still held it (it holds it for 2 s)"
    assert len(told) == 1 and f"pid {process.pid}" in told[0] and "waiting" in told[0]


def test_ensure_free_creates_nothing(tmp_path):
    ensure_free(tmp_path / "new")
    assert not (tmp_path / "new").exists()
