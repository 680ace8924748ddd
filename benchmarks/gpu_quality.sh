#!/usr/bin/env bash
# QUALITY.md's GPU training runs, under KERAS_BACKEND=jax on a machine without Prefect or Dask (see
# benchmarks/gpu.sh for the wheels to carry in .whl/; benchmarks/quality_payload.py packs PHOTOS and WEIGHTS,
# a .xz file unpacked to /tmp here, small enough to travel):
#   bash benchmarks/gpu_quality.sh PHOTOS WEIGHTS DATASET MODELS VARIANT...
# builds DATASET from PHOTOS at $SIZE (default 256) with WEIGHTS' $HEAD head (default hypercolumn, the
# default of embed; benchmarks/build_dataset.py; skipped when DATASET already has shards), trains each
# VARIANT of benchmarks/ablation.py at width $WIDTH
# (default 1.0), batch $BATCH (default 16), $EPOCHS epochs (default 30) into MODELS/VARIANT, and packs each model
# as $OUT/VARIANT.tar (model.keras with its weights rounded to float16, to fit the device tool's 16 MiB per
# file; they load into the float32 model as they are) with its card, for `colorization evaluate` here.
set -euo pipefail
photos=$1 weights=$2 dataset=$3 models=$4; shift 4
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
if [[ $weights == *.xz ]]; then  # as benchmarks/quality_payload.py packs them to travel
    unpacked="/tmp/$(basename "${weights%.xz}")"
    python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$weights" "$unpacked"
    weights=$unpacked
fi
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
out="${OUT:-$(mktemp -d)}"
[[ -d $dataset/shards ]] || python3 benchmarks/build_dataset.py "$photos" "$dataset" --size "${SIZE:-256}" \
    --weights "$weights" --head "${HEAD:-hypercolumn}"
for variant in "$@"; do
    python3 benchmarks/ablation.py "$dataset" "$models" --variants "$variant" --epochs "${EPOCHS:-30}" \
        --batch-size "${BATCH:-16}" --width "${WIDTH:-1.0}" || continue
    PYTHONPATH="$PYTHONPATH:$PWD/benchmarks" python3 - "$models/$variant" "$out/$variant.tar" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path
from quality_payload import halve_weights  # benchmarks/ is on PYTHONPATH


def halve(data: bytes) -> bytes:
    result = io.BytesIO()
    halve_weights(io.BytesIO(data), result)
    return result.getvalue()

folder, target = Path(sys.argv[1]), sys.argv[2]
packed = io.BytesIO()
with zipfile.ZipFile(folder / "model.keras") as src, zipfile.ZipFile(packed, "w") as dst:
    for name in src.namelist():
        data = src.read(name)
        dst.writestr(name, halve(data) if name.endswith(".h5") else data)
with tarfile.open(target, "w") as tar:
    tar.add(folder / "model.json", "model.json")
    info = tarfile.TarInfo("model.keras")
    info.size = len(packed.getvalue())
    tar.addfile(info, io.BytesIO(packed.getvalue()))
PY
done
