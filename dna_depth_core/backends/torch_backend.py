"""The PyTorch backend: a DepthNet run eagerly, compiled, or replayed from CUDA graphs, in fp32, bf16 or fp16."""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from dna_depth_core import machine
from dna_depth_core.backends.base import check_input, load_network, resolve_device
from dna_depth_core.models.depth_net import DepthConfig

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}

#: Whether the CPU torch path uses channels_last by default (measured 1.25x faster than NCHW in CPU time for dna_b0
#: and monodepth2_r18 at 640x192 on this project's AVX-512 CPU: docs/deployment.md).
CPU_CHANNELS_LAST = True


class TorchBackend:
    """PyTorch backend (the :class:`~dna_depth_core.backends.base.Backend` interface).

    Args:
        net: a DepthNet (moved to ``device`` and put in eval mode) or a path to a dna-depth checkpoint.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a torch.device.
        dtype: compute precision: torch.float32 (default), torch.bfloat16 (CPU: autocast; CUDA: cast) or
            torch.float16 (CUDA only: the network is cast). Strings ``"fp32"``, ``"bf16"``, ``"fp16"`` work too.
        channels_last: NHWC memory format for the network and the input (oneDNN / cuDNN prefer it).
        compile: ``torch.compile`` the network (True, or a mode string such as ``"max-autotune"``). If compiling
            fails at the first call the backend falls back to eager and records why in ``compile_error``.
        cuda_graph: CUDA only: capture one CUDA graph per input shape and replay it (needs static shapes).
        cudnn_benchmark: on CUDA, turn on ``torch.backends.cudnn.benchmark`` (process-wide).

    The network is moved/cast in place (like ``nn.Module.to``); pass a copy to keep the original.
    """

    name = "torch"

    def __init__(self, net: Any, device: str | torch.device = "cpu", dtype: Any = torch.float32,
                 channels_last: bool = False, compile: bool | str = False, cuda_graph: bool = False,
                 cudnn_benchmark: bool = True):
        self.device = resolve_device(device)
        if self.device.type == "cuda" and cudnn_benchmark:
            torch.backends.cudnn.benchmark = True  # process-wide: pick the fastest kernels for the fixed shapes
        if net is None or isinstance(net, (str, os.PathLike)):
            net = load_network(net)
        if not isinstance(getattr(net, "config", None), DepthConfig):
            raise ValueError("net: expected a dna_depth_core DepthNet (a module with a DepthConfig 'config')")
        if isinstance(dtype, str):
            if dtype.lower() not in _DTYPES:
                raise ValueError(f"dtype '{dtype}' unknown; use fp32, bf16 or fp16")
            dtype = _DTYPES[dtype.lower()]
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype {dtype} not supported; use torch.float32, torch.bfloat16 or torch.float16")
        if dtype == torch.float16 and self.device.type == "cpu":
            raise ValueError("dtype float16 is for CUDA; on the CPU use bfloat16 (autocast) or float32")
        if cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph needs a CUDA device")
        self.config: DepthConfig = net.config
        self.height, self.width = int(self.config.height), int(self.config.width)
        self.dtype = dtype
        #: Why this backend runs at this precision (the registry's factories say more).
        self.reason = "requested"
        self.channels_last = bool(channels_last)
        self.cuda_graph = bool(cuda_graph)
        # CPU reduced precision runs under autocast (weights stay fp32); CUDA casts the network itself.
        self.autocast = self.device.type == "cpu" and dtype != torch.float32
        net = net.to(self.device).eval()
        if self.device.type == "cuda" and dtype != torch.float32:
            net = net.to(dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net = net
        self.compile_mode = compile if isinstance(compile, str) else ("default" if compile else None)
        self.compile_error: str | None = None
        self._fn = self.net
        if self.compile_mode:
            kw = {} if self.compile_mode == "default" else {"mode": self.compile_mode}
            self._fn = torch.compile(self.net, dynamic=False, **kw)
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    @property
    def fp16(self) -> bool:
        return self.dtype == torch.float16

    @property
    def precision(self) -> str:
        """``"fp32"``, ``"bf16"`` or ``"fp16"``: the compute precision."""
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def _prepare(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and self.dtype != torch.float32:
            t = t.to(self.dtype)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def _forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.autocast:
            with torch.autocast("cpu", dtype=self.dtype):
                return self._fn(t)[0]
        return self._fn(t)[0]

    def _eager_or_compiled(self, t: torch.Tensor) -> torch.Tensor:
        if self._fn is not self.net:
            try:
                return self._forward(t)
            except Exception as exc:  # noqa: BLE001 - inductor failures come in many types
                self.compile_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                warnings.warn(f"torch.compile failed, running eager: {self.compile_error}", stacklevel=3)
                self._fn = self.net
        return self._forward(t)

    def _graphed(self, t: torch.Tensor) -> torch.Tensor:
        key = tuple(t.shape)
        if key not in self._graphs:
            static_in = t.clone()
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm-up on a side stream (cuDNN autotuning, allocator) before capture
                    self._forward(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(t)
        graph.replay()
        return static_out

    def supports_size(self, height: int, width: int) -> bool:
        """Whether ``__call__`` accepts ``(B, 3, height, width)`` (torch: any multiple of 32)."""
        return height > 0 and width > 0 and height % 32 == 0 and width % 32 == 0

    @torch.inference_mode()
    def run_tensor(self, t: torch.Tensor) -> torch.Tensor:
        """Device-side call: ``(B, 3, H, W)`` tensor -> ``(B, 1, H, W)`` tensor on ``self.device`` in the compute
        dtype (no host copies; with ``cuda_graph`` the result is the graph's static output buffer: copy it before
        the next call)."""
        t = self._prepare(t)
        if self.cuda_graph:
            return self._graphed(t)
        return self._eager_or_compiled(t)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = check_input(x)
        out = self.run_tensor(torch.from_numpy(x))
        return out.float().cpu().numpy()

    def __repr__(self) -> str:
        return (f"TorchBackend({self.config.name}, device={self.device}, dtype={self.dtype}, "
                f"channels_last={self.channels_last}, compile={self.compile_mode}, cuda_graph={self.cuda_graph})")


def torch_backend_factory(checkpoint: Any, device: str = "auto", fp16: bool = False,
                          precision: str = "auto") -> TorchBackend:
    """The registry's ``torch`` backend: TorchBackend with this project's measured defaults: fp32 eager
    (channels_last on the CPU, where benchmarks/cpu_fastpath.py found it faster); fp16 on CUDA when asked (ignored
    with a warning on the CPU). ``precision``: ``auto`` (fp16 on CUDA with ``fp16``, else fp32), ``fp32``, or
    ``bf16`` (CUDA, or a CPU with native bf16: :func:`dna_depth_core.machine.native_bf16`; emulated bf16 is refused,
    it is slower than fp32); ``int8`` is a ValueError (int8 runs from a quantised file in onnxruntime/openvino)."""
    dev = resolve_device(device)
    if precision not in ("auto", "fp32", "bf16", "int8"):
        raise ValueError(f"precision '{precision}' unknown; use auto, fp32, bf16 or int8")
    if precision == "int8":
        raise ValueError("precision int8: the torch backend has no int8 path; export an int8 model "
                         "(`dna-depth export-onnx --int8`) and use onnxruntime or openvino")
    if fp16 and dev.type != "cuda":
        warnings.warn("fp16 requested on the CPU: ignored (fp16 is used on CUDA only)", stacklevel=2)
    dtype = torch.float16 if (fp16 and dev.type == "cuda" and precision == "auto") else torch.float32
    why = "requested (CUDA)" if dtype == torch.float16 else ("eager, channels_last" if dev.type == "cpu" else "eager")
    if precision == "bf16":
        if dev.type == "cpu":
            ok, why = machine.native_bf16(capabilities=())
            if not ok:
                raise ValueError(f"precision bf16 unavailable: {why}")
        dtype, why = torch.bfloat16, f"requested, {why}" if dev.type == "cpu" else "requested (CUDA)"
    backend = TorchBackend(checkpoint, device=dev, dtype=dtype, channels_last=CPU_CHANNELS_LAST and dev.type == "cpu")
    backend.reason = why
    return backend


__all__ = ["CPU_CHANNELS_LAST", "TorchBackend", "torch_backend_factory"]
