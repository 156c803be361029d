"""A depth model over a split, with the KITTI (Eigen) protocol: every frame goes through
:class:`~dna_depth_core.inference.DepthEstimator`, i.e. the same image -> input rule as training and the ROS node."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from dna_depth_core.data.kitti import SplitEntry, image_path, parse_split_line
from dna_depth_core.evaluation.metrics import aggregate, evaluate_depth
from dna_depth_core.inference import DepthEstimator
from dna_depth_core.preprocess import load_image


def as_estimator(model: Any, device: str = "cpu", backend: str = "torch") -> DepthEstimator:
    """``model`` itself when it is a :class:`DepthEstimator`; else one built on it (a checkpoint path, an exported
    ``.onnx`` or a DepthNet) with relative depth at the input resolution."""
    if isinstance(model, DepthEstimator):
        return model
    return DepthEstimator(model, device=device, backend=backend, output="input")


def evaluate_model(model: Any, data_path, split_lines: Sequence, gt_depths: Sequence[np.ndarray],
                   scaling="median", device: str = "cpu", backend: str = "torch", progress: bool = True) -> dict:
    """Evaluate a depth model on a split against ground-truth maps (same order as the split).

    Args:
        model: a :class:`DepthEstimator`, or what it takes (checkpoint path, ``.onnx``, DepthNet), run with
            ``backend`` on ``device``.
        scaling: see :func:`~dna_depth_core.evaluation.metrics.evaluate_depth`.
    Returns:
        ``{"abs_rel", ..., "a3", "frames", "ratio_median", "ratio_std", "per_frame": [...]}``: metrics averaged
        over frames, and the per-image scale ratios (their spread shows how consistent the network's scale is).
    """
    entries = [e if isinstance(e, SplitEntry) else parse_split_line(e) for e in split_lines]
    if len(entries) != len(gt_depths):
        raise ValueError(f"the split has {len(entries)} frames but the ground truth has {len(gt_depths)}")
    if not entries:
        raise ValueError("the split is empty")
    estimator = as_estimator(model, device, backend)
    per_frame, ratios = [], []
    for entry, gt in tqdm(list(zip(entries, gt_depths)), desc="evaluate", unit="frame", disable=not progress):
        rgb = load_image(image_path(data_path, entry.folder, entry.frame_index, entry.side))
        pred = estimator.predict(rgb).depth
        errors, ratio = evaluate_depth(gt, pred, scaling=scaling)
        per_frame.append(errors)
        ratios.append(ratio)
    result = aggregate(per_frame)
    result.update(frames=len(entries), ratio_median=float(np.median(ratios)), ratio_std=float(np.std(ratios)),
                  per_frame=per_frame)
    return result


__all__ = ["as_estimator", "evaluate_model"]
