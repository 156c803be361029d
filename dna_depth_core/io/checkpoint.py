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
import math
import os
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import save_file

from dna_depth_core.io.atomic import atomic_write
from dna_depth_core.io.errors import one_line
from dna_depth_core.io.safetensors_file import read_safetensors
from dna_depth_core.models.depth_net import DepthConfig, DepthNet
from dna_depth_core.models.pose import build_pose_model, list_pose_models, set_output_scales
from dna_depth_core.models.registry import build_model, list_models

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


def read_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return ``(tensors, metadata)`` of a dna-depth checkpoint, after checking the whole safetensors header
    (:func:`dna_depth_core.io.safetensors_file.read_header`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a ``.pth`` file, or a file that is not a complete, well-formed safetensors file, or one whose
            metadata does not say it is a dna-depth checkpoint (the message names the file and the problem).
    """
    path = os.fspath(path)
    if path.endswith((".pth", ".pt", ".ckpt")) and not path.endswith(".safetensors"):
        raise ValueError(f"checkpoint {path}: expected a .safetensors file; convert the authors' .pth folders "
                         f"with `dna-depth convert-official`")
    tensors, metadata = read_safetensors(path, "checkpoint")
    if metadata.get("format") != FORMAT:
        fmt = metadata.get("format")
        raise ValueError(f"checkpoint {path}: not a dna-depth checkpoint (format="
                         f"{one_line(repr(fmt), 80)}, expected {FORMAT!r})")
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
                         f"e.g. {[one_line(k, 80) for k in unexpected[:3]]}")
    for k, v in own.items():
        got = state[k]
        if tuple(got.shape) != tuple(v.shape):
            raise ValueError(f"checkpoint {path}: tensor {prefix}{k} has shape {tuple(got.shape)}, "
                             f"the model needs {tuple(v.shape)} (wrong model?)")
        if got.dtype != v.dtype and not (got.is_floating_point() and v.is_floating_point()):
            raise ValueError(f"checkpoint {path}: tensor {prefix}{k} is {got.dtype}, the model needs {v.dtype}")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ValueError(f"checkpoint {path}: tensor {prefix}{k} holds NaN or infinite values (a diverged "
                             f"training run?)")
    module.load_state_dict(state, strict=True)


def config_from_metadata(metadata: dict[str, str], path: str = "<checkpoint>") -> DepthConfig:
    """The DepthConfig recorded in a checkpoint's ``config`` metadata; ValueError naming ``path`` when it is
    missing, not JSON, or does not describe a config (unknown or missing fields, wrong types, bad values)."""
    if "config" not in metadata:
        raise ValueError(f"checkpoint {path}: no 'config' metadata (the network it holds is not described)")
    try:
        return DepthConfig.from_dict(json.loads(metadata["config"]))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"checkpoint {path}: corrupt 'config' metadata, not JSON ({one_line(exc)})") from None
    except ValueError as exc:
        raise ValueError(f"checkpoint {path}: bad 'config' metadata: {one_line(str(exc))}") from None


def build_network(config: DepthConfig, path: str = "<checkpoint>") -> DepthNet:
    """The (randomly initialised) network that ``config`` describes, built through the model registry: its
    ``name`` must be a registered model whose encoder and decoder are the config's. ValueError naming ``path``
    otherwise (no network outside the registry is ever built from a file's metadata)."""
    if config.name not in list_models():
        raise ValueError(f"checkpoint {path}: holds model '{one_line(config.name, 80)}', which this version does "
                         f"not know (known: {', '.join(list_models())})")
    net = build_model(config.name, normalization=config.normalization, height=config.height, width=config.width,
                      min_depth=config.min_depth, max_depth=config.max_depth)
    if (net.config.encoder, net.config.decoder) != (config.encoder, config.decoder):
        raise ValueError(f"checkpoint {path}: its config says model '{config.name}' with encoder "
                         f"'{one_line(config.encoder, 80)}' and decoder '{one_line(config.decoder, 80)}', but "
                         f"'{config.name}' is encoder '{net.config.encoder}' with decoder '{net.config.decoder}'")
    return net


def load_checkpoint(path: str, map_location: str | torch.device = "cpu",
                    expected_model: str | None = None) -> DepthNet:
    """Load the depth network stored at ``path``, in eval mode.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a missing, corrupt or truncated file, metadata that does not describe a known network, missing
            or misshapen tensors, or a model other than ``expected_model`` (one line naming the file and the
            problem).
    """
    tensors, metadata = read_checkpoint(path)
    config = config_from_metadata(metadata, path)
    if expected_model is not None and config.name != expected_model:
        raise ValueError(f"checkpoint {path}: holds model '{config.name}', expected '{expected_model}'")
    net = build_network(config, path)
    load_state_into(net, tensors, "depth.", path)
    return net.to(map_location).eval()


def _pose_scales(metadata: dict[str, str], path: str) -> tuple[float, float | None] | None:
    """``(output_scale, rotation_scale)`` from the ``pose_output_scales`` metadata, None when absent."""
    if "pose_output_scales" not in metadata:
        return None
    try:
        scales = json.loads(metadata["pose_output_scales"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"checkpoint {path}: corrupt 'pose_output_scales' metadata, not JSON "
                         f"({one_line(exc)})") from None
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0

    if not (isinstance(scales, dict) and number(scales.get("output_scale"))
            and (scales.get("rotation_scale") is None or number(scales.get("rotation_scale")))):
        raise ValueError(f"checkpoint {path}: bad 'pose_output_scales' metadata "
                         f"{one_line(metadata['pose_output_scales'], 120)} (expected {{\"output_scale\": a positive "
                         f"number, \"rotation_scale\": a positive number or null}})")
    return float(scales["output_scale"]), scales.get("rotation_scale")


def load_pose_network(path: str, map_location: str | torch.device = "cpu") -> nn.Module | None:
    """The pose network stored beside the depth network, or None when the checkpoint has none.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_checkpoint`; also an unknown ``pose_model`` or bad
            ``pose_output_scales`` metadata.
    """
    tensors, metadata = read_checkpoint(path)
    if not any(k.startswith("pose.") for k in tensors):
        return None
    kind = metadata.get("pose_model", "resnet18")
    if kind not in list_pose_models():
        raise ValueError(f"checkpoint {path}: pose_model '{one_line(kind, 80)}' unknown (known: "
                         f"{', '.join(list_pose_models())})")
    scales = _pose_scales(metadata, path)
    pose = build_pose_model(kind)
    load_state_into(pose, tensors, "pose.", path)
    if scales is not None:  # older files: the default scales (0.01 for both)
        set_output_scales(pose, *scales)
    return pose.to(map_location).eval()


def checkpoint_metadata(path: str) -> dict[str, Any]:
    """The decoded metadata of a checkpoint (JSON fields parsed), for display. Raises as :func:`read_checkpoint`,
    and ValueError naming the field when a JSON field is not JSON."""
    _, metadata = read_checkpoint(path)
    out: dict[str, Any] = dict(metadata)
    for key in ("config", "provenance", "training_config"):
        if key in out:
            try:
                out[key] = json.loads(out[key])
            except (json.JSONDecodeError, RecursionError) as exc:
                raise ValueError(f"checkpoint {path}: corrupt '{key}' metadata, not JSON ({one_line(exc)})") from None
    return out
