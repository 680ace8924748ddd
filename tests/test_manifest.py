"""Manifests appended per flush and compacted now and then: what readers see at every step, crashes included."""

from __future__ import annotations

import errno
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from colorization import manifest
from colorization.colorize import catalog, worklist
from colorization.dataset import preprocess
from colorization.dataset.preprocess import pending_shards, plan, remove_orphan_shards
from colorization.dataset.shards import Dataset, manifest_record
from colorization.errors import TransientError
from colorization.photos.archive import Entry


def entry(i: int, size: int = 100) -> Entry:
    return Entry(f"roll{i % 3}/p{i:04d}.jpg", size, 1_700_000_000_123_456_789 + i)  # ns that a float would round


def row_of(ledger: catalog.Ledger, i: int) -> dict | None:
    """The ledger's row of ``entry(i)`` (None: it has none)."""
    return next((row for row in ledger.table().to_pylist() if row["source"] == entry(i).name), None)


def rows(statuses: dict[int, str], model: str = "m1") -> list[dict]:
    return [catalog.record(entry(i), status, model) for i, status in statuses.items()]


def expected(*steps: dict[int, str | None]) -> dict[str, str]:
    """source → status after ``steps`` (None removes)."""
    latest: dict[str, str] = {}
    for step in steps:
        for i, status in step.items():
            if status is None:
                latest.pop(entry(i).name, None)
            else:
                latest[entry(i).name] = status
    return dict(sorted(latest.items()))


def statuses(frame: pd.DataFrame) -> dict[str, str]:
    return dict(zip(frame["source"], frame["status"]))


def modified_ns(frame: pd.DataFrame) -> list[int]:
    return [manifest.nanoseconds(t) for t in frame["modified"]]


def test_each_flush_appends_a_part_and_reads_merge_them(tmp_path):
    ledger = catalog.Ledger(tmp_path)
    path = catalog.manifest_path(tmp_path)
    ledger.add(rows({i: "pending" for i in range(8)}))
    ledger.flush()
    ledger.add(rows({i: "colorized" for i in range(4)}))
    ledger.put_back(entry(4).name, None)  # a claim taken back: the photo had no row
    ledger.flush()
    ledger.flush()  # nothing changed: nothing written
    assert not path.exists() and [p.name for p in manifest.part_paths(path)] == ["part-000000.parquet",
                                                                                "part-000001.parquet"]
    assert pq.read_table(manifest.part_paths(path)[1]).num_rows == 5, "a part holds only the rows of its flush"
    want = expected({i: "pending" for i in range(8)}, {i: "colorized" for i in range(4)}, {4: None})
    read = catalog.read_manifest(tmp_path)
    assert statuses(read) == want and list(read["source"]) == sorted(want)
    assert str(read["modified"].dtype) == "datetime64[ns, UTC]", "a time, for pandas and DuckDB readers"
    assert modified_ns(read) == [entry(int(s[-8:-4])).mtime_ns for s in read["source"]], "exact to the ns"
    assert statuses(ledger.frame()) == want and len(ledger.frame()) == 7
    assert row_of(ledger, 0)["status"] == "colorized" and row_of(ledger, 4) is None

    again = catalog.Ledger(tmp_path)  # a new run (or a run after a kill) sees the same rows
    assert statuses(again.frame()) == want
    assert manifest.nanoseconds(row_of(again, 5)["modified"]) == entry(5).mtime_ns
    assert again.frame().equals(read)
    again.add(rows({9: "colour"}))
    again.flush()
    assert manifest.part_paths(path)[-1].name == "part-000002.parquet", "numbering goes on after the parts there"


def test_compaction_keeps_exactly_the_latest_row_of_each_source(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "COMPACT_MIN_ROWS", 20)
    path = catalog.manifest_path(tmp_path)
    ledger = catalog.Ledger(tmp_path)
    steps = [{i: "pending" for i in range(10)}, {i: "colorized" for i in range(0, 10, 2)},
             {i: "error" for i in range(1, 10, 2)}, {3: None, 12: "colour"}, {5: "pending", 12: "colorized"}]
    for step in steps:
        ledger.add(rows({i: s for i, s in step.items() if s is not None}))
        for i in (i for i, s in step.items() if s is None):
            ledger.put_back(entry(i).name, None)
        ledger.flush()
    assert path.exists() and len(manifest.part_paths(path)) == 1, "compacted once the parts held over 20 rows"
    ledger.compact()
    assert manifest.part_paths(path) == []
    base = pq.read_table(path).to_pandas()
    assert statuses(base) == expected(*steps), "the base alone holds the latest row of each source, once"
    assert base["source"].is_unique and base.equals(catalog.read_manifest(tmp_path))
    assert modified_ns(base) == [entry(int(s[-8:-4])).mtime_ns for s in base["source"]], "no precision lost"
    written = path.stat().st_mtime_ns
    ledger.compact()
    assert path.stat().st_mtime_ns == written, "nothing to fold in: nothing written"


def test_a_large_manifest_is_compacted_often_enough_that_its_writer_holds_a_bounded_number_of_rows(
        tmp_path, monkeypatch):
    """Past COMPACT_MAX_ROWS / COMPACT_FRACTION rows, compactions come every COMPACT_MAX_ROWS rows instead of
    every quarter of the base: a first run of a million photos would otherwise hold a quarter million rows."""
    monkeypatch.setattr(manifest, "COMPACT_MIN_ROWS", 4)
    monkeypatch.setattr(manifest, "COMPACT_MAX_ROWS", 8)
    ledger = catalog.Ledger(tmp_path)
    ledger.add(rows({i: "colour" for i in range(100)}))
    ledger.flush()
    ledger = catalog.Ledger(tmp_path)  # a base of 100 rows: a quarter of it would be 25
    held, steps = [], []
    for start in range(100, 160, 3):
        steps.append({i: "colorized" for i in range(start, start + 3)})
        ledger.add(rows(steps[-1]))
        ledger.flush()
        held.append(sum(map(len, ledger._manifest._recent)))
    assert max(held) == 6 and held.count(0) == 6, "compacted as soon as the parts held over 8 rows"
    assert len(manifest.part_paths(catalog.manifest_path(tmp_path))) == 2
    assert statuses(catalog.read_manifest(tmp_path)) == expected({i: "colour" for i in range(100)}, *steps)


@pytest.mark.parametrize("parts_left", ["all", "newest"])
def test_a_crash_between_compaction_steps_reads_back_the_same(tmp_path, parts_left):
    """Killed after the new base was written but before (all) the parts it includes were deleted."""
    path = catalog.manifest_path(tmp_path)
    first = catalog.Ledger(tmp_path)
    first.add(rows({i: "colorized" for i in range(6)}))
    first.flush()
    first.compact()
    ledger = catalog.Ledger(tmp_path)
    steps = [{6: "pending", 7: "pending"}, {6: "colorized", 7: None}, {0: "error", 8: "pending"}]
    for step in steps:
        ledger.add(rows({i: s for i, s in step.items() if s is not None}))
        for i in (i for i, s in step.items() if s is None):
            ledger.put_back(entry(i).name, None)
        ledger.flush()
    want = expected({i: "colorized" for i in range(6)}, *steps)
    assert statuses(catalog.read_manifest(tmp_path)) == want
    saved = tmp_path / "saved"
    shutil.copytree(manifest.parts_dir(path), saved)
    ledger.compact()
    # The crash: the new base is in place, the parts deleted oldest first were not all gone.
    kept = sorted(saved.iterdir()) if parts_left == "all" else sorted(saved.iterdir())[-1:]
    for part in kept:
        shutil.copy(part, manifest.parts_dir(path) / part.name)
    read = catalog.read_manifest(tmp_path)
    assert statuses(read) == want and read["source"].is_unique, "no row lost, none doubled, none brought back"

    after = catalog.Ledger(tmp_path)  # the next run: reads the same, goes on, compacts again
    assert after.frame().equals(read)
    after.add(rows({9: "colour"}))
    after.flush()
    after.compact()
    assert manifest.part_paths(path) == [] and statuses(pq.read_table(path).to_pandas()) == want | expected(
        {9: "colour"})


def test_a_single_file_manifest_of_earlier_versions_reads_as_before(tmp_path):
    path = catalog.manifest_path(tmp_path)
    old = pd.DataFrame.from_records(rows({0: "colorized", 1: "unchanged", 2: "error"}), columns=catalog.SCHEMA.names)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(old, schema=catalog.SCHEMA, preserve_index=False), path)
    read = catalog.read_manifest(tmp_path)
    assert list(read["status"]) == ["colorized", "colorized", "error"] and list(read["source"]) == list(old["source"])
    before = pq.read_table(path, schema=catalog.SCHEMA).to_pandas()  # what earlier versions read
    assert read.drop(columns="status").equals(before.drop(columns="status"))
    ledger = catalog.Ledger(tmp_path)
    assert ledger.frame().equals(read) and row_of(ledger, 1)["status"] == "colorized"
    assert catalog.plan([entry(0), entry(1)], ledger.table(), tmp_path, "m1").kept == 0  # outputs are missing



def test_a_compaction_merges_piece_by_piece_as_the_whole_merge_would():
    """Changes before the first base row, between pieces, on their edges and after the last; removals too."""
    base = pa.Table.from_pylist(rows({i: "colorized" for i in range(2, 20, 2)}), schema=catalog.SCHEMA)
    base = base.sort_by("source")
    changes = {0: "error", 6: "colour", 7: "pending", 13: "colorized", 18: None, 21: "colour"}
    changes[int(base["source"][2].as_py()[-8:-4])] = "error"  # the last row of the first piece
    table = pa.Table.from_pylist([catalog.record(entry(i), s, "m2") if s else {"source": entry(i).name}
                                  for i, s in changes.items()], schema=catalog.SCHEMA)
    merged = pa.concat_tables(manifest._merge((base.slice(n, 3) for n in range(0, 9, 3)), table))
    assert merged.equals(manifest._overlay(base, table))
    assert merged["source"].to_pylist() == sorted(merged["source"].to_pylist())


def test_a_base_is_written_in_sorted_row_groups_and_one_of_earlier_versions_is_sorted(tmp_path, monkeypatch):
    """Earlier versions did not promise a sorted manifest.parquet: it is read whole, sorted, merged in order."""
    monkeypatch.setattr(manifest, "PIECE_ROWS", 2)
    path = catalog.manifest_path(tmp_path)
    path.parent.mkdir(parents=True)
    table = pa.Table.from_pylist(rows({i: "colorized" for i in range(9)}), schema=catalog.SCHEMA)
    pq.write_table(table.take([8, 0, 5, 3, 1, 7, 2, 6, 4]), path)
    ledger = catalog.Ledger(tmp_path)
    ledger.add(rows({4: "error", 9: "colour"}))
    ledger.flush()
    ledger.compact()
    written = pq.ParquetFile(path)
    groups = [written.metadata.row_group(g).num_rows for g in range(written.metadata.num_row_groups)]
    assert max(groups) == 2 and sum(groups) == 10 and manifest._written_sorted(written.metadata)
    frame = written.read().to_pandas()
    assert list(frame["source"]) == sorted(frame["source"])
    assert statuses(frame) == expected({i: "colorized" for i in range(9)}, {4: "error", 9: "colour"})
    again = catalog.Ledger(tmp_path)
    assert again._manifest._streamed and pa.concat_tables(again.pieces()).equals(again.table())


def test_a_transient_write_error_keeps_the_rows_unsaved(tmp_path, monkeypatch):
    ledger = catalog.Ledger(tmp_path)
    ledger.add(rows({0: "colorized"}))
    ledger.flush()
    real = pq.write_table

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)
    ledger.add(rows({1: "colorized"}))
    with pytest.raises(TransientError, match=r"No space left on device writing \S*/\.colorize/manifest\.parquet"):
        ledger.flush()
    assert statuses(catalog.read_manifest(tmp_path)) == expected({0: "colorized"})
    assert manifest.part_paths(catalog.manifest_path(tmp_path))[-1].name == "part-000000.parquet"
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.rglob("*")), "no half-written part"
    monkeypatch.setattr(pq, "write_table", real)
    ledger.flush()  # the disk has room again: the rows kept are written
    assert statuses(catalog.read_manifest(tmp_path)) == expected({0: "colorized", 1: "colorized"})


def test_plan_on_a_merged_manifest(tmp_path):
    ledger = catalog.Ledger(tmp_path)
    ledger.add(rows({0: "colorized", 1: "colour", 2: "pending"}))
    ledger.flush()
    (tmp_path / entry(0).name).parent.mkdir(parents=True)
    (tmp_path / entry(0).name).write_bytes(b"ours")
    listed = sorted([entry(0), entry(1), entry(2), entry(3)], key=lambda e: e.name)
    work = catalog.plan(listed, ledger.pieces(), tmp_path, "m1")
    assert work.kept == 2 and work.found == 4, "unchanged to the nanosecond: kept"
    assert [e.name for e in work.pending] == [entry(3).name, entry(2).name]
    previous = {e.name: row and row["status"] for batch in work.pending.batches(8) for e, row in batch}
    assert previous == {entry(3).name: None, entry(2).name: "pending"}, \
        "the row a pending photo had, to put back if the run stops"
    touched = [Entry(entry(0).name, 100, entry(0).mtime_ns + 1), entry(1, size=5)]
    assert [e.name for e in catalog.plan(touched, ledger.table(), tmp_path, "m1").pending] == \
        [entry(0).name, entry(1).name], "one nanosecond later, or another size: redone"
    with pytest.raises(ValueError, match="name order"):
        catalog.plan(listed[::-1], ledger.table(), tmp_path, "m1")


def test_plan_streams_a_large_manifest_a_window_at_a_time(tmp_path, monkeypatch):
    """Entries and rows joined chunk by chunk; rows of photos gone from the source are passed over."""
    monkeypatch.setattr(catalog, "PLAN_CHUNK", 3)
    monkeypatch.setattr(manifest, "PIECE_ROWS", 4)
    ledger = catalog.Ledger(tmp_path)
    ledger.add(rows({i: "colour" if i % 3 else "error" for i in range(0, 40, 2)}))
    ledger.flush()
    ledger.compact()
    ledger = catalog.Ledger(tmp_path)  # the base on disk, read a piece at a time
    monkeypatch.setattr(manifest.Manifest, "_whole_base", lambda self: pytest.fail("the base was read whole"))
    listed = sorted([entry(i) for i in range(0, 40, 5)], key=lambda e: e.name)
    work = catalog.plan(listed, ledger.pieces(), tmp_path, "m1")
    had = {entry(i).name for i in range(0, 40, 2)}
    assert work.found == len(listed) and work.kept == sum(e.name in had for e in listed)
    assert [e.name for e in work.pending] == [e.name for e in listed if e.name not in had]


def test_plan_writes_the_work_to_disk_and_it_reads_back_in_batches_with_each_photo_s_row(tmp_path, monkeypatch):
    """A model change redoes every photo: the worklist carries each one's row (to put back if the run stops),
    written a chunk at a time and read in batches across its row groups."""
    monkeypatch.setattr(catalog, "PLAN_CHUNK", 3)
    monkeypatch.setattr(worklist, "READ_ROWS", 4)
    ledger = catalog.Ledger(tmp_path)
    ledger.add(rows({i: "colorized" for i in range(0, 10, 2)}))
    ledger.flush()
    listed = sorted([entry(i) for i in range(10)], key=lambda e: e.name)
    for e in (entry(i) for i in range(0, 10, 2)):  # their outputs
        (tmp_path / e.name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / e.name).write_bytes(b"ours")
    work = catalog.plan(listed, ledger.pieces(), tmp_path, "m2")
    assert work.pending.path == catalog.worklist_path(tmp_path) and len(work.pending) == 10 and work.found == 10
    batches = list(work.pending.batches(3))
    assert [len(batch) for batch in batches] == [3, 3, 3, 1] and [e for b in batches for e, _ in b] == listed
    had = {e.name: row for batch in batches for e, row in batch}
    assert {name for name, row in had.items() if row} == {entry(i).name for i in range(0, 10, 2)}
    assert all(row["model_id"] == "m1" and manifest.nanoseconds(row["modified"]) == entry(int(name[-8:-4])).mtime_ns
               for name, row in had.items() if row), "the rows as the manifest holds them, to the nanosecond"
    assert list(work.pending.sizes()) == [e.size for e in listed]


def test_a_full_disk_while_planning_is_transient_and_leaves_no_worklist(tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full_disk)
    with pytest.raises(TransientError, match=r"No space left on device writing \S*/\.colorize/worklist\.parquet"):
        catalog.plan([entry(0)], catalog.SCHEMA.empty_table(), tmp_path, "m1")
    assert [p.name for p in (tmp_path / ".colorize").iterdir()] == [], "no worklist, whole or half-written"


def test_a_table_of_rows_goes_in_as_one_part(tmp_path, monkeypatch):
    """How a split run merges a share, a piece at a time: no row dicts, one part per piece."""
    ledger = catalog.Ledger(tmp_path)
    ledger.add(rows({0: "colorized", 1: "error", 2: "colorized"}))
    ledger.flush()
    ledger.add(rows({3: "colour"}))  # not flushed yet: it goes first
    ledger.add_table(pa.Table.from_pylist(rows({1: "colorized", 4: "colorized"}, model="m2"), schema=catalog.SCHEMA))
    want = expected({0: "colorized", 1: "error", 2: "colorized"}, {3: "colour"}, {1: "colorized", 4: "colorized"})
    assert statuses(catalog.read_manifest(tmp_path)) == want and statuses(ledger.frame()) == want
    parts = manifest.part_paths(catalog.manifest_path(tmp_path))
    assert [pq.read_metadata(p).num_rows for p in parts] == [3, 1, 2], "the table is one part"
    assert row_of(ledger, 1)["model_id"] == "m2" and len(ledger.frame()) == 5

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifest, "write", full_disk)  # the part is written, the new base is not
    ledger.add_table(pa.Table.from_pylist(rows({0: "error"}), schema=catalog.SCHEMA))
    with pytest.raises(TransientError, match="No space left"):
        ledger.compact()
    assert statuses(catalog.read_manifest(tmp_path))[entry(0).name] == "error", "the part carries the rows"
    assert row_of(ledger, 0)["status"] == "error", "and the ledger knows them"


def test_the_dataset_manifest_appends_a_part_per_shard(tmp_path):
    data = Dataset(tmp_path)
    data.shards_dir.mkdir(parents=True)
    for name in ("part-00000.parquet", "part-00001.parquet", "part-00002.parquet"):
        (data.shards_dir / name).write_bytes(b"")
    writer = data.open_manifest()
    first = [manifest_record("a.jpg", id="a@1", status="written", shard="part-00000.parquet", bytes=1,
                             modified=1_700_000_000_123_456_789),
             manifest_record("bad.jpg", error="bad.jpg: cannot read")]  # no size: the file could not be read
    second = [manifest_record("b.jpg", id="b@2", status="grey", bytes=2, modified=2),
              manifest_record("c.jpg", id="c@3", status="written", shard="part-00001.parquet", bytes=3, modified=3)]
    for records in (first, second):
        writer.append({r["source"]: r for r in records})
    assert len(manifest.part_paths(data.manifest_path)) == 2 and not data.manifest_path.exists()
    read = data.read_manifest()
    assert list(read["source"]) == ["a.jpg", "b.jpg", "bad.jpg", "c.jpg"]
    assert read.loc[0, "modified"].value == 1_700_000_000_123_456_789 and pd.isna(read.loc[2, "bytes"])
    (tmp_path / "photos").mkdir()
    known = plan(tmp_path / "photos", data).known_shards  # no photo left: every row is still read
    assert [p.name for p in remove_orphan_shards(data, known)] == ["part-00002.parquet"], "shards in parts are known"
    writer.compact()
    assert manifest.part_paths(data.manifest_path) == [] and data.read_manifest().equals(read)


def test_preprocess_plans_new_photos_and_changed_failures_reading_the_manifest_a_piece_at_a_time(tmp_path,
                                                                                                 monkeypatch):
    """Written, grey and unchanged failed photos are done; new photos and failed ones replaced since are to do.
    The walk and the manifest are joined a chunk at a time, and rows of photos gone still name their shards."""
    monkeypatch.setattr(preprocess, "PLAN_CHUNK", 3)
    monkeypatch.setattr(manifest, "PIECE_ROWS", 4)
    source, data = tmp_path / "photos", Dataset(tmp_path / "ds")
    names = [f"roll{i % 3}/p{i:03d}.jpg" for i in range(30)]
    for name in names:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(b"bytes")

    def stamp(name: str) -> dict:
        stat = (source / name).stat()
        return {"bytes": stat.st_size, "modified": stat.st_mtime_ns}

    status = {name: ("written", "grey", "error")[i % 3] for i, name in enumerate(names) if i % 5}
    records = [manifest_record(name, id=f"{name}@1", status=value, **stamp(name)) for name, value in status.items()]
    for i, record in enumerate(records):
        record.update(shard=f"part-{i // 8:05d}.parquet" if record["status"] == "written" else None,
                      error="bad" if record["status"] == "error" else None)
    records.append(manifest_record("gone/old.jpg", id="old@1", status="written", shard="part-00099.parquet"))
    writer = data.open_manifest()
    writer.append({r["source"]: r for r in records})
    writer.compact()
    replaced = [name for name, value in status.items() if value == "error"][:2]
    for name in replaced:
        (source / name).write_bytes(b"another photo")  # the user replaced a file that failed
    monkeypatch.setattr(manifest.Manifest, "_whole_base", lambda self: pytest.fail("the base was read whole"))

    work = plan(source, data)
    want = sorted([name for name in names if name not in status] + replaced)
    assert (work.found, work.pending, work.worklist) == (30, len(want), data.worklist_path)
    assert [name for _, files in pending_shards(work.worklist, 4, 7) for name in files] == want
    assert [shard for shard, _ in pending_shards(work.worklist, 4, 7)] == \
        [f"part-{i:05d}.parquet" for i in range(7, 7 + -(-len(want) // 4))]
    assert "part-00099.parquet" in work.known_shards and "part-00000.parquet" in work.known_shards


def test_a_manifest_of_an_earlier_version_reads_as_today_and_plans_nothing_anew(tmp_path):
    """Earlier versions held the modification time as integer ``mtime_ns``: the same photos are not redone."""
    output = tmp_path / "out"
    current = catalog.Ledger(output)
    current.add(rows({i: "colorized" for i in range(3)}))
    current.flush()
    current.compact()
    for i in range(3):
        (output / entry(i).name).parent.mkdir(parents=True, exist_ok=True)
        (output / entry(i).name).write_bytes(b"jpeg")
    path = catalog.manifest_path(output)
    today = pq.read_table(path)
    old_columns = ["mtime_ns" if n == "modified" else n for n in today.column_names]
    old = today.rename_columns(old_columns).set_column(
        old_columns.index("mtime_ns"), "mtime_ns", today["modified"].cast(pa.int64()))
    pq.write_table(old, path)

    read = catalog.read_manifest(output)
    assert modified_ns(read) == [entry(i).mtime_ns for i in range(3)]
    assert catalog.plan([entry(i) for i in range(3)], catalog.Ledger(output).pieces(), output, "m1").kept == 3
