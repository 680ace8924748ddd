"""Helpers shared by the flows: path resolution, folder locks, the Prefect API and the Dask task runner."""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import os
import queue
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from uuid import UUID

import dask
from prefect import get_run_logger
from prefect.artifacts import TableArtifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import MissingContextError, ObjectNotFound
from prefect.futures import PrefectFuture
from prefect.settings import get_current_settings
from prefect_dask import DaskTaskRunner
from tqdm import tqdm

from colorization import quiet
from colorization.atomic import remove_stale_temps
from colorization.lock import LOCK_FILE, folder_lock
from colorization.quiet import is_verbose
from flows.paths import project_path

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

GPU_LIMIT = "gpu"  # the global concurrency limit that serialises work on the accelerator
SERVER_STARTUP_SECONDS = 120  # the temporary server's start-up time on a busy machine (Prefect's default: 20)
# A temporary server's anonymous usage heartbeat: useless for a server that lives one command, and on a loaded
# machine it logs "Failed to send telemetry" or a "database is locked" traceback into a run that went well.
ANALYTICS_ENV = "PREFECT_SERVER_ANALYTICS_ENABLED"
DASK_LOG_LENGTH = 20  # messages and transitions a Dask scheduler, client or worker keeps for debugging

P = ParamSpec("P")
R = TypeVar("R")


def resolve_weights(weights: str | None) -> str | None:
    """``imagenet``, ``none`` and unset as they are; a weights file relative to the project root."""
    return weights if weights in (None, "imagenet", "none") else str(project_path(weights))


def locked(folder_parameter: str, lock_name: str = LOCK_FILE) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated flow function holding the lock of the folder its ``folder_parameter`` names.

    The flow's own ``wait`` parameter says whether to wait for another run that holds it (logged once) or to
    fail at once naming that run. Put it below ``@flow``: Prefect sees the function's own signature, with its
    annotations evaluated here (Prefect would look their names up in this module, not the flow's).
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn, eval_str=True)

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            folder = project_path(bound.arguments[folder_parameter])
            with folder_lock(folder, fn.__name__, wait=bound.arguments["wait"], lock_name=lock_name,
                             notify=get_run_logger().info):
                return fn(*args, **kwargs)

        run.__signature__ = signature  # type: ignore[attr-defined]
        return run

    return decorate


def start_api(startup_seconds: int = SERVER_STARTUP_SECONDS, attempts: int = 2) -> str | None:
    """Start Prefect's temporary server now, patiently, unless ``PREFECT_API_URL`` names a running one.

    Prefect starts it on first use and gives up after ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
    (20 s by default): too short on a loaded machine. Here it gets at least ``startup_seconds`` (more if that
    setting says so), and one more try on a fresh port; flows of this process then use it. Returns its URL.
    """
    from prefect.server.api.server import SubprocessASGIServer  # the server's modules, only when it is needed

    settings = get_current_settings()
    if settings.api.url or not settings.server.ephemeral.enabled:
        return None
    os.environ.setdefault(ANALYTICS_ENV, "false")  # the server process inherits this environment
    timeout = max(startup_seconds, settings.server.ephemeral.startup_timeout_seconds)
    server = SubprocessASGIServer()
    for attempt in range(1, attempts + 1):
        try:
            server.start(timeout=timeout)
            return server.api_url
        except RuntimeError as exc:
            server.stop()
            server.server_process, server.port = None, None
            failure = exc
            if attempt < attempts:
                logging.getLogger(__name__).warning("the temporary Prefect server did not start in %d s; trying "
                                                    "again", timeout)
    raise RuntimeError(f"the temporary Prefect server did not start in {timeout} s ({attempts} tries): {failure}; "
                       "start one (make server) and set PREFECT_API_URL") from failure


_gpu_limit_found: dict[str, str | None] = {}  # per API URL: the accelerator's limit found there (asked once)


def pinned_device() -> str:
    """The device this process is pinned to (``CUDA_VISIBLE_DEVICES``, as a ``gpu`` worker of
    ``COLORIZATION_GPUS`` is), or ``any``."""
    return os.environ.get("CUDA_VISIBLE_DEVICES") or "any"


def device_limit(device: str, host: str | None = None) -> str:
    """The global concurrency limit of device ``device`` of machine ``host`` (default: this one), such as
    ``gpu-node7-0``, which ``make deploy`` and ``make worker`` create for each device of ``COLORIZATION_GPUS``:
    named by machine too, so that GPU 0 of one machine never waits for GPU 0 of another."""
    return f"{GPU_LIMIT}-{host or socket.gethostname()}-{device}"


def existing_limits(client: SyncPrefectClient, names: list[str]) -> dict[str, int]:
    """The slots of each global concurrency limit of ``names`` that the server has, read by name: the server's
    list of limits comes in pages of ten and also holds one per deployment with a concurrency limit."""
    found = {}
    for name in names:
        try:
            found[name] = client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            pass
    return found


@contextlib.contextmanager
def gpu_slot() -> Iterator[None]:
    """Hold one slot of the accelerator's global concurrency limit while the block runs, so that runs take
    turns on it: :func:`device_limit` in a process pinned to a device (``CUDA_VISIBLE_DEVICES``), when the
    server has it, else ``gpu``.

    Which limit the server has is asked once per process (one run, from the command line or a worker), not at
    every batch. A temporary server has none and needs none: it serves this command only, so the block just
    runs. A configured server without either (``make deploy`` creates them) gets one warning, and the block
    runs unguarded, where Prefect itself would warn at every batch.
    """
    api_url = get_current_settings().api.url
    if not api_url:
        yield
        return
    if api_url not in _gpu_limit_found:
        pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
        candidates = [device_limit(pinned), GPU_LIMIT] if pinned else [GPU_LIMIT]
        with get_client(sync_client=True) as client:
            found = existing_limits(client, candidates)
        _gpu_limit_found[api_url] = next((name for name in candidates if name in found), None)
        if _gpu_limit_found[api_url] is None:
            _logger().warning("the server at %s has no global concurrency limit %r (make deploy creates it): "
                              "this run does not wait for others using the accelerator", api_url, GPU_LIMIT)
    if _gpu_limit_found[api_url]:
        with concurrency(_gpu_limit_found[api_url], occupy=1):
            yield
    else:
        yield


class LiveTable:
    """A table artifact of the current run that grows in place: one card on the dashboard however often it is
    shown, where a new ``create_table_artifact`` per update would add a card each time."""

    def __init__(self, key: str, description: str):
        self.key, self.description = key, description
        self.artifact_id: UUID | None = None

    def show(self, rows: list[dict]) -> None:
        """Publish ``rows`` as the table's whole content."""
        if self.artifact_id is None:
            self.artifact_id = create_table_artifact(rows, key=self.key, description=self.description)
            return
        data = TableArtifact(table=rows).format(_sync=True)  # the same encoding as create_table_artifact's
        with get_client(sync_client=True) as client:
            client.update_artifact(self.artifact_id, ArtifactUpdate(data=data))


def remove_temps(folder: Path, left_by: str, recursive: bool = False) -> None:
    """Delete the temporary files of atomic writes that never finished in ``folder`` (and its subfolders if
    ``recursive``), saying in the run's log how many ``left_by`` left."""
    if removed := remove_stale_temps(folder, recursive):
        _logger().info("%s: removed %d temporary files left by %s", folder, removed, left_by)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The run's logger inside a flow or task run, this module's outside one."""
    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


@contextlib.contextmanager
def progress_bar(**options: Any) -> Iterator[tqdm]:
    """A tqdm bar (``options`` are tqdm's) on stderr, or ``file``, when that is a terminal; none otherwise.

    While it shows, every console log handler writes its lines above the bar, which is cleared first and redrawn
    after (tqdm's external write mode), instead of across it; the handlers keep their format, level and colours.
    """
    file = options.pop("file", None) or sys.stderr
    bar = tqdm(file=file, disable=None, **options)
    root = logging.getLogger()
    handlers = root.handlers
    try:
        if not bar.disable:
            root.handlers = [_AboveBar(h, file) if _writes_to(h, file) else h for h in handlers]
        yield bar
    finally:
        root.handlers = handlers
        bar.close()


def _writes_to(handler: logging.Handler, file: object) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (file, sys.stdout, sys.stderr)


class _AboveBar(logging.Handler):
    """A console handler whose lines go above the progress bars on the same terminal."""

    def __init__(self, inner: logging.StreamHandler, file: object):
        super().__init__(inner.level)
        self.inner = inner
        self.file = file

    def handle(self, record: logging.LogRecord) -> bool:
        with tqdm.external_write_mode(file=self.file):
            return bool(self.inner.handle(record))

    def emit(self, record: logging.LogRecord) -> None:  # handle() does it all
        self.inner.emit(record)


def completed(futures: Iterable[PrefectFuture[R]], window: int) -> Iterator[PrefectFuture[R]]:
    """``futures`` as they finish, at most ``window`` of them unfinished at a time.

    ``futures`` is read only as earlier ones finish, so a generator that submits tasks keeps ``window`` in
    flight: a run of a million photos holds the tasks under way, not a task (and its files) for each shard.
    """
    finished: queue.SimpleQueue[PrefectFuture[R]] = queue.SimpleQueue()
    waiting, in_flight = iter(futures), 0
    while True:
        for future in itertools.islice(waiting, window - in_flight):
            future.add_done_callback(finished.put)
            in_flight += 1
        if not in_flight:
            return
        yield finished.get()
        in_flight -= 1


def dask_runner(workers: int | None, address: str | None, tasks: int) -> DaskTaskRunner:
    """A Dask task runner on an existing scheduler, or a local cluster of single-threaded worker processes.

    The local cluster gets one worker per core by default, never more workers than tasks. Its workers are
    pointed at the API this flow reports to, so that without a configured server they share the flow's
    temporary one instead of each starting their own. Workers of an existing cluster need ``PREFECT_API_URL``
    set in their own environment. ``COLORIZATION_DASK_ADDRESS`` names a cluster for runs that do not.
    """
    # Dask keeps its last messages on every stream for debugging, 1,000 by default. A message that sends a Prefect
    # task holds its spec and run context (~100 KB): a preprocess run's flow process, which holds the client (and
    # a local cluster's scheduler), kept ~100 MB of them (BENCHMARKS.md, "preprocess planning").
    dask.config.set({"distributed.admin.low-level-log-length": DASK_LOG_LENGTH})
    address = address or os.environ.get("COLORIZATION_DASK_ADDRESS")
    if address:
        return DaskTaskRunner(address=address)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    # Dask's default MALLOC_TRIM_THRESHOLD_ makes glibc map and page-fault every large numpy temporary afresh:
    # image work ran 1.5x slower in workers than in a plain process (benchmarks/preprocess.py).
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    env = {"PREFECT_API_URL": api_url}
    if not is_verbose():  # task runs' INFO lines (each "Finished in state Completed()") stay on the dashboard
        env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": max(1, min(workers or os.cpu_count() or 1, tasks)),
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": "127.0.0.1:0",  # None means :8787, which warns when another cluster holds it
            "silence_logs": logging.WARNING,
            "preload": [quiet.__name__],  # a last heartbeat after the scheduler closed: a warning, not a traceback
            "env": env,
        },
    )
