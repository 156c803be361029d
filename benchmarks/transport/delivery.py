#!/usr/bin/env python3
"""Delivery and latency of camera-sized ROS 2 messages between two processes on loopback (issue 12).

Measures, for the DDS set-up in force (Fast DDS as installed, optionally an XML profile or
FASTDDS_BUILTIN_TRANSPORTS), how many of the messages one process publishes another process receives, and how
late (header stamp -> receive):

* ``input``: a camera (separate process) publishes ``image`` (rgb8) + ``camera_info`` with the same stamp, at
  10/30 Hz, 640x480 / 1242x375 / 1920x1080, reliable or best effort; a subscriber with the node's input QoS
  (reliable, best_effort = the node's default, sensor_data = rclpy's qos_profile_sensor_data) receives them and
  converts the images as the node would (numpy view, resize to 640x192, float32): every one in the callback
  (``--sub-work convert``, the default: a subscriber that must handle every frame) or, like depth_node, only
  the latest one in a worker thread (``--sub-work node``).
* ``output``: a process that builds and publishes what ``depth_node`` publishes per frame (``depth`` 32FC1,
  ``depth/camera_info``, organised xyz ``points``; built with the node's own conversion functions) at the
  camera rate, to a reliable (RViz-like, depth 10) or best-effort (SensorDataQoS, Nav2-like) subscriber that
  copies the data out of the messages.

Every cell runs a fresh publisher and subscriber process. The tool records per cell: sent, received, delivery
per cent, latency p50/p90/p99/max, Fast DDS ``message_lost`` events, the UDP counters of the (private) network
namespace (datagrams, receive-buffer overflows; from them the data path, UDP or shared memory), the size of the
publisher's own Fast DDS shared-memory segment and whether the subscriber mapped it, CPU time of both processes,
the machine's load average and CPU busy fraction during the cell (the machine is shared: say the load with every
number). It also runs the prototype of the "publishers matched but frames do not arrive" rule
(``DeliveryMonitor`` / ``classify``) in the subscriber and reports its verdict.

DDS never leaves loopback: the tool refuses to run unless the only network interface is ``lo`` and re-executes
itself under ``unshare -n`` (with ``lo`` up; needs root, else start it inside ``unshare -rn``) when it is not
already isolated; ROS_AUTOMATIC_DISCOVERY_RANGE is forced to LOCALHOST and ROS_DOMAIN_ID to ``--domain-id``
(default 100). Inherited Fast DDS variables (FASTDDS_DEFAULT_PROFILES_FILE, FASTDDS_BUILTIN_TRANSPORTS, ...) are
cleared in the workers unless given with the options below.

Examples::

    . scripts/dev/env.sh      # scripts/env.sh in older checkouts
    # Fast DDS as installed, input direction, like depth_node (latest frame converted in a worker thread)
    python benchmarks/transport/delivery.py run --direction input --sub-work node --label before \
        --out /tmp/transport_before
    # the shipped profile, rendered for the tool's topics, on the node's side only (the camera unchanged)
    python benchmarks/transport/render_profile.py --topics /image /camera_info -o /tmp/dna_dds.xml
    python benchmarks/transport/delivery.py run --direction input --sub-work node --label after \
        --profile /tmp/dna_dds.xml --profile-side sub --out /tmp/transport_after
    # outputs: the profile on the node (publisher) side
    python benchmarks/transport/delivery.py run --direction output --label after --profile /tmp/dna_dds.xml \
        --profile-side pub --out /tmp/transport_out_after
    # one comparison table; re-apply the current loss rule to old reports
    python benchmarks/transport/delivery.py compare /tmp/transport_before.json /tmp/transport_after.json
    python benchmarks/transport/delivery.py rerender /tmp/transport_before.json

Cost: one cell is ``--duration`` seconds plus 5-20 s of start-up and drain (more on a loaded machine); the full
input matrix is 24 cells (6 are incompatible QoS pairs and end after ``--nomatch-duration``), the full output
matrix 24: about 15 min each at 20 s per cell.
"""
from __future__ import annotations

import argparse
import array
import datetime as _dt
import hashlib
import json
import os
import platform
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]

# Environment variables that change Fast DDS / rmw behaviour; cleared in the workers unless the run sets them, so
# that nothing inherited from the shell leaks into a measurement.
DDS_ENV = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "RMW_FASTRTPS_USE_QOS_FROM_XML",
           "FASTDDS_BUILTIN_TRANSPORTS", "RMW_FASTRTPS_PUBLICATION_MODE", "SKIP_DEFAULT_XML",
           "FASTDDS_ENVIRONMENT_FILE", "ROS_STATIC_PEERS", "RMW_IMPLEMENTATION", "ROS_LOCALHOST_ONLY")

INPUT_SIZES = ("640x480", "1242x375", "1920x1080")
OUTPUT_CASES = ("640x192:full", "1242x375:full", "1242x375:dec2", "1242x375:dec4")


# ================================================================================================================
# small helpers (no ROS)
# ================================================================================================================
def parse_size(s: str) -> tuple[int, int]:
    w, h = s.lower().split("x")
    return int(w), int(h)


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def udp_tcp_counters() -> dict:
    """Udp/Tcp counters of /proc/net/snmp: per network namespace, so in our private namespace only ours."""
    out = {}
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
    except OSError:
        return out
    for i in range(0, len(lines) - 1, 2):
        head, vals = lines[i].split(), lines[i + 1].split()
        proto = head[0].rstrip(":")
        if proto in ("Udp", "Tcp"):
            for k, v in zip(head[1:], vals[1:]):
                out[f"{proto}.{k}"] = int(v)
    return out


def cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat is not namespaced: includes others' jobs)."""
    f = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    v = [int(x) for x in f]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def shm_maps() -> dict:
    """Shared-memory files this process has mapped (Fast DDS segments and ports), name -> mapped bytes, and the
    segments it owns (Fast DDS keeps ``fastdds_<id>_el`` open for its own segment)."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/dev/shm/"):
                a, b = (int(x, 16) for x in parts[0].split("-"))
                name = parts[5][len("/dev/shm/"):].replace(" (deleted)", "")
                out[name] = out.get(name, 0) + (b - a)
    except OSError:
        pass
    owned = []
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            name = target.rsplit("/", 1)[-1]
            if target.startswith("/dev/shm/") and name.endswith("_el") and "port" not in name:
                owned.append(name[:-3])
    except OSError:
        pass
    return {"mapped": out, "owned": sorted(set(owned))}


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def isolated() -> bool:
    names = [n for _, n in socket.if_nameindex()]
    return names == ["lo"]


def versions() -> dict:
    v = {"python": platform.python_version()}
    try:
        from importlib.metadata import PackageNotFoundError, version
        for pkg in ("ros-rclpy", "ros-fastdds", "ros-rmw-fastrtps-cpp", "ros-fastcdr", "ros-sensor-msgs", "numpy",
                    "opencv-python"):
            try:
                v[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
    except Exception:  # pragma: no cover
        pass
    try:  # the library's own soname (the wheel version and the library version can differ)
        import glob
        libs = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libfastdds.so.*.*.*")))
        if libs:
            v["libfastdds"] = os.path.basename(libs[-1]).split(".so.")[1]
    except Exception:  # pragma: no cover
        pass
    return v


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    sysctl = {}
    for k in ("net/core/rmem_max", "net/core/wmem_max", "net/core/rmem_default", "net/core/wmem_default"):
        try:
            sysctl[k.replace("/", ".")] = int(Path("/proc/sys", k).read_text())
        except OSError:
            pass
    shm = os.statvfs("/dev/shm") if os.path.isdir("/dev/shm") else None
    return {"host": platform.node(), "kernel": platform.release(), "arch": platform.machine(), "cpu": cpu,
            "cores": os.cpu_count(), "sysctl_in_namespace": sysctl,
            "dev_shm_free_mb": round(shm.f_bavail * shm.f_frsize / 2**20) if shm else None}


# ================================================================================================================
# ROS side (workers): imported lazily so that --help and compare work without ROS
# ================================================================================================================
def _ros():
    import rclpy
    from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                           qos_profile_sensor_data)
    return rclpy, QoSProfile, HistoryPolicy, ReliabilityPolicy, DurabilityPolicy, qos_profile_sensor_data


def make_qos(kind: str, depth: int):
    """reliable / best_effort: KEEP_LAST depth, volatile (the node's _qos()); sensor_data: rclpy's profile."""
    _, QoSProfile, HistoryPolicy, ReliabilityPolicy, DurabilityPolicy, sensor = _ros()
    if kind == "sensor_data":
        return QoSProfile(history=sensor.history, depth=sensor.depth, reliability=sensor.reliability,
                          durability=sensor.durability)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=ReliabilityPolicy.RELIABLE if kind == "reliable" else ReliabilityPolicy.BEST_EFFORT,
                      durability=DurabilityPolicy.VOLATILE)


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _set_stamp(header, ns: int) -> None:
    header.stamp.sec = ns // 1_000_000_000
    header.stamp.nanosec = ns % 1_000_000_000


class _Stop:
    def __init__(self):
        self.flag = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: self.flag.set())
        signal.signal(signal.SIGINT, lambda *_: self.flag.set())


# ---------------------------------------------------------------------------------------------------------------
# output builder: the node's own recipe (conversions.depth_to_image / make_camera_info / points_to_cloud)
# ---------------------------------------------------------------------------------------------------------------
class OutputBuilder:
    """Builds depth (32FC1), depth/camera_info and an organised xyz cloud per frame the way depth_node does
    (``_cloud``: cached unit rays x depth, max range 8 m, ``conversions.points_to_cloud``)."""

    def __init__(self, w: int, h: int, points_mode: str):
        import numpy as np
        try:
            sys.path.insert(0, str(REPO))
            from dna_depth_ros import conversions as conv  # the node's conversion functions
            self.conv, self.source = conv, "dna_depth_ros.conversions"
        except Exception:  # the package may be mid-restructure: fall back to the same recipe here
            self.conv, self.source = None, "local copy"
        self.np = np
        self.w, self.h = w, h
        self.dec = 0 if points_mode == "none" else (1 if points_mode == "full" else int(points_mode[3:]))
        fx = 0.58 * w
        self.K = np.array([[fx, 0, w / 2], [0, fx, h / 2], [0, 0, 1.0]])
        rng = np.random.default_rng(0)
        self.depth = (2.0 + 20.0 * rng.random((h, w))).astype(np.float32)  # content does not matter; sizes do
        self.rays = None
        if self.dec:
            d = self.dec
            Kd = self.K.copy()
            Kd[:2] /= d
            Kd[2] = (0, 0, 1)
            hh, ww = self.depth[::d, ::d].shape
            u, v = np.meshgrid(np.arange(ww, dtype=np.float32), np.arange(hh, dtype=np.float32))
            self.rays = np.stack([(u - Kd[0, 2]) / Kd[0, 0], (v - Kd[1, 2]) / Kd[1, 1], np.ones_like(u)], -1)

    def build(self, header) -> dict:
        np = self.np
        out, t = {}, {}
        t0 = time.perf_counter()
        if self.conv:
            out["depth"] = self.conv.depth_to_image(self.depth, header, "32FC1")
        else:
            from sensor_msgs.msg import Image
            px = np.where(np.isfinite(self.depth) & (self.depth > 0), self.depth, np.nan).astype(np.float32)
            a = array.array("B")
            a.frombytes(px.tobytes())
            out["depth"] = Image(header=header, height=self.h, width=self.w, encoding="32FC1", step=4 * self.w,
                                 data=a)
        t1 = time.perf_counter()
        if self.conv:
            out["depth/camera_info"] = self.conv.make_camera_info(self.K, self.w, self.h, header)
        else:
            from sensor_msgs.msg import CameraInfo
            ci = CameraInfo(header=header, width=self.w, height=self.h, distortion_model="plumb_bob")
            ci.k = self.K.reshape(-1)
            out["depth/camera_info"] = ci
        t2 = time.perf_counter()
        if self.dec:
            d = self.dec
            dd = self.depth[::d, ::d]
            pts = self.rays * dd[..., None]
            with np.errstate(invalid="ignore"):
                far = np.einsum("ijk,ijk->ij", pts, pts) > 8.0 ** 2
            pts[far] = np.nan
            if self.conv:
                out["points"] = self.conv.points_to_cloud(pts, header)
            else:
                from sensor_msgs.msg import PointCloud2, PointField
                a = array.array("B")
                a.frombytes(np.ascontiguousarray(pts, np.float32).tobytes())
                fields = [PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
                out["points"] = PointCloud2(header=header, height=dd.shape[0], width=dd.shape[1], fields=fields,
                                            point_step=12, row_step=12 * dd.shape[1], data=a, is_dense=False)
        t3 = time.perf_counter()
        t = {"depth": t1 - t0, "depth/camera_info": t2 - t1, "points": t3 - t2}
        return out, t


# ---------------------------------------------------------------------------------------------------------------
# loss-detection prototype (what the node should run on its input)
# ---------------------------------------------------------------------------------------------------------------
class DeliveryMonitor:
    """Tells "publishers matched but frames do not arrive" apart from the normal cases, and names the cause.

    Inputs, all available to the node without extra topics:
      * graph publishers on the image topic (``node.count_publishers``) and their offered QoS
        (``get_publishers_info_by_topic``);
      * matched publishers of our image subscription (``Subscription.get_publisher_count()``);
      * rmw events on the image subscription: ``incompatible_qos`` (QoSRequestedIncompatibleQoSInfo) and
        ``message_lost`` (QoSMessageLostInfo; Fast DDS counts samples a best-effort reader never completed);
      * the header stamps of received images and camera_infos. The camera publishes one camera_info (a few
        hundred bytes, never fragmented, so it arrives) per image with the same stamp: a camera_info stamp
        without its image, after a grace time, is an image lost in transport. Without camera_info the expected
        count comes from the camera period (smallest stamp difference seen).

    Verdicts per window (``window`` s, evaluated every second; camera_infos received in the last ``grace`` s
    are not judged yet, so that a large image still in flight is not counted as lost) -- see :func:`classify`:
      NO_PUBLISHER     no publisher of the image topic on the graph
      QOS_MISMATCH     publishers on the graph but none matched: names what they offer (graph QoS) and the
                       incompatible policy (incompatible_qos event)
      STALLED          matched, but no image and no camera_info for the window (camera stopped?)
      NO_FRAMES        matched, camera_info arrives, no image -> transport drops the large samples
      LOSSY            matched, more than (1 - min_ratio) of the camera_info stamps in the window have no image
                       (without camera_info: fewer images than window / camera period) -> transport loss
      OK
    The node should warn (throttled; /diagnostics WARN) when the same non-OK verdict holds for two evaluations
    in a row, and say the cause in one line.
    """

    def __init__(self, node, sub_image, image_topic, info_topic, my_qos, window=5.0, grace=1.0, min_ratio=0.9):
        self.node, self.sub, self.topic, self.info_topic = node, sub_image, image_topic, info_topic
        self.my_qos = my_qos
        self.window, self.grace, self.min_ratio = window, grace, min_ratio
        self.images: deque = deque()  # (recv_mono, stamp_ns)
        self.infos: deque = deque()
        self.image_stamps: set = set()
        self.lost_total = 0
        self.incompatible_total = 0
        self.incompatible_policy = None
        self.min_period_ns = None
        self.last_image_stamp = None
        self.last_any = None
        self.lost_hist: deque = deque()
        self.t_start = time.monotonic()
        self.timeline: list = []

    # event callbacks
    def on_lost(self, info):
        self.lost_total = int(info.total_count)

    def on_incompatible(self, info):
        self.incompatible_total = int(info.total_count)
        try:
            from rclpy.qos import qos_policy_name_from_kind
            self.incompatible_policy = qos_policy_name_from_kind(info.last_policy_kind)
        except Exception:
            self.incompatible_policy = str(info.last_policy_kind)

    def on_image(self, stamp_ns: int):
        now = time.monotonic()
        self.images.append((now, stamp_ns))
        self.image_stamps.add(stamp_ns)
        if self.last_image_stamp is not None and stamp_ns > self.last_image_stamp:
            dt = stamp_ns - self.last_image_stamp
            self.min_period_ns = dt if self.min_period_ns is None else min(self.min_period_ns, dt)
        self.last_image_stamp = stamp_ns
        self.last_any = now

    def on_info(self, stamp_ns: int):
        now = time.monotonic()
        self.infos.append((now, stamp_ns))
        self.last_any = now

    def _publisher_qos(self) -> list:
        try:
            return [("reliable" if int(i.qos_profile.reliability) == 1 else "best_effort")
                    for i in self.node.get_publishers_info_by_topic(self.topic)]
        except Exception:
            return []

    def evaluate(self) -> dict:
        now = time.monotonic()
        lo, hi = now - self.window - self.grace, now - self.grace
        while self.images and self.images[0][0] < lo - 30:
            self.image_stamps.discard(self.images.popleft()[1])
        while self.infos and self.infos[0][0] < lo - 30:
            self.infos.popleft()
        self.lost_hist.append((now, self.lost_total))
        while self.lost_hist and self.lost_hist[0][0] < now - self.window:
            self.lost_hist.popleft()
        infos = [s for t, s in self.infos if lo <= t < hi]
        r = {"t": round(now - self.t_start, 1), "graph_publishers": self.node.count_publishers(self.topic),
             "matched": self.sub.get_publisher_count(),
             "images": sum(1 for t, _ in self.images if lo <= t < hi), "infos": len(infos),
             "infos_without_image": sum(1 for s in infos if s not in self.image_stamps),
             "message_lost_total": self.lost_total,
             "message_lost_in_window": self.lost_total - self.lost_hist[0][1],
             "incompatible_total": self.incompatible_total, "incompatible_policy": self.incompatible_policy,
             "since_last_message_s": None if self.last_any is None else round(now - self.last_any, 2),
             "camera_period_ms": None if self.min_period_ns is None else round(self.min_period_ns / 1e6, 2),
             "qos": self.my_qos}
        if r["matched"] == 0 and r["graph_publishers"] > 0:
            r["offered"] = self._publisher_qos()
        r["verdict"], r["cause"] = classify(r, self.window, self.min_ratio, warmup=self.window + self.grace,
                                            topic=self.topic)
        self.timeline.append(r)
        return r

    def summary(self) -> dict:
        return summarize(self.timeline)


def classify(r: dict, window: float = 5.0, min_ratio: float = 0.9, warmup: float = 6.0, topic: str = "image",
             qos: str | None = None) -> tuple[str, str | None]:
    """The rule, on one window's counts (a pure function: the node can copy it; ``rerender`` re-applies it to
    recorded timelines). Returns (verdict, cause)."""
    qos = qos or r.get("qos", "?")
    if r["t"] < warmup:
        return "WARMUP", None
    if r["graph_publishers"] == 0:
        return "NO_PUBLISHER", f"no publisher of '{topic}' on the graph"
    if r["matched"] == 0:
        return "QOS_MISMATCH", (f"{r['graph_publishers']} publisher(s) of '{topic}' on the graph, none matched: they "
                                f"offer {r.get('offered') or '?'}, this subscription requests {qos}; incompatible "
                                f"policy: {r.get('incompatible_policy') or '?'}")
    images, infos, missing = r["images"], r["infos"], r["infos_without_image"]
    period = r.get("camera_period_ms")
    if infos:  # camera_info (small, always arrives) is the reference: one per frame, same stamp
        expected = infos
    elif period:
        expected = int(round(window * 1000.0 / period))
        missing = max(0, expected - images)
    else:
        expected = None
    r["expected"] = expected
    lost = r.get("message_lost_in_window")
    lost_txt = "" if lost is None else f", Fast DDS message_lost +{lost}"
    big = ("best-effort input: a lost fragment loses the whole image; ship the DDS profile / use a reliable camera"
           if ("best" in qos or "sensor" in qos) else
           "reliable input: repairs do not keep up; DDS profile, socket buffers, the camera's history depth")
    since = r.get("since_last_message_s")
    if images == 0 and infos == 0 and (since is None or since > window):
        return "STALLED", "publishers matched but no image and no camera_info in the window: camera stopped?"
    if images == 0 and expected:
        return "NO_FRAMES", (f"publishers matched, camera_info arrives ({infos} in {window:.0f} s) but no image"
                             f"{lost_txt}: the transport drops the large samples ({big})")
    if expected and missing > (1.0 - min_ratio) * expected:
        return "LOSSY", (f"{missing} of {expected} frames in {window:.0f} s lost between camera and node{lost_txt}: "
                         f"transport ({big})")
    return "OK", None


def summarize(timeline: list) -> dict:
    """Most frequent verdict after warm-up, leaving out the NO_PUBLISHER windows after the camera has gone."""
    steady = [x for x in timeline if x["verdict"] != "WARMUP"]
    while steady and steady[-1]["verdict"] == "NO_PUBLISHER":
        steady.pop()
    counts: dict = {}
    for x in steady:
        counts[x["verdict"]] = counts.get(x["verdict"], 0) + 1
    main = max(counts, key=counts.get) if counts else "n/a"
    cause = next((x.get("cause") for x in steady if x["verdict"] == main and x.get("cause")), None)
    return {"verdict": main, "counts": counts, "cause": cause, "timeline": timeline}


# ---------------------------------------------------------------------------------------------------------------
# worker: publisher
# ---------------------------------------------------------------------------------------------------------------
def worker_pub(a) -> int:
    rclpy = _ros()[0]
    from rclpy.signals import SignalHandlerOptions
    import numpy as np
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    stop = _Stop()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("delivery_pub")
    qos = make_qos(a.qos, a.depth)
    w, h = parse_size(a.size)
    t_cpu0 = cpu_seconds()
    if a.mode == "input":
        img = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=3 * w)
        px = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
        buf = array.array("B")
        buf.frombytes(px.tobytes())
        img.data = buf
        img.header.frame_id = "camera_optical_frame"
        info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
        info.header.frame_id = "camera_optical_frame"
        info.k = [0.58 * w, 0, w / 2, 0, 0.58 * w, h / 2, 0, 0, 1]
        info.p = [0.58 * w, 0, w / 2, 0, 0, 0.58 * w, h / 2, 0, 0, 0, 1, 0]
        pubs = {"image": node.create_publisher(Image, "image", qos),
                "camera_info": node.create_publisher(CameraInfo, "camera_info", qos)}
        main = "image"
        builder = None
    else:
        builder = OutputBuilder(w, h, a.points)
        pubs = {"depth": node.create_publisher(Image, "depth", qos),
                "depth/camera_info": node.create_publisher(CameraInfo, "depth/camera_info", qos)}
        if builder.dec:
            pubs["points"] = node.create_publisher(PointCloud2, "points", qos)
        main = "depth"

    # wait for the subscriber(s) to match
    t_wait = time.monotonic()
    matched = False
    while time.monotonic() - t_wait < a.wait_match and not stop.flag.is_set():
        if all(p.get_subscription_count() >= 1 for p in pubs.values()):
            matched = True
            break
        time.sleep(0.05)
    match_s = time.monotonic() - t_wait
    time.sleep(a.settle)
    duration = a.duration if matched else min(a.duration, a.nomatch_duration)

    sent = {k: [] for k in pubs}
    pub_s = {k: [] for k in pubs}
    build_s = {k: [] for k in pubs}
    sizes = {}
    period = 1.0 / a.rate
    t0 = time.monotonic()
    late = 0
    i = 0
    while not stop.flag.is_set():
        target = t0 + i * period
        now = time.monotonic()
        if target - t0 >= duration:
            break
        if target > now:
            time.sleep(target - now)
        elif now - target > period:
            late += 1
        stamp = time.time_ns()
        if a.mode == "input":
            _set_stamp(img.header, stamp)
            _set_stamp(info.header, stamp)
            msgs = {"image": img, "camera_info": info}
        else:
            from std_msgs.msg import Header
            hdr = Header(frame_id="camera_optical_frame")
            _set_stamp(hdr, stamp)
            msgs, tb = builder.build(hdr)
            for k, v in tb.items():
                if k in build_s:
                    build_s[k].append(v)
        for k, m in msgs.items():
            if k not in pubs:
                continue
            tp = time.perf_counter()
            pubs[k].publish(m)
            pub_s[k].append(time.perf_counter() - tp)
            sent[k].append(stamp)
            if k not in sizes:
                sizes[k] = len(m.data) if hasattr(m, "data") else None
        i += 1
    t_end = time.monotonic()
    # keep the writers alive so that reliable repairs can finish
    t_drain = time.monotonic()
    while time.monotonic() - t_drain < a.drain and not stop.flag.is_set():
        time.sleep(0.05)
    from rclpy.serialization import serialize_message
    wire = {}
    if a.mode == "input":
        wire = {"image": len(serialize_message(img)), "camera_info": len(serialize_message(info))}
    else:
        from std_msgs.msg import Header
        hdr_msgs, _ = builder.build(Header(frame_id="camera_optical_frame"))
        wire = {k: len(serialize_message(m)) for k, m in hdr_msgs.items()}
    res = {"role": "pub", "matched": matched, "match_wait_s": match_s, "sent": sent,
           "publish_ms": {k: {"p50": 1e3 * (pct(v, 50) or 0), "p99": 1e3 * (pct(v, 99) or 0), "max": 1e3 * max(v)}
                          for k, v in pub_s.items() if v},
           "build_ms": {k: {"p50": 1e3 * (pct(v, 50) or 0), "p90": 1e3 * (pct(v, 90) or 0)}
                        for k, v in build_s.items() if v},
           "wire_bytes": wire, "late_ticks": late, "rate_achieved": len(sent[main]) / max(t_end - t0, 1e-9),
           "cpu_s": cpu_seconds() - t_cpu0, "wall_s": time.monotonic() - t_wait, "shm_maps": shm_maps(),
           "pid": os.getpid(), "builder": builder.source if builder else None}
    Path(a.out).write_text(json.dumps(res))
    node.destroy_node()
    rclpy.shutdown()
    return 0


# ---------------------------------------------------------------------------------------------------------------
# worker: subscriber
# ---------------------------------------------------------------------------------------------------------------
def worker_sub(a) -> int:
    rclpy = _ros()[0]
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    import numpy as np
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    try:
        import cv2
        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover
        cv2 = None

    stop = _Stop()
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("delivery_sub")
    qos = make_qos(a.qos, a.depth)
    recv: dict[str, list] = {}
    work_s: list = []
    counters = {"lost": {}, "incompatible": {}, "matched_max": {}}
    t_cpu0 = cpu_seconds()
    monitor = None

    def events(topic):
        def lost(info):
            counters["lost"][topic] = int(info.total_count)
            if monitor and topic == "image":
                monitor.on_lost(info)

        def incompatible(info):
            counters["incompatible"][topic] = int(info.total_count)
            if monitor and topic == "image":
                monitor.on_incompatible(info)

        def matched(info):
            counters["matched_max"][topic] = max(counters["matched_max"].get(topic, 0), int(info.current_count))
        return SubscriptionEventCallbacks(message_lost=lost, incompatible_qos=incompatible, matched=matched,
                                          use_default_callbacks=False)

    def convert(topic, msg):
        tw = time.perf_counter()
        if topic == "image":  # like the node: view, resize to the network size, float32
            rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
            if cv2 is not None:
                rgb = cv2.resize(rgb, (640, 192), interpolation=cv2.INTER_AREA)
            x = rgb.astype(np.float32) * (1.0 / 255.0)
            x.sum()
        elif topic == "depth":
            d = np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width).copy()
            np.nanmax(d)
        elif topic == "points":
            p = np.frombuffer(msg.data, np.float32).reshape(msg.height, msg.width, 3).copy()
            np.isfinite(p[..., 2]).sum()
        work_s.append(time.perf_counter() - tw)

    # --sub-work node: the callback only hands the message to a worker thread that converts the latest one
    # (depth_node's LatestSlot design); older waiting messages are replaced.
    slot = {"msg": None, "replaced": 0, "converted": 0}
    slot_cv = threading.Condition()

    def slot_worker():
        while not stop.flag.is_set():
            with slot_cv:
                while slot["msg"] is None and not stop.flag.is_set():
                    slot_cv.wait(0.1)
                item, slot["msg"] = slot["msg"], None
            if item is not None:
                convert(*item)
                slot["converted"] += 1
    if a.work == "node":
        threading.Thread(target=slot_worker, daemon=True).start()

    def handler(topic):
        lst = recv.setdefault(topic, [])

        def cb(msg):
            t = time.time_ns()
            s = _stamp_ns(msg.header)
            lst.append((s, t))
            if monitor is not None and topic == "image":
                monitor.on_image(s)
            elif monitor is not None and topic == "camera_info":
                monitor.on_info(s)
            if a.work == "none" or not hasattr(msg, "data") or topic.endswith("camera_info"):
                return
            if a.work == "node" and a.mode == "input":
                with slot_cv:
                    if slot["msg"] is not None:
                        slot["replaced"] += 1
                    slot["msg"] = (topic, msg)
                    slot_cv.notify()
                return
            convert(topic, msg)
        return cb

    if a.mode == "input":
        topics = {"image": Image, "camera_info": CameraInfo}
    else:
        topics = {"depth": Image, "depth/camera_info": CameraInfo, "points": PointCloud2}
    subs = {k: node.create_subscription(t, k, handler(k), qos, event_callbacks=events(k)) for k, t in topics.items()}
    if a.mode == "input":
        monitor = DeliveryMonitor(node, subs["image"], subs["image"].topic_name, subs["camera_info"].topic_name,
                                  f"{a.qos} depth {a.depth}", window=a.monitor_window)
        node.create_timer(1.0, monitor.evaluate)
    seen_shm: dict = {}

    def snap_shm():
        for k, v in shm_maps()["mapped"].items():
            seen_shm[k] = max(seen_shm.get(k, 0), v)
    node.create_timer(1.0, snap_shm)
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    Path(a.ready).write_text("1")
    while not stop.flag.is_set():
        ex.spin_once(timeout_sec=0.1)
    res = {"role": "sub", "recv": recv, "events": counters, "cpu_s": cpu_seconds() - t_cpu0,
           "work_ms": {"p50": 1e3 * (pct(work_s, 50) or 0), "p90": 1e3 * (pct(work_s, 90) or 0),
                       "converted": len(work_s), "replaced_in_slot": slot["replaced"]} if work_s else None,
           "shm_maps": {"mapped": seen_shm, "owned": shm_maps()["owned"]}, "pid": os.getpid(),
           "qos": {"reliability": a.qos, "depth": a.depth if a.qos != "sensor_data" else 5},
           "monitor": monitor.summary() if monitor else None}
    Path(a.out).write_text(json.dumps(res))
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    return 0


# ================================================================================================================
# orchestrator
# ================================================================================================================
def worker_env(a, side: str) -> dict:
    env = dict(os.environ)
    for k in DDS_ENV:
        env.pop(k, None)
    env["ROS_DOMAIN_ID"] = str(a.domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    if a.profile and a.profile_side in ("both", side):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(Path(a.profile).resolve())
    if a.builtin_transports and a.profile_side in ("both", side):
        env["FASTDDS_BUILTIN_TRANSPORTS"] = a.builtin_transports
    for kv in a.env + (a.pub_env if side == "pub" else a.sub_env):
        k, v = kv.split("=", 1)
        if k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_STATIC_PEERS"):
            sys.exit(f"delivery.py: {k} is set by the tool (LOCALHOST, --domain-id); not overridable with --env")
        env[k] = v
    return env


def run_cell(a, cell: dict, tmp: Path) -> dict:
    tag = "_".join(str(v) for v in cell.values()).replace(":", "-").replace("/", "-")
    pub_out, sub_out, ready = tmp / f"pub_{tag}.json", tmp / f"sub_{tag}.json", tmp / f"ready_{tag}"
    for p in (pub_out, sub_out, ready):
        p.unlink(missing_ok=True)
    me = [sys.executable, str(HERE)]
    sub_cmd = me + ["_sub", "--mode", cell["direction"], "--qos", cell["sub_qos"], "--depth",
                    str(cell["sub_depth"]), "--work", a.sub_work, "--out", str(sub_out), "--ready", str(ready),
                    "--monitor-window", str(a.monitor_window)]
    pub_cmd = me + ["_pub", "--mode", cell["direction"], "--qos", cell["pub_qos"], "--depth", str(cell["pub_depth"]),
                    "--rate", str(cell["rate"]), "--size", cell["size"], "--duration", str(a.duration),
                    "--nomatch-duration", str(a.nomatch_duration), "--wait-match", str(a.wait_match),
                    "--drain", str(a.drain), "--settle", str(a.settle), "--points", cell.get("points", "none"),
                    "--out", str(pub_out)]
    load0 = os.getloadavg()
    snmp0 = udp_tcp_counters()
    busy0 = cpu_busy()
    t0 = time.monotonic()
    logs = open(tmp / f"log_{tag}.txt", "w")
    sub = subprocess.Popen(sub_cmd, env=worker_env(a, "sub"), cwd=tmp, stdout=logs, stderr=subprocess.STDOUT)
    while not ready.exists() and sub.poll() is None and time.monotonic() - t0 < 30:
        time.sleep(0.05)
    pub = subprocess.Popen(pub_cmd, env=worker_env(a, "pub"), cwd=tmp, stdout=logs, stderr=subprocess.STDOUT)
    try:
        pub.wait(timeout=a.duration + a.wait_match + a.drain + a.settle + 60)
    except subprocess.TimeoutExpired:
        pub.terminate()
        pub.wait(10)
    time.sleep(0.5)
    sub.send_signal(signal.SIGTERM)
    try:
        sub.wait(timeout=30)
    except subprocess.TimeoutExpired:
        sub.kill()
        sub.wait()
    logs.close()
    busy1 = cpu_busy()
    snmp1 = udp_tcp_counters()
    load1 = os.getloadavg()
    out = dict(cell)
    out["wall_s"] = round(time.monotonic() - t0, 1)
    out["load_before"] = [round(x, 2) for x in load0]
    out["load_after"] = [round(x, 2) for x in load1]
    out["machine_cpu_busy_pct"] = round(100.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1)
    out["net"] = {k: snmp1.get(k, 0) - snmp0.get(k, 0) for k in
                  ("Udp.InDatagrams", "Udp.OutDatagrams", "Udp.RcvbufErrors", "Udp.SndbufErrors", "Udp.InErrors",
                   "Tcp.InSegs", "Tcp.OutSegs")}
    try:
        P = json.loads(pub_out.read_text())
        S = json.loads(sub_out.read_text())
    except (OSError, ValueError) as exc:
        out["error"] = f"worker failed ({exc}); see {tmp}/log_{tag}.txt: " + \
            (tmp / f"log_{tag}.txt").read_text()[-1500:]
        return out
    out["pub_matched"] = P["matched"]
    out["rate_achieved"] = round(P["rate_achieved"], 2)
    out["late_ticks"] = P["late_ticks"]
    out["publish_ms"] = P["publish_ms"]
    out["build_ms"] = P["build_ms"]
    out["wire_bytes"] = P["wire_bytes"]
    out["pub_cpu_s"] = round(P["cpu_s"], 2)
    out["sub_cpu_s"] = round(S["cpu_s"], 2)
    out["sub_work_ms"] = S["work_ms"]
    out["events"] = S["events"]
    # Data path: Fast DDS fragments samples into <= 64 kB datagrams (the UDP transport's limit); when the data goes
    # over UDP, the namespace counts about ceil(size / 64 kB) datagrams per sample delivered, discovery adds ~15/s.
    frags = sum(len(P["sent"].get(k, [])) * -(-int(b) // 65000) for k, b in P["wire_bytes"].items() if b)
    udp_in = out["net"]["Udp.InDatagrams"]
    out["data_path"] = {"expected_fragments": frags, "udp_datagrams": udp_in,
                        "path": "UDP" if frags and udp_in > 0.5 * frags else "SHM"}
    pm, sm = P["shm_maps"], S["shm_maps"]
    out["shm"] = {"pub_segment_mb": sorted(round(pm["mapped"].get(k, 0) / 2**20, 2) for k in pm["owned"]),
                  "sub_segment_mb": sorted(round(sm["mapped"].get(k, 0) / 2**20, 2) for k in sm["owned"]),
                  "sub_mapped_pub_segment_mb": sorted(round(sm["mapped"][k] / 2**20, 2) for k in pm["owned"]
                                                      if k in sm["mapped"])}
    topics = {}
    for topic, stamps in P["sent"].items():
        sent = set(stamps)
        got = {}
        for s, t in S["recv"].get(topic, []):
            if s in sent and s not in got:
                got[s] = t
        lat = [(t - s) / 1e6 for s, t in got.items()]
        topics[topic] = {"sent": len(sent), "received": len(got),
                         "delivery_pct": round(100.0 * len(got) / len(sent), 1) if sent else None,
                         "lat_ms": {q: (round(pct(lat, q), 1) if lat else None) for q in (50, 90, 99)},
                         "lat_max_ms": round(max(lat), 1) if lat else None,
                         "message_lost_events": S["events"]["lost"].get(topic, 0),
                         "incompatible_qos_events": S["events"]["incompatible"].get(topic, 0)}
    out["topics"] = topics
    if S.get("monitor"):
        m = S["monitor"]
        out["monitor"] = {"verdict": m["verdict"], "counts": m["counts"], "cause": m["cause"]}
        out["monitor_timeline"] = m["timeline"]
    return out


def build_cells(a) -> list:
    cells = []
    if a.direction in ("input", "both"):
        for size in a.sizes:
            for rate in a.rates:
                for pq in a.pub_qos:
                    for sq in a.sub_qos:
                        cells.append({"direction": "input", "size": size, "rate": rate, "pub_qos": pq,
                                      "pub_depth": a.pub_depth, "sub_qos": sq,
                                      "sub_depth": 5 if sq == "sensor_data" else a.sub_depth})
    if a.direction in ("output", "both"):
        for case in a.output_cases:
            size, points = case.split(":")
            for oq in a.out_pub_qos:
                kind, depth = oq.split(":")
                for sq in a.out_sub_qos:
                    cells.append({"direction": "output", "size": size, "points": points, "rate": a.out_rate,
                                  "pub_qos": kind, "pub_depth": int(depth), "sub_qos": sq,
                                  "sub_depth": 5 if sq == "sensor_data" else 10})
    return cells


def describe_config(a) -> dict:
    c = {"label": a.label, "profile": None, "profile_side": a.profile_side,
         "FASTDDS_BUILTIN_TRANSPORTS": a.builtin_transports, "env": a.env, "pub_env": a.pub_env,
         "sub_env": a.sub_env, "domain_id": a.domain_id, "sub_work": a.sub_work, "duration_s": a.duration,
         "monitor_window": a.monitor_window}
    if a.profile:
        text = Path(a.profile).read_bytes()
        c["profile"] = {"path": str(a.profile), "sha256": hashlib.sha256(text).hexdigest()[:16]}
    return c


def cmd_run(a) -> int:
    if not isolated():
        if a.no_reexec:
            sys.exit("delivery.py: network interfaces other than lo are visible; refusing to start DDS "
                     "(run inside `unshare -n`)")
        inner = "ip link set lo up && exec " + " ".join(shlex.quote(x) for x in [sys.executable, str(HERE)] +
                                                        sys.argv[1:] + ["--no-reexec"])
        os.execvp("unshare", ["unshare", "-n", "bash", "-c", inner])
    if not (100 <= a.domain_id <= 119):
        print(f"warning: ROS_DOMAIN_ID {a.domain_id} is outside 100-119", file=sys.stderr)
    worker_env(a, "pub"), worker_env(a, "sub")  # validates --env before anything starts
    cells = build_cells(a)
    if a.only:
        cells = [c for c in cells if all(f in json.dumps(c) for f in a.only)]
    tmp = Path(tempfile.mkdtemp(prefix="delivery_"))
    meta = {"tool": "benchmarks/transport/delivery.py", "date": _dt.datetime.now().astimezone().isoformat(
        timespec="seconds"), "machine": machine(), "versions": versions(), "config": describe_config(a),
        "argv": sys.argv[1:], "uptime_start": Path("/proc/loadavg").read_text().strip()}
    results = []
    print(f"{len(cells)} cells, ~{len(cells) * (a.duration + 5) / 60:.0f} min; config '{a.label}'", flush=True)
    for i, cell in enumerate(cells):
        r = run_cell(a, cell, tmp)
        results.append(r)
        print(f"[{i + 1}/{len(cells)}] {short_row(r)}", flush=True)
        if a.out:
            save(a.out, meta, results)
    meta["uptime_end"] = Path("/proc/loadavg").read_text().strip()
    if a.out:
        save(a.out, meta, results)
        print(f"wrote {a.out}.json and {a.out}.md")
    return 0


def short_row(r: dict) -> str:
    if "error" in r:
        return f"{r['direction']} {r['size']} ERROR {r['error'][:300]}"
    main = "image" if r["direction"] == "input" else "depth"
    t = r["topics"][main]
    extra = ""
    if r["direction"] == "output" and "points" in r["topics"]:
        extra = f" points {r['topics']['points']['delivery_pct']}%"
    return (f"{r['direction']} {r['size']}{':' + r['points'] if r.get('points') else ''} {r['rate']}Hz "
            f"pub {r['pub_qos']}/{r['pub_depth']} sub {r['sub_qos']}/{r['sub_depth']}: {main} {t['received']}/"
            f"{t['sent']} ({t['delivery_pct']}%) p50 {_lat(t, 50)} p99 {_lat(t, 99)} ms{extra} "
            f"udp rcvbuf-err {r['net']['Udp.RcvbufErrors']} path {r['data_path']['path']} "
            f"seg {r['shm']['pub_segment_mb']} "
            f"load {r['load_before'][0]} busy {r['machine_cpu_busy_pct']}% "
            f"monitor {r.get('monitor', {}).get('verdict', '-')}")


def save(prefix: str, meta: dict, results: list) -> None:
    p = Path(prefix)
    p.parent.mkdir(parents=True, exist_ok=True)
    Path(str(p) + ".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    Path(str(p) + ".md").write_text(render_md(meta, results))


def _lat(t: dict, q: int):
    """Latency percentile q of a topic result (int keys in memory, str keys after a JSON round trip)."""
    v = t["lat_ms"]
    return v.get(q, v.get(str(q)))


def _f(x, nd=0):
    return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, (int, float)) else str(x))


def render_md(meta: dict, results: list) -> str:
    m, v, c = meta["machine"], meta["versions"], meta["config"]
    L = [f"# Transport delivery: {c['label']}", "",
         f"- date {meta['date']}; {m['host']} {m['arch']} {m['cpu']}, {m['cores']} cores, kernel {m['kernel']}",
         f"- Python {v.get('python')}, rclpy {v.get('ros-rclpy')}, rmw_fastrtps_cpp {v.get('ros-rmw-fastrtps-cpp')},"
         f" Fast DDS {v.get('ros-fastdds')} (libfastdds {v.get('libfastdds')}), numpy {v.get('numpy')}",
         f"- sysctl (namespace): {m.get('sysctl_in_namespace')}",
         f"- DDS config: profile {c['profile']} on {c['profile_side']}; FASTDDS_BUILTIN_TRANSPORTS="
         f"{c['FASTDDS_BUILTIN_TRANSPORTS']}; env {c['env']} pub_env {c['pub_env']} sub_env {c['sub_env']}; "
         f"ROS_DOMAIN_ID {c['domain_id']}, discovery LOCALHOST, loopback-only network namespace",
         f"- {c['duration_s']} s per cell; subscriber work: {c['sub_work']}; load at start `{meta['uptime_start']}`"
         f", at end `{meta.get('uptime_end', 'running')}`", ""]
    inp = [r for r in results if r["direction"] == "input"]
    out = [r for r in results if r["direction"] == "output"]
    if inp:
        L += ["## Input: camera (separate process) -> node-like subscriber", "",
              "| size | Hz | camera QoS | node QoS | sent | image recv | % | p50 ms | p90 | p99 | max | "
              "camera_info % | msg_lost ev | UDP dgrams / rcvbuf err | data path, writer SHM MB | pub rate | "
              "load 1m | CPU busy | monitor |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in inp:
            if "error" in r:
                L.append(f"| {r['size']} | {r['rate']} | {r['pub_qos']} | {r['sub_qos']} | "
                         f"error: {r['error'][:80]} |")
                continue
            t, ci = r["topics"]["image"], r["topics"]["camera_info"]
            L.append(f"| {r['size']} | {r['rate']} | {r['pub_qos']}/{r['pub_depth']} | "
                     f"{r['sub_qos']}/{r['sub_depth']}"
                     f" | {t['sent']} | {t['received']} | **{_f(t['delivery_pct'], 1)}** | {_f(_lat(t, 50))} | "
                     f"{_f(_lat(t, 90))} | {_f(_lat(t, 99))} | {_f(t['lat_max_ms'])} | "
                     f"{_f(ci['delivery_pct'], 1)} | {t['message_lost_events']} | {r['net']['Udp.InDatagrams']} / "
                     f"{r['net']['Udp.RcvbufErrors']} | {r['data_path']['path']} {r['shm']['pub_segment_mb']} | "
                     f"{r['rate_achieved']} | {r['load_before'][0]} | {r['machine_cpu_busy_pct']} % | "
                     f"{r.get('monitor', {}).get('verdict', '-')} |")
        L.append("")
    if out:
        L += ["## Output: node-like publisher -> consumer", "",
              "| depth size | points | node QoS | consumer QoS | frames | depth % | depth p50/p99 ms | info % | "
              "points % | points p50/p99 ms | bytes depth / points | build ms depth / points (p50) | "
              "UDP dgrams / rcvbuf err | data path, writer SHM MB | load 1m | CPU busy |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in out:
            if "error" in r:
                L.append(f"| {r['size']} | {r['points']} | {r['pub_qos']} | {r['sub_qos']} | "
                         f"error: {r['error'][:80]} |")
                continue
            T = r["topics"]
            d, ci, pt = T["depth"], T["depth/camera_info"], T.get("points")
            L.append(f"| {r['size']} | {r['points']} | {r['pub_qos']}/{r['pub_depth']} | "
                     f"{r['sub_qos']}/{r['sub_depth']}"
                     f" | {d['sent']} | **{_f(d['delivery_pct'], 1)}** | {_f(_lat(d, 50))}/{_f(_lat(d, 99))}"
                     f" | {_f(ci['delivery_pct'], 1)} | {_f(pt['delivery_pct'], 1) if pt else '–'} | "
                     f"{(_f(_lat(pt, 50)) + '/' + _f(_lat(pt, 99))) if pt else '–'} | "
                     f"{r['wire_bytes'].get('depth')} / {r['wire_bytes'].get('points', '–')} | "
                     f"{_f(r['build_ms'].get('depth', {}).get('p50'), 1)} / "
                     f"{_f(r['build_ms'].get('points', {}).get('p50'), 1)} | {r['net']['Udp.InDatagrams']} / "
                     f"{r['net']['Udp.RcvbufErrors']} | {r['data_path']['path']} {r['shm']['pub_segment_mb']} | "
                     f"{r['load_before'][0]} | {r['machine_cpu_busy_pct']} % |")
        L.append("")
    L += ["Columns: % = received / sent (matched by header stamp); latency = receive time - header stamp (same "
          "clock); msg_lost ev = Fast DDS message_lost events on the subscription; UDP dgrams / rcvbuf err = "
          "datagrams received and dropped for a full socket receive buffer in the private namespace during the "
          "cell; data path = UDP when the namespace received more than half the datagrams the samples' fragments "
          "need (ceil(bytes / 64 kB) each), else SHM; writer SHM MB = size of the publisher's own Fast DDS "
          "segment(s); load 1m = 1-minute load average at the start of the cell; CPU busy = whole machine during the "
          "cell (others' jobs included); monitor = verdict of the DeliveryMonitor prototype.", ""]
    return "\n".join(L)


def cmd_rerender(a) -> int:
    """Re-apply the current DeliveryMonitor rule to recorded timelines and rewrite OUT.md (and the JSON)."""
    for path in a.reports:
        rep = json.loads(Path(path).read_text())
        for r in rep["results"]:
            tl = r.get("monitor_timeline")
            if not tl:
                continue
            qos = f"{r['sub_qos']} depth {r['sub_depth']}"
            for x in tl:
                x["verdict"], x["cause"] = classify(x, rep["meta"]["config"].get("monitor_window", 5.0), qos=qos,
                                                    warmup=rep["meta"]["config"].get("monitor_window", 5.0) + 1.0,
                                                    topic="/image")
            m = summarize(tl)
            r["monitor"] = {"verdict": m["verdict"], "counts": m["counts"], "cause": m["cause"]}
        rep["meta"]["monitor_rule"] = "rerendered with the current classify()"
        Path(path).write_text(json.dumps(rep, indent=1))
        Path(path[:-5] + ".md").write_text(render_md(rep["meta"], rep["results"]))
        print(f"rewrote {path} and {path[:-5]}.md")
    return 0


def cmd_compare(a) -> int:
    reports = [json.loads(Path(p).read_text()) for p in a.reports]
    labels = [r["meta"]["config"]["label"] for r in reports]
    rows: dict = {}
    for rep, lab in zip(reports, labels):
        for r in rep["results"]:
            key = (r["direction"], r["size"], r.get("points", ""), r["rate"], f"{r['pub_qos']}/{r['pub_depth']}",
                   f"{r['sub_qos']}/{r['sub_depth']}")
            rows.setdefault(key, {})[lab] = r
    L = [f"# Transport comparison ({', '.join(labels)})", ""]
    for rep, lab in zip(reports, labels):
        c, m = rep["meta"]["config"], rep["meta"]
        L.append(f"- **{lab}**: {m['date']}; profile {c['profile']} ({c['profile_side']}); "
                 f"FASTDDS_BUILTIN_TRANSPORTS="
                 f"{c['FASTDDS_BUILTIN_TRANSPORTS']}; env {c['env']}; load `{m['uptime_start']}` -> "
                 f"`{m.get('uptime_end')}`")
    L += ["", "Cell: delivery % of the main topic (image / depth) [p50/p99 latency ms] {points % for output} "
          "(load 1 min at the cell's start)", "",
          "| direction | size | points | Hz | publisher | subscriber | " + " | ".join(labels) + " |",
          "|---|---|---|---|---|---|" + "---|" * len(labels)]
    for key, by in rows.items():
        cells = []
        for lab in labels:
            r = by.get(lab)
            if not r or "error" in r:
                cells.append("–" if not r else "error")
                continue
            main = "image" if r["direction"] == "input" else "depth"
            t = r["topics"][main]
            s = f"**{_f(t['delivery_pct'], 1)}** [{_f(_lat(t, 50))}/{_f(_lat(t, 99))}]"
            if "points" in r["topics"]:
                s += f" {{{_f(r['topics']['points']['delivery_pct'], 1)}}}"
            s += f" ({r['load_before'][0]})"
            cells.append(s)
        L.append("| " + " | ".join(str(k) for k in key) + " | " + " | ".join(cells) + " |")
    text = "\n".join(L) + "\n"
    if a.out:
        Path(a.out).write_text(text)
        print(f"wrote {a.out}")
    else:
        print(text)
    return 0


def _csv(kind=str):
    return lambda s: [kind(x) for x in s.split(",") if x]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)

    r = sp.add_parser("run", help="measure a matrix of cells for one DDS configuration",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    r.add_argument("--direction", choices=("input", "output", "both"), default="both")
    r.add_argument("--sizes", type=_csv(), default=list(INPUT_SIZES), help="input frame sizes WxH (rgb8)")
    r.add_argument("--rates", type=_csv(float), default=[10.0, 30.0], help="input camera rates, Hz")
    r.add_argument("--pub-qos", type=_csv(), default=["reliable", "best_effort"],
                   help="camera (publisher) reliability; the camera's history depth is --pub-depth")
    r.add_argument("--pub-depth", type=int, default=5, help="camera history depth (KEEP_LAST)")
    r.add_argument("--sub-qos", type=_csv(), default=["reliable", "best_effort"],
                   help="node input QoS: reliable | best_effort (the node's default, depth --sub-depth) | "
                        "sensor_data (rclpy qos_profile_sensor_data: best effort, depth 5 - the same as the "
                        "node's default)")
    r.add_argument("--sub-depth", type=int, default=5, help="node input history depth (qos.input.depth)")
    r.add_argument("--output-cases", type=_csv(), default=list(OUTPUT_CASES),
                   help="output cases DEPTH_WxH:POINTS with POINTS full | decN | none (decN = every N-th row and "
                        "column, as points.decimation)")
    r.add_argument("--out-pub-qos", type=_csv(), default=["reliable:1", "reliable:5", "best_effort:1"],
                   help="node output QoS as reliability:depth (the node's default is reliable:1)")
    r.add_argument("--out-sub-qos", type=_csv(), default=["reliable", "best_effort"],
                   help="consumer QoS: reliable (depth 10, rclcpp/RViz default) | best_effort (depth 10) | "
                        "sensor_data (Nav2 costmap)")
    r.add_argument("--out-rate", type=float, default=10.0, help="node output rate, Hz (the camera's)")
    r.add_argument("--duration", type=float, default=20.0, help="publishing time per cell, s")
    r.add_argument("--nomatch-duration", type=float, default=8.0,
                   help="publishing time when the pair never matches (incompatible QoS)")
    r.add_argument("--wait-match", type=float, default=8.0, help="longest wait for the subscriber to match, s")
    r.add_argument("--settle", type=float, default=0.5, help="pause after matching, s")
    r.add_argument("--drain", type=float, default=2.0, help="publisher stays up after the last frame, s")
    r.add_argument("--sub-work", choices=("convert", "node", "none"), default="convert",
                   help="what the subscriber does per message: convert = in the callback, every message (numpy "
                        "view, resize to 640x192, float32 for images; a copy for depth/points); node = the "
                        "callback hands the message to a worker thread that converts the latest one (depth_node's "
                        "design; input only); none = nothing beyond rclpy's deserialisation")
    r.add_argument("--monitor-window", type=float, default=5.0, help="DeliveryMonitor window, s")
    r.add_argument("--profile", help="Fast DDS XML profile: FASTDDS_DEFAULT_PROFILES_FILE for the workers")
    r.add_argument("--builtin-transports", help="FASTDDS_BUILTIN_TRANSPORTS for the workers (e.g. SHM, UDPv4, "
                                                "LARGE_DATA, LARGE_DATA?max_msg_size=1MB). Note: with "
                                                "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST rmw_fastrtps disables the "
                                                "builtin transports, so this has no effect (measured)")
    r.add_argument("--profile-side", choices=("both", "pub", "sub"), default="both",
                   help="which process gets --profile / --builtin-transports (a user's camera may not have it)")
    r.add_argument("--env", action="append", default=[], metavar="K=V", help="extra env for both workers")
    r.add_argument("--pub-env", action="append", default=[], metavar="K=V", help="extra env for the publisher")
    r.add_argument("--sub-env", action="append", default=[], metavar="K=V", help="extra env for the subscriber")
    r.add_argument("--domain-id", type=int, default=int(os.environ.get("DELIVERY_DOMAIN_ID", 100)),
                   help="ROS_DOMAIN_ID of the workers (100-119)")
    r.add_argument("--only", action="append", default=[], metavar="TEXT",
                   help="run only cells whose JSON description contains TEXT (repeatable: all must match), "
                        "e.g. --only 1242x375 --only '\"sub_qos\": \"best_effort\"'")
    r.add_argument("--label", default="default", help="name of this DDS configuration in reports")
    r.add_argument("--out", help="write OUT.json and OUT.md (e.g. benchmarks/results/transport_default)")
    r.add_argument("--no-reexec", action="store_true", help=argparse.SUPPRESS)

    rr = sp.add_parser("rerender", help="re-apply the current loss-detection rule to recorded reports (JSON) and "
                                        "rewrite their markdown")
    rr.add_argument("reports", nargs="+")

    c = sp.add_parser("compare", help="merge run reports (JSON) into one markdown table")
    c.add_argument("reports", nargs="+")
    c.add_argument("--out", help="markdown file (default: stdout)")

    for name, fn in (("_pub", worker_pub), ("_sub", worker_sub)):
        w = sp.add_parser(name)
        w.add_argument("--mode", choices=("input", "output"), required=True)
        w.add_argument("--qos", required=True)
        w.add_argument("--depth", type=int, default=5)
        w.add_argument("--out", required=True)
        if name == "_pub":
            w.add_argument("--rate", type=float, required=True)
            w.add_argument("--size", required=True)
            w.add_argument("--duration", type=float, required=True)
            w.add_argument("--nomatch-duration", type=float, default=8.0)
            w.add_argument("--wait-match", type=float, default=8.0)
            w.add_argument("--drain", type=float, default=2.0)
            w.add_argument("--settle", type=float, default=0.5)
            w.add_argument("--points", default="none")
        else:
            w.add_argument("--work", choices=("convert", "node", "none"), default="convert")
            w.add_argument("--ready", required=True)
            w.add_argument("--monitor-window", type=float, default=5.0)
        w.set_defaults(fn=fn)

    a = ap.parse_args(argv)
    if a.cmd == "run":
        return cmd_run(a)
    if a.cmd == "compare":
        return cmd_compare(a)
    if a.cmd == "rerender":
        return cmd_rerender(a)
    if a.cmd in ("_pub", "_sub"):
        if not isolated():
            sys.exit("worker outside a loopback-only network namespace: refusing to start DDS")
        return a.fn(a)
    return 2


if __name__ == "__main__":
    sys.exit(main())
