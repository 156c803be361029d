"""``depth_node``: camera in; metric depth image, camera_info, point clouds, a laser scan and the scale out.

A thin rclpy shell around :class:`dna_depth_core.inference.DepthEstimator` (docs/ros.md has the full interface).

Topics (set by remapping):

- in: ``image`` (sensor_msgs/Image) or, with ``image_transport: compressed``, ``<image>/compressed`` where
  ``<image>`` is what ``image`` resolves to (sensor_msgs/CompressedImage, jpeg/png); ``camera_info``
  (sensor_msgs/CameraInfo); ``depth/scale/rearm`` (std_msgs/Empty: re-arm a frozen scale).
- out: ``depth/image`` (32FC1 metres with the REP 117 values; or 16UC1 millimetres, 0 invalid),
  ``depth/camera_info``, ``depth/colored`` (rgb8), ``depth/scale`` (DiagnosticArray), ``points`` (organised
  PointCloud2 in the optical frame), ``points/obstacles``, ``points/ground``, ``scan`` (LaserScan),
  ``rgb/image`` and ``rgb/camera_info`` (the input at the depth's resolution), ``/diagnostics``; see
  :data:`~dna_depth_ros.outputs.OUTPUT_TOPICS`.

Every output carries the input image's header (acquisition stamp; the optical frame_id except for the scan).

:class:`DepthNode` is a plain node that configures and activates its :class:`~dna_depth_ros.runtime.DepthRuntime`
(parameters, model, publishers, subscriptions, worker, diagnostics) when it is built;
``depth_lifecycle_node`` (:mod:`dna_depth_ros.lifecycle_node`) is the managed variant. :func:`main` is the
console script.
"""
from __future__ import annotations

import collections
import sys

from rclpy.node import Node

from dna_depth_ros.cli import run
from dna_depth_ros.params import NODE_NAME, NodeConfigError
from dna_depth_ros.runtime import DepthRuntime
from dna_depth_ros.worker import NodeStats

__all__ = ["DepthNode", "NODE_NAME", "NodeConfigError", "main"]


class DepthNode(Node):
    """The DNA-Depth node. Construct it like any rclpy node (``context=``, ``parameter_overrides=``, ...).

    Attributes: ``runtime`` (:class:`~dna_depth_ros.runtime.DepthRuntime`), ``params`` (name -> value),
    ``estimator``, ``stats`` (:class:`~dna_depth_ros.worker.NodeStats`), ``timings`` (per-frame stage times),
    ``sub_image``, ``pub_depth``, ``pub_info``, ``pub_points``, ``pub_colored`` (None when disabled).

    Raises:
        NodeConfigError / FileNotFoundError / ValueError: a bad parameter or weights file (named in the message).
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self.runtime = None
        try:
            self.runtime = DepthRuntime(self, self.create_publisher, self.destroy_publisher)
            self.runtime.configure()
            self.runtime.activate()
        except BaseException:
            if self.runtime is not None:
                self.runtime.shutdown()
            super().destroy_node()  # do not leave a half-built node in the graph
            raise

    # -- state --------------------------------------------------------------------------------------------------
    @property
    def params(self) -> dict:
        return self.runtime.params

    @property
    def estimator(self):
        return self.runtime.estimator

    @property
    def stats(self) -> NodeStats:
        return self.runtime.stats

    @property
    def timings(self) -> collections.deque:
        return self.runtime.timings

    def _publisher(self, name: str):
        outputs = self.runtime.outputs
        return outputs.publishers[name] if outputs is not None else None

    pub_depth = property(lambda self: self._publisher("depth"))
    pub_info = property(lambda self: self._publisher("camera_info"))
    pub_points = property(lambda self: self._publisher("points"))
    pub_colored = property(lambda self: self._publisher("colored"))

    @property
    def sub_image(self):
        """The camera image subscription (None while inactive)."""
        return self.runtime.sub_image

    def has_subscribers(self) -> bool:
        """Whether any output has a subscriber (else frames are skipped before any work)."""
        return self.runtime.has_subscribers()

    # -- shutdown -----------------------------------------------------------------------------------------------
    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking frames: unsubscribe from the image and stop the worker (waits for the frame in progress)."""
        self.runtime.deactivate()

    def summary(self) -> str:
        """The frame counters and the median stage times, one line."""
        return self.runtime.summary()

    def destroy_node(self):
        if self.runtime is None:
            return super().destroy_node()
        runtime, self.runtime = self.runtime, None
        runtime.deactivate()
        self.get_logger().info(runtime.summary())
        runtime.shutdown()
        return super().destroy_node()


def main(args=None) -> int:
    return run(DepthNode, NODE_NAME, args)


if __name__ == "__main__":
    sys.exit(main())
