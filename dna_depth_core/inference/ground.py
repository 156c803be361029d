"""Ground-aware outputs from a ground plane: height above the ground, obstacle and ground points, a laser scan.

Conventions (docs/conventions.md): the camera's optical frame (x right, y down, z forward); depth ``(H, W)`` in
metres (camera z), NaN or ``<= 0`` where there is no measurement; pixel rays in a
:class:`~dna_depth_core.inference.ranges.PixelRays`. A ground plane is ``{p : normal . p = height}`` with the unit
``normal`` pointing down (towards the ground) and ``height`` the camera's distance above it, as in
:class:`~dna_depth_core.inference.scale.PlaneFit`. The height of a point ``p`` above the ground is
``height - normal . p`` (positive above the ground, negative below it).

Where the plane comes from:

- the ground-plane fit of ``scale_mode="camera_height"`` (:meth:`GroundPlane.from_fit`: this frame's fitted normal,
  the fitted height times the frame's metric scale, so the plane passes through the published points);
- the camera's mounting (:func:`mounting_plane`: height, pitch and roll of the camera above level ground).

The *levelled frame* (:func:`levelled_rotation`) has its origin at the camera's optical centre, ``z`` up (against the
ground normal), ``x`` forward (the optical axis projected onto the ground's horizontal) and ``y`` left: the
frame a laser scanner mounted level at the camera would measure in. :func:`laser_scan` bins the obstacle points by
their bearing in it, as a planar laser with the camera's horizontal field of view would see them.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from dna_depth_core.inference.ranges import PixelRays
from dna_depth_core.inference.scale import PlaneFit

PLANE_SOURCES = ("fit", "last_fit", "mounting")


@dataclasses.dataclass(frozen=True)
class GroundPlane:
    """A ground plane ``{p : normal . p = height}`` in the optical frame, in the units of the depth it describes.

    normal: ``(3,)`` float64 unit vector pointing down (``normal[1] > 0`` for a camera that is not upside down).
    height: the camera's height above the plane (> 0).
    source: ``"fit"`` (this frame's ground fit), ``"last_fit"`` (the latest successful fit's normal at the mounting
        height, for a frame whose fit failed) or ``"mounting"`` (configured height, pitch and roll).
    """

    normal: np.ndarray
    height: float
    source: str = "mounting"

    def __post_init__(self):
        n = np.asarray(self.normal, dtype=np.float64).reshape(-1)
        if n.shape != (3,) or not np.all(np.isfinite(n)) or not math.isclose(float(np.linalg.norm(n)), 1.0,
                                                                                abs_tol=1e-6):
            raise ValueError(f"normal must be a unit 3-vector, got {self.normal}")
        if not (math.isfinite(self.height) and self.height > 0):
            raise ValueError(f"height must be a positive distance, got {self.height}")
        if self.source not in PLANE_SOURCES:
            raise ValueError(f"source '{self.source}' unknown; use one of {PLANE_SOURCES}")
        object.__setattr__(self, "normal", n)
        object.__setattr__(self, "height", float(self.height))

    @classmethod
    def from_fit(cls, fit: PlaneFit, scale: float, source: str = "fit") -> GroundPlane:
        """The plane of a ground fit on relative depth, in the units of that depth times ``scale``."""
        return cls(normal=np.asarray(fit.normal, dtype=np.float64), height=float(fit.height) * float(scale),
                   source=source)

    def heights(self, points: np.ndarray) -> np.ndarray:
        """Height above the ground of points ``(..., 3)``: ``height - normal . p``, shape ``(...)``."""
        points = np.asarray(points, dtype=np.float64)
        if points.shape[-1:] != (3,):
            raise ValueError(f"points must have shape (..., 3), got {points.shape}")
        return self.height - points @ self.normal


def mounting_plane(camera_height: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> GroundPlane:
    """The ground below a camera mounted ``camera_height`` metres above level ground, pitched down by
    ``pitch_deg`` (a rotation about the camera's x axis; positive looks down) after a roll of ``roll_deg`` about its
    optical axis (the rig of :func:`dna_depth_core.data.synthetic.synthetic_drive`).

    The normal in the optical frame is ``(sin(roll) cos(pitch), cos(roll) cos(pitch), sin(pitch))``: level (0, 1, 0);
    pitched down, the optical axis meets the ground at ``camera_height / sin(pitch)``.
    """
    if not (math.isfinite(camera_height) and camera_height > 0):
        raise ValueError(f"camera_height must be a positive number of metres, got {camera_height}")
    if not (math.isfinite(pitch_deg) and abs(pitch_deg) < 90):
        raise ValueError(f"pitch_deg must be in (-90, 90), got {pitch_deg}")
    if not (math.isfinite(roll_deg) and abs(roll_deg) < 90):
        raise ValueError(f"roll_deg must be in (-90, 90), got {roll_deg}")
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    normal = np.array([math.sin(r) * math.cos(p), math.cos(r) * math.cos(p), math.sin(p)])
    return GroundPlane(normal=normal, height=float(camera_height), source="mounting")


def levelled_rotation(normal) -> np.ndarray:
    """``R`` ``(3, 3)`` whose columns are the levelled frame's axes in the optical frame: ``x`` forward (the optical
    axis projected onto the plane perpendicular to ``normal``), ``y`` left, ``z`` up (``-normal``). A point ``p`` in
    the optical frame is ``R.T @ p`` in the levelled frame.

    Raises:
        ValueError: the optical axis is within 1 degree of the normal (a camera looking straight down or up has no
            forward direction).
    """
    n = np.asarray(normal, dtype=np.float64).reshape(3)
    n = n / np.linalg.norm(n)
    up = -n
    forward = np.array([0.0, 0.0, 1.0]) - up[2] * up
    length = float(np.linalg.norm(forward))
    if length < math.sin(math.radians(1.0)):
        raise ValueError(f"the optical axis is (nearly) along the ground normal {n.tolist()}: no forward direction")
    forward /= length
    left = np.cross(up, forward)
    return np.stack([forward, left, up], axis=1)


def _dot(xyz: np.ndarray, v) -> np.ndarray:
    """``xyz (..., 3) . v (3,)`` -> ``(...)``, component by component (numpy's matmul with a 3-vector is many
    times slower on large arrays)."""
    v = [float(c) for c in v]
    return xyz[..., 0] * np.float32(v[0]) + xyz[..., 1] * np.float32(v[1]) + xyz[..., 2] * np.float32(v[2])


def _valid(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def _check(depth, rays: PixelRays) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0:
        raise ValueError(f"depth must be a non-empty (H, W) array, got shape {depth.shape}")
    if rays.shape != depth.shape:
        raise ValueError(f"rays are for {rays.shape[0]} x {rays.shape[1]} pixels but depth has shape {depth.shape}")
    return depth.astype(np.float32, copy=False)


def _check_band(band) -> tuple[float, float]:
    lo, hi = (float(v) for v in band)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
        raise ValueError(f"band must be (min_height, max_height) metres with 0 <= min_height < max_height, got {band}")
    return lo, hi


def height_above_ground(depth, rays: PixelRays, plane: GroundPlane) -> np.ndarray:
    """Per-pixel height above the ground ``(H, W)`` float32 (``height - depth * normal . ray``), NaN where the depth
    is not a measurement (not finite or ``<= 0``)."""
    depth = _check(depth, rays)
    along = _dot(rays.xyz, plane.normal)  # (H, W): normal . ray
    out = np.float32(plane.height) - depth * along
    out[~_valid(depth)] = np.nan
    return out


def split_ground(depth, rays: PixelRays, plane: GroundPlane, band: tuple[float, float],
                 min_range: float = 0.0, max_range: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Obstacle and ground points of one depth map.

    Args:
        depth: ``(H, W)`` metres; rays: its :class:`PixelRays`; plane: the ground, in metres.
        band: ``(min_height, max_height)``: obstacles are the points whose height above the ground is in
            ``[min_height, max_height]``; ground points are those within ``min_height`` of the plane (either side).
            Points below ``-min_height`` (holes, noise) and above ``max_height`` are neither.
        min_range, max_range: only points whose Euclidean range is within these (metres; 0 = no limit) count.
    Returns:
        ``(obstacles (N, 3), ground (M, 3))`` float32 xyz in the optical frame, in row-major pixel order.
    """
    depth = _check(depth, rays)
    lo, hi = _check_band(band)
    h = height_above_ground(depth, rays, plane)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(h)
        if min_range > 0 or max_range > 0:
            rng = depth * rays.norm
            if min_range > 0:
                keep &= rng >= min_range
            if max_range > 0:
                keep &= rng <= max_range
        obstacle = keep & (h >= lo) & (h <= hi)
        ground = keep & (np.abs(h) < lo)
    xyz, z = rays.xyz.reshape(-1, 3), depth.reshape(-1, 1)

    def pick(mask):  # integer selection of flat rows: boolean indexing of (H, W, 3) is many times slower
        idx = np.flatnonzero(mask)
        return xyz.take(idx, axis=0) * z.take(idx, axis=0)

    return pick(obstacle), pick(ground)


@dataclasses.dataclass
class Scan:
    """A planar scan in the levelled frame, with the fields of ``sensor_msgs/LaserScan``.

    Beam ``i`` looks along the bearing ``angle_min + i * angle_increment`` (radians, counter-clockwise about the
    levelled ``z`` (up) from ``x`` (forward), so increasing to the left). ``ranges`` ``(N,)`` float32: horizontal
    distance to the nearest obstacle point of the beam within ``[range_min, range_max]``; ``+inf`` where the beam saw
    no obstacle within ``range_max`` (free), ``-inf`` where its only obstacles are nearer than ``range_min``, NaN
    where no pixel of the beam has a measurement (REP 117).
    """

    angle_min: float
    angle_max: float
    angle_increment: float
    range_min: float
    range_max: float
    ranges: np.ndarray


@dataclasses.dataclass
class _ScanGeometry:
    """What a scan needs of the rays and the levelled frame, independent of the depth (memoised on the rays).

    beams, angle_min, angle_max, increment: the beams; first, last: ``(H, W)`` int32, the beams each pixel's footprint
    covers; horizontal, up: ``(H, W)`` float32 horizontal length and upward component of each ray (``z = 1``) in the
    levelled frame; span: the most beams one pixel covers, minus one."""

    beams: int
    angle_min: float
    angle_max: float
    increment: float
    first: np.ndarray
    last: np.ndarray
    horizontal: np.ndarray
    span: int


def _edge_bearings(rays: PixelRays, rotation: np.ndarray) -> np.ndarray:
    """``(H, W + 1)`` bearings in the levelled frame of the pixels' left and right edges (``u = -1/2 .. W - 1/2``)
    on each pixel row."""
    h, w = rays.shape
    M = np.linalg.inv(rays.K).T @ rotation  # pixel (u, v, 1) -> levelled ray
    u = (np.arange(w + 1, dtype=np.float64) - 0.5)[None, :]
    v = np.arange(h, dtype=np.float64)[:, None]
    qx = u * M[0, 0] + v * M[1, 0] + M[2, 0]
    qy = u * M[0, 1] + v * M[1, 1] + M[2, 1]
    return np.arctan2(qy, qx)


# The scan's bearings are reused while the ground normal stays within this angle of the one they were computed for.
LEVEL_TOLERANCE_DEG = 0.5


def _scan_geometry(rays: PixelRays, normal: np.ndarray, beams: int) -> _ScanGeometry:
    """The scan geometry of the levelled frame of ``normal``, memoised on ``rays``: reused for a later normal within
    :data:`LEVEL_TOLERANCE_DEG` of the one it was computed for (a fitted plane moves a little on every frame; a
    mounting plane never does)."""
    entry = rays.memo_get("scan_geometry")
    if entry is not None:
        cached_normal, cached_beams, geo = entry
        if cached_beams == beams and float(cached_normal @ normal) >= math.cos(math.radians(LEVEL_TOLERANCE_DEG)):
            return geo
    geo = _compute_scan_geometry(rays, levelled_rotation(normal), beams)
    rays.memo_set("scan_geometry", (np.array(normal, dtype=np.float64), beams, geo))
    return geo


def _compute_scan_geometry(rays: PixelRays, rotation: np.ndarray, beams: int) -> _ScanGeometry:
    edges = _edge_bearings(rays, rotation)
    angle_min, angle_max = float(edges[:, -1].min()), float(edges[:, 0].max())
    beams = beams or default_beams(rays, angle_min, angle_max)
    if beams < 2:
        raise ValueError(f"beams must be at least 2, got {beams}")
    inc = (angle_max - angle_min) / (beams - 1)
    # Beams covered by each pixel's footprint: [first, last]; the nearest beam when none is inside it.
    a = (np.minimum(edges[:, :-1], edges[:, 1:]) - angle_min) / inc
    b = (np.maximum(edges[:, :-1], edges[:, 1:]) - angle_min) / inc
    first, last = np.ceil(a - 1e-6), np.floor(b + 1e-6)
    between = first > last
    first[between] = last[between] = np.rint((a[between] + b[between]) / 2)
    first = np.clip(first, 0, beams - 1).astype(np.int32)
    last = np.clip(last, 0, beams - 1).astype(np.int32)
    horizontal = np.hypot(_dot(rays.xyz, rotation[:, 0]), _dot(rays.xyz, rotation[:, 1])).astype(np.float32)
    return _ScanGeometry(beams=beams, angle_min=angle_min, angle_max=angle_max, increment=inc, first=first, last=last,
                         horizontal=horizontal, span=int((last - first).max(initial=0)))


def scan_limits(rays: PixelRays, rotation: np.ndarray) -> tuple[float, float]:
    """``(angle_min, angle_max)``: the bearings in the levelled frame (``rotation``, see :func:`levelled_rotation`)
    of the image's right and left borders (``u = W - 1/2`` and ``u = -1/2``), the extremes over the pixel rows. A
    level camera gives ``-atan((W - 1/2 - cx) / fx)`` and ``atan((cx + 1/2) / fx)``."""
    edges = _edge_bearings(rays, rotation)
    return float(edges[:, -1].min()), float(edges[:, 0].max())


def default_beams(rays: PixelRays, angle_min: float, angle_max: float) -> int:
    """One beam per pixel width at the image centre: ``round((angle_max - angle_min) / (2 atan(1 / (2 fx)))) + 1``."""
    return max(2, int(round((angle_max - angle_min) / (2.0 * math.atan(0.5 / rays.K[0, 0])))) + 1)


def laser_scan(depth, rays: PixelRays, plane: GroundPlane, band: tuple[float, float], range_min: float,
               range_max: float, beams: int = 0) -> Scan:
    """A laser scan of the obstacle band: per bearing, the horizontal range of the nearest obstacle point.

    Every pixel with a measurement is placed in the levelled frame of ``plane`` (:func:`levelled_rotation`). Its
    footprint (the bearings of its left and right edges) covers one or more beams (the nearest beam when it falls
    between two), so beams finer than the pixels leave no gaps. Pixels whose height above the ground lies in
    ``band`` are obstacle points; their horizontal range (``hypot(x, y)`` in the levelled frame) competes for the
    minimum of the beams they cover. Pixels outside the band (the ground, the ceiling) mark their beams as seen:
    free unless an obstacle point is in them.

    Heights use ``plane`` exactly; the bearings and horizontal ranges are those of a levelled frame within
    :data:`LEVEL_TOLERANCE_DEG` of it (the geometry is reused across frames while a fitted normal stays that close:
    a relative error of at most ``1 - cos(0.5 deg)`` = 4e-5 in the horizontal range of a level point).

    Args:
        depth: ``(H, W)`` metres; rays: its :class:`PixelRays`; plane: the ground, in metres.
        band: ``(min_height, max_height)`` above the ground, metres.
        range_min, range_max: the scan's limits (horizontal metres), ``0 <= range_min < range_max``.
        beams: number of beams (0 = :func:`default_beams`: one per pixel width at the image centre).
    Returns:
        :class:`Scan`, with the angle limits of :func:`scan_limits`.
    """
    depth = _check(depth, rays)
    lo, hi = _check_band(band)
    range_min, range_max = float(range_min), float(range_max)
    if not (math.isfinite(range_min) and math.isfinite(range_max) and 0 <= range_min < range_max):
        raise ValueError(f"need finite 0 <= range_min < range_max (metres), got range_min={range_min}, "
                         f"range_max={range_max}")
    if int(beams) == 1 or int(beams) < 0:
        raise ValueError(f"beams must be at least 2 (or 0 for the default), got {beams}")
    levelled_rotation(plane.normal)  # raises for a camera looking along the normal
    geo = _scan_geometry(rays, plane.normal, int(beams))
    n = geo.beams

    valid = _valid(depth).ravel()
    z = depth.ravel()
    horizontal = z * geo.horizontal.ravel()
    with np.errstate(invalid="ignore"):
        height = np.float32(plane.height) - z * _dot(rays.xyz, plane.normal).ravel()  # this frame's plane
        in_band = valid & (height >= lo) & (height <= hi)
        ok = in_band & (horizontal >= range_min) & (horizontal <= range_max)
        close = in_band & (horizontal < range_min)
    first, last = geo.first.ravel(), geo.last.ravel()
    seen = np.zeros(n, bool)
    nearest = np.full(n, np.inf, np.float32)  # nearest obstacle within [range_min, range_max]
    too_near = np.zeros(n, bool)
    for k in range(geo.span + 1):
        beam = first + k if k else first
        covers = (beam <= last) if k else np.ones_like(valid)
        seen[beam[covers & valid]] = True
        sel = covers & ok
        np.minimum.at(nearest, beam[sel], horizontal[sel])
        too_near[beam[covers & close]] = True

    ranges = np.full(n, np.nan, np.float32)
    ranges[seen] = np.inf
    ranges[too_near & np.isinf(nearest)] = -np.inf
    found = np.isfinite(nearest)
    ranges[found] = nearest[found]
    return Scan(angle_min=geo.angle_min, angle_max=geo.angle_max, angle_increment=geo.increment,
                range_min=range_min, range_max=range_max, ranges=ranges)


__all__ = ["GroundPlane", "PLANE_SOURCES", "Scan", "default_beams", "height_above_ground", "laser_scan", "levelled_rotation",
           "mounting_plane", "scan_limits", "split_ground"]
