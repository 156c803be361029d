"""The ``bag`` training data source: :class:`BagDataset` (KITTI-dataset items read straight from ROS bags) and
:func:`dataset_from_config` (the hook the training dataset registry calls for ``dataset: bag``)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dna_depth_core.data.kitti import KittiDataset, SplitEntry
from dna_depth_core.data.rosbag.frames import BagFrames, bag_label, read_bag_frames
from dna_depth_core.data.rosbag.pairing import Sample, make_samples

PARTS = ("train", "val", "all")


class BagDataset(KittiDataset):
    """:class:`~dna_depth_core.data.kitti.KittiDataset` items read straight from ROS bags.

    Each bag's frames are decoded once and kept in memory at the training size (resized with
    :func:`dna_depth_core.preprocess.fit_image`, so the base class's resize passes them through unchanged); the
    base class then does the augmentations and scales the intrinsics (the bag's normalised K, see
    :class:`~dna_depth_core.data.rosbag.frames.BagFrames`) to each scale.

    Args:
        bags: bag paths (ROS 2 folders / .mcap / .db3, ROS 1 .bag).
        height, width, frame_ids, num_scales, is_train, seed: as :class:`KittiDataset`.
        part: ``"train"`` or ``"val"`` (the last ``val_fraction`` of each bag, by time), or ``"all"``.
        image_topic, camera_info_topic: topics (None: the bag's only one of that kind).
        calibration: a calibration YAML overriding every bag's intrinsics.
        frame_spacing, tolerance: seconds between neighbour frames (tolerance default: half the spacing).
        static_threshold: minimum mean absolute grey change (0..1) between target and each source.
        on_damage: ``"error"`` or ``"keep"`` (train on the intact parts of a damaged bag, with one warning naming
            the damage).
        intrinsics_source: which CameraInfo matrix: ``"auto"`` (P when valid, else K), ``"P"`` or ``"K"``.

    Items are KittiDataset's, with ``folder`` = the bag's label and ``frame_index`` = the target's index among
    the bag's frames; ``stamp`` (ns) is added. ``stats`` holds per-bag counts (frames, static, train, val).
    """

    def __init__(self, bags, height: int, width: int, frame_ids: Sequence[int] = (0, -1, 1), num_scales: int = 4,
                 is_train: bool = False, part: str = "train", image_topic: str | None = None,
                 camera_info_topic: str | None = None, calibration=None, frame_spacing: float = 0.1,
                 static_threshold: float = 0.01, val_fraction: float = 0.1, tolerance: float | None = None,
                 on_damage: str = "error", seed: int | None = None, intrinsics_source: str = "auto"):
        if isinstance(bags, (str, Path)):
            bags = [bags]
        bags = [Path(b) for b in bags]
        if not bags:
            raise ValueError("no bag given")
        if part not in PARTS:
            raise ValueError(f"part must be train, val or all, got {part!r}")
        self.bags: list[BagFrames] = []
        self.labels: list[str] = []
        self.stats: list[dict] = []
        samples: list[Sample] = []
        entries: list[SplitEntry] = []
        taken: set = set()
        for b, path in enumerate(bags):
            fr = read_bag_frames(path, image_topic, camera_info_topic, size=(int(width), int(height)),
                                 calibration=calibration, on_damage=on_damage, intrinsics_source=intrinsics_source)
            if fr.K_norm is None:
                raise ValueError(f"bag {path}: no camera_info topic and no calibration; give --camera-info-topic or "
                                 "a calibration YAML")
            st: dict = {"bag": str(path)}
            parts = make_samples(fr, tuple(frame_ids), frame_spacing, static_threshold,
                                 val_fraction if part != "all" else 0.0, tolerance, b, st)
            label = bag_label(path, taken)
            chosen = parts["train"] + parts["val"] if part == "all" else parts[part]
            self.bags.append(fr)
            self.labels.append(label)
            self.stats.append(st)
            for s in chosen:
                samples.append(s)
                entries.append(SplitEntry(label, int(s.target), "l"))
        self.samples = samples
        super().__init__(bags[0], entries, height, width, frame_ids=frame_ids, num_scales=num_scales,
                         is_train=is_train, use_calib=True, seed=seed)
        self._by_entry = {(e.folder, e.frame_index): s for e, s in zip(entries, samples)}
        self._bag_of_label = {lab: i for i, lab in enumerate(self.labels)}

    def load_frame(self, entry: SplitEntry, fid: int) -> np.ndarray:
        """Frame ``fid`` of the sample ``entry``: ``(height, width, 3)`` uint8 RGB (decoded and resized already)."""
        s = self._by_entry[(entry.folder, entry.frame_index)]
        return self.bags[s.bag].images[s.frames[fid]]

    def normalised_K(self, entry: SplitEntry, original_size) -> np.ndarray:
        """The bag's normalised intrinsics (:mod:`dna_depth_core.camera` convention; ``original_size`` is not
        needed: they are per bag)."""
        return self.bags[self._bag_of_label[entry.folder]].K_norm.copy()

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item["stamp"] = self.samples[index].stamp
        return item


def dataset_from_config(cfg, split_file: str | None, is_train: bool) -> BagDataset:
    """The ``dataset: bag`` source of the training config: ``split``/``val_split`` name the part (``bag:train``,
    ``bag:val``, ``bag:all``; anything else: train when ``is_train``, else val). The config keys are listed in
    docs/rosbag.md."""
    if cfg.pose_gt:
        raise ValueError("pose_gt: bags carry no ground-truth poses")
    part = str(split_file).split(":", 1)[1] if str(split_file).startswith("bag:") else ("train" if is_train else "val")
    return BagDataset(list(cfg.bags), cfg.height, cfg.width, frame_ids=tuple(cfg.frame_ids),
                      num_scales=cfg.num_scales, is_train=is_train and cfg.augment, part=part,
                      image_topic=cfg.image_topic, camera_info_topic=cfg.camera_info_topic,
                      calibration=cfg.calibration, intrinsics_source=cfg.intrinsics_source,
                      frame_spacing=cfg.frame_spacing,
                      static_threshold=cfg.static_threshold, val_fraction=cfg.val_fraction,
                      on_damage=cfg.bag_on_damage, seed=cfg.seed)


__all__ = ["BagDataset", "PARTS", "dataset_from_config"]
