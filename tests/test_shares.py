"""One archive split into shares: balanced slices, each share's own manifest, and the merge into the archive's."""

from __future__ import annotations

from pathlib import Path

import pytest

from colorization import manifest
from colorization.colorize import catalog, shares, worklist
from colorization.lock import FolderBusy, folder_lock
from tests.test_manifest import entry, rows, statuses


def worklist_of(output: Path, entries: list) -> worklist.Worklist:
    """A parent run's worklist of ``entries`` (none with a row before)."""
    return worklist.write(catalog.worklist_path(output), entries, catalog.SCHEMA)


def test_shares_are_contiguous_slices_of_about_equal_bytes(tmp_path):
    entries = [entry(i, size=1000 if i < 4 else 100) for i in range(24)]  # 4 big photos first, then 20 small
    folders = shares.write(tmp_path, worklist_of(tmp_path, entries), 3)
    assert folders == [tmp_path / ".colorize" / "shares" / f"00{i}" for i in range(3)]
    parts = [list(shares.entries(folder)) for folder in folders]
    assert [e for part in parts for e in part] == entries, "every photo once, in the archive's order"
    weights = [sum(e.size for e in part) for part in parts]
    assert max(weights) - min(weights) <= 1000, weights
    assert len(parts[0]) < len(parts[-1]), "the slice of big photos holds fewer of them"


def test_cut_never_makes_an_empty_share_and_needs_one(tmp_path):
    assert list(shares.cut([5, 5], 10, 4)) == [0, 2], "two photos, two shares (of four asked)"
    folders = shares.write(tmp_path, worklist_of(tmp_path, [entry(0, size=5), entry(1, size=5)]), 4)
    assert [f.name for f in folders] == ["000", "001"] and [len(shares.entries(f)) for f in folders] == [1, 1]
    assert list(shares.cut([], 0, 2)) == []
    with pytest.raises(ValueError, match="at least 1"):
        list(shares.cut([1], 1, 0))


def test_a_share_keeps_its_entries_exactly(tmp_path):
    entries = [entry(i) for i in range(5)]
    [folder] = shares.write(tmp_path, worklist_of(tmp_path, entries), 1)
    assert list(shares.entries(folder)) == entries, "names, sizes and nanosecond times survive the round trip"
    assert all(row is None for batch in shares.entries(folder).batches(2) for _, row in batch), \
        "a child puts back a claim as a removal of its share's own row"


def test_merge_folds_each_share_into_the_archive_manifest_and_removes_it(tmp_path):
    archive = catalog.Ledger(tmp_path)
    archive.add(rows({0: "colorized", 1: "colorized", 2: "error"}, model="old"))
    archive.flush()
    first, second = shares.write(tmp_path, worklist_of(tmp_path, [entry(i) for i in range(4)]), 2)
    child = shares.ledger(tmp_path, first)
    child.add(rows({0: "colorized"}, model="new") + rows({1: "pending"}, model="new"))
    child.flush()
    child.put_back(entry(1).name, None)  # stopped before rendering it: the claim goes back
    child.flush()
    child = shares.ledger(tmp_path, second)
    child.add(rows({2: "colour", 3: "colorized"}, model="new"))
    child.flush()
    assert shares.settled(second) == 2 and shares.settled(first) == 1

    merged = shares.merge(tmp_path, archive)
    assert merged.counts == {"colorized": 2, "colour": 1}, "entry(1)'s claim was put back: not merged"
    after = catalog.read_manifest(tmp_path)
    assert statuses(after) == {entry(0).name: "colorized", entry(1).name: "colorized", entry(2).name: "colour",
                               entry(3).name: "colorized"}
    assert dict(zip(after["source"], after["model_id"]))[entry(1).name] == "old", "a claim put back changes nothing"
    assert shares.pending(tmp_path) == [] and not manifest.part_paths(catalog.manifest_path(tmp_path))
    assert not shares.merge(tmp_path, catalog.Ledger(tmp_path)).counts


def test_a_share_is_merged_a_piece_at_a_time_and_the_manifest_compacted_once(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "PIECE_ROWS", 2)
    [share] = shares.write(tmp_path, worklist_of(tmp_path, [entry(i) for i in range(5)]), 1)
    child = shares.ledger(tmp_path, share)
    child.add(rows({i: "colorized" for i in range(5)}))
    child.flush()
    child.compact()
    pieces, add_table = [], catalog.Ledger.add_table

    def counted(self, table):
        pieces.append(len(table))
        add_table(self, table)

    monkeypatch.setattr(catalog.Ledger, "add_table", counted)

    merged = shares.merge(tmp_path, catalog.Ledger(tmp_path))

    assert pieces == [2, 2, 1] and merged.counts == {"colorized": 5}, "never the whole share at once"
    assert statuses(catalog.read_manifest(tmp_path)) == {entry(i).name: "colorized" for i in range(5)}
    assert not manifest.part_paths(catalog.manifest_path(tmp_path)), "manifest.parquet alone is complete"


def test_merging_again_after_a_kill_changes_nothing(tmp_path):
    """A parent killed after flushing a share's rows and before deleting it: the next run merges it again."""
    [share] = shares.write(tmp_path, worklist_of(tmp_path, [entry(0)]), 1)
    child = shares.ledger(tmp_path, share)
    child.add(rows({0: "colorized"}))
    child.flush()
    once = catalog.Ledger(tmp_path)
    once.add_table(child.table())
    before = catalog.read_manifest(tmp_path)
    shares.merge(tmp_path, catalog.Ledger(tmp_path))
    assert catalog.read_manifest(tmp_path).equals(before)


def test_merge_refuses_a_share_that_a_child_still_colours(tmp_path):
    [share] = shares.write(tmp_path, worklist_of(tmp_path, [entry(0)]), 1)
    with folder_lock(share, "colorize-share"):
        with pytest.raises(FolderBusy, match="colorize-share"):
            shares.merge(tmp_path, catalog.Ledger(tmp_path))
    assert shares.pending(tmp_path) == [share], "left for the next run"
