"""ONNX export of a depth network, self-describing and verified against torch.

>>> report = export_onnx("dna_b0.safetensors", "dna_b0.onnx")            # static 1x3x192x640 (the checkpoint's size)
>>> report = export_onnx(net, "dna_b0_dyn.onnx", dynamic=True)           # batch, height, width dynamic
>>> report.max_abs_diff                                                   # onnxruntime vs torch, scale-0 disparity

The graph:

- input ``image``: ``(B, 3, H, W)`` float32 in [0, 1] (the input normalisation is inside the graph, as in
  ``DepthNet``); H and W must be multiples of 32.
- output ``disparity``: ``(B, 1, H, W)`` float32, the scale-0 sigmoid disparity. With ``all_scales=True`` also
  ``disparity_1``, ``disparity_2``, ``disparity_3`` (1/2, 1/4, 1/8 resolution).
- ``metadata_props`` (all strings): ``dna_depth.format`` (``dna-depth-onnx/1``), ``dna_depth.config`` (the
  DepthConfig JSON of the checkpoint: model name, encoder, decoder, normalisation, training size, depth range),
  ``dna_depth.input_size`` (``HxW`` exported at; with ``dynamic`` any multiple of 32 is accepted),
  ``dna_depth.dynamic`` (``true``/``false``; ``batch`` when only the batch is dynamic), ``dna_depth.outputs`` (comma-separated output names),
  ``dna_depth.provenance`` (JSON: the source checkpoint's provenance, when exported from a file),
  ``dna_depth.exporter`` (torch version, opset). :func:`read_onnx_metadata` and :func:`config_from_onnx` read them.

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is used: it needs no ``onnxscript`` and
handles the TF-"same" paddings (constant for every multiple-of-32 input, so a dynamic graph stays exact). Files are
written atomically.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import time
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from dna_depth_core.models.depth_net import DepthConfig, DepthNet

ONNX_FORMAT = "dna-depth-onnx/1"
DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("disparity", "disparity_1", "disparity_2", "disparity_3")
META_PREFIX = "dna_depth."


@dataclasses.dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how well onnxruntime reproduces torch."""

    path: str
    model: str
    height: int
    width: int
    dynamic: bool
    all_scales: bool
    opset: int
    outputs: tuple[str, ...]
    size_bytes: int
    seconds: float
    # Verification (None when skipped): the largest |onnxruntime - torch| over the scale-0 disparity, per checked
    # input size "HxW" (batch 2 when dynamic, else batch 1).
    max_abs_diff: float | None = None
    checked: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _ExportWrapper(nn.Module):
    """The depth network with the graph's outputs: scale 0 only, or all four scales."""

    def __init__(self, net: DepthNet, all_scales: bool):
        super().__init__()
        self.net = net
        self.all_scales = all_scales

    def forward(self, image: torch.Tensor):
        disps = self.net(image)
        return tuple(disps) if self.all_scales else disps[0]


def _load_net(source: Any) -> tuple[DepthNet, dict[str, Any]]:
    """A DepthNet (eval mode, CPU, fp32) and provenance from a network or a checkpoint path."""
    if isinstance(source, nn.Module):
        if not isinstance(getattr(source, "config", None), DepthConfig):
            raise ValueError("net: expected a dna_depth_core DepthNet (a module with a DepthConfig 'config')")
        return source, {}
    from dna_depth_core.checkpoint import checkpoint_metadata, load_checkpoint

    path = os.fspath(source)
    net = load_checkpoint(path, map_location="cpu")
    meta = checkpoint_metadata(path)
    prov = {"checkpoint": os.path.basename(path), "provenance": meta.get("provenance", {})}
    return net, prov


def _check_size(height: int, width: int) -> None:
    for name, v in (("height", height), ("width", width)):
        if int(v) != v or v <= 0 or v % 32:
            raise ValueError(f"{name}: {v} is not a positive multiple of 32")


def export_to_bytes(net: DepthNet, height: int | None = None, width: int | None = None, dynamic: bool = False,
                    all_scales: bool = False, opset: int = DEFAULT_OPSET,
                    provenance: dict[str, Any] | None = None, dynamic_batch: bool = False,
                    batch: int = 1) -> bytes:
    """Serialised ONNX model of ``net`` (see the module docstring for the graph and its metadata).

    ``height``/``width`` default to ``net.config``'s; with ``dynamic`` they only set the tracing size.
    ``dynamic_batch`` makes only the batch dimension dynamic (``dynamic`` implies it); otherwise the graph's batch
    is ``batch``.
    """
    import onnx

    if opset < 17:
        raise ValueError(f"opset: {opset} is too old, use 17 or newer")
    cfg = net.config
    height = int(cfg.height if height is None else height)
    width = int(cfg.width if width is None else width)
    _check_size(height, width)
    outputs = OUTPUT_NAMES if all_scales else OUTPUT_NAMES[:1]
    was_training = net.training
    net = net.eval()
    param = next(net.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ValueError("net: export a CPU float32 network (call net.float().cpu() first)")
    wrapper = _ExportWrapper(net, all_scales).eval()
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch: {batch} is not a positive integer")
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
    meta = {
        "format": ONNX_FORMAT,
        "config": cfg.to_json(),
        "input_size": f"{height}x{width}",
        "dynamic": "true" if dynamic else ("batch" if dynamic_batch else "false"),
        "outputs": ",".join(outputs),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
        "exporter": json.dumps({"torch": torch.__version__, "onnx": onnx.__version__, "opset": opset}),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    model.producer_name = "dna-depth"
    model.doc_string = (f"dna-depth {cfg.name}: image (B,3,H,W) float32 in [0,1] -> disparity (B,1,H,W) sigmoid; "
                        f"depth = 1 / (1/{cfg.max_depth} + (1/{cfg.min_depth} - 1/{cfg.max_depth}) * disparity)")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(source: Any, out_path: str | os.PathLike, height: int | None = None, width: int | None = None,
                dynamic: bool = False, all_scales: bool = False, opset: int = DEFAULT_OPSET,
                verify: bool = True, atol: float = 1e-4, batch: int = 1) -> ExportReport:
    """Export a checkpoint (path) or a DepthNet to ``out_path`` and (``verify``) check it with onnxruntime.

    Verification runs onnxruntime (CPU) and torch on the same seeded input in [0, 1] and records the largest
    absolute difference of the scale-0 disparity; with ``dynamic`` it checks the export size and a second size
    (+64 rows, +128 columns) at batch 2. ``batch``: the batch size of a static graph. A difference above ``atol`` raises RuntimeError (the file is kept so it
    can be inspected).
    """
    from dna_depth_core.checkpoint import _atomic_write

    t0 = time.perf_counter()
    net, provenance = _load_net(source)
    cfg = net.config
    height = int(cfg.height if height is None else height)
    width = int(cfg.width if width is None else width)
    data = export_to_bytes(net, height, width, dynamic=dynamic, all_scales=all_scales, opset=opset,
                           provenance=provenance, batch=batch)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    out_path = os.fspath(out_path)
    _atomic_write(out_path, write)
    set_default_mode(out_path)
    outputs = OUTPUT_NAMES if all_scales else OUTPUT_NAMES[:1]
    report = ExportReport(path=os.path.abspath(out_path), model=cfg.name, height=height, width=width,
                          dynamic=dynamic, all_scales=all_scales, opset=opset, outputs=tuple(outputs),
                          size_bytes=len(data), seconds=0.0)
    if verify:
        sizes = [(1 if dynamic else batch, height, width)]
        if dynamic:
            sizes.append((2, height + 64, width + 128))
        report.checked = verify_onnx(out_path, net, sizes)
        report.max_abs_diff = max(report.checked.values())
        if report.max_abs_diff > atol:
            raise RuntimeError(f"export {out_path}: onnxruntime differs from torch by {report.max_abs_diff:.3g} "
                               f"(> {atol:g}) on the scale-0 disparity")
    report.seconds = time.perf_counter() - t0
    return report


def set_default_mode(path: str) -> None:
    """Give a file written through a temporary file (mode 0600) the usual mode, 0666 minus the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def verify_onnx(onnx_path: str | os.PathLike | bytes, net: DepthNet,
                sizes: list[tuple[int, int, int]] | None = None, seed: int = 0) -> dict[str, float]:
    """``{"BxHxW": max |onnxruntime - torch|}`` of the scale-0 disparity for each ``(batch, height, width)``.

    Runs onnxruntime on the CPU (fp32) with default optimisations, i.e. what :class:`OnnxBackend` runs.
    """
    from dna_depth_core.backends import OnnxBackend

    cfg = net.config
    sizes = sizes or [(1, cfg.height, cfg.width)]
    backend = OnnxBackend(onnx_path, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    net = net.eval()
    for b, h, w in sizes:
        x = torch.rand(b, 3, h, w, generator=gen)
        with torch.inference_mode():
            ref = net(x)[0].numpy()
        got = backend(x.numpy())
        out[f"{b}x{h}x{w}"] = float(np.max(np.abs(got.astype(np.float64) - ref)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Reading an exported file back
# ----------------------------------------------------------------------------------------------------------------
def check_onnx_file(path: str | os.PathLike) -> str:
    """Raise FileNotFoundError/ValueError naming the problem unless ``path`` is a readable ONNX file; returns it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"ONNX model {path}: not a file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"ONNX model {path}: file is empty")
    return path


def _load_model_proto(path_or_bytes: str | os.PathLike | bytes):
    import onnx

    if isinstance(path_or_bytes, (bytes, bytearray)):
        what, loader = "<bytes>", lambda: onnx.load_from_string(bytes(path_or_bytes))
    else:
        what = check_onnx_file(path_or_bytes)
        loader = lambda: onnx.load(what, load_external_data=False)  # noqa: E731
    try:
        return loader()
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ValueError(f"ONNX model {what}: corrupt or truncated, not a readable ONNX file "
                         f"({type(exc).__name__}: {exc})") from exc


def read_onnx_metadata(path_or_bytes: str | os.PathLike | bytes) -> dict[str, str]:
    """The ``dna_depth.*`` metadata of an exported model, without the prefix (empty for foreign ONNX files)."""
    model = _load_model_proto(path_or_bytes)
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def config_from_onnx_metadata(meta: dict[str, str], what: str = "<onnx>") -> DepthConfig:
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
    "ExportReport",
    "INPUT_NAME",
    "ONNX_FORMAT",
    "OUTPUT_NAMES",
    "check_onnx_file",
    "config_from_onnx",
    "export_onnx",
    "export_to_bytes",
    "read_onnx_metadata",
    "verify_onnx",
]
