"""``dna-depth evaluate``: the KITTI (Eigen) protocol on a split."""
from __future__ import annotations

import json

from dna_depth_core.backends import list_backends
from dna_depth_core.data.kitti import read_split_file
from dna_depth_core.evaluation import (METRIC_NAMES, evaluate_model, format_table_header, format_table_row, load_gt,
                                       parse_scaling)

NAME = "evaluate"
HELP = "evaluate a checkpoint on a split against ground-truth depth (Eigen crop, 80 m cap, 7 metrics)"
DESCRIPTION = """Evaluate depth with the standard protocol: prediction resized to the ground truth, Garg/Eigen crop,
valid 1e-3 < gt < 80 m, per-image median scaling (monocular default), predictions clamped to [1e-3, 80].
Metrics are averaged over frames. Ground truth comes from `dna-depth export-gt`. Frames reach the network
exactly as in training and in the ROS node (DepthEstimator); --backend evaluates an exported model too (e.g.
an int8 .onnx against its fp32 checkpoint).

example:
  dna-depth export-gt --data-path kitti_raw --split splits/eigen/test_files.txt --out gt_depths.npz
  dna-depth evaluate --weights dna_b0.safetensors --data-path kitti_raw \\
      --split splits/eigen/test_files.txt --gt gt_depths.npz"""


def add_arguments(p) -> None:
    p.add_argument("--weights", required=True, help="dna-depth checkpoint (.safetensors) or exported .onnx")
    p.add_argument("--data-path", required=True, help="KITTI raw root (DATE/DATE_drive_XXXX_sync/...)")
    p.add_argument("--split", required=True, help="split file, one 'folder frame side' line per frame")
    p.add_argument("--gt", required=True, help="ground truth .npz from `dna-depth export-gt` (same split order)")
    p.add_argument("--scaling", default="median",
                   help="median (per image, monocular; default), none, or fixed:S (multiply predictions by S)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--backend", default="torch", choices=list_backends(),
                   help="inference backend (default torch; an .onnx file needs onnxruntime or auto)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: abs_rel, sq_rel, rmse, rmse_log, a1, a2, a3, frames")


def run(args) -> int:
    scaling = parse_scaling(args.scaling)
    lines = read_split_file(args.split)
    gt = load_gt(args.gt)
    r = evaluate_model(args.weights, args.data_path, lines, gt, scaling=scaling, device=args.device,
                       backend=args.backend, progress=not args.json)
    if args.json:
        print(json.dumps({k: r[k] for k in (*METRIC_NAMES, "frames")}))
        return 0
    print(f"{r['frames']} frames, scaling {args.scaling}"
          + (f" (median ratio {r['ratio_median']:.3f}, std {r['ratio_std']:.3f})" if args.scaling == "median" else ""))
    print(format_table_header())
    print(format_table_row(r))
    return 0
