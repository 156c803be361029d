"""A synthetic drive written in the KITTI raw layout: images, calibration files (1-based principal points),
velodyne scans made from the exact depth, poses and the exact depth maps (see :func:`render_drive`)."""
from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dna_depth_core.data.synthetic.drive import synthetic_drive
from dna_depth_core.data.synthetic.lidar import HDL64_ELEVATION, depth_to_scan
from dna_depth_core.data.synthetic.rig import (CAM2_OFFSET, CAM3_OFFSET, DEFAULT_DATE, rectification,
                                              synthetic_intrinsics, velodyne_extrinsics)
from dna_depth_core.data.synthetic.textures import SUBPIXEL
from dna_depth_core.geometry import invert_pose

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
    for cam, tx in ((0, 0.0), (1, CAM3_OFFSET - CAM2_OFFSET), (2, CAM2_OFFSET), (3, CAM3_OFFSET)):
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


def velodyne_to_camera2() -> np.ndarray:
    """``(4, 4)`` transform camera 2 (the rendered camera, rectified) <- velodyne of the synthetic rig: the
    exporter chain ``R_rect_00 @ [R|T]`` followed by camera 2's offset ``X_cam2 = X_rect0 + (0.06, 0, 0)``."""
    R, T = velodyne_extrinsics()
    velo_to_cam0 = np.eye(4)
    velo_to_cam0[:3, :3], velo_to_cam0[:3, 3] = R, T
    rect = np.eye(4)
    rect[:3, :3] = rectification()
    rect[0, 3] = CAM2_OFFSET
    return rect @ velo_to_cam0


def camera2_to_velodyne(points_cam2: np.ndarray) -> np.ndarray:
    """Map (N, 3) points from the rendered camera (camera 2, rectified) to the velodyne frame (the inverse of
    :func:`velodyne_to_camera2`)."""
    T = invert_pose(velodyne_to_camera2())
    return np.asarray(points_cam2, np.float64) @ T[:3, :3].T + T[:3, 3]


def depth_to_velodyne(depth: np.ndarray, rgb: np.ndarray, K: np.ndarray, rng: np.random.Generator,
                      keep: float = 0.8, max_range: float = 120.0) -> np.ndarray:
    """A KITTI-like ``(N, 4)`` float32 scan (x, y, z, reflectance) in the velodyne frame from an exact depth map:
    :func:`~dna_depth_core.data.synthetic.lidar.depth_to_scan` with a 64-beam, HDL-64-like scanner (+2 deg ..
    -24.9 deg) and the rig's :func:`velodyne_to_camera2`.

    Points sit exactly on pixel centres of scan rows (``keep`` of the valid pixels of each row, depth within
    ``max_range``), so projecting them back with the calibration gives the same depth at the same pixels. A ring
    of extra returns outside the camera's view (behind it or off-image) is added, as a real scan has.
    """
    return depth_to_scan(depth, rgb, K, velodyne_to_camera2(), rng, keep=keep, max_range=max_range, beams=64,
                         elevation_deg=HDL64_ELEVATION)


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
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if width < 8 or height < 8:
        raise ValueError(f"width and height must be >= 8, got {width}x{height}")
    if not 0 <= drive <= 9999:
        raise ValueError(f"drive must be in 0..9999, got {drive}")
    if ss not in SUBPIXEL:
        raise ValueError(f"ss must be one of {sorted(SUBPIXEL)}, got {ss}")
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
