"""``DepthEstimator``: an RGB image (+ intrinsics) in, depth in metres out. ROS-free; the ROS node, ``predict``
and ``evaluate`` are shells around it.

>>> est = DepthEstimator("model.safetensors", device="auto", scale_mode="camera_height", camera_height=1.65)
>>> res = est.predict(rgb, K)          # rgb (H, W, 3) uint8, K (3, 3) at H x W
>>> res.depth, res.K, res.scale, res.metric

Pipeline:

1. :func:`dna_depth_core.preprocess.prepare` (the one image -> input rule: optional centre crop to the network's
   aspect ratio with ``resize="crop"``, resize, [0, 1] float) and :func:`dna_depth_core.camera.network_K` (the
   intrinsics follow the crop and the resize).
2. The backend (``backend="auto"``, ``"torch"``, ``"onnxruntime"``, ``"openvino"``; see
   :mod:`dna_depth_core.backends`) at ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``, ``"int8"``) turns the
   ``(1, 3, h, w)`` input into the sigmoid disparity ``(1, 1, h, w)``. ``backend_reason`` says in one line what
   runs and why (for ``auto``: the CPU's ISA class, the runtimes installed, the model file's accuracy guard).
3. The disparity is resized to the requested output (``output="input"``: the input's resolution, bilinear, NaN
   outside a crop; ``output="network"``: the network's), converted with ``geometry.disp_to_depth`` and multiplied
   by the metric scale.

Metric scale (self-supervised monocular depth is only known up to scale):

- ``"none"``: relative depth; ``DepthResult.metric`` is False and ``units`` is ``"relative"``.
- ``"fixed"``: ``scale_factor`` from calibration.
- ``"camera_height"``: :class:`~dna_depth_core.inference.scale.GroundPlaneScale` fits the ground plane in the
  lower image, compares its distance to the known mounting height, and smooths the factor over time.

:class:`~dna_depth_core.inference.scale_state.ScaleTracker` keeps the scale's state (measured, rejected,
converged, frozen; ``freeze_scale``, ``withhold``) and the frame's ground plane in metres
(``DepthResult.scale_state``, ``DepthResult.ground_plane``).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import cv2
import numpy as np
import torch

from dna_depth_core import geometry
from dna_depth_core.backends import create_backend
from dna_depth_core.camera import as_K
from dna_depth_core.inference.ground import GroundPlane
from dna_depth_core.inference.scale import GroundPlaneScale
from dna_depth_core.inference.scale_state import SCALE_MODES, ScaleState, ScaleTracker
from dna_depth_core.preprocess import RESIZE_MODES, as_rgb, prepare

OUTPUT_MODES = ("input", "network")


@dataclasses.dataclass
class DepthResult:
    """One prediction.

    depth: ``(H', W')`` float32, metres when ``metric`` (relative units otherwise), NaN where invalid (outside the
        crop in ``resize="crop"`` with ``output="input"``).
    disparity: the network's sigmoid disparity at the depth's resolution (before the metric scale), NaN where the
        depth is; for viewing (:func:`dna_depth_core.visualize.colorize_disparity`).
    K: ``(3, 3)`` intrinsics at the depth's resolution, or None when no intrinsics were given.
    scale: the factor applied to the network's depth. ``scale_measured``: this frame's camera-height
        measurement (None when not measured or the fit failed).
    timings: seconds for ``preprocess``, ``inference`` and ``postprocess``.
    scale_state: the scale's :class:`~dna_depth_core.inference.scale_state.ScaleState` for this frame (counters,
        converged, frozen, ``withheld``: the depth should not be published yet).
    ground_plane: the ground in the depth's units (:class:`~dna_depth_core.inference.ground.GroundPlane`): this
        frame's fit in ``camera_height`` mode (or the last fit's normal at the mounting height when this frame's
        fit failed); None in the other modes and before the first fit.
    """

    depth: np.ndarray
    disparity: np.ndarray
    K: np.ndarray | None
    scale: float
    scale_mode: str
    metric: bool
    scale_measured: float | None
    timings: dict[str, float]
    scale_state: ScaleState | None = None
    ground_plane: GroundPlane | None = None

    @property
    def units(self) -> str:
        return "m" if self.metric else "relative"


class DepthEstimator:
    """HxWx3 uint8 RGB image (+ intrinsics) -> float32 depth.

    Args:
        checkpoint: path to a dna-depth checkpoint (``.safetensors``) or a depth network.
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        fp16: half precision on CUDA (ignored on the CPU).
        backend: a registered backend name: ``"auto"`` (default: :func:`dna_depth_core.backends.select_backend`
            picks by the device, the model file, the CPU's ISA, the installed runtimes and the accuracy guard),
            ``"torch"``, ``"onnxruntime"`` (also an exported ``.onnx`` file as ``checkpoint``) or ``"openvino"``
            (an ``.onnx``, or an int8 IR ``.xml``; CPU only).
        precision: ``"auto"`` (the model file's own; with ``backend="auto"``, bf16 where the CPU computes it
            natively and the file's accuracy-guard record allows it), ``"fp32"``, ``"bf16"`` (native bf16 only) or
            ``"int8"`` (needs an int8 file: ``dna-depth export-onnx --int8``). A request that cannot be served is a
            ValueError naming why.
        input_size: ``(height, width)`` the image is resized to, multiples of 32; default: the checkpoint's.
        output: ``"input"`` (depth at the input image's resolution) or ``"network"`` (at ``input_size``).
        resize: ``"stretch"`` (resize the whole image) or ``"crop"`` (centre-crop to the network's aspect ratio
            first; with ``output="input"`` the depth outside the crop is NaN).
        scale_mode: ``"none"``, ``"fixed"`` or ``"camera_height"`` (see the module docstring).
        scale_factor: the factor of ``"fixed"``; in ``"camera_height"`` mode, the factor used until the first
            ground-plane fit succeeds (results are then flagged ``metric=False``).
        camera_height: mounting height in metres for ``"camera_height"``.
        ground: extra keyword arguments of :class:`GroundPlaneScale`.
        converge_frames, converge_tolerance: the scale has converged when this many consecutive measurements lie
            within this relative tolerance of their median (:class:`ScaleTracker`).
        freeze_scale: freeze the ``camera_height`` scale once it has converged (:meth:`rearm_scale` unfreezes it).
        withhold: flag results as withheld (``scale_state.withheld``) until the scale is metric, and with
            ``freeze_scale`` frozen.
    """

    def __init__(self, checkpoint: Any, device: str = "auto", fp16: bool = False, backend: str = "auto",
                 input_size: tuple[int, int] | None = None, output: str = "input", resize: str = "stretch",
                 scale_mode: str = "none", scale_factor: float = 1.0, camera_height: float | None = None,
                 ground: dict[str, Any] | None = None, converge_frames: int = 10, converge_tolerance: float = 0.05,
                 freeze_scale: bool = False, withhold: bool = False, precision: str = "auto"):
        if output not in OUTPUT_MODES:
            raise ValueError(f"output '{output}' unknown; use one of {OUTPUT_MODES}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize '{resize}' unknown; use one of {RESIZE_MODES}")
        self.scale_tracker = ScaleTracker(scale_mode, scale_factor, camera_height, ground,
                                          converge_frames=converge_frames, converge_tolerance=converge_tolerance,
                                          freeze=freeze_scale, withhold=withhold)
        self.ground: GroundPlaneScale | None = self.scale_tracker.ground
        self.backend = create_backend(backend, checkpoint, device=device, fp16=fp16, precision=precision)
        #: One line: which backend and precision run, and why (the ROS node logs it at start).
        self.backend_reason: str = self._reason(backend)
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
        self.min_depth = float(cfg.min_depth)
        self.max_depth = float(cfg.max_depth)

    def _reason(self, requested: str) -> str:
        reason = getattr(self.backend, "reason", None)
        if requested == "auto" and reason:
            return str(reason)  # "backend auto: <backend> <precision> (<why>)"
        precision = getattr(self.backend, "precision", None)
        head = f"backend {requested}" + (f" {precision}" if precision else "")
        return f"{head}: {reason or 'requested'}"

    # -- properties ---------------------------------------------------------------------------------------------
    @property
    def scale_factor(self) -> float:
        return self.scale_tracker.factor

    def rearm_scale(self, reset_filter: bool = False) -> None:
        """Unfreeze the scale and wait for a new convergence (:meth:`ScaleTracker.rearm`)."""
        self.scale_tracker.rearm(reset_filter)

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
    def preprocess(self, image: np.ndarray, K=None):
        """The network input for ``image`` (:func:`dna_depth_core.preprocess.prepare`): ``(x (1, 3, h, w) float32,
        K at the network size or None, crop box (x0, y0, w, h))``."""
        nh, nw = self.input_size
        return prepare(image, (nw, nh), self.resize, K)

    def predict(self, image: np.ndarray, K=None) -> DepthResult:
        """Depth for one ``(H, W, 3)`` uint8 RGB image (mono ``(H, W)`` is accepted) with optional ``K`` (3, 3) at
        ``H x W``. ``camera_height`` mode needs ``K``; without it the current (or initial) scale is used."""
        t0 = time.perf_counter()
        image = as_rgb(image)
        K_in = None if K is None else as_K(K)
        H, W = image.shape[:2]
        x, K_net, (x0, y0, cw, ch) = self.preprocess(image, K_in)
        t1 = time.perf_counter()
        disp = self.backend(x)[0, 0]  # (h, w)
        t2 = time.perf_counter()

        state = self._scale(disp, K_net)
        scale = state.value
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
        out_disp = out_disp.astype(np.float32, copy=False)
        _, depth = geometry.disp_to_depth(out_disp, self.min_depth, self.max_depth)
        depth = (depth * np.float32(scale)).astype(np.float32, copy=False)
        t3 = time.perf_counter()
        return DepthResult(depth=depth, disparity=out_disp, K=None if K_out is None else np.array(K_out),
                           scale=float(scale), scale_mode=self.scale_mode, metric=state.metric,
                           scale_measured=state.last_measurement,
                           timings={"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2},
                           scale_state=state, ground_plane=self.scale_tracker.plane)

    def _scale(self, disp: np.ndarray, K_net: np.ndarray | None) -> ScaleState:
        rel = None
        if self.ground is not None and K_net is not None:
            _, rel = geometry.disp_to_depth(disp, self.min_depth, self.max_depth)
        return self.scale_tracker.update(rel, K_net)

    def __repr__(self) -> str:
        return (f"DepthEstimator(model={getattr(self.config, 'name', '?')}, backend={self.backend.name}, "
                f"precision={getattr(self.backend, 'precision', '?')}, "
                f"device={self.device}, fp16={self.fp16}, input_size={self.input_size}, output={self.output}, "
                f"resize={self.resize}, scale_mode={self.scale_mode})")


__all__ = ["DepthEstimator", "DepthResult", "OUTPUT_MODES", "RESIZE_MODES", "SCALE_MODES"]
