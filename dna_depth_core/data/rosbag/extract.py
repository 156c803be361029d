"""``bag-extract``: bags written as a KITTI-raw-style folder + split files that
:class:`~dna_depth_core.data.kitti.KittiDataset` reads (a cache for repeated training)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dna_depth_core.camera import pixel_K
from dna_depth_core.data.rosbag.frames import bag_label, read_bag_frames
from dna_depth_core.data.rosbag.pairing import build_chains, make_samples
from dna_depth_core.data.synthetic import format_calib_values
from dna_depth_core.io.atomic import write_text


def kitti_calibration_text(K: np.ndarray, size: tuple[int, int], source: str) -> str:
    """A ``calib_cam_to_cam.txt`` for camera 2 with pixel intrinsics ``K`` at ``size`` = (width, height):
    ``S_rect_02`` and ``P_rect_02 = [K | 0]`` with KITTI's 1-based principal point (``cx + 1``, ``cy + 1``)."""
    K1 = np.array(K, np.float64, copy=True)
    K1[0, 2] += 1.0
    K1[1, 2] += 1.0
    P = np.hstack([K1, np.zeros((3, 1))])
    return (f"calib_time: {source}\nS_rect_02: {format_calib_values(list(size))}\n"
            f"P_rect_02: {format_calib_values(P)}\n")


def extract_bag(paths, out_dir, image_topic: str | None = None, camera_info_topic: str | None = None,
                calibration=None, frame_spacing: float = 0.1, static_threshold: float = 0.01,
                val_fraction: float = 0.1, tolerance: float | None = None, on_damage: str = "error",
                size: tuple[int, int] | None = None, frame_ids: Sequence[int] = (0, -1, 1),
                intrinsics_source: str = "auto") -> dict:
    """Write bags as a KITTI-raw-style folder that :class:`~dna_depth_core.data.kitti.KittiDataset` reads.

    Layout: ``OUT/LABEL/calib_cam_to_cam.txt`` (:func:`kitti_calibration_text` of the bag's intrinsics at the
    stored size) and one drive folder per chain (:func:`~dna_depth_core.data.rosbag.pairing.build_chains`):
    ``OUT/LABEL/LABEL_drive_XXXX_sync/image_02/data/%010d.png`` (so index neighbours are ``frame_spacing``
    apart) with ``timestamps_ns.txt``. Splits: ``OUT/splits/train_files.txt`` and ``val_files.txt`` (the same
    pairing, static filter and time split as :class:`~dna_depth_core.data.rosbag.dataset.BagDataset`, for
    ``frame_ids``). ``size`` = (width, height) resizes the stored frames (default: as recorded); the other
    arguments are :func:`~dna_depth_core.data.rosbag.frames.read_bag_frames`'s and
    :func:`~dna_depth_core.data.rosbag.pairing.make_samples`'.

    Returns ``{"train": n, "val": n, "frames": n, "bags": [{"bag", "label", "frames", "train", "val",
    "damaged"}], "splits": {"train": path, "val": path}}``.
    """
    out = Path(out_dir)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    lines: dict[str, list[str]] = {"train": [], "val": []}
    taken: set = set()
    summary: dict = {"bags": [], "frames": 0}
    for path in map(Path, paths):
        fr = read_bag_frames(path, image_topic, camera_info_topic, size=size, calibration=calibration,
                             on_damage=on_damage, intrinsics_source=intrinsics_source)
        if fr.K_norm is None:
            raise ValueError(f"bag {path}: no camera_info topic and no calibration")
        label = bag_label(path, taken)
        h, w = fr.images[0].shape[:2] if fr.images else (0, 0)
        if fr.images:
            write_text(out / label / "calib_cam_to_cam.txt", kitti_calibration_text(
                pixel_K(fr.K_norm, (w, h)), (w, h), f"extracted from {path.name} by dna-depth bag-extract"))
        parts = make_samples(fr, tuple(frame_ids), frame_spacing, static_threshold, val_fraction, tolerance)
        where: dict[int, tuple[str, int]] = {}
        for c, chain in enumerate(build_chains(fr.stamps, frame_spacing, tolerance), 1):
            folder = f"{label}/{label}_drive_{c:04d}_sync"
            d = out / folder / "image_02" / "data"
            d.mkdir(parents=True, exist_ok=True)
            stamps = []
            for k, i in enumerate(chain):
                png = d / f"{k:010d}.png"
                if not cv2.imwrite(str(png), cv2.cvtColor(fr.images[i], cv2.COLOR_RGB2BGR)):
                    raise OSError(f"could not write {png}")
                stamps.append(f"{int(fr.stamps[i])}\n")
                where[i] = (folder, k)
            write_text(out / folder / "timestamps_ns.txt", "".join(stamps))
        for part, samples in parts.items():
            for s in samples:
                folder, k = where[s.target]
                lines[part].append(f"{folder} {k} l")
        summary["bags"].append({"bag": str(path), "label": label, "frames": len(fr), "train": len(parts["train"]),
                                "val": len(parts["val"]), "damaged": fr.damaged})
        summary["frames"] += len(fr)
    splits = {}
    for part, name in (("train", "train_files.txt"), ("val", "val_files.txt")):
        p = out / "splits" / name
        write_text(p, "".join(ln + "\n" for ln in lines[part]))
        splits[part] = str(p)
    summary.update(train=len(lines["train"]), val=len(lines["val"]), splits=splits)
    return summary


__all__ = ["extract_bag", "kitti_calibration_text"]
