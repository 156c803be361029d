"""``DepthNet``: encoder + decoder + input normalisation, with the config that a checkpoint records."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import torch
import torch.nn as nn

# Input normalisations by name: (mean, std) per RGB channel, applied to images in [0, 1].
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),                 # the authors' DNA-Depth code feeds [0, 1]
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # timm's tf_efficientnet_b0/b1 ImageNet weights
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),             # EfficientNet-Lite ImageNet weights
    "monodepth2": ((0.45, 0.45, 0.45), (0.225, 0.225, 0.225)),   # Monodepth2's ResNet encoders
}


@dataclasses.dataclass
class DepthConfig:
    """Everything needed to rebuild a depth network and use its output. Stored in every checkpoint."""

    name: str                      # registry name, e.g. "dna_b0"
    encoder: str                   # timm model name, e.g. "tf_efficientnet_b0"
    decoder: str                   # "dna" or "monodepth2"
    normalization: str = "none"    # a key of NORMALIZATIONS
    height: int = 192              # input size the network was trained at (multiples of 32)
    width: int = 640
    min_depth: float = 0.1         # disparity -> depth range (geometry.disp_to_depth)
    max_depth: float = 100.0

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization: unknown '{self.normalization}', expected one of {sorted(NORMALIZATIONS)}")
        if self.decoder not in ("dna", "monodepth2"):
            raise ValueError(f"decoder: unknown '{self.decoder}', expected 'dna' or 'monodepth2'")
        for field in ("height", "width"):
            v = getattr(self, field)
            if int(v) != v or v <= 0 or v % 32:
                raise ValueError(f"{field}: {v} is not a positive multiple of 32")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"min_depth/max_depth: need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "DepthConfig":
        """The config a mapping describes (e.g. a checkpoint's JSON). Raises ValueError naming the problem: not a
        mapping, unknown or missing fields, a value of the wrong type (text, integer, finite number), or one that
        ``__post_init__`` refuses."""
        if not isinstance(d, dict):
            raise ValueError(f"depth config: expected an object of fields, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"depth config: unknown fields {sorted(map(str, unknown))}")
        missing = [name for name, f in fields.items() if name not in d and f.default is dataclasses.MISSING]
        if missing:
            raise ValueError(f"depth config: missing fields {missing}")
        for name, value in d.items():
            kind = fields[name].type
            if kind == "str":
                ok = isinstance(value, str)
            elif kind == "int":
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:  # float: any finite number
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok:
                want = {"str": "text", "int": "an integer"}.get(kind, "a finite number")
                raise ValueError(f"depth config: {name} must be {want}, got {value!r:.60}")
        return cls(**d)


def check_image_batch(x: torch.Tensor, name: str = "x") -> None:
    """Raise ValueError unless ``x`` is a float ``(B, 3, H, W)`` tensor with H and W multiples of 32."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (B, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor in [0, 1], got dtype {x.dtype}")
    h, w = x.shape[-2:]
    if h % 32 or w % 32:
        raise ValueError(f"{name}: height and width must be multiples of 32, got {h}x{w}")


class DepthNet(nn.Module):
    """Monocular depth network.

    ``forward(x)``: ``x`` of shape ``(B, 3, H, W)``, float in ``[0, 1]``, H and W multiples of 32. Returns the four
    sigmoid disparities ``[(B,1,H,W), (B,1,H/2,W/2), (B,1,H/4,W/4), (B,1,H/8,W/8)]`` (scale 0 first). The input
    normalisation that the encoder's weights expect (``config.normalization``) is applied inside.
    Convert a disparity to metres with ``dna_depth_core.geometry.disp_to_depth(s, config.min_depth, config.max_depth)``.
    """

    def __init__(self, config: DepthConfig, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.decoder = decoder
        mean, std = NORMALIZATIONS[config.normalization]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def set_normalization(self, name: str) -> None:
        """Change the input normalisation (and the config that records it)."""
        if name not in NORMALIZATIONS:
            raise ValueError(f"normalization: unknown '{name}', expected one of {sorted(NORMALIZATIONS)}")
        mean, std = NORMALIZATIONS[name]
        self.mean.copy_(torch.tensor(mean).view(1, 3, 1, 1))
        self.std.copy_(torch.tensor(std).view(1, 3, 1, 1))
        self.config = dataclasses.replace(self.config, normalization=name)

    def set_disparity_bias(self, value: float) -> None:
        """Initialise the disparity heads: the bias of each head's last convolution (pre-sigmoid) becomes
        ``value`` (e.g. -3 starts the disparities near sigmoid(-3) = 0.047, far from the camera). The decoder
        provides ``set_disparity_bias``."""
        set_bias = getattr(self.decoder, "set_disparity_bias", None)
        if set_bias is None:
            raise ValueError(f"decoder {type(self.decoder).__name__} has no set_disparity_bias")
        set_bias(value)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_image_batch(x)
        if self.config.normalization != "none":
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.decoder(self.encoder(x))
