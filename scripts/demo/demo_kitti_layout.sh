#!/usr/bin/env bash
# The KITTI-layout demo (make demo-kitti-layout): render synthetic street drives, train DNA-Depth (Lite0)
# self-supervised on one for a few minutes, then evaluate it on a held-out drive against the exact depth (and the
# untrained network against the same), and write colourised disparities + depth .npy for the held-out frames.
# Knobs: DEMO_STEPS (training steps, default 200), DEMO_OUT (default out/demo_kitti_layout).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/dev/env.sh
OUT=${DEMO_OUT:-out/demo_kitti_layout}
STEPS=${DEMO_STEPS:-200}
DATA=$OUT/data
mkdir -p "$OUT"
start=$(date +%s)

if [ ! -f "$DATA/splits/2000_01_01_drive_0002_sync.txt" ]; then
  echo "== 1. render a training drive (seed 0) and a held-out drive (seed 1), 320x96"
  dna-depth synth --out "$DATA" --frames 160 --seed 0 --drive 1 --width 320 --height 96 --quiet
  dna-depth synth --out "$DATA" --frames 26 --seed 1 --drive 2 --width 320 --height 96 --quiet
fi
HELD=$DATA/splits/2000_01_01_drive_0002_sync.txt
dna-depth export-gt --data-path "$DATA" --split "$HELD" --out "$OUT/gt_heldout.npz" 2>/dev/null

echo "== 2. the untrained network (the recipe's initialisation: ImageNet Lite0 encoder, offline weights)"
python - "$OUT/untrained.safetensors" <<'PY'
import sys
from dna_depth_core.io.checkpoint import save_checkpoint
from dna_depth_core.training import load_config
from dna_depth_core.training.networks import build_depth_net
cfg = load_config("config/train/train_synthetic.yaml")
save_checkpoint(build_depth_net(cfg), sys.argv[1], provenance={"source": "untrained (recipe init)"})
PY

echo "== 3. train self-supervised for $STEPS steps (config/train/train_synthetic.yaml)"
rm -rf "$OUT/run"
dna-depth train --config config/train/train_synthetic.yaml --out "$OUT/run" data_path="$DATA" \
  max_steps="$STEPS" validate=false num_workers=0 log_every=20
CKPT=$OUT/run/checkpoints/$(cat "$OUT/run/checkpoints/latest")/model.safetensors

echo "== 4. evaluate on the held-out drive against exact depth (median scaling, Eigen crop, 80 m cap)"
echo "untrained:"; dna-depth evaluate --weights "$OUT/untrained.safetensors" --data-path "$DATA" --split "$HELD" \
  --gt "$OUT/gt_heldout.npz" 2>/dev/null
echo "trained ($STEPS steps):"; dna-depth evaluate --weights "$CKPT" --data-path "$DATA" --split "$HELD" \
  --gt "$OUT/gt_heldout.npz" 2>/dev/null

echo "== 5. predict: colourised disparity PNGs + float32 depth .npy"
dna-depth predict --weights "$CKPT" --input "$DATA/2000_01_01/2000_01_01_drive_0002_sync/image_02/data" \
  --out "$OUT/predictions" 2>/dev/null
echo "done in $(( $(date +%s) - start )) s; outputs in $OUT/ (predictions/, run/ with train_log.csv and tensorboard/)"
