"""The standard depth metrics and the KITTI (Eigen split) protocol for one frame.

- :func:`compute_errors`: AbsRel, SqRel, RMSE, RMSE log, a1/a2/a3 on 1-D arrays of valid pixels.
- :func:`evaluate_depth`: one frame: resize the prediction to the ground truth, Garg/Eigen crop, valid depth
  range, per-image median scaling, clamping, errors.
- :func:`scale_prediction`: the scaling step alone (median, none, fixed), for callers that keep the pixels.
- :class:`ErrorAccumulator`: the same metrics pooled over pixels added in parts (e.g. distance bins).
- :func:`aggregate` (mean over frames), :func:`format_table_row` (the paper's table row), :func:`parse_scaling`.

Ground-truth maps use 0 for "no measurement". docs/model.md states the protocol.
"""
from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")
# Garg/Eigen crop as fractions of the image: rows [top, bottom), columns [left, right).
EIGEN_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)
MIN_DEPTH = 1e-3
MAX_DEPTH = 80.0


def _check_pairs(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    gt = np.asarray(gt, np.float64)
    pred = np.asarray(pred, np.float64)
    if gt.ndim != 1 or pred.ndim != 1:
        raise ValueError(f"gt and pred must be 1-D arrays of valid pixels, got gt {gt.shape}, pred {pred.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"gt {gt.shape} and pred {pred.shape} must have the same length")
    if not (np.all(gt > 0) and np.all(pred > 0)):
        raise ValueError("gt and pred must be > 0 (mask invalid pixels and clamp predictions first)")
    return gt, pred


def _error_sums(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-metric sums over the pixels, in the order of ``_SUM_NAMES``; each metric is a mean of one of them."""
    thresh = np.maximum(gt / pred, pred / gt)
    diff = gt - pred
    return np.array([np.sum(np.abs(diff) / gt), np.sum(diff**2 / gt), np.sum(diff**2),
                     np.sum((np.log(gt) - np.log(pred)) ** 2), np.sum(thresh < 1.25), np.sum(thresh < 1.25**2),
                     np.sum(thresh < 1.25**3)], np.float64)


def _errors_from_sums(sums: np.ndarray, count: int) -> dict[str, float]:
    m = sums / count
    return {"abs_rel": float(m[0]), "sq_rel": float(m[1]), "rmse": float(np.sqrt(m[2])),
            "rmse_log": float(np.sqrt(m[3])), "a1": float(m[4]), "a2": float(m[5]), "a3": float(m[6])}


def compute_errors(gt, pred) -> dict[str, float]:
    """The seven standard depth metrics on 1-D arrays of valid pixels (metres, both > 0).

    AbsRel = mean |g - p| / g; SqRel = mean (g - p)^2 / g; RMSE = sqrt(mean (g - p)^2);
    RMSE log = sqrt(mean (ln g - ln p)^2); a_k = fraction of pixels with max(g/p, p/g) < 1.25^k.
    """
    gt, pred = _check_pairs(gt, pred)
    if gt.size == 0:
        raise ValueError("gt is empty: no valid pixel to evaluate")
    return _errors_from_sums(_error_sums(gt, pred), gt.size)


class ErrorAccumulator:
    """The seven metrics of :func:`compute_errors` pooled over pixels added in parts (e.g. all the LiDAR points
    of a distance bin over many frames), without keeping the pixels: ``add(gt, pred)`` then ``result()``.
    ``result()`` equals ``compute_errors`` of the concatenated arrays (up to summation order)."""

    def __init__(self):
        self.sums = np.zeros(7, np.float64)
        self.count = 0

    def add(self, gt, pred) -> None:
        """Add 1-D arrays of valid pixels (metres, both > 0; may be empty)."""
        gt, pred = _check_pairs(gt, pred)
        if gt.size:
            self.sums += _error_sums(gt, pred)
            self.count += int(gt.size)

    def result(self) -> dict[str, float] | None:
        """The metrics of every pixel added, or None when none was."""
        return _errors_from_sums(self.sums, self.count) if self.count else None


def eigen_crop_mask(h: int, w: int) -> np.ndarray:
    """Boolean (h, w) mask of the Garg/Eigen crop: rows [0.40810811 h, 0.99189189 h), columns
    [0.03594771 w, 0.96405229 w), bounds truncated to integers."""
    top, bottom, left, right = EIGEN_CROP
    mask = np.zeros((int(h), int(w)), bool)
    mask[int(top * h): int(bottom * h), int(left * w): int(right * w)] = True
    return mask


def evaluate_depth(
    gt_depth,
    pred_depth,
    scaling="median",
    min_depth: float = MIN_DEPTH,
    max_depth: float = MAX_DEPTH,
    crop: bool = True,
) -> tuple[dict[str, float], float]:
    """Errors of one predicted depth map against its ground truth.

    Args:
        gt_depth: (H, W) ground truth in metres, 0 (or anything outside (min_depth, max_depth)) = invalid.
        pred_depth: (h, w) predicted depth in metres, any size: resized to (H, W) bilinearly (cv2).
        scaling: ``"median"`` (ratio = median(gt) / median(pred) over the valid pixels: monocular models),
            ``"none"`` (ratio 1) or ``("fixed", s)`` (ratio s, e.g. a stereo baseline scale).
        min_depth, max_depth: valid ground truth is min_depth < gt < max_depth; scaled predictions are
            clamped to [min_depth, max_depth].
        crop: apply the Garg/Eigen crop (:func:`eigen_crop_mask`).

    Returns:
        ``(errors, ratio)``: the :func:`compute_errors` dict and the scale applied to the prediction.
    """
    gt = np.asarray(gt_depth, np.float32)
    pred = np.asarray(pred_depth, np.float32)
    if gt.ndim != 2:
        raise ValueError(f"gt_depth must be (H, W), got {gt.shape}")
    if pred.ndim != 2:
        raise ValueError(f"pred_depth must be (h, w), got {pred.shape}")
    h, w = gt.shape
    if pred.shape != gt.shape:
        pred = cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR)
    mask = (gt > min_depth) & (gt < max_depth)
    if crop:
        mask &= eigen_crop_mask(h, w)
    if not mask.any():
        raise ValueError("gt_depth has no valid pixel (within the depth range and the crop)")
    p, ratio = scale_prediction(gt[mask], pred[mask], scaling, min_depth, max_depth)
    return compute_errors(gt[mask], p), ratio


def scale_prediction(gt, pred, scaling="median", min_depth: float = MIN_DEPTH, max_depth: float = MAX_DEPTH
                     ) -> tuple[np.ndarray, float]:
    """Scale the predictions of valid pixels as the protocol does: ``(clip(pred * ratio, min_depth, max_depth),
    ratio)``.

    Args:
        gt, pred: 1-D arrays of the valid pixels (ground truth within the depth range), metres.
        scaling: ``"median"`` (ratio = median(gt) / median(pred)), ``"none"`` (1) or ``("fixed", s)`` (s).
    """
    g = np.asarray(gt, np.float64)
    p = np.asarray(pred, np.float64)
    if isinstance(scaling, str) and scaling == "median":
        med = float(np.median(p))
        if not np.isfinite(med) or med <= 0:
            raise ValueError(f"pred_depth has a non-positive median ({med}) over the valid pixels")
        ratio = float(np.median(g)) / med
    elif isinstance(scaling, str) and scaling == "none":
        ratio = 1.0
    elif isinstance(scaling, (tuple, list)) and len(scaling) == 2 and scaling[0] == "fixed":
        ratio = float(scaling[1])
    else:
        raise ValueError(f"scaling must be 'median', 'none' or ('fixed', s), got {scaling!r}")
    return np.clip(p * ratio, min_depth, max_depth), ratio


def aggregate(errors: Iterable[dict]) -> dict[str, float]:
    """Mean of each metric over frames (the KITTI protocol averages per-frame metrics)."""
    errors = list(errors)
    if not errors:
        raise ValueError("errors is empty: nothing to aggregate")
    return {k: float(np.mean([e[k] for e in errors])) for k in METRIC_NAMES}


def format_table_header() -> str:
    """``abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3``, the columns of :func:`format_table_row`."""
    return " | ".join(METRIC_NAMES)


def format_table_row(errors: dict) -> str:
    """The paper's table row: ``abs_rel | sq_rel | rmse | rmse_log | a1 | a2 | a3`` with 3 decimals."""
    return " | ".join(f"{float(errors[k]):.3f}" for k in METRIC_NAMES)


def parse_scaling(text: str):
    """``"median"``, ``"none"`` or ``"fixed:S"`` (the CLI spelling) -> the ``scaling`` of :func:`evaluate_depth`."""
    if text in ("median", "none"):
        return text
    if text.startswith("fixed:"):
        try:
            s = float(text[len("fixed:"):])
        except ValueError:
            s = float("nan")
        if not np.isfinite(s) or s <= 0:
            raise ValueError(f"--scaling {text}: the fixed scale must be a positive number, e.g. fixed:5.4")
        return ("fixed", s)
    raise ValueError(f"--scaling {text}: expected median, none or fixed:S")
