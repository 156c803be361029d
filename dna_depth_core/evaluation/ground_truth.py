"""Ground-truth depth for evaluation: KITTI velodyne scans projected into a camera, projected maps, and the
``gt_depths.npz`` export.

- :func:`read_velodyne`, :func:`velodyne_to_depth`: a raw scan projected into camera 2 or 3
  (``P_rect_0X @ R_rect_00 @ [R|T]_velo->cam``; depth = the projective depth, i.e. camera z, of points in front
  of the scanner; pixel = ``round(u, v) - 1`` since KITTI's calibration is 1-based; the nearest return wins;
  :func:`dna_depth_core.geometry.points_to_depth` does the projection, as for any LiDAR).
- :func:`export_gt` / :func:`load_gt`: the ground truth of a split as an ``.npz`` (one array per frame, loadable
  with ``allow_pickle=False``).

Ground-truth maps use 0 for "no measurement".
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from dna_depth_core.data.kitti import SplitEntry, parse_split_line, read_calib_file
from dna_depth_core.geometry import points_to_depth


def read_velodyne(path) -> np.ndarray:
    """A KITTI velodyne scan: (N, 4) float32 (x, y, z, reflectance), velodyne frame (x forward, y left, z up)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"velodyne scan not found: {path}")
    data = np.fromfile(path, dtype=np.float32)
    if data.size % 4:
        raise ValueError(f"{path}: size is not a multiple of 4 float32 values (not a KITTI velodyne .bin)")
    return data.reshape(-1, 4)


def _calib_dict(calib, name: str) -> dict:
    if isinstance(calib, dict):
        return calib
    return read_calib_file(Path(calib) / name)


def velodyne_to_camera_matrix(calib_dir, cam: int = 2) -> np.ndarray:
    """(3, 4) matrix ``P_rect_0{cam} @ R_rect_00 @ [R|T]`` mapping homogeneous velodyne points to KITTI's
    (1-based) image coordinates times depth. ``calib_dir`` holds ``calib_cam_to_cam.txt`` and
    ``calib_velo_to_cam.txt``."""
    if cam not in (0, 1, 2, 3):
        raise ValueError(f"cam must be 0..3, got {cam}")
    c2c = _calib_dict(calib_dir, "calib_cam_to_cam.txt")
    v2c = _calib_dict(calib_dir, "calib_velo_to_cam.txt")
    for key, d, name in ((f"P_rect_0{cam}", c2c, "calib_cam_to_cam.txt"), ("R_rect_00", c2c, "calib_cam_to_cam.txt"),
                         ("R", v2c, "calib_velo_to_cam.txt"), ("T", v2c, "calib_velo_to_cam.txt")):
        if key not in d:
            raise ValueError(f"{name} in {calib_dir} has no {key}")
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3] = np.asarray(v2c["R"], np.float64).reshape(3, 3)
    velo_to_cam[:3, 3] = np.asarray(v2c["T"], np.float64).reshape(3)
    rect = np.eye(4)
    rect[:3, :3] = np.asarray(c2c["R_rect_00"], np.float64).reshape(3, 3)
    P = np.asarray(c2c[f"P_rect_0{cam}"], np.float64).reshape(3, 4)
    return P @ rect @ velo_to_cam


def velodyne_to_depth(points, calib_dir, cam: int = 2, image_shape=None) -> np.ndarray:
    """Project a velodyne scan into camera ``cam`` as a sparse depth map (the KITTI ground-truth recipe).

    Args:
        points: (N, 3) or (N, 4) velodyne points (x forward, y left, z up); a 4th column is ignored.
        calib_dir: folder with ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt`` (the drive's date folder),
            or a dict with both files' entries.
        cam: 2 (left colour) or 3 (right colour); 0/1 also work.
        image_shape: (H, W); default: ``S_rect_0{cam}`` of the calibration.

    Points behind the scanner (x < 0) are dropped; the rest go through :func:`dna_depth_core.geometry.
    points_to_depth` with KITTI's matrix shifted to 0-based pixels (its calibration is 1-based): pixel
    ``round(u, v) - 1`` (pixel centres at integers), depth = the projective depth (camera z); points off the image
    are dropped; when several land on one pixel the nearest wins.

    Returns:
        (H, W) float32 depth in metres, 0 where no point landed.
    """
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (3, 4):
        raise ValueError(f"points must be (N, 3) or (N, 4), got {pts.shape}")
    if image_shape is None:
        c2c = _calib_dict(calib_dir, "calib_cam_to_cam.txt")
        key = f"S_rect_0{cam}"
        if key not in c2c:
            raise ValueError(f"no image_shape given and the calibration has no {key}")
        width, height = (int(round(v)) for v in np.asarray(c2c[key]).ravel()[:2])
    else:
        if len(image_shape) < 2:
            raise ValueError(f"image_shape must be (H, W), got {image_shape}")
        height, width = int(image_shape[0]), int(image_shape[1])
    M = velodyne_to_camera_matrix(calib_dir, cam)
    one_based = np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])  # KITTI's u - 1, v - 1
    return points_to_depth(pts[pts[:, 0] >= 0, :3], one_based @ M, height, width)


# ----------------------------------------------------------------------------------------------------------
# Ground-truth export
# ----------------------------------------------------------------------------------------------------------


def gt_sources(data_path, entry: SplitEntry) -> list[tuple[str, Path]]:
    """Candidate ground-truth files of a split entry, in order of preference: ``(kind, path)`` with kind one of
    ``velodyne`` (raw ``.bin``), ``png16`` (KITTI depth-annotated / projected 16-bit PNG, value/256 m),
    ``npz`` (key ``velodyne_depth``), ``npy`` (synthetic exact depth, camera 2 only)."""
    drive = Path(data_path) / entry.folder
    name = f"{entry.frame_index:010d}"
    cam = f"image_0{entry.cam}"
    out = [
        ("velodyne", drive / "velodyne_points" / "data" / f"{name}.bin"),
        ("png16", drive / "proj_depth" / "groundtruth" / cam / f"{name}.png"),
        ("npz", drive / "proj_depth" / "velodyne" / cam / f"{name}.npz"),
        ("png16", drive / "proj_depth" / "velodyne" / cam / f"{name}.png"),
    ]
    if entry.cam == 2:
        out.append(("npy", drive / "depth" / f"{name}.npy"))
    return out


def load_gt_depth(data_path, entry) -> tuple[np.ndarray, str]:
    """Ground-truth depth (H, W) float32 metres (0 = none) of one split entry (line or :class:`SplitEntry`),
    from the first source of :func:`gt_sources` that exists. Returns ``(depth, kind)``."""
    if not isinstance(entry, SplitEntry):
        entry = parse_split_line(entry)
    tried = []
    for kind, path in gt_sources(data_path, entry):
        if not path.is_file():
            tried.append(str(path))
            continue
        if kind == "velodyne":
            calib_dir = Path(data_path) / entry.date
            return velodyne_to_depth(read_velodyne(path), calib_dir, cam=entry.cam), kind
        if kind == "png16":
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if img is None or img.dtype != np.uint16 or img.ndim != 2:
                raise ValueError(f"{path}: not a single-channel 16-bit depth PNG")
            return (img.astype(np.float32) / 256.0), kind
        if kind == "npz":
            with np.load(path, allow_pickle=False) as z:
                if "velodyne_depth" not in z.files:
                    raise ValueError(f"{path}: no 'velodyne_depth' array (has {z.files})")
                return np.asarray(z["velodyne_depth"], np.float32), kind
        depth = np.load(path, allow_pickle=False)
        return np.asarray(depth, np.float32), kind
    raise FileNotFoundError(f"no ground truth for '{entry.line}'; tried: " + ", ".join(tried))


def export_gt(data_path, split_lines: Sequence, out_npz, progress: bool = True) -> list[np.ndarray]:
    """Export the ground truth of a split to ``out_npz`` (the standard ``gt_depths.npz`` step).

    For each split line: the raw velodyne scan if present, else a 16-bit PNG / ``velodyne_depth`` npz projected
    map, else the synthetic exact depth (see :func:`gt_sources`). The file holds ``depth_00000``,
    ``depth_00001``, ... (float32 (H, W), sizes may differ) and ``split_lines``; read it with :func:`load_gt`.
    Returns the list of depth maps.
    """
    split_lines = list(split_lines)
    entries = [e if isinstance(e, SplitEntry) else parse_split_line(e) for e in split_lines]
    if not entries:
        raise ValueError("split_lines is empty")
    depths = []
    for entry in tqdm(entries, desc="export gt", unit="frame", disable=not progress):
        depths.append(load_gt_depth(data_path, entry)[0])
    out_npz = Path(out_npz)
    out_npz.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"depth_{i:05d}": d for i, d in enumerate(depths)}
    arrays["split_lines"] = np.array([ln.strip() if isinstance(ln, str) else ln.line for ln in split_lines])
    np.savez_compressed(out_npz, **arrays)
    return depths


def load_gt(path, allow_pickle: bool = False) -> list[np.ndarray]:
    """Ground-truth maps written by :func:`export_gt` (keys ``depth_00000``...) as a list, in split order.

    Also reads a stacked ``data`` array; monodepth2-style object arrays need ``allow_pickle=True`` (only for
    files you trust).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    with np.load(path, allow_pickle=allow_pickle) as z:
        keys = sorted(k for k in z.files if k.startswith("depth_"))
        if keys:
            return [np.asarray(z[k]) for k in keys]
        if "data" in z.files:
            try:
                data = z["data"]
            except ValueError as exc:
                raise ValueError(f"{path}: 'data' is an object array; load it with allow_pickle=True") from exc
            return [np.asarray(d) for d in data]
    raise ValueError(f"{path}: no depth_XXXXX or data arrays")
