"""The synthetic car's camera rig: intrinsics (KITTI's default camera), mounting height, camera offsets, the
velodyne extrinsics and the rectification written to the calibration files."""
from __future__ import annotations

import numpy as np

from dna_depth_core.camera import KITTI_K_NORMALISED, pixel_K

ROAD_Y = 1.65  # camera height above the road (the road is the plane y = +1.65 m in the street frame)
DEFAULT_DATE = "2000_01_01"

# Fixed rig of the synthetic car (KITTI-like numbers; written to the calibration files).
CAM2_OFFSET = 0.06  # X_cam2 = X_rect0 + (0.06, 0, 0): camera 2 sits 6 cm left of camera 0 (KITTI: 6.2 cm)
CAM3_OFFSET = -0.48  # camera 3 (not rendered) 48 cm right of camera 0
VELO_T = np.array([-0.004, -0.076, -0.272])  # velodyne -> camera-0 translation (metres)
VELO_RPY = (0.004, -0.008, 0.006)  # small extra rotation of the velodyne mount (radians)
RECT_RPY = (0.0043, -0.0074, 0.0098)  # R_rect_00 (radians), of the size of KITTI's


def synthetic_intrinsics(width: int, height: int) -> np.ndarray:
    """The (3, 3) pixel intrinsics of a synthetic render: KITTI's default camera at ``width`` x ``height``
    (``camera.pixel_K(camera.KITTI_K_NORMALISED, (width, height))``: principal point at the image centre)."""
    return pixel_K(KITTI_K_NORMALISED, (width, height))


def rotation_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    """``R_z(rz) @ R_y(ry) @ R_x(rx)`` (radians)."""
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
    return rotation_xyz(*VELO_RPY) @ base, VELO_T.copy()


def rectification() -> np.ndarray:
    """``R_rect_00`` of the synthetic rig (a small rotation, as in KITTI)."""
    return rotation_xyz(*RECT_RPY)
