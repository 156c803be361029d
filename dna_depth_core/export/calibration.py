"""Calibration images for int8 quantisation: finding them (folders, glob patterns, files, arrays) and feeding them to
onnxruntime's calibrator prepared exactly as inference prepares camera images
(:func:`dna_depth_core.preprocess.prepare`).
"""
from __future__ import annotations

import glob
import os
from typing import Any, Sequence

import numpy as np

from dna_depth_core.io.onnx_format import INPUT_NAME
from dna_depth_core.preprocess import IMAGE_SUFFIXES, as_rgb, load_image, prepare

#: File name endings taken as images when a calibration folder or glob pattern is searched (case-insensitive).
#: Calibration images used when more are found (spread evenly over the sorted list): calibration costs one forward
#: pass of the fp32 network per image.
DEFAULT_CALIBRATION_COUNT = 64
_GLOB_CHARS = "*?["


def _images_in_folder(folder: str) -> list[str]:
    errors: list[OSError] = []
    found: list[str] = []
    for root, dirs, files in os.walk(folder, onerror=errors.append):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
    if errors and not found:
        e = errors[0]
        raise ValueError(f"calibration folder {folder}: cannot be read ({type(e).__name__}: {e.strerror or e})")
    if not found:
        raise ValueError(f"calibration folder {folder}: no image file ({', '.join(IMAGE_SUFFIXES)}) in it or "
                         f"below it")
    return found


def find_calibration_images(source: Any, count: int | None = DEFAULT_CALIBRATION_COUNT) -> list[Any]:
    """The calibration images named by ``source``: a folder (searched recursively for :data:`IMAGE_SUFFIXES`),
    a glob pattern (``"frames/*.png"``, ``"**"`` recursive), an image file, an ``(H, W, 3)`` uint8 RGB array, or
    a list of those. Files are sorted per item; ``count`` (None: all) keeps that many, spread evenly over the list.

    Raises FileNotFoundError for a path that does not exist, ValueError when nothing usable is found (an empty
    list, a pattern that matches no image, a folder without images or that cannot be read) or ``count`` < 1.
    """
    if count is not None and (int(count) != count or count < 1):
        raise ValueError(f"calibration count: {count} is not a positive integer")
    items = [source] if isinstance(source, (str, os.PathLike, np.ndarray)) else list(source or [])
    if not items:
        raise ValueError("calibration: no calibration images given (a folder, a glob pattern or image files)")
    found: list[Any] = []
    for item in items:
        if isinstance(item, np.ndarray):
            found.append(item)
            continue
        path = os.fspath(item)
        if not path:
            raise ValueError("calibration: an empty path was given")
        if os.path.isdir(path):
            found += _images_in_folder(path)
        elif os.path.isfile(path):
            found.append(path)  # named explicitly: used whatever its ending (an unreadable one fails when loaded)
        elif any(c in path for c in _GLOB_CHARS):
            matches = [m for m in sorted(glob.glob(path, recursive=True))
                       if os.path.isfile(m) and m.lower().endswith(IMAGE_SUFFIXES)]
            if not matches:
                raise ValueError(f"calibration: the pattern {path!r} matches no image file "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            found += matches
        else:
            raise FileNotFoundError(f"calibration images not found: {path} (give a folder, a glob pattern or image "
                                    f"files)")
    if count is not None and len(found) > count:
        keep = np.unique(np.round(np.linspace(0, len(found) - 1, int(count))).astype(int))
        found = [found[i] for i in keep]
    return found


def load_calibration_image(image: Any) -> np.ndarray:
    """An image file or array as ``(H, W, 3)`` uint8 RGB (grey replicated), or ValueError naming what is wrong."""
    if isinstance(image, np.ndarray):
        return as_rgb(image, name="calibration image")
    try:
        return load_image(image)
    except FileNotFoundError as exc:
        raise ValueError(f"calibration {exc} (not an image file OpenCV can decode)") from None


def _register_as_calibration_reader(cls: type) -> None:
    """Make ``cls`` a virtual subclass of onnxruntime's ``CalibrationDataReader`` (the quantiser checks it)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader  # optional dependency: onnxruntime
    except ImportError:
        return
    CalibrationDataReader.register(cls)


class ImageCalibrationReader:
    """An onnxruntime ``CalibrationDataReader`` (registered as one when onnxruntime is installed) over calibration
    images.

    Each image is read (RGB) and turned into the network input ``(1, 3, height, width)`` float32 in [0, 1] by
    :func:`dna_depth_core.preprocess.prepare` with ``mode`` (``"stretch"`` or ``"crop"``), the rule every dataset
    and ``DepthEstimator`` (so the ROS node) apply (the input normalisation is inside the graph). ``batch`` > 1 (a
    static-batch graph) groups the images, repeating the first ones to fill the last batch. All images are loaded
    up front, so an unreadable file fails here, before any calibration run.
    """

    def __init__(self, images: Sequence[Any], height: int, width: int, input_name: str = INPUT_NAME,
                 batch: int = 1, mode: str = "stretch"):
        _register_as_calibration_reader(type(self))
        images = list(images)
        if not images:
            raise ValueError("calibration: no calibration images")
        self.input_name = input_name
        self.height, self.width = int(height), int(width)
        self.mode = mode
        self.names = [f"<array {i}>" if isinstance(im, np.ndarray) else os.fspath(im) for i, im in enumerate(images)]
        xs = [prepare(load_calibration_image(im), (self.width, self.height), mode)[0] for im in images]
        batch = max(1, int(batch))
        while len(xs) % batch:
            xs.append(xs[len(xs) % len(images)])
        self.batches = [np.concatenate(xs[i:i + batch]) for i in range(0, len(xs), batch)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.batches):
            return None
        self._next += 1
        return {self.input_name: self.batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def set_range(self, start_index: int, end_index: int) -> None:
        self.batches = self.batches[start_index:end_index]
        self._next = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        self.rewind()
        return iter(self.get_next, None)


__all__ = ["DEFAULT_CALIBRATION_COUNT", "IMAGE_SUFFIXES", "ImageCalibrationReader", "find_calibration_images",
           "load_calibration_image"]
