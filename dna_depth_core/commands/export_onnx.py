"""``dna-depth export-onnx``: a checkpoint -> a self-describing ONNX model, verified with onnxruntime."""
from __future__ import annotations

import json

NAME = "export-onnx"
HELP = "export a checkpoint to ONNX (verified against torch with onnxruntime)"
DESCRIPTION = """Export the depth network of a checkpoint to ONNX (opset 17 by default). The graph takes `image`
(B, 3, H, W) float32 in [0, 1] and returns `disparity` (B, 1, H, W), the scale-0 sigmoid disparity (with
--all-scales also disparity_1..3). The checkpoint's config (model, normalisation, training size, depth range) is
stored in the model's metadata_props, so the .onnx file is all `DepthEstimator(..., backend="onnxruntime")` needs.

The export is run with onnxruntime against torch on a seeded input and the largest difference of the disparity is
printed; above --atol (1e-4) the command fails.

example:
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0.onnx
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0_1024x320.onnx --height 320 --width 1024
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0_dyn.onnx --dynamic"""


def add_arguments(p) -> None:
    from dna_depth_core.models.registry import list_models

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="dna-depth checkpoint (.safetensors)")
    src.add_argument("--model", choices=list_models(),
                     help="export a freshly built model with random weights instead (for benchmarks and tests)")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument("--height", type=int, default=None, help="input height, a multiple of 32 (default: the checkpoint's)")
    p.add_argument("--width", type=int, default=None, help="input width, a multiple of 32 (default: the checkpoint's)")
    p.add_argument("--batch", type=int, default=1, help="batch size of a static graph (default 1)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--all-scales", action="store_true", help="also output the 1/2, 1/4 and 1/8 disparities")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default 17)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest accepted |onnxruntime - torch| (default 1e-4)")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime check")
    p.add_argument("--json", action="store_true", help="print the export report as JSON")


def run(args) -> int:
    from dna_depth_core.export import export_onnx

    if args.weights:
        source = args.weights
    else:
        import torch

        from dna_depth_core.models.registry import build_model

        torch.manual_seed(0)
        source = build_model(args.model).eval()
    r = export_onnx(source, args.out, height=args.height, width=args.width, dynamic=args.dynamic,
                    all_scales=args.all_scales, opset=args.opset, verify=not args.no_verify, atol=args.atol,
                    batch=args.batch)
    if args.json:
        print(json.dumps(r.to_dict()))
        return 0
    shape = "B x 3 x H x W (dynamic)" if r.dynamic else f"{args.batch} x 3 x {r.height} x {r.width}"
    print(f"{r.model} -> {r.path} ({r.size_bytes / 2**20:.1f} MiB, opset {r.opset}, input {shape}, "
          f"outputs {', '.join(r.outputs)}) in {r.seconds:.1f} s")
    if r.max_abs_diff is not None:
        checks = ", ".join(f"{k}: {v:.2e}" for k, v in r.checked.items())
        print(f"verified with onnxruntime: max |onnxruntime - torch| of the disparity = {r.max_abs_diff:.2e} "
              f"({checks})")
    return 0
