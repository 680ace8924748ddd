"""The pipeline as a service, with real processes on loopback: server, workers, deployments, Dask, PostgreSQL,
and the dashboard in headless Chromium. Every process a test starts is stopped by the test, also on failure."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

import flows.service
from colorization.colorize import catalog, shares
from colorization.dataset.shards import Dataset
from flows.preprocess import preprocess
from flows.service import Service
from tests.helpers import FAKE_EXTRACTOR, copy_samples, fake_embedded_copy, grey_copy

pytestmark = pytest.mark.service


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_service(state: Path, gpus: tuple[str, ...] = (), **env: str) -> Iterator[Service]:
    """Server + pools + every deployment of prefect.yaml + workers (a ``gpu`` one per device of ``gpus``, as
    ``COLORIZATION_GPUS`` gives them), stopped whatever happens."""
    service = Service(state, port=free_port(), extra_env={"PREFECT_WORKER_QUERY_SECONDS": "1", **env},
                      gpus=list(gpus))
    try:
        service.start_server()
        service.deploy()
        service.start_workers()
        yield service
    finally:
        service.stop()


def run(service: Service, name: str, parameters: dict, timeout: float = 300):
    with temporary_settings({PREFECT_API_URL: service.api_url}):
        flow_run = run_deployment(name, parameters=parameters, timeout=timeout, poll_interval=1)
    assert flow_run.state.is_completed(), f"{name}: {flow_run.state} (see {service.state}/worker-*.log)"
    return flow_run


def run_artifacts(service: Service, flow_run_id) -> list:
    """Every artifact of one flow run, each version of a keyed one included."""
    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        return client.read_artifacts(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), artifact_filter=ArtifactFilter()
        )


def by_key(artifacts: list) -> dict:
    return {a.key: a for a in artifacts}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """Two ``gpu`` workers pinned to devices 0 and 1, as on a two-GPU machine (here both run on the CPU)."""
    with running_service(tmp_path_factory.mktemp("service"), gpus=("0", "1")) as started:
        yield started


@pytest.fixture(scope="module")
def colorize_run(service, tiny_model, sample_paths, tmp_path_factory):
    archive = tmp_path_factory.mktemp("inbox")
    (archive / "scans").mkdir()
    for path in sample_paths[:2]:
        grey_copy(path, archive / "scans" / path.name)
    output = tmp_path_factory.mktemp("colorized")
    flow_run = run(service, "colorize/default", {"input": str(archive), "output": str(output),
                                                 "model": str(tiny_model), "workers": 1})
    return flow_run, archive, output


def test_colorize_deployment_through_a_worker(service, colorize_run):
    flow_run, archive, output = colorize_run
    assert sorted(p.name for p in (output / "scans").iterdir()) == sorted(p.name for p in (archive / "scans").iterdir())
    assert set(catalog.read_manifest(output)["status"]) == {"colorized"}
    artifacts = by_key(run_artifacts(service, flow_run.id))
    assert {"colorize-summary", "colorize-gallery"} <= set(artifacts)
    [summary] = json.loads(artifacts["colorize-summary"].data)
    assert summary["colorized"] == 2


@pytest.fixture(scope="module")
def train_run(service, tiny_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    dataset, model_dir = fake_embedded_copy(tiny_dataset, folder / "dataset"), folder / "model"
    flow_run = run(service, "train/train", {"dataset": str(dataset.root), "model_dir": str(model_dir), "epochs": 2,
                                            "batch_size": 4, "width": 0.125, "extractor": FAKE_EXTRACTOR})
    return flow_run, model_dir


def test_train_deployment_through_a_worker(service, train_run):
    flow_run, model_dir = train_run
    assert (model_dir / "model.keras").is_file() and (model_dir / "model.json").is_file()
    artifacts = run_artifacts(service, flow_run.id)
    keys = [a.key for a in artifacts]
    assert keys.count("train-metrics") == 1, "one table per run, grown in place at every epoch"
    assert {"train-samples", "train-evaluation", "train-model"} <= set(keys)
    found = by_key(artifacts)
    epochs = json.loads(found["train-metrics"].data)
    assert [row["epoch"] for row in epochs] == [1, 2] and all(row["PSNR (dB)"] > 0 for row in epochs)
    model_note = found["train-model"].data
    assert str(model_dir / "model.keras") in model_note and "file://" not in model_note
    assert f"colorize ARCHIVE --model {model_dir}" in model_note


def test_every_deployment_and_pool_exists(service):
    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        names = {f"{client.read_flow(d.flow_id).name}/{d.name}": d for d in client.read_deployments()}
        pools = {p.name: p for p in client.read_work_pools()}
        every = client.read_global_concurrency_limits(limit=200)  # pages of 10 by default
        limits = {c.name: c.limit for c in every if c.name.startswith("gpu")}
    assert set(names) == {"preprocess/default", "embed/default", "train/train", "pipeline/default",
                          "colorize/nightly", "colorize/default", "evaluate/default", "colorize-split/default",
                          "colorize-share/gpu", "embed-split/default", "embed-share/gpu"}
    assert names["colorize/nightly"].schedules[0].schedule.cron == "0 2 * * *"
    assert names["colorize/nightly"].parameters["allow_empty"] is True, "a quiet night is not a failure"
    on_cpu = {"preprocess/default", "colorize-split/default", "embed-split/default"}  # split runs only plan
    assert {names[n].work_pool_name for n in on_cpu} == {"cpu"}
    assert {names[n].work_pool_name for n in names if n not in on_cpu} == {"gpu"}
    assert pools["gpu"].concurrency_limit is None and pools["gpu"].type == "process", "each worker: one flow"
    host = socket.gethostname()
    assert limits == {"gpu": 1, f"gpu-{host}-0": 1, f"gpu-{host}-1": 1}, "one slot per accelerator"
    summary = service.summary()  # what make deploy prints, once, instead of prefect deploy's hint per deployment
    assert "work pools: cpu (unlimited), gpu (unlimited); each gpu worker runs one flow at a time" in summary
    assert f"global concurrency limits: gpu (1), gpu-{host}-0 (1), gpu-{host}-1 (1)" in summary
    assert all(name in summary for name in names) and "pool gpu, cron 0 2 * * *" in summary
    assert summary.splitlines()[-1].startswith("next: make worker")


def test_worker_logs_read_cleanly(service, colorize_run, train_run):
    """A deployment run that went well leaves no error, traceback or locked database in the workers' logs.

    Checked before the split tests: there two gpu workers race for the same share runs, and on SQLite the loser
    may log a failed state proposal while the database is busy (a reason to use PostgreSQL for many workers);
    those tests check their runs' states instead."""
    logs = {path.name: path.read_text() for path in service.state.glob("worker-*.log")}
    assert {"worker-cpu.log", "worker-gpu0.log", "worker-gpu1.log"} <= set(logs)
    for name, text in logs.items():
        for sign in ("Traceback", "| ERROR", "database is locked"):
            assert sign not in text, f"{name}: {sign}\n{text[-3000:]}"


def test_split_colorize_spreads_one_archive_over_both_gpu_workers(service, tiny_model, sample_paths, tmp_path):
    archive, output = tmp_path / "archive", tmp_path / "colorized"
    for i, path in enumerate(sample_paths[:4]):
        (archive / f"roll{i % 2}").mkdir(parents=True, exist_ok=True)
        grey_copy(path, archive / f"roll{i % 2}" / path.name)
    flow_run = run(service, "colorize-split/default", {"input": str(archive), "output": str(output),
                                                       "model": str(tiny_model), "gpus": 2, "workers": 1,
                                                       "poll_seconds": 1}, timeout=600)

    rows = catalog.read_manifest(output)
    assert len(rows) == 4 and set(rows["status"]) == {"colorized"}, "one manifest holds every share's photos"
    assert all((output / name).is_file() for name in rows["source"])
    assert shares.pending(output) == [] and len(shares.sheets(output)) == 2
    assert not catalog.worklist_path(output).exists(), "cut into the shares' own worklists, then removed"
    found = by_key(run_artifacts(service, flow_run.id))
    [summary] = json.loads(found["colorize-split-summary"].data)
    assert (summary["photos"], summary["colorized"], summary["left to do"]) == (4, 4, 0)
    children = json.loads(found["colorize-split-shares"].data)
    assert [(c["state"], c["photos"]) for c in children] == [("Completed", 2), ("Completed", 2)]
    assert pinned_devices(service, "colorize-share", "colorize-summary") == {"0", "1"}, \
        "each share ran on its own GPU worker"


def pinned_devices(service: Service, flow_name: str, artifact: str) -> set[str]:
    """The devices that the runs of ``flow_name`` were pinned to, from their summary artifacts."""
    with temporary_settings({PREFECT_API_URL: service.api_url}), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    return {json.loads(by_key(run_artifacts(service, r.id))[artifact].data)[0]["pinned device"] for r in runs}


def test_split_embed_deals_the_shards_to_both_gpu_workers(service, tiny_dataset, tmp_path):
    data = Dataset(tmp_path / "dataset")
    shutil.copytree(tiny_dataset.root, data.root)
    flow_run = run(service, "embed-split/default", {"dataset": str(data.root), "weights": "none",
                                                    "head": "predictions", "batch_size": 4, "gpus": 2,
                                                    "poll_seconds": 1}, timeout=600)

    [folder] = (data.root / "embeddings").iterdir()
    assert sorted(p.name for p in folder.glob("part-*.parquet")) == [s.name for s in data.shards()]
    table = json.loads(by_key(run_artifacts(service, flow_run.id))["embed-split-shares"].data)
    assert [(row["state"], row["shards"]) for row in table] == [("Completed", 2), ("Completed", 1)]
    assert pinned_devices(service, "embed-share", "embed-summary") == {"0", "1"}


def test_worker_commands_of_another_machine_use_its_server(tmp_path, monkeypatch, capsys):
    """On a GPU machine that only runs workers, ``make worker`` (and status) talk to the PREFECT_API_URL server."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert flows.service.main(["status", "--state", str(tmp_path)]) == 0
    assert "not answering at http://127.0.0.1:9/api" in capsys.readouterr().out


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_dashboard_shows_summary_gallery_and_training(service, colorize_run, train_run, tmp_path):
    from playwright.sync_api import sync_playwright

    flow_run, _, output = colorize_run
    shots = Path(os.environ.get("TEST_OUTPUT", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=flags)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.set_default_timeout(60_000)

            def open_artifact(run_id, key: str) -> None:
                page.goto(f"http://{service.host}:{service.port}/runs/flow-run/{run_id}")
                page.locator("li.p-tab#artifacts").click()
                page.get_by_text(key).first.click()

            def table_rows() -> tuple[list[str], list[list[str]]]:
                table = page.get_by_role("table").first
                table.wait_for()
                headers = [h.strip() for h in table.locator("th").all_inner_texts()]
                return headers, [[c.strip() for c in row.locator("td").all_inner_texts()]
                                 for row in table.locator("tbody tr").all()]

            open_artifact(flow_run.id, "colorize-summary")
            headers, rows = table_rows()
            summary = dict(zip(headers, rows[0]))
            assert (summary["outcome"], summary["photos"], summary["colorized"]) == ("done", "2", "2"), summary
            assert float(summary["images/s"]) > 0
            page.screenshot(path=shots / "colorize-summary.png", full_page=True)

            open_artifact(flow_run.id, "colorize-gallery")
            page.get_by_text("Before / after").first.wait_for()
            thumbnails = page.locator("img[src^='data:image/jpeg']")
            assert thumbnails.count() == 4, "before and after of both photos"
            assert page.get_by_text("RANDOM WEIGHTS").count() > 0, "a random model is never shown as real"
            assert page.get_by_text(str(output / ".colorize" / "gallery.html")).count() > 0, "where the sheet is"
            page.screenshot(path=shots / "colorize-gallery.png", full_page=True)

            train_flow_run, model_dir = train_run
            open_artifact(train_flow_run.id, "train-metrics")
            headers, rows = table_rows()
            assert "PSNR (dB)" in headers and [row[headers.index("epoch")] for row in rows] == ["1", "2"]
            page.screenshot(path=shots / "train-metrics.png", full_page=True)

            open_artifact(train_flow_run.id, "train-model")
            page.get_by_text(str(model_dir / "model.keras")).first.wait_for()
            assert page.locator("a[href^='file:']").count() == 0, "a browser opens no file:// link from the dashboard"
            page.screenshot(path=shots / "train-model.png", full_page=True)

            page.goto((output / ".colorize" / "gallery.html").as_uri())  # the contact sheet, opened from disk
            assert page.locator("img").count() == 4 and "RANDOM WEIGHTS" in page.content()
            page.screenshot(path=shots / "contact-sheet.png", full_page=True)
        finally:
            browser.close()
    assert all((shots / f"{name}.png").stat().st_size > 10_000
               for name in ("colorize-gallery", "train-metrics", "contact-sheet"))


def test_preprocess_on_a_dask_cluster_uses_both_workers(prefect_harness, sample_paths, tmp_path):
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    dask = str(Path(sys.executable).with_name("dask"))
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                   "--no-dashboard"], env=env, stderr=subprocess.DEVNULL)]
    try:
        for name in ("w1", "w2"):
            processes.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--name", name,
                                               "--no-dashboard"], env=env, stderr=subprocess.DEVNULL))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            copy_samples(sample_paths[:8], tmp_path / "photos")
            summary = preprocess(source=tmp_path / "photos", dataset=tmp_path / "ds", size=32, rows_per_shard=1,
                                 dask_address=address)
            counters = client.run(lambda dask_worker: dask_worker.state.transition_counter)
        assert summary["written"] == 8 and len(Dataset(tmp_path / "ds").shards()) == 8
        assert len(counters) == 2 and all(count > 0 for count in counters.values()), counters
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)


def postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@contextlib.contextmanager
def postgres_cluster() -> Iterator[tuple[str, list[str]]]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields the asyncpg URL and a psql command."""
    bin_dir = postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="colorization-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = folder / "data"
    try:
        subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                       check=True, capture_output=True)
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                       check=True, capture_output=True)
        subprocess.run([*as_postgres, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "prefect"], check=True, capture_output=True)
        psql = [*as_postgres, str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d",
                "prefect", "-tAc"]
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect", psql
    finally:
        subprocess.run([*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(postgres_bin() is None, reason="no PostgreSQL binaries (Debian's postgresql; .ci/run installs it)")
def test_server_on_postgresql_runs_a_deployment(tmp_path, sample_paths):
    with postgres_cluster() as (url, psql), running_service(
        tmp_path / "state", PREFECT_SERVER_DATABASE_CONNECTION_URL=url
    ) as service:
        copy_samples(sample_paths[:3], tmp_path / "photos")
        flow_run = run(service, "preprocess/default", {"source": str(tmp_path / "photos"),
                                                       "dataset": str(tmp_path / "ds"), "size": 32, "workers": 1})
        assert len(Dataset(tmp_path / "ds").read_manifest()) == 3
        stored = subprocess.run([*psql, f"select state_type from flow_run where id = '{flow_run.id}'"],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert stored == "COMPLETED", "the run must be stored in PostgreSQL, not SQLite"
        assert not (service.state / "prefect" / "prefect.db").exists()
