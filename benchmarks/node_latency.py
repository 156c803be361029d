#!/usr/bin/env python
"""Depth node end-to-end latency and throughput on the CPU, against the bare model call.

Run it inside a loopback-only network namespace (DDS never leaves the machine):

    . scripts/env.sh
    unshare -n bash -c 'ip link set lo up && python benchmarks/node_latency.py --out benchmarks/results/node.json'

What it measures (640x192 input = the network's input size by default, so no resize in the node):

1. bare model: ``net(x)`` on a (1, 3, 192, 640) tensor, timed before each node frame (interleaved, so both see
   the same machine load).
2. node, in-process: frames published one at a time from a tester node; latency = time from ``publish`` to the
   arrival of the last of depth, depth/camera_info and points with that frame's stamp. The node's own per-stage
   timings give the ROS overhead = image conversion + outputs (depth image, camera_info, point cloud messages)
   + publish, as a fraction of the inference time.
3. node, separate process (``depth_node`` console script): the same end-to-end latency across processes,
   against the node's own median inference time (from its shutdown log).
4. a 30 Hz camera for ``--rate-seconds``: frames received, processed and dropped by the node (latest-frame policy).

Weights: ``--weights`` or, by default, a randomly initialised ``--model`` (the timing does not depend on the
weights). The frames are the real KITTI frames of ../shared/data/kitti_tiny resized to 640x192 when present,
synthetic street frames otherwise.
"""
from __future__ import annotations

import os

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", "65")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
import torch  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dna_depth_core  # noqa: E402
from dna_depth_core.camera import resize_K  # noqa: E402
from dna_depth_ros import conversions as conv  # noqa: E402
from dna_depth_ros.depth_node import DepthNode  # noqa: E402

KITTI = REPO.parent / "shared" / "data" / "kitti_tiny" / "2011_09_26"
K_KITTI = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
OUTPUTS = ("depth", "depth/camera_info", "points")


def load_frames(width: int, height: int) -> tuple[list[np.ndarray], np.ndarray, str]:
    drive = KITTI / "2011_09_26_drive_0023_sync" / "image_02" / "data"
    paths = sorted(drive.glob("*.png"))
    if paths:
        frames = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (width, height),
                             interpolation=cv2.INTER_AREA) for p in paths]
        return frames, resize_K(K_KITTI, (1242, 375), (width, height)), "KITTI drive 0023 (real)"
    from dna_depth_core.data.synthetic import SyntheticScene, make_trajectory, synthetic_intrinsics

    poses, _ = make_trajectory(7, seed=1)
    scene = SyntheticScene(1, length=float(poses[:, 2, 3].max()) + 20)
    K = synthetic_intrinsics(width, height)
    return [scene.render(p, K, width, height)[0] for p in poses], K, "synthetic street"


def med_ms(values) -> float:
    return 1000.0 * float(np.median(values))


class BareModel:
    """The bare network call on one frame: ``net(x)``, x (1, 3, H, W) in [0, 1], no pre/post-processing."""

    def __init__(self, weights: str, frame: np.ndarray):
        self.net = dna_depth_core.load_checkpoint(weights).eval()
        self.x = torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous().float() / 255.0  # NCHW, as the node
        for _ in range(3):
            self()

    @torch.inference_mode()
    def __call__(self) -> float:
        t0 = time.perf_counter()
        self.net(self.x)
        return time.perf_counter() - t0


class Tester:
    def __init__(self, context, ns: str):
        self.node = Node("bench_tester", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_img = self.node.create_publisher(Image, f"{ns}/image", qos)
        self.pub_info = self.node.create_publisher(CameraInfo, f"{ns}/camera_info", qos)
        self.arrivals: dict[tuple, dict[str, float]] = {}
        self.lost = 0
        self.lock = threading.Lock()
        for topic, typ in zip(OUTPUTS, (Image, CameraInfo, PointCloud2)):
            self.node.create_subscription(typ, f"{ns}/{topic}", lambda m, t=topic: self._on(t, m), qos)

    def _on(self, topic, msg):
        now = time.perf_counter()
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            self.arrivals.setdefault(key, {})[topic] = now

    def publish(self, rgb, K, i):
        header = Header(stamp=Time(sec=1000 + i // 1000, nanosec=(i % 1000) * 1000), frame_id="camera_optical")
        h, w = rgb.shape[:2]
        self.pub_info.publish(conv.make_camera_info(K, w, h, header))
        msg = conv.rgb_to_image(rgb, header, "rgb8")
        t0 = time.perf_counter()
        self.pub_img.publish(msg)
        return (header.stamp.sec, header.stamp.nanosec), t0

    def complete(self, key):
        with self.lock:
            got = self.arrivals.get(key, {})
            return max(got.values()) if len(got) == len(OUTPUTS) else None


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.001)
    raise TimeoutError(f"timed out waiting for {what}")


def sequential_latency(tester: Tester, frames, K, n: int, timeout: float, start: int, bare=None):
    """Publish ``n`` frames one at a time and time each until all outputs arrived. With ``bare``, the bare model
    call is timed before each frame, while the node is idle: both series see the same machine load."""
    lat, model, lost = [], [], 0
    while len(lat) < n:
        if lost > n:
            raise TimeoutError(f"{lost} frames without an answer")
        if bare is not None:
            time.sleep(0.05)  # let the tester finish with the previous frame's messages first
            model.append(bare())
        key, t0 = tester.publish(frames[len(lat) % len(frames)], K, start + len(lat) + 1000 * lost)
        try:
            t1 = wait(lambda: tester.complete(key), timeout, "outputs")
        except TimeoutError:  # lost in transit (best-effort input): not a latency sample
            lost += 1
            if bare is not None:
                model.pop()
            continue
        lat.append(t1 - t0)
    tester.lost += lost
    return lat, model


def first_answer(tester: Tester, frames, K, timeout: float, alive=lambda: True) -> None:
    """Ping until the node answers with all outputs: until discovery completes both ways (the node skips frames
    while its publishers see no subscriber, and has no intrinsics before a camera_info arrived)."""
    deadline = time.monotonic() + timeout
    for i in range(100_000):
        key, _ = tester.publish(frames[0], K, 50_000 + i)
        try:
            wait(lambda: tester.complete(key), 5.0, "a first answer")
            return
        except TimeoutError:
            if time.monotonic() > deadline or not alive():
                raise


def node_in_process(weights, frames, K, args, bare: BareModel) -> dict:
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ns = "/bench"
    node = DepthNode(context=ctx, namespace=ns, parameter_overrides=[
        Parameter("weights", value=weights), Parameter("device", value="cpu")])
    tester = Tester(ctx, ns)
    ex = MultiThreadedExecutor(num_threads=2, context=ctx)
    ex.add_node(node)
    ex.add_node(tester.node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        wait(lambda: tester.pub_img.get_subscription_count()
             and all(p.get_subscription_count() for p in node._publishers_out), 30, "discovery")
        timeout = 60.0
        first_answer(tester, frames, K, 120)
        sequential_latency(tester, frames, K, 1, timeout, start=0)  # warm-up
        node.timings.clear()
        lat, model = sequential_latency(tester, frames, K, args.frames, 30.0, start=100, bare=bare)
        t = list(node.timings)
        stage = {k: med_ms([x[k] for x in t]) for k in
                 ("convert", "preprocess", "inference", "postprocess", "outputs", "publish", "total")}
        overhead = [x["convert"] + x["outputs"] + x["publish"] for x in t]
        result = {"bare_model_ms": med_ms(model), "bare_model_p90_ms": 1000 * float(np.percentile(model, 90)),
                  "latency_ms": med_ms(lat), "latencies_ms": [round(1000 * x, 1) for x in lat], "latency_p90_ms": 1000 * float(np.percentile(lat, 90)),
                  "throughput_hz_sequential": 1.0 / float(np.median(lat)), "stages_ms": stage,
                  "ros_overhead_ms": med_ms(overhead),
                  "ros_overhead_ratio": float(np.median([o / x["inference"] for o, x in zip(overhead, t)])),
                  "e2e_over_bare_model": float(np.median([a / b for a, b in zip(lat, model)]))}

        # A 30 Hz camera.
        before = dict(vars(node.stats))
        period = 1.0 / args.rate
        n = int(round(args.rate_seconds * args.rate))
        t_start = time.perf_counter()
        for i in range(n):
            target = t_start + i * period
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            tester.publish(frames[i % len(frames)], K, 10_000 + i)
        t_pub = time.perf_counter() - t_start
        def settled():
            s = node.stats
            done = s.processed + s.dropped + s.skipped_no_subscribers + s.rejected + s.failed == s.received
            return done and time.perf_counter() - t_start - t_pub > 1.0
        wait(settled, 120, "the node to finish the last frame")
        s = node.stats
        processed = s.processed - before["processed"]
        result["rate_test"] = {
            "input_hz": args.rate, "seconds": t_pub, "published": n,
            "received": s.received - before["received"], "processed": processed,
            "dropped": s.dropped - before["dropped"], "output_hz": processed / t_pub,
        }
        return result
    finally:
        ex.shutdown(timeout_sec=5)
        node.destroy_node()
        tester.node.destroy_node()
        rclpy.shutdown(context=ctx)


def node_process(weights, frames, K, args) -> dict:
    exe = shutil.which("depth_node", path=os.path.dirname(sys.executable))
    cmd = ([exe] if exe else [sys.executable, "-m", "dna_depth_ros.depth_node"]) + [
        "--ros-args", "-r", "__ns:=/benchp", "-p", f"weights:={weights}", "-p", "device:=cpu"]
    proc = subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    tester = Tester(ctx, "/benchp")
    ex = MultiThreadedExecutor(num_threads=2, context=ctx)
    ex.add_node(tester.node)
    th = threading.Thread(target=ex.spin, daemon=True)
    th.start()
    try:
        wait(lambda: tester.pub_img.get_subscription_count() and tester.node.count_publishers("/benchp/points"),
             120, "the node process")
        first_answer(tester, frames, K, 120, alive=lambda: proc.poll() is None)
        sequential_latency(tester, frames, K, 1, 120, start=0)  # warm-up
        # No interleaved bare calls here: the node process's idle OpenMP threads would compete with them.
        lat, _ = sequential_latency(tester, frames, K, args.frames, 30.0, start=100)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        summary = [line for line in out.splitlines() if "median ms per frame" in line]
        log = summary[-1].split("]: ", 1)[-1] if summary else ""
        m = re.search(r"inference ([0-9.]+)", log)
        node_inference = float(m.group(1)) if m else float("nan")
        return {"latency_ms": med_ms(lat), "latency_p90_ms": 1000 * float(np.percentile(lat, 90)),
                "latencies_ms": [round(1000 * x, 1) for x in lat], "frames_lost_in_transit": tester.lost, "node_inference_ms": node_inference, "e2e_over_node_inference": med_ms(lat) / node_inference,
                "node_log": log}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        ex.shutdown(timeout_sec=5)
        tester.node.destroy_node()
        rclpy.shutdown(context=ctx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="dna_b0", help="registry name used when --weights is not given")
    ap.add_argument("--weights", default=None, help="a dna-depth checkpoint (default: random-init --model)")
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--frames", type=int, default=15, help="frames for the latency medians")
    ap.add_argument("--rate", type=float, default=30.0, help="camera rate of the drop test (Hz)")
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--no-process", action="store_true", help="skip the separate-process run")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="dna_bench_")
    try:
        weights = args.weights
        if weights is None:
            torch.manual_seed(0)
            net = dna_depth_core.build_model(args.model, height=args.height, width=args.width)
            weights = os.path.join(tmp, f"{args.model}.safetensors")
            dna_depth_core.save_checkpoint(net, weights)
        frames, K, source = load_frames(args.width, args.height)
        res = {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.processor() or platform.platform()}",
            "load_average_at_start": os.getloadavg(),
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "torch_threads": torch.get_num_threads(), "numpy": np.__version__, "opencv": cv2.__version__,
                         "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)")},
            "model": args.model if args.weights is None else args.weights, "input": f"{args.width}x{args.height}",
            "frames_source": source, "device": "cpu",
        }
        bare = BareModel(weights, frames[0])
        print(f"node in-process ({args.model}, {args.width}x{args.height}, CPU) ...", flush=True)
        res["in_process"] = node_in_process(weights, frames, K, args, bare)
        print(json.dumps(res["in_process"]), flush=True)
        if not args.no_process:
            print("node as a separate process ...", flush=True)
            res["process"] = node_process(weights, frames, K, args)
            print(json.dumps(res["process"]), flush=True)
        n = res["in_process"]
        res["summary"] = {
            "bare_model_ms": n["bare_model_ms"],
            "node_inference_ms": n["stages_ms"]["inference"],
            "ros_overhead_ms": n["ros_overhead_ms"],
            "ros_overhead_pct_of_inference": 100 * n["ros_overhead_ratio"],
            "e2e_latency_in_process_ms": n["latency_ms"],
            "e2e_over_bare_model_in_process": n["e2e_over_bare_model"],
            "e2e_latency_process_ms": res.get("process", {}).get("latency_ms"),
            "e2e_over_node_inference_process": res.get("process", {}).get("e2e_over_node_inference"),
            "rate_test": n["rate_test"],
        }
        print(json.dumps(res["summary"], indent=1))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
