#!/usr/bin/env bash
# The main job on an embedded default: synthesise a ROS 2 bag of a street drive, fine-tune the committed start
# checkpoint (DNA-Depth Lite0 trained on other synthetic streets) on it (config/train/finetune_synthetic.yaml), replay
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
if unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up && exec python scripts/demo/demo_bag.py "$@"' -- "${ARGS[@]}"
fi
echo "warning: unshare -n not permitted; the ROS graph is confined by ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST only" >&2
exec python scripts/demo/demo_bag.py "${ARGS[@]}"
