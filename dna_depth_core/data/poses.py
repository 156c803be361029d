"""Ground-truth camera poses of a drive (``poses.txt``: one 3x4 row-major ``T_world_cam`` a line, as synthetic
drives write it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def read_drive_poses(data_path, folder: str) -> np.ndarray:
    """``DATA/folder/poses.txt`` (one 3x4 row-major ``T_world_cam`` a line, as synthetic drives write it) as
    ``(N, 4, 4)`` float64."""
    path = Path(data_path) / folder / "poses.txt"
    if not path.is_file():
        raise FileNotFoundError(f"no ground-truth poses: {path} not found (synthetic drives write it)")
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 12:
        raise ValueError(f"{path}: expected 12 numbers (3x4 T_world_cam) a line, got {rows.shape[1]}")
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3, :4] = rows.reshape(-1, 3, 4)
    return T
