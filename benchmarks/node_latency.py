#!/usr/bin/env python
"""Depth node end-to-end latency and throughput (on the CPU by default, ``--device cuda`` on a GPU), against the bare
model call.

Run it inside a loopback-only network namespace (DDS never leaves the machine):

    . scripts/dev/env.sh
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

Weights: ``--weights`` or, by default, a randomly initialised ``--model``. The inference time does not depend on the
weights, but the node's per-frame work can: with ``--scale-mode camera_height`` a trained network's road is a plane
and the ground fit runs its whole RANSAC every frame, while an untrained network's nearly constant depth makes it
give up at once. ``--untrained`` therefore measures a second weight set in the same run: the untrained starting
network of the same architecture (seed 0, ImageNet encoder where offline weights exist, disparity head bias -5:
the training recipe's start), and the report shows both per-frame stage times side by side. The frames are the
real KITTI frames of ../shared/data/kitti_tiny resized to the input size when present, synthetic street frames
otherwise (``dna_depth_core.data.synthetic.synthetic_frames``).

    # the per-frame gap: a kitti_tiny_adapt network (96x320) vs its untrained start, metric scale from the camera
    unshare -n bash -c 'ip link set lo up && ROS_DOMAIN_ID=131 python benchmarks/node_latency.py --weights \
        runs/kitti_tiny_adapt/train/checkpoints/latest/model.safetensors --width 320 --height 96 \
        --scale-mode camera_height --camera-height 1.65 --untrained --no-process --out node_gap.json'

``--outputs nav2`` (repeatable with ``default``: each set runs in-process in turn, in one invocation) measures the
node with the outputs Nav2 and SLAM use on as well (:data:`OUTPUT_SETS`): the clearing cloud, ``points/obstacles``,
``scan`` and ``depth/scale``, from a fixed scale and the mounting ground plane (KITTI's 1.65 m); the latency is
then to the last of all of them.

The graph, the camera, the collection of the outputs by stamp and the node process come from
:mod:`dna_depth_ros.harness` (shared with the node tests and the bag demo); it confines DDS to loopback before
rclpy starts. The DDS domain is ``ROS_DOMAIN_ID`` when set, else 65.
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import dna_depth_core
from dna_depth_core.data.synthetic import synthetic_frames
from dna_depth_core.camera import resize_K
from dna_depth_core.training.config import load_config
from dna_depth_core.training.networks import build_depth_net
from dna_depth_ros.harness import DEFAULT_OUTPUTS, Graph, NodeProcess

SYNTH_RECIPE = Path(__file__).resolve().parents[1] / "config" / "train" / "train_synthetic.yaml"

REPO = Path(__file__).resolve().parents[1]
KITTI = REPO.parent / "shared" / "data" / "kitti_tiny" / "2011_09_26"
K_KITTI = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
DOMAIN_ID = int(os.environ.get("ROS_DOMAIN_ID") or 65)
POLL = 0.001  # seconds between checks while waiting (arrival times are taken in the callbacks)

# Output sets: node parameters and the topics a frame's latency waits for.
OUTPUT_SETS = {
    "default": ({}, DEFAULT_OUTPUTS),
    "nav2": ({"scale.mode": "fixed", "scale.factor": 30.0, "scale.camera_height": 1.65,
              "points.far_mode": "clearing", "publish.obstacles": True, "publish.scan": True,
              "publish.scale": True},
             DEFAULT_OUTPUTS + ("points/obstacles", "scan", "depth/scale")),
}


def load_frames(width: int, height: int) -> tuple[list[np.ndarray], np.ndarray, str]:
    drive = KITTI / "2011_09_26_drive_0023_sync" / "image_02" / "data"
    paths = sorted(drive.glob("*.png"))
    if paths:
        frames = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (width, height),
                             interpolation=cv2.INTER_AREA) for p in paths]
        return frames, resize_K(K_KITTI, (1242, 375), (width, height)), "KITTI drive 0023 (real)"
    frames = synthetic_frames(7, width, height, seed=1)
    return [rgb for rgb, _, _ in frames], frames[0][1], "synthetic street"


def med_ms(values) -> float:
    return 1000.0 * float(np.median(values))


class BareModel:
    """The bare network call on one frame: ``net(x)``, x (1, 3, H, W) in [0, 1], no pre/post-processing."""

    def __init__(self, weights: str, frame: np.ndarray, device: str = "cpu"):
        self.device = torch.device(device)
        self.net = dna_depth_core.load_checkpoint(weights).eval().to(self.device)
        self.x = (torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous().float() / 255.0).to(self.device)
        for _ in range(3):
            self()

    @torch.inference_mode()
    def __call__(self) -> float:
        t0 = time.perf_counter()
        self.net(self.x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0


class Feed:
    """The benchmark's camera: frame ``i`` goes out with stamp ``1000 s + i us`` (unique per frame index) through
    a harness :class:`~dna_depth_ros.harness.Camera`, with its camera_info; latencies are measured by the
    camera (publish time) and the graph (arrival of the last output)."""

    def __init__(self, graph: Graph, camera, frames, K, outputs):
        self.graph, self.camera, self.frames, self.K, self.outputs = graph, camera, frames, K, outputs
        self.lost = 0

    def send(self, i: int, frame: int = 0):
        return self.camera.send(self.frames[frame % len(self.frames)], (1000 + i // 1000, (i % 1000) * 1000),
                                K=self.K, frame_id="camera_optical")

    def latency(self, key):
        return self.camera.latency(key, self.outputs)


def sequential_latency(feed: Feed, n: int, timeout: float, start: int, bare=None):
    """Publish ``n`` frames one at a time and time each until all outputs arrived. With ``bare``, the bare model
    call is timed before each frame, while the node is idle: both series see the same machine load."""
    lat, model, lost = [], [], 0
    while len(lat) < n:
        if lost > n:
            raise TimeoutError(f"{lost} frames without an answer")
        if bare is not None:
            time.sleep(0.05)  # let the tester finish with the previous frame's messages first
            model.append(bare())
        key = feed.send(start + len(lat) + 1000 * lost, frame=len(lat))
        try:
            lat.append(feed.graph.wait_for(lambda: feed.latency(key), timeout, "outputs"))
        except TimeoutError:  # lost in transit (best-effort input): not a latency sample
            lost += 1
            if bare is not None:
                model.pop()
    feed.lost += lost
    return lat, model


def first_answer(feed: Feed, timeout: float, alive=lambda: True) -> None:
    """Ping until the node answers with all outputs: until discovery completes both ways (the node skips frames
    while its publishers see no subscriber, and has no intrinsics before a camera_info arrived)."""
    counter = itertools.count(50_000)
    feed.graph.send_until_answered(lambda: feed.send(next(counter)), feed.outputs, timeout=timeout, every=5.0,
                                   alive=alive)


def node_params(weights: str, args) -> dict:
    """The node's parameters for a run: the weights, the CPU, the backend, and the metric-scale mode."""
    params = {"weights": weights, "device": args.device, "backend": args.backend, "scale.mode": args.scale_mode}
    if args.scale_mode == "camera_height":
        params["scale.camera_height"] = args.camera_height
    return params


def untrained_checkpoint(weights: str, path: str) -> str:
    """Save the untrained starting network of ``weights``'s architecture to ``path``: the synthetic recipe's start
    (config/train/train_synthetic.yaml through the trainer's ``build_depth_net``: ImageNet encoder, disparity head
    bias -5) at seed 0, with a random encoder where no offline ImageNet weights exist for the architecture."""
    cfg = dna_depth_core.load_checkpoint(weights).config
    overrides = [f"model={cfg.name}", f"height={cfg.height}", f"width={cfg.width}"]
    torch.manual_seed(0)
    try:
        net = build_depth_net(load_config(str(SYNTH_RECIPE), overrides))
    except (ImportError, ValueError, FileNotFoundError, RuntimeError):
        net = build_depth_net(load_config(str(SYNTH_RECIPE), overrides + ["pretrained=null"]))
    dna_depth_core.save_checkpoint(net, path, provenance={"source": f"untrained start of {os.path.basename(weights)}"})
    return path


def node_in_process(weights, frames, K, args, bare: BareModel, output_set: str = "default") -> dict:
    ns = "/bench"
    params, topics = OUTPUT_SETS[output_set]
    with Graph(domain_id=DOMAIN_ID, name="bench_tester", poll=POLL) as graph:
        node = graph.start_node(ns, {**node_params(weights, args), **params})
        outputs = graph.collect_outputs(ns, topics, keep=0)
        camera = graph.camera(ns)
        feed = Feed(graph, camera, frames, K, outputs)
        camera.wait_matched()
        graph.wait_node_ready(node)
        timeout = 60.0
        first_answer(feed, 120)
        sequential_latency(feed, 1, timeout, start=0)  # warm-up
        node.timings.clear()
        lat, model = sequential_latency(feed, args.frames, 30.0, start=100, bare=bare)
        t = list(node.timings)
        stage = {k: med_ms([x[k] for x in t]) for k in
                 ("convert", "preprocess", "inference", "postprocess", "outputs", "publish", "total")}
        overhead = [x["convert"] + x["outputs"] + x["publish"] for x in t]
        result = {"backend_reason": node.estimator.backend_reason, "outputs": list(topics), "params": params,
                  "bare_model_ms": med_ms(model), "bare_model_p90_ms": 1000 * float(np.percentile(model, 90)),
                  "latency_ms": med_ms(lat), "latencies_ms": [round(1000 * x, 1) for x in lat],
                  "latency_p90_ms": 1000 * float(np.percentile(lat, 90)),
                  "throughput_hz_sequential": 1.0 / float(np.median(lat)), "stages_ms": stage,
                  "ros_overhead_ms": med_ms(overhead),
                  "ros_overhead_ratio": float(np.median([o / x["inference"] for o, x in zip(overhead, t)])),
                  "e2e_over_bare_model": float(np.median([a / b for a, b in zip(lat, model)])),
                  "fps_end_to_end": 1.0 / float(np.median(lat)),
                  "fps_inference_only": 1000.0 / stage["inference"],
                  "ground_fits_accepted": node.estimator.ground.updates if node.estimator.ground else None}
        result["e2e_fps_over_inference_fps"] = result["fps_end_to_end"] / result["fps_inference_only"]

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
            feed.send(10_000 + i, frame=i)
        t_pub = time.perf_counter() - t_start

        def settled():
            s = node.stats
            done = s.processed + s.dropped + s.skipped_no_subscribers + s.rejected + s.failed == s.received
            return done and time.perf_counter() - t_start - t_pub > 1.0
        graph.wait_for(settled, 120, "the node to finish the last frame")
        s = node.stats
        processed = s.processed - before["processed"]
        result["rate_test"] = {
            "input_hz": args.rate, "seconds": t_pub, "published": n,
            "received": s.received - before["received"], "processed": processed,
            "dropped": s.dropped - before["dropped"], "output_hz": processed / t_pub,
        }
        return result


def node_process(weights, frames, K, args) -> dict:
    ns = "/benchp"
    with NodeProcess(namespace=ns, params=node_params(weights, args), domain_id=DOMAIN_ID) as node, \
            Graph(domain_id=DOMAIN_ID, name="bench_tester", poll=POLL) as graph:
        outputs = graph.collect_outputs(ns, DEFAULT_OUTPUTS, keep=0)
        camera = graph.camera(ns)
        feed = Feed(graph, camera, frames, K, outputs)
        graph.wait_for(lambda: camera.image.get_subscription_count() >= 1 or not node.alive(), 120,
                       "the node process to subscribe")
        if not node.alive():
            raise RuntimeError(f"depth_node exited: {node.wait()[1][-2000:]}")
        graph.wait_publisher(f"{ns}/points", timeout=120)
        first_answer(feed, 120, alive=node.alive)
        sequential_latency(feed, 1, 120, start=0)  # warm-up
        # No interleaved bare calls here: the node process's idle OpenMP threads would compete with them.
        lat, _ = sequential_latency(feed, args.frames, 30.0, start=100)
        _, out = node.stop(timeout=60)
        summary = [line for line in out.splitlines() if "median ms per frame" in line]
        log = summary[-1].split("]: ", 1)[-1] if summary else ""
        m = re.search(r"inference ([0-9.]+)", log)
        node_inference = float(m.group(1)) if m else float("nan")
        return {"latency_ms": med_ms(lat), "latency_p90_ms": 1000 * float(np.percentile(lat, 90)),
                "latencies_ms": [round(1000 * x, 1) for x in lat], "frames_lost_in_transit": feed.lost,
                "node_inference_ms": node_inference, "e2e_over_node_inference": med_ms(lat) / node_inference,
                "node_log": log}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="dna_b0", help="registry name used when --weights is not given")
    ap.add_argument("--weights", default=None, help="a dna-depth checkpoint (default: random-init --model)")
    ap.add_argument("--height", type=int, default=192)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--frames", type=int, default=15, help="frames for the latency medians")
    ap.add_argument("--rate", type=float, default=30.0, help="camera rate of the drop test (Hz)")
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--outputs", action="append", choices=sorted(OUTPUT_SETS), default=None,
                    help="output set of the in-process run: default (depth/image, depth/camera_info, points) or "
                         "nav2 (also the clearing cloud, points/obstacles, scan, depth/scale); repeat for both "
                         "(default: default)")
    ap.add_argument("--no-process", action="store_true", help="skip the separate-process run")
    ap.add_argument("--backend", default="auto", help="the node's backend parameter (default auto)")
    ap.add_argument("--device", default="cpu", help="the node's device parameter and the bare call's (cpu, cuda)")
    ap.add_argument("--scale-mode", default="none", choices=("none", "fixed", "camera_height"),
                    help="the node's scale.mode (camera_height runs the ground-plane fit every frame)")
    ap.add_argument("--camera-height", type=float, default=1.65, help="scale.camera_height in metres (KITTI's)")
    ap.add_argument("--untrained", action="store_true",
                    help="also measure the untrained starting network of the same architecture (per-frame gap)")
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
            "frames_source": source, "device": args.device,
        }
        weight_sets = [("given" if args.weights else "random", weights)]
        if args.untrained:
            weight_sets.append(("untrained", untrained_checkpoint(weights, os.path.join(tmp, "untrained.safetensors"))))
        res["node_params"] = node_params("<weights>", args)
        res["runs"] = {}
        for label, w in weight_sets:
            run = res["runs"][label] = {"weights": w if label != "untrained" else "untrained start (seed 0, bias -5)"}
            bare = BareModel(w, frames[0], args.device)
            sets = args.outputs or ["default"]
            for output_set in sets:
                print(f"node in-process ({label}, {args.width}x{args.height}, {args.device}, outputs {output_set}) "
                      f"...", flush=True)
                key = "in_process" if output_set == sets[0] else f"in_process_{output_set}"
                run[key] = node_in_process(w, frames, K, args, bare, output_set)
                print(json.dumps(run[key]), flush=True)
            if not args.no_process:
                print("node as a separate process ...", flush=True)
                run["process"] = node_process(w, frames, K, args)
                print(json.dumps(run["process"]), flush=True)
            n = run["in_process"]
            run["summary"] = {
                "backend_reason": n["backend_reason"],
                "bare_model_ms": n["bare_model_ms"],
                "node_stages_ms": n["stages_ms"],
                "node_inference_ms": n["stages_ms"]["inference"],
                "node_postprocess_ms": n["stages_ms"]["postprocess"],
                "ground_fits_accepted": n["ground_fits_accepted"],
                "ros_overhead_ms": n["ros_overhead_ms"],
                "ros_overhead_pct_of_inference": 100 * n["ros_overhead_ratio"],
                "e2e_latency_in_process_ms": n["latency_ms"],
                "fps_end_to_end": n["fps_end_to_end"],
                "fps_inference_only": n["fps_inference_only"],
                "e2e_fps_over_inference_fps": n["e2e_fps_over_inference_fps"],
                "e2e_over_bare_model_in_process": n["e2e_over_bare_model"],
                "e2e_latency_process_ms": run.get("process", {}).get("latency_ms"),
                "e2e_over_node_inference_process": run.get("process", {}).get("e2e_over_node_inference"),
                "rate_test": n["rate_test"],
                "outputs": sets[0],
            }
            for output_set in sets[1:]:
                m = run[f"in_process_{output_set}"]
                run["summary"][f"ros_overhead_ms_{output_set}"] = m["ros_overhead_ms"]
                run["summary"][f"ros_overhead_pct_of_inference_{output_set}"] = 100 * m["ros_overhead_ratio"]
                run["summary"][f"stages_ms_{output_set}"] = m["stages_ms"]
            print(json.dumps(run["summary"], indent=1))
        first = next(iter(res["runs"].values()))
        res["in_process"], res["summary"] = first["in_process"], first["summary"]  # the first weight set's, as before
        if "process" in first:
            res["process"] = first["process"]
        if args.untrained:
            a, b = res["runs"][weight_sets[0][0]]["summary"], res["runs"]["untrained"]["summary"]
            res["trained_vs_untrained"] = {
                k: [a[k], b[k]] for k in ("node_inference_ms", "node_postprocess_ms", "e2e_latency_in_process_ms",
                                          "fps_end_to_end", "ground_fits_accepted")}
            print("trained vs untrained: " + json.dumps(res["trained_vs_untrained"]), flush=True)
        res["load_average_at_end"] = os.getloadavg()
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
