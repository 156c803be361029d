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

Modules: :mod:`.rig` (intrinsics, camera height, extrinsics of the KITTI rig and of the bags' car),
:mod:`.textures` (band-limited primitives), :mod:`.scene` (:class:`SyntheticScene`, the ray caster), :mod:`.drive`
(trajectories, :func:`synthetic_drive`, :func:`synthetic_frames`), :mod:`.lidar` (:func:`depth_to_scan`: LiDAR scans
sampled from exact depth), :mod:`.kitti_layout` (:func:`render_drive`, calibration files, velodyne scans).
"""
from dna_depth_core.data.synthetic.drive import (SyntheticDrive, iter_synthetic_frames, make_trajectory,
                                                 synthetic_drive, synthetic_frames)
from dna_depth_core.data.synthetic.kitti_layout import (DriveInfo, calib_cam_to_cam_text, calib_velo_to_cam_text,
                                                        camera2_to_velodyne, depth_to_velodyne,
                                                        format_calib_values, render_drive, velodyne_to_camera2)
from dna_depth_core.data.synthetic.lidar import HDL32_ELEVATION, HDL64_ELEVATION, depth_to_scan, scan_rows
from dna_depth_core.data.synthetic.rig import (DEFAULT_DATE, ROAD_Y, bag_extrinsics, rectification,
                                               synthetic_intrinsics, velodyne_extrinsics)
from dna_depth_core.data.synthetic.scene import SyntheticScene

__all__ = [
    "DEFAULT_DATE", "DriveInfo", "HDL32_ELEVATION", "HDL64_ELEVATION", "ROAD_Y", "SyntheticDrive", "SyntheticScene",
    "bag_extrinsics", "calib_cam_to_cam_text", "calib_velo_to_cam_text", "camera2_to_velodyne", "depth_to_scan",
    "depth_to_velodyne", "format_calib_values", "iter_synthetic_frames", "make_trajectory", "rectification",
    "render_drive", "scan_rows", "synthetic_drive", "synthetic_frames", "synthetic_intrinsics",
    "velodyne_extrinsics", "velodyne_to_camera2",
]
