#!/usr/bin/env bash
# The whole GPU check in one go (must fit in 8 minutes): latency and throughput at batch 1 and 8, at 640x192 and
# 1024x320, for dna_b0, dna_b1 and monodepth2_r18: fp32, fp16 (channels_last, cudnn.benchmark), fp16 + CUDA graph,
# and onnxruntime's CUDA provider when installed. Uses the machine's own python/torch/timm/onnxruntime; the package
# is taken from this checkout through PYTHONPATH (nothing is installed).
#
#   bash benchmarks/gpu.sh [OUT_DIR]        # default OUT_DIR: benchmarks/results/gpu-<date>
#   GPU_BENCH_BUDGET=420 GPU_BENCH_COMPILE=1 bash benchmarks/gpu.sh "$OUT"
#
# Writes OUT_DIR/gpu_bench.json (machine, versions, every measurement) and OUT_DIR/gpu_bench.md (the table), after
# every measurement, so a run cut short still leaves its results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT_DIR="${1:-benchmarks/results/gpu-$(date -u +%Y%m%d)}"
PY="${PYTHON:-python3}"
BUDGET="${GPU_BENCH_BUDGET:-400}"   # seconds after which no new measurement starts (the last one ends ~20 s later)
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
{
  echo "== $(date -u +%FT%TZ) $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
  "$PY" -m dna_depth_core.machine --device cuda || true   # CPU, GPU, CUDA/cuDNN and library versions (JSON)
} | tee "$OUT_DIR/environment.txt"
EXTRA=()
if [[ "${GPU_BENCH_COMPILE:-0}" == "1" ]]; then EXTRA+=(--compile); fi
# Hard stop at 7 min 40 s in case one measurement hangs; partial results are already on disk.
timeout --signal=INT --kill-after=10 460 "$PY" benchmarks/gpu_bench.py --out-dir "$OUT_DIR" --budget "$BUDGET" "${EXTRA[@]}"
