"""The project's one rule from a camera image to the network's input. Training datasets (KITTI folders, ROS bags,
synthetic drives), ``evaluate``, ``predict``, :class:`~dna_depth_core.inference.DepthEstimator` (and so the ROS
node), the int8 calibration and the benchmarks all call it, so a network sees the same pixels for the same image
wherever it runs.

The rule (docs/model.md, "Input"):

1. Colour: ``(H, W, 3)`` uint8 **RGB** (decoders convert BGR, mono, 16-bit and compressed images before this);
   a ``(H, W)`` or ``(H, W, 1)`` grey image is replicated to three channels.
2. Geometry: ``"stretch"`` resizes the whole image to the network size; ``"crop"`` first takes the largest centred
   box with the network's aspect ratio (:func:`dna_depth_core.camera.centre_crop_box`). The intrinsics follow with
   :func:`dna_depth_core.camera.network_K`.
3. Interpolation, per axis: ``cv2.INTER_AREA`` along an axis that shrinks (an average over the source pixels
   each output pixel covers: no aliasing), ``cv2.INTER_LINEAR`` along an axis that grows. When one axis shrinks
   and the other grows, the two are resized one after the other (width first). Same-size images are not touched.
4. Values: float32 in ``[0, 1]`` (``uint8 / 255``, correctly rounded), channels first. Any further normalisation (ImageNet
   mean/std for ResNet encoders) is inside the network and its ONNX graph.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from dna_depth_core import image_codecs
from dna_depth_core.camera import centre_crop_box, network_K

RESIZE_MODES = ("stretch", "crop")
#: File suffixes of the images :func:`load_image` reads (folders of images: ``predict``, int8 calibration).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_255 = np.float32(255.0)


def as_rgb(image: Any, name: str = "image") -> np.ndarray:
    """``image`` as an ``(H, W, 3)`` uint8 array (grey replicated); ``ValueError`` naming what is wrong."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
        raise ValueError(f"{name} must be an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return image


def load_image(path: str | Path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB (OpenCV reads BGR: converted here, at the edge). What libpng and
    libjpeg print about the file is captured (:mod:`dna_depth_core.image_codecs`): damage is named in the error,
    other messages go to a throttled log (:func:`dna_depth_core.image_codecs.report`).

    Raises:
        FileNotFoundError: the file is missing, OpenCV cannot read it, or its data is cut or corrupt (a JPEG that
            libjpeg could only partly decode); the message names the file and, when the decoder said, why.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image missing or unreadable: {path}")
    try:
        img, messages = image_codecs.read_file(str(path), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        img, messages = None, [" ".join(str(exc).split())[:200]]
    if img is None:
        detail = f": {messages[-1]}" if messages else ""
        raise FileNotFoundError(f"image missing or unreadable: {path} (not an image OpenCV decodes, or corrupt"
                                f"{detail})")
    problem = image_codecs.damage(messages)
    if problem is not None:
        raise FileNotFoundError(f"image missing or unreadable: {path} ({problem})")
    image_codecs.report(str(path), messages)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _interpolation(src: int, dst: int) -> int:
    return cv2.INTER_AREA if dst < src else cv2.INTER_LINEAR


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize an ``(H, W, C)`` image to ``size`` = (width, height) with the rule's interpolation (module
    docstring, step 3). Returns ``image`` itself when the size already matches."""
    w, h = int(size[0]), int(size[1])
    if w <= 0 or h <= 0:
        raise ValueError(f"size must be a positive (width, height), got {tuple(size)}")
    H, W = image.shape[:2]
    if (W, H) == (w, h):
        return image
    ix, iy = _interpolation(W, w), _interpolation(H, h)
    if ix == iy:
        return cv2.resize(image, (w, h), interpolation=ix)
    return cv2.resize(cv2.resize(image, (w, H), interpolation=ix), (w, h), interpolation=iy)


def to_chw(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 ``value / 255`` in ``[0, 1]`` (a new contiguous array)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / _255


def crop_box(image_size: Sequence[int], net_size: Sequence[int], mode: str = "stretch") -> tuple[int, int, int, int]:
    """The part ``(x0, y0, w, h)`` of an image of ``image_size`` = (width, height) that reaches the network."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode '{mode}' unknown; use one of {RESIZE_MODES}")
    W, H = int(image_size[0]), int(image_size[1])
    if mode == "crop":
        return centre_crop_box(W, H, net_size[0] / net_size[1])
    return 0, 0, W, H


def fit_image(image: Any, net_size: Sequence[int], mode: str = "stretch") -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Steps 1-3: ``(uint8 (h, w, 3) at net_size, crop box)``. Datasets cache this and apply :func:`to_chw` later."""
    image = as_rgb(image)
    box = crop_box((image.shape[1], image.shape[0]), net_size, mode)
    x0, y0, w, h = box
    if (x0, y0, w, h) != (0, 0, image.shape[1], image.shape[0]):
        image = image[y0:y0 + h, x0:x0 + w]
    return resize_image(image, net_size), box


def prepare(image: Any, net_size: Sequence[int], mode: str = "stretch", K: Any = None
            ) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int, int, int]]:
    """The whole rule for one image: ``(x (1, 3, h, w) float32, K at the network size or None, crop box)``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (or grey).
        net_size: (width, height) of the network input.
        mode: ``"stretch"`` or ``"crop"``.
        K: optional ``(3, 3)`` intrinsics at ``H x W``.
    """
    small, box = fit_image(image, net_size, mode)
    K_net = None if K is None else network_K(K, box, net_size)
    return to_chw(small)[None], K_net, box


__all__ = ["IMAGE_SUFFIXES", "RESIZE_MODES", "as_rgb", "crop_box", "fit_image", "load_image", "prepare", "resize_image", "to_chw"]
