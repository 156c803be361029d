"""``dna-depth guard``: the accuracy guard of a reduced-precision model file, recorded in the file for ``auto``."""
from __future__ import annotations

import json

from dna_depth_core.benchmark.guard import (
    A1_TOL,
    ABS_REL_TOL,
    format_guard,
    kitti_guard_data,
    run_guard,
    synthetic_guard_data,
    write_guard_record,
)

NAME = "guard"
HELP = "accuracy guard of an int8/bf16 path against fp32 on frames with ground truth; recorded in the model file"
DESCRIPTION = f"""Run a reduced-precision path (int8 or bf16) and the fp32 reference on frames with ground truth
and compare their AbsRel and a1 (median scaling, depth capped at 80 m; Eigen crop on KITTI frames). The path passes
when |d AbsRel| <= {ABS_REL_TOL} and |d a1| <= {A1_TOL} on every data set given. The verdict is written into the model
file (dna_depth.guard metadata of the .onnx, or the rt_info of the OpenVINO .xml) unless --no-record: `backend: auto`
refuses an int8 file whose record failed and offers bf16 only with a passing openvino:bf16 record.

The path defaults to the file's own: openvino:int8 for an int8 IR, onnxruntime:int8 for an int8 .onnx; for bf16 give
an fp32 .onnx and --path openvino:bf16 (only on a CPU with native bf16). An int8 file needs --reference, its fp32
source (the fp32 .onnx or the checkpoint), run in onnxruntime at fp32 at the same input size.

Data: --kitti DIR (a KITTI-layout folder with ground truth, e.g. ../shared/data/kitti_tiny: 7 frames with
projected LiDAR) and/or --synthetic N (N frames of a synthetic street drive with exact depth, --synthetic-seed,
default 1: not a seed the synthetic recipe trains on). Use frames the network was trained for; more frames give a
firmer verdict (7 correlated frames move a1 by whole pixels crossing the 1.25 threshold).

example:
  dna-depth guard model_int8.xml --reference model.onnx --kitti ../shared/data/kitti_tiny --synthetic 40
  dna-depth guard model.onnx --path openvino:bf16 --synthetic 40 --json"""


def add_arguments(p) -> None:
    p.add_argument("model", help="the model file to guard: an int8 .onnx / .xml, or an fp32 .onnx with --path")
    p.add_argument("--path", default=None, help="BACKEND:PRECISION to guard (default: the file's own int8 path)")
    p.add_argument("--reference", default=None,
                   help="the fp32 model (checkpoint or .onnx) to compare with (default: the model itself at fp32)")
    p.add_argument("--kitti", default=None, metavar="DIR", help="KITTI-layout folder with ground truth")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="N frames of a synthetic drive (exact depth)")
    p.add_argument("--synthetic-seed", type=int, default=1, help="scene seed of the synthetic drive (default 1)")
    p.add_argument("--synthetic-size", default="640x192", metavar="WxH",
                   help="size the synthetic frames are rendered at (default 640x192; the estimator resizes them)")
    p.add_argument("--no-record", action="store_true", help="only print the verdict; leave the file unchanged")
    p.add_argument("--json", action="store_true", help="print the record as JSON")


def run(args) -> int:
    if args.synthetic < 0:
        raise ValueError(f"--synthetic: {args.synthetic} frames is not a count")
    data = []
    if args.kitti:
        data.append(kitti_guard_data(args.kitti))
    if args.synthetic:
        try:
            width, height = (int(v) for v in args.synthetic_size.lower().split("x"))
        except ValueError:
            raise ValueError(f"--synthetic-size: expected WxH, e.g. 640x192, got {args.synthetic_size!r}") from None
        data.append(synthetic_guard_data(args.synthetic, seed=args.synthetic_seed, width=width, height=height))
    if not data:
        raise ValueError("give the frames to guard on: --kitti DIR and/or --synthetic N")
    record = run_guard(args.model, data, path=args.path, reference=args.reference)
    if not args.no_record:
        write_guard_record(args.model, record)
    if args.json:
        print(json.dumps(record))
    else:
        print(format_guard(record))
        print("recorded in " + args.model if not args.no_record else "not recorded (--no-record)")
    return 0 if record["passed"] else 1
