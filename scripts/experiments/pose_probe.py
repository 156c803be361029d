#!/usr/bin/env python
"""Pose-network probe for the synthetic recipe (docs/synthetic_recipe.md): can a pose network learn the motion from
the photometric loss when the depth is exact?

Two diagnostics on rendered synthetic drives (``scripts/experiments/synthetic_recipe.py`` renders them under
``--data``):

- ``--landscape``: the self-supervised loss (auto-mask + min reprojection over frames -1/+1) with the drive's exact
  depth and its true poses, the translations multiplied by s = 0.5..2. A minimum at s = 1 with a wide basin says
  the loss can drive the pose network to the true speed.
- training (default): only the pose network trains, on the training drive's frames with their exact depth (no
  depth network); every ``--eval-every`` steps the correlation of its predicted per-frame speed with the true one on
  the held-out drive (and on the training drive's first 100 frames) is printed.

    python scripts/experiments/pose_probe.py --data runs/synthetic_data --landscape
    python scripts/experiments/pose_probe.py --data runs/synthetic_data --pose lite0 --lr 3e-4 --steps 200
    python scripts/experiments/pose_probe.py --data runs/synthetic_data --pose small --norm batch --lr 3e-4 --steps 800
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np



def load_drive(folder: str):
    """(K (3, 3), T_world_cam (N, 4, 4), images (N, 3, H, W) in [0, 1], depth (N, 1, H, W); sky -> 100 m)."""
    import torch

    from dna_depth_core.data.kitti import load_image
    from dna_depth_core.data.poses import read_drive_poses

    meta = json.load(open(os.path.join(folder, "synthetic.json")))
    K = torch.tensor(meta["K"], dtype=torch.float32)
    P = read_drive_poses(os.path.dirname(folder), os.path.basename(folder))
    images, depths = [], []
    for i in range(len(P)):
        rgb = load_image(os.path.join(folder, "image_02", "data", f"{i:010d}.png"))
        images.append(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255)
        d = np.load(os.path.join(folder, "depth", f"{i:010d}.npy"))
        depths.append(torch.from_numpy(np.where(d > 0, np.minimum(d, 100.0), 100.0).astype(np.float32))[None])
    return K, P, torch.stack(images), torch.stack(depths)


def relative(P, i, j):
    """T_source_target for target frame i and source frame j: inv(T_world_cam[j]) @ T_world_cam[i]."""
    return np.linalg.inv(P[j]) @ P[i]


def landscape(drive, scales=(0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5, 2.0)) -> None:
    import torch

    from dna_depth_core.geometry import depth_to_disp
    from dna_depth_core.losses import SelfSupervisedLoss

    K, P, images, depths = drive
    loss_fn = SelfSupervisedLoss(automask=True)
    print("s = t / t_true   loss (mean over frames 5, 15, ..)")
    for s in scales:
        vals = []
        for i in range(5, len(P) - 1, 10):
            poses = {}
            for f in (-1, 1):
                T = torch.from_numpy(relative(P, i, i + f)).float()[None]
                T[:, :3, 3] *= s
                poses[f] = T
            out = loss_fn(images[i:i + 1], {-1: images[i - 1:i], 1: images[i + 1:i + 2]},
                          [depth_to_disp(depths[i:i + 1], 0.1, 100.0)], poses, K[None])
            vals.append(out["loss"].item())
        print(f"{s:5.2f}            {np.mean(vals):.4f}")


def build_pose(kind: str, norm: str):
    import torch.nn as nn

    from dna_depth_core.models.pose import build_pose_model

    net = build_pose_model(kind, "imagenet" if kind == "lite0" else None, 1.0)
    if kind == "small" and norm != "none":
        layers = []
        for m in net.encoder:
            layers.append(m)
            if isinstance(m, nn.Conv2d):
                layers.append(nn.BatchNorm2d(m.out_channels) if norm == "batch" else nn.GroupNorm(8, m.out_channels))
        net.encoder = nn.Sequential(*layers)
    net.scale_output_weights(0.1)
    net.set_output_scales(1.0, 0.01)
    net.set_translation_bias([0.0, 0.0, -1.0])
    return net


def speed_correlation(net, images, P) -> tuple[float, float]:
    """(Pearson correlation, relative spread ratio) of predicted vs true per-frame speed over pairs (i, i+1)
    (:func:`dna_depth_core.evaluation.pose_metrics`)."""
    import torch

    from dna_depth_core.evaluation import pose_metrics

    net.eval()
    ts = []
    with torch.no_grad():
        for a in range(0, len(images) - 1, 16):
            b = min(a + 16, len(images) - 1)
            ts.append(net(images[a:b], images[a + 1:b + 1])[1])
    net.train()
    true = np.stack([relative(P, i, i + 1)[:3, 3] for i in range(len(images) - 1)])
    m = pose_metrics(torch.cat(ts).numpy(), true)
    return m["pearson_speed"], m["spread_ratio"]


def train(args, drive, heldout) -> None:
    import torch

    from dna_depth_core.geometry import depth_to_disp, pose_vec_to_mat
    from dna_depth_core.losses import SelfSupervisedLoss

    torch.manual_seed(args.seed)
    K, P, images, depths = drive
    _, Ph, Ih, _ = heldout
    net = build_pose(args.pose, args.norm)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    loss_fn = SelfSupervisedLoss(automask=True)
    rng = np.random.default_rng(args.seed)
    b = args.batch
    t0 = time.process_time()

    def report(step, loss):
        corr, spread = speed_correlation(net, Ih, Ph)
        train_corr, _ = speed_correlation(net, images[:100], P[:100])
        print(f"step {step:4d}  cpu {time.process_time() - t0:6.0f} s  loss {loss:.4f}  held-out corr {corr:+.3f} "
              f"spread {spread:.3f}  training-drive corr {train_corr:+.3f}", flush=True)

    report(0, float("nan"))
    for step in range(1, args.steps + 1):
        idx = rng.integers(1, len(images) - 1, b)
        tgt, prev, nxt = images[idx], images[idx - 1], images[idx + 1]
        aa, t = net(torch.cat([prev, tgt]), torch.cat([tgt, nxt]))
        poses = {-1: pose_vec_to_mat(aa[:b], t[:b], invert=True), 1: pose_vec_to_mat(aa[b:], t[b:])}
        out = loss_fn(tgt, {-1: prev, 1: nxt}, [depth_to_disp(depths[idx], 0.1, 100.0)], poses,
                      K[None].expand(b, 3, 3))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        if step % args.eval_every == 0:
            report(step, out["loss"].item())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synthetic",
                    help="drive root rendered by scripts/experiments/synthetic_recipe.py")
    ap.add_argument("--train-drive", default="2000_01_01/2000_01_01_drive_0001_sync")
    ap.add_argument("--heldout-drive", default="2000_01_01/2000_01_01_drive_0090_sync")
    ap.add_argument("--landscape", action="store_true", help="print the loss against the translation scale and exit")
    ap.add_argument("--pose", choices=("small", "lite0"), default="lite0")
    ap.add_argument("--norm", choices=("none", "batch", "group"), default="none", help="normalisation (small only)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    for d in (args.train_drive, args.heldout_drive):
        if not os.path.isfile(os.path.join(args.data, d, "synthetic.json")):
            ap.error(f"{os.path.join(args.data, d)} is not a rendered synthetic drive (render it with "
                     "scripts/experiments/synthetic_recipe.py --data ... or dna-depth synth)")
    heldout = load_drive(os.path.join(args.data, args.heldout_drive))
    if args.landscape:
        landscape(heldout)
        return 0
    train(args, load_drive(os.path.join(args.data, args.train_drive)), heldout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
