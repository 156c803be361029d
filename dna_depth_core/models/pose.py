"""Pose network: ResNet-18 on two stacked frames -> axis-angle + translation.

Encoder: ResNet-18 with a 6-channel first convolution (ImageNet weights: the RGB filters duplicated and halved,
which is what timm does for ``in_chans=6``), input normalised as ``(x - 0.45) / 0.225``.
Decoder: 1x1 conv 512->256, ReLU, 3x3 conv 256->256, ReLU, 3x3 conv 256->256, ReLU, 1x1 conv 256->6, mean over
space, x ``output_scale`` (0.01). The first three outputs are the axis-angle, the last three the translation.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_depth_core.models.depth_net import NORMALIZATIONS


class PoseDecoder(nn.Module):
    """``(B, C, h, w)`` deepest encoder feature -> ``(axisangle (B, 3), translation (B, 3))``."""

    def __init__(self, in_channels: int = 512, width: int = 256, output_scale: float = 0.01):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, width, 1)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, 6, 1)
        self.output_scale = output_scale

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.squeeze(feature))
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.out(x).mean(dim=(2, 3)) * self.output_scale
        return x[:, :3], x[:, 3:]


class PoseNet(nn.Module):
    """``forward(frame_a, frame_b)``: two ``(B, 3, H, W)`` images in [0, 1], in temporal order ->
    ``(axisangle (B, 3), translation (B, 3))`` of the motion from ``a`` to ``b``.

    Turn them into a 4x4 transform with ``geometry.pose_vec_to_mat``; the trainer uses ``T_source_target`` for the
    warp (``invert=True`` when the source frame comes first in time).
    """

    def __init__(self, pretrained: str | None = None, output_scale: float = 0.01):
        super().__init__()
        import timm

        hub = pretrained == "imagenet"
        self.encoder = timm.create_model("resnet18", pretrained=hub, in_chans=6, num_classes=0, global_pool="")
        if pretrained not in (None, "imagenet"):
            load_resnet_weights(self.encoder, pretrained)
        self.decoder = PoseDecoder(self.encoder.num_features, output_scale=output_scale)
        mean, std = NORMALIZATIONS["monodepth2"]
        self.register_buffer("mean", torch.tensor(mean * 2).view(1, 6, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std * 2).view(1, 6, 1, 1), persistent=False)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if frame_a.shape != frame_b.shape or frame_a.dim() != 4 or frame_a.shape[1] != 3:
            raise ValueError(f"frame_a, frame_b: expected two (B, 3, H, W) tensors of one shape, got "
                             f"{tuple(frame_a.shape)} and {tuple(frame_b.shape)}")
        x = (torch.cat([frame_a, frame_b], dim=1) - self.mean) / self.std
        return self.decoder(self.encoder.forward_features(x))


def load_resnet_weights(encoder: nn.Module, path: str) -> None:
    """Load torchvision/timm-named ResNet weights from a file; a 3-channel first conv is duplicated and halved."""
    from dna_depth_core.models.encoders import _read_state_dict

    state = {k.removeprefix("encoder."): v for k, v in _read_state_dict(path).items()}
    w = state.get("conv1.weight")
    if w is not None and w.shape[1] == 3:
        state["conv1.weight"] = torch.cat([w, w], dim=1) / 2
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    encoder.load_state_dict(state, strict=True)
