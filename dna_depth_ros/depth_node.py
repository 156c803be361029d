"""``depth_node``: camera in; metric depth image, camera_info, point clouds, a laser scan and the scale out.

A thin rclpy shell around :class:`dna_depth_core.inference.DepthEstimator` (docs/ros.md has the full interface).

Topics (set by remapping):

- in: ``image`` (sensor_msgs/Image) or, with ``image_transport: compressed``, ``<image>/compressed`` where
  ``<image>`` is what ``image`` resolves to (sensor_msgs/CompressedImage, jpeg/png); ``camera_info``
  (sensor_msgs/CameraInfo); ``depth/scale/rearm`` (std_msgs/Empty: re-arm a frozen scale).
- out: ``depth/image`` (32FC1 metres with the REP 117 values; or 16UC1 millimetres, 0 invalid),
  ``depth/camera_info``, ``depth/colored`` (rgb8), ``depth/scale`` (DiagnosticArray), ``points`` (organised
  PointCloud2 in the optical frame), ``points/obstacles``, ``points/ground``, ``scan`` (LaserScan),
  ``rgb/image`` and ``rgb/camera_info`` (the input at the depth's resolution); see
  :data:`~dna_depth_ros.outputs.OUTPUT_TOPICS`.

Every output carries the input image's header (acquisition stamp; the optical frame_id except for the scan).

This module is the wiring: parameters (:mod:`~dna_depth_ros.params`), publishers and the messages of a frame
(:mod:`~dna_depth_ros.outputs`), camera_info (:mod:`~dna_depth_ros.intrinsics`), the latest-frame worker thread
(:mod:`~dna_depth_ros.worker`) that runs the per-frame processing (:mod:`~dna_depth_ros.pipeline`), and
:func:`main`, the console script.
"""
from __future__ import annotations

import collections
import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Empty

from dna_depth_core.inference import DepthEstimator

from dna_depth_ros.intrinsics import IntrinsicsStore, fallback_intrinsics
from dna_depth_ros.outputs import OUTPUT_TOPICS, OUTPUT_TYPES, Outputs, output_parameter
from dna_depth_ros.params import NODE_NAME, PARAMETERS, NodeConfigError, check_params, descriptor
from dna_depth_ros.pipeline import FramePipeline
from dna_depth_ros.qos import qos_profile
from dna_depth_ros.throttle import ThrottledLogger
from dna_depth_ros.worker import FrameWorker, NodeStats

__all__ = ["DepthNode", "NODE_NAME", "NodeConfigError", "main"]


class DepthNode(Node):
    """The DNA-Depth node. Construct it like any rclpy node (``context=``, ``parameter_overrides=``, ...).

    Attributes: ``params`` (name -> value), ``estimator``, ``stats`` (:class:`~dna_depth_ros.worker.NodeStats`),
    ``timings`` (per-frame stage times), ``outputs`` (the publishers by output name, None when disabled; also
    ``pub_depth``, ``pub_info``, ``pub_points``, ``pub_colored``).

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
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        p = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        check_params(p)
        self.params = p
        log = self.get_logger()
        self._tlog = ThrottledLogger(log, p["log_throttle_sec"])

        # The estimator (raises on a bad weights path, device or size).
        roi = [float(v) for v in p["scale.ground_roi"]]
        self.estimator = DepthEstimator(
            p["weights"], device=p["device"], fp16=p["fp16"], backend=p["backend"],
            input_size=(p["input_height"], p["input_width"]) if p["input_height"] or p["input_width"] else None,
            output=p["output_resolution"], resize=p["resize_mode"], scale_mode=p["scale.mode"],
            scale_factor=p["scale.factor"],
            camera_height=p["scale.camera_height"] if p["scale.mode"] == "camera_height" else None,
            ground={"roi": tuple(roi), "max_tilt_deg": p["scale.max_tilt_deg"], "smoothing": p["scale.smoothing"]},
            converge_frames=p["scale.converge_frames"], converge_tolerance=p["scale.converge_tolerance"],
            freeze_scale=p["scale.freeze"], withhold=p["scale.withhold"],
        )
        if p["warmup"]:
            self.estimator.warmup()

        self.intrinsics = IntrinsicsStore(p["intrinsics_source"], fallback_intrinsics(p), self._tlog)

        # Publishers (only the enabled ones exist)
        out_qos = qos_profile(p["qos.output.reliability"], p["qos.output.depth"], p["qos.output.durability"])
        publishers = {name: self.create_publisher(OUTPUT_TYPES[name], OUTPUT_TOPICS[name], out_qos)
                      if p[output_parameter(name)] else None for name in OUTPUT_TOPICS}
        self.pub_depth, self.pub_info = publishers["depth"], publishers["camera_info"]
        self.pub_points, self.pub_colored = publishers["points"], publishers["colored"]
        self.outputs = Outputs(publishers, p, self.estimator.resize, self._tlog)
        self.pipeline = FramePipeline(self.estimator, self.intrinsics, self.outputs)

        # Worker, then subscriptions
        self._worker = FrameWorker(self.pipeline.process, self.has_subscribers, self._tlog)
        self._worker.start()
        in_qos = qos_profile(p["qos.input.reliability"], p["qos.input.depth"])
        if p["image_transport"] == "compressed":
            # image_transport's rule: the compressed stream of an image topic is <resolved image>/compressed.
            self.sub_image = self.create_subscription(
                CompressedImage, self.resolve_topic_name("image") + "/compressed", self._worker.offer, in_qos)
        else:
            self.sub_image = self.create_subscription(Image, "image", self._worker.offer, in_qos)
        self.sub_info = self.create_subscription(CameraInfo, "camera_info", self.intrinsics.add, in_qos)
        self.sub_rearm = self.create_subscription(Empty, "depth/scale/rearm", self._rearm_scale, 10)

        est = self.estimator
        published = [x.topic_name for x in self.outputs.enabled]
        log.info(f"{est!r}; subscribed to '{self.sub_image.topic_name}' ({p['image_transport']}) and "
                 f"'{self.sub_info.topic_name}' [{p['qos.input.reliability']}, depth {p['qos.input.depth']}]; "
                 f"publishing {published} [{p['qos.output.reliability']}, depth {p['qos.output.depth']}]")
        if not published:
            log.warning("every publish.* parameter is false: the node will not compute anything")
        if p["scale.mode"] == "none":
            log.warning("scale.mode is 'none': 'depth/image' and 'points' are RELATIVE (up to an unknown scale), "
                        "not metres. Set scale.mode to fixed or camera_height for metric output.")
        if p["scale.freeze"] and p["scale.mode"] != "camera_height":
            log.warning(f"scale.freeze applies to scale.mode camera_height; with '{p['scale.mode']}' the scale "
                        f"is constant anyway")

    def _rearm_scale(self, _msg) -> None:
        """``depth/scale/rearm``: unfreeze the scale and wait for it to converge (and freeze) again."""
        self.estimator.rearm_scale()
        self.get_logger().info("scale re-armed: waiting for a new convergence")

    # -- state --------------------------------------------------------------------------------------------------
    @property
    def stats(self) -> NodeStats:
        return self._worker.stats

    @property
    def timings(self) -> collections.deque:
        return self.pipeline.timings

    def has_subscribers(self) -> bool:
        """Whether any output has a subscriber (else frames are skipped before any work)."""
        return self.outputs.has_subscribers()

    # -- shutdown -----------------------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """Stop the worker thread (waits for the frame in progress)."""
        self._worker.stop(timeout)

    def summary(self) -> str:
        """The frame counters and the median stage times, one line."""
        s = self.stats
        msg = (f"frames: received {s.received}, processed {s.processed}, dropped {s.dropped}, "
               f"skipped (no subscribers) {s.skipped_no_subscribers}, rejected {s.rejected}, failed {s.failed}")
        timings = list(self.timings)
        if timings:
            stages = ("convert", "inference", "outputs", "publish", "total")
            medians = ", ".join(f"{k} {1000 * float(np.median([t[k] for t in timings])):.1f}" for k in stages)
            msg += f"; median ms per frame: {medians}"
        return msg

    def destroy_node(self):
        if not hasattr(self, "_worker"):
            return super().destroy_node()
        self.stop()
        self.get_logger().info(self.summary())
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
