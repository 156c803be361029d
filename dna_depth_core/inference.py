"""Inference: an RGB image (+ intrinsics) in, depth in metres out. ROS-free (the ROS node is a shell around this).

>>> est = DepthEstimator("model.safetensors", device="auto", scale_mode="camera_height", camera_height=1.65)
>>> res = est.predict(rgb, K)          # rgb (H, W, 3) uint8, K (3, 3) at H x W
>>> res.depth, res.K, res.scale, res.metric

Pipeline:

1. The image is (optionally) centre-cropped to the network's aspect ratio (``resize="crop"``) and resized to the
   network's input size; the intrinsics follow the crop and the resize (:func:`crop_intrinsics`,
   :func:`resize_intrinsics`).
2. The backend (``backend="auto"``: onnxruntime on the CPU, torch on CUDA; or ``"torch"``, ``"onnxruntime"``; see
   :data:`BACKENDS`) turns the ``(1, 3, h, w)`` float image into the sigmoid disparity ``(1, 1, h, w)``.
3. The disparity is resized to the requested output (``output="input"``: the input's resolution, NaN outside a
   crop; ``output="network"``: the network's), converted with ``geometry.disp_to_depth`` and multiplied by the
   metric scale.

Metric scale (self-supervised monocular depth is only known up to scale):

- ``"none"``: relative depth; ``DepthResult.metric`` is False and ``units`` is ``"relative"``.
- ``"fixed"``: ``scale_factor`` from calibration.
- ``"camera_height"``: :class:`GroundPlaneScale` fits the ground plane in the lower image (RANSAC + least
  squares), compares its distance to the known mounting height, and smooths the factor over time.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import cv2
import numpy as np
import torch

from dna_depth_core import geometry
from dna_depth_core.backends import BACKENDS, TorchBackend, register_backend, resolve_device  # noqa: F401 (re-exported)

SCALE_MODES = ("none", "fixed", "camera_height")
OUTPUT_MODES = ("input", "network")
RESIZE_MODES = ("stretch", "crop")


def image_to_input(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB image -> the network input ``(1, 3, height, width)`` float32 in [0, 1].

    Resized with ``cv2.INTER_AREA`` when it shrinks along either axis, else bilinear; the input normalisation is
    inside the network (and the ONNX graph). :meth:`DepthEstimator.preprocess` uses it after its optional crop, and
    the int8 calibration of :func:`dna_depth_core.export.quantize_onnx_int8` uses it too, so calibration images
    reach the graph exactly as camera images do.
    """
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if (w > width or h > height) else cv2.INTER_LINEAR
    small = cv2.resize(image, (width, height), interpolation=interp) if (w, h) != (width, height) else image
    return np.ascontiguousarray(small.transpose(2, 0, 1), dtype=np.float32)[None] * (1.0 / 255.0)


# ----------------------------------------------------------------------------------------------------------------
# Intrinsics that follow crops and resizes
# ----------------------------------------------------------------------------------------------------------------
def _as_K(K, name: str = "K") -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{name} must have shape (3, 3), got {K.shape}")
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{name} must be finite with fx, fy > 0, got fx={K[0, 0]:g}, fy={K[1, 1]:g}")
    return K


def resize_intrinsics(K, src_size: tuple[int, int], dst_size: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from ``src_size`` to ``dst_size`` (both ``(width, height)``).

    ``fx, fy, cx, cy`` scale with ``sx = dst_w / src_w``, ``sy = dst_h / src_h`` (``geometry.scale_intrinsics``),
    and the principal point gets the half-pixel term of pixel-centre coordinates: OpenCV and
    ``interpolate(align_corners=False)`` map pixel ``u`` to ``u' = (u + 0.5) * sx - 0.5``, so
    ``cx' = (cx + 0.5) * sx - 0.5``.

    Args:
        K: ``(3, 3)`` at ``src_size``.
    Returns:
        ``(3, 3)`` float64 at ``dst_size``.
    """
    K = _as_K(K)
    (sw, sh), (dw, dh) = src_size, dst_size
    if min(sw, sh, dw, dh) <= 0:
        raise ValueError(f"sizes must be positive, got src_size={src_size}, dst_size={dst_size}")
    sx, sy = dw / sw, dh / sh
    out = geometry.scale_intrinsics(torch.from_numpy(K.copy()), sx, sy).numpy()
    out[0, 2] += 0.5 * sx - 0.5
    out[1, 2] += 0.5 * sy - 0.5
    return out


def crop_intrinsics(K, x0: float, y0: float) -> np.ndarray:
    """Intrinsics of the crop whose top-left pixel is ``(x0, y0)`` of the original image: ``cx -= x0``, ``cy -= y0``."""
    K = _as_K(K).copy()
    K[0, 2] -= x0
    K[1, 2] -= y0
    return K


def center_crop_box(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """Largest centred box ``(x0, y0, w, h)`` of ``width`` x ``height`` with ``w / h`` as close to ``aspect``."""
    if width / height > aspect:
        w = min(width, max(1, int(round(height * aspect))))
        return (width - w) // 2, 0, w, height
    h = min(height, max(1, int(round(width / aspect))))
    return 0, (height - h) // 2, width, h


# ----------------------------------------------------------------------------------------------------------------
# Metric scale from the camera height
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PlaneFit:
    """A ground plane ``{p : normal . p = height}`` in the camera (optical) frame; ``normal`` points down."""

    normal: np.ndarray
    height: float
    inliers: int
    points: int

    @property
    def inlier_ratio(self) -> float:
        return self.inliers / max(self.points, 1)


class GroundPlaneScale:
    """Metric scale from a known camera mounting height, by fitting the ground plane in the lower image.

    Per frame (:meth:`measure`): pixels of the region ``roi`` (fractions ``(top, bottom, left, right)`` of the
    image) are back-projected with the (relative) depth and ``K``; RANSAC looks for a plane whose downward normal
    is within ``max_tilt_deg`` of the camera's y axis (down in the optical frame) and that lies below the camera;
    inliers are points within ``inlier_threshold * height`` of it (the relative threshold makes the fit
    independent of the unknown scale). The plane is refined by least squares on its inliers. The frame's scale is
    ``camera_height / fitted height``.

    Over time (:meth:`update`): the log of the scale is smoothed exponentially with weight ``smoothing`` for each
    new frame. After ``warmup`` frames, a measurement that differs from the smoothed value by more than
    ``max_jump`` (relative) is treated as an outlier and skipped, unless ``max_rejections`` come in a row (the
    scene or the model's scale changed), which restarts the filter from the new measurement.
    """

    def __init__(self, camera_height: float, roi: tuple[float, float, float, float] = (0.55, 1.0, 0.1, 0.9),
                 max_tilt_deg: float = 25.0, inlier_threshold: float = 0.05, min_inlier_ratio: float = 0.25,
                 min_points: int = 100, iterations: int = 200, max_points: int = 4000, smoothing: float = 0.1,
                 max_jump: float = 0.3, warmup: int = 5, max_rejections: int = 15, seed: int = 0):
        if not (camera_height > 0 and math.isfinite(camera_height)):
            raise ValueError(f"camera_height must be a positive number of metres, got {camera_height}")
        top, bottom, left, right = (float(v) for v in roi)
        if not (0 <= top < bottom <= 1 and 0 <= left < right <= 1):
            raise ValueError(f"roi must be fractions (top, bottom, left, right) with 0 <= top < bottom <= 1 and "
                             f"0 <= left < right <= 1, got {roi}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        if not 0 < max_tilt_deg < 90:
            raise ValueError(f"max_tilt_deg must be in (0, 90), got {max_tilt_deg}")
        if not 0 < inlier_threshold < 1:
            raise ValueError(f"inlier_threshold must be in (0, 1), got {inlier_threshold}")
        self.camera_height = float(camera_height)
        self.roi = (top, bottom, left, right)
        self.max_tilt_deg = float(max_tilt_deg)
        self.inlier_threshold = float(inlier_threshold)
        self.min_inlier_ratio = float(min_inlier_ratio)
        self.min_points = int(min_points)
        self.iterations = int(iterations)
        self.max_points = int(max_points)
        self.smoothing = float(smoothing)
        self.max_jump = float(max_jump)
        self.warmup = int(warmup)
        self.max_rejections = int(max_rejections)
        self._rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self._log_scale: float | None = None
        self.updates = 0
        self.rejected_in_a_row = 0
        self.last_fit: PlaneFit | None = None
        self.last_measurement: float | None = None

    @property
    def scale(self) -> float | None:
        """The smoothed scale, or None before the first successful fit."""
        return None if self._log_scale is None else math.exp(self._log_scale)

    # -- one frame ------------------------------------------------------------------------------------------
    def _sample_points(self, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
        h, w = depth.shape
        top, bottom, left, right = self.roi
        v0, v1 = int(top * h), max(int(top * h) + 1, int(round(bottom * h)))
        u0, u1 = int(left * w), max(int(left * w) + 1, int(round(right * w)))
        n = (v1 - v0) * (u1 - u0)
        stride = max(1, int(math.ceil(math.sqrt(n / max(self.max_points, 1)))))
        vs, us = np.mgrid[v0:v1:stride, u0:u1:stride]
        z = depth[vs, us].astype(np.float64)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(z) & (z > 0)
        us, vs, z = us[ok], vs[ok], z[ok]
        x = (us - K[0, 2] - K[0, 1] * (vs - K[1, 2]) / K[1, 1]) / K[0, 0] * z
        y = (vs - K[1, 2]) / K[1, 1] * z
        return np.stack([x, y, z], axis=1)

    def fit_plane(self, depth: np.ndarray, K) -> PlaneFit | None:
        """Fit the ground plane to one (relative) depth map ``(H, W)`` with intrinsics ``K`` at its resolution.

        Returns None when the region holds too few valid points or no plane gathers ``min_inlier_ratio`` of them.
        """
        depth = np.asarray(depth)
        if depth.ndim != 2:
            raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
        K = _as_K(K)
        pts = self._sample_points(depth, K)
        m = len(pts)
        if m < max(self.min_points, 3):
            return None
        # RANSAC, all hypotheses at once.
        idx = self._rng.integers(0, m, size=(self.iterations, 3))
        a, b, c = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
        normals = np.cross(b - a, c - a)
        norm = np.linalg.norm(normals, axis=1)
        good = norm > 1e-12
        normals = normals[good] / norm[good, None]
        a = a[good]
        normals *= np.where(normals[:, 1] < 0, -1.0, 1.0)[:, None]  # point down (+y)
        heights = np.einsum("ij,ij->i", normals, a)
        cos_tilt = math.cos(math.radians(self.max_tilt_deg))
        keep = (normals[:, 1] >= cos_tilt) & (heights > 0)
        if not keep.any():
            return None
        normals, heights = normals[keep], heights[keep]
        resid = np.abs(pts @ normals.T - heights[None, :])  # (m, hypotheses)
        counts = (resid < self.inlier_threshold * heights[None, :]).sum(axis=0)
        best = int(np.argmax(counts))
        n, d = normals[best], heights[best]
        inl = np.abs(pts @ n - d) < self.inlier_threshold * d
        # Least-squares refinement (total least squares on the inliers), twice.
        for _ in range(2):
            if inl.sum() < 3:
                return None
            q = pts[inl]
            centroid = q.mean(axis=0)
            _, _, vt = np.linalg.svd(q - centroid, full_matrices=False)
            n = vt[-1] * (1.0 if vt[-1][1] >= 0 else -1.0)
            d = float(n @ centroid)
            if d <= 0:
                return None
            inl = np.abs(pts @ n - d) < self.inlier_threshold * d
        fit = PlaneFit(normal=n, height=d, inliers=int(inl.sum()), points=m)
        if fit.inlier_ratio < self.min_inlier_ratio or fit.normal[1] < cos_tilt:
            return None
        return fit

    def measure(self, depth: np.ndarray, K) -> float | None:
        """This frame's scale ``camera_height / fitted height`` (no smoothing), or None when the fit fails."""
        fit = self.fit_plane(depth, K)
        self.last_fit = fit
        self.last_measurement = None if fit is None else self.camera_height / fit.height
        return self.last_measurement

    # -- over time ------------------------------------------------------------------------------------------
    def update(self, depth: np.ndarray, K) -> float | None:
        """Measure this frame and fold it into the smoothed scale; returns the smoothed scale (None until the
        first successful fit)."""
        m = self.measure(depth, K)
        if m is None:
            return self.scale
        log_m = math.log(m)
        if self._log_scale is None:
            self._log_scale = log_m
        elif self.updates >= self.warmup and abs(log_m - self._log_scale) > math.log1p(self.max_jump):
            self.rejected_in_a_row += 1
            if self.rejected_in_a_row < self.max_rejections:
                return self.scale
            self._log_scale = log_m  # persistent change: restart from the new measurement
        else:
            self._log_scale += self.smoothing * (log_m - self._log_scale)
        self.rejected_in_a_row = 0
        self.updates += 1
        return self.scale


# ----------------------------------------------------------------------------------------------------------------
# The estimator
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class DepthResult:
    """One prediction.

    depth: ``(H', W')`` float32, metres when ``metric`` (relative units otherwise), NaN where invalid (outside the
        crop in ``resize="crop"`` with ``output="input"``).
    K: ``(3, 3)`` intrinsics at the depth's resolution, or None when no intrinsics were given.
    scale: the factor applied to the network's depth. ``scale_measured``: this frame's camera-height
        measurement (None when not measured or the fit failed).
    timings: seconds for ``preprocess``, ``inference`` and ``postprocess``.
    """

    depth: np.ndarray
    K: np.ndarray | None
    scale: float
    scale_mode: str
    metric: bool
    scale_measured: float | None
    timings: dict[str, float]

    @property
    def units(self) -> str:
        return "m" if self.metric else "relative"


class DepthEstimator:
    """HxWx3 uint8 RGB image (+ intrinsics) -> float32 depth.

    Args:
        checkpoint: path to a dna-depth checkpoint (``.safetensors``) or a depth network.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        fp16: half precision on CUDA (ignored on the CPU).
        backend: a key of :data:`BACKENDS`: ``"auto"`` (default: onnxruntime on the CPU, torch on CUDA),
            ``"torch"`` or ``"onnxruntime"`` (which also takes an exported ``.onnx`` file as ``checkpoint``).
        input_size: ``(height, width)`` the image is resized to, multiples of 32; default: the checkpoint's.
        output: ``"input"`` (depth at the input image's resolution) or ``"network"`` (at ``input_size``).
        resize: ``"stretch"`` (resize the whole image) or ``"crop"`` (centre-crop to the network's aspect ratio
            first; with ``output="input"`` the depth outside the crop is NaN).
        scale_mode: ``"none"``, ``"fixed"`` or ``"camera_height"`` (see the module docstring).
        scale_factor: the factor of ``"fixed"``; in ``"camera_height"`` mode, the factor used until the first
            ground-plane fit succeeds (results are then flagged ``metric=False``).
        camera_height: mounting height in metres for ``"camera_height"``.
        ground: extra keyword arguments of :class:`GroundPlaneScale`.
    """

    def __init__(self, checkpoint: Any, device: str = "auto", fp16: bool = False, backend: str = "auto",
                 input_size: tuple[int, int] | None = None, output: str = "input", resize: str = "stretch",
                 scale_mode: str = "none", scale_factor: float = 1.0, camera_height: float | None = None,
                 ground: dict[str, Any] | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend '{backend}' unknown; available: {', '.join(sorted(BACKENDS))}")
        if output not in OUTPUT_MODES:
            raise ValueError(f"output '{output}' unknown; use one of {OUTPUT_MODES}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize '{resize}' unknown; use one of {RESIZE_MODES}")
        if scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode '{scale_mode}' unknown; use one of {SCALE_MODES}")
        if not (scale_factor > 0 and math.isfinite(scale_factor)):
            raise ValueError(f"scale_factor must be positive, got {scale_factor}")
        self.ground: GroundPlaneScale | None = None
        if scale_mode == "camera_height":
            if camera_height is None:
                raise ValueError("scale_mode 'camera_height' needs camera_height (metres)")
            self.ground = GroundPlaneScale(camera_height, **(ground or {}))
        self.backend = BACKENDS[backend](checkpoint, device=device, fp16=fp16)
        cfg = self.backend.config
        if input_size is None or tuple(input_size) in ((0, 0), (None, None)):
            input_size = (int(cfg.height), int(cfg.width))
        h, w = (int(v) for v in input_size)
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise ValueError(f"input_size must be positive multiples of 32 (height, width), got {input_size}")
        if not self.backend.supports_size(h, w):
            raise ValueError(f"input_size {h}x{w}: the {self.backend.name} backend was built for "
                             f"{self.backend.height}x{self.backend.width} only (export the .onnx with --dynamic)")
        self.input_size = (h, w)
        self.output = output
        self.resize = resize
        self.scale_mode = scale_mode
        self.scale_factor = float(scale_factor)
        self.min_depth = float(cfg.min_depth)
        self.max_depth = float(cfg.max_depth)

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def fp16(self) -> bool:
        return bool(self.backend.fp16)

    @property
    def config(self):
        return self.backend.config

    def warmup(self, runs: int = 1) -> None:
        """Run the network on a blank input (first calls allocate memory and pick kernels)."""
        h, w = self.input_size
        x = np.zeros((1, 3, h, w), np.float32)
        for _ in range(runs):
            self.backend(x)

    # -- steps --------------------------------------------------------------------------------------------------
    @staticmethod
    def _check_image(image) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[..., None]
        if image.ndim != 3 or image.shape[2] not in (1, 3) or image.dtype != np.uint8:
            raise ValueError(f"image must be an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype "
                             f"{image.dtype}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"image is empty: shape {image.shape}")
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        return image

    def preprocess(self, image: np.ndarray, K=None):
        """Crop/resize ``image`` to the network input; returns ``(x (1, 3, h, w) float32, K_net or None,
        crop box (x0, y0, w, h))``."""
        image = self._check_image(image)
        H, W = image.shape[:2]
        nh, nw = self.input_size
        box = center_crop_box(W, H, nw / nh) if self.resize == "crop" else (0, 0, W, H)
        x0, y0, cw, ch = box
        x = image_to_input(image[y0:y0 + ch, x0:x0 + cw], nh, nw)
        K_net = None
        if K is not None:
            K_net = resize_intrinsics(crop_intrinsics(K, x0, y0), (cw, ch), (nw, nh))
        return x, K_net, box

    def predict(self, image: np.ndarray, K=None) -> DepthResult:
        """Depth for one ``(H, W, 3)`` uint8 RGB image (mono ``(H, W)`` is accepted) with optional ``K`` (3, 3) at
        ``H x W``. ``camera_height`` mode needs ``K``; without it the current (or initial) scale is used."""
        t0 = time.perf_counter()
        image = self._check_image(image)
        K_in = None if K is None else _as_K(K)
        H, W = image.shape[:2]
        x, K_net, (x0, y0, cw, ch) = self.preprocess(image, K_in)
        t1 = time.perf_counter()
        disp = self.backend(x)[0, 0]  # (h, w)
        t2 = time.perf_counter()

        scale, metric, measured = self._scale(disp, K_net)
        if self.output == "network":
            out_disp, K_out = disp, K_net
        else:
            if (cw, ch) != (disp.shape[1], disp.shape[0]):
                up = cv2.resize(disp, (cw, ch), interpolation=cv2.INTER_LINEAR)
            else:
                up = disp
            if (cw, ch) == (W, H):
                out_disp = up
            else:
                out_disp = np.full((H, W), np.nan, np.float32)
                out_disp[y0:y0 + ch, x0:x0 + cw] = up
            K_out = K_in
        _, depth = geometry.disp_to_depth(out_disp.astype(np.float32), self.min_depth, self.max_depth)
        depth = (depth * np.float32(scale)).astype(np.float32, copy=False)
        t3 = time.perf_counter()
        return DepthResult(depth=depth, K=None if K_out is None else np.array(K_out), scale=float(scale),
                           scale_mode=self.scale_mode, metric=metric, scale_measured=measured,
                           timings={"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2})

    def _scale(self, disp: np.ndarray, K_net: np.ndarray | None) -> tuple[float, bool, float | None]:
        if self.scale_mode == "none":
            return 1.0, False, None
        if self.scale_mode == "fixed":
            return self.scale_factor, True, None
        measured = None
        if K_net is not None:
            _, rel = geometry.disp_to_depth(disp, self.min_depth, self.max_depth)
            self.ground.update(rel, K_net)
            measured = self.ground.last_measurement
        s = self.ground.scale
        if s is None:
            return self.scale_factor, False, measured
        return s, True, measured

    def __repr__(self) -> str:
        return (f"DepthEstimator(model={getattr(self.config, 'name', '?')}, backend={self.backend.name}, "
                f"device={self.device}, fp16={self.fp16}, input_size={self.input_size}, output={self.output}, "
                f"resize={self.resize}, scale_mode={self.scale_mode})")


__all__ = [
    "BACKENDS",
    "DepthEstimator",
    "DepthResult",
    "GroundPlaneScale",
    "PlaneFit",
    "TorchBackend",
    "center_crop_box",
    "crop_intrinsics",
    "image_to_input",
    "register_backend",
    "resize_intrinsics",
    "resolve_device",
]
