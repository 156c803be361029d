#!/usr/bin/env python3
"""End-to-end bag demo (`make demo`): synthesise a bag, fine-tune the committed start checkpoint on it, replay its
held-out frames through the depth node in a real rclpy graph, and show and score the result.

    python scripts/demo/demo_bag.py --out runs/demo_bag                          # the synthetic demo
    python scripts/demo/demo_bag.py --out runs/demo_bag --steps 2 --frames 24 --replay 3   # a quick smoke run
    python scripts/demo/demo_bag.py --bag MY_BAG --image-topic /cam/image_raw --camera-info-topic /cam/camera_info
    python scripts/demo/demo_bag.py --bag MY_BAG --weights model.safetensors ...  # no training: replay only

1. the bag: a synthetic street drive (street seed 0, 300 frames, 320x96, exact depth and a LiDAR), or --bag;
2. the fine-tune: `dna-depth train --config config/train/finetune_synthetic.yaml --bag BAG --init-from START`
   for --steps steps on the bag's first 90 % (by time); START is the start checkpoint (built once by demo.sh), trained on other
   streets only (scripts/demo/make_start_checkpoint.py; --start none: from ImageNet, the synthetic recipe);
3. the replay: the bag's last --replay frames (never trained on) through dna_depth_ros's depth node, with metric
   depth from the node's ground-plane scale (camera 1.65 m above the road), for the fine-tuned network and, on the
   synthetic bag, the start checkpoint and an untrained network (ImageNet encoder, fresh decoder) for comparison;
4. the output in OUT: contact_sheet.png (input | predicted depth | exact depth | error, colour bars in metres),
   depth/*.png, cloud.ply (the node's PointCloud2 of the last frame), results.json and report.md; the numbers and
   PASS/FAIL against the targets (median-scaled AbsRel <= 0.15 and a1 >= 0.80, metric AbsRel <= 0.20 and
   a1 >= 0.70) are printed.

The replay runs the node in-process in a graph of dna_depth_ros.harness (shared with the node tests and
benchmarks/node_latency.py). DDS stays on loopback: this script sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and
its own ROS_DOMAIN_ID (62 by default) before rclpy starts; run it inside `unshare -n` (scripts/demo/demo.sh does)
for a graph with no network at all.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # this file is scripts/demo/demo_bag.py
#: built once by scripts/demo/demo.sh (scripts/demo/make_start_checkpoint.py), not committed (8.8 MB)
START = REPO / "runs" / "start_checkpoint" / "start_lite0_synth.safetensors"
SYNTH_RECIPE = REPO / "config" / "train" / "train_synthetic.yaml"
#: the demo's targets on the held-out frames: (AbsRel at most, a1 at least)
TARGETS = {"median": (0.15, 0.80), "metric": (0.20, 0.70)}
DEFAULT_STEPS = 200


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo_bag", help="output folder")
    p.add_argument("--bag", help="use this bag (default: synthesise OUT/synth_bag)")
    p.add_argument("--weights", help="checkpoint to replay (default: fine-tune one on the bag)")
    p.add_argument("--start", default=str(START),
                   help="checkpoint the fine-tune starts from (init_from); 'none': from ImageNet with the synthetic "
                        "recipe (config/train/train_synthetic.yaml)")
    p.add_argument("--config", default=str(REPO / "config" / "train" / "finetune_synthetic.yaml"),
                   help="fine-tune recipe (with --start none: default config/train/train_synthetic.yaml)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help="fine-tune steps (max_steps); the default keeps the demo within 10 minutes on 2 idle cores")
    p.add_argument("--frames", type=int, default=300, help="frames of the synthetic bag")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--image-topic", default=None)
    p.add_argument("--camera-info-topic", default=None)
    p.add_argument("--replay", type=int, default=30, help="replay the last N frames of the bag (0: all)")
    p.add_argument("--sheet-frames", type=int, default=4, help="held-out frames on the contact sheet")
    p.add_argument("--domain-id", type=int, default=62)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each depth image")
    p.add_argument("--camera-height", type=float, default=None,
                   help="camera height above the ground in metres: the node then publishes metric depth "
                        "(scale.mode camera_height); default 1.65 for the synthetic bag, none (relative) otherwise")
    args = p.parse_args(argv)
    if args.start.lower() == "none" and args.config == p.get_default("config"):
        args.config = str(SYNTH_RECIPE)
    return args


def write_ply(path, points, colors) -> None:
    """Binary little-endian PLY of (N, 3) float32 points and (N, 3) uint8 colours."""
    import numpy as np

    pts = np.asarray(points, np.float32)
    col = np.asarray(colors, np.uint8)
    rec = np.empty(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    rec["r"], rec["g"], rec["b"] = col[:, 0], col[:, 1], col[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(pts)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())


def replay(weights, frames, K_of, domain_id: int, timeout: float, camera_height: float | None = None):
    """Publish each frame (Image + CameraInfo) into a fresh rclpy graph holding a DepthNode and wait for its
    'depth'; keep the node's own PointCloud2 ('points') of the last frame.

    Returns ``(depths: list of (H, W) float32 or None, seconds, last cloud: (xyz (H, W, 3), rgb) or None)``."""
    from dna_depth_core.ros_images import decode_depth
    from dna_depth_ros import conversions as conv
    from dna_depth_ros.harness import Graph

    params = {"weights": str(weights), "publish.points": True, "points.xyzrgb": True, "points.max_range": 80.0,
              "qos.input.reliability": "reliable"}
    if camera_height:
        params.update({"scale.mode": "camera_height", "scale.camera_height": float(camera_height)})
    ns = "/demo"
    with Graph(domain_id=domain_id, name="bag_player") as graph:
        node = graph.start_node(ns, params)
        depth_topic, points_topic = f"{ns}/depth/image", f"{ns}/points"
        graph.collect(depth_topic)
        graph.collect(points_topic, keep=1)  # the newest cloud only
        camera = graph.camera(ns)
        try:
            camera.wait_matched(timeout)
            graph.wait_node_ready(node, timeout)
        except TimeoutError:
            pass  # the frames below then time out one by one and are reported as missing
        depths = []
        t0 = time.perf_counter()
        key = None
        for stamp, rgb in frames:
            key = camera.send(rgb, stamp, K=K_of(rgb))
            try:
                graph.wait_for(lambda: graph.messages(depth_topic, key), timeout, what=f"the depth of {stamp}")
                depths.append(decode_depth(graph.messages(depth_topic, key)[0]))
            except TimeoutError:
                depths.append(None)
        seconds = time.perf_counter() - t0
        cloud = None
        try:  # the last frame's cloud
            (msg,) = graph.wait_for(lambda: graph.messages(points_topic, key), timeout, what="the last cloud")
            cloud = conv.cloud_to_arrays(msg)
        except TimeoutError:
            latest = graph.messages(points_topic)
            cloud = conv.cloud_to_arrays(latest[-1]) if latest else None
    return depths, seconds, cloud


def score(depths, gts) -> tuple[dict, list]:
    """Mean Eigen metrics over the frames with a depth and ground truth, median-scaled and as published (metric):
    ``({"median": {...}, "metric": {...}}, per-frame metric AbsRel (None where a frame is missing))``."""
    import numpy as np

    from dna_depth_core.evaluation import evaluate_depth

    errs: dict[str, list] = {"median": [], "metric": []}
    per_frame = []
    for d, gt in zip(depths, gts):
        if d is None or gt is None:
            per_frame.append(None)
            continue
        pred = np.nan_to_num(d, nan=0.0)
        pred[pred <= 0] = 1e-3
        errs["median"].append(evaluate_depth(gt, pred, scaling="median", crop=False)[0])
        errs["metric"].append(evaluate_depth(gt, pred, scaling="none", crop=False)[0])
        per_frame.append(float(errs["metric"][-1]["abs_rel"]))
    rows = {kind: {k: float(np.mean([e[k] for e in es])) for k in ("abs_rel", "sq_rel", "rmse", "a1")}
            for kind, es in errs.items() if es}
    return rows, per_frame


def passes(row: dict) -> dict:
    """``{kind: bool}``: each of the row's median / metric results against :data:`TARGETS`."""
    return {kind: bool(row[kind]["abs_rel"] <= t[0] and row[kind]["a1"] >= t[1])
            for kind, t in TARGETS.items() if kind in row}


def child_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fine_tune(args, bag: Path, out: Path) -> tuple[str, dict]:
    """Run `dna-depth train` on the bag (from --start unless 'none'); returns (model.safetensors, timing)."""
    from dna_depth_core.training.state import resolve_checkpoint

    cmd = [sys.executable, "-m", "dna_depth_core.cli", "train", "--config", args.config, "--bag", str(bag),
           "--out", str(out / "train")]
    if args.start.lower() != "none":
        cmd += ["--init-from", args.start]
    if args.image_topic:
        cmd += ["--image-topic", args.image_topic]
    if args.camera_info_topic:
        cmd += ["--camera-info-topic", args.camera_info_topic]
    cmd += [f"max_steps={args.steps}", "progress=false"]
    t0, c0 = time.perf_counter(), child_cpu_seconds()
    subprocess.run(cmd, check=True, cwd=REPO)
    wall, cpu = time.perf_counter() - t0, child_cpu_seconds() - c0
    weights = os.path.join(resolve_checkpoint(str(out / "train")), "model.safetensors")
    print(f"[demo] fine-tuned {args.steps} steps in {wall:.0f} s ({cpu:.0f} CPU-s, including start-up): {weights}",
          flush=True)
    return weights, {"command": " ".join(cmd[1:]), "steps": args.steps, "seconds": wall, "cpu_seconds": cpu}


def untrained_network(out: Path) -> str:
    """The synthetic recipe's network before training (ImageNet encoder, fresh decoder), saved to OUT."""
    import torch

    import dna_depth_core
    from dna_depth_core.training.config import load_config
    from dna_depth_core.training.networks import build_depth_net

    torch.manual_seed(0)
    path = str(out / "untrained.safetensors")
    dna_depth_core.save_checkpoint(build_depth_net(load_config(str(SYNTH_RECIPE))), path)
    return path


def write_contact_sheet(path: Path, frames, depths, gts, per_frame, n: int, header: str) -> list[int]:
    """``n`` held-out frames spread over the replay, drawn by visualize.contact_sheet; returns their indices."""
    import cv2
    import numpy as np

    from dna_depth_core.visualize import contact_sheet

    ok = [i for i, (d, g) in enumerate(zip(depths, gts)) if d is not None and g is not None]
    if not ok or n <= 0:
        return []
    idx = sorted({ok[int(round(k))] for k in np.linspace(0, len(ok) - 1, min(n, len(ok)))})
    titles = [f"held-out frame {i + 1}/{len(frames)} (stamp {frames[i][0]}): metric AbsRel {per_frame[i]:.3f}"
              for i in idx]
    sheet = contact_sheet([frames[i][1] for i in idx], [depths[i] for i in idx], [gts[i] for i in idx],
                          titles=titles, header=header)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return idx


def fmt_row(r: dict) -> str:
    if "median" not in r:
        return "(no ground truth)"
    line = "AbsRel {abs_rel:.3f}  a1 {a1:.3f} (median-scaled)".format(**r["median"])
    if "metric" in r:
        line += "  AbsRel {abs_rel:.3f}  a1 {a1:.3f} (metric, ground-plane scale)".format(**r["metric"])
    return line


def write_report(path: Path, summary: dict) -> None:
    rows, ft = summary["rows"], summary.get("fine_tune")
    lines = [f"# dna-depth demo ({summary['date']})", "",
             f"Bag: `{summary['bag']}`; {summary['frames']} held-out frames (the bag's last, never trained on) "
             f"replayed through `dna_depth_ros` depth_node; depth in {summary['unit']}.", ""]
    if ft:
        lines += [f"Fine-tune: `{ft['command']}`: {ft['steps']} steps in {ft['seconds']:.0f} s wall "
                  f"({ft['cpu_seconds']:.0f} CPU-s including start-up).", ""]
    lines += ["| network | median-scaled AbsRel | a1 | metric AbsRel | a1 | FPS (ROS graph) |",
              "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        m, t = r.get("median"), r.get("metric")
        cells = [f"{m['abs_rel']:.3f}", f"{m['a1']:.3f}"] if m else ["-", "-"]
        cells += [f"{t['abs_rel']:.3f}", f"{t['a1']:.3f}"] if t else ["-", "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['fps']:.1f} |")
    if summary.get("verdict"):
        lines += ["", f"Targets (held-out, {summary['main']}): median-scaled AbsRel <= {TARGETS['median'][0]} and "
                  f"a1 >= {TARGETS['median'][1]}; metric AbsRel <= {TARGETS['metric'][0]} and a1 >= "
                  f"{TARGETS['metric'][1]}: **{summary['verdict']}**"]
    lines += ["", f"Total {summary['seconds']:.0f} s wall; load average {summary['load_start']} at the start, "
              f"{summary['load_end']} at the end; CPU: {summary['cpu']} ({summary['cpus']} usable cores).", "",
              "Files: " + ", ".join(f"`{f}`" for f in summary["files"]), ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    args = parse_args(argv)
    from dna_depth_ros.harness import confine_to_loopback

    confine_to_loopback(args.domain_id)  # before rclpy starts; the training subprocess inherits it too
    import cv2
    import numpy as np

    from dna_depth_core.camera import pixel_K
    from dna_depth_core.data import rosbag as rb
    from dna_depth_core.machine import cpu_model, usable_cpus
    from dna_depth_core.training.config import load_config
    from dna_depth_core.visualize import colorize_depth

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start, load_start = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    bag = Path(args.bag) if args.bag else out / "synth_bag"
    synthetic = args.bag is None
    cfg = load_config(args.config)
    if synthetic and not bag.exists():
        info = rb.write_synthetic_bag(bag, args.frames, seed=0, width=cfg.width, height=cfg.height,
                                      storage=args.storage, progress=True)
        print(f"[demo] synthesised {bag} ({args.frames} frames) in {info['seconds']:.0f} s", flush=True)
    print(rb.format_bag_info(rb.bag_info([bag])), flush=True)

    weights, fine = args.weights, None
    if weights is None:
        weights, fine = fine_tune(args, bag, out)
    networks = {("fine-tuned" if fine else "weights"): weights}
    if synthetic and fine and args.start.lower() != "none":
        networks["start (no fine-tune)"] = args.start
    if synthetic:
        networks["untrained"] = untrained_network(out)

    fr = rb.read_bag_frames(bag, args.image_topic, args.camera_info_topic,
                            depth_topic=rb.DEFAULT_DEPTH_TOPIC if synthetic else None, on_damage="keep")
    sel = range(len(fr)) if args.replay <= 0 else range(max(0, len(fr) - args.replay), len(fr))
    frames = [(int(fr.stamps[i]), fr.images[i]) for i in sel]
    gts = [fr.depth.get(stamp) if fr.depth else None for stamp, _ in frames]

    def K_of(rgb):
        return pixel_K(fr.K_norm, (rgb.shape[1], rgb.shape[0]))

    camera_height = args.camera_height if args.camera_height is not None else (1.65 if synthetic else None)
    rows, main_name = {}, next(iter(networks))
    kept = {}
    for name, ckpt in networks.items():
        depths, sec, cloud = replay(ckpt, frames, K_of, args.domain_id, args.timeout, camera_height)
        n_ok = sum(d is not None for d in depths)
        r = rows[name] = {"weights": str(ckpt), "fps": n_ok / sec if sec > 0 else 0.0, "frames": n_ok}
        acc, per_frame = score(depths, gts)
        if not camera_height:
            acc.pop("metric", None)  # relative depth: only the median-scaled row means something
        r.update(acc)
        if name == main_name:
            kept = {"depths": depths, "cloud": cloud, "per_frame": per_frame}

    # the main network's depth PNGs, contact sheet and last point cloud
    depth_dir = out / "depth"
    depth_dir.mkdir(exist_ok=True)
    for (stamp, _), d in zip(frames, kept["depths"]):
        if d is not None:
            cv2.imwrite(str(depth_dir / f"{stamp}.png"), cv2.cvtColor(colorize_depth(d), cv2.COLOR_RGB2BGR))
    files = [str(depth_dir / "*.png")]
    main = rows[main_name]
    if "metric" in main:
        what = f"start checkpoint + {args.steps} fine-tune steps" if fine else "given weights"
        header = (f"dna_lite0, {what}; {len(frames)} held-out frames: median-scaled AbsRel "
                  f"{main['median']['abs_rel']:.3f} a1 {main['median']['a1']:.3f}, metric (ground-plane scale) "
                  f"AbsRel {main['metric']['abs_rel']:.3f} a1 {main['metric']['a1']:.3f}")
        sheet = out / "contact_sheet.png"
        if write_contact_sheet(sheet, frames, kept["depths"], gts, kept["per_frame"], args.sheet_frames, header):
            files.insert(0, str(sheet))
    ply = None
    if kept["cloud"] is not None:
        xyz, rgb = kept["cloud"]
        ok = np.isfinite(xyz).all(-1)
        ply = out / "cloud.ply"
        colours = rgb[ok] if rgb is not None else np.full((int(ok.sum()), 3), 200, np.uint8)
        write_ply(ply, xyz[ok], colours)
        files.append(str(ply))

    unit = f"metres (camera height {camera_height} m)" if camera_height else "relative units (no metric scale)"
    print(f"\n[demo] {len(frames)} frames of {bag} replayed through dna_depth_ros/depth_node; depth in {unit}")
    if synthetic:
        print(f"[demo] these frames are the bag's last ones by time: the fine-tune used the first "
              f"{1 - cfg.val_fraction:.0%} (val_fraction), the start checkpoint other streets, so they are unseen")
    for name, r in rows.items():
        print(f"  {name:<21} {fmt_row(r)}  {r['fps']:.1f} FPS through the ROS graph ({r['frames']}/{len(frames)})")
    verdict = None
    if "metric" in main:
        ok = passes(main)
        verdict = "PASS" if all(ok.values()) and len(ok) == 2 else "FAIL"
        print(f"[demo] {verdict}: {main_name} vs the targets: median-scaled AbsRel <= {TARGETS['median'][0]}, "
              f"a1 >= {TARGETS['median'][1]} ({'met' if ok['median'] else 'missed'}); metric AbsRel <= "
              f"{TARGETS['metric'][0]}, a1 >= {TARGETS['metric'][1]} ({'met' if ok['metric'] else 'missed'})")
    summary = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "bag": str(bag), "frames": len(frames), "camera_height": camera_height, "unit": unit,
               "main": main_name, "rows": rows, "fine_tune": fine,
               "targets": {k: {"abs_rel_max": v[0], "a1_min": v[1]} for k, v in TARGETS.items()},
               "verdict": verdict, "seconds": time.perf_counter() - t_start, "load_start": load_start,
               "load_end": [round(x, 2) for x in os.getloadavg()], "cpu": cpu_model(), "cpus": usable_cpus()}
    summary["files"] = [str(out / "results.json"), str(out / "report.md")] + files
    with open(out / "results.json", "w") as f:
        json.dump(summary, f, indent=1)
    write_report(out / "report.md", summary)
    print(f"[demo] {', '.join(summary['files'])}; total {summary['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
