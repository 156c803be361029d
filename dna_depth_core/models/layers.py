"""Small building blocks shared by the decoders. Shapes are ``(B, C, H, W)`` throughout."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SeparableConv(nn.Module):
    """Depthwise 3x3 (no bias) then pointwise 1x1 (with bias); no normalisation, no activation.

    Padding is TensorFlow "same" with zeros, as in the authors' model: stride 1 pads one pixel on every side;
    stride 2 pads ``max((ceil(n/2) - 1) * 2 + 3 - n, 0)`` pixels per axis, the extra one at the bottom/right
    (for even sizes: nothing on top/left, one at bottom/right). Output: ``(B, C_out, ceil(H/s), ceil(W/s))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride: expected 1 or 2, got {stride}")
        self.stride = stride
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1 if stride == 1 else 0,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            h, w = x.shape[-2:]
            ph = max((-(-h // 2) - 1) * 2 + 3 - h, 0)
            pw = max((-(-w // 2) - 1) * 2 + 3 - w, 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return self.pointwise(self.depthwise(x))


class Conv3x3(nn.Module):
    """3x3 convolution with reflection padding of 1 (keeps ``(H, W)``), with bias."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, padding_mode="reflect", bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ConvBlock(nn.Module):
    """Reflection-padded 3x3 convolution followed by ELU (the Monodepth2 decoder's block)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = Conv3x3(in_channels, out_channels)
        self.act = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global average pool -> Linear(C, C/r, no bias) -> ReLU -> Linear(C/r, C, no bias)
    -> sigmoid -> rescale the input's channels. ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3))
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        return x * w[:, :, None, None]


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling: ``(B, C, H, W) -> (B, C, 2H, 2W)``."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
