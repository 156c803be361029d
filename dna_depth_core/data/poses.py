"""Ground-truth camera poses of a drive: ``DATA/<folder>/poses.txt``, as synthetic drives write it.

One line per frame (frame ``i`` on line ``i``): the 12 numbers of the 3x4 row-major ``T_world_cam``, the pose of
the camera in the world (a point ``p_cam`` in camera coordinates is ``T_world_cam @ p_cam`` in the world). The
training ``pose_gt`` option and pose evaluation both read poses through :func:`read_drive_poses`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_drive_poses(data_path, folder: str) -> np.ndarray:
    """``DATA/folder/poses.txt`` as ``(N, 4, 4)`` float64 ``T_world_cam`` (last row ``[0, 0, 0, 1]``).

    FileNotFoundError when the file does not exist; ValueError when a line does not hold 12 numbers."""
    path = Path(data_path) / folder / "poses.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no ground-truth poses: {path} not found (synthetic drives write it)")
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 12:
        raise ValueError(f"{path}: expected 12 numbers (3x4 T_world_cam) a line, got {rows.shape[1]}")
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3, :4] = rows.reshape(-1, 3, 4)
    return T
