"""One archive split into shares: balanced slices, each share's own manifest, and the merge into the archive's."""

from __future__ import annotations

import pytest

from colorization import manifest
from colorization.colorize import catalog, shares
from colorization.lock import FolderBusy, folder_lock
from tests.test_manifest import entry, rows, statuses


def test_partition_cuts_contiguous_slices_of_about_equal_bytes():
    entries = [entry(i, size=1000 if i < 4 else 100) for i in range(24)]  # 4 big photos first, then 20 small
    parts = shares.partition(entries, 3)
    assert [e for part in parts for e in part] == entries, "every photo once, in the archive's order"
    weights = [sum(e.size for e in part) for part in parts]
    assert max(weights) - min(weights) <= 1000, weights
    assert len(parts[0]) < len(parts[-1]), "the slice of big photos holds fewer of them"


def test_partition_never_returns_an_empty_share():
    assert [len(p) for p in shares.partition([entry(0), entry(1)], 4)] == [1, 1]
    assert shares.partition([], 2) == []
    with pytest.raises(ValueError, match="at least 1"):
        shares.partition([entry(0)], 0)


def test_a_share_keeps_its_entries_exactly(tmp_path):
    entries = [entry(i) for i in range(5)]
    folder = shares.write(tmp_path, 7, entries)
    assert folder == tmp_path / ".colorize" / "shares" / "007"
    assert shares.entries(folder) == entries, "names, sizes and nanosecond times survive the round trip"


def test_merge_folds_each_share_into_the_archive_manifest_and_removes_it(tmp_path):
    archive = catalog.Ledger(tmp_path)
    archive.add(rows({0: "colorized", 1: "colorized", 2: "error"}, model="old"))
    archive.flush()
    first, second = shares.write(tmp_path, 0, [entry(0), entry(1)]), shares.write(tmp_path, 1, [entry(2), entry(3)])
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
    assert sorted(merged["source"].to_pylist()) == sorted(entry(i).name for i in (0, 2, 3))
    after = catalog.read_manifest(tmp_path)
    assert statuses(after) == {entry(0).name: "colorized", entry(1).name: "colorized", entry(2).name: "colour",
                               entry(3).name: "colorized"}
    assert dict(zip(after["source"], after["model_id"]))[entry(1).name] == "old", "a claim put back changes nothing"
    assert shares.pending(tmp_path) == [] and not manifest.part_paths(catalog.manifest_path(tmp_path))
    assert len(shares.merge(tmp_path, catalog.Ledger(tmp_path))) == 0


def test_merging_again_after_a_kill_changes_nothing(tmp_path):
    """A parent killed after flushing a share's rows and before deleting it: the next run merges it again."""
    share = shares.write(tmp_path, 0, [entry(0)])
    child = shares.ledger(tmp_path, share)
    child.add(rows({0: "colorized"}))
    child.flush()
    once = catalog.Ledger(tmp_path)
    once.add_table(child.table())
    before = catalog.read_manifest(tmp_path)
    shares.merge(tmp_path, catalog.Ledger(tmp_path))
    assert catalog.read_manifest(tmp_path).equals(before)


def test_merge_refuses_a_share_that_a_child_still_colours(tmp_path):
    share = shares.write(tmp_path, 0, [entry(0)])
    with folder_lock(share, "colorize-share"):
        with pytest.raises(FolderBusy, match="colorize-share"):
            shares.merge(tmp_path, catalog.Ledger(tmp_path))
    assert shares.pending(tmp_path) == [share], "left for the next run"
