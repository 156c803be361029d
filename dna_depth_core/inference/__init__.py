"""Inference: camera image (+ intrinsics) -> metric depth. ROS-free; the ROS node is a shell around it.

- :mod:`~dna_depth_core.inference.estimator`: :class:`DepthEstimator`, :class:`DepthResult`.
- :mod:`~dna_depth_core.inference.scale`: :class:`GroundPlaneScale` (metric scale from the camera height).
"""
from dna_depth_core.inference.estimator import OUTPUT_MODES, RESIZE_MODES, SCALE_MODES, DepthEstimator, DepthResult
from dna_depth_core.inference.scale import GroundPlaneScale, PlaneFit

__all__ = ["DepthEstimator", "DepthResult", "GroundPlaneScale", "OUTPUT_MODES", "PlaneFit", "RESIZE_MODES",
           "SCALE_MODES"]
