"""The Monodepth2 depth decoder (the paper's baseline row), written from its published description.

Channels ``[16, 32, 64, 128, 256]`` for levels 0..4. For i = 4 down to 0: ``ConvBlock(in -> ch[i])``
(``in`` = the deepest encoder channel count at i = 4, else ``ch[i+1]``), nearest x2 upsample, concatenate the
encoder feature of level i-1 when i > 0, ``ConvBlock(-> ch[i])``. At i in {0, 1, 2, 3} a reflection-padded 3x3
conv (ch[i] -> 1) + sigmoid gives the disparity of scale i.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from dna_depth_core.models.layers import Conv3x3, ConvBlock, upsample2

CHANNELS = (16, 32, 64, 128, 256)


class Monodepth2Decoder(nn.Module):
    """Input: five encoder features at strides 2..32. Output: ``[(B,1,H,W), ..., (B,1,H/8,W/8)]`` sigmoids."""

    def __init__(self, encoder_channels: Sequence[int]):
        super().__init__()
        enc = tuple(int(c) for c in encoder_channels)
        if len(enc) != 5:
            raise ValueError(f"encoder_channels: expected 5 levels, got {len(enc)}")
        self.encoder_channels = enc
        self.first = nn.ModuleList()   # index i: ConvBlock before the upsample
        self.second = nn.ModuleList()  # index i: ConvBlock after the upsample (+ skip)
        for i in range(5):
            cin = enc[4] if i == 4 else CHANNELS[i + 1]
            self.first.append(ConvBlock(cin, CHANNELS[i]))
            skip = enc[i - 1] if i > 0 else 0
            self.second.append(ConvBlock(CHANNELS[i] + skip, CHANNELS[i]))
        self.heads = nn.ModuleList(Conv3x3(CHANNELS[i], 1) for i in range(4))

    @torch.no_grad()
    def set_disparity_bias(self, value: float) -> None:
        """Set the bias of every disparity head (the 3x3 conv before the sigmoid) to ``value``: with zero weights
        there, every disparity is ``sigmoid(value)``."""
        for head in self.heads:
            head.conv.bias.fill_(float(value))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != 5:
            raise ValueError(f"features: expected 5 encoder levels, got {len(features)}")
        x = features[4]
        disps: list[torch.Tensor | None] = [None] * 4
        for i in range(4, -1, -1):
            x = upsample2(self.first[i](x))
            if i > 0:
                x = torch.cat([x, features[i - 1]], dim=1)
            x = self.second[i](x)
            if i < 4:
                disps[i] = torch.sigmoid(self.heads[i](x))
        return disps  # type: ignore[return-value]
