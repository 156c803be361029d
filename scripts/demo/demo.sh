#!/usr/bin/env bash
# The main job on an embedded default: synthesise a ROS 2 bag of a street drive, fine-tune the start checkpoint
# (DNA-Depth Lite0 trained on other synthetic streets, built once on first use) on it
# (config/train/finetune_synthetic.yaml), replay
# the bag's held-out last frames through the depth node in a real rclpy graph, and write a contact sheet, depth PNGs,
# a PLY point cloud, results.json and report.md; print the accuracy of the fine-tuned, start and untrained networks
# against the bag's exact depth, PASS/FAIL against the demo's targets, and the FPS through the graph.
#
#   bash scripts/demo/demo.sh                                   # the embedded default (out/demo)
#   bash scripts/demo/demo.sh --bag MY_BAG --weights CKPT --image-topic /cam/image_raw --camera-info-topic /cam/info
#   bash scripts/demo/demo.sh --bag MY_BAG --image-topic ... --camera-info-topic ...   # fine-tune on your bag, replay
#
# Every argument goes to scripts/demo/demo_bag.py (--help lists them). DEMO_OUT (default out/demo) and DEMO_STEPS
# (fine-tune steps, default: demo_bag.py's) set the common ones. The ROS graph runs inside a loopback-only network
# namespace (unshare -n) where the system allows it, and with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST always.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/dev/env.sh
ARGS=(--out "${DEMO_OUT:-out/demo}")
if [ -n "${DEMO_STEPS:-}" ]; then ARGS+=(--steps "$DEMO_STEPS"); fi
ARGS+=("$@")
# The start checkpoint the fine-tune begins from is built once (not committed: 8.8 MB) unless --start or --weights
# names another; a measured build took 2006 s wall on one thread of this 2-core VM (docs/training.md).
START=runs/start_checkpoint/start_lite0_synth.safetensors
if [[ ! -f "$START" && " $* " != *" --start "* && " $* " != *" --weights "* ]]; then
  echo "building the demo's start checkpoint once (500 training steps on synthetic streets 3-6; ~15-35 min)" >&2
  python scripts/demo/make_start_checkpoint.py train --out runs/start_checkpoint/train cpu_threads=2
  python scripts/demo/make_start_checkpoint.py pack runs/start_checkpoint/train/checkpoints/step_00000500 --out "$START"
fi
if unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec python scripts/demo/demo_bag.py "$@"' -- "${ARGS[@]}"
fi
echo "warning: unshare -n not permitted; the ROS graph is confined by ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST only" >&2
exec python scripts/demo/demo_bag.py "${ARGS[@]}"
