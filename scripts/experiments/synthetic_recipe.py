#!/usr/bin/env python
"""The synthetic-drive experiment: train self-supervised on synthetic drives, evaluate on a held-out
drive every K steps (depth: AbsRel/a1 with median scaling against its exact depth; pose: the predicted per-frame
translation against poses.txt), and record the curves against process CPU time.

    python scripts/experiments/synthetic_recipe.py --config config/train/train_synthetic.yaml --out runs/recipe \
        --max-cpu-minutes 60 --eval-every 100 [KEY=VALUE overrides of the config ...]

Writes ``OUT/curves.csv`` (one row per evaluation), ``OUT/curves.png``, ``OUT/result.json`` (the last and the
best evaluation) and the run's checkpoint (``OUT/checkpoints``). Drives are rendered under ``--data`` when
missing: training drives ``--train-seeds`` (``--train-frames`` each, drive numbers 1, 2, ...) and the held-out
drive ``--heldout-seed`` (drive 90). ``cpu_s`` counts the training only (evaluation excluded) and is
``time.process_time()`` of this process, so all its threads; run with ``num_workers=0`` so that data loading is
counted too (the default here).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np

# The repository root (this file is scripts/experiments/synthetic_recipe.py): the default recipe lives there.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

COLUMNS = ["step", "epoch", "cpu_s", "wall_s", "loss", "translation_norm", "automask_fraction", "abs_rel", "a1",
           "pearson_speed", "cos_mean", "scale", "spread_ratio", "mean_tz", "eval_s"]


def render_drives(data: str, train_seeds, train_frames: int, heldout_seed: int, heldout_frames: int,
                  width: int, height: int, workers: int = 1):
    """Render what is missing; returns (training split lines, held-out split lines)."""
    from dna_depth_core.data.kitti import read_split_file
    from dna_depth_core.data.synthetic import DEFAULT_DATE, render_drive

    def drive(seed, frames, number):
        split = os.path.join(data, "splits", f"{DEFAULT_DATE}_drive_{number:04d}_sync.txt")
        meta = os.path.join(data, DEFAULT_DATE, f"{DEFAULT_DATE}_drive_{number:04d}_sync", "synthetic.json")
        ok = False
        if os.path.isfile(split) and os.path.isfile(meta):
            m = json.load(open(meta))
            ok = (m["seed"], m["frames"], m["width"], m["height"]) == (seed, frames, width, height)
        if not ok:
            render_drive(data, frames, seed=seed, width=width, height=height, drive=number, workers=workers,
                         progress=False)
        return read_split_file(split)

    train = []
    for k, seed in enumerate(train_seeds):
        train += drive(seed, train_frames, k + 1)
    heldout = drive(heldout_seed, heldout_frames, 90)
    return train, heldout


COLOURS = [(200, 60, 0), (0, 0, 220), (0, 150, 0), (160, 0, 160), (0, 140, 200), (90, 90, 90)]  # BGR


def plot_curves(rows, path: str, title: str = "") -> None:
    """Three panels against training CPU-minutes: AbsRel, a1, pearson_speed (cv2 drawing, no matplotlib).
    ``rows``: one run's evaluation rows, or ``{name: rows}`` for several runs (one colour each, legend)."""
    import cv2

    series = rows if isinstance(rows, dict) else {"": rows}
    panels = [("abs_rel", "AbsRel (held-out)", 0.0, 0.5, 0.12), ("a1", "a1 (held-out)", 0.0, 1.0, 0.86),
              ("pearson_speed", "corr(|t_pred|, |t_true|)", -1.0, 1.0, 0.9)]
    pw, ph, ml, mb, mt = 330, 230, 48, 30, 26
    legend_h = 16 * max(len(series), 1) + 10
    img = np.full((ph + legend_h, pw * len(panels), 3), 255, np.uint8)
    all_x = [r["cpu_s"] / 60.0 for rs in series.values() for r in rs]
    xmax = max(max(all_x) if all_x else 1.0, 1e-3) * 1.05
    font = cv2.FONT_HERSHEY_SIMPLEX
    for p, (key, label, lo, hi, target) in enumerate(panels):
        x0, y0, w, h = p * pw + ml, mt, pw - ml - 10, ph - mt - mb

        def X(v):
            return int(round(x0 + w * v / xmax))

        def Y(v):
            return int(round(y0 + h * (1.0 - (min(max(v, lo), hi) - lo) / (hi - lo))))

        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), (0, 0, 0), 1)
        for t in np.linspace(lo, hi, 5):
            cv2.putText(img, f"{t:.2f}", (x0 - 44, Y(t) + 4), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
            cv2.line(img, (x0, Y(t)), (x0 + w, Y(t)), (225, 225, 225), 1)
        for t in np.linspace(0, xmax, 5):
            cv2.putText(img, f"{t:.0f}", (X(t) - 6, y0 + h + 14), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(img, (x0, Y(target)), (x0 + w, Y(target)), (0, 160, 0), 1, cv2.LINE_AA)
        for k, rs in enumerate(series.values()):
            colour = COLOURS[k % len(COLOURS)]
            pts = [(X(r["cpu_s"] / 60.0), Y(r[key])) for r in rs
                   if isinstance(r.get(key), float) and math.isfinite(r[key])]
            if len(pts) > 1:
                cv2.polylines(img, [np.array(pts, np.int32)], False, colour, 2, cv2.LINE_AA)
            for q in pts:
                cv2.circle(img, q, 2, colour, -1, cv2.LINE_AA)
        cv2.putText(img, label, (x0, y0 - 8), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, "training CPU-minutes (green: target)", (x0 + 20, y0 + h + 27), font, 0.35, (80, 80, 80),
                    1, cv2.LINE_AA)
    for k, name in enumerate(series):
        y = ph + 14 + 16 * k
        cv2.line(img, (10, y - 4), (30, y - 4), COLOURS[k % len(COLOURS)], 2, cv2.LINE_AA)
        cv2.putText(img, name or title, (36, y), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def read_curves(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=os.path.join(REPO, "config", "train", "train_synthetic.yaml"))
    ap.add_argument("--out", help="run folder (or, with --plot, the PNG to write)")
    ap.add_argument("--plot", nargs="+", metavar="NAME=RUN_DIR",
                    help="only plot the curves.csv of finished runs into one PNG (--out), no training")
    ap.add_argument("--data", default="data/synthetic", help="drive root (rendered when missing)")
    ap.add_argument("--train-seeds", default="0", help="comma-separated scene seeds of the training drives")
    ap.add_argument("--train-frames", type=int, default=400)
    ap.add_argument("--heldout-seed", type=int, default=1)
    ap.add_argument("--heldout-frames", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    ap.add_argument("--eval-stride", type=int, default=1,
                    help="evaluate every N-th held-out frame during training (all of them at the end)")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--max-cpu-minutes", type=float, default=60.0, help="stop after this much training CPU time")
    ap.add_argument("--max-wall-minutes", type=float, default=None, help="stop after this much training wall time")
    ap.add_argument("--render-workers", type=int, default=1)
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides")
    args = ap.parse_args(argv)
    if args.plot:
        runs = dict(item.split("=", 1) if "=" in item else (os.path.basename(item.rstrip("/")), item)
                    for item in args.plot)
        plot_curves({name: read_curves(os.path.join(d, "curves.csv")) for name, d in runs.items()}, args.out)
        return 0
    if not args.out:
        ap.error("--out is required")

    import torch

    from dna_depth_core.evaluation import evaluate_model, evaluate_pose, export_gt, load_gt
    from dna_depth_core.training import load_config
    from dna_depth_core.training.trainer import Trainer

    os.makedirs(args.out, exist_ok=True)
    base = load_config(args.config, [f"data_path={args.data}", f"out_dir={args.out}", "num_workers=0",
                                     "progress=false", "tensorboard=false", "validate=false"] + args.overrides)
    seeds = [int(s) for s in args.train_seeds.split(",") if s.strip()]
    train_lines, heldout = render_drives(args.data, seeds, args.train_frames, args.heldout_seed,
                                         args.heldout_frames, base.width, base.height, args.render_workers)
    split_path = os.path.join(args.out, "train_split.txt")
    with open(split_path, "w") as f:
        f.write("".join(ln + "\n" for ln in train_lines))
    cfg = base.replace(split=os.path.abspath(split_path), data_path=os.path.abspath(args.data))
    gt_path = os.path.join(args.out, "heldout_gt.npz")
    export_gt(args.data, heldout, gt_path, progress=False)
    gt = load_gt(gt_path)
    cmd = " ".join([os.path.relpath(sys.argv[0], REPO) if sys.argv else "scripts/experiments/synthetic_recipe.py"] +
                   (sys.argv[1:] if argv is None else list(argv)))
    with open(os.path.join(args.out, "command.txt"), "w") as f:
        f.write(cmd + "\n")

    tr = Trainer(cfg)
    print(f"threads {torch.get_num_threads()}, {len(train_lines)} training samples, {tr.steps_per_epoch} steps/epoch",
          flush=True)

    def evaluate(final: bool = False) -> dict:
        k = 1 if final else max(args.eval_stride, 1)
        d = evaluate_model(tr.depth_net, args.data, heldout[::k], gt[::k], scaling="median", progress=False)
        tr.depth_net.train()
        p = evaluate_pose(tr.pose_net, args.data, heldout[::k], cfg.height, cfg.width, return_arrays=True) \
            if tr.pose_net is not None else {}
        res = {"abs_rel": d["abs_rel"], "a1": d["a1"]}
        if p:
            res.update(pearson_speed=p["pearson_speed"], cos_mean=p["cos_mean"], scale=p["scale"],
                       spread_ratio=p["spread_ratio"],
                       mean_tz=float(np.mean(p["t_pred"][:, 2])))
            res["_arrays"] = (p["t_pred"], p["t_true"])
        return res

    csv_path = os.path.join(args.out, "curves.csv")
    rows: list[dict] = []
    with open(csv_path, "w", newline="") as f:
        csv.writer(f).writerow(COLUMNS)

    def record(step, epoch, cpu_s, wall_s, acc, n, final=False):
        t0 = time.process_time()
        w0 = time.perf_counter()
        ev = evaluate(final)
        arrays = ev.pop("_arrays", None)
        row = {"step": step, "epoch": epoch, "cpu_s": cpu_s, "wall_s": wall_s,
               **{k: v / max(n, 1) for k, v in acc.items()}, **ev, "eval_s": time.perf_counter() - w0}
        rows.append(row)
        with open(csv_path, "a", newline="") as f:
            csv.writer(f).writerow([("%.6g" % row[c]) if isinstance(row.get(c), float) else row.get(c, "")
                                    for c in COLUMNS])
        print(" ".join(f"{c}={row[c]:.4g}" if isinstance(row.get(c), float) else f"{c}={row.get(c, '')}"
                       for c in COLUMNS), flush=True)
        if arrays is not None:
            np.savez(os.path.join(args.out, "pose_last.npz"), t_pred=arrays[0], t_true=arrays[1])
        return time.process_time() - t0, time.perf_counter() - w0

    record(0, 0, 0.0, 0.0, {}, 0)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    excl_cpu, excl_wall = 0.0, 0.0
    acc: dict[str, float] = {}
    n = 0
    step = 0
    limit_steps = args.max_steps if args.max_steps is not None else cfg.max_steps
    done = False
    while not done:
        tr.schedule.set_epoch(tr.epoch)
        for batch in tr.loader(tr.epoch, 0):
            out = tr.train_step(batch)
            step += 1
            tr.step = step
            if not out["skipped"]:
                for k in ("loss", "translation_norm", "automask_fraction"):
                    if k in out:
                        v = out[k]
                        acc[k] = acc.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                n += 1
            cpu_s = time.process_time() - cpu0 - excl_cpu
            wall_s = time.perf_counter() - wall0 - excl_wall
            stop = ((limit_steps is not None and step >= limit_steps) or cpu_s >= args.max_cpu_minutes * 60
                    or (args.max_wall_minutes is not None and wall_s >= args.max_wall_minutes * 60))
            if step % args.eval_every == 0 or stop:
                c, w = record(step, tr.epoch, cpu_s, wall_s, acc, n, final=stop)
                excl_cpu += c
                excl_wall += w
                acc, n = {}, 0
                plot_curves(rows, os.path.join(args.out, "curves.png"), title=os.path.basename(args.out.rstrip("/")))
            if stop:
                done = True
                break
        if not done:
            tr.epoch += 1
    tr.step_in_epoch = 0
    tr.save()
    best = min(rows, key=lambda r: r["abs_rel"])
    result = {"command": cmd, "config": cfg.to_dict(), "threads": torch.get_num_threads(), "last": rows[-1],
              "best_abs_rel": best,
              "target_reached_last": bool(rows[-1]["abs_rel"] <= 0.12 and rows[-1]["a1"] >= 0.86
                                          and rows[-1].get("pearson_speed", 0) >= 0.9
                                          and rows[-1].get("spread_ratio", 0) >= 0.5)}
    with open(os.path.join(args.out, "result.json"), "w") as f:
        json.dump(result, f, indent=1, default=float)
    print(json.dumps({k: result[k] for k in ("last", "target_reached_last")}, default=float), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
