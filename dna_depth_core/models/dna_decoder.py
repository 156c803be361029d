"""The DNA-Depth decoder: neighbour-layer aggregation with channel-attention disparity heads.

Encoder levels l1..l5 sit at strides 2, 4, 8, 16, 32. Every level first gets a lateral SeparableConv to C = 64
channels (with Dropout(0.5) in front of l4 and l5). Fusion nodes then combine only *adjacent* resolutions
(the paper's "neighbour layers"), column by column::

    column 0: x4 = N(l5, l4, l3)  x3 = N(l4, l3, l2)  x2 = N(l3, l2, l1)  x1 = Ntop(l2, l1)
    column 1: y3 = N(x4, x3, x2)  y2 = N(x3, x2, x1)  y1 = Ntop(x2, x1)
    column 2: z2 = N(y3, y2, y1)  z1 = Ntop(y2, y1)
    column 3: w1 = Ntop(z2, z1)
    full res: x0 = Sep(32->32)(Swish(Conv3x3(32->32)(Sep(64->32)(up2(w1)))))

Disparity heads (ChannelAttention -> SeparableConv(C->1) -> sigmoid): scale 3 from y3 (stride 8), scale 2 from z2
(stride 4), scale 1 from w1 (stride 2), scale 0 from x0 (full resolution).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from dna_depth_core.models.layers import ChannelAttention, Conv3x3, SeparableConv, upsample2

WIDTH = 64
HALF = WIDTH // 2


class FusionNode(nn.Module):
    """``N(coarser, same, finer)`` -> ``(B, 64, H, W)`` at the resolution of ``same``.

    ``up = Sep(64->32)(up2(coarser))``, ``mid = Sep(64->32)(same)``, ``down = Sep(64->32, stride 2)(finer)``,
    ``out = Swish(Conv3x3(Sep(96->64)(cat[up, mid, down])))``. The top node (stride-2 level) has no finer input:
    ``cat[up, mid]`` (64 channels) goes through ``Sep(64->64)``.
    """

    def __init__(self, top: bool = False):
        super().__init__()
        self.top = top
        self.up = SeparableConv(WIDTH, HALF)
        self.mid = SeparableConv(WIDTH, HALF)
        self.down = None if top else SeparableConv(WIDTH, HALF, stride=2)
        self.fuse = SeparableConv(2 * HALF if top else 3 * HALF, WIDTH)
        self.conv = Conv3x3(WIDTH, WIDTH)
        self.act = nn.SiLU(inplace=True)

    def forward(self, coarser: torch.Tensor, same: torch.Tensor, finer: torch.Tensor | None = None) -> torch.Tensor:
        parts = [self.up(upsample2(coarser)), self.mid(same)]
        if not self.top:
            if finer is None:
                raise ValueError("finer: a non-top fusion node needs the finer-resolution input")
            parts.append(self.down(finer))
        return self.act(self.conv(self.fuse(torch.cat(parts, dim=1))))


class DispHead(nn.Module):
    """ChannelAttention(C) -> SeparableConv(C->1) -> sigmoid: ``(B, C, H, W) -> (B, 1, H, W)`` in (0, 1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = ChannelAttention(channels)
        self.conv = SeparableConv(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(self.attention(x)))


# (name, coarser, same, finer) in evaluation order; None marks a top node. Names of column c at level l:
# x, y, z, w for c = 0..3 (level 0 is the full-resolution tail).
NODE_GRAPH: tuple[tuple[str, str, str, str | None], ...] = (
    ("x4", "l5", "l4", "l3"), ("x3", "l4", "l3", "l2"), ("x2", "l3", "l2", "l1"), ("x1", "l2", "l1", None),
    ("y3", "x4", "x3", "x2"), ("y2", "x3", "x2", "x1"), ("y1", "x2", "x1", None),
    ("z2", "y3", "y2", "y1"), ("z1", "y2", "y1", None),
    ("w1", "z2", "z1", None),
)
# Which node feeds the disparity head of each scale (scale 0 is the full-resolution tail).
HEAD_SOURCES = {3: "y3", 2: "z2", 1: "w1"}


class DNADecoder(nn.Module):
    """Neighbour-layer aggregation decoder.

    Input: five encoder features ``[(B, c1, H/2, W/2), ..., (B, c5, H/32, W/32)]``.
    Output: four sigmoid disparities ``[(B,1,H,W), (B,1,H/2,W/2), (B,1,H/4,W/4), (B,1,H/8,W/8)]``.
    """

    def __init__(self, encoder_channels: Sequence[int], dropout: float = 0.5):
        super().__init__()
        if len(encoder_channels) != 5:
            raise ValueError(f"encoder_channels: expected 5 levels, got {len(encoder_channels)}")
        self.encoder_channels = tuple(int(c) for c in encoder_channels)
        self.dropout = nn.Dropout(dropout)
        self.laterals = nn.ModuleList(SeparableConv(c, WIDTH) for c in self.encoder_channels)
        self.nodes = nn.ModuleDict({name: FusionNode(top=finer is None) for name, _, _, finer in NODE_GRAPH})
        self.tail_up = SeparableConv(WIDTH, HALF)
        self.tail_conv = Conv3x3(HALF, HALF)
        self.tail_act = nn.SiLU(inplace=True)
        self.tail_out = SeparableConv(HALF, HALF)
        self.heads = nn.ModuleList([DispHead(HALF)] + [DispHead(WIDTH) for _ in range(3)])

    @torch.no_grad()
    def set_disparity_bias(self, value: float) -> None:
        """Set the bias of every disparity head's last convolution (the pointwise conv before the sigmoid) to
        ``value``: with zero weights there, every disparity is ``sigmoid(value)``."""
        for head in self.heads:
            head.conv.pointwise.bias.fill_(float(value))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != 5:
            raise ValueError(f"features: expected 5 encoder levels, got {len(features)}")
        feats = {}
        for i, (f, lateral) in enumerate(zip(features, self.laterals)):
            if f.shape[1] != self.encoder_channels[i]:
                raise ValueError(f"features[{i}]: expected {self.encoder_channels[i]} channels, got {f.shape[1]}")
            if i >= 3:  # l4 and l5
                f = self.dropout(f)
            feats[f"l{i + 1}"] = lateral(f)
        for name, coarser, same, finer in NODE_GRAPH:
            feats[name] = self.nodes[name](feats[coarser], feats[same], feats[finer] if finer else None)
        x0 = self.tail_out(self.tail_act(self.tail_conv(self.tail_up(upsample2(feats["w1"])))))
        disps = [self.heads[0](x0)]
        for scale in (1, 2, 3):
            disps.append(self.heads[scale](feats[HEAD_SOURCES[scale]]))
        return disps
