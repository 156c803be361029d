"""The metric scale over time, for consumers that need it constant (SLAM): convergence, freezing, withholding.

:class:`ScaleTracker` owns the scale of one :class:`~dna_depth_core.inference.DepthEstimator`:

- ``"none"``: relative depth (value 1, not metric).
- ``"fixed"``: a calibrated factor; metric, converged and constant from the start.
- ``"camera_height"``: :class:`~dna_depth_core.inference.scale.GroundPlaneScale` measures the scale on every frame
  and smooths it; this class adds on top of it (without changing its fit or its filter):

  * **convergence**: the scale has *converged* when the last ``converge_frames`` measurements that the filter took
    (outliers it skipped do not count) all lie within ``converge_tolerance`` (relative) of their median;
  * **freezing** (``freeze=True``): the first time it converges, the scale is frozen at that median and stays
    constant (RTAB-Map and other SLAM systems do not re-estimate a drifting scale). The ground is still fitted on
    every frame (the ground-aware outputs use it, and the counters keep running). :meth:`rearm` unfreezes it and
    starts a new convergence window;
  * **withholding** (``withhold=True``): :attr:`ScaleState.withheld` says that depth must not be published yet: until
    the first successful fit, or with ``freeze`` until the scale is frozen.

It also gives the frame's ground plane in the units of the published depth (:attr:`ScaleTracker.plane`).

Its methods may be called from different threads (a node's worker updates it; its executor re-arms it).
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
from typing import Any

import numpy as np

from dna_depth_core.inference.ground import GroundPlane
from dna_depth_core.inference.scale import GroundPlaneScale

SCALE_MODES = ("none", "fixed", "camera_height")


@dataclasses.dataclass(frozen=True)
class ScaleState:
    """The scale applied to one frame, and how it stands.

    mode: ``"none"``, ``"fixed"`` or ``"camera_height"``.
    value: the factor applied to the network's depth for this frame.
    metric: ``value`` gives metres (False in ``"none"`` mode and in ``"camera_height"`` mode before the first fit).
    measured: frames whose ground fit gave a measurement that the filter took.
    rejected: frames whose measurement the filter skipped as an outlier.
    failed: frames without a measurement (no plane found, or no intrinsics).
    converged: the convergence window is full and consistent (always True in ``"fixed"`` mode).
    frozen: the value is constant until re-armed (``"fixed"`` mode, or frozen after convergence).
    withheld: the depth of this frame should not be published (``withhold`` and not yet metric / frozen).
    last_measurement: this frame's measured scale, None when not measured.
    spread: the largest relative deviation of the convergence window from its median, None until it is full.
    """

    mode: str
    value: float
    metric: bool
    measured: int = 0
    rejected: int = 0
    failed: int = 0
    converged: bool = False
    frozen: bool = False
    withheld: bool = False
    last_measurement: float | None = None
    spread: float | None = None


class ScaleTracker:
    """The metric scale of a stream of relative depth maps (see the module docstring).

    Args:
        mode: ``"none"``, ``"fixed"`` or ``"camera_height"``.
        factor: the factor of ``"fixed"``; in ``"camera_height"`` mode the factor used until the first fit.
        camera_height: mounting height in metres (``"camera_height"``).
        ground: extra keyword arguments of :class:`GroundPlaneScale`.
        converge_frames: measurements in the convergence window (>= 2).
        converge_tolerance: largest relative deviation from the window's median for convergence, in (0, 1).
        freeze: freeze the scale the first time it converges.
        withhold: report frames as withheld until the scale is metric (and, with ``freeze``, frozen).
    """

    def __init__(self, mode: str = "none", factor: float = 1.0, camera_height: float | None = None,
                 ground: dict[str, Any] | None = None, converge_frames: int = 10, converge_tolerance: float = 0.05,
                 freeze: bool = False, withhold: bool = False):
        if mode not in SCALE_MODES:
            raise ValueError(f"scale_mode '{mode}' unknown; use one of {SCALE_MODES}")
        _check_factor(factor)
        if int(converge_frames) < 2:
            raise ValueError(f"converge_frames must be at least 2, got {converge_frames}")
        if not 0 < converge_tolerance < 1:
            raise ValueError(f"converge_tolerance must be in (0, 1), got {converge_tolerance}")
        self.mode = mode
        self.factor = float(factor)
        self.ground: GroundPlaneScale | None = None
        if mode == "camera_height":
            if camera_height is None:
                raise ValueError("scale_mode 'camera_height' needs camera_height (metres)")
            self.ground = GroundPlaneScale(camera_height, **(ground or {}))
        self.converge_frames = int(converge_frames)
        self.converge_tolerance = float(converge_tolerance)
        self.freeze = bool(freeze)
        self.withhold = bool(withhold)
        self._window: collections.deque = collections.deque(maxlen=self.converge_frames)
        self._frozen: float | None = None
        self._last_normal: np.ndarray | None = None
        self.measured = self.rejected = self.failed = 0
        self.plane: GroundPlane | None = None
        self._lock = threading.Lock()
        self.state = self._state(None)

    # -- control ------------------------------------------------------------------------------------------------
    def rearm(self, reset_filter: bool = False) -> None:
        """Unfreeze and start a new convergence window (with ``reset_filter`` also restart the smoothing filter
        from the next measurement, e.g. after the camera was moved)."""
        with self._lock:
            self._frozen = None
            self._window.clear()
            if reset_filter and self.ground is not None:
                self.ground.reset()
            self.state = self._state(self.state.last_measurement)

    def set_factor(self, factor: float) -> None:
        """A new calibrated factor (``"fixed"``; the initial factor of ``"camera_height"``)."""
        with self._lock:
            self.factor = _check_factor(factor)
            self.state = self._state(self.state.last_measurement)

    def set_camera_height(self, camera_height: float) -> None:
        """A new mounting height (``"camera_height"``): the filter, the window and a frozen value start again."""
        if self.ground is None:
            raise ValueError(f"camera_height applies to scale_mode 'camera_height', not '{self.mode}'")
        if not (camera_height > 0 and math.isfinite(camera_height)):
            raise ValueError(f"camera_height must be a positive number of metres, got {camera_height}")
        with self._lock:
            self.ground.camera_height = float(camera_height)
        self.rearm(reset_filter=True)

    # -- one frame ----------------------------------------------------------------------------------------------
    def update(self, rel_depth: np.ndarray | None = None, K=None) -> ScaleState:
        """Measure one frame: ``rel_depth`` ``(h, w)`` is the network's (relative) depth with intrinsics ``K`` at its
        resolution (``"camera_height"`` mode; without ``K`` the frame counts as failed and the scale is kept).
        Returns the frame's :class:`ScaleState` (also :attr:`state`); :attr:`plane` is the frame's ground plane."""
        with self._lock:
            return self._update(rel_depth, K)

    def _update(self, rel_depth, K) -> ScaleState:
        measurement = None
        if self.ground is not None:
            g = self.ground
            if rel_depth is None or K is None:
                g.last_fit, g.last_measurement = None, None
                self.failed += 1
            else:
                updates = g.updates
                g.update(rel_depth, K)
                measurement = g.last_measurement
                if measurement is None:
                    self.failed += 1
                elif g.updates > updates:
                    self.measured += 1
                    self._window.append(math.log(measurement))
                else:
                    self.rejected += 1
            if self.freeze and self._frozen is None and self._spread() is not None \
                    and self._spread() <= self.converge_tolerance:
                self._frozen = math.exp(float(np.median(self._window)))
        self.state = self._state(measurement)
        self.plane = self._plane()
        return self.state

    # -- internals ----------------------------------------------------------------------------------------------
    def _spread(self) -> float | None:
        if len(self._window) < self.converge_frames:
            return None
        logs = np.asarray(self._window)
        return math.expm1(float(np.abs(logs - np.median(logs)).max()))

    def _state(self, measurement: float | None) -> ScaleState:
        if self.mode == "none":
            return ScaleState(mode="none", value=1.0, metric=False)
        if self.mode == "fixed":
            return ScaleState(mode="fixed", value=self.factor, metric=True, converged=True, frozen=True)
        spread = self._spread()
        converged = spread is not None and spread <= self.converge_tolerance
        if self._frozen is not None:
            value, metric = self._frozen, True
        elif self.ground.scale is not None:
            value, metric = self.ground.scale, True
        else:
            value, metric = self.factor, False
        frozen = self._frozen is not None
        withheld = self.withhold and not (metric and (frozen or not self.freeze))
        return ScaleState(mode=self.mode, value=float(value), metric=metric, measured=self.measured,
                          rejected=self.rejected, failed=self.failed, converged=converged, frozen=frozen,
                          withheld=withheld, last_measurement=measurement, spread=spread)

    def _plane(self) -> GroundPlane | None:
        if self.ground is None:
            return None
        fit = self.ground.last_fit
        if fit is not None:
            self._last_normal = np.asarray(fit.normal, dtype=np.float64)
            return GroundPlane.from_fit(fit, self.state.value)
        if self._last_normal is not None:
            return GroundPlane(self._last_normal, self.ground.camera_height, source="last_fit")
        return None


def _check_factor(factor: float) -> float:
    if not (factor > 0 and math.isfinite(factor)):
        raise ValueError(f"scale_factor must be positive, got {factor}")
    return float(factor)


__all__ = ["SCALE_MODES", "ScaleState", "ScaleTracker"]
