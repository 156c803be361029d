"""``dna-depth convert-official``: the authors' released weights -> one dna-depth safetensors checkpoint."""
from __future__ import annotations

from dna_depth_core.io.official import convert_official

NAME = "convert-official"
HELP = "convert the authors' released KITTI weights (encoder.pth, depth.pth[, pose*.pth]) to our checkpoint"
DESCRIPTION = """Convert a folder of the authors' released DNA-Depth weights (monodepth2-style: encoder.pth and
depth.pth, plus pose_encoder.pth and pose.pth when present) into one dna-depth .safetensors checkpoint.
The .pth files are read with torch.load(weights_only=True): tensors only, never code.
The authors feed [0, 1] images without normalisation, and the checkpoint records that.

example:
  dna-depth convert-official weights/DNA-B0_640x192 --model dna_b0 --out dna_b0_kitti.safetensors"""


def add_arguments(p) -> None:
    p.add_argument("src_dir", help="folder with encoder.pth and depth.pth (and optionally pose_encoder.pth, pose.pth)")
    p.add_argument("--model", required=True, choices=["dna_b0", "dna_b1"], help="which network the weights are for")
    p.add_argument("--out", required=True, help="output checkpoint, FILE.safetensors")


def run(args) -> int:
    if not args.out.endswith(".safetensors"):
        raise ValueError(f"--out: expected a .safetensors file name, got {args.out}")
    net = convert_official(args.src_dir, args.model, args.out)
    c = net.config
    print(f"wrote {args.out}: {c.name}, input {c.width}x{c.height}, normalisation '{c.normalization}'")
    return 0
