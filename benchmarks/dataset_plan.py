"""Preprocess's planning on a large photo folder: time per photo and peak memory, 1k vs 100k photos (issue 14).

Issue 14 asks that a run's overhead per photo not grow with the archive, and that peak memory stay flat, for the
dataset's manifest as for colorize's (``benchmarks/manifest.py``). Before a preprocess run processes a photo,
it plans: it walks the source folder, reads the dataset's manifest, decides which photos are new (or failed
and were replaced since) and cuts them into shards. On the synthetic archives of ``benchmarks/manifest.py``
(N copies of one 64x64 JPEG in nested folders, built once under ``data/benchmarks/manifest/``), each case in a
fresh process:

- **first run**: planning with no manifest yet: every photo is to do;
- **re-run**: planning once the manifest has a ``written`` row for every photo (synthetic rows, 512 photos
  to a shard, written once beside the archive): nothing to do, what a scheduled re-run costs;
- **peak RSS** above the process's RSS after its imports (``VmHWM`` minus RSS before planning).

Planning ends when the shards to submit are known: the ``new`` mode (today's, :func:`colorization.dataset.
preprocess.plan`) has written the worklist and reads it back as shards; the ``old`` mode (earlier versions'
planning, copied below: the listing, the whole manifest in pandas, a dict of its rows, lists of the pending
photos and of the shards) holds them in memory. Each case runs ``--repeats`` times in fresh processes, the
cases taking turns, and the table gives the median time and the largest peak.

``--whole-run`` runs the ``preprocess`` command itself over each archive instead (a first run into a new dataset,
``--size 32 --keep-grey``, so that every photo lands in a shard) and prints its flow process's peak RSS
(``VmHWM``, sampled every 0.2 s) and its RSS over the second half of the run. ``--bare-tasks N`` runs a flow of N
tasks that return an integer, through the same runner and window as preprocess's shards, and prints the flow
process's RSS as they finish: Prefect's and Dask's own memory per task.

Run as ``.venv/bin/python benchmarks/dataset_plan.py [--sizes 1000 100000] [--modes new old] [--repeats 3]
[--whole-run [--rows-per-shard 512]] [--bare-tasks 4000]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from manifest import WORK, build_archive, peak_rss_mb, rss_mb  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ROWS_PER_SHARD = 512


def dataset_with_rows(n: int, source: Path) -> Path:
    """A dataset whose manifest has a ``written`` row for each of the archive's photos; built once."""
    import pyarrow as pa

    from colorization import manifest
    from colorization.dataset.shards import MANIFEST_SCHEMA, Dataset, shard_name
    from colorization.photos.discover import iter_relative

    root = WORK / f"dataset-{n}"
    data = Dataset(root)
    if data.manifest_path.exists():
        return root
    data.ensure(64)
    names = list(iter_relative(source))
    stamp = (source / names[0]).stat()
    table = pa.table({
        "source": names,
        "id": [f"{name}@0123456789abcdef" for name in names],
        "status": ["written"] * n,
        "shard": [shard_name(i // ROWS_PER_SHARD) for i in range(n)],
        "error": pa.nulls(n, pa.string()),
        "bytes": [stamp.st_size] * n,
        manifest.MODIFIED: pa.array([stamp.st_mtime_ns] * n, pa.int64()).cast(manifest.MODIFIED_TYPE),
    }, schema=MANIFEST_SCHEMA)
    manifest.write(data.manifest_path, table, MANIFEST_SCHEMA)
    return root


def new_plan(source: Path, root: Path) -> tuple[int, int, int]:
    """Today's planning: the worklist written, then read back shard by shard; (photos to do, shards, shards
    the manifest knows)."""
    from colorization.dataset.preprocess import pending_shards, plan
    from colorization.dataset.shards import Dataset

    work = plan(source, Dataset(root))
    shards = sum(1 for _ in pending_shards(work.worklist, ROWS_PER_SHARD, 0))
    work.worklist.unlink()
    return work.pending, shards, len(work.known_shards)


def old_plan(source: Path, root: Path) -> tuple[int, int, int]:
    """Earlier versions' planning (commit 9f4f91b), copied: everything in memory at once."""
    from colorization.dataset.shards import ERROR, Dataset, shard_name
    from colorization.manifest import nanoseconds
    from colorization.photos.discover import find_images

    data = Dataset(root)
    rows = data.read_manifest()
    known = set(rows["shard"].dropna())
    found = find_images(source)
    done = {row.source: row for row in rows.itertuples(index=False)}
    pending = []
    for path in found:
        relative = path.relative_to(source).as_posix()
        previous = done.get(relative)
        if previous is None:
            pending.append(relative)
        elif previous.status == ERROR:
            stat = path.stat()
            if (stat.st_size, stat.st_mtime_ns) != (previous.bytes, nanoseconds(previous.modified)):
                pending.append(relative)
    shards = [(shard_name(n), pending[start:start + ROWS_PER_SHARD])
              for n, start in enumerate(range(0, len(pending), ROWS_PER_SHARD))]
    return len(pending), len(shards), len(known)


def child(n: int, mode: str, case: str) -> dict:
    """One case in this fresh process: the plan's seconds per photo and peak RSS above the imports."""
    import pyarrow  # noqa: F401  (imported before the baseline, as a run has it)

    from colorization.dataset import preprocess  # noqa: F401

    source = build_archive(n)
    root = dataset_with_rows(n, source) if case == "re-run" else WORK / f"empty-dataset-{n}"
    before = rss_mb()
    started = time.perf_counter()
    pending, shards, known = (new_plan if mode == "new" else old_plan)(source, root)
    seconds = time.perf_counter() - started
    expected = (n, -(-n // ROWS_PER_SHARD), 0) if case == "first run" else (0, 0, -(-n // ROWS_PER_SHARD))
    assert (pending, shards, known) == expected, (pending, shards, known)
    return {"us_per_photo": 1e6 * seconds / n, "peak_above_imports_mb": peak_rss_mb() - before,
            "imports_mb": before}


def whole_run(n: int, rows_per_shard: int) -> str:
    """``colorization preprocess`` over the archive of ``n`` photos into a new dataset, its flow process sampled."""
    source, dataset = build_archive(n), WORK / f"whole-run-{n}"
    shutil.rmtree(dataset, ignore_errors=True)
    command = [str(ROOT / ".venv" / "bin" / "colorization"), "preprocess", str(source), "--dataset", str(dataset),
               "--size", "32", "--keep-grey", "--workers", "2", "--rows-per-shard", str(rows_per_shard)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    while process.poll() is None:
        try:
            at = time.perf_counter() - started
            samples.append((at, _status(process.pid, "VmRSS"), _status(process.pid, "VmHWM")))
        except (OSError, StopIteration):
            pass
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    shutil.rmtree(dataset, ignore_errors=True)
    second_half = [rss for at, rss, _ in samples if at > seconds / 2]
    return (f"| {n:,} | {rows_per_shard} | exit {process.returncode} | {seconds:.0f} s | "
            f"{max(hwm for *_, hwm in samples):.0f} MB | {statistics.median(second_half):.0f} MB |")


def _status(pid: int, field: str) -> float:
    """A field of ``/proc/PID/status`` in MB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:")) / 1024


def bare_tasks(n: int, rows: int = 0, files: int = 0) -> None:
    """A flow of ``n`` tasks that take a list of ``files`` names and return an integer (or ``rows`` manifest
    records), as a shard task does, on preprocess's runner and window; RSS as they finish."""
    from prefect import flow, task
    from prefect.testing.utilities import prefect_test_harness

    from flows.common import completed, dask_runner
    from flows.preprocess import IN_FLIGHT

    @task
    def number(i: int, names: list[str]) -> int | list[dict]:
        if not rows:
            return i
        from colorization.dataset.shards import manifest_record

        return [manifest_record(f"d{i:06d}/p{j:04d}.jpg", id=f"d{i:06d}/p{j:04d}.jpg@0123456789abcdef",
                                status="grey", bytes=1234, modified=1_700_000_000_123_456_789) for j in range(rows)]

    @flow
    def tasks() -> None:
        started = time.perf_counter()
        names = ([f"d{i:06d}/p{j:04d}.jpg" for j in range(files)] for i in range(n))
        futures = (number.submit(i, batch) for i, batch in enumerate(names))
        for done, future in enumerate(completed(futures, IN_FLIGHT), start=1):
            future.result()
            if done in (100, 500, 1000) or done % 1000 == 0:
                print(f"{done} tasks: RSS {rss_mb():.0f} MB, {time.perf_counter() - started:.0f} s", flush=True)

    with prefect_test_harness():
        tasks.with_options(task_runner=dask_runner(2, None, 2))()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--modes", nargs="+", choices=["new", "old"], default=["new", "old"])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case (median taken)")
    parser.add_argument("--whole-run", action="store_true", help="run the preprocess command itself")
    parser.add_argument("--rows-per-shard", type=int, default=ROWS_PER_SHARD, help="with --whole-run")
    parser.add_argument("--bare-tasks", type=int, help="a flow of this many bare tasks instead")
    parser.add_argument("--bare-rows", type=int, default=0, help="records each bare task returns (default: none)")
    parser.add_argument("--bare-files", type=int, default=0, help="file names each bare task takes (default: none)")
    parser.add_argument("--child", nargs=3, metavar=("N", "MODE", "CASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.child[2])))
        return
    if args.bare_tasks:
        bare_tasks(args.bare_tasks, args.bare_rows, args.bare_files)
        return
    if args.whole_run:
        print("| photos | rows per shard | outcome | wall | flow process peak | RSS, second half (median) |")
        print("|---:|---:|---|---:|---:|---:|")
        for n in args.sizes:
            print(whole_run(n, args.rows_per_shard), flush=True)
        return

    for n in args.sizes:  # built before any timing
        dataset_with_rows(n, build_archive(n))
    cases = [(n, mode, case) for mode in args.modes for n in args.sizes for case in ("first run", "re-run")]
    runs: dict[tuple, list[dict]] = {case: [] for case in cases}
    for repeat in range(args.repeats):
        for case in cases:
            out = subprocess.run([sys.executable, __file__, "--child", *map(str, case)], check=True,
                                 capture_output=True, text=True).stdout
            runs[case].append(json.loads(out.splitlines()[-1]))
            print(f"repeat {repeat + 1}: {case}: {runs[case][-1]}", flush=True)

    print(f"\nmachine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("| mode | photos | case | µs per photo (median) | peak RSS above imports, MB (max) |")
    print("|---|---:|---|---:|---:|")
    table = {}
    for case, results in runs.items():
        table[case] = statistics.median(r["us_per_photo"] for r in results)
        n, mode, kind = case
        print(f"| {mode} | {n:,} | {kind} | {table[case]:.1f} | "
              f"{max(r['peak_above_imports_mb'] for r in results):.0f} |")
    small, large = min(args.sizes), max(args.sizes)
    for mode in args.modes:
        for kind in ("first run", "re-run"):
            ratio = table[(large, mode, kind)] / table[(small, mode, kind)]
            print(f"{mode}, {kind}: time per photo {large:,}/{small:,} = {ratio:.2f} (aim: at most 1.2)")


if __name__ == "__main__":
    main()
