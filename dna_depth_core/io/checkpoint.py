"""Checkpoint I/O: one safetensors file per model (weights + metadata). Nothing is ever unpickled.

Layout: tensors ``depth.<name>`` (the depth network) and optionally ``pose.<name>`` (the pose network).
Metadata (all strings): ``format`` ("dna-depth/1"), ``model`` (registry name), ``config`` (the DepthConfig as
JSON: encoder, decoder, normalisation, input size, depth range), ``input_size`` ("HxW"), ``normalization``,
``depth_range`` ("min,max" metres), ``provenance`` (JSON: where the weights came from) and ``training_config``
(JSON, may be "{}"), and ``pose_model`` ("resnet18", "lite0" or "small") with ``pose_output_scales`` (JSON:
``output_scale``, ``rotation_scale``) when a pose network is stored. Files are written atomically (temporary file +
rename).

Packed files (``packing`` = "int8-per-channel/1" in the metadata, :func:`save_packed_checkpoint`): the large weight
tensors of the chosen networks are stored as ``<name>.q`` (int8) and ``<name>.s`` (fp32 scale per output channel,
symmetric: ``w = q * s``), the other float tensors as fp16. :func:`read_checkpoint` expands them to fp32, so every
reader (``load_checkpoint``, the trainer's ``init_from``, the node) takes a packed file as it is.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from dna_depth_core.io.atomic import atomic_write
from dna_depth_core.models.depth_net import DepthConfig, DepthNet
from dna_depth_core.models.pose import build_pose_model, set_output_scales
from dna_depth_core.models.registry import build_from_config

FORMAT = "dna-depth/1"
PACKING = "int8-per-channel/1"
#: the tensors that :func:`pack_tensors` stores int8 by default: both encoders' and the pose network's weights
INT8_PREFIXES = ("depth.encoder.", "pose.")


def _plain_state(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; clone to contiguous CPU tensors.
    return {f"{prefix}{k}": v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(net: DepthNet, path: str, pose_net: nn.Module | None = None,
                    provenance: dict[str, Any] | None = None,
                    training_config: dict[str, Any] | None = None) -> None:
    """Save ``net`` (and optionally ``pose_net``) to one safetensors file at ``path``, atomically."""
    if not isinstance(net, DepthNet):
        raise ValueError(f"net: expected a DepthNet, got {type(net).__name__}")
    cfg = net.config
    tensors = _plain_state(net, "depth.")
    if pose_net is not None:
        tensors.update(_plain_state(pose_net, "pose."))
    metadata = {
        "format": FORMAT,
        "model": cfg.name,
        "config": cfg.to_json(),
        "input_size": f"{cfg.height}x{cfg.width}",
        "normalization": cfg.normalization,
        "depth_range": f"{cfg.min_depth},{cfg.max_depth}",
        "provenance": json.dumps(provenance or {}, sort_keys=True),
        "training_config": json.dumps(training_config or {}, sort_keys=True, default=str),
    }
    if pose_net is not None:
        metadata["pose_model"] = getattr(pose_net, "kind", "resnet18")
        decoder = getattr(pose_net, "decoder", None)
        if decoder is not None and hasattr(decoder, "output_scale"):
            metadata["pose_output_scales"] = json.dumps({"output_scale": decoder.output_scale,
                                                         "rotation_scale": getattr(decoder, "rotation_scale", None)})
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def _check_safetensors_file(path: str) -> None:
    """Name the problem of a file that is not a complete safetensors file (missing, empty, truncated, garbage)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"checkpoint {path}: not a file")
    size = os.path.getsize(path)
    if size < 8:
        raise ValueError(f"checkpoint {path}: file is empty or truncated ({size} bytes)")
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8:
            raise ValueError(f"checkpoint {path}: not a safetensors file, or truncated "
                             f"(header claims {header_len} bytes, file has {size})")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"checkpoint {path}: corrupt safetensors header ({exc})") from exc
    if not isinstance(header, dict):
        raise ValueError(f"checkpoint {path}: corrupt safetensors header")
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    have = size - 8 - header_len
    if end > have:
        raise ValueError(f"checkpoint {path}: truncated (tensor data needs {end} bytes, file holds {have})")


def read_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(tensors, metadata)`` of a dna-depth checkpoint; raise naming the problem if it is not one."""
    path = os.fspath(path)
    if path.endswith((".pth", ".pt", ".ckpt")) and not path.endswith(".safetensors"):
        raise ValueError(f"checkpoint {path}: expected a .safetensors file; convert the authors' .pth folders "
                         f"with `dna-depth convert-official`")
    _check_safetensors_file(path)
    try:
        with safe_open(path, framework="pt") as f:
            metadata = dict(f.metadata() or {})
        tensors = load_file(path)
    except SafetensorError as exc:
        raise ValueError(f"checkpoint {path}: corrupt safetensors file ({exc})") from exc
    if metadata.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path}: not a dna-depth checkpoint (format={metadata.get('format')!r}, "
                         f"expected {FORMAT!r})")
    packing = metadata.pop("packing", None)
    if packing is not None:
        if packing != PACKING:
            raise ValueError(f"checkpoint {path}: unknown packing {packing!r} (this version reads {PACKING!r})")
        tensors = unpack_tensors(tensors, path)
    return tensors, metadata


def pack_tensors(tensors: dict[str, torch.Tensor], int8_prefixes=INT8_PREFIXES,
                 min_numel: int = 4096) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` -> packed ``{name: tensor}``: float tensors of at least 2 dimensions and ``min_numel``
    elements whose name starts with one of ``int8_prefixes`` become ``name.q`` (int8, same shape) and ``name.s``
    (fp32, ``(shape[0],)``: the largest magnitude of each output channel / 127); the other float tensors become
    fp16; integer tensors (BatchNorm counters) stay as they are."""
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if not v.is_floating_point():
            out[k] = v
        elif v.dim() >= 2 and v.numel() >= min_numel and k.startswith(tuple(int8_prefixes)):
            flat = v.detach().float().reshape(v.shape[0], -1)
            s = flat.abs().amax(dim=1).clamp_min(1e-12) / 127.0
            out[k + ".q"] = torch.round(flat / s[:, None]).clamp(-127, 127).to(torch.int8).reshape(v.shape)
            out[k + ".s"] = s.contiguous()
        else:
            out[k] = v.detach().to(torch.float16)
    return out


def unpack_tensors(packed: dict[str, torch.Tensor], path: str = "<packed>") -> dict[str, torch.Tensor]:
    """The inverse of :func:`pack_tensors` (up to the rounding): fp32 tensors, integer tensors as they are."""
    out: dict[str, torch.Tensor] = {}
    for k, v in packed.items():
        if k.endswith(".s") and k[:-2] + ".q" in packed:
            continue
        if k.endswith(".q") and v.dtype == torch.int8:
            name = k[:-2]
            if name + ".s" not in packed:
                raise ValueError(f"checkpoint {path}: packed tensor {k} has no scale {name}.s")
            s = packed[name + ".s"].float()
            out[name] = (v.float().reshape(v.shape[0], -1) * s[:, None]).reshape(v.shape)
        else:
            out[k] = v.float() if v.is_floating_point() else v
    return out


def save_packed_checkpoint(src: str, path: str, provenance: dict[str, Any] | None = None,
                           int8_prefixes=INT8_PREFIXES) -> None:
    """Write the checkpoint ``src`` packed (:func:`pack_tensors`) to ``path``, atomically; ``provenance`` replaces
    the file's provenance (the packing is added to it)."""
    tensors, metadata = read_checkpoint(src)
    metadata = dict(metadata)
    prov = dict(provenance if provenance is not None else json.loads(metadata.get("provenance", "{}")))
    prov["packing"] = (f"{PACKING}: int8 weights with a per-output-channel scale for tensors starting with "
                       f"{list(int8_prefixes)} (>= 4096 elements), fp16 for the other float tensors")
    metadata["provenance"] = json.dumps(prov, sort_keys=True)
    metadata["packing"] = PACKING
    packed = pack_tensors(tensors, int8_prefixes)
    atomic_write(path, lambda tmp: save_file(packed, tmp, metadata=metadata))


def load_state_into(module: nn.Module, tensors: dict[str, torch.Tensor], prefix: str, path: str) -> None:
    """Load the ``prefix``-ed tensors of a checkpoint (``read_checkpoint``) into ``module``: ValueError naming
    the missing, unexpected or mis-shaped tensors (``path`` names the file in the message)."""
    own = module.state_dict()
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise ValueError(f"checkpoint {path}: {len(missing)} tensors missing for the {prefix[:-1]} network, "
                         f"e.g. {missing[:3]}")
    if unexpected:
        raise ValueError(f"checkpoint {path}: {len(unexpected)} tensors do not belong to this model, "
                         f"e.g. {unexpected[:3]}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"checkpoint {path}: tensor {prefix}{k} has shape {tuple(state[k].shape)}, "
                             f"the model needs {tuple(v.shape)} (wrong model?)")
    module.load_state_dict(state, strict=True)


def config_from_metadata(metadata: dict[str, str], path: str = "<checkpoint>") -> DepthConfig:
    try:
        return DepthConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"checkpoint {path}: missing or corrupt 'config' metadata ({exc})") from exc


def load_checkpoint(path: str, map_location: str | torch.device = "cpu",
                    expected_model: str | None = None) -> DepthNet:
    """Load the depth network stored at ``path``, in eval mode. Raises ValueError/FileNotFoundError naming the
    problem for a missing, corrupt or truncated file, missing tensors, or a model other than ``expected_model``."""
    tensors, metadata = read_checkpoint(path)
    config = config_from_metadata(metadata, path)
    if expected_model is not None and config.name != expected_model:
        raise ValueError(f"checkpoint {path}: holds model '{config.name}', expected '{expected_model}'")
    net = build_from_config(config)
    load_state_into(net, tensors, "depth.", path)
    return net.to(map_location).eval()


def load_pose_network(path: str, map_location: str | torch.device = "cpu") -> nn.Module | None:
    """The pose network stored beside the depth network, or None when the checkpoint has none."""
    tensors, metadata = read_checkpoint(path)
    if not any(k.startswith("pose.") for k in tensors):
        return None
    pose = build_pose_model(metadata.get("pose_model", "resnet18"))
    load_state_into(pose, tensors, "pose.", path)
    if "pose_output_scales" in metadata:  # older files: the default scales (0.01 for both)
        scales = json.loads(metadata["pose_output_scales"])
        set_output_scales(pose, scales["output_scale"], scales.get("rotation_scale"))
    return pose.to(map_location).eval()


def checkpoint_metadata(path: str) -> dict[str, Any]:
    """The decoded metadata of a checkpoint (JSON fields parsed), for display."""
    _, metadata = read_checkpoint(path)
    out: dict[str, Any] = dict(metadata)
    for key in ("config", "provenance", "training_config"):
        if key in out:
            out[key] = json.loads(out[key])
    return out
