"""Convert the authors' released DNA-Depth weights (monodepth2-style folders) into a dna-depth checkpoint.

A released folder holds ``encoder.pth`` (lukemelas EfficientNet-PyTorch names under ``model.``, plus the plain
entries ``height``, ``width``, ``use_stereo``), ``depth.pth`` (the decoder) and, when present, ``pose_encoder.pth``
(ResNet-18, 6 input channels) and ``pose.pth`` (pose decoder ``net.0..3``). Files are read with
``torch.load(weights_only=True)``: tensors and plain values only, never code.

The authors feed images in [0, 1] without normalisation, so the converted checkpoint records ``normalization="none"``.
"""
from __future__ import annotations

import os
import re

import torch

from dna_depth_core.io.checkpoint import save_checkpoint
from dna_depth_core.io.errors import one_line
from dna_depth_core.models.depth_net import DepthNet
from dna_depth_core.models.pose import PoseNet
from dna_depth_core.models.registry import build_model

# Official decoder column index -> our node letter.
_COLUMN = "xyzw"

_SEP = {"depthwise_conv.conv.weight": "depthwise.weight",
        "pointwise_conv.conv.weight": "pointwise.weight",
        "pointwise_conv.conv.bias": "pointwise.bias"}
_NODE_PART = {"up_conv": "up", "conv": "mid", "down_conv": "down", "iconv": "fuse"}


def _sep(rest: str, key: str) -> str:
    if rest not in _SEP:
        raise ValueError(f"depth.pth: unexpected key {key}")
    return _SEP[rest]


def official_decoder_key(key: str) -> str:
    """Our DNADecoder parameter name for one key of the authors' ``depth.pth``."""
    m = re.fullmatch(r"iconv(\d)_0\.(.+)", key)
    if m:
        return f"laterals.{int(m.group(1)) - 1}.{_sep(m.group(2), key)}"
    m = re.fullmatch(r"simfpn(\d)_(\d)\.([a-z_]+)\.(.+)", key)
    if m:
        node = f"{_COLUMN[int(m.group(2))]}{m.group(1)}"
        part, rest = m.group(3), m.group(4)
        if part == "cat_conv":
            return f"nodes.{node}.conv.{rest}"
        if part in _NODE_PART:
            return f"nodes.{node}.{_NODE_PART[part]}.{_sep(rest, key)}"
    if key.startswith("upconv1."):
        return "tail_up." + _sep(key[len("upconv1."):], key)
    if key.startswith("conv1.0."):
        return "tail_conv." + key[len("conv1.0."):]
    if key.startswith("conv1.2."):
        return "tail_out." + _sep(key[len("conv1.2."):], key)
    m = re.fullmatch(r"attn_(\d)\.fc\.([02])\.weight", key)
    if m:
        return f"heads.{m.group(1)}.attention.{'fc1' if m.group(2) == '0' else 'fc2'}.weight"
    m = re.fullmatch(r"disp(\d)\.0\.(.+)", key)
    if m:
        return f"heads.{m.group(1)}.conv.{_sep(m.group(2), key)}"
    raise ValueError(f"depth.pth: unexpected key {key}")


def _load_pth(path: str, plain: tuple[str, ...] | None = ()) -> dict:
    """The tensor dict in ``path`` (``torch.load(weights_only=True)``): string keys, tensor values, except the
    plain values named in ``plain`` (None: any entry may be a plain value). FileNotFoundError / ValueError naming
    the file otherwise."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"missing file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, or holds objects other than tensors
        raise ValueError(f"{path}: cannot be read as a tensor dict ({one_line(exc)})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: key {one_line(repr(key), 60)} is not a tensor name (a string)")
        if plain is not None and key not in plain and not isinstance(value, torch.Tensor):
            raise ValueError(f"{path}: entry '{one_line(key, 80)}' is a {type(value).__name__}, not a tensor")
    return obj


def _input_size(enc: dict, path: str) -> tuple[int, int]:
    """``(height, width)`` recorded in the authors' ``encoder.pth`` (default 192 x 640)."""
    out = []
    for name, default in (("height", 192), ("width", 640)):
        value = enc.get(name, default)
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value.item())
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0 and value % 32 == 0):
            raise ValueError(f"{path}: '{name}' is {one_line(repr(value), 60)}, not a positive multiple of 32")
        out.append(value)
    return out[0], out[1]


def load_official_depth(src_dir: str, model: str) -> DepthNet:
    """Build ``model`` (dna_b0 or dna_b1) with the weights of an official folder; eval mode, no normalisation.

    Raises:
        FileNotFoundError: ``encoder.pth`` or ``depth.pth`` missing.
        ValueError: a file that is not a tensor dict, or whose tensors do not fit ``model`` (named).
    """
    if model not in ("dna_b0", "dna_b1"):
        raise ValueError(f"--model: official weights exist for dna_b0 and dna_b1, not '{model}'")
    enc_path, dec_path = os.path.join(src_dir, "encoder.pth"), os.path.join(src_dir, "depth.pth")
    enc = _load_pth(enc_path, plain=("height", "width", "use_stereo"))
    dec = _load_pth(dec_path)
    height, width = _input_size(enc, enc_path)
    net = build_model(model, normalization="none", height=height, width=width)
    enc_tensors = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor) and v.dim() > 0
                   or k.endswith("num_batches_tracked")}
    try:
        net.encoder.load_lukemelas_or_timm(enc_tensors)
    except ValueError as exc:
        raise ValueError(f"{enc_path}: does not fit {model}: {one_line(str(exc))}") from None
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"{enc_path}: does not fit {model} ({one_line(exc)})") from None
    try:
        ours = {official_decoder_key(k): v for k, v in dec.items()}
    except ValueError as exc:
        raise ValueError(f"{dec_path}: {one_line(str(exc).removeprefix('depth.pth: '))}") from None
    own = net.decoder.state_dict()
    missing = sorted(set(own) - set(ours))
    if missing:
        raise ValueError(f"{dec_path}: {len(missing)} decoder tensors missing, e.g. {missing[:3]}")
    for k, v in own.items():
        if tuple(ours[k].shape) != tuple(v.shape):
            raise ValueError(f"{dec_path}: tensor for {k} has shape {tuple(ours[k].shape)}, "
                             f"{model} needs {tuple(v.shape)}")
    try:
        net.decoder.load_state_dict(ours, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{dec_path}: does not fit the {model} decoder ({one_line(exc)})") from None
    return net.eval()


def load_official_pose(src_dir: str):
    """The pose network of an official folder, or None when ``pose_encoder.pth``/``pose.pth`` are absent.

    The authors' pose decoder predicts two transforms (12 outputs) of which only the first is ever used; we keep
    its first 6 output rows, which is the same function. ValueError naming the file when one does not fit.
    """
    enc_path, dec_path = os.path.join(src_dir, "pose_encoder.pth"), os.path.join(src_dir, "pose.pth")
    if not (os.path.exists(enc_path) and os.path.exists(dec_path)):
        return None
    raw = _load_pth(enc_path, plain=None)
    enc = {k.removeprefix("encoder."): v for k, v in raw.items() if isinstance(v, torch.Tensor)}
    enc = {k: v for k, v in enc.items() if not k.startswith("fc.")}
    dec = _load_pth(dec_path)
    pose = PoseNet()
    try:
        pose.encoder.load_state_dict(enc, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{enc_path}: does not fit a 6-channel ResNet-18 ({one_line(exc)})") from None
    names = {"net.0": "squeeze", "net.1": "conv1", "net.2": "conv2", "net.3": "out"}
    state = {}
    for key, value in dec.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix not in names:
            raise ValueError(f"{dec_path}: unexpected key {one_line(key, 80)}")
        if prefix == "net.3":
            value = value[:6]
        state[f"{names[prefix]}.{leaf}"] = value
    try:
        pose.decoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{dec_path}: does not fit the pose decoder ({one_line(exc)})") from None
    return pose.eval()


def convert_official(src_dir: str, model: str, out_path: str) -> DepthNet:
    """Convert an official folder to one safetensors checkpoint at ``out_path``; returns the depth network."""
    if not os.path.isdir(src_dir):
        raise FileNotFoundError(f"not a folder: {src_dir}")
    net = load_official_depth(src_dir, model)
    pose = load_official_pose(src_dir)
    provenance = {"source": "authors' official release (converted)", "src_dir": os.path.abspath(src_dir),
                  "files": sorted(f for f in os.listdir(src_dir) if f.endswith(".pth")),
                  "note": "authors feed [0,1] images without normalisation"}
    save_checkpoint(net, out_path, pose_net=pose, provenance=provenance)
    return net
