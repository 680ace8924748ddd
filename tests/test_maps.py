"""The ``maps`` head: Xception's exit-flow and middle-flow maps stored at their own sizes, stacked into the
hypercolumn by the model itself, so that its colours are those of the ``hypercolumn`` head from fewer bytes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from colorization.dataset.batches import Rows, Split, Window
from colorization.dataset.embeddings import SHAPE_KEY, embedding_shape, read_embeddings, write_embeddings
from colorization.dataset.layout import copy_mirrored, describe, row_shape, split
from colorization.dataset.shards import Dataset, read_shard
from colorization.errors import ConfigError
from colorization.network.card import ModelCard
from colorization.network.extractor import load_extractor
from colorization.network.model import Hypercolumn, build_model
from tests.helpers import train_tiny

SMALL = ((2, 2, 3), (3, 3, 2))  # two maps of the shape the maps head stores, small enough to train on here
FAKE_MAPS = "fake-maps"


@pytest.fixture(scope="module")
def heads():
    """The two heads that give the hypercolumn, with the same random (seeded) Xception."""
    return load_extractor("none", "hypercolumn"), load_extractor("none", "maps")


def test_the_maps_head_stores_a_third_fewer_values_and_the_model_stacks_them_into_the_hypercolumn(heads):
    hypercolumn, maps = heads
    assert maps.shape == ((10, 10, 2048), (19, 19, 728)) and maps.dim == hypercolumn.dim == 2776
    assert maps.id.startswith("xception-maps-RANDOM-") and maps.id != hypercolumn.id
    assert row_shape(maps.shape) == (204_800 + 262_808,) and describe(maps.shape) == "10x10x2048 + 19x19x728"

    lightness = np.random.default_rng(0).integers(0, 255, (2, 40, 48), np.uint8)
    stacked_before, flat = hypercolumn.embed(lightness, 2), maps.embed(lightness, 2)
    assert flat.shape == (2, 467_608) and flat.dtype == np.float16
    stacked_now = np.asarray(Hypercolumn(list(maps.shape), 16)(flat.astype(np.float32)))
    assert stacked_now.shape == stacked_before.shape == (2, 16, 16, 2776)
    assert np.allclose(stacked_now, stacked_before.astype(np.float32), rtol=2e-3, atol=2e-4)

    old, new = build_model(32, hypercolumn.shape, 0.125), build_model(32, maps.shape, 0.125)
    new.set_weights(old.get_weights())  # the same layers with weights: only the weightless stacking is added
    grey = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    before = np.asarray(old({"L": grey, "embedding": stacked_before}))
    after = np.asarray(new({"L": grey, "embedding": flat}))
    assert np.allclose(before, after, atol=1e-5)


def test_several_maps_are_written_flat_with_their_shapes_and_read_back(tmp_path):
    values = np.random.default_rng(2).normal(size=(3, 30)).astype(np.float16)
    path = tmp_path / "part-00000.parquet"
    write_embeddings(path, ["a", "b", "c"], values, FAKE_MAPS, SMALL)
    assert embedding_shape(path) == SMALL
    ids, back = read_embeddings(path, FAKE_MAPS)
    assert ids == ["a", "b", "c"] and np.array_equal(back, values)
    first, second = split(back, SMALL)
    assert first.shape == (3, 2, 2, 3) and np.array_equal(second[1].ravel(), values[1, 12:])
    grouped = tmp_path / "grouped.parquet"  # row groups, read in parallel, give the same rows
    write_embeddings(grouped, ["a", "b", "c"], values, FAKE_MAPS, SMALL, row_group_rows=2)
    assert pq.ParquetFile(grouped).metadata.num_row_groups == 2 and pq.ParquetFile(path).metadata.num_row_groups == 1
    ids, back = read_embeddings(grouped, FAKE_MAPS)
    assert ids == ["a", "b", "c"] and np.array_equal(back, values) and embedding_shape(grouped) == SMALL
    with pytest.raises(ValueError, match=r"part-00000.parquet: embeddings of \(29,\) values a photo do not hold"):
        write_embeddings(path, ["a", "b", "c"], values[:, :29], FAKE_MAPS, SMALL)

    table = pq.read_table(path)  # a file whose recorded shape is not what its values hold: named, not a crash
    metadata = {**table.schema.metadata, SHAPE_KEY: json.dumps([[2, 2, 3], [3, 3, 3]]).encode()}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    with pytest.raises(ConfigError, match=r"part-00000.parquet: its values of 60 bytes a photo do not hold the "
                                          r"shape it records, 2x2x3 \+ 3x3x3; delete it and run embed again"):
        read_embeddings(path, FAKE_MAPS)


def test_a_mirrored_photo_mirrors_each_of_its_maps():
    rng = np.random.default_rng(3)
    rows = Rows(rng.integers(0, 255, (4, 8, 8), np.uint8), rng.integers(-60, 60, (4, 8, 8, 2), np.int8),
                rng.normal(size=(4, 30)).astype(np.float16), SMALL)
    mirror = np.array([True, False, True, False])
    inputs, _ = Window([(rows, np.arange(4))]).batch(np.arange(4), mirror)
    for i, flipped in enumerate(mirror):
        expected = [m[:, ::-1] if flipped else m for m in split(rows.embedding[i], SMALL)]
        assert np.array_equal(inputs["embedding"][i], np.concatenate([m.ravel() for m in expected]))
    out = np.empty(16, np.float32)
    copy_mirrored(out, np.arange(16, dtype=np.float32), (16,))  # a vector has no left or right
    assert np.array_equal(out, np.arange(16))


def test_a_model_trained_on_several_maps_records_them_and_resumes(tiny_dataset, tmp_path):
    data = Dataset(tmp_path / "maps")
    shutil.copytree(tiny_dataset.root, data.root)
    for shard in data.shards():
        rows = read_shard(shard)
        means = np.concatenate([rows.L.mean(axis=(1, 2))[:, None] / 255, rows.ab.mean(axis=(1, 2)) / 64], axis=1)
        values = np.tile(means, (1, 10))  # 30 values: a photo's means over both maps
        write_embeddings(data.embeddings_dir(FAKE_MAPS) / shard.name, rows.ids, values, FAKE_MAPS, SMALL)
    assert Split(data, FAKE_MAPS, validation=False, percent=20.0).shape == SMALL

    model_dir = tmp_path / "model"
    _, card = train_tiny(data, model_dir)
    assert card["embedding_shape"] == [[2, 2, 3], [3, 3, 2]] and card["embedding_dim"] == 5
    assert card["fusion"] == "spatial" and ModelCard.read(model_dir).embedding_shape == SMALL
    state = json.loads((model_dir / "checkpoint" / "state.json").read_text())
    assert state["embedding_shape"] == [[2, 2, 3], [3, 3, 2]]
    _, again = train_tiny(data, model_dir, epochs=2, resume=True)  # the stacking layer saves and loads
    assert again["epochs"] == 2 and again["embedding_shape"] == card["embedding_shape"]
