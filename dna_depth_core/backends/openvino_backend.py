"""The OpenVINO backend (CPU): an exported ``.onnx`` (fp32, or an int8 QDQ file), an int8 IR ``.xml`` written by
``dna-depth export-onnx --int8 --runtime openvino``, or a checkpoint exported in memory; fp32, bf16 or int8.

Compilation (:func:`compile_options`): latency hint, one stream, ``threads`` inference threads (default: the usable
cores), CPU pinning off (a robot's CPU is shared with other nodes: a pinned thread that the OS deschedules stalls
the whole inference), and the inference precision **always explicit**: OpenVINO's CPU plugin defaults to bf16 on
CPUs with avx512_bf16 or AMX, which would silently change an fp32 model's numbers.

Precisions (``precision``):

- ``fp32``: f32 everywhere.
- ``bf16``: only where the CPU computes bf16 natively (:func:`dna_depth_core.machine.native_bf16`: avx512_bf16 or
  amx_bf16 in the CPU flags and ``BF16`` in OpenVINO's capabilities); elsewhere a ValueError names why (emulated
  bf16 is slower than fp32).
- ``int8``: the model must be quantised (an int8 IR, or a QDQ ``.onnx``); the layers left float run in f32. Without
  VNNI the CPU's int8 kernels saturate int16 sums unless the weights use 7 bits, so an int8 model is run on such a
  CPU only when its ``quantization`` record says so (NNCF ``overflow_fix: enable`` or ``reduce_range``); otherwise
  a ValueError says how to rebuild it.
- ``auto``: the file's own precision (int8 for a quantised model, else fp32). bf16 is chosen by the ``auto``
  *backend* (:mod:`.selection`) when the accuracy guard allows it.

``openvino`` is an optional dependency (the ``openvino`` extra): it is imported when a backend is built.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Any

import numpy as np
import torch

from dna_depth_core import machine
from dna_depth_core.backends.base import check_input, is_onnx_source, load_network
from dna_depth_core.io.onnx_format import (
    ONNX_FORMAT,
    check_onnx_file,
    config_from_onnx_metadata,
    export_to_bytes,
    network_and_provenance,
    read_onnx_metadata,
)
from dna_depth_core.io.openvino_format import ir_metadata, is_ir_source, read_ir

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def openvino_available() -> bool:
    """Whether OpenVINO can be imported."""
    try:
        import openvino  # noqa: F401  # optional dependency: openvino
    except ImportError:
        return False
    return True


def compile_options(precision: str, threads: int, pinning: bool = False) -> dict[str, Any]:
    """OpenVINO CPU compile properties for ``precision`` (``fp32``, ``bf16``, ``int8``): latency hint, one stream,
    ``threads`` inference threads, pinning, and the explicit inference precision (f32 for fp32 and int8)."""
    import openvino as ov  # optional dependency: openvino
    import openvino.properties as props  # optional dependency: openvino
    import openvino.properties.hint as hints  # optional dependency: openvino

    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"precision '{precision}' unknown; use fp32, bf16 or int8")
    return {hints.performance_mode: hints.PerformanceMode.LATENCY, props.num_streams: 1,
            props.inference_num_threads: int(threads),
            hints.inference_precision: ov.Type.bf16 if precision == "bf16" else ov.Type.f32,
            hints.enable_cpu_pinning: bool(pinning)}


def is_quantised(model: Any) -> bool:
    """Whether an ``openvino.Model`` carries quantisation (NNCF's FakeQuantize, or the QuantizeLinear/
    DequantizeLinear pairs of a QDQ ONNX file as OpenVINO reads them)."""
    return any(op.get_type_name() in ("FakeQuantize", "FakeConvert") for op in model.get_ops())


def int8_exact_here(meta: dict[str, str], isa: machine.CpuIsa | None = None) -> tuple[bool, str]:
    """``(exact, why)``: whether an int8 model with the ``dna_depth.*`` metadata ``meta`` computes exactly on this
    CPU (``isa``). With VNNI every int8 model does; without it only one whose weights use 7 bits (NNCF
    ``overflow_fix: enable``, or onnxruntime ``reduce_range``), as the kernels add pairs of u8 x s8 products into a
    saturating int16."""
    isa = machine.cpu_isa() if isa is None else isa
    if isa.vnni:
        return True, f"{isa.name}: VNNI accumulates int8 products in int32"
    try:
        q = json.loads(meta.get("quantization", "{}"))
    except json.JSONDecodeError:
        q = {}
    if q.get("overflow_fix") == "enable" or q.get("reduce_range") is True:
        return True, f"{isa.name}, no VNNI: 7-bit weights (" + (
            "NNCF overflow_fix=enable" if q.get("overflow_fix") == "enable" else "reduce_range") + ") cannot saturate"
    built = q.get("target_isa") or q.get("built_on_isa") or "a VNNI CPU"
    return False, (f"this CPU ({isa.model}, {isa.name}) has no VNNI and the model's int8 weights use all 8 bits "
                   f"(built for {built}): OpenVINO's int8 kernels would saturate here. Rebuild it for this CPU "
                   f"(dna-depth export-onnx --int8 --runtime openvino, which picks overflow_fix=enable without VNNI)")


class OpenVinoBackend:
    """OpenVINO backend (the :class:`~dna_depth_core.backends.base.Backend` interface; see the module docstring).

    Args:
        source: a dna-depth ``.onnx`` (path or bytes), an IR ``.xml`` with dna_depth metadata, or a ``.safetensors``
            checkpoint / DepthNet (exported in memory: one compiled model per input size, batch dynamic).
        precision: ``auto``, ``fp32``, ``bf16`` or ``int8``.
        threads: inference threads (default: the usable cores).
        device: ``auto`` or ``cpu`` (this backend runs on the CPU only).
        height, width: the first size to compile for (a checkpoint's or dynamic model's; default: its own).
        pinning: OpenVINO's CPU pinning (off: a robot's CPU is shared).

    Attributes besides the interface: ``precision`` (what runs), ``reason`` (why this precision), ``metadata``
    (the model's ``dna_depth.*`` entries), ``threads``.
    """

    name = "openvino"
    fp16 = False

    def __init__(self, source: Any, precision: str = "auto", threads: int | None = None, device: str = "auto",
                 height: int | None = None, width: int | None = None, pinning: bool = False):
        if not openvino_available():
            raise ImportError("the openvino backend needs OpenVINO: pip install 'dna_depth_ros[openvino]' "
                              "(openvino, nncf)")
        import openvino as ov  # optional dependency: openvino

        if str(device).strip().lower() not in ("", "auto", "cpu"):
            raise ValueError(f"device '{device}': the openvino backend runs on the CPU only (use torch or "
                             f"onnxruntime for CUDA)")
        if precision not in PRECISIONS:
            raise ValueError(f"precision '{precision}' unknown; use one of {', '.join(PRECISIONS)}")
        self.core = ov.Core()
        self.threads = int(threads or machine.usable_cpus())
        self.pinning = bool(pinning)
        self.device = torch.device("cpu")
        self._net = None
        self.source, self._model, self.metadata = self._read(source)
        self.config = config_from_onnx_metadata(self.metadata, self.source)
        quantised = self._model is not None and (is_quantised(self._model)
                                                 or self.metadata.get("precision") == "int8")
        self.precision, self.reason = self._choose_precision(precision, quantised)
        if self._model is None:  # a checkpoint: graphs per size, built on first use
            self.dynamic, self._static_batch = True, None
            h0, w0 = int(self.config.height), int(self.config.width)
        else:
            shape = self._model.inputs[0].get_partial_shape()
            self.dynamic = shape[2].is_dynamic or shape[3].is_dynamic
            self._static_batch = None if shape[0].is_dynamic else int(shape[0].get_length())
            if self.dynamic:
                h0, w0 = (int(v) for v in self.metadata.get(
                    "input_size", f"{self.config.height}x{self.config.width}").split("x"))
            else:
                h0, w0 = int(shape[2].get_length()), int(shape[3].get_length())
        self.height = int(h0 if height is None else height)
        self.width = int(w0 if width is None else width)
        self._requests: dict[tuple[int, int, int], Any] = {}
        self._request_for(self._static_batch or 1, self.height, self.width)

    # -- loading ------------------------------------------------------------------------------------------------
    def _read(self, source: Any) -> tuple[str, Any, dict[str, str]]:
        """``(name, openvino.Model or None for a checkpoint, dna_depth metadata)``."""
        if is_ir_source(source):
            path = os.fspath(source)
            model = read_ir(path, self.core)
            meta = ir_metadata(model)
            if not meta:
                raise ValueError(f"OpenVINO IR {path}: not a dna-depth model (no dna_depth metadata in its rt_info); "
                                 f"write it with `dna-depth export-onnx --int8 --runtime openvino`")
            return path, model, meta
        if is_onnx_source(source):
            if isinstance(source, (bytes, bytearray)):
                what, data = "<bytes>", bytes(source)
            else:
                what = check_onnx_file(source)
                with open(what, "rb") as f:
                    data = f.read()
            meta = read_onnx_metadata(data)  # ValueError for a corrupt file
            config_from_onnx_metadata(meta, what)  # ValueError for a foreign model, before OpenVINO reads it
            try:
                model = self.core.read_model(data, b"")
            except Exception as exc:  # noqa: BLE001 - OpenVINO's own exception types
                raise ValueError(f"ONNX model {what}: OpenVINO cannot read it ({type(exc).__name__}: {exc})") from exc
            return what, model, meta
        net, self._provenance = network_and_provenance(source)  # a DepthNet, or a checkpoint path
        self._net = net.float().cpu().eval()
        what = "<DepthNet>" if isinstance(source, torch.nn.Module) else os.fspath(source)
        return what, None, {"format": ONNX_FORMAT, "config": self._net.config.to_json()}

    def _choose_precision(self, requested: str, quantised: bool) -> tuple[str, str]:
        if quantised:
            if requested in ("fp32", "bf16"):
                raise ValueError(f"precision {requested}: {self.source} is an int8 model; give its fp32 export "
                                 f"(or a checkpoint) for {requested}")
            exact, why = int8_exact_here(self.metadata)
            if not exact:
                raise ValueError(f"int8 model {self.source}: {why}")
            return "int8", f"the model file is int8; {why}"
        if requested == "int8":
            raise ValueError(f"precision int8: {self.source} carries no quantisation; write an int8 model with "
                             f"`dna-depth export-onnx --int8 --runtime openvino --calibration FRAMES`")
        if requested == "bf16":
            ok, why = machine.native_bf16()
            if not ok:
                raise ValueError(f"precision bf16 unavailable: {why}")
            return "bf16", why
        return "fp32", "requested" if requested == "fp32" else "the model is fp32"

    def _compiled_model(self, b: int, h: int, w: int):
        import openvino as ov  # optional dependency: openvino

        if self._net is not None:
            data = export_to_bytes(self._net, h, w, provenance=self._provenance, dynamic_batch=True)
            model = self.core.read_model(data, b"")
        else:
            model = self._model
        shape = model.inputs[0].get_partial_shape()
        if shape.is_dynamic:
            model = model.clone()
            model.reshape({model.inputs[0].any_name: ov.PartialShape([b, 3, h, w])})
        return self.core.compile_model(model, "CPU", compile_options(self.precision, self.threads, self.pinning))

    def _request_for(self, b: int, h: int, w: int):
        key = (b, h, w)
        if key not in self._requests:
            self._requests[key] = self._compiled_model(b, h, w).create_infer_request()
        return self._requests[key]

    # -- interface ----------------------------------------------------------------------------------------------
    def supports_size(self, height: int, width: int) -> bool:
        """Whether ``__call__`` accepts ``(B, 3, height, width)``: any multiple of 32 for a checkpoint or a dynamic
        model, only the exported size for a static one."""
        if not (height > 0 and width > 0 and height % 32 == 0 and width % 32 == 0):
            return False
        return self.dynamic or (height, width) == (self.height, self.width)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x)
        b, _, h, w = x.shape
        if not self.supports_size(h, w):
            raise ValueError(f"x: this model was exported for {self.height}x{self.width} (static); got {h}x{w}. "
                             f"Resize the input or export with --dynamic")
        if self._static_batch not in (None, b):
            return np.concatenate([self(x[i:i + 1]) for i in range(b)])
        request = self._request_for(b, h, w)
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def __repr__(self) -> str:
        return (f"OpenVinoBackend({self.config.name}, source={self.source}, precision={self.precision}, "
                f"size={self.height}x{self.width}, dynamic={self.dynamic}, threads={self.threads})")


def openvino_backend_factory(checkpoint: Any, device: str = "auto", fp16: bool = False,
                             precision: str = "auto") -> OpenVinoBackend:
    """The registry's ``openvino`` backend (CPU): OpenVinoBackend of a ``.onnx``, an IR ``.xml`` or a checkpoint
    with ``precision``; ``fp16`` is ignored with a warning."""
    if fp16:
        warnings.warn("fp16 is not supported by the openvino backend: ignored", stacklevel=2)
    if not is_onnx_source(checkpoint) and not is_ir_source(checkpoint) and not isinstance(checkpoint,
                                                                                         torch.nn.Module):
        checkpoint = load_network(checkpoint)
    return OpenVinoBackend(checkpoint, precision=precision, device=device)


__all__ = ["OpenVinoBackend", "PRECISIONS", "compile_options", "int8_exact_here", "is_quantised",
           "openvino_available", "openvino_backend_factory"]
