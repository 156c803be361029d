"""Colourised depth/disparity images for viewing (not for measuring)."""
from __future__ import annotations

import cv2
import numpy as np


def colorize(values: np.ndarray, vmin: float | None = None, vmax: float | None = None,
             colormap: int = cv2.COLORMAP_MAGMA) -> np.ndarray:
    """``(H, W)`` float -> ``(H, W, 3)`` uint8 RGB. Non-finite values are drawn black.

    Without ``vmin``/``vmax`` the range is the 1st..99th percentile of the finite values (robust to outliers).
    """
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"values: expected shape (H, W), got {values.shape}")
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape + (3,), np.uint8)
    lo = float(np.percentile(values[finite], 1)) if vmin is None else vmin
    hi = float(np.percentile(values[finite], 99)) if vmax is None else vmax
    scaled = np.clip((np.where(finite, values, lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    bgr = cv2.applyColorMap((scaled * 255).astype(np.uint8), colormap)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~finite] = 0
    return rgb


def colorize_disparity(disp: np.ndarray) -> np.ndarray:
    """Disparity-like map (near = bright) -> RGB uint8, with the range from its 1..99 percentiles."""
    return colorize(disp)


def colorize_depth(depth: np.ndarray, max_depth: float = 0.0) -> np.ndarray:
    """Depth ``(H, W)`` -> ``(H, W, 3)`` uint8 RGB (turbo colour map on inverse depth: near is red, far is blue);
    invalid pixels (not finite or <= 0) are black. The far end is ``max_depth`` metres, or (``max_depth`` <= 0)
    each frame's 1st percentile of inverse depth; the near end is its 99th percentile."""
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
        inv = np.where(valid, 1.0 / depth, 0.0)
    if not valid.any():
        return np.zeros(depth.shape + (3,), np.uint8)
    lo = 1.0 / max_depth if max_depth > 0 else float(np.percentile(inv[valid], 1))
    hi = float(np.percentile(inv[valid], 99))
    norm = np.clip((inv - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    bgr = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb
