#!/usr/bin/env python3
"""The demo's start checkpoint: DNA-Depth Lite0 and its Lite0 pose network trained self-supervised on synthetic
drives of other streets than the demo bag's, packed into a file of under 10 MB (docs/training.md, "The demo's start
checkpoint"). `make demo` fine-tunes it on the demo bag (scripts/demo/demo_bag.py --start).

The demo bag is street/trajectory seed 0 (its last 30 frames are the demo's held-out frames); this checkpoint is
trained on seeds 3, 4, 5, 6 (300 frames each, 320x96) and scored on seed 1 (100 frames), so it never sees the
demo's street.

    # 1. render the drives and train (config/train/train_synthetic.yaml, CPU, one thread: ~4 CPU-s a step)
    python scripts/demo/make_start_checkpoint.py train --out runs/start_checkpoint
    # 2. score step 500 on the held-out drive, pack it (int8 weights for the encoders, fp16 for the rest) and write
    #    the provenance (metadata of the file and a JSON sidecar: command, git commit, seeds, steps, sha256)
    python scripts/demo/make_start_checkpoint.py pack runs/start_checkpoint/checkpoints/step_00000500 \\
        --out runs/start_checkpoint/start_lite0_synth.safetensors

KEY=VALUE arguments of `train` override the recipe's options (e.g. cpu_threads=2). The packed file is an ordinary
dna-depth checkpoint (dna_depth_core.io.checkpoint reads the packing transparently): `init_from`, `dna-depth
predict --weights` and the node take it as it is.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # scripts/demo/this.py
CONFIG = os.path.join(REPO, "config", "train", "train_synthetic.yaml")
DEMO_SEED = 0                # the demo bag's street (scripts/demo/demo_bag.py): never trained on here
TRAIN_SEEDS = "3,4,5,6"
HELDOUT_SEED = 1
WIDTH, HEIGHT = 320, 96
CAMERA_HEIGHT = 1.65         # the synthetic rig's camera height above the road (data.synthetic.rig)
RECIPE = ["num_workers=0", "progress=false", "tensorboard=false", "validate=false", "val_split=null",
          "save_every_epochs=0", "save_every_steps=100", "keep_checkpoints=0", "cpu_threads=1", "max_steps=500"]


def git_commit() -> str:
    r = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def render(data: str, seed: int, frames: int, drive: int) -> list[str]:
    """Render drive ``drive`` of street ``seed`` under ``data`` (kept when already rendered with these
    settings); returns its split lines (frames with both neighbours)."""
    from dna_depth_core.data.kitti import read_split_file
    from dna_depth_core.data.synthetic import DEFAULT_DATE, render_drive

    if seed == DEMO_SEED:
        raise SystemExit(f"street seed {DEMO_SEED} is the demo bag's: the start checkpoint must not see it")
    name = f"{DEFAULT_DATE}_drive_{drive:04d}_sync"
    split = os.path.join(data, "splits", f"{name}.txt")
    meta = os.path.join(data, DEFAULT_DATE, name, "synthetic.json")
    if os.path.isfile(split) and os.path.isfile(meta):
        with open(meta) as f:
            m = json.load(f)
        if (m["seed"], m["frames"], m["width"], m["height"]) == (seed, frames, WIDTH, HEIGHT):
            return read_split_file(split)
    render_drive(data, frames, seed=seed, width=WIDTH, height=HEIGHT, drive=drive, progress=False)
    return read_split_file(split)


def heldout_lines(data: str, frames: int) -> list[str]:
    return render(data, HELDOUT_SEED, frames, 90)


def cmd_train(args) -> int:
    from dna_depth_core.training.config import load_config
    from dna_depth_core.training.trainer import train

    out = os.path.abspath(args.out)
    data = os.path.abspath(args.data or os.path.join(out, "data"))
    os.makedirs(out, exist_ok=True)
    seeds = [int(s) for s in args.train_seeds.split(",") if s.strip()]
    lines = []
    t0 = time.perf_counter()
    for seed in seeds:  # drive 100 + seed: one folder per street
        lines += render(data, seed, args.frames, 100 + seed)
    print(f"[start] rendered seeds {seeds} ({args.frames} frames each) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    split = os.path.join(out, "train_split.txt")
    with open(split, "w") as f:
        f.write("".join(ln + "\n" for ln in lines))
    cfg = load_config(args.config, RECIPE + [f"data_path={data}", f"split={split}", f"out_dir={out}"]
                      + list(args.overrides))
    record = {"command": " ".join(["python", os.path.relpath(os.path.abspath(sys.argv[0]), REPO)] + sys.argv[1:]),
              "git_commit": git_commit(), "config": os.path.relpath(args.config, REPO), "train_seeds": seeds,
              "frames_per_seed": args.frames, "size": f"{WIDTH}x{HEIGHT}", "overrides": RECIPE + list(args.overrides),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    with open(os.path.join(out, "start_recipe.json"), "w") as f:
        json.dump(record, f, indent=1)
    c0 = time.process_time()
    summary = train(cfg)
    cpu = time.process_time() - c0
    print(f"[start] {summary['step']} steps in {summary['seconds']:.0f} s wall, {cpu:.0f} CPU-s; checkpoint "
          f"{summary['checkpoint']}", flush=True)
    return 0


def heldout_rows(weights: str, data: str, frames: int) -> dict:
    """The demo's two rows on the held-out drive (seed 1): mean AbsRel / a1 median-scaled and metric through the
    node's ground-plane scale (DepthEstimator scale_mode camera_height, 1.65 m), frames in time order."""
    import numpy as np

    from dna_depth_core.data.kitti import image_path, load_image, parse_split_line
    from dna_depth_core.data.synthetic import synthetic_intrinsics
    from dna_depth_core.evaluation import evaluate_depth
    from dna_depth_core.inference import DepthEstimator

    est = DepthEstimator(weights, device="cpu", scale_mode="camera_height", camera_height=CAMERA_HEIGHT)
    K = synthetic_intrinsics(WIDTH, HEIGHT)
    errs: dict[str, list] = {"median": [], "metric": []}
    for line in heldout_lines(data, frames)[::2]:
        e = parse_split_line(line)
        rgb = load_image(image_path(data, e.folder, e.frame_index, e.side))
        gt = np.load(os.path.join(data, e.folder, "depth", f"{e.frame_index:010d}.npy"))
        pred = np.nan_to_num(est.predict(rgb, K).depth, nan=0.0).astype(np.float32)
        pred[pred <= 0] = 1e-3
        errs["median"].append(evaluate_depth(gt, pred, scaling="median", crop=False)[0])
        errs["metric"].append(evaluate_depth(gt, pred, scaling="none", crop=False)[0])
    return {k: {m: round(float(np.mean([e[m] for e in es])), 4) for m in ("abs_rel", "a1")}
            for k, es in errs.items()} | {"frames": len(errs["median"]), "seed": HELDOUT_SEED}


def cmd_pack(args) -> int:
    from dna_depth_core.io.checkpoint import read_checkpoint, save_packed_checkpoint
    from dna_depth_core.training.state import resolve_checkpoint

    src = args.checkpoint
    if os.path.isdir(src):
        src = os.path.join(resolve_checkpoint(src), "model.safetensors")
    run = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(src))))  # OUT/checkpoints/step_X/file
    recipe_path = os.path.join(run, "start_recipe.json")
    recipe = {}
    if os.path.isfile(recipe_path):
        with open(recipe_path) as f:
            recipe = json.load(f)
    _, meta = read_checkpoint(src)
    trained = json.loads(meta.get("provenance", "{}"))
    data = os.path.abspath(args.data or os.path.join(run, "data"))
    provenance = {
        "source": "scripts/demo/make_start_checkpoint.py (synthetic drives only)",
        "train": recipe, "step": trained.get("step"), "epoch": trained.get("epoch"),
        "demo_seed_excluded": DEMO_SEED, "unpacked_sha256": sha256(src),
        **({"note": args.note} if args.note else {}),
        "packed_by": {"command": " ".join(["python", os.path.relpath(os.path.abspath(sys.argv[0]), REPO)]
                                          + sys.argv[1:]), "git_commit": git_commit()},
    }
    if args.heldout_frames:
        t0 = time.perf_counter()
        provenance["heldout"] = heldout_rows(src, data, args.heldout_frames)
        print(f"[start] held-out drive (seed {HELDOUT_SEED}): {provenance['heldout']} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    save_packed_checkpoint(src, args.out, provenance)
    if args.heldout_frames:  # the same rows through the packed file: what the demo starts from
        provenance["heldout_packed"] = heldout_rows(args.out, data, args.heldout_frames)
        print(f"[start] packed: {provenance['heldout_packed']}", flush=True)
    sidecar = {"file": os.path.basename(args.out), "bytes": os.path.getsize(args.out), "sha256": sha256(args.out),
               **provenance}
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(sidecar, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"[start] {args.out}: {sidecar['bytes'] / 1e6:.2f} MB, sha256 {sidecar['sha256']}", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="render the training drives and train (OUT/checkpoints/step_X every 100 steps)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--data", help="where the drives are rendered (default OUT/data)")
    t.add_argument("--config", default=CONFIG, help="training recipe (default: the synthetic recipe)")
    t.add_argument("--train-seeds", default=TRAIN_SEEDS, help="street seeds to train on (never 0, the demo's)")
    t.add_argument("--frames", type=int, default=300, help="frames per training drive")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override recipe options")
    p = sub.add_parser("pack", help="score, pack and write the provenance of a checkpoint of the run")
    p.add_argument("checkpoint", help="a checkpoint folder of the run (or its model.safetensors)")
    p.add_argument("--out", required=True, help="the packed .safetensors (a .json sidecar is written beside it)")
    p.add_argument("--data", help="where the held-out drive is rendered (default: the run's OUT/data)")
    p.add_argument("--note", default="", help="a remark for the provenance (e.g. how the run was made)")
    p.add_argument("--heldout-frames", type=int, default=100,
                   help=f"frames of the held-out drive (seed {HELDOUT_SEED}) to score, every 2nd (0: skip)")
    args = ap.parse_args(argv)
    return {"train": cmd_train, "pack": cmd_pack}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
