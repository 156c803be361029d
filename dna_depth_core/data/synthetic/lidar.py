"""LiDAR scans of the synthetic street sampled from a camera's exact depth (the velodyne scans of the KITTI layout,
the PointCloud2 of the synthetic bags).

The beams are modelled in the camera's view: beam ``k`` at elevation ``e_k`` is the image row
``cy - fy tan(e_k)``, and its returns sit exactly on pixel centres of that row with the exact depth there,
expressed in the LiDAR's frame. Projecting a scan back into the camera with the right intrinsics and extrinsics
therefore gives the exact depth at those pixels (up to the float32 rounding of the stored coordinates), which is
what makes it a test of a projection path. What the camera does not see is not sampled (no occlusion between the
two viewpoints); a ring of returns that cannot land in the image (behind the camera or off its sides) is added,
as a real scan has them.
"""
from __future__ import annotations

import numpy as np

from dna_depth_core.geometry import invert_pose

#: Elevations (degrees, positive up) of the first and last beam of common scanners.
HDL64_ELEVATION = (2.0, -24.9)
HDL32_ELEVATION = (10.67, -30.67)


def scan_rows(K: np.ndarray, height: int, beams: int = 64, elevation_deg: tuple[float, float] = HDL64_ELEVATION
              ) -> np.ndarray:
    """Image rows (sorted, unique, inside the image) hit by ``beams`` beams evenly spread between the elevations
    ``elevation_deg`` = (top, bottom) in degrees (positive up), for a camera ``K`` (3, 3) whose optical axis is
    the beams' horizon."""
    if beams < 1:
        raise ValueError(f"beams must be >= 1, got {beams}")
    elev = np.deg2rad(np.linspace(elevation_deg[0], elevation_deg[1], int(beams)))
    rows = np.round(K[1, 2] - K[1, 1] * np.tan(elev)).astype(int)  # image y points down
    return np.unique(rows[(rows >= 0) & (rows < height)])


def depth_to_scan(depth: np.ndarray, rgb: np.ndarray, K: np.ndarray, T_camera_lidar: np.ndarray,
                  rng: np.random.Generator, keep: float = 0.8, max_range: float = 120.0, beams: int = 64,
                  elevation_deg: tuple[float, float] = HDL64_ELEVATION, ring: int = 3000) -> np.ndarray:
    """A LiDAR scan ``(N, 4)`` float32 (x, y, z, intensity in [0, 1]) in the LiDAR frame from an exact depth map.

    Args:
        depth: ``(H, W)`` camera-z depth in metres at the pixel centres (0 = nothing, e.g. the sky).
        rgb: ``(H, W, 3)`` uint8: the intensity of a return is its pixel's mean grey level.
        K: ``(3, 3)`` pixel intrinsics of ``depth`` (pixel centres at integer coordinates).
        T_camera_lidar: ``(4, 4)``, maps LiDAR-frame points into the camera's optical frame.
        rng: draws which pixels of each beam return (``keep`` of the valid ones with depth below ``max_range``)
            and the ring.
        beams, elevation_deg: the scanner (:func:`scan_rows`).
        ring: how many returns around the car to draw (kept where they cannot land in the image).
    Returns:
        the camera's returns first (row by row, in pixel order), then the ring.
    """
    h, w = depth.shape
    rows = scan_rows(K, h, beams, elevation_deg)
    sub = depth[rows]
    vv, uu = np.nonzero((sub > 0) & (sub < max_range) & (rng.random(sub.shape) < keep))
    v = rows[vv]
    z = depth[v, uu].astype(np.float64)
    cam = np.stack([(uu - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], 1)
    T_lidar_camera = invert_pose(np.asarray(T_camera_lidar, np.float64))
    pts = cam @ T_lidar_camera[:3, :3].T + T_lidar_camera[:3, 3]
    refl = rgb[v, uu].mean(axis=1) / 255.0
    # returns around the car (LiDAR frame, x forward, z up), kept only where they cannot land in the image
    az = rng.uniform(-np.pi, np.pi, ring)
    dist = rng.uniform(4.0, 40.0, ring)
    around = np.stack([dist * np.cos(az), dist * np.sin(az), rng.uniform(-1.7, 1.0, ring)], 1)
    T = np.asarray(T_camera_lidar, np.float64)
    c = around @ T[:3, :3].T + T[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * c[:, 0] / c[:, 2] + K[0, 2]
        vr = K[1, 1] * c[:, 1] / c[:, 2] + K[1, 2]
    inside = (c[:, 2] > 0) & (u > -2) & (u < w + 1) & (vr > -2) & (vr < h + 1)
    around = around[~inside]
    return np.concatenate([
        np.hstack([pts, refl[:, None]]),
        np.hstack([around, rng.uniform(0, 1, (len(around), 1))]),
    ]).astype(np.float32)


__all__ = ["HDL32_ELEVATION", "HDL64_ELEVATION", "depth_to_scan", "scan_rows"]
