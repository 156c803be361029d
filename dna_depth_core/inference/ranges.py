"""Range conventions of the published depth and clouds: REP 117 values, and clearing rays for costmaps.

REP 117 (informational distance measurements) gives three special values to a range reading:

- ``+inf``: nothing within the sensor's maximum range (free space as far as it sees);
- ``-inf``: something nearer than the minimum range;
- ``NaN``: no measurement (erroneous, or not observed).

Here they apply to depth in metres:

- depth images (:func:`rep117_depth`): the range is the depth itself (the optical-axis ``z``), compared with
  ``min_range`` / ``max_range``. 16-bit millimetre images cannot hold these values: they keep 0 for every invalid
  pixel (REP 118), see ``dna_depth_ros.conversions.depth_to_image``.
- point clouds (:func:`cloud_points`): the range is the Euclidean distance from the camera. A point is its pixel's
  ray times the REP 117 value, so ``+inf`` gives ``z = +inf`` (and ``x``, ``y`` infinite with the ray's signs, 0
  where the ray's component is 0), ``-inf`` gives ``z = -inf``; NaN gives NaN in ``x``, ``y``, ``z``. Consumers
  that test ``isfinite`` (PCL, Nav2's height filter) skip them.

Clearing (``far="clearing"``): costmaps (Nav2's obstacle and voxel layers) clear the cells along the ray from the
sensor to each point of a clearing source, but skip non-finite points, so a pixel that sees nothing within range
(open space, the sky) would never clear a stale obstacle. In clearing mode such a pixel becomes a point at
``clearing_distance`` metres (Euclidean) along its ray: the costmap raytraces free space up to there, and does not
mark it when ``clearing_distance`` is at least the layer's ``obstacle_max_range``.

Arrays follow docs/conventions.md: depth ``(H, W)`` float metres, optical frame (x right, y down, z forward),
rays of the pixels in a :class:`PixelRays` (built once per intrinsics and size).
"""
from __future__ import annotations

import math

import numpy as np

from dna_depth_core import geometry

FAR_MODES = ("inf", "clearing")


def _check_ranges(min_range: float, max_range: float) -> tuple[float, float]:
    min_range, max_range = float(min_range), float(max_range)
    if not (math.isfinite(min_range) and min_range >= 0):
        raise ValueError(f"min_range must be a finite number >= 0 (0 = no minimum), got {min_range}")
    if not (math.isfinite(max_range) and max_range >= 0):
        raise ValueError(f"max_range must be a finite number >= 0 (0 = no maximum), got {max_range}")
    if max_range > 0 and min_range >= max_range:
        raise ValueError(f"min_range ({min_range}) must be smaller than max_range ({max_range})")
    return min_range, max_range


def _check_depth(depth) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth must be a non-empty (H, W) array, got shape {depth.shape}")
    return depth


def rep117_depth(depth, min_range: float = 0.0, max_range: float = 0.0) -> np.ndarray:
    """A depth map with the REP 117 values.

    Args:
        depth: ``(H, W)`` metres (any float dtype). NaN, ``-inf`` and values ``<= 0`` are no measurement;
            ``+inf`` is beyond any range.
        min_range: depth below this is ``-inf`` (0 = no minimum).
        max_range: depth above this is ``+inf`` (0 = no maximum).
    Returns:
        ``(H, W)`` float32: the depth where ``min_range <= depth <= max_range``, ``+inf`` beyond ``max_range``,
        ``-inf`` nearer than ``min_range``, NaN where there is no measurement.
    """
    depth = _check_depth(depth)
    min_range, max_range = _check_ranges(min_range, max_range)
    out = np.array(depth, dtype=np.float32)  # a copy: the caller's depth is left alone
    with np.errstate(invalid="ignore"):
        out[~(out > 0)] = np.nan  # NaN, -inf, <= 0
        if max_range > 0:
            out[out > max_range] = np.inf
        if min_range > 0:
            out[out < min_range] = -np.inf
    return out


class PixelRays:
    """The viewing rays of every pixel of an ``H x W`` image with intrinsics ``K`` (built once, reused per frame).

    Attributes:
        K: ``(3, 3)`` float64 intrinsics at ``H x W``.
        xyz: ``(H, W, 3)`` float32 rays with ``z = 1`` (``depth * xyz`` is the point of a pixel).
        norm: ``(H, W)`` float32 Euclidean length of each ray (``depth * norm`` is a pixel's range).
    """

    def __init__(self, K, height: int, width: int):
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise ValueError(f"K must have shape (3, 3), got {K.shape}")
        if height <= 0 or width <= 0:
            raise ValueError(f"height and width must be positive, got {height} x {width}")
        self.K = K.copy()
        self.xyz = geometry.depth_to_points(np.ones((int(height), int(width)), np.float32), K)
        self.norm = np.sqrt(np.einsum("ijk,ijk->ij", self.xyz, self.xyz))
        self._memo: dict = {}

    @property
    def shape(self) -> tuple[int, int]:
        return self.norm.shape

    def matches(self, K, height: int, width: int) -> bool:
        """True when these are the rays of ``K`` at ``height x width``."""
        return self.shape == (height, width) and np.array_equal(self.K, np.asarray(K, dtype=np.float64))

    def memo_get(self, name: str):
        """What :meth:`memo_set` stored under ``name`` (None when nothing): arrays derived from these rays that
        callers would otherwise recompute on every frame."""
        return self._memo.get(name)

    def memo_set(self, name: str, value) -> None:
        self._memo[name] = value

    def far_points(self, clearing_distance: float | None) -> np.ndarray:
        """``(H, W, 3)`` float32 points of the far pixels: ``+inf`` along each ray (None), or ``clearing_distance``
        metres along it (memoised)."""
        entry = self._memo.get("far_points")
        if entry is None or entry[0] != clearing_distance:
            if clearing_distance is None:
                far = _signed_inf(self.xyz, 1.0)
            else:
                far = (self.xyz * (np.float32(clearing_distance) / self.norm)[..., None]).astype(np.float32)
            entry = (clearing_distance, far)
            self._memo["far_points"] = entry
        return entry[1]

    def near_points(self) -> np.ndarray:
        """``(H, W, 3)`` float32: ``-inf`` along each ray (memoised)."""
        if "near_points" not in self._memo:
            self._memo["near_points"] = _signed_inf(self.xyz, -1.0)
        return self._memo["near_points"]


def cloud_points(depth, rays: PixelRays, min_range: float = 0.0, max_range: float = 0.0, far: str = "inf",
                 clearing_distance: float = 0.0) -> np.ndarray:
    """Organised points with the REP 117 values, or clearing rays, by Euclidean range.

    Args:
        depth: ``(H, W)`` metres (camera z); NaN, ``-inf`` and ``<= 0`` are no measurement, ``+inf`` is far.
        rays: the :class:`PixelRays` of the same ``H x W`` pixels.
        min_range: points nearer than this (Euclidean, metres) are ``-inf`` along their ray (0 = no minimum).
        max_range: points farther than this are far (0 = no maximum: only ``+inf`` depth is far).
        far: ``"inf"``: far points are ``+inf`` along their ray (REP 117). ``"clearing"``: they are placed at
            ``clearing_distance`` metres along their ray.
        clearing_distance: the length of a clearing ray (``far="clearing"``), > 0.
    Returns:
        ``(H, W, 3)`` float32 xyz in the optical frame: ``depth * ray`` where valid and within range; see the
        module docstring for the others.
    """
    depth = _check_depth(depth)
    if rays.shape != depth.shape:
        raise ValueError(f"rays are for {rays.shape[0]} x {rays.shape[1]} pixels but depth has shape {depth.shape}")
    min_range, max_range = _check_ranges(min_range, max_range)
    if far not in FAR_MODES:
        raise ValueError(f"far '{far}' unknown; use one of {FAR_MODES}")
    if far == "clearing" and not (math.isfinite(clearing_distance) and clearing_distance > 0):
        raise ValueError(f"clearing_distance must be a positive number of metres, got {clearing_distance}")

    z = depth.astype(np.float32, copy=False)
    with np.errstate(invalid="ignore", over="ignore"):
        measured = z > 0  # False for NaN, -inf, <= 0
        rng = z * rays.norm  # Euclidean range (inf for +inf depth)
        beyond = measured & ((rng > max_range) if max_range > 0 else np.isinf(z))
        near = (measured & (rng < min_range)) if min_range > 0 else None
        points = rays.xyz * np.where(measured, z, np.float32(np.nan))[..., None]
    if beyond.any():
        far_points = rays.far_points(float(clearing_distance) if far == "clearing" else None)
        points = select_points(beyond, far_points, points)
    if near is not None and near.any():
        points = select_points(near, rays.near_points(), points)
    return points


def select_points(mask: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` where ``mask`` ``(H, W)`` else ``b`` (both ``(H, W, 3)``), as ``np.where`` on flat arrays of one shape:
    boolean-mask assignment into, or a broadcast ``np.where`` over, an ``(H, W, 3)`` array is many times slower."""
    return np.where(np.repeat(mask.ravel(), 3), a.ravel(), b.ravel()).reshape(a.shape)


def _signed_inf(rays: np.ndarray, sign: float) -> np.ndarray:
    """``sign * inf`` times each ray ``(..., 3)``, with 0 (not NaN) where a ray's component is 0."""
    return np.where(rays == 0, 0.0, np.copysign(np.inf, rays * sign)).astype(np.float32)


__all__ = ["FAR_MODES", "PixelRays", "cloud_points", "rep117_depth", "select_points"]
