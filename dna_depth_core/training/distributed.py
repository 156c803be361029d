"""Distributed set-up: one process, or one rank of a ``torchrun`` job.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``); with more
than one rank, :func:`setup_distributed` joins the process group (backend nccl on CUDA, gloo on CPU) and
:func:`wrap_networks` puts the networks under DistributedDataParallel. Without those variables everything here
is a no-op around a single process.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Iterable

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from dna_depth_core.training.config import TrainConfig


@dataclasses.dataclass
class DistEnv:
    """Where this process stands: ``world_size`` ranks, this one ``rank`` (``local_rank`` on its node), its
    ``device``; ``initialized_here`` when :func:`setup_distributed` created the process group (and
    :meth:`close` destroys it)."""

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

    def all_agree(self, ok: bool) -> bool:
        """True when every rank says ``ok`` (an all-reduce MIN of a flag on this rank's device)."""
        if not self.distributed:
            return ok
        flag = torch.tensor([1.0 if ok else 0.0], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0.5)

    def close(self) -> None:
        """Leave the process group if this process created it."""
        if self.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(cfg: TrainConfig) -> DistEnv:
    """Device, process group and CPU threads from ``cfg.device``, ``cfg.cpu_threads`` and the torchrun env.

    ``device: auto`` takes CUDA when present (``cuda:LOCAL_RANK`` under torchrun), else the CPU. CPU ranks share
    the cores: without ``cpu_threads`` each of them gets ``threads / world_size`` intra-op threads."""
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
    if cfg.cpu_threads is not None:
        torch.set_num_threads(cfg.cpu_threads)
    elif device.type == "cpu" and torch.get_num_threads() > 1 and world > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // world))
    return env


def wrap_networks(env: DistEnv, cfg: TrainConfig, depth_net: nn.Module,
                  pose_net: nn.Module | None) -> tuple[nn.Module, nn.Module | None]:
    """The modules the training step calls: the networks themselves in one process; under several ranks each
    wrapped in DistributedDataParallel (after SyncBatchNorm conversion with ``cfg.sync_batchnorm``). The depth
    network's DDP looks for unused parameters when ``num_scales < 4`` (the unused heads get no gradient)."""
    if not env.distributed:
        return depth_net, pose_net
    ids = [env.device.index] if env.device.type == "cuda" else None
    if cfg.sync_batchnorm:
        depth_net = nn.SyncBatchNorm.convert_sync_batchnorm(depth_net)
    depth_model = DistributedDataParallel(depth_net, device_ids=ids, find_unused_parameters=cfg.num_scales < 4)
    pose_model = None
    if pose_net is not None:
        pose = nn.SyncBatchNorm.convert_sync_batchnorm(pose_net) if cfg.sync_batchnorm else pose_net
        pose_model = DistributedDataParallel(pose, device_ids=ids)
    return depth_model, pose_model


def broadcast_buffers(env: DistEnv, modules: Iterable[nn.Module | None]) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). DDP broadcasts them at the start of each
    forward anyway, so this changes nothing in training; it makes the ranks' models identical between steps
    (checkpoints, the end of training)."""
    if not env.distributed:
        return
    for module in modules:
        if module is not None:
            for buf in module.buffers():
                dist.broadcast(buf.data, src=0)
