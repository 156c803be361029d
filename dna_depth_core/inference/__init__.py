"""Inference: camera image (+ intrinsics) -> metric depth, and what robots read from it. ROS-free; the ROS node is
a shell around it.

- :mod:`~dna_depth_core.inference.estimator`: :class:`DepthEstimator`, :class:`DepthResult`.
- :mod:`~dna_depth_core.inference.scale`: :class:`GroundPlaneScale` (metric scale from the camera height).
- :mod:`~dna_depth_core.inference.scale_state`: :class:`ScaleTracker`, :class:`ScaleState` (convergence, freezing,
  withholding, the frame's ground plane).
- :mod:`~dna_depth_core.inference.ranges`: REP 117 values of depth images and clouds, clearing rays
  (:class:`PixelRays`, :func:`rep117_depth`, :func:`cloud_points`).
- :mod:`~dna_depth_core.inference.ground`: ground-aware outputs (:class:`GroundPlane`, :func:`mounting_plane`,
  :func:`height_above_ground`, :func:`split_ground`, :func:`laser_scan`).
"""
from dna_depth_core.inference.estimator import OUTPUT_MODES, RESIZE_MODES, DepthEstimator, DepthResult
from dna_depth_core.inference.ground import (GroundPlane, Scan, height_above_ground, laser_scan, levelled_rotation,
                                             mounting_plane, scan_limits, split_ground)
from dna_depth_core.inference.ranges import FAR_MODES, PixelRays, cloud_points, rep117_depth
from dna_depth_core.inference.scale import GroundPlaneScale, PlaneFit
from dna_depth_core.inference.scale_state import SCALE_MODES, ScaleState, ScaleTracker

__all__ = ["DepthEstimator", "DepthResult", "FAR_MODES", "GroundPlane", "GroundPlaneScale", "OUTPUT_MODES",
           "PixelRays", "PlaneFit", "RESIZE_MODES", "SCALE_MODES", "ScaleState", "ScaleTracker", "Scan",
           "cloud_points", "height_above_ground", "laser_scan", "levelled_rotation", "mounting_plane",
           "rep117_depth", "scan_limits", "split_ground"]
