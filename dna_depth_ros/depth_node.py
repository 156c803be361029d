"""``depth_node``: camera in; metric depth image, camera_info and an organised point cloud out.

A thin rclpy shell around :class:`dna_depth_core.inference.DepthEstimator` (docs/ros.md has the full interface).

Topics (set by remapping):

- in: ``image`` (sensor_msgs/Image) or, with ``image_transport: compressed``, ``image/compressed``
  (sensor_msgs/CompressedImage, jpeg/png); ``camera_info`` (sensor_msgs/CameraInfo).
- out: ``depth`` (32FC1 metres, NaN invalid; or 16UC1 millimetres, 0 invalid), ``depth/camera_info``,
  ``points`` (organised PointCloud2 in the optical frame, NaN invalid, is_dense false), ``depth/colored`` (rgb8).

Every output carries the input image's header (acquisition stamp and optical frame_id).

Threading: the subscription callback only stores the newest message in a one-slot mailbox; a worker thread
converts, runs inference and publishes. A message that is replaced in the mailbox before the worker took it is
dropped and counted. When no output has a subscriber, frames are counted and skipped before any work.
"""
from __future__ import annotations

import collections
import dataclasses
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from dna_depth_core import geometry
from dna_depth_core.backends import list_backends
from dna_depth_core.camera import INTRINSICS_SOURCES, CameraInfoError, CameraIntrinsics, camera_info_intrinsics
from dna_depth_core.inference import OUTPUT_MODES, RESIZE_MODES, SCALE_MODES, DepthEstimator
from dna_depth_core.preprocess import fit_image
from dna_depth_core.ros_images import ConversionError
from dna_depth_core.visualize import colorize_depth
from dna_depth_ros import conversions as conv

NODE_NAME = "dna_depth"


# ----------------------------------------------------------------------------------------------------------------
# Parameters: one table, used to declare them, to document them (docs/ros.md) and to check config/ros/dna_depth.yaml
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None


_RELIABILITY = ("reliable", "best_effort")
_DURABILITY = ("volatile", "transient_local")

PARAMETERS: tuple[ParamSpec, ...] = (
    # Model
    ParamSpec("weights", "", "Path to the dna-depth checkpoint (.safetensors). Required: a missing or bad file "
              "stops the node at start with an error naming it."),
    ParamSpec("device", "auto", "Inference device: auto (CUDA when present, else the CPU), cpu, cuda or cuda:N."),
    ParamSpec("fp16", False, "Half-precision inference on CUDA (ignored on the CPU)."),
    ParamSpec("backend", "auto", "Inference backend: auto (onnxruntime on the CPU, where it is fastest at fp32 "
              "accuracy; torch on CUDA), torch or onnxruntime (which also takes an exported .onnx as weights, "
              "fp32 or int8 from `dna-depth export-onnx --int8`).",
              choices=tuple(list_backends())),
    ParamSpec("input_height", 0, "Network input height in pixels, a multiple of 32; 0 = the checkpoint's.",
              int_range=(0, 4096)),
    ParamSpec("input_width", 0, "Network input width in pixels, a multiple of 32; 0 = the checkpoint's.",
              int_range=(0, 8192)),
    ParamSpec("resize_mode", "stretch", "How the image reaches the network's size: stretch (resize the whole "
              "image) or crop (centre-crop to the network's aspect ratio, then resize; with output_resolution "
              "input the depth outside the crop is invalid).", choices=RESIZE_MODES),
    ParamSpec("output_resolution", "input", "Resolution of depth, depth/camera_info and points: input (the "
              "camera's) or network (the network's input size; cheaper).", choices=OUTPUT_MODES),
    # Metric scale
    ParamSpec("scale.mode", "none", "Metric scale: none (relative depth, not metres), fixed (scale.factor from "
              "calibration) or camera_height (ground-plane fit against scale.camera_height).", choices=SCALE_MODES),
    ParamSpec("scale.factor", 1.0, "Depth multiplier for scale.mode fixed; in camera_height mode the factor used "
              "until the first ground-plane fit.", float_range=(1e-6, 1e6)),
    ParamSpec("scale.camera_height", 0.0, "Camera mounting height above the ground in metres (camera_height "
              "mode).", float_range=(0.0, 100.0)),
    ParamSpec("scale.ground_roi", [0.55, 1.0, 0.1, 0.9], "Ground region for the plane fit, as fractions of the "
              "image: [top, bottom, left, right]."),
    ParamSpec("scale.max_tilt_deg", 25.0, "Largest angle between the ground normal and the camera's y axis "
              "(optical frame, down) that a plane fit accepts.", float_range=(1.0, 89.0)),
    ParamSpec("scale.smoothing", 0.1, "Weight of each new frame in the exponential smoothing of the log-scale "
              "(1 = no smoothing).", float_range=(0.001, 1.0)),
    # Input
    ParamSpec("image_transport", "raw", "raw: subscribe to 'image' (sensor_msgs/Image); compressed: subscribe to "
              "'image/compressed' (sensor_msgs/CompressedImage, jpeg or png).", choices=("raw", "compressed")),
    ParamSpec("intrinsics_source", "auto", "Which CameraInfo matrix gives the intrinsics of the (rectified) input: "
              "P, K, or auto (P when it is set, else K).", choices=INTRINSICS_SOURCES),
    ParamSpec("intrinsics.fx", 0.0, "Fallback focal length x in pixels, used when no camera_info has arrived "
              "(0 = no fallback)."),
    ParamSpec("intrinsics.fy", 0.0, "Fallback focal length y in pixels."),
    ParamSpec("intrinsics.cx", 0.0, "Fallback principal point x in pixels."),
    ParamSpec("intrinsics.cy", 0.0, "Fallback principal point y in pixels."),
    ParamSpec("intrinsics.width", 0, "Image width the fallback intrinsics refer to (0 = the incoming image's); "
              "other image sizes get scaled intrinsics.", int_range=(0, 100000)),
    ParamSpec("intrinsics.height", 0, "Image height the fallback intrinsics refer to (0 = the incoming image's).",
              int_range=(0, 100000)),
    # Outputs
    ParamSpec("publish.depth", True, "Publish 'depth'."),
    ParamSpec("publish.camera_info", True, "Publish 'depth/camera_info'."),
    ParamSpec("publish.points", True, "Publish 'points' (needs intrinsics)."),
    ParamSpec("publish.colored", False, "Publish 'depth/colored' (rgb8, for viewing)."),
    ParamSpec("depth.encoding", "32FC1", "32FC1: metres, NaN invalid (REP 118). 16UC1: millimetres, 0 invalid "
              "(REP 117).", choices=conv.DEPTH_ENCODINGS),
    ParamSpec("depth.max_range", 0.0, "Depth beyond this many metres is published as invalid (0 = no limit).",
              float_range=(0.0, 1e6)),
    ParamSpec("points.decimation", 1, "Keep every n-th row and column of the organised cloud.",
              int_range=(1, 64)),
    ParamSpec("points.xyzrgb", False, "Add the camera colour to the cloud (field rgb, PCL packing)."),
    ParamSpec("points.max_range", 8.0, "Points farther than this many metres from the camera (Euclidean) are NaN "
              "(0 = no limit). Nav2's guidance for learned depth is about 8 m.", float_range=(0.0, 1e6)),
    ParamSpec("colored.max_depth", 0.0, "Depth at the far end of the colour map in metres (0 = per-frame "
              "percentiles)."),
    # QoS
    ParamSpec("qos.input.reliability", "best_effort", "Reliability of the image and camera_info subscriptions. "
              "best_effort (SensorDataQoS) accepts both reliable and best-effort cameras.", choices=_RELIABILITY),
    ParamSpec("qos.input.depth", 5, "History depth of the input subscriptions.", int_range=(1, 1000)),
    ParamSpec("qos.output.reliability", "reliable", "Reliability of the publishers. reliable is accepted by both "
              "best-effort (Nav2 SensorDataQoS) and reliable (RViz default) subscribers.", choices=_RELIABILITY),
    ParamSpec("qos.output.durability", "volatile", "Durability of the publishers.", choices=_DURABILITY),
    ParamSpec("qos.output.depth", 1, "History depth of the publishers.", int_range=(1, 1000)),
    # Misc
    ParamSpec("warmup", True, "Run the network once at start so the first frame is not slow."),
    ParamSpec("log_throttle_sec", 5.0, "Minimum interval between two log messages about the same problem.",
              float_range=(0.0, 3600.0)),
)


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=spec.name, description=spec.description, read_only=True)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.int_range is not None:
        desc.integer_range = [IntegerRange(from_value=spec.int_range[0], to_value=spec.int_range[1], step=1)]
    if spec.float_range is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.float_range[0]),
                                                        to_value=float(spec.float_range[1]), step=0.0)]
    return desc


def _qos(reliability: str, depth: int, durability: str = "volatile") -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if durability == "transient_local" else DurabilityPolicy.VOLATILE,
    )


class NodeConfigError(ValueError):
    """A parameter value the node cannot start with; the text names the parameter."""


# ----------------------------------------------------------------------------------------------------------------
# Helpers: the latest-frame mailbox, statistics, throttled logging
# ----------------------------------------------------------------------------------------------------------------
class LatestSlot:
    """A one-item mailbox: :meth:`put` replaces what is there (and says so), :meth:`take` waits for an item."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False

    def put(self, item) -> bool:
        """Store ``item``; return True when it replaced an item nobody had taken (that item is dropped)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float):
        """The stored item (removing it), or None after ``timeout`` seconds or once closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


@dataclasses.dataclass
class NodeStats:
    """Frame counters. ``received = processed + dropped + skipped_no_subscribers + rejected + failed + pending``
    where ``pending`` is the frame (at most one) in the mailbox or being processed."""

    received: int = 0
    processed: int = 0
    dropped: int = 0
    skipped_no_subscribers: int = 0
    rejected: int = 0
    failed: int = 0
    rejected_reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class ThrottledLogger:
    """Logs each kind of problem at most once per ``period`` seconds, with a count of the ones held back."""

    def __init__(self, logger, period: float):
        self._logger = logger
        self._period = float(period)
        self._last: dict[str, float] = {}
        self._held: collections.Counter = collections.Counter()
        self._once: set[str] = set()
        self._lock = threading.Lock()

    def log(self, level: str, key: str, message: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._period:
                self._held[key] += 1
                return False
            held, self._held[key] = self._held[key], 0
            self._last[key] = now
        if held:
            message += f" ({held} similar message(s) suppressed in the last {self._period:g} s)"
        self._emit(level, message)
        return True

    def once(self, level: str, key: str, message: str) -> bool:
        with self._lock:
            if key in self._once:
                return False
            self._once.add(key)
        self._emit(level, message)
        return True

    def _emit(self, level: str, message: str) -> None:
        # One call site per severity: rclpy's logger refuses a call site whose severity changes.
        if level == "error":
            self._logger.error(message)
        elif level == "warning":
            self._logger.warning(message)
        else:
            self._logger.info(message)


def _reason(exc: Exception) -> str:
    """A short category for an error message: the text before its first colon or semicolon."""
    text = str(exc)
    for sep in (":", ";"):
        text = text.split(sep, 1)[0]
    return text.strip()[:60] or type(exc).__name__


# ----------------------------------------------------------------------------------------------------------------
# The node
# ----------------------------------------------------------------------------------------------------------------
class DepthNode(Node):
    """The DNA-Depth node. Construct it like any rclpy node (``context=``, ``parameter_overrides=``, ...).

    Raises:
        NodeConfigError / FileNotFoundError / ValueError: a bad parameter or weights file (named in the message).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self._setup()
        except BaseException:
            if hasattr(self, "_worker"):
                self.stop()
            super().destroy_node()  # do not leave a half-built node in the graph
            raise

    def _setup(self) -> None:
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        p = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        self._check_params(p)
        self.params = p
        log = self.get_logger()
        self._tlog = ThrottledLogger(log, p["log_throttle_sec"])
        self.stats = NodeStats()
        self._stats_lock = threading.Lock()
        self.timings: collections.deque = collections.deque(maxlen=1000)

        # The estimator (raises on a bad weights path, device or size).
        roi = [float(v) for v in p["scale.ground_roi"]]
        self.estimator = DepthEstimator(
            p["weights"], device=p["device"], fp16=p["fp16"], backend=p["backend"],
            input_size=(p["input_height"], p["input_width"]) if p["input_height"] or p["input_width"] else None,
            output=p["output_resolution"], resize=p["resize_mode"], scale_mode=p["scale.mode"],
            scale_factor=p["scale.factor"],
            camera_height=p["scale.camera_height"] if p["scale.mode"] == "camera_height" else None,
            ground={"roi": tuple(roi), "max_tilt_deg": p["scale.max_tilt_deg"], "smoothing": p["scale.smoothing"]},
        )
        if p["warmup"]:
            self.estimator.warmup()

        # Intrinsics
        self._info_lock = threading.Lock()
        self._infos: collections.OrderedDict = collections.OrderedDict()  # stamp -> (K, w, h)
        self._fallback: CameraIntrinsics | None = None
        if p["intrinsics.fx"] > 0 and p["intrinsics.fy"] > 0:
            self._fallback = CameraIntrinsics(
                K=np.array([[p["intrinsics.fx"], 0.0, p["intrinsics.cx"]], [0.0, p["intrinsics.fy"], p["intrinsics.cy"]],
                            [0.0, 0.0, 1.0]]),
                size=(p["intrinsics.width"], p["intrinsics.height"]), source="parameters")
        self._rays_cache: tuple | None = None

        # Publishers (only the enabled ones exist)
        out_qos = _qos(p["qos.output.reliability"], p["qos.output.depth"], p["qos.output.durability"])
        self.pub_depth = self.create_publisher(Image, "depth", out_qos) if p["publish.depth"] else None
        self.pub_info = (self.create_publisher(CameraInfo, "depth/camera_info", out_qos)
                         if p["publish.camera_info"] else None)
        self.pub_points = self.create_publisher(PointCloud2, "points", out_qos) if p["publish.points"] else None
        self.pub_colored = (self.create_publisher(Image, "depth/colored", out_qos)
                            if p["publish.colored"] else None)
        self._publishers_out = [x for x in (self.pub_depth, self.pub_info, self.pub_points, self.pub_colored) if x]

        # Worker, then subscriptions
        self._slot = LatestSlot()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="dna_depth_worker", daemon=True)
        self._worker.start()
        in_qos = _qos(p["qos.input.reliability"], p["qos.input.depth"])
        if p["image_transport"] == "compressed":
            self.sub_image = self.create_subscription(CompressedImage, "image/compressed", self._on_image, in_qos)
        else:
            self.sub_image = self.create_subscription(Image, "image", self._on_image, in_qos)
        self.sub_info = self.create_subscription(CameraInfo, "camera_info", self._on_info, in_qos)

        est = self.estimator
        log.info(f"{est!r}; subscribed to '{self.sub_image.topic_name}' ({p['image_transport']}) and "
                 f"'{self.sub_info.topic_name}' [{p['qos.input.reliability']}, depth {p['qos.input.depth']}]; "
                 f"publishing {[x.topic_name for x in self._publishers_out]} [{p['qos.output.reliability']}, "
                 f"depth {p['qos.output.depth']}]")
        if not self._publishers_out:
            log.warning("every publish.* parameter is false: the node will not compute anything")
        if p["scale.mode"] == "none":
            log.warning("scale.mode is 'none': 'depth' and 'points' are RELATIVE (up to an unknown scale), not "
                        "metres. Set scale.mode to fixed or camera_height for metric output.")

    # -- parameters ---------------------------------------------------------------------------------------------
    @staticmethod
    def _check_params(p: dict) -> None:
        for spec in PARAMETERS:
            if spec.choices and p[spec.name] not in spec.choices:
                raise NodeConfigError(f"parameter '{spec.name}': '{p[spec.name]}' is not one of "
                                      f"{', '.join(spec.choices)}")
        if not str(p["weights"]).strip():
            raise NodeConfigError("parameter 'weights' is empty: give the path of a dna-depth checkpoint "
                                  "(.safetensors)")
        if p["scale.mode"] == "camera_height" and not p["scale.camera_height"] > 0:
            raise NodeConfigError("parameter 'scale.camera_height' must be > 0 metres when scale.mode is "
                                  "camera_height")
        if len(p["scale.ground_roi"]) != 4:
            raise NodeConfigError(f"parameter 'scale.ground_roi' must have 4 values [top, bottom, left, right], "
                                  f"got {list(p['scale.ground_roi'])}")
        for name in ("input_height", "input_width"):
            if p[name] % 32:
                raise NodeConfigError(f"parameter '{name}': {p[name]} is not a multiple of 32")
        if bool(p["input_height"]) != bool(p["input_width"]):
            raise NodeConfigError("parameters 'input_height' and 'input_width' must both be set or both be 0")

    # -- callbacks (executor thread): cheap ---------------------------------------------------------------------
    def has_subscribers(self) -> bool:
        return any(pub.get_subscription_count() > 0 for pub in self._publishers_out)

    def _on_image(self, msg) -> None:
        with self._stats_lock:
            self.stats.received += 1
            if not self.has_subscribers():
                self.stats.skipped_no_subscribers += 1
                return
        if self._slot.put((msg, time.perf_counter())):
            with self._stats_lock:
                self.stats.dropped += 1

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            intrinsics = camera_info_intrinsics(msg, self.params["intrinsics_source"])
        except CameraInfoError as exc:
            for problem in exc.problems:  # each kind of problem is throttled on its own
                self._tlog.log("warning", problem.key, f"ignoring camera_info: {problem.message}")
            return
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self._info_lock:
            self._infos[key] = intrinsics
            self._infos.move_to_end(key)
            while len(self._infos) > 32:
                self._infos.popitem(last=False)

    # -- worker thread ------------------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._slot.take(timeout=0.1)
            if item is None:
                continue
            msg, t_recv = item
            try:
                if not self.has_subscribers():
                    with self._stats_lock:
                        self.stats.skipped_no_subscribers += 1
                    continue
                self._process(msg, t_recv)
                with self._stats_lock:
                    self.stats.processed += 1
            except (ConversionError, ValueError) as exc:
                reason = _reason(exc)
                with self._stats_lock:
                    self.stats.rejected += 1
                    self.stats.rejected_reasons[reason] += 1
                self._tlog.log("error", "rejected:" + reason, f"dropping frame: {exc}")
            except Exception as exc:  # keep serving whatever happens to one frame
                with self._stats_lock:
                    self.stats.failed += 1
                self._tlog.log("error", "failed:" + type(exc).__name__,
                               f"frame failed: {type(exc).__name__}: {exc}")

    def _intrinsics(self, header, width: int, height: int) -> np.ndarray | None:
        """K at ``width`` x ``height`` from the camera_info with this stamp (else the latest), else the fallback
        parameters, else None."""
        key = (header.stamp.sec, header.stamp.nanosec)
        with self._info_lock:
            entry = self._infos.get(key)
            if entry is None and self._infos:
                entry = next(reversed(self._infos.values()))
        if entry is not None:
            iw, ih = entry.size
            if iw and ih and (iw, ih) != (width, height):
                self._tlog.log("warning", "info_size", f"camera_info is for {iw}x{ih} but the image is "
                               f"{width}x{height}: scaling the intrinsics to the image")
            return entry.at((width, height))
        if self._fallback is not None:
            self._tlog.once("warning", "fallback", "no camera_info received: using the intrinsics.* parameters")
            return self._fallback.at((width, height))
        self._tlog.once("warning", "no_intrinsics", "no camera_info received and no intrinsics.* parameters: "
                        "publishing depth only (no 'points', no 'depth/camera_info') until camera_info arrives")
        return None

    def _rays(self, K: np.ndarray, h: int, w: int) -> np.ndarray:
        """Unit-depth rays ``(h, w, 3)`` for ``K`` (cached: intrinsics rarely change)."""
        key = (K.tobytes(), h, w)
        if self._rays_cache is None or self._rays_cache[0] != key:
            self._rays_cache = (key, geometry.depth_to_points(np.ones((h, w), np.float32), K))
        return self._rays_cache[1]

    def _process(self, msg, t_recv: float) -> None:
        p = self.params
        t0 = time.perf_counter()
        header = msg.header
        rgb = conv.image_to_rgb(msg)
        H, W = rgb.shape[:2]
        K = self._intrinsics(header, W, H)
        t1 = time.perf_counter()

        res = self.estimator.predict(rgb, K)
        depth = res.depth
        if p["depth.max_range"] > 0:
            with np.errstate(invalid="ignore"):
                depth[depth > p["depth.max_range"]] = np.nan
        t2 = time.perf_counter()

        h, w = depth.shape
        pub_depth = self.pub_depth is not None and self.pub_depth.get_subscription_count() > 0
        pub_info = self.pub_info is not None and res.K is not None and self.pub_info.get_subscription_count() > 0
        pub_points = (self.pub_points is not None and res.K is not None
                      and self.pub_points.get_subscription_count() > 0)
        pub_colored = self.pub_colored is not None and self.pub_colored.get_subscription_count() > 0
        msgs = []
        if pub_depth:
            msgs.append((self.pub_depth, conv.depth_to_image(depth, header, p["depth.encoding"])))
        if pub_info:
            msgs.append((self.pub_info, conv.make_camera_info(res.K, w, h, header)))
        if pub_points:
            msgs.append((self.pub_points, self._cloud(depth, res.K, rgb, header)))
        if pub_colored:
            colored = colorize_depth(depth, p["colored.max_depth"])
            msgs.append((self.pub_colored, conv.rgb_to_image(colored, header, "rgb8")))
        t3 = time.perf_counter()
        for pub, out in msgs:
            pub.publish(out)
        t4 = time.perf_counter()
        self.timings.append({
            "queue": t0 - t_recv, "convert": t1 - t0, "preprocess": res.timings["preprocess"],
            "inference": res.timings["inference"], "postprocess": res.timings["postprocess"],
            "outputs": t3 - t2, "publish": t4 - t3, "total": t4 - t0, "scale": res.scale,
        })

    def _cloud(self, depth: np.ndarray, K: np.ndarray, rgb: np.ndarray, header) -> PointCloud2:
        p = self.params
        d = int(p["points.decimation"])
        dd = depth[::d, ::d]
        # Pixel (i, j) of the decimated grid is pixel (d*i, d*j) of the depth image: fx/d, cx/d (exactly).
        Kd = np.array(K, dtype=np.float64)
        Kd[:2] /= d
        Kd[2] = (0.0, 0.0, 1.0)
        points = self._rays(Kd, *dd.shape) * dd[..., None]
        if p["points.max_range"] > 0:
            with np.errstate(invalid="ignore"):
                far = np.einsum("ijk,ijk->ij", points, points) > p["points.max_range"] ** 2
            points[far] = np.nan
        colors = None
        if p["points.xyzrgb"]:
            h, w = depth.shape
            if rgb.shape[:2] != (h, w):  # output at the network's resolution: the colours the network saw
                rgb, _ = fit_image(rgb, (w, h), self.estimator.resize)
            colors = rgb[::d, ::d]
        return conv.points_to_cloud(points, header, colors)

    # -- shutdown -----------------------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker thread (waits for the frame in progress)."""
        self._stop.set()
        self._slot.close()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout)

    def destroy_node(self):
        if not hasattr(self, "_worker"):
            return super().destroy_node()
        self.stop()
        s = self.stats
        msg = (f"frames: received {s.received}, processed {s.processed}, dropped {s.dropped}, "
               f"skipped (no subscribers) {s.skipped_no_subscribers}, rejected {s.rejected}, failed {s.failed}")
        timings = list(self.timings)
        if timings:
            stages = ("convert", "inference", "outputs", "publish", "total")
            medians = ", ".join(f"{k} {1000 * float(np.median([t[k] for t in timings])):.1f}" for k in stages)
            msg += f"; median ms per frame: {medians}"
        self.get_logger().info(msg)
        return super().destroy_node()


def main(args=None) -> int:
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = DepthNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (NodeConfigError, FileNotFoundError, ValueError, RuntimeError) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
