#!/usr/bin/env bash
# GPU figures for BENCHMARKS.md, under KERAS_BACKEND=jax on a machine without TensorFlow or Prefect:
#   embed:    Xception at batch 1 and 256, mixed precision (benchmarks/embed.py);
#   train:    256x256, width 1.0, batch 64, mixed precision, 3 epochs; stage vs network alone (benchmarks/train.py);
#   colorize: the library's steps on 12 MP photos, prepare | network | render (benchmarks/colorize.py --split-only).
#
# Run from the repository root on the GPU machine, with the wheels Keras needs there carried in .whl/
# (prepared on the development machine, git-ignored through .git/info/exclude):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl keras namex optree
# (the device's image has numpy, pandas, pyarrow, Pillow, scikit-image, h5py, psutil and OpenCV already), then,
# through the device tool: command "bash benchmarks/gpu.sh", carry [".whl"]. Each figure also goes to
# $OUT/gpu-*.txt when OUT is set. It took 230 s on an H200 (session 24), the machine's start not counted.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
out="${OUT:-$(mktemp -d)}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu-card.txt"
python3 benchmarks/embed.py --images 4096 --seed-images 256 --batch-size 256 --shards 8 --mixed-precision \
    2>&1 | tee "$out/gpu-embed.txt"
python3 benchmarks/train.py --size 256 --width 1.0 --batch-size 64 --repeat 32 --epochs 3 --mixed-precision \
    --skip-seed 2>&1 | tee "$out/gpu-train.txt"
python3 benchmarks/colorize.py --split-only --images 16 2>&1 | tee "$out/gpu-colorize.txt"
