"""One benchmark measurement: a parsed backend name (:class:`BackendSpec`) and :func:`measure`, which builds the
backend for one (model, backend) task and times it in the calling process. The harness runs it in a fresh worker
process (:mod:`.worker`) or, with ``isolate=False``, in its own.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import numpy as np
import torch

from dna_depth_core import machine
from dna_depth_core.backends.base import resolve_device
from dna_depth_core.backends.onnx_backend import OnnxBackend
from dna_depth_core.backends.openvino_backend import OpenVinoBackend
from dna_depth_core.backends.registry import create_backend
from dna_depth_core.backends.torch_backend import TorchBackend
from dna_depth_core.io.checkpoint import load_checkpoint

TORCH_OPTIONS = ("cl", "bf16", "fp16", "compile", "graph")
#: onnxruntime options: ``int8`` (the QDQ export, exact kernels per CPU), ``rr`` (with int8: 7-bit weights,
#: reduce_range), ``raw`` (fp32: the export without the graph clean-ups, to measure them).
ONNXRUNTIME_OPTIONS = ("int8", "rr", "raw")
#: OpenVINO options: ``int8`` (the NNCF IR for this CPU), ``bf16`` (native bf16 only), ``raw`` (fp32, no clean-ups).
OPENVINO_OPTIONS = ("int8", "bf16", "raw")
#: A worker process prints its result as JSON after this marker, on one line (:mod:`.worker`).
RESULT_MARKER = "@@RESULT@@"


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """A parsed benchmark backend name: ``torch``, ``onnxruntime``, ``openvino`` or ``auto`` plus options joined
    with ``+``.

    torch options: ``cl`` (channels_last), ``bf16`` (CPU: bfloat16 autocast; CUDA: bfloat16 weights), ``fp16``
    (CUDA), ``compile`` (torch.compile), ``graph`` (CUDA graphs), e.g. ``torch+cl+bf16``. onnxruntime options
    (:data:`ONNXRUNTIME_OPTIONS`): ``int8``, ``int8+rr``, ``raw``; ``ort`` and ``onnx`` are accepted for
    ``onnxruntime``. openvino options (:data:`OPENVINO_OPTIONS`): ``int8``, ``bf16``, ``raw``. ``auto``: what
    ``backend: auto`` picks for the fp32 export on this machine (no options).
    """

    kind: str                      # "torch", "onnxruntime", "openvino" or "auto"
    channels_last: bool = False
    dtype: str = "fp32"            # torch: fp32/bf16/fp16; onnxruntime: fp32/int8; openvino: fp32/bf16/int8
    compile: bool = False
    cuda_graph: bool = False
    raw: bool = False              # onnxruntime/openvino fp32: the export without graph clean-ups
    reduce_range: bool = False     # onnxruntime int8: 7-bit weights

    @classmethod
    def parse(cls, name: str) -> "BackendSpec":
        parts = [p.strip().lower() for p in str(name).split("+")]
        head, opts = parts[0], parts[1:]
        if head in ("onnxruntime", "ort", "onnx", "openvino", "ov"):
            kind = "openvino" if head in ("openvino", "ov") else "onnxruntime"
            allowed = OPENVINO_OPTIONS if kind == "openvino" else ONNXRUNTIME_OPTIONS
            bad = [o for o in opts if o not in allowed]
            if bad:
                raise ValueError(f"backend '{name}': unknown {kind} option(s) {bad}; options: {', '.join(allowed)}")
            dtype = "int8" if "int8" in opts else ("bf16" if "bf16" in opts else "fp32")
            if "raw" in opts and dtype != "fp32":
                raise ValueError(f"backend '{name}': raw (no graph clean-ups) is an fp32 variant")
            if "rr" in opts and dtype != "int8":
                raise ValueError(f"backend '{name}': rr (reduce_range) is an int8 option")
            return cls(kind, dtype=dtype, raw="raw" in opts, reduce_range="rr" in opts)
        if head == "auto":
            if opts:
                raise ValueError(f"backend '{name}': auto takes no options")
            return cls("auto")
        if head != "torch":
            raise ValueError(f"backend '{name}' unknown; use torch[+{'|+'.join(TORCH_OPTIONS)}], "
                             f"onnxruntime[+{'|+'.join(ONNXRUNTIME_OPTIONS)}], "
                             f"openvino[+{'|+'.join(OPENVINO_OPTIONS)}] or auto")
        bad = [o for o in opts if o not in TORCH_OPTIONS]
        if bad:
            raise ValueError(f"backend '{name}': unknown option(s) {bad}; options: {', '.join(TORCH_OPTIONS)}")
        if "bf16" in opts and "fp16" in opts:
            raise ValueError(f"backend '{name}': choose one of bf16 and fp16")
        dtype = "bf16" if "bf16" in opts else ("fp16" if "fp16" in opts else "fp32")
        return cls("torch", channels_last="cl" in opts, dtype=dtype, compile="compile" in opts,
                   cuda_graph="graph" in opts)

    @property
    def name(self) -> str:
        """The canonical name (options in a fixed order): ``torch+cl+bf16``, ``onnxruntime+int8``, ..."""
        if self.kind in ("onnxruntime", "openvino", "auto"):
            opts = [o for o, on in ((self.dtype, self.dtype != "fp32"), ("rr", self.reduce_range),
                                    ("raw", self.raw)) if on]
            return "+".join([self.kind, *opts])
        opts = [o for o, on in (("cl", self.channels_last), (self.dtype, self.dtype != "fp32"),
                                ("compile", self.compile), ("graph", self.cuda_graph)) if on]
        return "+".join(["torch", *opts])


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs). False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(task: dict[str, Any]) -> dict[str, Any]:
    """One (model, backend) measurement in this process.

    ``task`` keys: ``model``, ``backend`` (a :class:`BackendSpec` name), ``checkpoint`` (torch), ``onnx``
    (onnxruntime, openvino, auto: the cleaned fp32 export), ``onnx_raw`` (``+raw``: without clean-ups),
    ``onnx_int8`` / ``onnx_int8_rr`` (onnxruntime+int8[+rr]), ``ov_int8`` (openvino+int8: the NNCF IR),
    ``height``, ``width``, ``batch``, ``device``, ``threads``,
    ``warmup``, ``iters``, ``min_iters``, ``max_time``, ``disp_out`` (a .npy path for the scale-0 disparity of the
    first call, or None) and ``isolated`` (True in a worker process of its own: peak memory is then measured).

    Returns ``model``, ``backend``, ``device``, ``height``, ``width``, ``batch``, ``threads``, ``iters``,
    ``first_call_s``, ``latency_ms_{median,p90,mean,min}``, ``samples_ms`` and ``cpu_samples_ms`` (wall and
    process CPU time of every timed call), ``peak_mem_mb`` (None when not measurable), ``precision`` and
    ``reason`` (what ran and why, for ``auto`` the rule's line) and, when torch.compile fell back to eager,
    ``error``.
    """
    spec = BackendSpec.parse(task["backend"])
    threads = int(task.get("threads") or machine.usable_cpus())
    torch.set_num_threads(threads)
    device = resolve_device(task.get("device", "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    h, w, b = int(task["height"]), int(task["width"]), int(task.get("batch", 1))
    x = np.random.default_rng(0).random((b, 3, h, w), dtype=np.float32)

    # The runtimes are imported before the memory baseline, so that peak_mem_mb counts the session and the
    # activations, not the library.
    if spec.kind in ("onnxruntime", "auto"):
        import onnxruntime  # noqa: F401  # optional dependency: onnxruntime
    if spec.kind in ("openvino", "auto"):
        try:
            import openvino  # noqa: F401  # optional dependency: openvino
        except ImportError:
            if spec.kind == "openvino":
                raise
    reset = task.get("isolated", False) and device.type == "cpu" and _reset_peak_rss()
    rss0 = _status_kb("VmRSS") if reset else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda0 = torch.cuda.memory_allocated(device)
    backend = build_backend(spec, task, device, threads)

    t0 = time.perf_counter()
    first = backend(x)  # numpy out: synchronises CUDA
    first_call_s = time.perf_counter() - t0
    for _ in range(max(0, int(task.get("warmup", 3)) - 1)):
        backend(x)
    times: list[float] = []
    cpu_times: list[float] = []
    iters, min_iters = int(task.get("iters", 20)), int(task.get("min_iters", 5))
    max_time = float(task.get("max_time", 30))
    start = time.perf_counter()
    while len(times) < iters and (len(times) < min_iters or time.perf_counter() - start < max_time):
        c = time.process_time()
        t = time.perf_counter()
        backend(x)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    arr = np.asarray(times) * 1e3
    result: dict[str, Any] = {
        "model": task["model"], "backend": spec.name, "device": str(device), "height": h, "width": w, "batch": b,
        "precision": getattr(backend, "precision", spec.dtype), "reason": getattr(backend, "reason", None),
        "threads": getattr(backend, "threads", threads), "iters": len(times), "first_call_s": round(first_call_s, 4),
        "latency_ms_median": float(np.median(arr)), "latency_ms_p90": float(np.percentile(arr, 90)),
        "latency_ms_mean": float(arr.mean()), "latency_ms_min": float(arr.min()),
        "samples_ms": [round(float(v), 3) for v in arr],
        "cpu_samples_ms": [round(1e3 * v, 3) for v in cpu_times],
    }
    if getattr(backend, "compile_error", None):
        result["error"] = f"torch.compile failed, eager was measured: {backend.compile_error}"
    if device.type == "cuda":
        result["peak_mem_mb"] = ((torch.cuda.max_memory_allocated(device) - cuda0) / 2**20
                                 if spec.kind == "torch" else None)
    elif reset:
        hwm = _status_kb("VmHWM")
        result["peak_mem_mb"] = (hwm - rss0) / 1024 if hwm is not None and rss0 is not None else None
    else:
        result["peak_mem_mb"] = None
    if task.get("disp_out"):
        np.save(task["disp_out"], first[:1].astype(np.float32))
    return result


def build_backend(spec: BackendSpec, task: dict[str, Any], device: torch.device, threads: int):
    """The backend a task measures (see :func:`measure` for the task keys)."""
    if spec.kind == "onnxruntime":
        source = {"int8": task.get("onnx_int8_rr" if spec.reduce_range else "onnx_int8"),
                  "fp32": task.get("onnx_raw" if spec.raw else "onnx")}[spec.dtype]
        return OnnxBackend(source, device=str(device), threads=threads)
    if spec.kind == "openvino":
        if spec.dtype == "int8":
            return OpenVinoBackend(task["ov_int8"], threads=threads)
        return OpenVinoBackend(task["onnx_raw"] if spec.raw else task["onnx"], precision=spec.dtype, threads=threads)
    if spec.kind == "auto":  # runs with the backends' default threads (the usable cores)
        return create_backend("auto", task["onnx"], device=str(device))
    net = load_checkpoint(task["checkpoint"], map_location="cpu")
    return TorchBackend(net, device=device, dtype=spec.dtype, channels_last=spec.channels_last,
                        compile=spec.compile, cuda_graph=spec.cuda_graph)


def parse_result(stdout: str) -> dict[str, Any] | None:
    """The result a worker printed (the JSON after the last :data:`RESULT_MARKER`), or None when there is none."""
    marker = stdout.rfind(RESULT_MARKER)
    if marker < 0:
        return None
    return json.loads(stdout[marker + len(RESULT_MARKER):].splitlines()[0])


__all__ = ["BackendSpec", "ONNXRUNTIME_OPTIONS", "OPENVINO_OPTIONS", "RESULT_MARKER", "TORCH_OPTIONS", "build_backend",
           "measure", "parse_result"]
