#!/usr/bin/env bash
# GPU benchmark for a lent accelerator (device tool): model throughput per preset at batch 1
# and 32 on CUDA, side by side with the CPU in the same run. Usage on the GPU machine, from the
# repository root (with the repo's .venv carried or installed by `make setup`):
#   bash bench/gpu_bench.sh [OUT_DIR]
# Writes OUT_DIR/bench_{cpu,cuda_b1,cuda_b32}.json and prints the tables.
set -euo pipefail
OUT="${1:-${OUT:-bench_out}}"
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY -m foenet_ros.cli bench --device cpu --runs 20 --json "$OUT/bench_cpu.json"
$PY -m foenet_ros.cli bench --device cuda --runs 100 --batch 1 --json "$OUT/bench_cuda_b1.json"
$PY -m foenet_ros.cli bench --device cuda --runs 50 --batch 32 --json "$OUT/bench_cuda_b32.json"
