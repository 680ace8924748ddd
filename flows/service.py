"""Run the pipeline as a service: a Prefect server, work pools, deployments and workers as background processes.

``python -m flows.service server|worker|deploy|stop|status`` (the Makefile's ``make server`` etc.). Each process
gets a pid file and a log file under the state folder (``.state/`` by default), so every command is idempotent:
starting what already runs does nothing, stopping what is not running does nothing.

Settings come from the environment: ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` for PostgreSQL instead of the
embedded SQLite database, ``PREFECT_API_URL`` for workers (and deploy, status) that serve a server on another
machine, ``COLORIZATION_GPUS`` (e.g. ``0 1``) for one GPU worker pinned to each device through
``CUDA_VISIBLE_DEVICES``, ``COLORIZATION_DASK_ADDRESS`` for an existing Dask cluster.

Prefect's own ``prefect server start --background`` would do for the server, but it sends the server's output to
a pipe that nobody reads, so there would be no log to look at when something goes wrong: processes are started
here, each with its log file. Pools and the concurrency limit are made through Prefect's client, the same API
calls as ``prefect work-pool create --overwrite`` and ``prefect gcl create``, without three more CLI start-ups.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from flows.common import GPU_LIMIT, device_limit, existing_limits
from flows.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient


def _runs_at_a_time(limit: int | None) -> str:
    return "unlimited" if limit is None else f"{limit} run{'s' if limit > 1 else ''} at a time"


def _prefect() -> str:
    return str(Path(sys.executable).with_name("prefect"))


@dataclass
class Service:
    """The processes of one installation, their state folder and the API they share."""

    state: Path = PROJECT_ROOT / ".state"
    host: str = "127.0.0.1"
    port: int = 4200
    extra_env: dict[str, str] = field(default_factory=dict)
    gpus: list[str] = field(default_factory=list)  # devices with a pinned gpu worker each (COLORIZATION_GPUS)
    server_url: str | None = None  # another machine's server, for workers there (default: this host and port)

    pools = ("cpu", "gpu")  # process pools without a pool-wide limit: each gpu worker runs one flow at a time

    @property
    def limits(self) -> list[str]:
        """The global concurrency limits of the accelerators, one slot each: ``gpu`` (unpinned processes), and
        one per device of this machine (:func:`flows.common.device_limit`)."""
        return [GPU_LIMIT, *(device_limit(device) for device in self.gpus)]

    @property
    def api_url(self) -> str:
        return self.server_url or f"http://{self.host}:{self.port}/api"

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of every process: the API URL, and the server's home inside the state folder."""
        env = {**os.environ, **self.extra_env, **overrides}
        env.update(PREFECT_API_URL=self.api_url, PREFECT_HOME=str(self.state / "prefect"),
                   PREFECT_SERVER_ANALYTICS_ENABLED="false")
        return env

    def _pid_file(self, name: str) -> Path:
        return self.state / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state / f"{name}.log"

    def running(self, name: str) -> int | None:
        """The pid of a started process that is still alive."""
        try:
            pid = int(self._pid_file(name).read_text())
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child that has ended
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def _start(self, name: str, command: list[str], **env: str) -> int:
        if (pid := self.running(name)) is not None:
            print(f"{name}: already running (pid {pid})")
            return pid
        self.state.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(name), "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env(**env),
                                       cwd=PROJECT_ROOT, start_new_session=True)
        self._pid_file(name).write_text(str(process.pid))
        print(f"{name}: started (pid {process.pid}, log {self.log_file(name)})")
        return process.pid

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_server(self, timeout: float = 120) -> None:
        """Start the server (SQLite in the state folder unless a database URL is set) and wait until it answers."""
        self._start("server", [_prefect(), "server", "start", "--host", self.host, "--port", str(self.port)])
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline or self.running("server") is None:
                raise RuntimeError(f"the Prefect server did not start; see {self.log_file('server')}")
            time.sleep(0.5)
        print(f"server: {self.api_url} (dashboard http://{self.host}:{self.port})")

    def create_pools(self) -> None:
        """The process work pools, and this machine's global concurrency limits (:meth:`create_limits`).

        The ``gpu`` pool has no pool-wide limit: each ``gpu`` worker runs one flow at a time, so as many run
        at once as there are GPU workers, on this machine and any other that serves the same server.
        """
        from prefect.client.schemas.actions import WorkPoolCreate

        with self._client() as client:
            for name in self.pools:
                client.create_work_pool(WorkPoolCreate(name=name, type="process", concurrency_limit=None),
                                        overwrite=True)  # explicit None: lifts the limit of earlier versions
        self.create_limits()

    def create_limits(self) -> None:
        """The global concurrency limits that serialise network work on each accelerator of this machine (one
        slot each); existing ones are left as they are."""
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
        from prefect.exceptions import ObjectAlreadyExists

        with self._client() as client:
            for name in self.limits:
                with contextlib.suppress(ObjectAlreadyExists):
                    client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))

    def deploy(self) -> None:
        """Create the pools and every deployment of ``prefect.yaml``, then print one summary of what exists.

        ``prefect deploy``'s own output (a worker hint per deployment) goes to ``deploy.log``; on failure its
        end is printed.
        """
        self.create_pools()
        self.state.mkdir(parents=True, exist_ok=True)
        log = self.log_file("deploy")
        with open(log, "wb") as out:
            done = subprocess.run([_prefect(), "--no-prompt", "deploy", "--all"], cwd=PROJECT_ROOT, env=self.env(),
                                  stdout=out, stderr=subprocess.STDOUT)
        if done.returncode:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise RuntimeError(f"prefect deploy failed (exit status {done.returncode}); its log: {log}")
        print(self.summary())

    def summary(self) -> str:
        """Pools, the concurrency limit and the deployments on the server, and what to do next."""
        with self._client() as client:
            pools = {p.name: p.concurrency_limit for p in client.read_work_pools()}
            limits = existing_limits(client, self.limits)
            flows = {f.id: f.name for f in client.read_flows()}
            deployments = sorted((f"{flows[d.flow_id]}/{d.name}", d) for d in client.read_deployments())
        lines = ["work pools: " + ", ".join(f"{name} ({_runs_at_a_time(limit)})"
                                            for name, limit in sorted(pools.items()))
                 + "; each gpu worker runs one flow at a time"]
        lines += ["global concurrency limits: " + ", ".join(f"{name} ({limits.get(name, 'missing')})"
                                                           for name in self.limits),
                  f"deployments ({len(deployments)}; prefect deploy's log: {self.log_file('deploy')}):"]
        width = max((len(name) for name, _ in deployments), default=0)
        for name, deployment in deployments:
            crons = [s.schedule.cron for s in deployment.schedules if getattr(s.schedule, "cron", None)]
            lines.append(f"  {name:<{width}}  pool {deployment.work_pool_name}"
                         + "".join(f", cron {cron}" for cron in crons))
        lines.append("next: make worker, then e.g. prefect deployment run train/train "
                     f"(with PREFECT_API_URL={self.api_url})")
        return "\n".join(lines)

    def start_workers(self, timeout: float = 120) -> None:
        """One ``cpu`` worker, and one ``gpu`` worker per device of :attr:`gpus` (pinned to it), or one unpinned.

        A ``gpu`` worker runs one flow at a time, so runs spread over the devices, one each; the devices'
        concurrency limits are created first (a worker machine may never run ``make deploy``). Each worker is
        started once the previous one has registered with the server: workers starting together write to an
        SQLite database at once and log "database is locked".
        """
        self.create_limits()
        workers = [("worker-cpu", "cpu", [], {})] + [
            ("worker-gpu" if device is None else f"worker-gpu{device}", "gpu", ["--limit", "1"],
             {} if device is None else {"CUDA_VISIBLE_DEVICES": device})
            for device in self.gpus or [None]
        ]
        for name, pool, options, pin in workers:
            self._start(name, [_prefect(), "worker", "start", "--pool", pool, "--name", name, *options], **pin)
            self._wait_for_worker(name, pool, timeout)

    def _wait_for_worker(self, name: str, pool: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._client() as client:
                if any(w.name == name for w in client.read_workers_for_work_pool(pool)):
                    return
            if self.running(name) is None:
                raise RuntimeError(f"{name} stopped at start; see {self.log_file(name)}")
            if time.monotonic() > deadline:
                print(f"{name}: not registered after {timeout:.0f} s; starting the next one anyway")
                return
            time.sleep(0.5)

    @contextlib.contextmanager
    def _client(self) -> Iterator[SyncPrefectClient]:
        """A Prefect client of this installation's server."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as client:
            yield client

    def stop(self, timeout: float = 20) -> None:
        """Stop every process this state folder started (workers first), waiting for each to end."""
        names = sorted((p.stem for p in self.state.glob("*.pid")), key=lambda n: n == "server")
        for name in names:
            pid = self.running(name)
            if pid is not None:
                os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + timeout
                while self.running(name) is not None and time.monotonic() < deadline:
                    time.sleep(0.2)
                if self.running(name) is not None:
                    os.killpg(pid, signal.SIGKILL)
                print(f"{name}: stopped")
            self._pid_file(name).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.service", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["server", "worker", "deploy", "stop", "status"])
    parser.add_argument("--state", type=Path, default=PROJECT_ROOT / ".state")
    parser.add_argument("--port", type=int, default=int(os.environ.get("COLORIZATION_PORT", 4200)))
    args = parser.parse_args(argv)
    remote = os.environ.get("PREFECT_API_URL") if args.command in ("worker", "deploy", "status") else None
    service = Service(args.state, port=args.port, gpus=os.environ.get("COLORIZATION_GPUS", "").split(),
                      server_url=remote)
    if args.command == "server":
        service.start_server()
    elif args.command == "worker":
        service.start_workers()
    elif args.command == "deploy":
        service.deploy()
    elif args.command == "stop":
        service.stop()
    else:
        for pid_file in sorted(args.state.glob("*.pid")):
            pid = service.running(pid_file.stem)
            print(f"{pid_file.stem}: {'running, pid ' + str(pid) if pid else 'not running'}")
        print(f"server: {'answering' if service.healthy() else 'not answering'} at {service.api_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
