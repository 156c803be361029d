"""Colourised depth and error images and the demo's contact sheet: fixed colour ranges map known depths and errors
to the ends of their colour maps; missing values are black."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dna_depth_core.visualize import colorize_depth, colorize_error, contact_sheet


def cmap(colormap: int, t: float) -> np.ndarray:
    """The RGB colour of position ``t`` (0..1) of an OpenCV colour map."""
    return cv2.cvtColor(cv2.applyColorMap(np.array([[round(t * 255)]], np.uint8), colormap), cv2.COLOR_BGR2RGB)[0, 0]


def test_colorize_depth_fixed_range():
    d = np.array([[3.0, 80.0, 1.0 / (0.5 / 3 + 0.5 / 80), 0.0]], np.float32)  # near, far, the inverse midpoint, none
    rgb = colorize_depth(d, max_depth=80.0, min_depth=3.0)
    assert np.array_equal(rgb[0, 0], cmap(cv2.COLORMAP_TURBO, 1.0))
    assert np.array_equal(rgb[0, 1], cmap(cv2.COLORMAP_TURBO, 0.0))
    assert np.abs(rgb[0, 2].astype(int) - cmap(cv2.COLORMAP_TURBO, 0.5)).max() <= 8
    assert np.array_equal(rgb[0, 3], [0, 0, 0])


def test_colorize_error():
    gt = np.array([[10.0, 10.0, 10.0, 0.0, 10.0]], np.float32)
    pred = np.array([[10.0, 12.5, 30.0, 5.0, np.nan]], np.float32)  # 0 %, 25 % (half of 50 %), 200 %, no gt, no pred
    rgb = colorize_error(pred, gt, max_error=0.5)
    assert np.array_equal(rgb[0, 0], cmap(cv2.COLORMAP_INFERNO, 0.0))
    assert np.abs(rgb[0, 1].astype(int) - cmap(cv2.COLORMAP_INFERNO, 0.5)).max() <= 8
    assert np.array_equal(rgb[0, 2], cmap(cv2.COLORMAP_INFERNO, 1.0))
    assert np.array_equal(rgb[0, 3], [0, 0, 0]) and np.array_equal(rgb[0, 4], [0, 0, 0])


def test_contact_sheet_layout_and_tiles():
    h, w = 32, 64
    rgb = np.full((h, w, 3), (10, 200, 30), np.uint8)
    gt = np.full((h, w), 10.0, np.float32)
    sheet = contact_sheet([rgb, rgb], [gt, gt * 1.25], [gt, gt], titles=["a", "b"], header="h", scale=2)
    tw, th, gap = 2 * w, 2 * h, 4
    assert sheet.shape == (40 + 2 * (16 + th) + 44, 4 * tw + 3 * gap, 3)
    row1 = 40 + 16 + th + 16  # the second frame's tiles start here
    assert np.array_equal(sheet[row1 + 5, 5], [10, 200, 30])                                  # input
    assert np.array_equal(sheet[row1 + 5, tw + gap + 5], colorize_depth(gt * 1.25, 80, 3)[0, 0])  # prediction
    assert np.array_equal(sheet[row1 + 5, 2 * (tw + gap) + 5], colorize_depth(gt, 80, 3)[0, 0])   # exact depth
    assert np.abs(sheet[row1 + 5, 3 * (tw + gap) + 5].astype(int)                             # 25 % error
                  - cmap(cv2.COLORMAP_INFERNO, 0.5)).max() <= 8
    with pytest.raises(ValueError, match="as many of each"):
        contact_sheet([rgb], [gt, gt], [gt])
