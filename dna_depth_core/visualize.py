"""Colourised depth/disparity images for viewing (not for measuring), and the demo's contact sheet (input |
predicted depth | exact depth | error, with colour bars in metres and in per cent)."""
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


def colorize_depth(depth: np.ndarray, max_depth: float = 0.0, min_depth: float = 0.0) -> np.ndarray:
    """Depth ``(H, W)`` -> ``(H, W, 3)`` uint8 RGB (turbo colour map on inverse depth: near is red, far is blue);
    invalid pixels (not finite or <= 0) are black. The far end is ``max_depth`` metres, or (``max_depth`` <= 0)
    each frame's 1st percentile of inverse depth; the near end is ``min_depth`` metres, or (``min_depth`` <= 0) its
    99th percentile. Fixed ends make frames comparable (and a colour bar in metres possible)."""
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
        inv = np.where(valid, 1.0 / depth, 0.0)
    if not valid.any():
        return np.zeros(depth.shape + (3,), np.uint8)
    lo = 1.0 / max_depth if max_depth > 0 else float(np.percentile(inv[valid], 1))
    hi = 1.0 / min_depth if min_depth > 0 else float(np.percentile(inv[valid], 99))
    norm = np.clip((inv - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    bgr = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


FONT = cv2.FONT_HERSHEY_SIMPLEX


def colorize_error(pred: np.ndarray, gt: np.ndarray, max_error: float = 0.5) -> np.ndarray:
    """Per-pixel relative error ``|pred - gt| / gt`` of ``(H, W)`` depths (metres) -> ``(H, W, 3)`` uint8 RGB
    (inferno, 0 black-purple .. ``max_error`` and above yellow); pixels without ground truth (``gt`` <= 0 or not
    finite) or prediction are black."""
    pred, gt = np.asarray(pred, np.float32), np.asarray(gt, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid = np.isfinite(gt) & (gt > 0) & np.isfinite(pred) & (pred > 0)
        err = np.where(valid, np.abs(pred - gt) / np.where(valid, gt, 1.0), 0.0)
    t = np.clip(err / max_error, 0, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def colour_bar(width: int, label: str, ticks: dict[str, float], colormap: int, height: int = 44) -> np.ndarray:
    """A horizontal colour bar ``(height, width, 3)`` uint8 RGB: ``colormap`` from left (0) to right (1), a tick
    and its text at each position of ``ticks`` (``{text: position in 0..1}``), ``label`` on the left."""
    img = np.full((height, width, 3), 255, np.uint8)
    x0, x1 = 80, width - 16
    strip = cv2.applyColorMap(np.linspace(0, 255, max(x1 - x0, 2)).astype(np.uint8)[None], colormap)
    img[4:18, x0:x1] = cv2.cvtColor(np.repeat(strip, 14, 0), cv2.COLOR_BGR2RGB)
    for text, pos in ticks.items():
        x = int(round(x0 + pos * (x1 - x0 - 1)))
        cv2.line(img, (x, 18), (x, 22), (0, 0, 0), 1)
        (tw, _), _ = cv2.getTextSize(text, FONT, 0.4, 1)
        cv2.putText(img, text, (x - tw // 2, 35), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, label, (2, 15), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def contact_sheet(rgbs, preds, gts, titles=None, header: str = "", near: float = 3.0, far: float = 80.0,
                  max_error: float = 0.5, scale: int = 2) -> np.ndarray:
    """One row per frame: input | predicted depth | exact depth | relative error, under a header line and the
    column names, above colour bars (depth in metres, inverse-depth turbo from ``near`` to ``far``; error in per
    cent up to ``max_error``). ``rgbs``: ``(H, W, 3)`` uint8 RGB; ``preds``/``gts``: ``(H, W)`` metres (gt 0 or
    not finite: no ground truth, e.g. sky, drawn black). Tiles are enlarged ``scale`` times (nearest). Returns the
    sheet as ``(H', W', 3)`` uint8 RGB."""
    if not len(rgbs) or not (len(rgbs) == len(preds) == len(gts)):
        raise ValueError(f"rgbs, preds, gts: need one or more frames of each, as many of each "
                         f"(got {len(rgbs)}, {len(preds)}, {len(gts)})")
    h, w = np.asarray(rgbs[0]).shape[:2]
    tw, th, gap = w * scale, h * scale, 4
    total = 4 * tw + 3 * gap
    rows = []
    for i, (rgb, pred, gt) in enumerate(zip(rgbs, preds, gts)):
        gt = np.where(np.isfinite(gt) & (gt > 0), gt, np.nan)
        tiles = [np.asarray(rgb, np.uint8), colorize_depth(pred, far, near), colorize_depth(gt, far, near),
                 colorize_error(pred, gt, max_error)]
        row = np.full((th + 16, total, 3), 255, np.uint8)
        for k, t in enumerate(tiles):
            row[16:, k * (tw + gap):k * (tw + gap) + tw] = cv2.resize(t, (tw, th), interpolation=cv2.INTER_NEAREST)
        if titles:
            cv2.putText(row, str(titles[i]), (2, 12), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(row)
    head = np.full((40, total, 3), 255, np.uint8)
    for k, name in enumerate(("input", "predicted depth (m)", "exact depth (m)", "error |pred - exact| / exact")):
        cv2.putText(head, name, (k * (tw + gap) + 2, 34), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if header:
        cv2.putText(head, header, (2, 14), FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    inv = lambda m: (1 / m - 1 / far) / (1 / near - 1 / far)  # noqa: E731 - position of m metres on the bar
    metres = [m for m in (3, 5, 10, 20, 40, 80) if near <= m <= far]
    depth_bar = colour_bar(2 * tw + gap, "depth (m)", {f"{m:g}": inv(m) for m in metres}, cv2.COLORMAP_TURBO)
    steps = np.linspace(0, max_error, 6)
    error_bar = colour_bar(tw, "error", {f"{100 * e:.0f}%" + ("+" if e == steps[-1] else ""): e / max_error
                                         for e in steps}, cv2.COLORMAP_INFERNO)
    bars = np.full((44, total, 3), 255, np.uint8)
    bars[:, tw + gap:tw + gap + depth_bar.shape[1]] = depth_bar
    bars[:, 3 * (tw + gap):3 * (tw + gap) + tw] = error_bar
    return np.concatenate([head] + rows + [bars], 0)
