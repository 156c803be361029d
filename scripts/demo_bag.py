#!/usr/bin/env python3
"""End-to-end bag demo (issue 5): synthesise a bag, train on it, replay it through the depth node in a real
rclpy graph, save depth PNGs and a PLY point cloud, print accuracy (trained vs untrained) and FPS.

    python scripts/demo_bag.py --out runs/demo_bag                       # the synthetic demo
    python scripts/demo_bag.py --out runs/demo_bag --steps 20 --frames 60  # a quick smoke run
    python scripts/demo_bag.py --bag MY_BAG --weights model.safetensors \\
        --image-topic /cam/image_raw --camera-info-topic /cam/camera_info   # your recording (no accuracy: no GT)

DDS stays on loopback: this script sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and its own ROS_DOMAIN_ID (62 by
default) before rclpy starts; run it inside `unshare -n` for a graph with no network at all.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo_bag", help="output folder")
    p.add_argument("--bag", help="replay this bag (default: synthesise OUT/synth_bag)")
    p.add_argument("--weights", help="checkpoint to run (default: train one on the bag)")
    p.add_argument("--config", default=str(REPO / "config" / "train_synthetic.yaml"), help="training recipe")
    p.add_argument("--steps", type=int, default=2000, help="training steps (max_steps)")
    p.add_argument("--frames", type=int, default=300, help="frames of the synthetic bag")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--image-topic", default=None)
    p.add_argument("--camera-info-topic", default=None)
    p.add_argument("--replay", type=int, default=30, help="replay the last N frames of the bag (0: all)")
    p.add_argument("--domain-id", type=int, default=62)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each depth image")
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


def replay(weights, frames, K_of, domain_id: int, timeout: float):
    """Publish each frame (Image + CameraInfo) into a fresh rclpy graph holding a DepthNode; collect 'depth'.

    Returns ``(depths: list of (H, W) float32 or None, seconds)``."""
    import numpy as np
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from dna_depth_ros import conversions as conv
    from dna_depth_ros.depth_node import DepthNode
    from std_msgs.msg import Header
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    ex = MultiThreadedExecutor(num_threads=2, context=ctx)
    tester = Node("bag_player", context=ctx)
    node = DepthNode(context=ctx, namespace="/demo", parameter_overrides=[
        Parameter("weights", value=str(weights)), Parameter("publish.points", value=False),
        Parameter("qos.input.reliability", value="reliable")])
    ex.add_node(tester)
    ex.add_node(node)
    got: dict = {}
    lock = threading.Lock()

    def on_depth(msg):
        with lock:
            got[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = conv.image_to_depth(msg)

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    tester.create_subscription(Image, "/demo/depth", on_depth, qos)
    pub_img = tester.create_publisher(Image, "/demo/image", qos)
    pub_info = tester.create_publisher(CameraInfo, "/demo/camera_info", qos)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    depths = []
    try:
        t_wait = time.monotonic() + timeout
        while (pub_img.get_subscription_count() < 1 or not node.has_subscribers()) and time.monotonic() < t_wait:
            time.sleep(0.02)
        t0 = time.perf_counter()
        for stamp, rgb in frames:
            key = (int(stamp // 1_000_000_000), int(stamp % 1_000_000_000))
            header = Header(stamp=Time(sec=key[0], nanosec=key[1]), frame_id="camera_optical_frame")
            info = conv.make_camera_info(K_of(rgb), rgb.shape[1], rgb.shape[0], header)
            img = conv.rgb_to_image(rgb, header)
            pub_info.publish(info)
            pub_img.publish(img)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with lock:
                    if key in got:
                        break
                time.sleep(0.002)
            with lock:
                depths.append(got.get(key))
        seconds = time.perf_counter() - t0
    finally:
        ex.shutdown(timeout_sec=5)
        th.join(10)
        node.destroy_node()
        tester.destroy_node()
        rclpy.shutdown(context=ctx)
    return depths, seconds


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(args.domain_id)
    import cv2
    import numpy as np

    from dna_depth_core.data import rosbag as rb
    from dna_depth_core.evaluation import evaluate_depth

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    bag = Path(args.bag) if args.bag else out / "synth_bag"
    synthetic = args.bag is None
    if synthetic and not bag.exists():
        from dna_depth_core.training.config import load_config

        cfg0 = load_config(args.config)
        info = rb.write_synthetic_bag(bag, args.frames, seed=0, width=cfg0.width, height=cfg0.height,
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
    if weights is None:
        t0 = time.perf_counter()
        subprocess.run(cmd + [f"max_steps={args.steps}", "progress=false"], check=True, cwd=REPO)
        weights = str(out / "train" / "checkpoints" / "latest")
        from dna_depth_core.training.trainer import resolve_checkpoint

        weights = resolve_checkpoint(weights)
        if os.path.isdir(weights):
            weights = os.path.join(weights, "model.safetensors")
        print(f"[demo] trained {args.steps} steps in {time.perf_counter() - t0:.0f} s: {weights}")

    # the untrained network of the same recipe (ImageNet encoder, fresh decoder), for comparison
    baseline = None
    if synthetic:
        import torch

        import dna_depth_core
        from dna_depth_core.training.config import load_config
        from dna_depth_core.training.trainer import build_depth_net

        torch.manual_seed(0)
        baseline = str(out / "untrained.safetensors")
        dna_depth_core.save_checkpoint(build_depth_net(load_config(args.config)), baseline)

    fr = rb.read_bag_frames(bag, args.image_topic, args.camera_info_topic,
                            depth_topic=rb.DEFAULT_DEPTH_TOPIC if synthetic else None, on_damage="keep")
    sel = range(len(fr)) if args.replay <= 0 else range(max(0, len(fr) - args.replay), len(fr))
    frames = [(int(fr.stamps[i]), fr.images[i]) for i in sel]
    w0, h0 = fr.original_size

    def K_of(rgb):
        K = fr.K_norm.copy()
        K[0] *= rgb.shape[1]
        K[1] *= rgb.shape[0]
        return K

    results = {}
    for name, ckpt in (("trained", weights), ("untrained", baseline)):
        if ckpt is None:
            continue
        depths, sec = replay(ckpt, frames, K_of, args.domain_id, args.timeout)
        n_ok = sum(d is not None for d in depths)
        results[name] = {"fps": n_ok / sec if sec > 0 else 0.0, "n": n_ok, "depths": depths}
        if fr.depth:
            errs = []
            for (stamp, _), d in zip(frames, depths):
                gt = fr.depth.get(stamp)
                if d is None or gt is None:
                    continue
                pred = np.nan_to_num(d, nan=0.0)
                pred[pred <= 0] = 1e-3
                e, _ = evaluate_depth(gt, pred, scaling="median", crop=False)
                errs.append(e)
            if errs:
                results[name]["abs_rel"] = float(np.mean([e["abs_rel"] for e in errs]))
                results[name]["a1"] = float(np.mean([e["a1"] for e in errs]))

    # depth PNGs and one PLY (trained network)
    from dna_depth_ros import conversions as conv

    depth_dir = out / "depth"
    depth_dir.mkdir(exist_ok=True)
    last = None
    for (stamp, rgb), d in zip(frames, results["trained"]["depths"]):
        if d is None:
            continue
        cv2.imwrite(str(depth_dir / f"{stamp}.png"), cv2.cvtColor(conv.colorize_depth(d), cv2.COLOR_RGB2BGR))
        last = (rgb, d)
    if last is not None:
        rgb, d = last
        K = K_of(rgb)
        v, u = np.mgrid[0:d.shape[0], 0:d.shape[1]]
        ok = np.isfinite(d) & (d > 0)
        z = d[ok]
        pts = np.stack([(u[ok] - K[0, 2]) / K[0, 0] * z, (v[ok] - K[1, 2]) / K[1, 1] * z, z], -1)
        write_ply(out / "cloud.ply", pts, rgb[ok])

    print("\n[demo] results on the last %d frames of %s (median-scaled depth vs the exact synthetic depth)"
          % (len(frames), bag))
    for name, r in results.items():
        acc = (f"AbsRel {r['abs_rel']:.3f}  a1 {r['a1']:.3f}  " if "abs_rel" in r else "(no ground truth)  ")
        print(f"  {name:<9} {acc}{r['fps']:.1f} FPS through the ROS graph ({r['n']}/{len(frames)} frames)")
    print(f"[demo] depth PNGs: {depth_dir}  point cloud: {out / 'cloud.ply'}  total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
