#!/usr/bin/env python3
"""End-to-end bag demo: synthesise a bag, train on it, replay it through the depth node in a real
rclpy graph, save depth PNGs and a PLY point cloud, print accuracy (trained vs untrained) and FPS.

    python scripts/demo/demo_bag.py --out runs/demo_bag                       # the synthetic demo
    python scripts/demo/demo_bag.py --out runs/demo_bag --steps 20 --frames 60  # a quick smoke run
    python scripts/demo/demo_bag.py --bag MY_BAG --weights model.safetensors \\
        --image-topic /cam/image_raw --camera-info-topic /cam/camera_info   # your recording (no accuracy: no GT)

The replay runs the node in-process in a graph of dna_depth_ros.harness (shared with the node tests and
benchmarks/node_latency.py). DDS stays on loopback: this script sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and
its own ROS_DOMAIN_ID (62 by default) before rclpy starts; run it inside `unshare -n` for a graph with no network
at all.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # this file is scripts/demo/demo_bag.py


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo_bag", help="output folder")
    p.add_argument("--bag", help="replay this bag (default: synthesise OUT/synth_bag)")
    p.add_argument("--weights", help="checkpoint to run (default: train one on the bag)")
    p.add_argument("--config", default=str(REPO / "config" / "train" / "train_synthetic.yaml"), help="training recipe")
    p.add_argument("--steps", type=int, default=350,
                   help="training steps (max_steps); the default fits the demo in 15 minutes on 2 cores")
    p.add_argument("--frames", type=int, default=300, help="frames of the synthetic bag")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--image-topic", default=None)
    p.add_argument("--camera-info-topic", default=None)
    p.add_argument("--replay", type=int, default=30, help="replay the last N frames of the bag (0: all)")
    p.add_argument("--domain-id", type=int, default=62)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each depth image")
    p.add_argument("--camera-height", type=float, default=None,
                   help="camera height above the ground in metres: the node then publishes metric depth "
                        "(scale.mode camera_height); default 1.65 for the synthetic bag, none (relative) otherwise")
    return p.parse_args(argv)


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


def main(argv=None) -> int:
    args = parse_args(argv)
    from dna_depth_ros.harness import confine_to_loopback

    confine_to_loopback(args.domain_id)  # before rclpy starts; the training subprocess inherits it too
    import cv2
    import numpy as np

    from dna_depth_core.camera import pixel_K
    from dna_depth_core.data import rosbag as rb
    from dna_depth_core.evaluation import evaluate_depth
    from dna_depth_core.training.config import load_config

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    bag = Path(args.bag) if args.bag else out / "synth_bag"
    synthetic = args.bag is None
    cfg = load_config(args.config)
    if synthetic and not bag.exists():
        info = rb.write_synthetic_bag(bag, args.frames, seed=0, width=cfg.width, height=cfg.height,
                                      storage=args.storage, progress=True)
        print(f"[demo] synthesised {bag} ({args.frames} frames) in {info['seconds']:.0f} s")
    print(rb.format_bag_info(rb.bag_info([bag])))

    cmd = [sys.executable, "-m", "dna_depth_core.cli", "train", "--config", args.config, "--bag", str(bag),
           "--out", str(out / "train")]
    if args.image_topic:
        cmd += ["--image-topic", args.image_topic]
    if args.camera_info_topic:
        cmd += ["--camera-info-topic", args.camera_info_topic]
    weights = args.weights
    train_seconds = None
    if weights is None:
        t0 = time.perf_counter()
        subprocess.run(cmd + [f"max_steps={args.steps}", "progress=false"], check=True, cwd=REPO)
        weights = str(out / "train" / "checkpoints" / "latest")
        from dna_depth_core.training.state import resolve_checkpoint

        weights = resolve_checkpoint(weights)
        if os.path.isdir(weights):
            weights = os.path.join(weights, "model.safetensors")
        train_seconds = time.perf_counter() - t0
        print(f"[demo] trained {args.steps} steps in {train_seconds:.0f} s: {weights}")

    # the untrained network of the same recipe (ImageNet encoder, fresh decoder), for comparison
    baseline = None
    if synthetic:
        import torch

        import dna_depth_core
        from dna_depth_core.training.networks import build_depth_net

        torch.manual_seed(0)
        baseline = str(out / "untrained.safetensors")
        dna_depth_core.save_checkpoint(build_depth_net(cfg), baseline)

    fr = rb.read_bag_frames(bag, args.image_topic, args.camera_info_topic,
                            depth_topic=rb.DEFAULT_DEPTH_TOPIC if synthetic else None, on_damage="keep")
    sel = range(len(fr)) if args.replay <= 0 else range(max(0, len(fr) - args.replay), len(fr))
    frames = [(int(fr.stamps[i]), fr.images[i]) for i in sel]

    def K_of(rgb):
        return pixel_K(fr.K_norm, (rgb.shape[1], rgb.shape[0]))

    camera_height = args.camera_height if args.camera_height is not None else (1.65 if synthetic else None)
    results = {}
    for name, ckpt in (("trained", weights), ("untrained", baseline)):
        if ckpt is None:
            continue
        depths, sec, cloud = replay(ckpt, frames, K_of, args.domain_id, args.timeout, camera_height)
        n_ok = sum(d is not None for d in depths)
        r = results[name] = {"weights": str(ckpt), "fps": n_ok / sec if sec > 0 else 0.0, "frames": n_ok}
        r["depths"], r["cloud"] = depths, cloud
        if fr.depth:
            errs = {"median": [], "metric": []}
            for (stamp, _), d in zip(frames, depths):
                gt = fr.depth.get(stamp)
                if d is None or gt is None:
                    continue
                pred = np.nan_to_num(d, nan=0.0)
                pred[pred <= 0] = 1e-3
                errs["median"].append(evaluate_depth(gt, pred, scaling="median", crop=False)[0])
                if camera_height:  # the node's own metric scale (ground plane), no ground truth used
                    errs["metric"].append(evaluate_depth(gt, pred, scaling="none", crop=False)[0])
            for kind, es in errs.items():
                if es:
                    r[kind] = {k: float(np.mean([e[k] for e in es])) for k in ("abs_rel", "sq_rel", "rmse", "a1")}

    # depth PNGs (trained network) and the node's last point cloud as PLY
    from dna_depth_core.visualize import colorize_depth

    depth_dir = out / "depth"
    depth_dir.mkdir(exist_ok=True)
    for (stamp, rgb), d in zip(frames, results["trained"]["depths"]):
        if d is not None:
            cv2.imwrite(str(depth_dir / f"{stamp}.png"), cv2.cvtColor(colorize_depth(d), cv2.COLOR_RGB2BGR))
    cloud = results["trained"]["cloud"]
    ply = None
    if cloud is not None:
        xyz, rgb = cloud
        ok = np.isfinite(xyz).all(-1)
        ply = out / "cloud.ply"
        colours = rgb[ok] if rgb is not None else np.full((int(ok.sum()), 3), 200, np.uint8)
        write_ply(ply, xyz[ok], colours)

    unit = f"metres (camera height {camera_height} m)" if camera_height else "relative units (no metric scale)"
    print(f"\n[demo] {len(frames)} frames of {bag} replayed through dna_depth_ros/depth_node; depth in {unit}")
    if synthetic:
        print("[demo] these frames are the bag's last ones by time: training used the first "
              f"{1 - cfg.val_fraction:.0%} (val_fraction), so they are unseen")
    for name, r in results.items():
        line = f"  {name:<9} "
        if "median" in r:
            line += "AbsRel {abs_rel:.3f}  a1 {a1:.3f} (median-scaled)".format(**r["median"])
            if "metric" in r:
                line += "  AbsRel {abs_rel:.3f}  a1 {a1:.3f} (metric, ground-plane scale)".format(**r["metric"])
        else:
            line += "(no ground truth)"
        print(line + f"  {r['fps']:.1f} FPS through the ROS graph ({r['frames']}/{len(frames)} frames)")
    summary = {name: {k: v for k, v in r.items() if k not in ("depths", "cloud")} for name, r in results.items()}
    summary.update(bag=str(bag), frames=len(frames), camera_height=camera_height,
                   steps=args.steps if train_seconds is not None else None, train_seconds=train_seconds,
                   seconds=time.perf_counter() - t_start)
    with open(out / "results.json", "w") as f:
        json.dump(summary, f, indent=1)
    print(f"[demo] depth PNGs: {depth_dir}  point cloud: {ply or '(none: no camera_info)'}  "
          f"results: {out / 'results.json'}  total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
