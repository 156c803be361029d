"""Data: synthetic KITTI-layout drives, KITTI raw readers, the training dataset and its augmentations.

Submodules (import them directly; the names below are also re-exported lazily, so importing this package does
not import torch):

- :mod:`dna_depth_core.data.synthetic`: ``synthetic_frames`` (frames in memory), ``SyntheticScene``,
  ``render_drive``, ``DriveInfo``, ``make_trajectory``.
- :mod:`dna_depth_core.data.kitti`: calibration/split readers, ``KittiDataset``, ``fetch_splits``.
- :mod:`dna_depth_core.data.augment`: ``ColorJitter``, ``sample_color_jitter``.
- :mod:`dna_depth_core.data.poses`: ``read_drive_poses`` (a drive's ground-truth ``poses.txt``).

Images and intrinsics go through :mod:`dna_depth_core.preprocess` and :mod:`dna_depth_core.camera`.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "SyntheticScene": "synthetic",
    "DriveInfo": "synthetic",
    "render_drive": "synthetic",
    "make_trajectory": "synthetic",
    "synthetic_intrinsics": "synthetic",
    "synthetic_frames": "synthetic",
    "synthetic_drive": "synthetic",
    "KittiDataset": "kitti",
    "read_calib_file": "kitti",
    "read_split_file": "kitti",
    "parse_split_line": "kitti",
    "SplitEntry": "kitti",
    "image_path": "kitti",
    "normalised_intrinsics": "kitti",
    "fetch_splits": "kitti",
    "ColorJitter": "augment",
    "sample_color_jitter": "augment",
    "read_drive_poses": "poses",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
