"""Training data: the dataset registry (``dataset:`` option), its sources, the item layout, and the seeded sampling
that makes a run's data independent of loader workers and resume points.

Item layout (a dict, as ``data.kitti.KittiDataset`` yields it; collated into batches with a leading ``B``)::

    color[fid]      (3, H, W) float in [0, 1], frame ``fid`` (0 the target, then the sources), scale 0
                    (a source may nest scales too: color[fid][scale])
    color_aug[fid]  the same images colour-jittered: what the networks see (the loss uses ``color``)
    K[scale]        (4, 4) or (3, 3) pixel intrinsics at the network input size / 2**scale
    pose[fid]       optional, (4, 4) float32 ``T_world_cam`` of frame ``fid`` (for ``pose_gt``)

Sources: ``kitti`` (KITTI raw layout, which synthetic drives share; with ``pose_gt`` wrapped in
:class:`GroundTruthPoses`) and ``bag`` (ROS bags, ``data.rosbag.dataset_from_config``). A new source registers a
builder with :func:`register_dataset`.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from dna_depth_core.data import kitti
from dna_depth_core.data.poses import read_drive_poses
from dna_depth_core.geometry import invert_pose
from dna_depth_core.training.config import TrainConfig
from dna_depth_core.training.rng import mix_seed, seeded_rngs

_DATASETS: dict[str, Callable[[TrainConfig, str, bool], Dataset]] = {}


# ================================================================================================================
# Registry
# ================================================================================================================
def register_dataset(name: str):
    """Decorator: ``fn(cfg, split_file, is_train) -> Dataset`` becomes the data source ``dataset: name``.

    The dataset yields items in the layout of this module's docstring."""
    def deco(fn):
        _DATASETS[name] = fn
        return fn
    return deco


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def build_dataset(cfg: TrainConfig, split: str = "train") -> Dataset:
    """The dataset of ``split`` ("train" or "val") that ``cfg`` describes (``cfg.dataset`` names the source)."""
    if cfg.dataset not in _DATASETS:
        raise ValueError(f"dataset: unknown source '{cfg.dataset}'; available: {', '.join(list_datasets())}")
    split_file = cfg.split if split == "train" else cfg.val_split
    if split_file is None:
        raise ValueError(f"{'split' if split == 'train' else 'val_split'}: no split file given")
    return _DATASETS[cfg.dataset](cfg, split_file, split == "train")


def _resolve_split(cfg: TrainConfig, split_file: str) -> str:
    """A split path as given, or relative to ``data_path`` when it does not exist relative to the cwd."""
    if os.path.isfile(split_file) or os.path.isabs(split_file) or not cfg.data_path:
        return split_file
    alt = os.path.join(cfg.data_path, split_file)
    return alt if os.path.isfile(alt) else split_file


@register_dataset("kitti")
def _kitti_dataset(cfg: TrainConfig, split_file: str, is_train: bool) -> Dataset:
    if not cfg.data_path:
        raise ValueError("data_path: the KITTI-layout data folder is not set")
    if not os.path.isdir(cfg.data_path):
        raise FileNotFoundError(f"data_path: folder not found: {cfg.data_path}")
    path = _resolve_split(cfg, split_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split file not found: {split_file} (also looked under data_path {cfg.data_path})")
    lines = kitti.read_split_file(path)
    ds: Dataset = kitti.KittiDataset(cfg.data_path, lines, cfg.height, cfg.width, frame_ids=tuple(cfg.frame_ids),
                                     num_scales=cfg.num_scales, is_train=is_train and cfg.augment,
                                     use_calib=cfg.use_calib, seed=cfg.seed)
    if cfg.pose_gt:
        ds = GroundTruthPoses(ds, cfg.data_path)
    return ds


@register_dataset("bag")
def _bag_dataset(cfg: TrainConfig, split_file: str, is_train: bool) -> Dataset:
    from dna_depth_core.data.rosbag import dataset_from_config  # optional dependency: rosbags (extra "bags")

    return dataset_from_config(cfg, split_file, is_train)


# ================================================================================================================
# Ground-truth poses
# ================================================================================================================
class GroundTruthPoses(Dataset):
    """Adds ``"pose": {fid: (4, 4) T_world_cam}`` to KittiDataset items from ``DATA/<folder>/poses.txt``
    (:func:`dna_depth_core.data.poses.read_drive_poses`). Flipped samples get the mirrored poses ``M T M``
    (``M = diag(-1, 1, 1, 1)``), which keeps ``T_source_target`` consistent with the flipped images."""

    def __init__(self, base: Dataset, data_path: str):
        self.base, self.data_path = base, data_path
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def _poses(self, folder: str) -> np.ndarray:
        if folder not in self._cache:
            try:
                self._cache[folder] = read_drive_poses(self.data_path, folder)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"pose_gt: {exc}; set pose_gt: false for other data") from exc
        return self._cache[folder]

    def __getitem__(self, index):
        item = self.base[index]
        poses = self._poses(item["folder"])
        flip = bool(item.get("do_flip", False))
        mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
        out = {}
        for fid in item["color"]:
            i = int(item["frame_index"]) + int(fid)
            if not 0 <= i < len(poses):
                raise ValueError(f"pose_gt: frame {i} of {item['folder']} has no pose (poses.txt has {len(poses)})")
            T = mirror @ poses[i] @ mirror if flip else poses[i]
            out[fid] = torch.from_numpy(T.astype(np.float32))
        item["pose"] = out
        return item


# ================================================================================================================
# Reading a batch
# ================================================================================================================
def batch_frame(batch: Mapping, key: str, fid: int) -> torch.Tensor:
    """``batch[key][fid]`` at scale 0 (``(B, 3, H, W)``), whether or not the dataset nests scales too."""
    if key not in batch:
        raise KeyError(f"dataset item has no '{key}' (keys: {sorted(batch)})")
    v = batch[key][fid]
    if isinstance(v, Mapping):
        v = v[0]
    return v


def batch_intrinsics(batch: Mapping) -> torch.Tensor:
    """The scale-0 pixel intrinsics of a batch as float ``(B, 3, 3)``."""
    K = batch["K"]
    if isinstance(K, Mapping):
        K = K[0]
    return K[..., :3, :3].float()


def ground_truth_poses(batch: Mapping, frame_ids: Sequence[int]) -> dict[int, torch.Tensor]:
    """``{source id: T_source_target (B, 4, 4)}`` from the batch's ground-truth camera poses ``T_world_cam``:
    ``T_source_target = inv(T_world_source) @ T_world_target`` (target: ``frame_ids[0]``)."""
    for key in ("pose", "poses", "T_world_cam"):
        if key in batch:
            poses = batch[key]
            break
    else:
        raise ValueError("pose_gt: the dataset gives no ground-truth poses (needs a 'pose' entry keyed by frame id; "
                         "synthetic drives write poses.txt)")
    T_w_t = poses[0].float()
    out = {}
    for f in frame_ids[1:]:
        T_w_s = poses[f].float()
        out[f] = invert_pose(T_w_s) @ T_w_t
    return out


# ================================================================================================================
# Seeded sampling
# ================================================================================================================
class EpochSampler(Sampler):
    """The indices of one epoch for this rank (a DistributedSampler: a function of seed, epoch, rank), tagged with
    the epoch, minus the first ``skip`` (to resume mid-epoch). Yields ``(epoch, index)``."""

    def __init__(self, n: int, shuffle: bool, seed: int, rank: int, world_size: int, drop_last: bool = True):
        self.base = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
                                       drop_last=drop_last)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.base.set_epoch(epoch)

    def __iter__(self):
        for i, idx in enumerate(self.base):
            if i >= self.skip:
                yield self.epoch, idx

    def __len__(self) -> int:
        return max(len(self.base) - self.skip, 0)


class SeededItems(Dataset):
    """Wraps a dataset: item ``(epoch, index)`` is ``base[index]`` drawn in epoch ``epoch``.

    A base with ``set_epoch`` (KittiDataset built with a ``seed``) draws its augmentations from its own
    (seed, epoch, index) generator; for any other base, the python/numpy/torch global RNGs are seeded from
    (seed, epoch, index) around the call (and restored afterwards). Either way, what an item looks like does not
    depend on the number of loader workers or on where a run was resumed."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        epoch, index = key
        set_epoch = getattr(self.base, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        with seeded_rngs(mix_seed(self.seed, 7919, epoch, index)):
            return self.base[index]
