"""What the plain and the lifecycle node share: parameters, the model, publishers, subscriptions, the worker,
diagnostics, and the four steps that bring them up and down.

:class:`DepthRuntime` lives inside a node (``rclpy.node.Node`` or ``rclpy.lifecycle.LifecycleNode``):

- construction declares the parameters (:func:`dna_depth_ros.params.declare_parameters`; a wrong type or range
  is a :class:`~dna_depth_ros.params.NodeConfigError`), registers the parameter callbacks and routes Python
  warnings to the node's logger;
- :meth:`~DepthRuntime.configure`: checks the parameters, loads the weights (and warms the network up), creates
  the publishers, the camera_info subscription and the /diagnostics timer;
- :meth:`~DepthRuntime.activate`: starts the worker thread and subscribes to the image;
- :meth:`~DepthRuntime.deactivate`: unsubscribes from the image and stops the worker (the model stays loaded);
- :meth:`~DepthRuntime.cleanup`: destroys the publishers and subscriptions and frees the model.

``depth_node`` runs configure and activate in its constructor; ``depth_lifecycle_node`` runs them on its
transitions.

Parameters at runtime: a change is checked by the specs (rclpy: type and range; :func:`refuse_change`: choices,
consistency, and whether the parameter may change while configured) and then applied: the per-frame ones
(``depth.*``, ``points.*``, ``colored.*``, ``max_input_pixels``) are read for the next frame, ``publish.*``
create or destroy the output's publisher, ``scale.*`` go to the estimator, ``intrinsics.*`` to the fallback.
While a lifecycle node is unconfigured every parameter can change (it takes effect at the next configure).
"""
from __future__ import annotations

import collections
import gc
import time
from typing import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Empty

from dna_depth_core.inference import DepthEstimator

from dna_depth_ros.diagnostics import CameraLink, DiagnosticsMonitor, Inputs, to_message
from dna_depth_ros.intrinsics import IntrinsicsStore, fallback_intrinsics
from dna_depth_ros.outputs import Outputs
from dna_depth_ros.params import check_params, declare_parameters, refuse_change
from dna_depth_ros.pipeline import FramePipeline
from dna_depth_ros.qos import qos_profile
from dna_depth_ros.throttle import ThrottledLogger, WarningsToLogger
from dna_depth_ros.worker import FrameWorker, NodeStats

__all__ = ["DepthRuntime", "apply_scale_parameter"]

_TYPE_NAMES = {Image: "sensor_msgs/msg/Image", CompressedImage: "sensor_msgs/msg/CompressedImage"}


def compressed_topic(node) -> str:
    """image_transport's rule: the compressed stream of an image topic is ``<resolved image>/compressed``, so a
    remapping of ``image`` moves it too."""
    return node.resolve_topic_name("image") + "/compressed"


def build_estimator(p: dict) -> DepthEstimator:
    """The estimator the parameters ``p`` describe (raises on a bad weights path, device or size)."""
    return DepthEstimator(
        p["weights"], device=p["device"], fp16=p["fp16"], backend=p["backend"],
        input_size=(p["input_height"], p["input_width"]) if p["input_height"] or p["input_width"] else None,
        output=p["output_resolution"], resize=p["resize_mode"], scale_mode=p["scale.mode"],
        scale_factor=p["scale.factor"],
        camera_height=p["scale.camera_height"] if p["scale.mode"] == "camera_height" else None,
        ground={"roi": tuple(float(v) for v in p["scale.ground_roi"]), "max_tilt_deg": p["scale.max_tilt_deg"],
                "smoothing": p["scale.smoothing"]},
        converge_frames=p["scale.converge_frames"], converge_tolerance=p["scale.converge_tolerance"],
        freeze_scale=p["scale.freeze"], withhold=p["scale.withhold"], precision=p["precision"],
    )


def apply_scale_parameter(estimator: DepthEstimator, name: str, value) -> None:
    """Apply a changed ``scale.*`` parameter to a running estimator: the factor at once; the camera height
    restarts the ground-plane filter (and a frozen scale's convergence); the ground region, tilt limit and
    smoothing apply from the next fit. The ground-plane ones do nothing unless scale.mode is camera_height (they
    are kept for a restart; the mounting plane of the ground-aware outputs reads the height for every frame)."""
    tracker = estimator.scale_tracker
    if name == "scale.factor":
        tracker.set_factor(float(value))
        return
    ground = estimator.ground
    if ground is None:
        return
    if name == "scale.camera_height":
        tracker.set_camera_height(float(value))
    elif name == "scale.ground_roi":
        ground.roi = tuple(float(v) for v in value)
    elif name == "scale.max_tilt_deg":
        ground.max_tilt_deg = float(value)
    elif name == "scale.smoothing":
        ground.smoothing = float(value)


class DepthRuntime:
    """The node's machinery (see the module docstring).

    Args:
        node: the rclpy node it lives in.
        create_publisher: ``create_publisher(msg_type, topic, qos)`` -> publisher (a LifecyclePublisher in the
            lifecycle node).
        destroy_publisher: ``destroy_publisher(publisher)``.

    Raises:
        NodeConfigError: a parameter override of the wrong type or out of range.
    """

    def __init__(self, node, create_publisher: Callable, destroy_publisher: Callable):
        self.node = node
        self._create_publisher = create_publisher
        self._destroy_publisher = destroy_publisher
        self.params = declare_parameters(node)
        self.log = node.get_logger()
        self.tlog = ThrottledLogger(self.log, self.params["log_throttle_sec"])
        self._warnings = WarningsToLogger(self.tlog).install()
        self.worker = FrameWorker(self._process, self.has_subscribers, self.tlog)
        self.timings: collections.deque = collections.deque(maxlen=1000)  # per-frame stage times (pipeline)
        self.estimator: DepthEstimator | None = None
        self.intrinsics: IntrinsicsStore | None = None
        self.outputs: Outputs | None = None
        self.pipeline: FramePipeline | None = None
        self.sub_image = None
        self.sub_info = None
        self.sub_rearm = None
        self._diag_pub = None
        self._diag_timer = None
        self._monitor: DiagnosticsMonitor | None = None
        self._diag_last_done = 0.0
        self._diag_problems = None
        self._diag_warned: set[str] = set()
        self.last_report = None
        self._active_since = time.monotonic()
        self.configured = False
        self.active = False
        node.add_on_set_parameters_callback(self._on_set_parameters)
        node.add_post_set_parameters_callback(self._after_set_parameters)

    # -- state --------------------------------------------------------------------------------------------------
    @property
    def stats(self) -> NodeStats:
        return self.worker.stats

    def has_subscribers(self) -> bool:
        """Whether any output has a subscriber (else frames are skipped before any work)."""
        outputs = self.outputs
        return outputs is not None and outputs.has_subscribers()

    def _process(self, msg, t_recv: float) -> None:
        pipeline = self.pipeline
        if pipeline is None:  # cleaned up while the frame waited
            return
        pipeline.process(msg, t_recv)

    # -- the four steps -----------------------------------------------------------------------------------------
    def configure(self) -> None:
        """Check the parameters, load the model (warm it up), create publishers, the camera_info subscription and
        the /diagnostics timer. Raises NodeConfigError / FileNotFoundError / ValueError / RuntimeError naming the
        problem; what was created is destroyed again."""
        p = self.params
        check_params(p)
        try:
            self.estimator = build_estimator(p)
            if p["warmup"]:
                self.estimator.warmup()
            self.intrinsics = IntrinsicsStore(p["intrinsics_source"], fallback_intrinsics(p), self.tlog)
            out_qos = qos_profile(p["qos.output.reliability"], p["qos.output.depth"], p["qos.output.durability"])
            self.outputs = Outputs(lambda msg_type, topic: self._create_publisher(msg_type, topic, out_qos),
                                   self._destroy_publisher, p, self.estimator.resize, self.tlog)
            self.pipeline = FramePipeline(self.estimator, self.intrinsics, self.outputs, p, self.tlog, self.timings)
            in_qos = qos_profile(p["qos.input.reliability"], p["qos.input.depth"])
            self.sub_info = self.node.create_subscription(CameraInfo, "camera_info", self.intrinsics.add, in_qos)
            self.sub_rearm = self.node.create_subscription(Empty, "depth/scale/rearm", self._rearm_scale, 10)
            if p["diagnostics.period"] > 0:
                self._monitor = DiagnosticsMonitor(p["diagnostics.falling_behind"], p["diagnostics.no_frames_sec"])
                self._diag_pub = self.node.create_publisher(
                    DiagnosticArray, "/diagnostics",
                    QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
                self._diag_timer = self.node.create_timer(p["diagnostics.period"], self.publish_diagnostics)
        except BaseException:
            self._teardown()
            raise
        self.configured = True
        published = [x.topic_name for x in self.outputs.enabled]
        self.log.info(f"{self.estimator!r}; camera_info from '{self.sub_info.topic_name}'; publishing {published} "
                      f"[{p['qos.output.reliability']}, depth {p['qos.output.depth']}]")
        if not published:
            self.log.warning("every publish.* parameter is false: the node will not compute anything")
        if p["scale.mode"] == "none":
            self.log.warning("scale.mode is 'none': 'depth/image' and 'points' are RELATIVE (up to an unknown "
                             "scale), not metres. Set scale.mode to fixed or camera_height for metric output.")
        if p["scale.freeze"] and p["scale.mode"] != "camera_height":
            self.log.warning(f"scale.freeze applies to scale.mode camera_height; with '{p['scale.mode']}' the scale "
                             f"is constant anyway")

    def _rearm_scale(self, _msg) -> None:
        """``depth/scale/rearm``: unfreeze the scale and wait for it to converge (and freeze) again."""
        if self.estimator is not None:
            self.estimator.rearm_scale()
            self.log.info("scale re-armed: waiting for a new convergence")

    def activate(self) -> None:
        """Start the worker and subscribe to the camera image."""
        p = self.params
        self.worker.start()
        in_qos = qos_profile(p["qos.input.reliability"], p["qos.input.depth"])
        if p["image_transport"] == "compressed":
            self.sub_image = self.node.create_subscription(CompressedImage, compressed_topic(self.node),
                                                           self.worker.offer, in_qos)
        else:
            self.sub_image = self.node.create_subscription(Image, "image", self.worker.offer, in_qos)
        self._active_since = time.monotonic()
        self.active = True
        self.log.info(f"active: subscribed to '{self.sub_image.topic_name}' ({p['image_transport']}) "
                      f"[{p['qos.input.reliability']}, depth {p['qos.input.depth']}]")

    def deactivate(self) -> None:
        """Unsubscribe from the image and stop the worker (waits for the frame in progress); the model stays."""
        self.active = False
        if self.sub_image is not None:
            self.node.destroy_subscription(self.sub_image)
            self.sub_image = None
        self.worker.stop()

    def cleanup(self) -> None:
        """Deactivate if needed, destroy publishers and subscriptions, free the model."""
        if self.active:
            self.deactivate()
        self._teardown()
        self.configured = False

    def shutdown(self) -> None:
        """Clean up and give Python warnings back to stderr."""
        self.cleanup()
        self._warnings.uninstall()

    def _teardown(self) -> None:
        if self._diag_timer is not None:
            self.node.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.node.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        if self.sub_info is not None:
            self.node.destroy_subscription(self.sub_info)
            self.sub_info = None
        if self.sub_rearm is not None:
            self.node.destroy_subscription(self.sub_rearm)
            self.sub_rearm = None
        if self.outputs is not None:
            self.outputs.close()
        self.pipeline = self.outputs = self.intrinsics = None
        if self.estimator is not None:
            self.estimator = None
            gc.collect()

    # -- parameters at runtime ----------------------------------------------------------------------------------
    def _on_set_parameters(self, parameters) -> SetParametersResult:
        changes = {prm.name: prm.value for prm in parameters}
        reason = refuse_change(self.params, changes, running=self.configured)
        if reason is not None:
            self.log.warning(f"refused: {reason}")
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, parameters) -> None:
        for prm in parameters:
            name, value = prm.name, prm.value
            self.params[name] = value
            if not self.configured:
                continue
            if name.startswith("scale."):
                apply_scale_parameter(self.estimator, name, value)
            elif name.startswith("intrinsics."):
                self.intrinsics.set_fallback(fallback_intrinsics(self.params))
            elif name == "intrinsics_source":
                self.intrinsics.source = value
            elif name.startswith("publish."):
                self.outputs.sync()
            elif name == "log_throttle_sec":
                self.tlog.period = value
            elif name == "diagnostics.falling_behind" and self._monitor is not None:
                self._monitor.falling_behind = float(value)
            elif name == "diagnostics.no_frames_sec" and self._monitor is not None:
                self._monitor.no_frames_sec = float(value)
            self.log.info(f"parameter {name} = {value!r}")

    def summary(self) -> str:
        """The frame counters and the median stage times, one line (logged at shutdown)."""
        s = self.worker.snapshot()
        msg = (f"frames: received {s.received}, processed {s.processed}, dropped {s.dropped}, "
               f"skipped (no subscribers) {s.skipped_no_subscribers}, rejected {s.rejected}, failed {s.failed}")
        timings = list(self.timings)
        if timings:
            stages = ("convert", "inference", "outputs", "publish", "total")
            medians = ", ".join(f"{k} {1000 * float(np.median([t[k] for t in timings])):.1f}" for k in stages)
            msg += f"; median ms per frame: {medians}"
        return msg

    # -- diagnostics --------------------------------------------------------------------------------------------
    def diagnostic_inputs(self) -> Inputs:
        """What the node knows now, for :class:`~dna_depth_ros.diagnostics.DiagnosticsMonitor`."""
        p = self.params
        s = self.worker.snapshot()
        now = time.monotonic()
        msg_type = CompressedImage if p["image_transport"] == "compressed" else Image
        topic = (self.sub_image.topic_name if self.sub_image is not None
                 else compressed_topic(self.node) if msg_type is CompressedImage
                 else self.node.resolve_topic_name("image"))
        publishers = [(info.node_name, info.topic_type,
                       "reliable" if info.qos_profile.reliability == ReliabilityPolicy.RELIABLE else "best_effort")
                      for info in self.node.get_publishers_info_by_topic(topic)]
        matched = self.sub_image.get_publisher_count() if self.sub_image is not None else 0
        pipeline, store, est = self.pipeline, self.intrinsics, self.estimator
        timings = list(self.timings)
        latencies = [t["queue"] + t["total"] for t in timings if t["done"] > self._diag_last_done]
        if timings:
            self._diag_last_done = timings[-1]["done"]
        problems = store.problems.copy() if store is not None else None
        new_problems = [k for k, n in (problems or {}).items()
                        if n > (self._diag_problems or {}).get(k, 0)]
        self._diag_problems = problems
        if store is not None and store.has_camera_info:
            intrinsics = "camera_info"
        elif store is not None and store.fallback is not None:
            intrinsics = "parameters"
        else:
            intrinsics = "none"
        res = pipeline.last_result if pipeline is not None else None
        if res is not None:
            scale = {"mode": res.scale_mode, "value": res.scale, "metric": res.metric}
        else:
            scale = {"mode": p["scale.mode"], "value": p["scale.factor"] if p["scale.mode"] != "none" else 1.0,
                     "metric": p["scale.mode"] == "fixed"}
        last = self.worker.last_received
        since = now - max(last, self._active_since) if last is not None else now - self._active_since
        return Inputs(
            now=now, active=self.active, subscribed=self.has_subscribers(), received=s.received,
            processed=s.processed, dropped=s.dropped, skipped=s.skipped_no_subscribers, rejected=s.rejected,
            failed=s.failed, rejected_reasons=dict(s.rejected_reasons), latencies=latencies, since_frame=since,
            camera=CameraLink(topic=topic, expected_type=_TYPE_NAMES[msg_type],
                              reliability=p["qos.input.reliability"], publishers=publishers, matched=matched),
            camera_info_received=store.received if store is not None else 0,
            camera_info_rejected=store.rejected if store is not None else 0,
            camera_info_problems=new_problems, intrinsics=intrinsics, scale=scale,
            backend=est.backend.name if est is not None else "-", device=str(est.device) if est is not None else "-",
            model=str(getattr(est.config, "name", "?")) if est is not None else "-")

    def publish_diagnostics(self) -> None:
        """One report on /diagnostics (the timer's callback); its ERROR reasons are also logged (throttled), a
        WARN reason once when it appears."""
        if self._monitor is None or self._diag_pub is None:
            return
        try:
            self._publish_diagnostics()
        except Exception as exc:  # a timer callback that raises would stop the executor: log it and keep serving
            self.tlog.log("error", "diagnostics_failed", f"/diagnostics report failed: {type(exc).__name__}: {exc}")

    def _publish_diagnostics(self) -> None:
        report = self._monitor.update(self.diagnostic_inputs())
        self.last_report = report
        warned = set()
        for key, level, text in report.reasons:
            if level >= 2:
                self.tlog.log("error", "diagnostics:" + key, text)
            else:
                warned.add(key)
                if key not in self._diag_warned:
                    self.log.warning(text)
        self._diag_warned = warned
        est = self.estimator
        hardware = f"{est.backend.name} on {est.device}" if est is not None else "-"
        self._diag_pub.publish(to_message(report, f"{self.node.get_fully_qualified_name()}: depth estimation", hardware,
                                          self.node.get_clock().now().to_msg()))
