"""The procedural street of the synthetic drives, ray cast in numpy (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dna_depth_core.data.synthetic.rig import ROAD_Y
from dna_depth_core.data.synthetic.textures import SUBPIXEL, band, make_sines, pulses, sines

# Surface ids of the ray caster: boxes are BOX_BASE + 6 * box + face (face = 2 * axis + 1 for the + normal);
# facade hits carry their building segment (FACADE_RIGHT + segment, FACADE_LEFT + segment), so a change of
# building counts as an edge for the supersampling.
SKY, ROAD, END_WALL = 0, 1, 4
BOX_BASE = 16
FACADE_RIGHT = 1_000_000
FACADE_LEFT = 2_000_000


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
        self.road_noise = make_sines(rng, 14, 0.4, 7.0)
        self.road_patches = make_sines(rng, 6, 0.03, 0.3, slope=0.3)
        self.wall_noise = make_sines(rng, 8, 0.15, 4.0)
        self.box_noise = make_sines(rng, 5, 0.5, 4.0)
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
        n1 = sines(x, z, xu, xv, zu, zv, self.road_noise)
        n2 = sines(x, z, xu, xv, zu, zv, self.road_patches)
        lum = 0.30 + 0.05 * n1 + 0.035 * n2
        col = lum[:, None] * np.array([1.0, 1.0, 1.04], np.float32)
        marks = np.zeros_like(x)
        dashes = pulses(z, zu, zv, 9.0, 0.33, self.dash_phase)
        wide = [c for c in (5.25, -5.25) if abs(c) + 1.2 < (self.road_right if c > 0 else self.road_left)]
        lanes = [1.75, -1.75] + wide
        for xl in lanes:
            marks += band(x, xu, xv, xl - 0.06, xl + 0.06) * dashes
        marks += band(x, xu, xv, self.road_right - 0.38, self.road_right - 0.25)
        marks += band(x, xu, xv, -self.road_left + 0.25, -self.road_left + 0.38)
        marks = np.clip(marks, 0, 1)[:, None] * np.float32(0.85)
        col = col * (1 - marks) + marks * np.float32(0.88)
        walk = (band(x, xu, xv, self.road_right, 1e4) + band(x, xu, xv, -1e4, -self.road_left))[:, None]
        grid = np.clip(pulses(x, xu, xv, 0.6, 0.08, 0.0) + pulses(z, zu, zv, 0.6, 0.08, 0.0), 0, 1)
        wl = (0.56 + 0.03 * n1) * (1.0 - 0.35 * grid)
        wcol = wl[:, None] * np.array([1.0, 0.97, 0.92], np.float32)
        col = col * (1 - walk) + wcol * walk
        return col * self._shade(np.array([0.0, -1.0, 0.0]))

    def _shade_facade(self, fac: _Facade, s, y, normal):
        s_, su, sv = s
        y_, yu, yv = y
        seg = np.clip(np.searchsorted(fac.starts, s_) - 1, 0, len(fac.starts) - 1)
        wz = pulses(s_, su, sv, fac.win_pz[seg], fac.win_dz[seg], fac.win_cz[seg])
        wy = pulses(y_, yu, yv, fac.win_py[seg], fac.win_dy[seg], fac.win_cy[seg])
        above = 1.0 - band(y_, yu, yv, ROAD_Y - 2.2, 1e4)  # no windows on the ground floor
        win = (wz * wy * above)[:, None]
        noise = sines(s_, y_, su, sv, yu, yv, self.wall_noise)
        base = fac.colours[seg] * (1.0 + 0.07 * noise)[:, None]
        plinth = band(y_, yu, yv, ROAD_Y - 0.5, 1e4)[:, None]
        base = base * (1.0 - 0.45 * plinth)
        col = base * (1 - win) + fac.win_colours[seg] * win
        return col * self._shade(normal)

    def _shade_boxes(self, boxes, face, h, axis):
        c0, c1 = sorted(h)
        s, su, sv = h[c0]
        r, ru, rv = h[c1]
        col = self.box_colour[boxes] * (1.0 + 0.05 * sines(s, r, su, sv, ru, rv, self.box_noise))[:, None]
        if axis != 1:  # windows band on the sides, front and back of cars
            y, yu, yv = h[1]
            top = self.box_lo[boxes, 1].astype(np.float32)
            glass = band(y, yu, yv, top + 0.08, top + 0.55) * self.box_is_car[boxes]
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
        if ss not in SUBPIXEL:
            raise ValueError(f"ss must be one of {sorted(SUBPIXEL)}, got {ss}")
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
            offs = np.asarray(SUBPIXEL[ss], np.float32)
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
