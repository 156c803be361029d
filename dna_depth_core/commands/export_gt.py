"""``dna-depth export-gt``: write the ground-truth depth maps of a split (the ``gt_depths.npz`` step)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dna_depth_core.data.kitti import read_split_file
from dna_depth_core.evaluation import export_gt

NAME = "export-gt"
HELP = "export the ground-truth depth of a split to an .npz (velodyne, 16-bit PNG, npz or synthetic depth)"
DESCRIPTION = """\
For each line of the split file, take the ground truth from the first source found under DATA/FOLDER:
  velodyne_points/data/%010d.bin        raw scan, projected into camera 2/3 with DATE/calib_*.txt
  proj_depth/groundtruth/image_0X/%010d.png   KITTI depth-annotated 16-bit PNG (value / 256 m)
  proj_depth/velodyne/image_0X/%010d.npz      key velodyne_depth (metres)
  proj_depth/velodyne/image_0X/%010d.png      16-bit PNG
  depth/%010d.npy                             synthetic drives' exact depth (left camera)
The .npz holds depth_00000, depth_00001, ... (float32, 0 = no measurement) and split_lines;
read it with dna_depth_core.evaluation.load_gt.

Example:
  dna-depth export-gt --data-path kitti_raw --split splits/eigen/test_files.txt --out splits/eigen/gt_depths.npz
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-path", required=True, help="KITTI raw root (holding the date folders)")
    parser.add_argument("--split", required=True, help="split file (lines 'folder frame side')")
    parser.add_argument("--out", default=None, help="output .npz (default: gt_depths.npz beside the split file)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    lines = read_split_file(args.split)
    out = Path(args.out) if args.out else Path(args.split).parent / "gt_depths.npz"
    depths = export_gt(args.data_path, lines, out, progress=not args.quiet)
    valid = [int(np.count_nonzero(d > 0)) for d in depths]
    print(f"wrote {len(depths)} ground-truth maps to {out} (valid pixels per frame: "
          f"min {min(valid)}, mean {np.mean(valid):.0f}, max {max(valid)})")
    return 0
