"""``dna-depth predict``: depth for image files."""
from __future__ import annotations

import sys

from dna_depth_core.backends import list_backends
from dna_depth_core.inference import DepthEstimator
from dna_depth_core.predict import find_images, predict_paths

NAME = "predict"
HELP = "predict depth for an image or a folder of images"
DESCRIPTION = """For each image: OUT/<name>_disp.png (colourised disparity, near = bright) and OUT/<name>_depth.npy
(float32 depth at the image's resolution). Self-supervised monocular depth is up to scale: multiply by --scale
(e.g. from calibration) for metres. Unreadable files are reported and skipped; the rest are processed.

example:
  dna-depth predict --weights dna_b0.safetensors --input frames/ --out predictions/"""


def add_arguments(p) -> None:
    p.add_argument("--weights", required=True, help="dna-depth checkpoint (.safetensors) or exported .onnx")
    p.add_argument("--input", required=True, help="an image file or a folder (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scale", type=float, default=1.0, help="multiply depths by this factor (default 1)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--backend", default="torch", choices=list_backends(),
                   help="inference backend (default torch; an .onnx file needs onnxruntime or auto)")


def run(args) -> int:
    estimator = DepthEstimator(args.weights, device=args.device, backend=args.backend, output="input")
    inputs = find_images(args.input)
    if not inputs:
        raise FileNotFoundError(f"no images found in {args.input}")
    report = predict_paths(estimator, inputs, args.out, scale=args.scale)
    print(f"{len(inputs) - len(report.failed)} of {len(inputs)} images -> {args.out}")
    for path, why in report.failed:
        print(f"failed: {why}", file=sys.stderr)
    return 1 if report.failed and len(report.failed) == len(inputs) else 0
