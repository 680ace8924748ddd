"""Quiet by default: a run that goes well shows its own lines, not its libraries' chatter (README: The command
line); ``-v`` brings the detail back."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colorization import quiet

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "data" / "samples" / "archive"
NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1795704031.415456   29321 port.cc:153] oneDNN custom operations are on.\n",
    b"E0000 00:00:1795704046.879254   29321 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n",
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
    b"appropriate compiler flags.\n",
]


def _write_through_filter() -> None:
    with quiet.native_stderr_filtered():
        for line in NOISE[:2]:
            os.write(2, line)
        print("a Python warning", file=sys.stderr, flush=True)
        for line in NOISE[2:]:
            os.write(2, line)
        os.write(2, b"kept line\n")
    os.write(2, b"after\n")


def test_native_log_lines_are_dropped_and_the_rest_passes_in_order(capfd, monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    _write_through_filter()
    assert capfd.readouterr().err == "a Python warning\nkept line\nafter\n"


def test_verbose_keeps_the_native_log_lines(capfd, monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    _write_through_filter()
    err = capfd.readouterr().err
    assert err == "".join(line.decode() for line in NOISE[:2]) + "a Python warning\n" + "".join(
        line.decode() for line in NOISE[2:]) + "kept line\nafter\n"


def test_tensorflow_log_level_is_set_unless_verbose_or_set_already(monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    monkeypatch.delenv(quiet.TF_LOG_LEVEL_ENV, raising=False)
    quiet.configure(verbose=False)
    assert os.environ[quiet.TF_LOG_LEVEL_ENV] == "3" and not quiet.is_verbose()

    monkeypatch.setenv(quiet.TF_LOG_LEVEL_ENV, "1")
    quiet.configure(verbose=False)
    assert os.environ[quiet.TF_LOG_LEVEL_ENV] == "1", "a level the user set is kept"

    monkeypatch.delenv(quiet.TF_LOG_LEVEL_ENV)
    quiet.configure(verbose=True)
    assert quiet.is_verbose() and quiet.TF_LOG_LEVEL_ENV not in os.environ


def test_cli_verbose_flag_before_or_after_the_subcommand():
    from flows.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "embed", "--dataset", "d"]).verbose
    assert parser.parse_args(["embed", "--dataset", "d", "--verbose"]).verbose
    assert not parser.parse_args(["embed", "--dataset", "d"]).verbose


def test_temporary_server_runs_without_analytics(monkeypatch):
    """Its telemetry heartbeat is what logged "Failed to send telemetry" and "database is locked" tracebacks."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    from flows.common import ANALYTICS_ENV, start_api

    seen = []

    def start(self, timeout=None):
        seen.append(os.environ.get(ANALYTICS_ENV))  # the server process is started with this environment
        self.port = 8124

    monkeypatch.delenv(ANALYTICS_ENV, raising=False)
    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    monkeypatch.setattr(SubprocessASGIServer, "stop", lambda self: None)
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_ENABLED: True}, restore_defaults={PREFECT_API_URL}):
        start_api()
    assert seen == ["false"]


def test_dask_workers_keep_task_lines_off_the_terminal_unless_verbose(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.common import dask_runner

    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        options = dask_runner(None, None, 2).cluster_kwargs
        assert options["env"]["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] == "WARNING"
        assert options["dashboard_address"].endswith(":0"), "a fixed port warns when another cluster holds it"
        monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
        assert "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL" not in dask_runner(None, None, 2).cluster_kwargs["env"]


def test_a_failed_heartbeat_is_one_warning_line_without_a_traceback():
    logger, stream = logging.getLogger("distributed.worker"), io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        quiet.dask_setup(worker=None)
        try:
            raise OSError("Stream is closed")
        except OSError:
            logger.exception("Failed to communicate with scheduler during heartbeat.")
        logger.error("another error keeps its level")
    finally:
        logger.removeHandler(handler)
        logger.filters.clear()
    assert stream.getvalue().splitlines() == [
        "WARNING lost contact with the scheduler (heartbeat failed: Stream is closed)",
        "ERROR another error keeps its level",
    ]


def test_the_local_clusters_workers_load_the_heartbeat_filter_and_keep_few_messages(monkeypatch):
    from distributed import Client, LocalCluster
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.common import DASK_LOG_LENGTH, dask_runner

    def has_filter() -> bool:
        return any(isinstance(f, quiet.HeartbeatFailureAsWarning)
                   for f in logging.getLogger("distributed.worker").filters)

    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        options = dask_runner(1, None, 1).cluster_kwargs
    with LocalCluster(**options) as cluster, Client(cluster) as client:
        assert client.submit(has_filter).result(timeout=60)
        # Each message that sends a Prefect task holds its spec and context (~100 KB); Dask's default of keeping
        # the last 1,000 on every stream held ~100 MB of them in a preprocess run's flow process.
        kept = [client.scheduler_comm.recent_message_log.maxlen]
        kept += [stream.recent_message_log.maxlen for stream in cluster.scheduler.stream_comms.values()]
        kept += client.run(lambda dask_worker: dask_worker.batched_stream.recent_message_log.maxlen).values()
        assert len(kept) == 3 and set(kept) == {DASK_LOG_LENGTH} == {cluster.scheduler.transition_log.maxlen}


def test_gpu_slot_on_a_temporary_server_asks_nothing(monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows import common

    def no_client(*args, **kwargs):
        raise AssertionError("the temporary server was asked about the gpu limit")

    monkeypatch.setattr(common, "get_client", no_client)
    monkeypatch.setattr(common, "concurrency", no_client)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        for _ in range(3):
            with common.gpu_slot():
                pass


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_gpu_slot_warns_once_without_the_limit_and_holds_it_when_there_is_one(prefect_harness):
    """Outside a run it logs to ``flows.common`` (caplog's handler does not survive Prefect's logging setup)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from flows import common

    common._gpu_limit_found.clear()
    collect = Collect()
    logging.getLogger("flows.common").addHandler(collect)
    try:
        for _ in range(3):
            with common.gpu_slot():
                pass
    finally:
        logging.getLogger("flows.common").removeHandler(collect)
    assert [m for m in collect.messages if "no global concurrency limit 'gpu'" in m] == collect.messages
    assert len(collect.messages) == 1

    common._gpu_limit_found.clear()
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=common.GPU_LIMIT, limit=1))
        try:
            with common.gpu_slot():
                assert client.read_global_concurrency_limit_by_name(common.GPU_LIMIT).active_slots == 1
            assert client.read_global_concurrency_limit_by_name(common.GPU_LIMIT).active_slots == 0
        finally:
            client.delete_global_concurrency_limit_by_name(common.GPU_LIMIT)
            common._gpu_limit_found.clear()


def test_gpu_slot_of_a_pinned_process_is_its_device_s_limit(prefect_harness, monkeypatch):
    """A worker pinned to device 1 takes turns with other users of this machine's device 1 only, not with every
    GPU's, nor with device 1 of another machine; found also behind a first page of other limits (a
    deployment's concurrency limit is one too)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from flows import common

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    names = [*(f"deployment:{i}" for i in range(10)), common.GPU_LIMIT, common.device_limit("1"),
             common.device_limit("1", host="other-machine")]
    common._gpu_limit_found.clear()
    with get_client(sync_client=True) as client:
        for name in names:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        try:
            with common.gpu_slot():
                held = {n: client.read_global_concurrency_limit_by_name(n).active_slots for n in names}
            assert list(held.values())[-3:] == [0, 1, 0] and names[-2] == f"gpu-{socket.gethostname()}-1"
        finally:
            for name in names:
                client.delete_global_concurrency_limit_by_name(name)
            common._gpu_limit_found.clear()


@contextlib.contextmanager
def dask_default_port_taken():
    """Hold Dask's default dashboard port, as another cluster on the machine would (if it is free)."""
    sock = socket.socket()
    try:
        sock.bind(("0.0.0.0", 8787))
        sock.listen()
    except OSError:
        pass  # taken already: all the better
    try:
        yield
    finally:
        sock.close()


def run_cli(arguments: list[str], cwd: Path) -> str:
    """Run the command as a user would, with a temporary Prefect server and none of the test shell's quieting."""
    unset = ("PREFECT_API_URL", quiet.TF_LOG_LEVEL_ENV, quiet.VERBOSE_ENV, "PREFECT_SERVER_ANALYTICS_ENABLED")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(cwd / ".prefect"))
    done = subprocess.run([sys.executable, "-m", "flows.cli", *arguments], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=400)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_a_demo_sized_run_is_quiet(tmp_path, sample_paths):
    """The demo's commands at the smallest size: learn from 6 photos, colour 2 grey ones one batch at a time."""
    photos, archive = tmp_path / "photos", tmp_path / "archive"
    photos.mkdir(), archive.mkdir()
    for path in sample_paths[:6]:
        shutil.copy2(path, photos)
    for path in sorted(ARCHIVE.glob("*.jpg"))[:2]:
        shutil.copy2(path, archive)
    started = time.perf_counter()
    with dask_default_port_taken():
        output = run_cli(["pipeline", "photos", "--dataset", "ds", "--model-dir", "model", "--size", "32",
                          "--width", "0.125", "--epochs", "1", "--weights", "none", "--batch-size", "4",
                          "--validation-percent", "20"], tmp_path)
        output += run_cli(["colorize", "archive", "out", "--model", "model", "--batch-size", "1"], tmp_path)
    assert (tmp_path / "out" / ".colorize" / "gallery.html").is_file()
    for noise in ["ERROR", "Traceback", "E0000", "I0000", "absl::InitializeLog", "Failed to send telemetry",
                  "database is locked", "already in use", "Concurrency limits"]:
        assert noise not in output, f"{noise!r} in:\n{output}"
    assert "Finished in state Completed()" in output, "the run's own lines are still there"
    print(f"{time.perf_counter() - started:.0f} s")
