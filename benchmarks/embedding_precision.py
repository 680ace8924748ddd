"""Feature maps stored in one byte a value instead of two: what it saves on disk and in time, and what it does
to the colours.

Embed stored every value as float16 until session 32, when feature maps moved to float8 e5m2 on these figures.
A ``maps`` row is 935 KB in float16 (~280 KB on disk with ImageNet weights), and moving those bytes bounds
embed and train on a GPU (BENCHMARKS.md). Two 8-bit float formats are measured against float16 on the same rows
(Xception ``--head`` maps of ``--photos``, at ``--size``):

- ``float8_e5m2`` (what embed stores): float16's sign, its 5 exponent bits and the top 2 of its 10 mantissa
  bits, so float16 rounded to its high byte, in integer numpy (:mod:`colorization.dataset.float8`);
- ``float8_e4m3fn``: one more mantissa bit, a smaller range (±448, larger values clipped), through lookup
  tables built with ml_dtypes (installed with TensorFlow and JAX): 65,536 entries to encode, 256 to decode.

For each: bytes a photo raw and on disk (one Parquet file, zstd level 1 as embed writes), writing (encode +
compress + write) and reading (read + decompress + decode to float16) ms a photo, and the rounding error.
With ``--model``, that model colours ``--photos`` from its embeddings as they are and rounded to each format,
scored as ``colorization evaluate`` scores (long side 512), and the per-photo differences are printed with
95% intervals: what a model trained on float16 maps sees if they were stored in 8 bits.

Run as ``.venv/bin/python benchmarks/embedding_precision.py [--photos DIR] [--weights W] [--model MODEL]``.
Random weights (the default) give unrepresentative sizes: pass ImageNet weights for figures to quote.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from chroma_gain import _compare

from colorization.dataset import float8
from colorization.evaluation.samples import load_sample
from colorization.network.colorizer import Colorizer
from colorization.network.extractor import load_extractor
from colorization.photos import lab
from colorization.photos.archive import list_entries, read_entry

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "photos"
Codec = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]


def codecs() -> dict[str, Codec]:
    """The 8-bit formats measured: e5m2 always, e4m3fn when ml_dtypes is installed."""
    found: dict[str, Codec] = {float8.NAME: (float8.encode, float8.decode)}
    try:
        import ml_dtypes
    except ImportError:
        return found
    e4m3 = ml_dtypes.float8_e4m3fn
    every_float16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    with np.errstate(invalid="ignore"):  # NaN patterns stay NaN
        encoding = np.clip(every_float16, -448, 448).astype(e4m3).view(np.uint8)
    decoding = np.arange(256, dtype=np.uint8).view(e4m3).astype(np.float16)
    found["float8_e4m3fn"] = (lambda v: encoding[np.ascontiguousarray(v, np.float16).view(np.uint16)],
                              lambda c: decoding[c])
    return found


def timed_file(values: np.ndarray, encode: Callable, decode: Callable, folder: Path, repeats: int = 3
               ) -> tuple[float, float, float, np.ndarray]:
    """Disk bytes, best write and read seconds of ``values`` (n, k) float16 stored through ``encode``/``decode``
    as embed stores rows (one fixed-size binary value a photo, zstd, no dictionary), and the values read back."""
    path = folder / "rows.parquet"
    writes, reads = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        codes = np.ascontiguousarray(encode(values))
        width = codes.shape[1] * codes.itemsize
        column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(codes), [None, pa.py_buffer(codes)])
        pq.write_table(pa.table({"embedding": column}), path, compression="zstd", use_dictionary=False,
                       write_statistics=False)
        writes.append(time.perf_counter() - began)
        began = time.perf_counter()
        stored = pq.read_table(path, memory_map=True).column(0).combine_chunks()
        flat = np.frombuffer(stored.buffers()[1], codes.dtype, codes.size, stored.offset * width)
        back = decode(flat.reshape(codes.shape))
        reads.append(time.perf_counter() - began)
    return path.stat().st_size, min(writes), min(reads), back


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=SAMPLES, help="colour photos (default: the bundled samples)")
    parser.add_argument("--weights", default="none", help="Xception weights (default none: random)")
    parser.add_argument("--head", default="maps")
    parser.add_argument("--size", type=int, default=128, help="the L the maps are made from (default 128)")
    parser.add_argument("--model", type=Path, help="a trained model: score its colours from rounded embeddings")
    args = parser.parse_args()

    loaded = (load_sample(read_entry(args.photos, e.name), e.name, 512) for e in list_entries(args.photos))
    samples = [sample for sample in loaded if sample is not None]
    colorizer = Colorizer.load(args.model) if args.model else None  # with its card's weights
    extractor = colorizer.extractor if colorizer else load_extractor(args.weights, args.head)
    size = colorizer.size if colorizer else args.size
    lightness = np.stack([s.lightness(size) for s in samples])
    embedded = extractor.embed(lightness, 16)
    maps = embedded.reshape(len(samples), -1)
    print(f"{len(samples)} photos of {args.photos} at {size}², extractor {extractor.id}"
          f"{' (RANDOM weights: sizes unrepresentative)' if extractor.random else ''}; "
          f"{(maps == 0).mean():.0%} of the values zero, largest {float(maps.max()):.1f}")
    formats = {"float16": (lambda v: v.view(np.uint16), lambda c: c.view(np.float16)), **codecs()}
    with tempfile.TemporaryDirectory(prefix="precision-") as tmp:
        results = {name: timed_file(maps, *codec, Path(tmp)) for name, codec in formats.items()}
    base_disk, base_write, base_read, _ = results["float16"]
    n = len(maps)
    print(f"{'format':14} {'raw KB':>7} {'disk KB':>8} {'write ms':>9} {'read ms':>8}  {'disk':>5} {'write':>6} "
          f"{'read':>5}  {'mean rel. error':>15} {'max error':>9}")
    nonzero = maps != 0
    for name, (disk, write, read, back) in results.items():
        error = np.abs(back.astype(np.float32) - maps.astype(np.float32))
        relative = error[nonzero].mean() / np.abs(maps[nonzero].astype(np.float32)).mean()
        raw = maps.size * (2 if name == "float16" else 1) / n
        print(f"{name:14} {raw / 1e3:7.1f} {disk / n / 1e3:8.1f} {1e3 * write / n:9.2f} {1e3 * read / n:8.2f}  "
              f"{disk / base_disk:5.2f} {base_write / write:5.2f}x {base_read / read:4.2f}x  {relative:15.2%} "
              f"{float(error.max()):9.3g}")
    if colorizer:
        plain = _colours(colorizer, lightness, embedded)
        for name, (_, _, _, back) in results.items():
            if name != "float16":
                rounded = _colours(colorizer, lightness, back.reshape(embedded.shape))
                _compare(samples, rounded, plain, [(1.0, 1.0), (1.5, 1.5)],
                         f"{colorizer.id}, embeddings in {name} - in float16")
    return 0


def _colours(colorizer: Colorizer, lightness: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """a,b of ``colorizer``'s network for stored L and the given embeddings (as its extractor gives them)."""
    inputs = {"L": lab.model_inputs(lightness), "embedding": embedding.astype(np.float32)}
    return lab.from_model_output(colorizer.network.predict(inputs, batch_size=16, verbose=0))


if __name__ == "__main__":
    raise SystemExit(main())
