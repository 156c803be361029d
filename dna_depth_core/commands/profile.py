"""``dna-depth profile``: parameters, MACs and FLOPs of a model at an input size."""
from __future__ import annotations

import json

from dna_depth_core.models.registry import list_models
from dna_depth_core.profiling import profile_model

NAME = "profile"
HELP = "count parameters, MACs and FLOPs of a model at an input size"
DESCRIPTION = """Count parameters, multiply-accumulates (MACs, from torch's own FLOP counter) and FLOPs (= 2 x MACs)
of one forward pass of a depth network at batch 1. The DNA-Depth paper's "GFLOPs" column matches our GMACs.

example:
  dna-depth profile --model dna_b0 --height 192 --width 640
  dna-depth profile --model monodepth2_r18 --height 320 --width 1024 --json"""


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, choices=list_models(), help="registry name")
    p.add_argument("--height", type=int, default=192, help="input height, a multiple of 32 (default 192)")
    p.add_argument("--width", type=int, default=640, help="input width, a multiple of 32 (default 640)")
    p.add_argument("--json", action="store_true", help="print one JSON object: model, params, macs, flops, height, width")


def run(args) -> int:
    r = profile_model(args.model, args.height, args.width)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['model']} at {r['width']}x{r['height']}: {r['params'] / 1e6:.3f} M parameters, "
              f"{r['macs'] / 1e9:.3f} GMACs, {r['flops'] / 1e9:.3f} GFLOPs")
    return 0
