#!/usr/bin/env python
"""Soak test of depth_node: a 10 Hz camera for 10 minutes with malformed messages interleaved, and the node's
memory with single oversized frames.

Run it inside a loopback-only network namespace (DDS never leaves the machine):

    . scripts/dev/env.sh
    unshare -n bash -c 'ip link set lo up && python benchmarks/soak/soak.py --out benchmarks/results/soak'

Soak (``--duration`` s, default 600): the node runs as a separate process (``depth_node`` console script, through
:class:`dna_depth_ros.harness.NodeProcess`); a tester process publishes ``--size`` rgb8 frames (the real KITTI
frames of ../shared when present, else synthetic street frames) with their camera_info at ``--rate`` Hz from a
``--camera-qos`` camera, and between frames ``--malformed-rate`` malformed messages per second, alternately a bad
image (unknown encoding, truncated data, wrong step, empty, size without data) and a bad camera_info (fx 1e-30, NaN
in D, ROI outside the image, binning 100000, a normalised P). It subscribes to ``depth`` and
``depth/camera_info`` reliable (as RViz, RTAB-Map) and to ``points`` best effort (as Nav2).

Measured: delivery in (node ``received`` / images sent) and out (depth and camera_info messages received /
frames the node processed; points likewise), latency from publishing an image to receiving its depth (p50, p90,
p99, max), the node's resident memory every 5 s (slope over the run and over its second half, MB/min; peak =
VmHWM), crashes (the process alive throughout, exit code 0 on SIGINT, no traceback), the node's counters.

Big frames (``--big-frames``): a fresh node per case; after warm-up its peak RSS (VmHWM) is read, then one
8000x6000 rgb8 Image (144 MB) is sent, and (``image_transport: compressed``) one all-zero 8000x6000 PNG; the
node's depth answer and its VmHWM afterwards are recorded.

Writes ``OUT.json`` and ``OUT.md`` (machine, versions, date, load, configuration, results).
"""
from __future__ import annotations

import argparse
import array
import datetime
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

import dna_depth_core
from dna_depth_core import machine
from dna_depth_core.camera import resize_K
from dna_depth_core.data.synthetic import synthetic_frames
from dna_depth_ros import conversions as conv
from dna_depth_ros.harness import Graph, NodeProcess, make_header

REPO = Path(__file__).resolve().parents[2]
KITTI = REPO.parent / "shared" / "data" / "kitti_tiny" / "2011_09_26"
K_KITTI = np.array([[721.5377, 0.0, 609.5593], [0.0, 721.5377, 172.854], [0.0, 0.0, 1.0]])
DOMAIN_ID = int(os.environ.get("ROS_DOMAIN_ID") or 152)
FRAME_ID = "camera_optical_frame"


def load_frames(width: int, height: int) -> tuple[list[np.ndarray], np.ndarray, str]:
    paths = sorted((KITTI / "2011_09_26_drive_0023_sync" / "image_02" / "data").glob("*.png"))
    if paths:
        frames = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (width, height),
                             interpolation=cv2.INTER_AREA) for p in paths]
        K = K_KITTI if (width, height) == (1242, 375) else resize_K(K_KITTI, (1242, 375), (width, height))
        return frames, K, "KITTI drive 0023 (real)"
    frames = synthetic_frames(7, width, height, seed=1)
    return [rgb for rgb, _, _ in frames], frames[0][1], "synthetic street"


# ----------------------------------------------------------------------------------------------------------------
# Malformed messages
# ----------------------------------------------------------------------------------------------------------------
def bad_image(i: int, rgb: np.ndarray, header) -> Image:
    """The i-th malformed image (five kinds, in turn)."""
    msg = conv.rgb_to_image(rgb, header, "rgb8")
    kind = i % 5
    if kind == 0:
        msg.encoding = "yuv_weird"
    elif kind == 1:
        msg.data = msg.data[: len(msg.data) // 3]
    elif kind == 2:
        msg.step = msg.width * 3 - 7
    elif kind == 3:
        msg = Image(header=header, height=0, width=0, encoding="rgb8", step=0)
    else:
        msg = Image(header=header, height=4000, width=6000, encoding="rgb8", step=18000,
                    data=array.array("B", b"\x00" * 64))
    return msg


def bad_info(i: int, K: np.ndarray, size: tuple[int, int], header) -> CameraInfo:
    """The i-th malformed camera_info (five kinds, in turn)."""
    good = conv.make_camera_info(K, size[0], size[1], header)
    kind = i % 5
    if kind == 0:
        k = np.asarray(good.k).reshape(3, 3).copy()
        k[0, 0] = k[1, 1] = 1e-30
        good.k = k.reshape(-1)
        good.p = np.hstack([k, np.zeros((3, 1))]).reshape(-1)
    elif kind == 1:
        good.d = array.array("d", [0.0, float("nan"), 0.0, 0.0, 0.0])
    elif kind == 2:
        good.roi.x_offset, good.roi.width, good.roi.height = size[0] - 10, 500, size[1]
    elif kind == 3:
        good.binning_x = good.binning_y = 100000
    else:
        good.p = (np.asarray(good.p) / K[0, 0]).tolist()
    return good


# ----------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------
def percentiles_ms(values: list[float]) -> dict:
    if not values:
        return {}
    a = np.asarray(values) * 1000.0
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max()), "n": int(a.size)}


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 3:
        return None
    t, m = np.asarray(samples, dtype=np.float64).T
    return float(np.polyfit(t / 60.0, m, 1)[0])


def parse_summary(output: str) -> dict:
    """The node's shutdown counters (received, processed, ...) from its output."""
    m = re.search(r"received (\d+), processed (\d+), dropped (\d+), skipped \(no subscribers\) (\d+), "
                  r"rejected (\d+), failed (\d+)", output)
    if not m:
        return {}
    keys = ("received", "processed", "dropped", "skipped", "rejected", "failed")
    return dict(zip(keys, (int(x) for x in m.groups())))


# ----------------------------------------------------------------------------------------------------------------
# Soak
# ----------------------------------------------------------------------------------------------------------------
def soak(args, weights: str, frames, K, source: str) -> dict:
    ns = "/soak"
    size = (frames[0].shape[1], frames[0].shape[0])
    params = {"weights": weights, "device": "cpu", "scale.mode": "fixed", "scale.factor": 10.0,
              "points.decimation": args.decimation, "diagnostics.period": 1.0}
    env = {"FASTDDS_DEFAULT_PROFILES_FILE": args.dds_profile} if args.dds_profile else None
    best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
    with Graph(domain_id=DOMAIN_ID, name="soak_tester") as graph, \
            NodeProcess(namespace=ns, params=params, domain_id=DOMAIN_ID, env=env) as node:
        graph.collect(f"{ns}/depth/image", keep=0)
        graph.collect(f"{ns}/depth/camera_info", keep=0)
        graph.collect(f"{ns}/points", qos=best_effort, keep=0)
        camera = graph.camera(ns, reliable=args.camera_qos == "reliable")
        graph.wait_for(lambda: camera.image.get_subscription_count() >= 1 or not node.alive(), 180,
                       "the node process to subscribe")
        if not node.alive():
            raise RuntimeError(f"depth_node exited: {node.output[-3000:]}")
        graph.wait_publisher(f"{ns}/points")
        # Discovery both ways: ping until the node answers, then start counting.
        ping = iter(range(10**9))
        graph.send_until_answered(lambda: camera.send(frames[0], (10, next(ping)), K=K, frame_id=FRAME_ID),
                                  [f"{ns}/depth/image"], timeout=120, alive=node.alive)
        time.sleep(2.0)
        memory, sent, bad_images, bad_infos, alive_throughout = [], [], 0, 0, True
        period = 1.0 / args.rate
        bad_every = max(1, round(args.rate / args.malformed_rate)) if args.malformed_rate > 0 else None
        t0 = time.monotonic()
        next_mem = t0
        tick = 0
        load_start = machine.load_average()
        while time.monotonic() - t0 < args.duration:
            target = t0 + tick * period
            time.sleep(max(0.0, target - time.monotonic()))
            header = make_header((1000 + tick // 1000, (tick % 1000) * 1000), FRAME_ID)
            sent.append(camera.send(frames[tick % len(frames)], header, K=K))
            if bad_every and tick % bad_every == bad_every // 2:
                # half a period later, between two frames: a malformed image or camera_info, in turn
                time.sleep(period / 2)
                bh = make_header((2000 + tick // 1000, (tick % 1000) * 1000), FRAME_ID)
                if (bad_images + bad_infos) % 2 == 0:
                    camera.image.publish(bad_image(bad_images, frames[0], bh))
                    bad_images += 1
                else:
                    camera.info.publish(bad_info(bad_infos, K, size, bh))
                    bad_infos += 1
            if time.monotonic() >= next_mem:
                mem = node.memory()
                if mem:
                    memory.append((time.monotonic() - t0, mem["rss_mb"], mem["peak_rss_mb"]))
                next_mem += 5.0
            alive_throughout = alive_throughout and node.alive()
            if not node.alive():
                break
            tick += 1
        elapsed = time.monotonic() - t0
        time.sleep(5.0)  # the last frames' outputs
        load_end = machine.load_average()
        peak = node.memory().get("peak_rss_mb")
        code, out = node.stop(timeout=120)
        depth_keys = set(graph.arrivals(f"{ns}/depth/image"))
        info_keys = set(graph.arrivals(f"{ns}/depth/camera_info"))
        points_keys = set(graph.arrivals(f"{ns}/points"))
        lat = [graph.arrival(f"{ns}/depth/image", k) - camera.sent[k] for k in sent if k in depth_keys]
    stats = parse_summary(out)
    # The ping frames before the soak count in the node's totals; their stamps are not in `sent`.
    sent_keys = set(sent)
    answered = len(sent_keys & depth_keys)
    processed_soak = stats.get("processed", 0) - (len(depth_keys - sent_keys))  # minus the pings' frames
    second_half = [(t, rss) for t, rss, _ in memory if t >= elapsed / 2]
    return {
        "config": {"duration_s": args.duration, "rate_hz": args.rate, "size": list(size), "frames": source,
                   "camera_qos": args.camera_qos, "malformed_per_s": args.malformed_rate,
                   "points_decimation": args.decimation, "dds_profile": args.dds_profile, "node_params": params},
        "elapsed_s": elapsed,
        "sent_frames": len(sent),
        "sent_malformed_images": bad_images,
        "sent_malformed_camera_info": bad_infos,
        "node": stats,
        "exit_code": code,
        "alive_throughout": alive_throughout,
        "traceback_in_output": "Traceback" in out,
        "rosout_error_in_output": "Failed to publish log message to rosout" in out,
        "pings": len(depth_keys - sent_keys),
        "input_delivery": (stats.get("received", 0) - bad_images - len(depth_keys - sent_keys)) / max(len(sent), 1),
        "depth_delivered_of_processed": answered / max(processed_soak, 1),
        "camera_info_delivered_of_processed": len(sent_keys & info_keys) / max(processed_soak, 1),
        "points_delivered_of_processed": len(sent_keys & points_keys) / max(processed_soak, 1),
        "frames_answered": answered,
        "latency_image_to_depth_ms": percentiles_ms(lat),
        "rss_mb_first_last": [memory[0][1], memory[-1][1]] if memory else None,
        "rss_slope_mb_per_min": slope_mb_per_min([(t, rss) for t, rss, _ in memory]),
        "rss_slope_second_half_mb_per_min": slope_mb_per_min(second_half),
        "peak_rss_mb": peak,
        "memory_samples": memory,
        "load_start": load_start,
        "load_end": load_end,
        "node_output_tail": out[-4000:],
    }


# ----------------------------------------------------------------------------------------------------------------
# Big frames
# ----------------------------------------------------------------------------------------------------------------
def big_frame(weights: str, compressed: bool) -> dict:
    ns = "/bigc" if compressed else "/big"
    params = {"weights": weights, "device": "cpu"}
    if compressed:
        params["image_transport"] = "compressed"
    w, h = 8000, 6000
    K = resize_K(K_KITTI, (1242, 375), (w, h))
    with Graph(domain_id=DOMAIN_ID, name="big_tester") as graph, \
            NodeProcess(namespace=ns, params=params, domain_id=DOMAIN_ID) as node:
        graph.collect(f"{ns}/depth/image", keep=1)
        camera = graph.camera(ns, compressed=compressed)
        graph.wait_for(lambda: camera.image.get_subscription_count() >= 1 or not node.alive(), 180,
                       "the node process to subscribe")
        graph.wait_publisher(f"{ns}/depth/image")
        graph.wait_for(lambda: graph.tester.count_subscribers(f"{ns}/depth/image") >= 1, 60, "our subscription")
        time.sleep(3.0)
        before = node.memory()
        if compressed:
            ok, png = cv2.imencode(".png", np.zeros((h, w, 3), np.uint8))
            payload = png.tobytes()

            def send():
                i = len(camera.sent)
                header = make_header((3000, i), FRAME_ID)
                msg = CompressedImage(header=header, format="png", data=payload)
                return camera.send(msg=msg, stamp=header, info=conv.make_camera_info(K, w, h, header))
            size_bytes = len(payload)
        else:
            rgb = np.full((h, w, 3), 90, np.uint8)
            rgb[::50] = 200

            def send():
                i = len(camera.sent)
                return camera.send(rgb, (3000, i), K=K, frame_id=FRAME_ID)
            size_bytes = rgb.nbytes
        t0 = time.monotonic()
        key = graph.send_until_answered(send, [f"{ns}/depth/image"], timeout=300, every=60.0, alive=node.alive)
        seconds = time.monotonic() - t0
        (depth,) = graph.messages(f"{ns}/depth/image", key)
        time.sleep(1.0)
        after = node.memory()
        code, out = node.stop(timeout=120)
    return {"input": f"{'all-zero PNG' if compressed else 'rgb8 Image'} {w}x{h}", "message_bytes": size_bytes,
            "sent": len(camera.sent), "answer_s": seconds, "depth_size": [depth.width, depth.height],
            "peak_rss_mb_before": before.get("peak_rss_mb"), "peak_rss_mb_after": after.get("peak_rss_mb"),
            "rss_mb_after": after.get("rss_mb"), "exit_code": code, "downscale_logged": "max_input_pixels" in out}


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [f"# Soak: depth_node ({result['date']})", "",
             f"- machine: {m['cpu']}, {m['usable_cpus']} usable cores, {m['arch']}, torch CPU capability "
             f"{m['torch_cpu_capability']}; Python {m['python']}; versions "
             + ", ".join(f"{k} {v}" for k, v in sorted(m["versions"].items()) if v),
             f"- load average at start {result['load_start']}, at end {result['load_end']}"
             f" (`uptime` before: {result['uptime_before']})",
             f"- command: `{result['command']}`", ""]
    s = result.get("soak")
    if s:
        c = s["config"]
        lat = s["latency_image_to_depth_ms"]
        lines += [
            "## Soak", "",
            f"{c['duration_s']} s at {c['rate_hz']} Hz, {c['size'][0]}x{c['size'][1]} rgb8 ({c['frames']}), "
            f"{c['camera_qos']} camera, {c['malformed_per_s']} malformed messages/s, points decimation "
            f"{c['points_decimation']}, DDS profile {c['dds_profile'] or 'none (Fast DDS as installed)'}. "
            f"Node parameters: `{json.dumps(c['node_params'])}`.", "",
            "| measure | value |", "|---|---|",
            f"| frames sent / malformed images / malformed camera_info | {s['sent_frames']} / "
            f"{s['sent_malformed_images']} / {s['sent_malformed_camera_info']} |",
            f"| node counters | {s['node']} |",
            f"| input delivery (good frames received by the node / sent) | {100 * s['input_delivery']:.1f} % |",
            f"| depth received / frames processed | {100 * s['depth_delivered_of_processed']:.1f} % |",
            f"| depth/camera_info received / processed | {100 * s['camera_info_delivered_of_processed']:.1f} % |",
            f"| points (best-effort subscriber) / processed | {100 * s['points_delivered_of_processed']:.1f} % |",
            f"| latency image -> depth p50 / p90 / p99 / max | {lat.get('p50', 0):.0f} / {lat.get('p90', 0):.0f} / "
            f"{lat.get('p99', 0):.0f} / {lat.get('max', 0):.0f} ms (n = {lat.get('n', 0)}) |",
            f"| RSS first / last sample | {s['rss_mb_first_last']} MiB |",
            f"| RSS slope, whole run / second half | {s['rss_slope_mb_per_min']:.3f} / "
            f"{s['rss_slope_second_half_mb_per_min']:.3f} MiB/min |",
            f"| peak RSS (VmHWM) | {s['peak_rss_mb']:.0f} MiB |",
            f"| crashes | {'none' if s['alive_throughout'] and s['exit_code'] == 0 else 'YES'} (exit code "
            f"{s['exit_code']}, traceback {s['traceback_in_output']}, rosout error {s['rosout_error_in_output']}) |",
            ""]
    for b in result.get("big_frames", []):
        if not lines[-1].startswith("| "):
            lines += ["## Single oversized frames", "", "| input | message | answered in | depth size | peak RSS "
                      "before -> after | exit |", "|---|---|---|---|---|---|"]
        lines.append(f"| {b['input']} | {b['message_bytes'] / 1e6:.1f} MB | {b['answer_s']:.1f} s | "
                     f"{b['depth_size'][0]}x{b['depth_size'][1]} | {b['peak_rss_mb_before']:.0f} -> "
                     f"{b['peak_rss_mb_after']:.0f} MiB | {b['exit_code']} |")
    if result.get("note"):
        lines += ["", result["note"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=600.0, help="soak length in seconds (default 600; 0 = no soak)")
    p.add_argument("--rate", type=float, default=10.0, help="camera rate in Hz (default 10)")
    p.add_argument("--size", default="1242x375", help="camera frame size WxH (default 1242x375)")
    p.add_argument("--camera-qos", choices=("reliable", "best_effort"), default="reliable",
                   help="the camera publisher's reliability (default reliable)")
    p.add_argument("--malformed-rate", type=float, default=2.0,
                   help="malformed messages per second, images and camera_info in turn (default 2)")
    p.add_argument("--decimation", type=int, default=1, help="the node's points.decimation (default 1)")
    p.add_argument("--model", default="dna_lite0", help="random-initialised network when no --weights "
                   "(default dna_lite0)")
    p.add_argument("--input-size", default="96x320", help="network input HxW of the random network "
                   "(default 96x320)")
    p.add_argument("--weights", help="a checkpoint instead of a random network")
    p.add_argument("--big-frames", action="store_true", help="also measure single 8000x6000 frames (raw, PNG)")
    p.add_argument("--dds-profile", help="FASTDDS_DEFAULT_PROFILES_FILE for the node process")
    p.add_argument("--note", default="", help="a line for the report (e.g. 'loaded machine')")
    p.add_argument("--out", required=True, help="output path without extension (.json and .md are written)")
    args = p.parse_args(argv)
    uptime_before = os.popen("uptime").read().strip()
    weights = args.weights
    tmp = tempfile.TemporaryDirectory()
    if weights is None:
        h, w = (int(v) for v in args.input_size.split("x"))
        torch.manual_seed(0)
        net = dna_depth_core.build_model(args.model, height=h, width=w)
        weights = str(Path(tmp.name) / f"{args.model}_{h}x{w}.safetensors")
        dna_depth_core.save_checkpoint(net, weights)
    width, height = (int(v) for v in args.size.split("x"))
    frames, K, source = load_frames(width, height)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine.describe(), "uptime_before": uptime_before, "command": " ".join(sys.argv),
              "weights": args.weights or f"random {args.model} {args.input_size}", "note": args.note,
              "load_start": machine.load_average()}
    if args.duration > 0:
        result["soak"] = soak(args, weights, frames, K, source)
    if args.big_frames:
        result["big_frames"] = [big_frame(weights, compressed=False), big_frame(weights, compressed=True)]
    result["load_end"] = machine.load_average()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
