#!/usr/bin/env python
"""One short self-supervised training run with AMP on CUDA (part of benchmarks/gpu.sh): renders a small synthetic
drive, trains the library's trainer (`dna_depth_core.training.train`, the synthetic recipe of
config/train/train_synthetic.yaml) for ``--steps`` steps with fp16 autocast + GradScaler, and writes the steps per
second, the losses and the peak GPU memory as JSON.

    python benchmarks/gpu_train.py --out-dir OUT                     # CUDA, AMP (dna_b0 96x320, batch 8, 30 steps)
    python benchmarks/gpu_train.py --out-dir /tmp/x --device cpu --smoke   # code-path check without a GPU

No pretrained weights are needed (encoder and pose network start from random weights: the GPU machine may not have
the offline ImageNet weights); the numbers are speed and "the loss is finite and goes down", not accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from dna_depth_core import machine
from dna_depth_core.data.synthetic import render_drive
from dna_depth_core.io.atomic import write_text
from dna_depth_core.training import load_config, train

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="dna_b0")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--frames", type=int, default=40, help="frames of the synthetic drive to render")
    p.add_argument("--smoke", action="store_true", help="tiny: dna_lite0 64x96, 8 frames, 2 steps, batch 2")
    args = p.parse_args(argv)
    if args.smoke:
        args.model, args.height, args.width, args.batch, args.steps, args.frames = "dna_lite0", 64, 96, 2, 2, 8
    device = torch.device(args.device)
    out_path = os.path.join(args.out_dir, "train.json")
    os.makedirs(args.out_dir, exist_ok=True)
    if device.type == "cuda" and not torch.cuda.is_available():
        write_text(out_path, json.dumps({"note": "skipped: CUDA is not available"}))
        return 2
    t0 = time.perf_counter()
    data = os.path.join(args.out_dir, "train_data")
    render_drive(data, args.frames, seed=3, width=args.width, height=args.height, drive=1, progress=False,
                 workers=max(1, min(8, machine.usable_cpus())))
    render_s = time.perf_counter() - t0
    overrides = [f"model={args.model}", "pretrained=null", "pose_model=small", "pose_pretrained=null",
                 f"height={args.height}", f"width={args.width}", f"data_path={data}",
                 "split=splits/2000_01_01_drive_0001_sync.txt", "val_split=null", "validate=false",
                 f"batch_size={args.batch}", f"max_steps={args.steps}", "num_epochs=1000", "lr_decay_epochs=[]",
                 f"device={args.device}", f"amp={str(device.type == 'cuda').lower()}", "num_workers=2",
                 "tensorboard=false", "progress=false", "log_every=1", "save_every_epochs=0", "save_every_steps=0",
                 "pose_warmup_steps=0", f"out_dir={os.path.join(args.out_dir, 'train_run')}"]
    cfg = load_config(str(REPO / "config" / "train" / "train_synthetic.yaml"), overrides)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t1 = time.perf_counter()
    summary = train(cfg)
    train_s = time.perf_counter() - t1
    result = {
        "command": f"train {args.model} {args.width}x{args.height} batch {args.batch}, {args.steps} steps",
        "device": str(device), "amp": bool(cfg.amp and device.type == "cuda"), "steps": summary["step"],
        "batch_size": args.batch, "render_s": render_s, "train_s": train_s,
        "steps_per_s": summary["step"] / train_s if train_s > 0 else None,
        "first_losses": summary.get("first_losses"), "last_loss": summary.get("last_loss"),
        "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "versions": machine.library_versions(("torch", "timm", "numpy")),
    }
    write_text(out_path, json.dumps(result, indent=1, default=str))
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
