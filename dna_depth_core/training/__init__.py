"""Training: ``TrainConfig`` (all options, YAML in/out) and the trainer (one process or a ``torchrun`` job).

>>> from dna_depth_core.training import load_config, train
>>> cfg = load_config("config/train/train_synthetic.yaml", ["max_steps=100"])
>>> summary = train(cfg)                       # or train(cfg, resume="runs/synthetic")

The trainer module imports torch; it is loaded lazily so that reading a config does not.
"""
from __future__ import annotations

import importlib

from dna_depth_core.training.config import TrainConfig, load_config, parse_overrides  # noqa: F401

_LAZY = {
    "Trainer": "trainer",
    "train": "trainer",
    "build_dataset": "trainer",
    "register_dataset": "trainer",
    "build_depth_net": "trainer",
    "build_pose_net": "trainer",
    "resolve_checkpoint": "trainer",
    "NonFiniteLossError": "trainer",
}

__all__ = sorted(["TrainConfig", "load_config", "parse_overrides", *_LAZY])


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
