"""The synthetic car's camera rig: intrinsics (KITTI's default camera), mounting height, camera offsets, the
velodyne extrinsics and the rectification written to the calibration files, and the body frame, camera and LiDAR
of the synthetic ROS bags (:func:`bag_extrinsics`)."""
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

# The car of the synthetic ROS bags, in its body frame base_link (REP 103: x forward, y left, z up) on the road
# plane. The camera looks along x, level; the roof LiDAR sits behind and above it, its mount slightly rotated.
BAG_CAMERA_XYZ = (1.30, 0.0, ROAD_Y)  # camera optical centre in base_link (metres)
BAG_LIDAR_XYZ = (1.03, 0.02, ROAD_Y + 0.27)  # LiDAR origin in base_link: 27 cm behind and 27 cm above the camera
BAG_LIDAR_RPY = (0.008, -0.026, 0.035)  # LiDAR mount roll, pitch, yaw about base_link's x, y, z (radians)
#: Rotation base_link <- camera optical frame (x right, y down, z forward): optical z = base x, x = -y, y = -z.
R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


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


def bag_extrinsics() -> tuple[np.ndarray, np.ndarray]:
    """``(T_base_camera, T_base_lidar)``, ``(4, 4)`` each: the camera's optical frame and the LiDAR frame (x
    forward, y left, z up) in base_link, the transforms the synthetic bag's ``/tf_static`` holds
    (:data:`BAG_CAMERA_XYZ`, :data:`BAG_LIDAR_XYZ`, :data:`BAG_LIDAR_RPY`)."""
    cam = np.eye(4)
    cam[:3, :3], cam[:3, 3] = R_BASE_OPTICAL, BAG_CAMERA_XYZ
    lidar = np.eye(4)
    lidar[:3, :3], lidar[:3, 3] = rotation_xyz(*BAG_LIDAR_RPY), BAG_LIDAR_XYZ
    return cam, lidar
