"""The onnxruntime backend: an exported ``.onnx`` (fp32, or int8 QDQ) or a checkpoint exported in memory.

``onnxruntime`` is an optional dependency (the ``onnx`` extra): it is imported when a session is built, so this
module (and the backend registry) can be imported without it.
"""
from __future__ import annotations

import os
import platform
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from dna_depth_core import machine
from dna_depth_core.backends.base import check_input, is_onnx_source, load_network
from dna_depth_core.io.onnx_format import (
    check_onnx_file,
    config_from_onnx_metadata,
    export_to_bytes,
    network_and_provenance,
    read_onnx_metadata,
)


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401  # optional dependency: onnxruntime
    except ImportError:
        return False
    return True


def available_providers() -> list[str]:
    """onnxruntime's execution providers on this machine (``[]`` without onnxruntime)."""
    try:
        import onnxruntime as ort  # optional dependency: onnxruntime
    except ImportError:
        return []
    return list(ort.get_available_providers())


def default_providers(device: str | torch.device = "auto") -> list[Any]:
    """onnxruntime providers for ``device``: CUDA EP (then CPU) when asked for/auto and available, else CPU."""
    available = available_providers()
    name = str(device).strip().lower()
    if name in ("", "auto"):
        want_cuda, index = "CUDAExecutionProvider" in available, 0
    else:
        dev = torch.device(name)
        if dev.type not in ("cpu", "cuda"):
            raise ValueError(f"device '{device}' not supported (use auto, cpu, cuda or cuda:N)")
        want_cuda, index = dev.type == "cuda", dev.index or 0
        if want_cuda and "CUDAExecutionProvider" not in available:
            raise ValueError(f"device '{device}': this onnxruntime has no CUDAExecutionProvider (available: "
                             f"{', '.join(available)}); install onnxruntime-gpu or use device cpu")
    if want_cuda:
        return [("CUDAExecutionProvider", {"device_id": index, "cudnn_conv_algo_search": "EXHAUSTIVE"}),
                "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


#: The onnxruntime session option that makes int8 exact on x86 CPUs without VNNI (:func:`int8_needs_exact_kernels`).
X64_QUANT_PRECISION = "session.x64quantprecision"


def int8_needs_exact_kernels(isa: machine.CpuIsa | None = None) -> bool:
    """Whether onnxruntime must be told to use its exact int8 kernels on this CPU (``isa``, default this one).

    onnxruntime's x86 int8 kernels for uint8 activations x int8 weights (U8S8, what ``export-onnx --int8`` writes)
    are exact with VNNI (``vpdpbusd`` accumulates in int32). Without VNNI (AVX2, AVX-512 without VNNI) they use
    ``vpmaddubsw``, which adds two u8 x s8 products into a saturating int16 (2 x 255 x 127 > 32767): with real
    activations the sums clip and the disparity is wrong (measured: 4-18 % mean error instead of 1.2-1.5 %). The
    session option ``session.x64quantprecision=1`` makes onnxruntime rewrite, at session creation, the int8
    weights of each quantised convolution whose values leave [-64, 64] to uint8 and run its exact U8U8 kernels.
    It is set only on x86 CPUs without VNNI: on VNNI CPUs the rewrite would replace the exact, fast U8S8 kernels
    by slower U8U8 ones. On other architectures the option does not apply.
    """
    isa = machine.cpu_isa() if isa is None else isa
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386") and not isa.vnni


def session_options(threads: int | None = None, spin: bool = True, exact_int8: bool | None = None):
    """CPU-friendly onnxruntime session options: all graph optimisations, sequential execution, one inter-op
    thread, ``threads`` intra-op threads (default: :func:`dna_depth_core.machine.usable_cpus`). ``spin=False`` stops
    idle worker threads from busy-waiting (less CPU burnt between frames, slightly higher latency).
    ``exact_int8`` sets :data:`X64_QUANT_PRECISION` (default: :func:`int8_needs_exact_kernels` for this CPU); it
    changes only int8 graphs."""
    import onnxruntime as ort  # optional dependency: onnxruntime

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads or machine.usable_cpus())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if int8_needs_exact_kernels() if exact_int8 is None else exact_int8:
        so.add_session_config_entry(X64_QUANT_PRECISION, "1")
    return so


class OnnxBackend:
    """onnxruntime backend (the :class:`~dna_depth_core.backends.base.Backend` interface).

    Args:
        source: a ``.onnx`` file exported by ``dna-depth export-onnx`` (or its bytes); or a ``.safetensors``
            checkpoint path or a DepthNet, exported in memory (one graph per input size, built on first use;
            batch dynamic).
        providers: onnxruntime providers; default :func:`default_providers` (``device``).
        device: ``"auto"`` (CUDA EP when onnxruntime has it), ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ignored when
            ``providers`` is given.
        threads: CPU intra-op threads (default: the usable cores). ``spin``: see :func:`session_options`.
        height, width: for a checkpoint source, the size of the first graph (default: the checkpoint's).
        precision: ``"auto"`` (the file's own), ``"fp32"`` or ``"int8"``; a request the file cannot serve (int8 of
            an fp32 file, fp32 of an int8 file, bf16) is a ValueError naming the way out.

    ``precision`` (attribute): ``"fp32"``, or ``"int8"`` for an export quantised by ``dna-depth export-onnx --int8``
    (a QDQ graph: same input and output, onnxruntime runs its int8 kernels, exact on every x86 CPU:
    :func:`int8_needs_exact_kernels`; read from ``dna_depth.precision``); ``reason`` says why.
    A static ``.onnx`` accepts only its exported size; a batch-1 graph runs a larger batch image by image.
    """

    name = "onnxruntime"
    fp16 = False

    def __init__(self, source: Any, providers: Sequence[Any] | None = None, device: str = "auto",
                 threads: int | None = None, spin: bool = True, height: int | None = None,
                 width: int | None = None, precision: str = "auto"):
        if not onnxruntime_available():
            raise ImportError("the onnxruntime backend needs onnxruntime: pip install 'dna_depth_ros[onnx]' "
                              "(onnx, onnxruntime)")
        self.providers_requested = list(providers) if providers is not None else default_providers(device)
        self.threads = int(threads or machine.usable_cpus())
        self.spin = bool(spin)
        self._net = None
        self._sessions: dict[tuple[int, int], Any] = {}
        if not is_onnx_source(source) and (isinstance(source, torch.nn.Module) or (
                isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(".safetensors"))):
            net, self._provenance = network_and_provenance(source)
            self._net = net.float().cpu().eval()
            self.config = self._net.config
            self.source = "<DepthNet>" if isinstance(source, torch.nn.Module) else os.fspath(source)
            self.dynamic = False
            self.metadata = {}
            self.precision, self.reason = self._check_precision(precision, "fp32")
            self.height = int(self.config.height if height is None else height)
            self.width = int(self.config.width if width is None else width)
            self.session = self._session_for(self.height, self.width)
        else:
            if isinstance(source, (bytes, bytearray)):
                self.source, model = "<bytes>", bytes(source)
            else:
                self.source = check_onnx_file(source)
                model = self.source
            meta = read_onnx_metadata(model)  # ValueError for a corrupt file
            self.config = config_from_onnx_metadata(meta, self.source)
            self.metadata = meta
            # "int8" for `dna-depth export-onnx --int8`
            self.precision, self.reason = self._check_precision(precision, meta.get("precision", "fp32"))
            self.session = self._make_session(model)
            shape = self.session.get_inputs()[0].shape
            self.dynamic = not all(isinstance(d, int) for d in shape[2:])
            if self.dynamic:
                h, w = (int(v) for v in meta.get("input_size", f"{self.config.height}x{self.config.width}").split("x"))
            else:
                h, w = int(shape[2]), int(shape[3])
            self.height, self.width = (h if height is None else int(height)), (w if width is None else int(width))
            self._static_batch = shape[0] if isinstance(shape[0], int) else None
            if not self.dynamic:
                self._sessions[(h, w)] = self.session
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.device = torch.device("cuda", self._cuda_index()) if "CUDAExecutionProvider" in self.providers \
            else torch.device("cpu")

    def _check_precision(self, requested: str, own: str) -> tuple[str, str]:
        """``(precision, why)`` for a request against the file's own precision ``own``; ValueError when it cannot
        be served."""
        if requested not in ("auto", "fp32", "bf16", "int8"):
            raise ValueError(f"precision '{requested}' unknown; use auto, fp32, bf16 or int8")
        if requested == "bf16":
            raise ValueError("precision bf16: onnxruntime has no bf16 CPU path; use the openvino backend (on a CPU "
                             "with native bf16) or torch")
        if own == "int8":
            if requested == "fp32":
                raise ValueError(f"precision fp32: {self.source} is an int8 model; give its fp32 export or the "
                                 f"checkpoint")
            isa = machine.cpu_isa()
            kernels = ("exact U8U8 kernels (session.x64quantprecision: no VNNI on this CPU)"
                       if int8_needs_exact_kernels(isa) else f"int8 kernels of this {isa.name} CPU")
            return "int8", f"the model file is int8; {kernels}"
        if requested == "int8":
            raise ValueError(f"precision int8: {self.source} is an fp32 model; write an int8 one with "
                             f"`dna-depth export-onnx --int8 --calibration FRAMES`")
        return "fp32", "requested" if requested == "fp32" else "the model is fp32"

    def _cuda_index(self) -> int:
        for p in self.providers_requested:
            if isinstance(p, tuple) and p[0] == "CUDAExecutionProvider":
                return int(p[1].get("device_id", 0))
        return 0

    def _make_session(self, model: str | bytes):
        import onnxruntime as ort  # optional dependency: onnxruntime

        so = session_options(self.threads, self.spin)
        try:
            return ort.InferenceSession(model, so, providers=self.providers_requested)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            what = self.source if isinstance(model, (bytes, bytearray)) else model
            raise ValueError(f"ONNX model {what}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from exc

    def _session_for(self, h: int, w: int):
        if (h, w) not in self._sessions:
            data = export_to_bytes(self._net, h, w, provenance=self._provenance, dynamic_batch=True)
            self._sessions[(h, w)] = self._make_session(data)
        return self._sessions[(h, w)]

    def supports_size(self, height: int, width: int) -> bool:
        """Whether ``__call__`` accepts ``(B, 3, height, width)``: any multiple of 32 for a dynamic export or a
        checkpoint source, only the exported size for a static ``.onnx``."""
        if not (height > 0 and width > 0 and height % 32 == 0 and width % 32 == 0):
            return False
        return self._net is not None or self.dynamic or (height, width) == (self.height, self.width)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x)
        h, w = x.shape[2], x.shape[3]
        if self._net is not None:
            session = self._session_for(h, w)
        elif self.dynamic:
            session = self.session
        else:
            if (h, w) != (self.height, self.width):
                raise ValueError(f"x: this ONNX model was exported for {self.height}x{self.width} (static); got "
                                 f"{h}x{w}. Resize the input or export with --dynamic")
            session = self.session
        if self._net is None and not self.dynamic and self._static_batch not in (None, x.shape[0]):
            # A static batch-1 graph: run the images one by one.
            return np.concatenate([session.run([self.output_name], {self.input_name: x[i:i + 1]})[0]
                                   for i in range(x.shape[0])])
        return session.run([self.output_name], {self.input_name: x})[0]

    def __repr__(self) -> str:
        return (f"OnnxBackend({self.config.name}, source={self.source}, providers={self.providers}, "
                f"size={self.height}x{self.width}, dynamic={self.dynamic}, precision={self.precision}, "
                f"threads={self.threads})")


def onnxruntime_backend_factory(checkpoint: Any, device: str = "auto", fp16: bool = False,
                                precision: str = "auto") -> OnnxBackend:
    """The registry's ``onnxruntime`` backend: OnnxBackend from a ``.onnx`` file (fp32, or int8 from
    ``export-onnx --int8``) or a checkpoint (fp32, exported in memory), with ``precision`` (``auto``: the file's);
    ``fp16`` is ignored with a warning."""
    if fp16:
        warnings.warn("fp16 is not supported by the onnxruntime backend: running fp32", stacklevel=2)
    if not is_onnx_source(checkpoint) and not isinstance(checkpoint, torch.nn.Module):
        checkpoint = load_network(checkpoint)
    return OnnxBackend(checkpoint, device=device, precision=precision)


__all__ = ["OnnxBackend", "X64_QUANT_PRECISION", "available_providers", "default_providers",
           "int8_needs_exact_kernels", "onnxruntime_available", "onnxruntime_backend_factory", "session_options"]
