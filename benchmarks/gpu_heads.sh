#!/usr/bin/env bash
# GPU figures for BENCHMARKS.md's "embed heads" section, under KERAS_BACKEND=jax (see benchmarks/gpu.sh for the
# wheels to carry in .whl/): embed throughput and bytes on disk of each head in $HEADS (default: maps, embed's
# default; sessions 29 and 30 also measured hypercolumn, the same two maps stacked before storing), then training
# throughput of the model each head feeds (256x256, width 1.0, batch 64; 1,087 photos in shards of 128, so that
# each window of 4 shards holds 8 batches).
# - Embed runs 2,048 photos in 8 shards of 256, so that writes overlap as in a real dataset, and measures the
#   stage around a free network with 1, 2, 4 and 8 writer threads (embed's WRITERS is 4 on 16 cores).
# - Train measures the input pipeline alone with 1, 2, 4, 8 and 16 batch threads, with its CPU time a photo in
#   user space and in the kernel (8 threads fed only 2.9x one thread in session 30: is it the kernel mapping
#   fresh batch arrays?), again with embedding files in row groups of 16 rows, which Arrow reads in parallel
#   (embed writes one row group a file), and again with the files in float16, as embed stored maps before
#   session 32 (float8 e5m2 since: half the bytes).
# gpu.sh measures the predictions head.
# Through the device tool: command "bash benchmarks/gpu_heads.sh", carry [".whl"]. Output also in $OUT.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
out="${OUT:-$(mktemp -d)}"
heads="${HEADS:-maps}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu-card.txt"
python3 benchmarks/embed.py --images 2048 --seed-images 1 --batch-size 256 --shards 8 --repeats 1 \
    --writers 1 2 4 8 --mixed-precision --heads $heads 2>&1 | tee "$out/gpu-embed-heads.txt"
for head in $heads; do
    python3 benchmarks/train.py --size 256 --width 1.0 --batch-size 64 --repeat 32 --rows-per-shard 128 --epochs 2 \
        --row-groups 16 --float16 --threads 1 2 4 8 16 --mixed-precision --skip-seed --head "$head" 2>&1 | tee "$out/gpu-train-$head.txt"
done
