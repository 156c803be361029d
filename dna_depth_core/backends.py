"""Inference backends: a float32 image batch in, the scale-0 sigmoid disparity out, as numpy arrays.

Both backends share one interface, so ``DepthEstimator`` (and the ROS node) can take either::

    backend(x)        # x: (B, 3, H, W) float32 in [0, 1], H, W multiples of 32 -> (B, 1, H, W) float32 disparity
    backend.config    # the DepthConfig (model name, normalisation, training size, depth range)
    backend.height, backend.width   # the input size the backend is built for (the checkpoint's by default)
    backend.device    # torch.device the network runs on; backend.fp16: half precision in use; backend.name
    backend.supports_size(h, w)     # False for a static .onnx exported at another size

- :class:`TorchBackend` ``(net, device="cpu", dtype=torch.float32, channels_last=False, compile=False,
  cuda_graph=False)``: a DepthNet (or a checkpoint path). ``dtype`` bfloat16 on the CPU runs under autocast
  (weights stay fp32); float16/bfloat16 on CUDA cast the network. ``cuda_graph`` captures one CUDA graph per
  input shape (static shapes, e.g. a camera stream).
- :class:`OnnxBackend` ``(onnx_path_or_checkpoint, providers=None)``: an exported ``.onnx`` (self-describing: the
  config is in its metadata; fp32, or int8 QDQ from ``export-onnx --int8``: ``backend.precision`` says which) or a
  ``.safetensors`` checkpoint / DepthNet, which is exported in memory (one graph per input size, batch dynamic,
  built on first use). The session uses the CUDA execution provider when onnxruntime has it
  and ``device`` allows, else the CPU one with ``intra_op_num_threads`` = the cores this process may use.

``DepthEstimator``-style factories ``(checkpoint, device="auto", fp16=False) -> backend``:
:func:`torch_backend_factory`, :func:`onnxruntime_backend_factory` and :func:`auto_backend_factory` (onnxruntime
on the CPU, where it was measured fastest at fp32 accuracy; torch on CUDA), see :data:`FACTORIES`.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from dna_depth_core.models.depth_net import DepthConfig

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``; unavailable CUDA -> ValueError."""
    if isinstance(device, torch.device):
        dev = device
    else:
        name = str(device).strip().lower()
        if name in ("", "auto"):
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"device '{device}' is not a device name (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available (use auto or cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device '{device}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device '{device}' not supported (use auto, cpu, cuda or cuda:N)")
    return dev


def usable_cpus() -> int:
    """Cores this process may run on (affinity mask; cgroup CPU quotas are not read)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_input(x: Any, name: str = "x") -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(B, 3, H, W)`` array with H, W multiples of 32; ValueError otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (B, 3, H, W), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected a float array in [0, 1], got dtype {x.dtype}")
    if x.shape[2] % 32 or x.shape[3] % 32 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name}: height and width must be multiples of 32, got {x.shape[2]}x{x.shape[3]}")
    return np.ascontiguousarray(x, dtype=np.float32)


def load_network(path: Any):
    """The DepthNet of a checkpoint path, with errors that name what is wrong (no path, missing file, bad file)."""
    from dna_depth_core.io.checkpoint import load_checkpoint

    if path is None or not os.fspath(path):
        raise ValueError("weights: no checkpoint path given")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    return load_checkpoint(path, map_location="cpu")


# ----------------------------------------------------------------------------------------------------------------
# torch
# ----------------------------------------------------------------------------------------------------------------
class TorchBackend:
    """PyTorch backend (see the module docstring).

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


# ----------------------------------------------------------------------------------------------------------------
# onnxruntime
# ----------------------------------------------------------------------------------------------------------------
def default_providers(device: str | torch.device = "auto") -> list[Any]:
    """onnxruntime providers for ``device``: CUDA EP (then CPU) when asked for/auto and available, else CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
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


def session_options(threads: int | None = None, spin: bool = True):
    """CPU-friendly onnxruntime session options: all graph optimisations, sequential execution, one inter-op
    thread, ``threads`` intra-op threads (default: the cores this process may use). ``spin=False`` stops idle
    worker threads from busy-waiting (less CPU burnt between frames, slightly higher latency)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads or usable_cpus())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return so


class OnnxBackend:
    """onnxruntime backend (see the module docstring).

    Args:
        source: a ``.onnx`` file exported by ``dna-depth export-onnx`` (or its bytes); or a ``.safetensors``
            checkpoint path or a DepthNet, exported in memory (one graph per input size, built on first use; batch dynamic).
        providers: onnxruntime providers; default :func:`default_providers` (``device``).
        device: ``"auto"`` (CUDA EP when onnxruntime has it), ``"cpu"``, ``"cuda"``, ``"cuda:N"``; ignored when
            ``providers`` is given.
        threads: CPU intra-op threads (default: the usable cores). ``spin``: see :func:`session_options`.
        height, width: for a checkpoint source, the size of the first graph (default: the checkpoint's).

    ``precision``: ``"fp32"``, or ``"int8"`` for an export quantised by ``dna-depth export-onnx --int8`` (a QDQ
    graph: same input and output, onnxruntime runs its int8 kernels; read from ``dna_depth.precision``).
    """

    name = "onnxruntime"
    fp16 = False

    def __init__(self, source: Any, providers: Sequence[Any] | None = None, device: str = "auto",
                 threads: int | None = None, spin: bool = True, height: int | None = None,
                 width: int | None = None):
        import onnxruntime as ort  # noqa: F401 - fail early with ImportError when it is missing

        from dna_depth_core.export import check_onnx_file, config_from_onnx_metadata, read_onnx_metadata

        self.providers_requested = list(providers) if providers is not None else default_providers(device)
        self.threads = int(threads or usable_cpus())
        self.spin = bool(spin)
        self._net = None
        self._sessions: dict[tuple[int, int], Any] = {}
        if isinstance(source, torch.nn.Module) or (
                isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(".safetensors")):
            from dna_depth_core.export import _load_net

            self._net, self._provenance = _load_net(source)
            self._net = self._net.float().cpu().eval()
            self.config = self._net.config
            self.source = "<DepthNet>" if isinstance(source, torch.nn.Module) else os.fspath(source)
            self.dynamic = False
            self.precision = "fp32"
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
            self.precision = meta.get("precision", "fp32")  # "int8" for `dna-depth export-onnx --int8`
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

    def _cuda_index(self) -> int:
        for p in self.providers_requested:
            if isinstance(p, tuple) and p[0] == "CUDAExecutionProvider":
                return int(p[1].get("device_id", 0))
        return 0

    def _make_session(self, model: str | bytes):
        import onnxruntime as ort

        so = session_options(self.threads, self.spin)
        try:
            return ort.InferenceSession(model, so, providers=self.providers_requested)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            what = self.source if isinstance(model, (bytes, bytearray)) else model
            raise ValueError(f"ONNX model {what}: onnxruntime cannot load it ({type(exc).__name__}: {exc})") from exc

    def _session_for(self, h: int, w: int):
        if (h, w) not in self._sessions:
            from dna_depth_core.export import export_to_bytes

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


# ----------------------------------------------------------------------------------------------------------------
# DepthEstimator-style factories: (checkpoint, device="auto", fp16=False) -> backend
# ----------------------------------------------------------------------------------------------------------------
def torch_backend_factory(checkpoint: Any, device: str = "auto", fp16: bool = False) -> TorchBackend:
    """TorchBackend with this project's measured defaults: fp32 eager (channels_last on the CPU, where
    benchmarks/cpu_fastpath.py found it faster); fp16 on CUDA when asked (ignored with a warning on the CPU)."""
    dev = resolve_device(device)
    if fp16 and dev.type != "cuda":
        warnings.warn("fp16 requested on the CPU: ignored (fp16 is used on CUDA only)", stacklevel=2)
    dtype = torch.float16 if (fp16 and dev.type == "cuda") else torch.float32
    return TorchBackend(checkpoint, device=dev, dtype=dtype, channels_last=CPU_CHANNELS_LAST and dev.type == "cpu")


def onnxruntime_backend_factory(checkpoint: Any, device: str = "auto", fp16: bool = False) -> OnnxBackend:
    """OnnxBackend from a ``.onnx`` file (fp32, or int8 from ``export-onnx --int8``) or a checkpoint (fp32);
    ``fp16`` is ignored with a warning."""
    if fp16:
        warnings.warn("fp16 is not supported by the onnxruntime backend: running fp32", stacklevel=2)
    if checkpoint is None or (isinstance(checkpoint, (str, os.PathLike)) and not os.fspath(checkpoint).endswith(".onnx")):
        checkpoint = load_network(checkpoint)
    return OnnxBackend(checkpoint, device=device)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def recommended_backend(device: str | torch.device = "auto") -> str:
    """The backend name measured fastest with fp32 accuracy (docs/deployment.md): ``onnxruntime`` on the CPU when
    it is installed, ``torch`` otherwise and on CUDA."""
    dev = resolve_device(device)
    return "onnxruntime" if dev.type == "cpu" and onnxruntime_available() else "torch"


def auto_backend_factory(checkpoint: Any, device: str = "auto", fp16: bool = False):
    """``backend="auto"``: :func:`recommended_backend` for ``device`` (an ``.onnx`` file always goes to
    onnxruntime)."""
    is_onnx = isinstance(checkpoint, (str, os.PathLike, bytes, bytearray)) and (
        isinstance(checkpoint, (bytes, bytearray)) or os.fspath(checkpoint).endswith(".onnx"))
    if is_onnx or recommended_backend(device) == "onnxruntime":
        return onnxruntime_backend_factory(checkpoint, device=device, fp16=fp16)
    return torch_backend_factory(checkpoint, device=device, fp16=fp16)


#: Whether the CPU torch path uses channels_last by default (measured 1.25x faster than NCHW in CPU time for dna_b0
#: and monodepth2_r18 at 640x192 on this project's AVX-512 CPU: docs/deployment.md).
CPU_CHANNELS_LAST = True

#: Factories by backend name, for ``dna_depth_core.inference.register_backend``.
FACTORIES = {"torch": torch_backend_factory, "onnxruntime": onnxruntime_backend_factory,
             "auto": auto_backend_factory}

__all__ = [
    "FACTORIES",
    "OnnxBackend",
    "auto_backend_factory",
    "TorchBackend",
    "check_input",
    "default_providers",
    "onnxruntime_backend_factory",
    "recommended_backend",
    "resolve_device",
    "session_options",
    "torch_backend_factory",
    "usable_cpus",
]
