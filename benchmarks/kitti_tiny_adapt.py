"""Test-time adaptation on the 7 real KITTI frames of kitti_tiny.

Trains dna_lite0 self-supervised (monocular, frames 0/-1/+1, no labels) on the frames of
``kitti_tiny/2011_09_26/2011_09_26_drive_0023_sync`` that have both neighbours (1..5), and reports AbsRel and a1
against the projected LiDAR (``proj_depth/velodyne/image_02/*.npz``, key ``velodyne_depth``) before and after,
with median scaling, the Eigen crop and the 80 m cap (``dna_depth_core.evaluation``). Evaluated on all 7 frames
(0..6) and, separately, on the 5 training targets (1..5).

Everything is the library: ``dna_depth_core.training`` trains (the recipe of config/train/train_synthetic.yaml
with KITTI calibration), ``dna_depth_core.evaluation`` exports the ground truth and evaluates. The wall-clock cap
(``--max-minutes``) is applied by training in chunks of ``--chunk`` steps with the trainer's exact resume, so the
result equals one uninterrupted run of the same number of steps.

    . scripts/dev/env.sh
    python benchmarks/kitti_tiny_adapt.py --out runs/kitti_tiny_adapt --max-minutes 10 --max-steps 300

Writes the split files, ground truth, training run and checkpoints under ``--out`` (outside git), and the report
to ``benchmarks/results/kitti_tiny_adapt.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

from dna_depth_core import machine
from dna_depth_core.evaluation import evaluate_model, export_gt
from dna_depth_core.io.checkpoint import load_checkpoint
from dna_depth_core.training import load_config, train
from dna_depth_core.training.networks import build_depth_net

REPO = Path(__file__).resolve().parents[1]
DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
DEFAULT_DATA = str(REPO.parent / "shared" / "data" / "kitti_tiny")


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def _metrics(res: dict) -> dict:
    keys = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "frames", "ratio_median", "ratio_std")
    out = {k: res[k] for k in keys if k in res}
    out["per_frame_abs_rel"] = [f["abs_rel"] for f in res["per_frame"]]
    out["per_frame_a1"] = [f["a1"] for f in res["per_frame"]]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="kitti_tiny root (data_path)")
    ap.add_argument("--out", default="runs/kitti_tiny_adapt", help="run folder (splits, gt, checkpoints)")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "kitti_tiny_adapt.json"))
    ap.add_argument("--max-minutes", type=float, default=10.0, help="wall-clock cap on training")
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--chunk", type=int, default=20, help="steps between time checks (exact resume between)")
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (cpu_threads)")
    ap.add_argument("overrides", nargs="*", help="extra TrainConfig KEY=VALUE overrides")
    args = ap.parse_args(argv)

    t_all, cpu_all = time.perf_counter(), _cpu_seconds()
    machine_start = machine.describe()  # the load average at the start, library versions
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = str(Path(args.data).resolve())
    drive_dir = Path(data) / DRIVE
    n_frames = len(list((drive_dir / "image_02" / "data").glob("*.png")))
    all_lines = [f"{DRIVE} {i} l" for i in range(n_frames)]
    train_lines = all_lines[1:-1]                      # targets need both neighbours
    (out / "train.txt").write_text("\n".join(train_lines) + "\n")
    (out / "eval_all.txt").write_text("\n".join(all_lines) + "\n")

    gt_all = export_gt(data, all_lines, out / "gt_depths.npz", progress=False)
    gt_train = gt_all[1:-1]
    lidar_points = [int((g > 0).sum()) for g in gt_all]

    settings = dict(
        model="dna_lite0", pretrained="imagenet", height=args.height, width=args.width,
        data_path=data, split=str(out / "train.txt"), val_split=None, validate=False,
        use_calib=True, augment=True, batch_size=4, learning_rate=2e-4, num_epochs=100000,
        lr_decay_epochs=[], num_workers=0, cpu_threads=args.threads, device="cpu", amp=False,
        save_every_epochs=0, save_every_steps=0, keep_checkpoints=1, log_every=10, image_every=0,
        tensorboard=False, progress=False, seed=0, out_dir=str(out / "train"),
    )
    # config/train/train_synthetic.yaml holds the anti-collapse init (depth_head_bias -5, pose small, t_z prior -1 m,
    # pose_output_scale 1, pose_head_weight_scale 0.1, pose_lr_scale 5); the settings above replace the data,
    # size, schedule and bookkeeping.
    def cfg_for(max_steps):
        ov = [f"{k}={json.dumps(v) if isinstance(v, list) else ('null' if v is None else v)}"
              for k, v in settings.items()]
        return load_config(str(REPO / "config" / "train" / "train_synthetic.yaml"),
                           ov + [f"max_steps={max_steps}"] + list(args.overrides))

    cfg0 = cfg_for(args.max_steps)
    torch.set_num_threads(args.threads)

    # -- before: the initialised network (ImageNet encoder, decoder at seed 0, head bias -5) -----------------
    torch.manual_seed(cfg0.seed)
    net0 = build_depth_net(cfg0)
    before_all = evaluate_model(net0, data, all_lines, gt_all, scaling="median", progress=False)
    before_train = evaluate_model(net0, data, train_lines, gt_train, scaling="median", progress=False)
    del net0

    # -- train in chunks under the wall-clock cap -----------------------------------------------------------
    t0, c0 = time.perf_counter(), _cpu_seconds()
    deadline = t0 + args.max_minutes * 60.0
    step, summaries, resume, chunk_times = 0, [], None, []
    while step < args.max_steps:
        target = min(step + args.chunk, args.max_steps)
        tc = time.perf_counter()
        s = train(cfg_for(target), resume=resume)
        chunk_times.append((s["step"] - step, time.perf_counter() - tc))
        summaries.append(s)
        step, resume = s["step"], str(out / "train")
        elapsed = time.perf_counter() - t0
        per_step = max(dt / max(n, 1) for n, dt in chunk_times[-2:])
        print(f"[adapt] step {step}  loss {s['last_loss']:.4f}  {elapsed / 60:.1f} min", flush=True)
        if elapsed + per_step * min(args.chunk, args.max_steps - step) > deadline - t0:
            break
    train_wall, train_cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    ckpt = summaries[-1]["checkpoint"]
    model_file = os.path.join(ckpt, "model.safetensors")

    # -- after ----------------------------------------------------------------------------------------------
    net1 = load_checkpoint(model_file, expected_model="dna_lite0")
    after_all = evaluate_model(net1, data, all_lines, gt_all, scaling="median", progress=False)
    after_train = evaluate_model(net1, data, train_lines, gt_train, scaling="median", progress=False)

    total_wall, total_cpu = time.perf_counter() - t_all, _cpu_seconds() - cpu_all
    report = {
        "benchmark": "kitti_tiny_adapt",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "machine": {**{k: v for k, v in machine_start.items() if k != "versions"},
                    "loadavg_end": machine.load_average()},
        "versions": machine_start["versions"],
        "data": {"data_path": data, "drive": DRIVE, "frames": n_frames, "train_targets": train_lines,
                 "eval_frames": all_lines, "gt": "proj_depth/velodyne/image_02/*.npz (velodyne_depth)",
                 "gt_valid_pixels": lidar_points, "gt_shape": list(gt_all[0].shape)},
        "settings": {**{k: v for k, v in cfg0.__dict__.items() if k not in ("bags",)},
                     "max_steps_requested": args.max_steps, "max_minutes": args.max_minutes,
                     "chunk": args.chunk, "evaluation": "median scaling, Eigen crop, depth capped to [1e-3, 80] m"},
        "training": {"steps": step, "first_losses": summaries[0]["first_losses"],
                     "last_loss": summaries[-1]["last_loss"], "wall_s": train_wall, "cpu_s": train_cpu,
                     "s_per_step": train_wall / max(step, 1), "checkpoint": model_file,
                     "stopped_by": "max_steps" if step >= args.max_steps else "max_minutes"},
        "before": {"all_7": _metrics(before_all), "train_5": _metrics(before_train)},
        "after": {"all_7": _metrics(after_all), "train_5": _metrics(after_train)},
        "total_wall_s": total_wall, "total_cpu_s": total_cpu,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")

    print()
    print("| frames | AbsRel before | AbsRel after | a1 before | a1 after | steps | CPU-min (train) | wall (train) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, b, a in (("all 7 (0..6)", before_all, after_all), ("train 5 (1..5)", before_train, after_train)):
        print(f"| {name} | {b['abs_rel']:.3f} | {a['abs_rel']:.3f} | {b['a1']:.3f} | {a['a1']:.3f} | {step} | "
              f"{train_cpu / 60:.1f} | {train_wall / 60:.1f} min |")
    print(f"\nscale ratio (median gt/pred) before {before_all['ratio_median']:.2f} +- {before_all['ratio_std']:.2f}, "
          f"after {after_all['ratio_median']:.2f} +- {after_all['ratio_std']:.2f}; total {total_wall / 60:.1f} min "
          f"wall, {total_cpu / 60:.1f} CPU-min; report {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
