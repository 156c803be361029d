"""Evaluation: the KITTI (Eigen) depth protocol, ground truth, depth against a robot's LiDAR, and pose evaluation on
drives with true poses.

- :mod:`~dna_depth_core.evaluation.metrics`: the seven metrics (also pooled: ``ErrorAccumulator``) and the one-frame
  protocol (crop, range, scaling).
- :mod:`~dna_depth_core.evaluation.ground_truth`: velodyne projection, ground-truth sources, ``gt_depths.npz``.
- :mod:`~dna_depth_core.evaluation.depth`: a model over a split (through ``DepthEstimator``).
- :mod:`~dna_depth_core.evaluation.pose`: translations of a pose network against ``poses.txt``.
- :mod:`~dna_depth_core.evaluation.lidar`: a bag's camera frames against its LiDAR (``evaluate --bag``); it needs
  ``rosbags`` (the ``bags`` extra), so it is imported on its own: ``from dna_depth_core.evaluation import lidar``.
"""
from dna_depth_core.evaluation.depth import as_estimator, evaluate_model
from dna_depth_core.evaluation.ground_truth import (export_gt, gt_sources, load_gt, load_gt_depth, read_velodyne,
                                                    velodyne_to_camera_matrix, velodyne_to_depth)
from dna_depth_core.evaluation.metrics import (EIGEN_CROP, MAX_DEPTH, METRIC_NAMES, MIN_DEPTH, ErrorAccumulator,
                                               aggregate, compute_errors, eigen_crop_mask, evaluate_depth,
                                               format_table_header, format_table_row, parse_scaling,
                                               scale_prediction)
from dna_depth_core.evaluation.pose import evaluate_pose, pose_metrics

__all__ = [
    "EIGEN_CROP", "ErrorAccumulator", "MAX_DEPTH", "METRIC_NAMES", "MIN_DEPTH", "aggregate", "as_estimator",
    "compute_errors", "eigen_crop_mask", "evaluate_depth", "evaluate_model", "evaluate_pose", "export_gt", "format_table_header",
    "format_table_row", "gt_sources", "load_gt", "load_gt_depth", "parse_scaling", "pose_metrics", "read_velodyne",
    "scale_prediction", "velodyne_to_camera_matrix", "velodyne_to_depth",
]
