"""Training: self-supervised depth (and pose) from monocular video, one process or a ``torchrun`` job.

>>> from dna_depth_core.training import load_config, train
>>> cfg = load_config("config/train/train_synthetic.yaml", ["max_steps=100"])
>>> summary = train(cfg)                       # or train(cfg, resume="runs/synthetic")

Modules, lowest first (each imports only from those above it, and from the layers below training):

- ``config``: ``TrainConfig``, every option in one dataclass; YAML files and ``key=value`` overrides.
- ``rng``: seeds (``mix_seed``, ``seed_everything``, ``seeded_rngs``) and RNG state as JSON.
- ``distributed``: ``DistEnv`` and ``setup_distributed`` (torchrun env, process group, device, CPU threads),
  DistributedDataParallel wrapping, buffer broadcast.
- ``runlog``: ``RunLog``, the CSV logs and TensorBoard; a run's logs hold only that run's rows.
- ``datasets``: the ``dataset:`` registry (``register_dataset``, ``build_dataset``; sources ``kitti`` and
  ``bag``), ``GroundTruthPoses``, the item layout readers, and the seeded sampler and items.
- ``networks``: ``build_depth_net`` / ``build_pose_net``, the networks of a config with their initialisation.
- ``state``: checkpoint folders, the atomic ``latest`` pointer, optimizer state to and from safetensors, the lr
  schedule, ``resolve_checkpoint``, save and resume.
- ``trainer``: ``Trainer`` and ``train``, the loop (batch -> depth -> poses -> warps and losses -> step).
"""
from dna_depth_core.training.config import TrainConfig, load_config, parse_overrides  # noqa: F401
from dna_depth_core.training.datasets import build_dataset, register_dataset  # noqa: F401
from dna_depth_core.training.networks import build_depth_net, build_pose_net  # noqa: F401
from dna_depth_core.training.state import config_from_checkpoint, resolve_checkpoint  # noqa: F401
from dna_depth_core.training.trainer import NonFiniteLossError, Trainer, train  # noqa: F401

__all__ = sorted(["TrainConfig", "load_config", "parse_overrides", "build_dataset", "register_dataset",
                  "build_depth_net", "build_pose_net", "config_from_checkpoint", "resolve_checkpoint",
                  "NonFiniteLossError", "Trainer", "train"])
