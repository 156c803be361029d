"""``dna-depth export-onnx``: a checkpoint -> a self-describing ONNX model, verified with onnxruntime."""
from __future__ import annotations

import json
import os
import tempfile

import torch

from dna_depth_core.export import (
    DEFAULT_CALIBRATION_COUNT,
    export_onnx,
    find_calibration_images,
    quantize_onnx_int8,
    quantize_openvino_int8,
)
from dna_depth_core.machine import ISA_CLASSES
from dna_depth_core.models.registry import build_model, list_models
from dna_depth_core.preprocess import RESIZE_MODES

NAME = "export-onnx"
HELP = "export a checkpoint to ONNX (verified against torch with onnxruntime)"
DESCRIPTION = """Export the depth network of a checkpoint to ONNX (opset 17 by default). The graph takes `image`
(B, 3, H, W) float32 in [0, 1] and returns `disparity` (B, 1, H, W), the scale-0 sigmoid disparity (with
--all-scales also disparity_1..3). The checkpoint's config (model, normalisation, training size, depth range) is
stored in the model's metadata_props, so the .onnx file is all `DepthEstimator(..., backend="onnxruntime")` needs.

The export is run with onnxruntime against torch on a seeded input and the largest difference of the disparity is
printed; above --atol (1e-4) the command fails. The graph gets exact clean-ups first (the decoder's zero pads folded
into its convolutions, spatial means as GlobalAveragePool; the check covers them); --no-cleanup keeps torch's graph.

int8 (CPU): --int8 exports fp32 as above (and verifies it), then quantises it calibrated on --calibration images,
and writes only the int8 model to --out. --runtime onnxruntime (default): onnxruntime static quantisation (QDQ
.onnx; int8 weights per output channel, uint8 activations, MinMax ranges); it runs exactly on every x86 CPU (the
backend picks exact kernels without VNNI). --runtime openvino: NNCF post-training quantisation to an OpenVINO IR
(--out NAME.xml, + NAME.bin; --preset mixed by default), with 7-bit weights for a CPU without VNNI
(--target-isa, default this CPU's class: an 8-bit IR would saturate there and is refused by the backend). On a
CPU without VNNI, OpenVINO int8 is the int8 that pays (docs/deployment.md). The calibration images are prepared for the export size by the one
image-to-input rule (dna_depth_core.preprocess.prepare) that DepthEstimator and the ROS node apply to camera frames
(--calibration-resize: the node's resize_mode); use frames like the deployment's (same camera and kind of
scenes): the ranges come from them. Calibration costs one fp32 forward pass per image. The last convolution
and sigmoid stay float. The command prints |int8 - fp32| of the disparity on a few calibration images (a sanity
check on calibration data, not an accuracy evaluation). Static shapes only (not with --dynamic). The metadata
records dna_depth.precision=int8 and the number of calibration images; OnnxBackend, DepthEstimator and the ROS node
load the file like the fp32 one.

example:
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0.onnx
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0_1024x320.onnx --height 320 --width 1024
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0_dyn.onnx --dynamic
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0_int8.onnx --int8 --calibration frames/
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0_int8.onnx --int8 \
      --calibration 'data/**/image_02/data/*.png' --calibration-count 100
  dna-depth export-onnx --weights dna_b0.safetensors --out dna_b0_int8.xml --int8 --runtime openvino \
      --calibration frames/ [--target-isa avx512_vnni]"""


def add_arguments(p) -> None:
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
    p.add_argument("--no-cleanup", action="store_true",
                   help="keep torch's graph as exported (no exact clean-ups: pad folding, GlobalAveragePool)")
    q = p.add_argument_group("int8 (CPU)")
    q.add_argument("--int8", action="store_true",
                   help="write an int8 model (onnxruntime static QDQ quantisation) calibrated on --calibration")
    q.add_argument("--calibration", nargs="+", metavar="DIR_OR_GLOB",
                   help="calibration images: folder(s) (searched recursively for .png/.jpg/...), glob pattern(s) "
                        "(quote them; ** is recursive) or image files")
    q.add_argument("--calibration-count", type=int, default=None, metavar="N",
                   help="use at most N calibration images, spread evenly over the sorted list (default "
                        f"{DEFAULT_CALIBRATION_COUNT})")
    q.add_argument("--calibration-resize", choices=RESIZE_MODES, default="stretch",
                   help="how calibration images reach the export size, as the node's resize_mode / "
                        "DepthEstimator's resize: stretch (default) or crop (centre crop to the aspect ratio first)")
    q.add_argument("--threads", type=int, default=None,
                   help="threads for the int8 calibration and its check (default: the usable cores)")
    q.add_argument("--runtime", choices=("onnxruntime", "openvino"), default="onnxruntime",
                   help="onnxruntime (default: a QDQ .onnx) or openvino (an NNCF IR: --out NAME.xml)")
    q.add_argument("--target-isa", choices=ISA_CLASSES, default=None,
                   help="openvino: the CPU class the IR is for (default: this CPU's); without VNNI (avx2, avx512) "
                        "the weights get 7 bits so the int8 kernels cannot saturate")
    q.add_argument("--preset", choices=("mixed", "performance"), default="mixed",
                   help="openvino: NNCF preset (default mixed: asymmetric activations)")
    q.add_argument("--reduce-range", action="store_true",
                   help="onnxruntime: 7-bit weights (keeps the fast U8S8 kernels on CPUs without VNNI; less "
                        "accurate)")
    p.add_argument("--json", action="store_true", help="print the export report as JSON")


def run(args) -> int:
    if args.int8:
        if not args.calibration:
            raise ValueError("--int8 needs --calibration DIR_OR_GLOB (images to calibrate the int8 ranges on)")
        if args.dynamic:
            raise ValueError("--int8 needs a static model: drop --dynamic and export at the deployment size")
    elif args.calibration or args.calibration_count is not None or args.calibration_resize != "stretch":
        raise ValueError("--calibration/--calibration-count/--calibration-resize are for --int8")
    elif args.runtime != "onnxruntime" or args.target_isa or args.preset != "mixed" or args.reduce_range:
        raise ValueError("--runtime/--target-isa/--preset/--reduce-range are for --int8")
    if args.int8 and args.runtime == "openvino":
        if not args.out.endswith(".xml"):
            raise ValueError(f"--runtime openvino writes an OpenVINO IR: --out must end in .xml, got {args.out}")
        if args.reduce_range:
            raise ValueError("--reduce-range is for --runtime onnxruntime (openvino: --target-isa decides the bits)")
    elif args.int8 and (args.target_isa or args.preset != "mixed"):
        raise ValueError("--target-isa/--preset are for --runtime openvino")
    if args.weights:
        source = args.weights
    else:
        torch.manual_seed(0)
        source = build_model(args.model).eval()
    if args.int8:
        count = DEFAULT_CALIBRATION_COUNT if args.calibration_count is None else args.calibration_count
        find_calibration_images(args.calibration, count)  # fail on bad calibration input before exporting
        with tempfile.TemporaryDirectory(prefix="dna-depth-export-") as tmp:
            fp32_path = os.path.join(tmp, "fp32.onnx")
            r = export_onnx(source, fp32_path, height=args.height, width=args.width, all_scales=args.all_scales,
                            opset=args.opset, verify=not args.no_verify, atol=args.atol, batch=args.batch,
                            cleanup=not args.no_cleanup)
            if args.runtime == "openvino":
                q = quantize_openvino_int8(fp32_path, args.out, args.calibration, count=count, preset=args.preset,
                                           target_isa=args.target_isa, threads=args.threads,
                                           verify=not args.no_verify, resize=args.calibration_resize)
            else:
                q = quantize_onnx_int8(fp32_path, args.out, args.calibration, count=count, threads=args.threads,
                                       verify=not args.no_verify, resize=args.calibration_resize,
                                       reduce_range=args.reduce_range)
        if args.json:
            print(json.dumps({"fp32": r.to_dict(), "int8": q.to_dict()}))
            return 0
        _print_fp32(r, args, "fp32 export (temporary)")
        extra = (f"; {q.recipe['weights']} weights for {q.recipe['target_isa']} (overflow_fix "
                 f"{q.recipe['overflow_fix']})" if q.runtime == "openvino" else "")
        print(f"int8 ({q.runtime}) -> {q.path} ({q.size_bytes / 2**20:.1f} MiB, from {q.fp32_size_bytes / 2**20:.1f} "
              f"MiB fp32), calibrated on {q.calibration_images} images in {q.seconds:.1f} s; float nodes: "
              f"{', '.join(q.float_nodes) or 'none'}{extra}")
        if q.max_abs_diff is not None:
            print(f"int8 vs fp32 disparity on {q.checked_images} calibration images: max {q.max_abs_diff:.2e}, "
                  f"mean {q.mean_abs_diff:.2e} (mean relative {100 * q.mean_rel_diff:.2f} %)")
        return 0
    r = export_onnx(source, args.out, height=args.height, width=args.width, dynamic=args.dynamic,
                    all_scales=args.all_scales, opset=args.opset, verify=not args.no_verify, atol=args.atol,
                    batch=args.batch, cleanup=not args.no_cleanup)
    if args.json:
        print(json.dumps(r.to_dict()))
        return 0
    _print_fp32(r, args)
    return 0


def _print_fp32(r, args, where: str | None = None) -> None:
    shape = "B x 3 x H x W (dynamic)" if r.dynamic else f"{args.batch} x 3 x {r.height} x {r.width}"
    print(f"{r.model} -> {where or r.path} ({r.size_bytes / 2**20:.1f} MiB, opset {r.opset}, input {shape}, "
          f"outputs {', '.join(r.outputs)}) in {r.seconds:.1f} s")
    if r.cleanup:
        print("graph clean-ups: " + ", ".join(f"{k} {v}" for k, v in sorted(r.cleanup.items())))
    if r.max_abs_diff is not None:
        checks = ", ".join(f"{k}: {v:.2e}" for k, v in r.checked.items())
        print(f"verified with onnxruntime: max |onnxruntime - torch| of the disparity = {r.max_abs_diff:.2e} "
              f"({checks})")
