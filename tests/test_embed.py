"""The embed stage: input range, shapes and alignment, resume, extractor ids, weights files."""

from __future__ import annotations

import json
import shutil
import time
import warnings

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from colorization.dataset import embeddings
from colorization.dataset.embeddings import (
    EXTRACTOR_KEY,
    deal,
    embed_dataset,
    embedding_shape,
    read_aligned,
    read_embeddings,
    write_embeddings,
)
from colorization.dataset.shards import Dataset, read_shard
from colorization.errors import ConfigError
from colorization.network.extractor import XceptionInput, grey_input, load_extractor
from colorization.network.model import ResizeMap, build_model
from flows.cli import main
from flows.embed import embed


def test_xception_input_is_grey_rgb_scaled_to_unit_range():
    lightness = np.array([[[0, 255], [128, 64]]], np.uint8)
    grey = grey_input(lightness)
    assert grey.shape == (1, 2, 2, 1) and grey.min() == 0 and grey.max() == 255
    out = keras.ops.convert_to_numpy(XceptionInput()(grey))
    assert out.shape == (1, 299, 299, 3)
    assert out.min() == pytest.approx(-1.0) and out.max() == pytest.approx(1.0)
    assert np.array_equal(out[..., 0], out[..., 2]), "three equal channels"
    # Mid-grey L=50 is sRGB 119, not 127.5: the input is the grey a viewer sees, not raw L.
    mid = keras.ops.convert_to_numpy(XceptionInput()(grey_input(np.full((1, 4, 4), 128, np.uint8))))
    assert mid.mean() == pytest.approx(119 / 127.5 - 1, abs=0.01)


def test_random_extractor_is_marked(random_extractor):
    assert random_extractor.random and "RANDOM" in random_extractor.id
    assert random_extractor.id.startswith("xception-predictions-") and random_extractor.dim == 1000
    again = load_extractor("none", "predictions")
    assert again.id == random_extractor.id, "seeded random weights give a stable id"


def test_spatial_head_is_the_map_that_avg_pool_averages(tiny_dataset):
    spatial, pooled = load_extractor("none", "spatial"), load_extractor("none", "avg_pool")
    lightness = read_shard(tiny_dataset.shards()[0], ["L"]).L[:2]
    maps, vectors = spatial.embed(lightness, 2), pooled.embed(lightness, 2)
    assert spatial.shape == (10, 10, 2048) and spatial.dim == 2048 and pooled.shape == (2048,)
    assert maps.shape == (2, 10, 10, 2048) and maps.dtype == np.float16
    assert spatial.id.startswith("xception-spatial-RANDOM-") and spatial.id != pooled.id
    assert np.allclose(maps.astype(np.float32).mean(axis=(1, 2)), vectors, rtol=1e-2, atol=1e-3)


def test_middle_head_is_the_middle_flows_finer_map(tiny_dataset):
    middle = load_extractor("none", "middle")
    maps = middle.embed(read_shard(tiny_dataset.shards()[0], ["L"]).L[:2], 2)
    assert middle.shape == (19, 19, 728) and maps.shape == (2, 19, 19, 728) and maps.dtype == np.float16
    assert middle.id.startswith("xception-middle-RANDOM-") and (maps >= 0).all(), "taken after a ReLU"
    model = build_model(64, middle.shape, 0.125)
    assert model.get_layer("embedding_grid").output.shape[1:] == (8, 8, 728)


def test_hypercolumn_head_stacks_both_maps_on_one_grid(tiny_dataset):
    hyper, spatial, middle = (load_extractor("none", head) for head in ("hypercolumn", "spatial", "middle"))
    lightness = read_shard(tiny_dataset.shards()[0], ["L"]).L[:2]
    maps = hyper.embed(lightness, 2)
    assert hyper.shape == (16, 16, 2048 + 728) and maps.shape == (2, 16, 16, 2776) and maps.dtype == np.float16
    assert hyper.id.startswith("xception-hypercolumn-RANDOM-") and hyper.id != spatial.id
    resized = [ResizeMap(16)(ex.embed(lightness, 2).astype(np.float32)) for ex in (spatial, middle)]
    expected = np.concatenate([keras.ops.convert_to_numpy(r) for r in resized], axis=-1)
    assert np.allclose(maps.astype(np.float32), expected, rtol=1e-2, atol=1e-2), "the fusion model's own resize"


def test_embed_flow_shapes_alignment_and_resume(prefect_harness, tiny_dataset, tmp_path, caplog):
    data = Dataset(tmp_path / "ds")
    shutil.copytree(tiny_dataset.root, data.root)

    first = embed(dataset=data.root, weights="none", head="predictions", batch_size=4)

    assert first["shards"] == 3 and first["images"] == 10 and "RANDOM WEIGHTS" in first["weights"]
    assert first["stored as"] == "float16", "a vector: feature maps alone are stored in float8"
    assert "RANDOM WEIGHTS" in caplog.text
    folders = list((data.root / "embeddings").iterdir())
    assert len(folders) == 1 and "RANDOM" in folders[0].name
    extractor_id = folders[0].name
    for shard in data.shards():
        values = read_aligned(shard, folders[0] / shard.name, extractor_id)
        assert values.shape == (len(read_shard(shard, ["id"]).ids), 1000) and values.dtype == np.float16
        assert np.allclose(values.astype(np.float32).sum(axis=1), 1.0, atol=0.02), "softmax rows"

    # Kill after two shards: only the missing one is computed on the next run.
    victim = folders[0] / data.shards()[1].name
    victim.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in folders[0].glob("part-*.parquet")}
    second = embed(dataset=data.root, weights="none", head="predictions", batch_size=4)
    assert (second["shards"], second["already embedded"], second["images"]) == (1, 2, 4)
    assert victim.exists()
    assert {p.name: p.stat().st_mtime_ns for p in folders[0].glob("part-*.parquet") if p.name in kept} == kept
    assert json.loads((folders[0] / "extractor.json").read_text()) == {"id": extractor_id, "weights": "none",
                                                                       "head": "predictions"}


@pytest.mark.parametrize("writers", [1, 3])
def test_embed_dataset_reads_and_writes_in_order(tiny_dataset, tmp_path, writers):
    data = Dataset(tmp_path / "ds")
    shutil.copytree(tiny_dataset.root, data.root)
    calls = []
    report = embed_dataset(data, "fake", lambda lightness: lightness.reshape(len(lightness), -1)[:, :3], (3,),
                           lambda done, total: calls.append((done, total)), writers=writers)
    assert calls == [(1, 3), (2, 3), (3, 3)] and report.images == 10
    for shard in data.shards():
        rows = read_shard(shard)
        ids, values = read_embeddings(data.embeddings_dir("fake") / shard.name, "fake")
        assert ids == rows.ids and np.array_equal(values, rows.L.reshape(len(rows), -1)[:, :3])


def test_embed_dataset_waits_for_slow_writes_instead_of_holding_every_shard(tiny_dataset, tmp_path, monkeypatch):
    data = Dataset(tmp_path / "ds")
    shutil.copytree(tiny_dataset.root, data.root)
    unwritten, most = [], []
    write = embeddings.write_embeddings

    def slow_write(*args, **kwargs):
        time.sleep(0.3)
        write(*args, **kwargs)
        unwritten.pop()

    def embed(lightness):
        unwritten.append(len(lightness))
        most.append(len(unwritten))
        return lightness.reshape(len(lightness), -1)[:, :3]

    monkeypatch.setattr(embeddings, "write_embeddings", slow_write)
    report = embed_dataset(data, "fake", embed, (3,), writers=1)
    assert report.shards == 3 and not unwritten and len(list(data.embeddings_dir("fake").glob("part-*"))) == 3
    assert max(most) == 2, "one shard being written, one just embedded: never all three held at once"


def test_shares_of_a_split_run_embed_only_their_shards_and_leave_others_temp_files(tiny_dataset, tmp_path):
    data = Dataset(tmp_path / "ds")
    shutil.copytree(tiny_dataset.root, data.root)
    shards = data.shards()
    assert deal(shards, 2) == [[shards[0].name, shards[2].name], [shards[1].name]]
    assert deal(shards, 5) == [[s.name] for s in shards], "never an empty share"
    folder = data.embeddings_dir("fake")
    folder.mkdir(parents=True)
    in_flight = folder / f".tmp-0123abcd-{shards[1].name}"  # the other share's write, not finished yet
    in_flight.write_bytes(b"partial")

    report = embed_dataset(data, "fake", lambda lightness: lightness.reshape(len(lightness), -1)[:, :3], (3,),
                           only=deal(shards, 2)[0])

    assert report.shards == 2 and sorted(p.name for p in folder.glob("part-*.parquet")) == [shards[0].name,
                                                                                       shards[2].name]
    assert in_flight.exists()


def test_feature_maps_are_stored_with_their_shape_and_old_files_still_read(tiny_dataset, tmp_path):
    shard = tiny_dataset.shards()[0]
    ids = read_shard(shard, ["id"]).ids
    maps = np.random.default_rng(0).normal(size=(len(ids), 3, 3, 5)).astype(np.float16)
    write_embeddings(tmp_path / "maps.parquet", ids, maps, "xception-spatial-x")
    assert embedding_shape(tmp_path / "maps.parquet") == (3, 3, 5)
    assert pq.read_schema(tmp_path / "maps.parquet").field("embedding").type == pa.binary(3 * 3 * 5 * 2)
    read_ids, values = read_embeddings(tmp_path / "maps.parquet", "xception-spatial-x")
    assert read_ids == ids and values.dtype == np.float16 and np.array_equal(values, maps)
    assert np.array_equal(read_aligned(shard, tmp_path / "maps.parquet", "xception-spatial-x"), maps)

    listed = pa.FixedSizeListArray.from_arrays(pa.array(maps.reshape(-1), pa.float16()), 3 * 3 * 5)
    metadata = pq.read_schema(tmp_path / "maps.parquet").metadata
    pq.write_table(pa.table({"id": ids, "embedding": listed}).replace_schema_metadata(metadata),
                   tmp_path / "listed.parquet")  # maps as earlier versions wrote them: lists of float16
    assert embedding_shape(tmp_path / "listed.parquet") == (3, 3, 5)
    assert np.array_equal(read_embeddings(tmp_path / "listed.parquet", "xception-spatial-x")[1], maps)

    vectors = np.arange(len(ids) * 4, dtype=np.float16).reshape(len(ids), 4)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float16()), 4)
    old = pa.table({"id": ids, "embedding": column}).replace_schema_metadata({EXTRACTOR_KEY: b"old"})
    pq.write_table(old, tmp_path / "old.parquet")  # as written before maps existed: no shape key
    assert embedding_shape(tmp_path / "old.parquet") == (4,)
    assert np.array_equal(read_embeddings(tmp_path / "old.parquet", "old")[1], vectors)


def test_embeddings_of_another_extractor_are_refused(tiny_dataset, tmp_path):
    shard = tiny_dataset.shards()[0]
    ids = read_shard(shard, ["id"]).ids
    path = tmp_path / shard.name
    write_embeddings(path, ids, np.zeros((len(ids), 4)), "xception-predictions-aaaa")
    with pytest.raises(ConfigError, match="made by xception-predictions-aaaa, not xception-predictions-bbbb"):
        read_aligned(shard, path, "xception-predictions-bbbb")
    write_embeddings(path, ids[::-1], np.zeros((len(ids), 4)), "x")
    with pytest.raises(ConfigError, match="rows do not match"):
        read_aligned(shard, path, "x")


def test_weights_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.h5: no such weights file"):
        load_extractor(str(tmp_path / "missing.h5"))
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(b"\x89HDF\r\n garbage " * 100)
    with pytest.raises(ConfigError, match=r"corrupt\.h5: not a readable HDF5 weights file"):
        load_extractor(str(corrupt))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    wrong = tmp_path / "other.weights.h5"
    other.save_weights(wrong)
    with warnings.catch_warnings(record=True) as caught, \
            pytest.raises(ConfigError, match=r"other\.weights\.h5: these weights do not fit Xception"):
        warnings.simplefilter("always")
        load_extractor(str(wrong))
    assert not [w for w in caught if "freshly-initialized" in str(w.message)], "one clear error, no alarming noise"


def test_local_weights_file_gives_same_id_as_the_weights_it_holds(random_extractor, tmp_path):
    path = tmp_path / "xception.weights.h5"
    random_extractor.model.get_layer("xception").save_weights(path)
    loaded = load_extractor(str(path), "predictions")
    assert not loaded.random
    assert loaded.id == random_extractor.id.replace("RANDOM-", "")
    pooled = load_extractor(str(path), "avg_pool")
    assert pooled.dim == 2048 and pooled.id.startswith("xception-avg_pool-")
    spatial = load_extractor(str(path), "spatial")
    assert spatial.shape == (10, 10, 2048) and spatial.id.startswith("xception-spatial-")
    maps = load_extractor(str(path), "maps")  # a file's model takes any size: the maps get theirs from 299x299
    assert maps.shape == ((10, 10, 2048), (19, 19, 728)) and maps.id == spatial.id.replace("spatial", "maps")


def test_offline_imagenet_says_how_to_pass_a_file(monkeypatch):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: Name or service not known")

    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", offline)
    with pytest.raises(ConfigError, match="could not get the ImageNet Xception weights.*--weights /path/to/xception"):
        load_extractor("imagenet")


def test_cli_embed_errors_are_one_line(tmp_path, capsys):
    assert main(["embed", "--dataset", str(tmp_path)]) == 2
    assert "not a dataset" in capsys.readouterr().err
