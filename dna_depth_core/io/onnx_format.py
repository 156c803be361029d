"""The project's ONNX file format: a depth network serialised to ONNX with self-describing metadata, and reading such
a file back (its metadata and DepthConfig), with errors that name the file and the problem.

The graph:

- input ``image``: ``(B, 3, H, W)`` float32 in [0, 1] (the input normalisation is inside the graph, as in
  ``DepthNet``); H and W must be multiples of 32.
- output ``disparity``: ``(B, 1, H, W)`` float32, the scale-0 sigmoid disparity. With ``all_scales=True`` also
  ``disparity_1``, ``disparity_2``, ``disparity_3`` (1/2, 1/4, 1/8 resolution).
- ``metadata_props`` (all strings, keys prefixed ``dna_depth.``): ``format`` (:data:`ONNX_FORMAT`), ``config``
  (the DepthConfig JSON of the network: model name, encoder, decoder, normalisation, training size, depth range),
  ``input_size`` (``HxW`` exported at; a dynamic graph accepts any multiple of 32), ``dynamic`` (``true``,
  ``false``, or ``batch`` when only the batch is dynamic), ``outputs`` (comma-separated output names),
  ``provenance`` (JSON: the source checkpoint's file name and provenance, when exported from a file), ``exporter``
  (JSON: torch and onnx versions, opset), ``graph_cleanup`` (JSON: the exact clean-ups applied,
  :mod:`dna_depth_core.io.onnx_cleanup`). An int8 model (``dna_depth_core.export.int8``) adds ``precision``
  (``int8``; absent means fp32), ``calibration_images`` and ``quantization`` (JSON). ``guard`` (JSON, written by
  ``dna-depth guard``) records the accuracy guard of the reduced-precision paths run from this file.

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is used: it needs no ``onnxscript`` and
handles the TF-"same" paddings (constant for every multiple-of-32 input, so a dynamic graph stays exact).

``onnx`` is an optional dependency (the ``onnx`` extra): it is imported by the functions that need it.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from typing import Any

import torch
import torch.nn as nn

from dna_depth_core.io.atomic import write_bytes
from dna_depth_core.io.checkpoint import checkpoint_metadata, load_checkpoint
from dna_depth_core.io.onnx_cleanup import cleanup as clean_graph
from dna_depth_core.models.depth_net import DepthConfig, DepthNet

ONNX_FORMAT = "dna-depth-onnx/1"
DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("disparity", "disparity_1", "disparity_2", "disparity_3")
META_PREFIX = "dna_depth."


def network_and_provenance(source: Any) -> tuple[DepthNet, dict[str, Any]]:
    """A DepthNet (eval mode) and the provenance an export records, from a DepthNet (provenance ``{}``) or a
    checkpoint path (loaded on the CPU; provenance ``{"checkpoint": file name, "provenance": the checkpoint's}``)."""
    if isinstance(source, nn.Module):
        if not isinstance(getattr(source, "config", None), DepthConfig):
            raise ValueError("net: expected a dna_depth_core DepthNet (a module with a DepthConfig 'config')")
        return source, {}
    path = os.fspath(source)
    net = load_checkpoint(path, map_location="cpu")
    meta = checkpoint_metadata(path)
    return net, {"checkpoint": os.path.basename(path), "provenance": meta.get("provenance", {})}


def check_input_size(height: int, width: int) -> None:
    """ValueError naming the dimension unless ``height`` and ``width`` are positive multiples of 32."""
    for name, v in (("height", height), ("width", width)):
        if int(v) != v or v <= 0 or v % 32:
            raise ValueError(f"{name}: {v} is not a positive multiple of 32")


class _GraphOutputs(nn.Module):
    """The depth network with the graph's outputs: scale 0 only, or all four scales."""

    def __init__(self, net: DepthNet, all_scales: bool):
        super().__init__()
        self.net = net
        self.all_scales = all_scales

    def forward(self, image: torch.Tensor):
        disps = self.net(image)
        return tuple(disps) if self.all_scales else disps[0]


def export_to_bytes(net: DepthNet, height: int | None = None, width: int | None = None, dynamic: bool = False,
                    all_scales: bool = False, opset: int = DEFAULT_OPSET,
                    provenance: dict[str, Any] | None = None, dynamic_batch: bool = False,
                    batch: int = 1, cleanup: bool = True) -> bytes:
    """The serialised ONNX model of ``net`` (a CPU float32 DepthNet) with this format's metadata.

    ``height``/``width`` default to ``net.config``'s; with ``dynamic`` (batch, height and width dynamic) they only
    set the tracing size. ``dynamic_batch`` makes only the batch dimension dynamic; otherwise the graph's batch is
    ``batch``. ``provenance`` is recorded as ``dna_depth.provenance``. ``cleanup`` applies the exact graph
    clean-ups of :mod:`dna_depth_core.io.onnx_cleanup` (recorded as ``dna_depth.graph_cleanup``). The model is
    checked with ``onnx.checker`` before it is returned.
    """
    import onnx  # optional dependency: onnx

    if opset < 17:
        raise ValueError(f"opset: {opset} is too old, use 17 or newer")
    cfg = net.config
    height = int(cfg.height if height is None else height)
    width = int(cfg.width if width is None else width)
    check_input_size(height, width)
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch: {batch} is not a positive integer")
    outputs = OUTPUT_NAMES if all_scales else OUTPUT_NAMES[:1]
    param = next(net.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ValueError("net: export a CPU float32 network (call net.float().cpu() first)")
    was_training = net.training
    wrapper = _GraphOutputs(net.eval(), all_scales).eval()
    dummy = torch.rand(int(batch), 3, height, width, generator=torch.Generator().manual_seed(0))
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
        for i, name in enumerate(outputs):
            dynamic_axes[name] = {0: "batch", 2: "height" if i == 0 else f"height_{i}",
                                  3: "width" if i == 0 else f"width_{i}"}
    elif dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape checks and the legacy-exporter notice
            torch.onnx.export(wrapper, (dummy,), buf, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=list(outputs), dynamic_axes=dynamic_axes,
                              do_constant_folding=True)
    finally:
        net.train(was_training)
    model = onnx.load_from_string(buf.getvalue())
    set_metadata(model, {
        "format": ONNX_FORMAT,
        "config": cfg.to_json(),
        "input_size": f"{height}x{width}",
        "dynamic": "true" if dynamic else ("batch" if dynamic_batch else "false"),
        "outputs": ",".join(outputs),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
        "exporter": json.dumps({"torch": torch.__version__, "onnx": onnx.__version__, "opset": opset}),
    })
    model.producer_name = "dna-depth"
    model.doc_string = (f"dna-depth {cfg.name}: image (B,3,H,W) float32 in [0,1] -> disparity (B,1,H,W) sigmoid; "
                        f"depth = 1 / (1/{cfg.max_depth} + (1/{cfg.min_depth} - 1/{cfg.max_depth}) * disparity)")
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if not cleanup:
        return data
    data, report = clean_graph(data)
    model = onnx.load_from_string(data)
    summary = {k: (len(v) if isinstance(v, list) else v) for k, v in report.items() if not k.startswith("ops_")}
    set_metadata(model, {**metadata_of(model), "graph_cleanup": json.dumps(summary, sort_keys=True)})
    return model.SerializeToString()


def set_metadata(model: Any, meta: dict[str, str]) -> None:
    """Replace the ``dna_depth.*`` entries of an ``onnx.ModelProto``'s ``metadata_props`` by ``meta`` (keys without
    the prefix), in this order; entries of other tools are kept, first."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(META_PREFIX)]
    del model.metadata_props[:]
    for key, value in kept + [(META_PREFIX + k, str(v)) for k, v in meta.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def metadata_of(model: Any) -> dict[str, str]:
    """The ``dna_depth.*`` entries of an ``onnx.ModelProto``, without the prefix (empty for foreign models)."""
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def update_onnx_metadata(path: str | os.PathLike, updates: dict[str, Any]) -> None:
    """Add or replace ``dna_depth.*`` entries (keys without the prefix) of an ONNX file in place, atomically; the
    graph is untouched."""
    model = load_model_proto(path)
    set_metadata(model, {**metadata_of(model), **{k: str(v) for k, v in updates.items()}})
    write_bytes(os.fspath(path), model.SerializeToString())


def check_onnx_file(path: str | os.PathLike) -> str:
    """Raise FileNotFoundError/ValueError naming the problem unless ``path`` is an existing, non-empty file;
    returns the path as a string."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"ONNX model {path}: not a file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"ONNX model {path}: file is empty")
    return path


def load_model_proto(path_or_bytes: str | os.PathLike | bytes) -> Any:
    """The ``onnx.ModelProto`` of a file or of serialised bytes; ValueError naming the file when it is not a
    readable ONNX model (corrupt, truncated), FileNotFoundError when it is missing."""
    import onnx  # optional dependency: onnx

    if isinstance(path_or_bytes, (bytes, bytearray)):
        what, data = "<bytes>", bytes(path_or_bytes)
    else:
        what = check_onnx_file(path_or_bytes)
        with open(what, "rb") as f:
            data = f.read()
    try:
        return onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ValueError(f"ONNX model {what}: corrupt or truncated, not a readable ONNX file "
                         f"({type(exc).__name__}: {exc})") from exc


def read_onnx_metadata(path_or_bytes: str | os.PathLike | bytes) -> dict[str, str]:
    """The ``dna_depth.*`` metadata of an exported model, without the prefix (empty for foreign ONNX files)."""
    return metadata_of(load_model_proto(path_or_bytes))


def config_from_onnx_metadata(meta: dict[str, str], what: str = "<onnx>") -> DepthConfig:
    """The DepthConfig of :func:`read_onnx_metadata`'s result; ValueError for a foreign model or a corrupt config
    (``what`` names the file in the message)."""
    if meta.get("format") != ONNX_FORMAT:
        raise ValueError(f"ONNX model {what}: not a dna-depth export (metadata dna_depth.format="
                         f"{meta.get('format')!r}, expected {ONNX_FORMAT!r}); export it with `dna-depth export-onnx`")
    try:
        return DepthConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"ONNX model {what}: missing or corrupt dna_depth.config metadata ({exc})") from exc


def config_from_onnx(path_or_bytes: str | os.PathLike | bytes) -> DepthConfig:
    """The DepthConfig recorded in an exported model (raises ValueError for a foreign or corrupt file)."""
    what = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray)) else os.fspath(path_or_bytes)
    return config_from_onnx_metadata(read_onnx_metadata(path_or_bytes), what)


__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "META_PREFIX",
    "ONNX_FORMAT",
    "OUTPUT_NAMES",
    "check_input_size",
    "check_onnx_file",
    "config_from_onnx",
    "config_from_onnx_metadata",
    "export_to_bytes",
    "load_model_proto",
    "metadata_of",
    "network_and_provenance",
    "read_onnx_metadata",
    "set_metadata",
    "update_onnx_metadata",
]
