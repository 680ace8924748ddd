"""Feature maps stored in float8 e5m2: rounded as the format's reference rounds, decoded exactly, written by
embed for maps only, and read back beside float16 files of earlier versions."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from colorization.dataset import float8
from colorization.dataset.embeddings import DTYPE_KEY, embed_dataset, read_embeddings, storage_type, write_embeddings
from colorization.dataset.shards import Dataset, read_shard
from colorization.errors import ConfigError

SMALL = ((2, 2, 3), (3, 3, 2))


def test_every_float16_rounds_and_every_code_decodes_as_ml_dtypes_does():
    ml_dtypes = pytest.importorskip("ml_dtypes")  # the reference implementation (installed with TensorFlow)
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    codes = float8.encode(every)
    with np.errstate(invalid="ignore", over="ignore"):
        reference = every.astype(np.float32).astype(ml_dtypes.float8_e5m2).view(np.uint8)
    nan = np.isnan(every)
    assert np.array_equal(codes[~nan], reference[~nan])  # ties to even, carries into the exponent, up to inf
    assert np.isnan(float8.decode(codes[nan])).all()  # NaN stays NaN, whatever its sign and payload

    all_codes = np.arange(256, dtype=np.uint8)
    decoded = float8.decode(all_codes)
    assert decoded.dtype == np.float16
    assert np.array_equal(decoded, all_codes.view(ml_dtypes.float8_e5m2).astype(np.float16), equal_nan=True)
    assert np.array_equal(float8.encode(decoded)[~np.isnan(decoded)], all_codes[~np.isnan(decoded)])


def test_maps_are_stored_in_one_byte_a_value_and_read_back_as_float16(tmp_path):
    values = np.maximum(np.random.default_rng(0).normal(0, 3, (4, 30)), 0).astype(np.float16)  # ReLU-like
    eight, sixteen = tmp_path / "float8.parquet", tmp_path / "float16.parquet"
    write_embeddings(eight, list("abcd"), values, "fake", SMALL, dtype=storage_type(SMALL))
    write_embeddings(sixteen, list("abcd"), values, "fake", SMALL)  # as files before float8, and vectors
    assert pq.read_schema(eight).metadata[DTYPE_KEY] == b"float8_e5m2"
    assert pq.read_schema(eight).field("embedding").type.byte_width == 30  # one byte a value
    assert pq.read_schema(sixteen).field("embedding").type.byte_width == 60

    ids, back = read_embeddings(eight, "fake")
    assert ids == list("abcd") and back.dtype == np.float16 and back.shape == (4, 30)
    assert np.array_equal(back, float8.decode(float8.encode(values)))
    assert np.array_equal(back == 0, values == 0)  # zeros stay exact
    nonzero = values != 0
    error = np.abs(back[nonzero].astype(np.float32) - values[nonzero]) / values[nonzero]
    assert error.max() <= 0.125  # at most half of a 2-bit mantissa's step
    assert np.array_equal(read_embeddings(sixteen, "fake")[1], values)


def test_embed_stores_maps_in_float8_and_vectors_in_float16(tiny_dataset, tmp_path):
    assert storage_type(SMALL) == storage_type((10, 10, 2048)) == "float8_e5m2"
    assert storage_type((1000,)) == storage_type((2048,)) == "float16"
    data = Dataset(tmp_path / "dataset")
    shutil.copytree(tiny_dataset.root, data.root)

    def features(lightness: np.ndarray) -> np.ndarray:  # each photo's mean L, over all its values
        return np.repeat(lightness.reshape(len(lightness), -1).mean(axis=1, keepdims=True) / 7, 30, axis=1)

    for name, shape in (("maps", SMALL), ("vector", (30,))):
        report = embed_dataset(data, name, features, shape)
        assert report.images == sum(len(read_shard(s, ["id"])) for s in data.shards()) > 0
        for shard in data.shards():
            path = data.embeddings_dir(name) / shard.name
            assert pq.read_schema(path).metadata[DTYPE_KEY] == storage_type(shape).encode()
            expected = features(read_shard(shard, ["id", "L"]).L).astype(np.float16)
            if shape == SMALL:
                expected = float8.decode(float8.encode(expected))
            assert np.array_equal(read_embeddings(path, name)[1], expected)


def test_a_file_of_an_unknown_type_is_named(tmp_path):
    path = tmp_path / "part-00000.parquet"
    write_embeddings(path, ["a"], np.ones((1, 30), np.float16), "fake", SMALL, dtype="float8_e5m2")
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, DTYPE_KEY: b"int4"}), path)
    with pytest.raises(ConfigError, match=r"part-00000.parquet: embeddings stored as int4, which this version "
                                          r"cannot read; delete it and run embed again"):
        read_embeddings(path, "fake")
    with pytest.raises(ValueError, match="embeddings are stored as float16 or float8_e5m2, not bfloat16"):
        write_embeddings(path, ["a"], np.ones((1, 30), np.float16), "fake", SMALL, dtype="bfloat16")
