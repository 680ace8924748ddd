"""The shard schema: write and read back, zero-copy arrays, atomic writes, dataset layout."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from colorization.atomic import atomic_path
from colorization.dataset.shards import Dataset, ShardRows, read_shard, shard_index, shard_name, write_shard
from colorization.errors import ConfigError


def make_rows(n: int = 5, size: int = 8, seed: int = 0) -> ShardRows:
    rng = np.random.default_rng(seed)
    return ShardRows(
        ids=[f"dir/p{i}.jpg@{i:016x}" for i in range(n)],
        sources=[f"dir/p{i}.jpg" for i in range(n)],
        width=np.arange(n) + 100,
        height=np.arange(n) + 50,
        colorfulness=rng.random(n).astype(np.float32),
        L=rng.integers(0, 256, (n, size, size), dtype=np.uint8),
        ab=rng.integers(-128, 128, (n, size, size, 2), dtype=np.int8),
    )


def test_shard_round_trip_is_exact_and_zero_copy(tmp_path):
    rows = make_rows()
    path = tmp_path / shard_name(3)
    write_shard(path, rows)

    back = read_shard(path)

    assert back.ids == rows.ids and back.sources == rows.sources
    assert np.array_equal(back.width, rows.width) and np.array_equal(back.height, rows.height)
    assert np.allclose(back.colorfulness, rows.colorfulness)
    assert back.L.dtype == np.uint8 and back.L.shape == (5, 8, 8) and np.array_equal(back.L, rows.L)
    assert back.ab.dtype == np.int8 and back.ab.shape == (5, 8, 8, 2) and np.array_equal(back.ab, rows.ab)
    assert not back.L.flags.owndata and not back.ab.flags.owndata, "pixels must be views on Arrow memory"
    assert shard_index(path) == 3


def test_shard_schema_names_and_types(tmp_path):
    path = tmp_path / "part-00000.parquet"
    write_shard(path, make_rows(size=16))
    schema = pq.read_schema(path)
    assert schema.names == ["id", "source", "width", "height", "colorfulness", "L", "ab"]
    assert schema.field("L").type == pa.binary(256) and schema.field("ab").type == pa.binary(512)
    assert schema.field("L").metadata == {b"dtype": b"uint8", b"shape": b"[16, 16]"}
    assert schema.field("ab").metadata == {b"dtype": b"int8", b"shape": b"[16, 16, 2]"}
    assert schema.metadata[b"colorization.schema_version"] == b"2"


def test_schema_1_shards_with_arrow_tensors_are_still_read(tmp_path):
    rows = make_rows(size=8)
    path = tmp_path / "part-00000.parquet"
    pq.write_table(pa.table({"id": rows.ids, "L": pa.FixedShapeTensorArray.from_numpy_ndarray(rows.L),
                             "ab": pa.FixedShapeTensorArray.from_numpy_ndarray(rows.ab)}), path)
    back = read_shard(path, ["id", "L", "ab"])
    assert back.ids == rows.ids and np.array_equal(back.L, rows.L) and np.array_equal(back.ab, rows.ab)
    assert back.ab.dtype == np.int8 and back.ab.shape == (5, 8, 8, 2)


def test_a_schema_1_dataset_is_raised_to_schema_2_when_shards_are_added(tmp_path):
    data = Dataset(tmp_path / "ds")
    data.root.mkdir()
    data.info_path.write_text('{"size": 64, "schema_version": 1}')
    assert data.size() == 64
    data.ensure(64)
    assert json.loads(data.info_path.read_text()) == {"size": 64, "framing": "crop", "schema_version": 2}


def test_a_new_dataset_records_its_framing_and_an_existing_one_keeps_it(tmp_path):
    assert Dataset(tmp_path / "new").ensure(64) == "whole"
    assert Dataset(tmp_path / "new").framing() == "whole"
    assert Dataset(tmp_path / "cropped").ensure(64, "crop") == "crop"
    data = Dataset(tmp_path / "cropped")
    assert data.ensure(64) == "crop", "left out, the framing is the dataset's own"
    with pytest.raises(ConfigError, match="built with framing 'crop', not 'whole'; leave --framing out"):
        data.ensure(64, "whole")
    old = Dataset(tmp_path / "old")
    old.root.mkdir()
    old.info_path.write_text('{"size": 64, "schema_version": 2}')
    assert old.framing() == "crop", "datasets written before framing was recorded were all cropped"
    old.info_path.write_text('{"size": 64, "framing": "stretch", "schema_version": 2}')
    with pytest.raises(ConfigError, match="unknown framing 'stretch'"):
        old.framing()


def test_reading_selected_columns(tmp_path):
    path = tmp_path / "part-00000.parquet"
    write_shard(path, make_rows())
    only = read_shard(path, columns=["id", "L"])
    assert len(only.ids) == 5 and only.L.shape == (5, 8, 8) and only.ab is None


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            temp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_dataset_refuses_other_size(tmp_path):
    data = Dataset(tmp_path / "ds")
    data.ensure(64)
    assert data.size() == 64
    data.ensure(64)
    with pytest.raises(ConfigError, match="built at size 64, not 128"):
        data.ensure(128)
    with pytest.raises(ConfigError, match="not a dataset"):
        Dataset(tmp_path / "other").size()


def test_dataset_of_a_newer_schema_or_damaged_description_is_refused(tmp_path):
    data = Dataset(tmp_path / "ds")
    data.ensure(64)
    data.info_path.write_text('{"size": 64, "schema_version": 99}')
    with pytest.raises(ConfigError, match="newer colorization \\(dataset schema 99, this version reads up to 2\\)"):
        data.size()
    data.info_path.write_text('{"schema_version": 1}')
    with pytest.raises(ConfigError, match="dataset.json: not a dataset description"):
        data.size()


def test_shards_are_listed_in_index_order(tmp_path):
    data = Dataset(tmp_path)
    for index in (10, 2, 100000):
        write_shard(data.shards_dir / shard_name(index), make_rows(1))
    (data.shards_dir / "notes.txt").write_text("x")
    assert [shard_index(p) for p in data.shards()] == [2, 10, 100000]
