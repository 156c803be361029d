"""Synthetic street drives in the KITTI raw layout, ray cast in numpy (no GL).

A :class:`SyntheticScene` is a procedural street: a textured road with lane markings, pavements, building facades
with windows on both sides, parked cars and poles (axis-aligned boxes), a building closing the street far ahead,
and a sky at infinity. Everything is fixed in the *street frame* (the world frame of this module):

- x right across the street, y down, z along the street: the optical axes of REP 103 for a camera looking down
  the street. The road is the plane ``y = +1.65`` m; the cameras move at ``y = 0``, 1.65 m above it.
- Facades are the vertical planes ``x = +x_right`` and ``x = -x_left`` (each drawn in 6..9 m per scene).

Textures are functions of world coordinates, pre-filtered analytically by the Gaussian footprint of each pixel
on its plane (the exact Jacobian of the hit point with respect to the pixel): noise is a sum of sinusoids, each
attenuated by its own screen-space frequency; stripes, dashes and window grids are boxes convolved with the
footprint Gaussian, fading to their mean once the footprint spans their period. Nothing aliases however far or
grazing the surface. Pixels at geometric edges (a change of surface or building, found on the pixel centres)
are supersampled (2x2 by default). Consecutive frames are therefore photometrically consistent under warping.

Depth maps hold the exact camera-z depth at each pixel centre (metres, float32), 0 where the pixel sees the sky.

:func:`synthetic_frames` is the public builder of synthetic camera frames in memory, ``(rgb, K, depth)`` per
frame, for tests, benchmarks and int8 calibration (:func:`iter_synthetic_frames` yields them one at a time;
:func:`synthetic_drive` gives the street and the poses, with an optional camera rig, for callers that render
themselves). :func:`render_drive` writes a drive in the KITTI raw layout (see its docstring); poses are
``T_world_cam`` (camera-to-street-frame, 3x4 row-major per line of ``poses.txt``). Pixel coordinates follow the project
convention (origin at the centre of the top-left pixel); the calibration files use KITTI's 1-based
convention (principal point + 1), so the standard velodyne exporter (``pixel = round(u, v) - 1``) lands on
the pixel each point was sampled from.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dna_depth_core.camera import KITTI_K_NORMALISED, pixel_K

ROAD_Y = 1.65  # camera height above the road (the road is the plane y = +1.65 m in the street frame)
DEFAULT_DATE = "2000_01_01"

# Surface ids of the ray caster: boxes are BOX_BASE + 6 * box + face (face = 2 * axis + 1 for the + normal);
# facade hits carry their building segment (FACADE_RIGHT + segment, FACADE_LEFT + segment), so a change of
# building counts as an edge for the supersampling.
SKY, ROAD, END_WALL = 0, 1, 4
BOX_BASE = 16
FACADE_RIGHT = 1_000_000
FACADE_LEFT = 2_000_000

_FILTER_SIGMA = 0.5  # Gaussian pre-filter of the textures, in output pixels
_SUBPIXEL = {1: (0.0,), 2: (-0.25, 0.25), 3: (-1.0 / 3.0, 0.0, 1.0 / 3.0), 4: (-0.375, -0.125, 0.125, 0.375)}

# Fixed rig of the synthetic car (KITTI-like numbers; written to the calibration files).
_CAM2_OFFSET = 0.06  # X_cam2 = X_rect0 + (0.06, 0, 0): camera 2 sits 6 cm left of camera 0 (KITTI: 6.2 cm)
_CAM3_OFFSET = -0.48  # camera 3 (not rendered) 48 cm right of camera 0
_VELO_T = np.array([-0.004, -0.076, -0.272])  # velodyne -> camera-0 translation (metres)
_VELO_RPY = (0.004, -0.008, 0.006)  # small extra rotation of the velodyne mount (radians)
_RECT_RPY = (0.0043, -0.0074, 0.0098)  # R_rect_00 (radians), of the size of KITTI's


def synthetic_intrinsics(width: int, height: int) -> np.ndarray:
    """The (3, 3) pixel intrinsics of a synthetic render: KITTI's default camera at ``width`` x ``height``
    (``camera.pixel_K(camera.KITTI_K_NORMALISED, (width, height))``: principal point at the image centre)."""
    return pixel_K(KITTI_K_NORMALISED, (width, height))


def _rot_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_y @ rot_x


def velodyne_extrinsics() -> tuple[np.ndarray, np.ndarray]:
    """``(R, T)`` of the synthetic ``calib_velo_to_cam.txt``: ``X_cam0 = R @ X_velo + T``.

    Velodyne frame: x forward, y left, z up; camera frame: x right, y down, z forward.
    """
    base = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    return _rot_xyz(*_VELO_RPY) @ base, _VELO_T.copy()


def rectification() -> np.ndarray:
    """``R_rect_00`` of the synthetic rig (a small rotation, as in KITTI)."""
    return _rot_xyz(*_RECT_RPY)


# ----------------------------------------------------------------------------------------------------------
# Band-limited texture primitives. Inputs are 1-D arrays over the hits of one plane: in-plane coordinates
# (s, t) in metres and their derivatives per output pixel (s_u, s_v, t_u, t_v).
# ----------------------------------------------------------------------------------------------------------


def _make_sines(rng: np.random.Generator, n: int, fmin: float, fmax: float, slope: float = 0.6) -> np.ndarray:
    """``n`` random plane waves as rows (2 pi fs, 2 pi ft, phase, amplitude); the sum has unit std."""
    f = np.exp(rng.uniform(np.log(fmin), np.log(fmax), n))
    ang = rng.uniform(0.0, np.pi, n)
    amp = f ** (-slope) * rng.uniform(0.6, 1.0, n)
    amp /= np.sqrt(0.5 * np.sum(amp**2))
    w = 2.0 * np.pi * f
    return np.stack([w * np.cos(ang), w * np.sin(ang), rng.uniform(0, 2 * np.pi, n), amp], 1).astype(np.float32)


def _sines(s, t, su, sv, tu, tv, waves: np.ndarray) -> np.ndarray:
    """Sum of plane waves, each pre-filtered by the Gaussian footprint of its screen-space frequency.

    Wave k contributes ``amp_k * exp(-sigma^2/2 * |J^T w_k|^2) * cos(w_k . (s, t) + phase_k)`` where J is the
    Jacobian of (s, t) per output pixel; the linear parts are matrix products (fast in numpy).
    """
    ws, wt, ph, amp = waves[:, 0], waves[:, 1], waves[:, 2], waves[:, 3]
    c = np.float32(-0.5 * _FILTER_SIGMA**2)
    quad = np.stack([c * (su * su + sv * sv), (2 * c) * (su * tu + sv * tv), c * (tu * tu + tv * tv)], 1)
    att = quad @ np.stack([ws * ws, ws * wt, wt * wt])
    np.exp(att, out=att)
    phase = np.stack([s, t, np.ones_like(s)], 1) @ np.stack([ws, wt, ph])
    np.cos(phase, out=phase)
    att *= phase
    return att @ amp


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function, ``tanh(x (2/sqrt(pi) + 0.1009 x^2))`` (|error| < 4e-4: plenty for 8-bit textures)."""
    return np.tanh(x * (np.float32(1.1283791671) + np.float32(0.1009) * (x * x)))


def _band(s, su, sv, lo: float, hi: float, soft: float = 0.01) -> np.ndarray:
    """Indicator of lo < s < hi convolved with the pixel-footprint Gaussian (plus a small intrinsic softness)."""
    sig = np.sqrt(soft * soft + _FILTER_SIGMA**2 * (su * su + sv * sv)) * np.float32(np.sqrt(2.0))
    return 0.5 * (_erf((s - lo) / sig) - _erf((s - hi) / sig))


def _pulses(s, su, sv, period, duty, centre, soft: float = 0.01) -> np.ndarray:
    """Periodic pulse train in [0, 1] (pulses duty*period wide, centred on centre + k*period), pre-filtered.

    Each pulse is a box convolved with the pixel-footprint Gaussian (sigma); where sigma grows past a tenth of
    the period the result fades to the train's mean (the duty), which is where its Fourier series has no
    energy left below the pixel's Nyquist frequency. ``period``, ``duty`` and ``centre`` are scalars or arrays
    like ``s``.
    """
    period = np.asarray(period, np.float32)
    half = 0.5 * np.asarray(duty, np.float32) * period
    rel = s - centre
    d = rel - period * np.floor(rel / period + 0.5)  # offset from the nearest pulse centre
    sig = np.sqrt(soft * soft + _FILTER_SIGMA**2 * (su * su + sv * sv))
    k = np.float32(1.0 / np.sqrt(2.0)) / sig
    val = 0.5 * (_erf((d + half) * k) - _erf((d - half) * k))
    fade = np.clip((sig / period - 0.1) * np.float32(1.0 / 0.15), 0.0, 1.0)
    return val + fade * (np.asarray(duty, np.float32) - val)


# ----------------------------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Facade:
    """Building segments along one side of the street (arrays over segments, sorted by start z)."""

    starts: np.ndarray
    heights: np.ndarray
    colours: np.ndarray  # (S, 3)
    win_pz: np.ndarray
    win_dz: np.ndarray
    win_cz: np.ndarray
    win_py: np.ndarray
    win_dy: np.ndarray
    win_cy: np.ndarray
    win_colours: np.ndarray  # (S, 3)


_PALETTE = np.array(
    [
        [0.86, 0.80, 0.70],
        [0.78, 0.78, 0.80],
        [0.74, 0.52, 0.42],
        [0.62, 0.66, 0.72],
        [0.90, 0.82, 0.60],
        [0.70, 0.74, 0.62],
        [0.56, 0.50, 0.48],
    ],
    np.float32,
)
_CAR_COLOURS = np.array(
    [
        [0.75, 0.10, 0.08],
        [0.12, 0.22, 0.55],
        [0.85, 0.85, 0.86],
        [0.10, 0.10, 0.11],
        [0.45, 0.47, 0.50],
        [0.15, 0.40, 0.20],
        [0.85, 0.65, 0.15],
    ],
    np.float32,
)


class SyntheticScene:
    """A procedural street scene (street frame: x right, y down, z along the street; road plane y = +1.65).

    ``seed`` picks everything (facade distances, buildings, cars, textures, sun); ``length`` is how far along z
    (metres) the street must serve cameras: buildings and cars cover ``[-60, length + 150]`` and a building
    closes the street at ``z = length + 150``.
    """

    def __init__(self, seed: int = 0, length: float = 300.0):
        self.seed = int(seed)
        self.length = float(length)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7001]))
        self.z_min = -60.0
        self.z_end = self.length + 150.0
        self.x_right = float(rng.uniform(6.0, 9.0))
        self.x_left = float(rng.uniform(6.0, 9.0))
        self.road_right = self.x_right - float(rng.uniform(1.5, 2.0))
        self.road_left = self.x_left - float(rng.uniform(1.5, 2.0))
        sun = np.array([rng.uniform(-0.6, 0.6), -1.0, rng.uniform(0.2, 0.7)])
        self.sun = sun / np.linalg.norm(sun)
        self.dash_phase = float(rng.uniform(0.0, 9.0))
        self.facades = {FACADE_RIGHT: self._make_facade(rng), FACADE_LEFT: self._make_facade(rng)}
        self.end_wall = self._make_facade(rng, single=True)
        self.end_height = float(self.end_wall.heights[0]) + 10.0
        self.road_noise = _make_sines(rng, 14, 0.4, 7.0)
        self.road_patches = _make_sines(rng, 6, 0.03, 0.3, slope=0.3)
        self.wall_noise = _make_sines(rng, 8, 0.15, 4.0)
        self.box_noise = _make_sines(rng, 5, 0.5, 4.0)
        self._make_boxes(rng)
        self.sky_horizon = np.array([0.80, 0.85, 0.92], np.float32) * np.float32(rng.uniform(0.92, 1.05))
        self.sky_zenith = np.array([0.30, 0.50, 0.85], np.float32) * np.float32(rng.uniform(0.85, 1.1))
        self._ray_cache: dict = {}

    # -- construction ------------------------------------------------------------------------------------
    def _make_facade(self, rng: np.random.Generator, single: bool = False) -> _Facade:
        if single:
            starts = np.array([-1e4])
        else:
            lengths = rng.uniform(8.0, 30.0, int((self.z_end - self.z_min) / 8.0) + 2)
            starts = self.z_min - 10.0 + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
            starts[0] = -1e4
        n = len(starts)
        tint = _PALETTE[rng.integers(0, len(_PALETTE), n)] * rng.uniform(0.75, 1.1, (n, 1)).astype(np.float32)
        win = np.array([0.10, 0.13, 0.18], np.float32) * rng.uniform(0.7, 1.6, (n, 1)).astype(np.float32)
        pz = rng.uniform(2.2, 4.0, n)
        py = rng.uniform(2.8, 3.6, n)
        return _Facade(
            starts=starts,
            heights=rng.uniform(6.0, 24.0, n),
            colours=np.clip(tint, 0, 1).astype(np.float32),
            win_pz=pz.astype(np.float32),
            win_dz=rng.uniform(0.35, 0.6, n).astype(np.float32),
            win_cz=(rng.uniform(0, 1, n) * pz).astype(np.float32),
            win_py=py.astype(np.float32),
            win_dy=rng.uniform(0.35, 0.55, n).astype(np.float32),
            win_cy=(ROAD_Y - 1.0 - rng.uniform(0.5, 1.0, n) * py).astype(np.float32),
            win_colours=win,
        )

    def _make_boxes(self, rng: np.random.Generator) -> None:
        lo, hi, col, car = [], [], [], []
        for side, road in ((1.0, self.road_right), (-1.0, self.road_left)):
            z = self.z_min
            while True:  # parked cars along the kerb
                z += rng.exponential(8.0) + 5.0
                if z > self.z_end - 10.0:
                    break
                if rng.random() < 0.35:
                    continue
                length, width, height = rng.uniform(3.8, 4.8), rng.uniform(1.6, 1.9), rng.uniform(1.3, 1.6)
                xc = side * (road - width / 2.0 - rng.uniform(0.2, 0.6))
                lo.append([xc - width / 2, ROAD_Y - height, z])
                hi.append([xc + width / 2, ROAD_Y, z + length])
                col.append(_CAR_COLOURS[rng.integers(0, len(_CAR_COLOURS))] * rng.uniform(0.85, 1.1))
                car.append(True)
                z += length
            z = self.z_min + rng.uniform(0, 20)
            while z < self.z_end - 5.0:  # poles on the pavement
                xc = side * (road + 0.6)
                lo.append([xc - 0.09, ROAD_Y - rng.uniform(4.0, 7.0), z])
                hi.append([xc + 0.09, ROAD_Y, z + 0.18])
                col.append(np.array([0.35, 0.36, 0.37]) * rng.uniform(0.8, 1.2))
                car.append(False)
                z += rng.uniform(18.0, 40.0)
        self.box_lo = np.array(lo, np.float64).reshape(-1, 3)
        self.box_hi = np.array(hi, np.float64).reshape(-1, 3)
        self.box_colour = np.clip(np.array(col, np.float32).reshape(-1, 3), 0, 1)
        self.box_is_car = np.array(car, bool)
        self.box_centre = 0.5 * (self.box_lo + self.box_hi)
        sel = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # (8, 3) lo/hi choice
        self.box_corners = np.where(sel[None] == 0, self.box_lo[:, None, :], self.box_hi[:, None, :])  # (B, 8, 3)

    # -- rays -----------------------------------------------------------------------------------------------
    def _pixel_rays(self, K: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised camera coordinates of the pixel centres: x = (u - cx)/fx (W,), y = (v - cy)/fy (H,)."""
        key = (tuple(np.round(np.asarray(K, np.float64).ravel(), 9)), width, height)
        if key not in self._ray_cache:
            xn = ((np.arange(width) - K[0, 2]) / K[0, 0]).astype(np.float32)
            yn = ((np.arange(height) - K[1, 2]) / K[1, 1]).astype(np.float32)
            if len(self._ray_cache) > 8:
                self._ray_cache.clear()
            self._ray_cache[key] = (xn, yn)
        return self._ray_cache[key]

    @staticmethod
    def _directions(R: np.ndarray, xn: np.ndarray, yn: np.ndarray):
        """World directions D = R @ (x, y, 1) (not normalised: ``t`` along them is the camera-z depth)."""
        R32 = R.astype(np.float32)
        return tuple(xn * R32[i, 0] + yn * R32[i, 1] + R32[i, 2] for i in range(3))

    def _intersect(self, o, boxes, Dx, Dy, Dz, pix=None):
        """Nearest hit of every ray: ``(t, sid)`` shaped like ``Dx``.

        Either the rays are the (H, W) grid of pixel centres (``pix`` None) or 1-D lists with their pixel
        coordinates ``pix = (u, v)`` (int arrays, sorted by row v) for the culling of the boxes; ``boxes`` comes from
        :meth:`_visible_boxes`.
        """
        shape = Dx.shape
        t = np.full(shape, np.inf, np.float32)
        sid = np.zeros(shape, np.int32)
        ox, oy, oz = (float(c) for c in o)

        def take(tc, ok, code):
            upd = ok & (tc < t)
            t[upd] = tc[upd]
            sid[upd] = code[upd] if isinstance(code, np.ndarray) else code

        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            take((ROAD_Y - oy) / Dy, Dy > 1e-7, ROAD)
            tw = (self.z_end - oz) / Dz
            xh = ox + tw * Dx
            yh = oy + tw * Dy
            take(tw, (Dz > 1e-7) & (xh > -self.x_left) & (xh < self.x_right) & (yh >= ROAD_Y - self.end_height),
                 END_WALL)
            for code, xw in ((FACADE_RIGHT, self.x_right), (FACADE_LEFT, -self.x_left)):
                tf = (xw - ox) / Dx
                cand = np.flatnonzero(((tf > 0) & (tf < t)).ravel())
                if cand.size == 0:
                    continue
                tc = tf.ravel()[cand]
                zh = oz + tc * Dz.ravel()[cand]
                yh = oy + tc * Dy.ravel()[cand]
                fac = self.facades[code]
                seg = np.clip(np.searchsorted(fac.starts, zh) - 1, 0, len(fac.starts) - 1)
                ok = (yh >= ROAD_Y - fac.heights[seg]) & (zh < self.z_end) & (zh > self.z_min - 20.0)
                hit = cand[ok]
                t.ravel()[hit] = tc[ok]
                sid.ravel()[hit] = code + seg[ok]
            self._intersect_boxes(o, boxes, Dx, Dy, Dz, t, sid, pix)
        return t, sid

    def _visible_boxes(self, o: np.ndarray, R: np.ndarray, K: np.ndarray, width: int, height: int):
        """``[(box, (u0, u1, v0, v1))]``: boxes in view and pixel rectangles (inclusive-exclusive, 1 px margin)
        that contain their projection (clipped at a near plane 5 cm in front of the camera)."""
        rel = self.box_centre - o
        cand = np.flatnonzero((rel @ R[:, 2] > -6.0) & (np.einsum("ij,ij->i", rel, rel) < 400.0**2))
        if cand.size == 0:
            return []
        pc = (self.box_corners[cand] - o) @ R  # (n, 8, 3) camera coordinates
        zc = pc[..., 2]
        near = 0.05
        zmin, zmax = zc.min(1), zc.max(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * pc[..., 0] / zc + K[0, 2]
            v = K[1, 1] * pc[..., 1] / zc + K[1, 2]
        rects = np.stack([u.min(1), u.max(1), v.min(1), v.max(1)], 1)
        for k in np.flatnonzero((zmin < near) & (zmax >= near)):  # straddling the near plane: clip
            p, z = pc[k], zc[k]
            pts = [p[z >= near]]
            for i in range(8):
                for bit in (1, 2, 4):
                    j = i | bit
                    if j != i and (z[i] - near) * (z[j] - near) < 0:
                        a = (near - z[i]) / (z[j] - z[i])
                        pts.append((p[i] + a * (p[j] - p[i]))[None])
            p = np.concatenate(pts)
            pu = K[0, 0] * p[:, 0] / p[:, 2] + K[0, 2]
            pv = K[1, 1] * p[:, 1] / p[:, 2] + K[1, 2]
            rects[k] = (pu.min(), pu.max(), pv.min(), pv.max())
        rects = np.clip(rects, -1e6, 1e6)
        u0 = np.maximum(np.floor(rects[:, 0]).astype(np.int64) - 1, 0)
        u1 = np.minimum(np.ceil(rects[:, 1]).astype(np.int64) + 2, width)
        v0 = np.maximum(np.floor(rects[:, 2]).astype(np.int64) - 1, 0)
        v1 = np.minimum(np.ceil(rects[:, 3]).astype(np.int64) + 2, height)
        ok = (zmax >= near) & (u0 < u1) & (v0 < v1)
        return [(int(cand[k]), (int(u0[k]), int(u1[k]), int(v0[k]), int(v1[k]))) for k in np.flatnonzero(ok)]

    def _intersect_boxes(self, o, boxes, Dx, Dy, Dz, t, sid, pix) -> None:
        for b, (u0, u1, v0, v1) in boxes:
            if pix is None:
                region = (slice(v0, v1), slice(u0, u1))
            else:
                r0, r1 = np.searchsorted(pix[1], (v0, v1))  # rays are sorted by pixel row
                region = r0 + np.flatnonzero((pix[0][r0:r1] >= u0) & (pix[0][r0:r1] < u1))
                if region.size == 0:
                    continue
            bd = (Dx[region], Dy[region], Dz[region])
            tmins, tmaxs = [], []
            for k in range(3):
                t1 = np.float32(self.box_lo[b, k] - o[k]) / bd[k]
                t2 = np.float32(self.box_hi[b, k] - o[k]) / bd[k]
                tmins.append(np.fmin(t1, t2))
                tmaxs.append(np.fmax(t1, t2))
            tnear = np.maximum(np.maximum(tmins[0], tmins[1]), tmins[2])
            tfar = np.minimum(np.minimum(tmaxs[0], tmaxs[1]), tmaxs[2])
            hit = (tnear <= tfar) & (tnear > 1e-3) & (tnear < t[region])
            if not hit.any():
                continue
            axis = np.where((tmins[0] >= tmins[1]) & (tmins[0] >= tmins[2]), 0, np.where(tmins[1] >= tmins[2], 1, 2))
            face = 2 * axis + (np.choose(axis, bd) < 0)  # entering through the + face when moving towards -axis
            if pix is None:
                t[region][hit] = tnear[hit]
                sid[region][hit] = BOX_BASE + 6 * b + face[hit]
            else:
                t[region[hit]] = tnear[hit]
                sid[region[hit]] = BOX_BASE + 6 * b + face[hit]

    # -- shading --------------------------------------------------------------------------------------------
    def _plane_hits(self, idx, axis, o, t, D, a, b):
        """Hit coordinates on an axis-``axis`` plane and their derivatives per output pixel (u and v).

        Returns dict c -> (p_c, dp_c/du, dp_c/dv) for the two in-plane axes c.
        """
        tt = t[idx]
        d = [Dc[idx] for Dc in D]
        inv = 1.0 / d[axis]
        out = {}
        for c in range(3):
            if c == axis:
                continue
            p = np.float32(o[c]) + tt * d[c]
            pu = tt * (np.float32(a[c]) - d[c] * (np.float32(a[axis]) * inv))
            pv = tt * (np.float32(b[c]) - d[c] * (np.float32(b[axis]) * inv))
            out[c] = (p, pu, pv)
        return out

    def _shade(self, normal) -> np.float32:
        return np.float32(0.58 + 0.47 * max(0.0, float(np.dot(normal, self.sun))))

    def _shade_road(self, h):
        x, xu, xv = h[0]
        z, zu, zv = h[2]
        n1 = _sines(x, z, xu, xv, zu, zv, self.road_noise)
        n2 = _sines(x, z, xu, xv, zu, zv, self.road_patches)
        lum = 0.30 + 0.05 * n1 + 0.035 * n2
        col = lum[:, None] * np.array([1.0, 1.0, 1.04], np.float32)
        marks = np.zeros_like(x)
        dashes = _pulses(z, zu, zv, 9.0, 0.33, self.dash_phase)
        wide = [c for c in (5.25, -5.25) if abs(c) + 1.2 < (self.road_right if c > 0 else self.road_left)]
        lanes = [1.75, -1.75] + wide
        for xl in lanes:
            marks += _band(x, xu, xv, xl - 0.06, xl + 0.06) * dashes
        marks += _band(x, xu, xv, self.road_right - 0.38, self.road_right - 0.25)
        marks += _band(x, xu, xv, -self.road_left + 0.25, -self.road_left + 0.38)
        marks = np.clip(marks, 0, 1)[:, None] * np.float32(0.85)
        col = col * (1 - marks) + marks * np.float32(0.88)
        walk = (_band(x, xu, xv, self.road_right, 1e4) + _band(x, xu, xv, -1e4, -self.road_left))[:, None]
        grid = np.clip(_pulses(x, xu, xv, 0.6, 0.08, 0.0) + _pulses(z, zu, zv, 0.6, 0.08, 0.0), 0, 1)
        wl = (0.56 + 0.03 * n1) * (1.0 - 0.35 * grid)
        wcol = wl[:, None] * np.array([1.0, 0.97, 0.92], np.float32)
        col = col * (1 - walk) + wcol * walk
        return col * self._shade(np.array([0.0, -1.0, 0.0]))

    def _shade_facade(self, fac: _Facade, s, y, normal):
        s_, su, sv = s
        y_, yu, yv = y
        seg = np.clip(np.searchsorted(fac.starts, s_) - 1, 0, len(fac.starts) - 1)
        wz = _pulses(s_, su, sv, fac.win_pz[seg], fac.win_dz[seg], fac.win_cz[seg])
        wy = _pulses(y_, yu, yv, fac.win_py[seg], fac.win_dy[seg], fac.win_cy[seg])
        above = 1.0 - _band(y_, yu, yv, ROAD_Y - 2.2, 1e4)  # no windows on the ground floor
        win = (wz * wy * above)[:, None]
        noise = _sines(s_, y_, su, sv, yu, yv, self.wall_noise)
        base = fac.colours[seg] * (1.0 + 0.07 * noise)[:, None]
        plinth = _band(y_, yu, yv, ROAD_Y - 0.5, 1e4)[:, None]
        base = base * (1.0 - 0.45 * plinth)
        col = base * (1 - win) + fac.win_colours[seg] * win
        return col * self._shade(normal)

    def _shade_boxes(self, boxes, face, h, axis):
        c0, c1 = sorted(h)
        s, su, sv = h[c0]
        r, ru, rv = h[c1]
        col = self.box_colour[boxes] * (1.0 + 0.05 * _sines(s, r, su, sv, ru, rv, self.box_noise))[:, None]
        if axis != 1:  # windows band on the sides, front and back of cars
            y, yu, yv = h[1]
            top = self.box_lo[boxes, 1].astype(np.float32)
            glass = _band(y, yu, yv, top + 0.08, top + 0.55) * self.box_is_car[boxes]
            col = col * (1 - glass[:, None]) + glass[:, None] * np.array([0.08, 0.1, 0.13], np.float32)
        shade = np.empty(len(boxes), np.float32)
        for sign in (0, 1):
            nrm = np.zeros(3)
            nrm[axis] = 1.0 if sign else -1.0
            shade[(face % 2) == sign] = self._shade(nrm)
        return col * shade[:, None]

    def _shade_rays(self, o, R, K, t, sid, Dx, Dy, Dz) -> np.ndarray:
        """Colour (M, 3) float32 of rays with hits (t, sid) and directions D (1-D arrays over the rays)."""
        D = (Dx, Dy, Dz)
        a = R[:, 0] / K[0, 0]  # d(direction)/du per output pixel
        b = R[:, 1] / K[1, 1]
        col = np.empty((t.size, 3), np.float32)
        idx = np.flatnonzero(sid == SKY)  # sky: a gradient on the direction's elevation
        if idx.size:
            dx, dy, dz = (Dc[idx] for Dc in D)
            elev = np.clip(-dy / np.sqrt(dx * dx + dy * dy + dz * dz), 0.0, 1.0) ** 0.6
            col[idx] = self.sky_horizon * (1 - elev[:, None]) + self.sky_zenith * elev[:, None]
        idx = np.flatnonzero(sid == ROAD)
        if idx.size:
            col[idx] = self._shade_road(self._plane_hits(idx, 1, o, t, D, a, b))
        for code, nx in ((FACADE_LEFT, 1.0), (FACADE_RIGHT, -1.0)):
            idx = np.flatnonzero((sid >= code) & (sid < code + 1_000_000))
            if idx.size:
                h = self._plane_hits(idx, 0, o, t, D, a, b)
                col[idx] = self._shade_facade(self.facades[code], h[2], h[1], np.array([nx, 0.0, 0.0]))
        idx = np.flatnonzero(sid == END_WALL)
        if idx.size:
            h = self._plane_hits(idx, 2, o, t, D, a, b)
            col[idx] = self._shade_facade(self.end_wall, h[0], h[1], np.array([0.0, 0.0, -1.0]))
        boxes_all = (sid >= BOX_BASE) & (sid < FACADE_RIGHT)
        if boxes_all.any():
            rel = sid - BOX_BASE
            for axis in range(3):
                idx = np.flatnonzero(boxes_all & ((rel % 6) // 2 == axis))
                if idx.size:
                    h = self._plane_hits(idx, axis, o, t, D, a, b)
                    col[idx] = self._shade_boxes(rel[idx] // 6, rel[idx] % 6, h, axis)
        return col

    def render(self, pose: np.ndarray, K: np.ndarray, width: int, height: int, ss: int = 2):
        """Render one frame.

        Args:
            pose: (4, 4) ``T_world_cam`` (camera-to-street frame), optical camera axes.
            K: (3, 3) pixel intrinsics (project convention: pixel centres at integer coordinates).
            width, height: image size in pixels.
            ss: supersampling per axis (1..4); 2 = 2x2 samples per pixel. Textures are pre-filtered
                analytically, so only pixels near a geometric edge (a change of surface, found on the pixel
                centres and dilated by one pixel) and pixels of boxes smaller than 4 pixels are supersampled;
                the others are shaded once at their centre.

        Returns:
            ``(rgb, depth)``: (H, W, 3) uint8 RGB and (H, W) float32 camera-z depth in metres at the pixel
            centres (0 where the pixel sees the sky).
        """
        pose = np.asarray(pose, np.float64)
        K = np.asarray(K, np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"pose must be (4, 4), got {pose.shape}")
        if K.shape != (3, 3):
            raise ValueError(f"K must be (3, 3), got {K.shape}")
        if ss not in _SUBPIXEL:
            raise ValueError(f"ss must be one of {sorted(_SUBPIXEL)}, got {ss}")
        width, height = int(width), int(height)
        R, o = pose[:3, :3], pose[:3, 3]
        xn, yn = self._pixel_rays(K, width, height)
        D1 = self._directions(R, xn[None, :], yn[:, None])
        boxes = self._visible_boxes(o, R, K, width, height)
        t1, sid1 = self._intersect(o, boxes, *D1)
        depth = np.where(sid1 == SKY, 0.0, t1).astype(np.float32)
        flat1 = [t1.ravel(), sid1.ravel()] + [d.ravel() for d in D1]
        if ss > 1:
            edge = np.zeros((height, width), np.uint8)
            dh = sid1[:, 1:] != sid1[:, :-1]
            dv = sid1[1:, :] != sid1[:-1, :]
            edge[:, 1:] |= dh
            edge[:, :-1] |= dh
            edge[1:, :] |= dv
            edge[:-1, :] |= dv
            edge = cv2.dilate(edge, np.ones((3, 3), np.uint8))
            for _, (u0, u1, v0, v1) in boxes:  # boxes too small to be sure the centres caught them
                if min(u1 - u0, v1 - v0) <= 6:  # 4 px + margins
                    edge[v0:v1, u0:u1] = 1
            cand = np.flatnonzero(edge.ravel())
            keep = np.flatnonzero(edge.ravel() == 0)
            offs = np.asarray(_SUBPIXEL[ss], np.float32)
            pu = np.repeat(cand % width, ss * ss)
            pv = np.repeat(cand // width, ss * ss)
            su = pu + np.tile(np.repeat(offs, ss), cand.size)  # sample (i, j) of pixel p at index p*ss*ss + i*ss + j
            sv = pv + np.tile(np.tile(offs, ss), cand.size)
            Ds = self._directions(R, ((su - K[0, 2]) / K[0, 0]).astype(np.float32),
                                  ((sv - K[1, 2]) / K[1, 1]).astype(np.float32))
            ts, sids = self._intersect(o, boxes, *Ds, pix=(pu, pv))
            rays = [np.concatenate([f[keep], g]) for f, g in zip(flat1, [ts, sids, *Ds])]
        else:
            keep = np.arange(height * width)
            rays = flat1
        col = np.empty((rays[0].size, 3), np.float32)
        chunk = 32768
        for c0 in range(0, col.shape[0], chunk):
            sl = slice(c0, c0 + chunk)
            col[sl] = self._shade_rays(o, R, K, *(x[sl] for x in rays))
        img = np.empty((height * width, 3), np.float32)
        img[keep] = col[: keep.size]
        if ss > 1 and cand.size:
            img[cand] = col[keep.size:].reshape(cand.size, ss * ss, 3).mean(axis=1)
        rgb = np.clip(img.reshape(height, width, 3) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return rgb, depth


# ----------------------------------------------------------------------------------------------------------
# Trajectories and drives
# ----------------------------------------------------------------------------------------------------------


def make_trajectory(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Camera poses of a drive: ``(poses (N, 4, 4) T_world_cam, steps (N-1,) metres per frame)``.

    Forward speed is smooth random noise in 0.4..1.4 m/frame (mean 0.8..1.0); the heading oscillates slowly
    with the distance driven (a few tenths of a degree per frame at most), and the camera stays within about
    0.7 m of the street's centre line, at height 0 (1.65 m above the road).
    """
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7002]))
    m = max(frames - 1, 1)
    sigma = 3.0
    half = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
    smooth = np.convolve(rng.standard_normal(m + 2 * half), kernel / kernel.sum(), mode="valid")[:m]
    smooth = (smooth - smooth.mean()) / smooth.std() if m > 2 else np.zeros(m)
    steps = np.clip(rng.uniform(0.8, 1.0) + 0.3 * smooth, 0.4, 1.4)[: frames - 1]
    amps = rng.uniform(0.008, 0.02, 2)
    lens = rng.uniform(40.0, 100.0, 2)
    phases = rng.uniform(0.0, 2.0 * np.pi, 2)

    def heading(s):
        return np.sum(amps * np.sin(2.0 * np.pi * np.asarray(s)[..., None] / lens + phases), axis=-1)

    # lateral offset of a zero-mean heading oscillation, integrated with midpoints
    x = -np.sum(amps * lens / (2 * np.pi) * np.cos(phases))
    z = 0.0
    s = 0.0
    poses = np.zeros((frames, 4, 4))
    for i in range(frames):
        psi = float(heading(s))
        c, sn = np.cos(psi), np.sin(psi)
        poses[i] = [[c, 0, sn, x], [0, 1, 0, 0], [-sn, 0, c, z], [0, 0, 0, 1]]
        if i < frames - 1:
            ds = steps[i]
            psi_mid = float(heading(s + ds / 2))
            x += ds * np.sin(psi_mid)
            z += ds * np.cos(psi_mid)
            s += ds
    return poses, np.asarray(steps, np.float64)


# ----------------------------------------------------------------------------------------------------------
# Frames in memory: the one builder of synthetic camera frames (tests, benchmarks, calibration, bags, drives)
# ----------------------------------------------------------------------------------------------------------


@dataclass
class SyntheticDrive:
    """A street and the camera poses of one drive through it (:func:`synthetic_drive`)."""

    scene: SyntheticScene
    poses: np.ndarray  # (N, 4, 4) T_world_cam
    steps: np.ndarray  # (N-1,) metres driven between consecutive frames

    def __len__(self) -> int:
        return len(self.poses)

    def render(self, i: int, width: int, height: int, K: np.ndarray | None = None, ss: int = 2):
        """Frame ``i`` as ``(rgb, K, depth)``: (H, W, 3) uint8 RGB, the (3, 3) pixel intrinsics (default
        :func:`synthetic_intrinsics`) and the (H, W) float32 camera-z depth in metres (0 = sky)."""
        K = synthetic_intrinsics(width, height) if K is None else np.asarray(K, np.float64)
        rgb, depth = self.scene.render(self.poses[i], K, width, height, ss=ss)
        return rgb, K, depth


def synthetic_drive(frames: int, seed: int = 0, camera_height: float = ROAD_Y, pitch_deg: float = 0.0,
                    roll_deg: float = 0.0) -> SyntheticDrive:
    """A drive of ``frames`` poses (:func:`make_trajectory`) through the street of ``seed``, the street long
    enough for it (20 m beyond the last pose).

    The camera rig: ``camera_height`` metres above the road (default 1.65, KITTI's), pitched down by
    ``pitch_deg`` (a rotation about the camera's x axis; positive looks down) after a roll of ``roll_deg`` about
    its optical axis.
    """
    poses, steps = make_trajectory(frames, seed)
    scene = SyntheticScene(seed, length=float(poses[:, 2, 3].max()) + 20.0)
    if camera_height != ROAD_Y or pitch_deg or roll_deg:
        rig = _rot_xyz(-np.deg2rad(pitch_deg), 0.0, 0.0) @ _rot_xyz(0.0, 0.0, np.deg2rad(roll_deg))
        poses = poses.copy()
        poses[:, :3, :3] = poses[:, :3, :3] @ rig
        poses[:, 1, 3] = ROAD_Y - camera_height  # the road is the plane y = ROAD_Y of the street frame
    return SyntheticDrive(scene=scene, poses=poses, steps=steps)


def iter_synthetic_frames(count: int, width: int, height: int, seed: int = 0, every: int = 1, ss: int = 2):
    """``count`` synthetic street frames ``(rgb, K, depth)`` (see :meth:`SyntheticDrive.render`), one every
    ``every`` frames of a drive of ``count * every`` frames with ``seed``, rendered one at a time."""
    if count < 1 or every < 1:
        raise ValueError(f"count and every must be >= 1, got {count} and {every}")
    drive = synthetic_drive(count * every, seed)
    for i in range(0, count * every, every):
        yield drive.render(i, width, height, ss=ss)


def synthetic_frames(count: int, width: int, height: int, seed: int = 0, every: int = 1,
                     ss: int = 2) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The list of :func:`iter_synthetic_frames`: ``[(rgb (H, W, 3) uint8, K (3, 3), depth (H, W) float32)]``.

    ``every`` > 1 spaces the frames out along the drive (more varied views, e.g. for int8 calibration); ``ss``
    is the supersampling at geometric edges (1 is quicker)."""
    return list(iter_synthetic_frames(count, width, height, seed=seed, every=every, ss=ss))


@dataclass
class DriveInfo:
    """What :func:`render_drive` wrote. Paths are absolute; ``poses`` are ``T_world_cam`` (N, 4, 4)."""

    root: Path
    date: str
    folder: str  # "DATE/DATE_drive_XXXX_sync", relative to root (the split files' first column)
    frames: int
    width: int
    height: int
    K: np.ndarray  # (3, 3) pixels, project convention
    poses: np.ndarray
    split_file: Path
    split_lines: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def drive_dir(self) -> Path:
        return self.root / self.folder


def format_calib_values(values) -> str:
    """Numbers as the value list of a KITTI calibration-file line (``KEY: v1 v2 ...``): space-separated, ``%.12e``,
    a matrix row by row."""
    return " ".join(f"{float(v):.12e}" for v in np.asarray(values, np.float64).ravel())


def calib_cam_to_cam_text(width: int, height: int) -> str:
    """Contents of the synthetic ``calib_cam_to_cam.txt`` (KITTI format, 1-based principal points)."""
    K = synthetic_intrinsics(width, height)
    K1 = K.copy()
    K1[0, 2] += 1.0  # KITTI calibration is 1-based: the exporter's "round(u) - 1" brings it back
    K1[1, 2] += 1.0
    lines = ["calib_time: 01-Jan-2000 00:00:00 (synthetic, dna_depth_core.data.synthetic)", "corner_dist: 0.0"]
    for cam, tx in ((0, 0.0), (1, _CAM3_OFFSET - _CAM2_OFFSET), (2, _CAM2_OFFSET), (3, _CAM3_OFFSET)):
        P = np.hstack([K1, K1 @ np.array([[tx], [0.0], [0.0]])])
        rect = rectification() if cam == 0 else np.eye(3)
        lines += [
            f"S_{cam:02d}: {format_calib_values([width, height])}",
            f"K_{cam:02d}: {format_calib_values(K1)}",
            f"D_{cam:02d}: {format_calib_values(np.zeros(5))}",
            f"R_{cam:02d}: {format_calib_values(np.eye(3))}",
            f"T_{cam:02d}: {format_calib_values([-tx, 0.0, 0.0])}",
            f"S_rect_{cam:02d}: {format_calib_values([width, height])}",
            f"R_rect_{cam:02d}: {format_calib_values(rect)}",
            f"P_rect_{cam:02d}: {format_calib_values(P)}",
        ]
    return "\n".join(lines) + "\n"


def calib_velo_to_cam_text() -> str:
    """Contents of the synthetic ``calib_velo_to_cam.txt`` (KITTI format: R, T with X_cam0 = R X_velo + T)."""
    R, T = velodyne_extrinsics()
    return (
        "calib_time: 01-Jan-2000 00:00:00 (synthetic)\n"
        f"R: {format_calib_values(R)}\nT: {format_calib_values(T)}\ndelta_f: 0.0 0.0\ndelta_c: 0.0 0.0\n"
    )


def camera2_to_velodyne(points_cam2: np.ndarray) -> np.ndarray:
    """Map (N, 3) points from the rendered camera (camera 2, rectified) to the velodyne frame.

    Inverse of the exporter chain ``P_rect_02 @ R_rect_00 @ [R|T]``: ``X_rect0 = X_cam2 - (0.06, 0, 0)``,
    ``X_cam0 = R_rect_00^T X_rect0``, ``X_velo = R^T (X_cam0 - T)``.
    """
    R, T = velodyne_extrinsics()
    rect0 = points_cam2 - np.array([_CAM2_OFFSET, 0.0, 0.0])
    cam0 = rect0 @ rectification()  # rows: (R_rect^T x)^T = x^T R_rect
    return (cam0 - T) @ R


def _scan_rows(K: np.ndarray, height: int) -> np.ndarray:
    """Image rows hit by a 64-beam, HDL-64-like scanner (+2 deg .. -24.9 deg elevation)."""
    elev = np.deg2rad(np.linspace(-2.0, 24.9, 64))  # positive = downwards (y down)
    rows = np.round(K[1, 2] + K[1, 1] * np.tan(elev)).astype(int)
    return np.unique(rows[(rows >= 0) & (rows < height)])


def depth_to_velodyne(depth: np.ndarray, rgb: np.ndarray, K: np.ndarray, rng: np.random.Generator,
                      keep: float = 0.8, max_range: float = 120.0) -> np.ndarray:
    """A KITTI-like ``(N, 4)`` float32 scan (x, y, z, reflectance) in the velodyne frame from an exact depth map.

    Points sit exactly on pixel centres of scan rows (``keep`` of the valid pixels of each row, depth within
    ``max_range``), so projecting them back with the calibration gives the same depth at the same pixels. A ring
    of extra returns outside the camera's view (behind it or off-image) is added, as a real scan has.
    """
    h, w = depth.shape
    rows = _scan_rows(K, h)
    sub = depth[rows]
    vv, uu = np.nonzero((sub > 0) & (sub < max_range) & (rng.random(sub.shape) < keep))
    v = rows[vv]
    z = depth[v, uu].astype(np.float64)
    pts = np.stack([(uu - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], 1)
    refl = rgb[v, uu].mean(axis=1) / 255.0
    velo = camera2_to_velodyne(pts)
    # off-camera returns: a ring around the car, kept only where it cannot land in the image
    az = rng.uniform(-np.pi, np.pi, 3000)
    rng_r = rng.uniform(4.0, 40.0, 3000)
    ring = np.stack([rng_r * np.cos(az), rng_r * np.sin(az), rng.uniform(-1.7, 1.0, 3000)], 1)
    R, T = velodyne_extrinsics()
    cam = ring @ R.T + T
    cam = cam @ rectification().T + np.array([_CAM2_OFFSET, 0.0, 0.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
        vv2 = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    inside = (cam[:, 2] > 0) & (u > -2) & (u < w + 1) & (vv2 > -2) & (vv2 < h + 1)
    ring = ring[~inside]
    out = np.concatenate([
        np.hstack([velo, refl[:, None]]),
        np.hstack([ring, rng.uniform(0, 1, (len(ring), 1))]),
    ])
    return out.astype(np.float32)


def _write_if_same(path: Path, text: str) -> None:
    if path.exists():
        if path.read_text() != text:
            raise ValueError(
                f"{path} exists with a different calibration (another image size?); render into another --date or --out"
            )
        return
    path.write_text(text)


_WORKER_STATE: dict = {}


def _worker_init(state: dict) -> None:
    _WORKER_STATE.clear()
    _WORKER_STATE.update(state)


def _render_and_save(i: int) -> int:
    """Render frame ``i`` of the drive described by ``_WORKER_STATE`` and write its image, depth and scan."""
    st = _WORKER_STATE
    K = st["K"]
    rgb, _, depth = st["drive"].render(i, st["width"], st["height"], K=K, ss=st["ss"])
    name = f"{i:010d}"
    img_file = st["img_dir"] / f"{name}.png"
    if not cv2.imwrite(str(img_file), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise RuntimeError(f"could not write {img_file}")
    np.save(st["depth_dir"] / f"{name}.npy", depth)
    scan = depth_to_velodyne(depth, rgb, K, np.random.default_rng(int(st["velo_seeds"][i])))
    scan.tofile(st["velo_dir"] / f"{name}.bin")
    return i


def render_drive(
    out_dir,
    frames: int,
    seed: int = 0,
    width: int = 640,
    height: int = 192,
    drive: int = 1,
    date: str = DEFAULT_DATE,
    ss: int = 2,
    workers: int = 1,
    progress: bool = True,
) -> DriveInfo:
    """Render a synthetic drive in the KITTI raw layout under ``out_dir``.

    Writes (``DRIVE = DATE/DATE_drive_XXXX_sync``)::

        DATE/calib_cam_to_cam.txt, DATE/calib_velo_to_cam.txt      KITTI format (P_rect_02, R_rect_00, ...)
        DRIVE/image_02/data/%010d.png                             RGB frames
        DRIVE/velodyne_points/data/%010d.bin                       float32 (N, 4) x, y, z, reflectance
        DRIVE/depth/%010d.npy                                     exact depth, float32 metres, 0 = sky
        DRIVE/poses.txt                                           T_world_cam, 12 numbers (3x4 row-major) a line
        DRIVE/synthetic.json                                      seed, size, K, conventions
        splits/DATE_drive_XXXX_sync.txt                           "DRIVE i l" for frames with both neighbours

    Different ``seed`` values give different streets and speed profiles (use one for a held-out drive).
    ``workers`` > 1 renders frames in that many processes.
    """
    from tqdm import tqdm

    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if width < 8 or height < 8:
        raise ValueError(f"width and height must be >= 8, got {width}x{height}")
    if not 0 <= drive <= 9999:
        raise ValueError(f"drive must be in 0..9999, got {drive}")
    if ss not in _SUBPIXEL:
        raise ValueError(f"ss must be one of {sorted(_SUBPIXEL)}, got {ss}")
    if not date or any(c in date for c in "/\\ ") or date in (".", ".."):
        raise ValueError(f"date must be a plain folder name like 2011_09_26, got {date!r}")
    t0 = time.perf_counter()
    root = Path(out_dir).resolve()
    folder = f"{date}/{date}_drive_{drive:04d}_sync"
    drive_dir = root / folder
    img_dir = drive_dir / "image_02" / "data"
    velo_dir = drive_dir / "velodyne_points" / "data"
    depth_dir = drive_dir / "depth"
    for d in (img_dir, velo_dir, depth_dir, root / "splits"):
        d.mkdir(parents=True, exist_ok=True)
    _write_if_same(root / date / "calib_cam_to_cam.txt", calib_cam_to_cam_text(width, height))
    _write_if_same(root / date / "calib_velo_to_cam.txt", calib_velo_to_cam_text())

    drive_frames = synthetic_drive(frames, seed)
    poses, steps = drive_frames.poses, drive_frames.steps
    K = synthetic_intrinsics(width, height)
    velo_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7003]))
    state = dict(drive=drive_frames, K=K, width=width, height=height, ss=ss, img_dir=img_dir,
                 depth_dir=depth_dir, velo_dir=velo_dir, velo_seeds=velo_rng.integers(0, 2**31, frames))
    bar = tqdm(total=frames, desc=f"synth drive {drive:04d}", unit="frame", disable=not progress)
    if workers > 1:
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
        with ctx.Pool(workers, initializer=_worker_init, initargs=(state,)) as pool:
            for _ in pool.imap_unordered(_render_and_save, range(frames), chunksize=2):
                bar.update(1)
    else:
        _worker_init(state)
        try:
            for i in range(frames):
                _render_and_save(i)
                bar.update(1)
        finally:
            _WORKER_STATE.clear()
    bar.close()

    with open(drive_dir / "poses.txt", "w") as f:
        for p in poses:
            f.write(format_calib_values(p[:3, :4]) + "\n")
    split_lines = [f"{folder} {i} l" for i in range(1, frames - 1)]
    split_file = root / "splits" / f"{date}_drive_{drive:04d}_sync.txt"
    split_file.write_text("".join(line + "\n" for line in split_lines))
    meta = {
        "generator": "dna_depth_core.data.synthetic",
        "seed": int(seed),
        "frames": int(frames),
        "width": int(width),
        "height": int(height),
        "supersampling": int(ss),
        "K": K.tolist(),
        "K_convention": "pixels, origin at the centre of the top-left pixel (calib files: KITTI 1-based, +1)",
        "poses": "poses.txt: T_world_cam (camera-to-street frame), 3x4 row-major; street frame x right, y down, "
        "z along the street, road plane y = +1.65 m",
        "depth": "depth/%010d.npy: camera-z metres at pixel centres, float32, 0 = sky",
        "steps_m": [float(s) for s in steps],
    }
    (drive_dir / "synthetic.json").write_text(json.dumps(meta, indent=1) + "\n")
    return DriveInfo(
        root=root, date=date, folder=folder, frames=frames, width=width, height=height, K=K, poses=poses,
        split_file=split_file, split_lines=split_lines, seconds=time.perf_counter() - t0,
    )
