#!/usr/bin/env bash
# The whole GPU check in one go, in at most 8 minutes, one report (OUT_DIR/gpu_bench.{json,md}):
#   1. the machine: nvidia-smi, python -m dna_depth_core.machine --device cuda, onnxruntime's providers;
#   2. the depth node on CUDA through a real rclpy graph (benchmarks/node_latency.py --device cuda, dna_b0 640x192,
#      DDS confined to loopback); skipped with a note when rclpy is not importable (GPU machines usually lack ROS);
#   3. one short self-supervised training run with AMP (benchmarks/gpu_train.py: dna_b0 96x320, batch 8, 30 steps);
#   4. inference (benchmarks/gpu_bench.py) in the remaining budget: dna_b0, dna_b1, monodepth2_r18 x {640x192,
#      1024x320} x batch {1, 8} x {torch fp32, fp16, bf16, fp16 + CUDA graph, onnxruntime CUDA EP}, plus the
#      TensorRT EP (fp16) for dna_b0 / monodepth2_r18 640x192 when onnxruntime has it; the report includes 2 and 3.
#
# On a GPU machine that brings its own python and torch and has no ROS (and no network):
#   bash benchmarks/gpu.sh [OUT_DIR]         # default OUT_DIR: benchmarks/results/gpu-<date>
# It installs this checkout into that python with `pip install --no-deps -e .` (nothing is downloaded; timm,
# safetensors, numpy, opencv, onnx/onnxruntime-gpu must already be there, else the parts that need them are skipped
# with a note) and falls back to PYTHONPATH when pip cannot.
#   GPU_SH_SMOKE=1 bash benchmarks/gpu.sh /tmp/gpu_smoke   # every step on the CPU, tiny sizes (code-path check)
#   GPU_SH_LIMIT=480 GPU_BENCH_COMPILE=1 PYTHON=python3 bash benchmarks/gpu.sh "$OUT"
# Every step has a hard timeout; results are written as they come, so a run cut short still leaves its report.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT_DIR="${1:-benchmarks/results/gpu-$(date -u +%Y%m%d)}"
PY="${PYTHON:-python3}"
LIMIT="${GPU_SH_LIMIT:-470}"          # seconds for the whole script (8 min = 480, minus a margin)
SMOKE="${GPU_SH_SMOKE:-0}"
DEVICE=cuda
if [[ "$SMOKE" == "1" ]]; then DEVICE=cpu; fi
mkdir -p "$OUT_DIR"
export PYTHONDONTWRITEBYTECODE=1
left() { echo $(( LIMIT - SECONDS )); }

# 0. The package: installed without dependencies (offline), else from the checkout.
if ! "$PY" -c "import dna_depth_core" 2>/dev/null || [[ "$("$PY" -c 'import dna_depth_core, os; print(os.path.dirname(os.path.dirname(dna_depth_core.__file__)))' 2>/dev/null)" != "$PWD" ]]; then
  timeout 60 "$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT_DIR/pip.log" 2>&1 \
    || { echo "pip install --no-deps failed (see $OUT_DIR/pip.log): using PYTHONPATH"; export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; }
fi

# 1. The machine.
{
  echo "== $(date -u +%FT%TZ) $(hostname) smoke=$SMOKE"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
  timeout 60 "$PY" -m dna_depth_core.machine --device "$DEVICE" || true
  timeout 30 "$PY" -c "import onnxruntime as o; print('onnxruntime providers:', o.get_available_providers())" || true
} > "$OUT_DIR/environment.txt" 2>&1
cat "$OUT_DIR/environment.txt"

# 2. The node on CUDA (needs rclpy; DDS stays on loopback in a private network namespace when unshare works).
NODE_JSON="$OUT_DIR/node.json"
if "$PY" -c "import rclpy, sensor_msgs" 2>/dev/null; then
  NODE_ARGS=(--model dna_b0 --width 640 --height 192 --device "$DEVICE" --frames 10 --rate-seconds 3 --no-process --out "$NODE_JSON")
  if [[ "$SMOKE" == "1" ]]; then NODE_ARGS=(--model dna_lite0 --width 96 --height 64 --device cpu --frames 3 --rate-seconds 1 --no-process --out "$NODE_JSON"); fi
  NODE_CMD="ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-137} timeout 100 $PY benchmarks/node_latency.py ${NODE_ARGS[*]}"
  if unshare -n true 2>/dev/null; then
    unshare -n bash -c "ip link set lo up && $NODE_CMD" > "$OUT_DIR/node.log" 2>&1
  else
    bash -c "$NODE_CMD" > "$OUT_DIR/node.log" 2>&1
  fi
  [[ -s "$NODE_JSON" ]] || echo "{\"note\": \"node run failed or timed out: see node.log\"}" > "$NODE_JSON"
else
  echo '{"note": "skipped: rclpy (ROS 2) is not importable on this machine"}' > "$NODE_JSON"
fi
echo "[gpu.sh ${SECONDS} s] node: $(head -c 300 "$NODE_JSON")"

# 3. A short training run with AMP.
TRAIN_ARGS=(--out-dir "$OUT_DIR" --device "$DEVICE")
if [[ "$SMOKE" == "1" ]]; then TRAIN_ARGS+=(--smoke); fi
timeout 110 "$PY" benchmarks/gpu_train.py "${TRAIN_ARGS[@]}" > "$OUT_DIR/train.log" 2>&1 \
  || { [[ -s "$OUT_DIR/train.json" ]] || echo "{\"note\": \"training run failed or timed out: see train.log\"}" > "$OUT_DIR/train.json"; }
echo "[gpu.sh ${SECONDS} s] training: $(head -c 300 "$OUT_DIR/train.json")"

# 4. Inference in what is left, then the one report.
BUDGET=$(( $(left) - 45 ))
(( BUDGET < 30 )) && BUDGET=30
EXTRA=()
if [[ "${GPU_BENCH_COMPILE:-0}" == "1" ]]; then EXTRA+=(--compile); fi
if [[ "$SMOKE" == "1" ]]; then EXTRA+=(--device cpu --smoke); fi
timeout --signal=INT --kill-after=10 $(( $(left) - 10 )) "$PY" benchmarks/gpu_bench.py --out-dir "$OUT_DIR" \
  --budget "$BUDGET" --node-json "$NODE_JSON" --train-json "$OUT_DIR/train.json" "${EXTRA[@]}"
echo "[gpu.sh ${SECONDS} s] report: $OUT_DIR/gpu_bench.md"
