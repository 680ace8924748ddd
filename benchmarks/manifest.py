"""Colorize's per-photo overhead besides the photo work: planning, manifest bookkeeping, memory; 1k vs 100k photos.

Issue 14 asks that the cost per photo of planning and bookkeeping not grow with the archive: the ratio
100k/1k per photo should stay at most 1.2. On a synthetic archive of N small photos (one 64x64 JPEG's bytes
written N times under nested folders, in ``data/benchmarks/manifest/``, built once), each case in a fresh
process:

- **plan, first run**: ``iter_entries`` + opening the :class:`~colorization.colorize.catalog.Ledger` + ``catalog.plan``
  with no manifest yet;
- **bookkeeping, full run**: :func:`~colorization.colorize.loop.colorize_pending` over all N photos in batches of
  8, with prepare, predict and render replaced by no-ops (futures already done), so that what is left is the
  loop, the claims and outcomes recorded, the flushes and the final compaction;
- **plan, re-run**: the same planning once every photo has its row and output (hard links), nothing to do;
- **top-up**: a run where only the last 200 photos changed (size or time), per photo processed: plan + loop,
  in a fresh process of its own, whose peak RSS above its RSS after imports is what a scheduled re-run of
  the archive holds;
- **peak RSS** of the process (``VmHWM``) by the end of the first run (what one colorize run of the
  archive holds: its listing, plan and bookkeeping) and by the end of the script (which also keeps the lists of
  entries of its later runs), its RSS after imports, and its RSS once the first run is over (what stays held
  besides the transient peaks of compactions);
- **merge a share**: a split run's share holding a row for every photo folded into the archive's manifest
  (``shares.merge``), per photo, and the RSS growth while it runs (sampled every 5 ms).

Bookkeeping is timed in wall time and in the process's CPU time, steadier where other jobs share the cores.
Each case runs ``--repeats`` times (default 3), each in a fresh process, the cases taking turns; the table
gives the median of each timing and the largest peak RSS. On a shared machine the speed drifts by up to 2x
from one minute to the next: a short 1k case run in a quiet moment against a 100k case in a busy one, or the
other way round, would make the ratio, so no case runs all its repeats in a row.

``--mode old`` runs the same with the manifest as earlier versions kept it (a dict per row, the whole file
rewritten at every flush; the old ``Ledger`` and ``plan`` are copied below): its full run is quadratic, so at
100k it is not run (the manifest is written directly instead) and only the top-up shows the flush cost.
By default both modes and both sizes run and the table is printed at the end. ``--first-run-only`` stops
each case after its first run: what a first colorize run of a large archive (say, ``--sizes 600000``) holds.

Run as ``.venv/bin/python benchmarks/manifest.py [--sizes 1000 100000] [--modes new old] [--repeats 3]
[--first-run-only]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "data" / "benchmarks" / "manifest"
BATCH = 8
TOP_UP = 200


def peak_rss_mb() -> float:
    """The process's peak RSS so far: ``VmHWM``, which starts afresh at exec, where ``ru_maxrss`` carries over
    the peak of the process that forked it (a top-up child would report its parent's)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_archive(n: int) -> Path:
    """N copies of one 64x64 JPEG under nested folders (100 per folder, 100 folders per folder); built once."""
    from PIL import Image

    source = WORK / f"archive-{n}"
    if (source / "done").exists():
        return source
    shutil.rmtree(source, ignore_errors=True)
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 40).save(buffer, "JPEG")
    data = buffer.getvalue()
    for i in range(n):
        folder = source / f"d{i // 10000:02d}" / f"e{i // 100 % 100:02d}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"p{i:06d}.jpg").write_bytes(data)
    (source / "done").write_text("")
    return source


# --- the manifest as earlier versions kept it (commit 97a041c), for the "old" mode -------------------------------

class OldLedger:
    def __init__(self, output: Path):
        from colorization.colorize import catalog

        self.output = output
        self.rows = {row["source"]: row for row in catalog.read_manifest(output).to_dict("records")}
        self._unsaved: dict = {}

    def frame(self):
        import pandas as pd

        from colorization.colorize.catalog import SCHEMA

        rows = {**self.rows, **self._unsaved}
        records = [rows[source] for source in sorted(rows) if rows[source] is not None]
        return pd.DataFrame.from_records(records, columns=SCHEMA.names)

    def get(self, source):
        return self._unsaved[source] if source in self._unsaved else self.rows.get(source)

    def add(self, records):
        self._unsaved.update((r["source"], r) for r in records)

    def put_back(self, source, row):
        self._unsaved[source] = row

    def flush(self):
        from colorization import manifest
        from colorization.colorize import catalog

        if not self._unsaved:
            return
        manifest.write(catalog.manifest_path(self.output), self.frame(), catalog.SCHEMA)
        self.rows = {s: r for s, r in {**self.rows, **self._unsaved}.items() if r is not None}
        self._unsaved = {}

    def compact(self):
        pass


def old_plan(entries, rows, output, model_id, recolor=False, overwrite=False):
    from colorization import manifest
    from colorization.colorize import catalog
    from colorization.colorize.catalog import COLORIZED, ERROR, PENDING, Plan, _redo, record

    # _redo compares a row's time as integer nanoseconds, as plan reads it
    previous = {row["source"]: {**row, manifest.MODIFIED: manifest.nanoseconds(row[manifest.MODIFIED])}
                for row in rows.to_dict("records")}
    pending, records, kept = [], [], 0
    for entry in entries:
        row = previous.get(entry.name)
        ours = row is not None and row["status"] in (COLORIZED, PENDING)
        if not _redo(entry, row, output, model_id, recolor, overwrite):
            kept += 1
        elif not entry.safe:
            records.append(record(entry, ERROR, model_id, error=f"{entry.name}: unsafe path in archive, skipped"))
        elif (output / entry.name).exists() and not ours and not overwrite:
            records.append(record(entry, ERROR, model_id, error="exists"))
        else:
            pending.append(entry)
    return Plan(worklist_of(catalog.worklist_path(output), pending), records, kept)


def worklist_of(path: Path, entries: list):
    """A worklist of ``entries`` with no rows before them (the old plan's list, or a share's photos)."""
    from colorization.colorize import catalog, worklist

    return worklist.write(path, entries, catalog.SCHEMA)


# --- one case, in a fresh process ----------------------------------------------------------------------------------

def child(n: int, mode: str, first_run_only: bool = False) -> dict:
    from colorization import manifest
    from colorization.colorize import catalog
    from colorization.colorize.catalog import COLORIZED
    from colorization.colorize.loop import colorize_pending
    from colorization.photos.archive import iter_entries, list_entries

    after_imports = rss_mb()
    source = build_archive(n)
    output = WORK / f"out-{n}-{mode}"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    old = mode == "old"

    def planning():
        started = time.perf_counter()
        ledger, work = plan_run(source, output, old, iter_entries(source))
        return ledger, work, time.perf_counter() - started

    result = {"photos": n, "mode": mode, "rss after imports MB": round(after_imports)}
    ledger, work, seconds = planning()
    result["plan first µs/photo"] = 1e6 * seconds / n
    if old and n > 20_000:
        result["bookkeeping full µs/photo"] = None  # quadratic: not run; the manifest is written directly
        result["bookkeeping CPU µs/photo"] = None
        import pyarrow as pa

        records = [catalog.record(e, COLORIZED, "m1", "0123456789abcdef") for e in work.pending]
        manifest.write(catalog.manifest_path(output), pa.Table.from_pylist(records, schema=catalog.SCHEMA),
                       catalog.SCHEMA)
    else:
        started, cpu = time.perf_counter(), time.process_time()
        report = colorize_pending(work.pending, ledger, "m1", *NO_WORK, BATCH)
        result["bookkeeping full µs/photo"] = 1e6 * (time.perf_counter() - started) / n
        result["bookkeeping CPU µs/photo"] = 1e6 * (time.process_time() - cpu) / n
        assert report.left == 0 and report.counts[COLORIZED] == n
    result["first run peak RSS MB"] = round(peak_rss_mb())
    result["first run RSS at its end MB"] = round(rss_mb())
    if first_run_only:
        shutil.rmtree(output)
        return result
    entries = list_entries(source)
    for entry in entries:  # outputs, so that a re-run finds every photo done (not timed)
        target = output / entry.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source / entry.name, target)
    ledger, work, seconds = planning()
    assert work.kept == n and not work.pending, (work.kept, len(work.pending))
    result["plan re-run µs/photo"] = 1e6 * seconds / n

    line = subprocess.run([sys.executable, __file__, "--top-up", str(n), mode], check=True, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    result.update(json.loads(line.stdout.strip().splitlines()[-1]))
    assert len(catalog.read_manifest(output)) == n
    result["peak RSS MB"] = round(peak_rss_mb())
    shutil.rmtree(output)
    if not old:
        result.update(merge_share(entries))
    return result


def plan_run(source: Path, output: Path, old: bool, entries):
    """Open the archive's ledger and plan a run over ``entries``, as this project or earlier versions do."""
    from colorization.colorize import catalog

    if old:
        ledger = OldLedger(output)
        return ledger, old_plan(list(entries), ledger.frame(), output, "m1")
    ledger = catalog.Ledger(output)
    return ledger, catalog.plan(entries, ledger.pieces(), output, "m1")


def _no_work():
    """prepare, predict and render replaced by no-ops: futures already done."""
    import numpy as np

    from colorization.colorize.catalog import COLORIZED
    from colorization.colorize.loop import PrepareResult, RenderResult
    from colorization.colorize.render import Prepared

    lightness = np.zeros((1, 1), np.float32)

    def done(value) -> Future:
        future = Future()
        future.set_result(value)
        return future

    def prepare(batch):
        return done([PrepareResult(e, "0123456789abcdef", Prepared(e.name, lightness, False)) for e in batch])

    def predict(stack):
        return np.zeros((len(stack), 1, 1, 2), np.float32)

    def render(entry, ab, thumbnail):
        return done(RenderResult(COLORIZED))

    return prepare, predict, render


NO_WORK = _no_work()


def top_up(n: int, mode: str) -> dict:
    """A run after the last TOP_UP photos changed (their time, one ns later), in this fresh process: time per
    photo done, and the peak RSS above the RSS after imports."""
    import dataclasses

    from colorization.colorize.loop import colorize_pending
    from colorization.photos.archive import iter_entries

    after_imports = rss_mb()
    source, output = build_archive(n), WORK / f"out-{n}-{mode}"
    entries = (dataclasses.replace(e, mtime_ns=e.mtime_ns + 1) if i >= n - TOP_UP else e
               for i, e in enumerate(iter_entries(source)))
    started = time.perf_counter()
    ledger, work = plan_run(source, output, mode == "old", entries)
    assert len(work.pending) == TOP_UP, len(work.pending)
    colorize_pending(work.pending, ledger, "m1", *NO_WORK, BATCH)
    seconds = time.perf_counter() - started
    peak = peak_rss_mb()
    return {"top-up ms/photo done": 1e3 * seconds / TOP_UP, "top-up RSS above imports MB": round(peak - after_imports)}


def merge_share(entries: list) -> dict:
    """Time and RSS growth of folding a split run's share holding every photo into a new archive manifest."""
    from colorization.colorize import catalog, shares
    from colorization.colorize.catalog import COLORIZED

    output = WORK / f"merge-{len(entries)}"
    shutil.rmtree(output, ignore_errors=True)
    [share] = shares.write(output, worklist_of(catalog.worklist_path(output), entries), 1)
    child = shares.ledger(output, share)
    child.add([catalog.record(e, COLORIZED, "m1", "0123456789abcdef") for e in entries])
    child.flush()
    child.compact()
    del child
    before, peak, done = rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    merged = shares.merge(output, catalog.Ledger(output))
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    assert merged.counts.total() == len(entries)
    shutil.rmtree(output)
    return {"merge a share µs/photo": 1e6 * seconds / len(entries),
            "merge a share RSS growth MB": round(max(peak[0], rss_mb()) - before)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--modes", nargs="+", choices=["new", "old"], default=["new", "old"])
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per case (median taken)")
    parser.add_argument("--first-run-only", action="store_true",
                        help="plan and run once over each archive, then stop: its time and memory only")
    parser.add_argument("--child", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--top-up", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.first_run_only)))
        return
    if args.top_up:
        print(json.dumps(top_up(int(args.top_up[0]), args.top_up[1])))
        return
    print(f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}", flush=True)
    cases = [(mode, n) for mode in args.modes for n in args.sizes]
    runs: dict[tuple[str, int], list[dict]] = {case: [] for case in cases}
    for _ in range(args.repeats):  # interleaved, so that a slow minute of a shared machine hits every case
        for mode, n in cases:
            started = time.perf_counter()
            only = ["--first-run-only"] if args.first_run_only else []
            line = subprocess.run([sys.executable, __file__, "--child", str(n), mode, *only], check=True,
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
            runs[mode, n].append(json.loads(line.stdout.strip().splitlines()[-1]))
            print(f"{mode} {n}: {time.perf_counter() - started:.0f} s  {runs[mode, n][-1]}", flush=True)
    results = [_combined(runs[case]) for case in cases]
    keys = list(dict.fromkeys(k for r in results for k in r if k not in ("photos", "mode")))
    print("\n| mode | photos | " + " | ".join(keys) + " |")
    print("|---|---:|" + "---:|" * len(keys))
    for r in results:
        print(f"| {r['mode']} | {r['photos']:,} | " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
    for mode in args.modes:
        rows = {r["photos"]: r for r in results if r["mode"] == mode}
        if len(rows) >= 2:
            small, large = rows[min(rows)], rows[max(rows)]
            ratios = {k: _fmt(large[k] / small[k]) for k in keys if large.get(k) and small.get(k) and "RSS" not in k}
            print(f"{mode}: per photo {max(rows)}/{min(rows)}: {ratios}")


def _combined(runs: list[dict]) -> dict:
    """One row for several runs of a case: the median of each timing, the largest of each memory figure."""
    def pick(key: str, values: list):
        if any(v is None for v in values) or not isinstance(values[0], (int, float)):
            return values[0]
        return max(values) if "RSS" in key else statistics.median(values)
    return {key: pick(key, [run[key] for run in runs]) for key in runs[0]}


def _fmt(value) -> str:
    if value is None:
        return "not run"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
