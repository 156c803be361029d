"""Side-by-side inference benchmark: parameters, MACs, latency, FPS and peak memory per (model, backend).

>>> report = bench(["dna_b0", "monodepth2_r18"], ["torch", "onnxruntime"], height=192, width=640)
>>> print(format_table(report))

Backends are named ``torch`` (fp32 eager) or ``onnxruntime``; torch variants add options with ``+``:
``torch+cl`` (channels_last), ``torch+bf16`` (CPU: bfloat16 autocast; CUDA: bfloat16 weights), ``torch+fp16``
(CUDA), ``torch+compile`` (torch.compile), ``torch+graph`` (CUDA graphs), e.g. ``torch+cl+bf16``.
``onnxruntime+int8`` (CPU) runs the export quantised by :func:`dna_depth_core.export.quantize_onnx_int8`,
calibrated on :data:`INT8_CALIBRATION_FRAMES` synthetic street frames rendered at the benchmark size
(:func:`synthetic_calibration_frames`; no data set, no licence), so only its latency is meaningful with the
seeded random weights.

Method (per model and backend):

- weights: seeded random initialisation (``torch.manual_seed(0)``), saved once to a temporary checkpoint that every
  measurement loads, so all backends run the same function (latency does not depend on the weights' values);
  onnxruntime runs an export of that checkpoint (static shape, opset 17).
- ``isolate=True`` (default): every measurement runs in a fresh Python process, one after another, so that one
  backend's allocations, thread pools and caches cannot help or hurt the next, and so that peak memory is that
  process's own: on the CPU ``peak_mem_mb`` is the growth of the resident-set high-water mark (``VmHWM`` in
  /proc/self/status, reset after the imports) while building the backend and running it; on CUDA it is
  ``torch.cuda.max_memory_allocated`` (torch backends; None for onnxruntime).
- latency: ``warmup`` calls, then timed calls (``time.perf_counter`` around one ``backend(x)`` call with a numpy
  ``(batch, 3, H, W)`` float32 input, host copies included, CUDA synchronised) until ``iters`` calls or
  ``max_time`` seconds (at least ``min_iters``). Reported: median, p90, mean and min in ms; ``fps`` = batch /
  median; ``gflops_per_s`` = 2 x MACs x batch / median.
- accuracy: the scale-0 disparity of each backend on one seeded input, against the same model's ``torch``
  fp32 eager output (``max_abs_diff``, ``mean_abs_diff``).
- MACs: ``dna_depth_core.profiling`` (torch's FLOP counter; convolutions and matrix products only), per image.

``machine_info()`` records the CPU, its flags of interest, core count, clock, library versions, the load average
before and after (a busy machine makes every number slower), and the date.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Sequence

import numpy as np

TORCH_OPTIONS = ("cl", "bf16", "fp16", "compile", "graph")
ONNXRUNTIME_OPTIONS = ("int8",)
INT8_CALIBRATION_FRAMES = 8
RESULT_KEYS = ("model", "backend", "device", "height", "width", "batch", "params", "macs", "latency_ms_median",
               "latency_ms_p90", "latency_ms_mean", "latency_ms_min", "cpu_ms_median", "fps", "gflops_per_s", "peak_mem_mb",
               "max_abs_diff", "mean_abs_diff", "iters", "first_call_s", "threads", "error")


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """A parsed backend name: ``onnxruntime`` or ``torch`` plus options (see the module docstring)."""

    kind: str                      # "torch" or "onnxruntime"
    channels_last: bool = False
    dtype: str = "fp32"            # torch: fp32/bf16/fp16; onnxruntime: fp32/int8
    compile: bool = False
    cuda_graph: bool = False

    @classmethod
    def parse(cls, name: str) -> "BackendSpec":
        parts = [p.strip().lower() for p in str(name).split("+")]
        head, opts = parts[0], parts[1:]
        if head in ("onnxruntime", "ort", "onnx"):
            bad = [o for o in opts if o not in ONNXRUNTIME_OPTIONS]
            if bad:
                raise ValueError(f"backend '{name}': unknown onnxruntime option(s) {bad}; options: "
                                 f"{', '.join(ONNXRUNTIME_OPTIONS)}")
            return cls("onnxruntime", dtype="int8" if "int8" in opts else "fp32")
        if head != "torch":
            raise ValueError(f"backend '{name}' unknown; use torch[+{'|+'.join(TORCH_OPTIONS)}] or "
                             f"onnxruntime[+{'|+'.join(ONNXRUNTIME_OPTIONS)}]")
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
        if self.kind == "onnxruntime":
            return "onnxruntime+int8" if self.dtype == "int8" else "onnxruntime"
        opts = [o for o, on in (("cl", self.channels_last), (self.dtype, self.dtype != "fp32"),
                                ("compile", self.compile), ("graph", self.cuda_graph)) if on]
        return "+".join(["torch", *opts])


# ----------------------------------------------------------------------------------------------------------------
# Machine description
# ----------------------------------------------------------------------------------------------------------------
_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile",
                      "amx_bf16", "amx_int8", "avx512_fp16")


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # first processor only
                key, _, value = line.partition(":")
                out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def cpu_peak_gflops(cores: int | None = None, ghz: float | None = None, flags: Sequence[str] | None = None
                    ) -> tuple[float | None, str]:
    """Theoretical fp32 peak of the usable cores and the assumptions behind it.

    FLOPs per cycle per core: AVX-512 with two FMA units = 2 units x 16 lanes x 2 (multiply + add) = 64;
    AVX2+FMA = 2 x 8 x 2 = 32; else 16 (SSE). The clock is the nominal one of the CPU's name (``@ 2.50GHz``) or
    /proc/cpuinfo's ``cpu MHz``; AVX-512 turbo/licence clocks differ, and cheaper Xeons have one AVX-512 FMA unit
    (half this peak), which a virtual machine does not reveal.
    """
    info = _cpuinfo()
    flags = set(flags if flags is not None else info.get("flags", "").split())
    cores = cores or _usable_cpus()
    if ghz is None:
        m = re.search(r"@\s*([\d.]+)\s*GHz", info.get("model name", ""))
        if m:
            ghz = float(m.group(1))
        elif info.get("cpu MHz"):
            ghz = float(info["cpu MHz"]) / 1000.0
    if not ghz:
        return None, "clock unknown"
    if "avx512f" in flags:
        per_cycle, isa = 64, "AVX-512, 2 FMA units x 16 fp32 lanes x 2 FLOP"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, isa = 32, "AVX2, 2 FMA units x 8 fp32 lanes x 2 FLOP"
    else:
        per_cycle, isa = 16, "SSE, 4 lanes x 2 units x 2 FLOP"
    peak = cores * ghz * per_cycle
    return peak, (f"{cores} cores x {ghz:.2f} GHz (nominal) x {per_cycle} FLOP/cycle ({isa}); assumes every usable "
                  f"CPU is a full core (a VM's vCPU may be a hyperthread) and the nominal clock under AVX-512")


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model, flags of interest, cores, clock, peak estimate, library versions, load average and date."""
    import torch

    info = _cpuinfo()
    flags = info.get("flags", "").split()
    peak, assumptions = cpu_peak_gflops(flags=flags)
    out: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": info.get("model name", platform.processor() or "unknown"),
        "cpu_flags": {f: f in flags for f in _FLAGS_OF_INTEREST},
        "usable_cpus": _usable_cpus(),
        "cpu_count": os.cpu_count(),
        "cpu_peak_gflops_fp32": peak,
        "cpu_peak_assumptions": assumptions,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_bf16_supported": bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: None)()),
        "loadavg_start": _loadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": _versions(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
    return out


def _versions() -> dict[str, str | None]:
    import importlib

    out: dict[str, str | None] = {}
    for mod in ("torch", "timm", "onnx", "onnxruntime", "numpy"):
        try:
            out[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - absent or broken
            out[mod] = None
    return out


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------------------------------------------
# One measurement (runs in a worker process when isolated)
# ----------------------------------------------------------------------------------------------------------------
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
    """One (model, backend) measurement in this process. ``task``: ``model``, ``backend``, ``checkpoint`` (torch),
    ``onnx`` (onnxruntime), ``onnx_int8`` (onnxruntime+int8), ``height``, ``width``, ``batch``, ``device``,
    ``threads``, ``warmup``, ``iters``, ``min_iters``, ``max_time``, ``disp_out`` (a .npy path for the scale-0
    disparity, or None), ``isolated``."""
    import torch

    from dna_depth_core.backends import OnnxBackend, TorchBackend, resolve_device

    spec = BackendSpec.parse(task["backend"])
    threads = int(task.get("threads") or _usable_cpus())
    torch.set_num_threads(threads)
    device = resolve_device(task.get("device", "cpu"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    h, w, b = int(task["height"]), int(task["width"]), int(task.get("batch", 1))
    rng = np.random.default_rng(0)
    x = rng.random((b, 3, h, w), dtype=np.float32)

    # Import what the backend needs before the memory baseline, so that peak_mem_mb counts the model, the session
    # and the activations, not the libraries (timm pulls in torchvision; onnxruntime never needs it).
    if spec.kind == "onnxruntime":
        import onnxruntime  # noqa: F401
    else:
        import timm  # noqa: F401

        import dna_depth_core.models.encoders  # noqa: F401
    reset = task.get("isolated", False) and device.type == "cpu" and _reset_peak_rss()
    rss0 = _status_kb("VmRSS") if reset else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda0 = torch.cuda.memory_allocated(device)
    if spec.kind == "onnxruntime":
        backend = OnnxBackend(task["onnx_int8"] if spec.dtype == "int8" else task["onnx"], device=str(device),
                              threads=threads)
    else:
        from dna_depth_core.io.checkpoint import load_checkpoint

        net = load_checkpoint(task["checkpoint"], map_location="cpu")
        backend = TorchBackend(net, device=device, dtype=spec.dtype, channels_last=spec.channels_last,
                               compile=spec.compile, cuda_graph=spec.cuda_graph)

    def call() -> np.ndarray:
        out = backend(x)  # numpy out: synchronises CUDA
        return out

    t0 = time.perf_counter()
    first = call()
    first_call_s = time.perf_counter() - t0
    for _ in range(max(0, int(task.get("warmup", 3)) - 1)):
        call()
    times: list[float] = []
    cpu_times: list[float] = []
    iters, min_iters, max_time = int(task.get("iters", 20)), int(task.get("min_iters", 5)), float(task.get("max_time", 30))
    start = time.perf_counter()
    while len(times) < iters and (len(times) < min_iters or time.perf_counter() - start < max_time):
        c = time.process_time()
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    arr = np.asarray(times) * 1e3
    result: dict[str, Any] = {
        "model": task["model"], "backend": spec.name, "device": str(device), "height": h, "width": w, "batch": b,
        "threads": threads, "iters": len(times), "first_call_s": round(first_call_s, 4),
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


def _worker_main(argv: list[str]) -> int:
    task = json.loads(argv[0])
    try:
        result = measure(task)
    except Exception as exc:  # noqa: BLE001 - report, the parent carries on with the other measurements
        result = {"model": task.get("model"), "backend": task.get("backend"),
                  "error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _run_isolated(task: dict[str, Any], timeout: float) -> dict[str, Any]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    task = dict(task, isolated=True)
    try:
        proc = subprocess.run([sys.executable, "-m", "dna_depth_core.benchmark", "--worker", json.dumps(task)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": task["model"], "backend": task["backend"], "error": f"timed out after {timeout:.0f} s"}
    marker = proc.stdout.rfind("@@RESULT@@")
    if marker < 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"model": task["model"], "backend": task["backend"],
                "error": f"worker exited with {proc.returncode}: {' | '.join(tail)}"}
    return json.loads(proc.stdout[marker + len("@@RESULT@@"):].splitlines()[0])


# ----------------------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------------------
def synthetic_calibration_frames(width: int, height: int, count: int = INT8_CALIBRATION_FRAMES,
                                 seed: int = 0) -> list[np.ndarray]:
    """``count`` synthetic street frames ``(height, width, 3)`` uint8 RGB (:mod:`dna_depth_core.data.synthetic`,
    rendered in memory, every 4th frame of a drive, no supersampling): int8 calibration images for benchmarks."""
    from dna_depth_core.data.synthetic import SyntheticScene, make_trajectory, synthetic_intrinsics

    poses, _ = make_trajectory(4 * count, seed=seed)
    scene = SyntheticScene(seed)
    K = synthetic_intrinsics(width, height)
    return [scene.render(poses[i], K, width, height, ss=1)[0] for i in range(0, 4 * count, 4)]


def _prepare_model(name: str, height: int, width: int, batch: int, workdir: str, need_onnx: bool,
                   weights: str | None = None, need_int8: bool = False, threads: int | None = None
                   ) -> dict[str, Any]:
    import torch

    from dna_depth_core.io.checkpoint import load_checkpoint, save_checkpoint
    from dna_depth_core.models.registry import build_model
    from dna_depth_core.profiling import profile_model

    prof = profile_model(name, height, width)
    if weights:
        net = load_checkpoint(weights, map_location="cpu", expected_model=name)
        ckpt = weights
    else:
        torch.manual_seed(0)
        net = build_model(name, height=height, width=width).eval()
        ckpt = os.path.join(workdir, f"{name}.safetensors")
        save_checkpoint(net, ckpt, provenance={"source": "seeded random init (benchmark)"})
    onnx_path = None
    if need_onnx:
        from dna_depth_core.export import export_onnx

        onnx_path = os.path.join(workdir, f"{name}_{height}x{width}.onnx")
        export_onnx(net, onnx_path, height=height, width=width, batch=batch, verify=False)
    int8_path = None
    if need_int8:
        from dna_depth_core.export import quantize_onnx_int8

        int8_path = os.path.join(workdir, f"{name}_{height}x{width}_int8.onnx")
        quantize_onnx_int8(onnx_path, int8_path, synthetic_calibration_frames(width, height), count=None,
                           threads=threads, verify=False)
    return {"params": prof["params"], "macs": prof["macs"], "checkpoint": ckpt, "onnx": onnx_path,
            "onnx_int8": int8_path}


def bench(models: Sequence[str], backends: Sequence[str], height: int = 192, width: int = 640, batch: int = 1,
          device: str = "cpu", threads: int | None = None, warmup: int = 3, iters: int = 20, min_iters: int = 5,
          max_time: float = 30.0, repeats: int = 1, isolate: bool = True, compare: bool = True,
          weights: dict[str, str] | None = None, timeout: float = 900.0, progress=None) -> dict[str, Any]:
    """Measure every (model, backend) pair; returns ``{"machine", "settings", "results"}``.

    ``results`` holds one dict per pair with :data:`RESULT_KEYS` (values None when not measurable). With
    ``repeats`` > 1 the pairs are measured round-robin that many times and the samples pooled (fairer on a
    machine whose load changes). ``weights``: optional ``{model: checkpoint}`` to measure real weights.
    ``progress``: optional callable receiving one line per finished measurement.
    """
    from dna_depth_core.backends import resolve_device
    from dna_depth_core.models.registry import list_models

    if height % 32 or width % 32 or height <= 0 or width <= 0:
        raise ValueError(f"--height/--width must be positive multiples of 32, got {height}x{width}")
    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    unknown = [m for m in models if m not in list_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; available: {', '.join(list_models())}")
    if not models or not backends:
        raise ValueError("give at least one model and one backend")
    specs = [BackendSpec.parse(b) for b in backends]
    dev = resolve_device(device)
    for s in specs:
        if dev.type == "cpu" and (s.dtype == "fp16" or s.cuda_graph):
            raise ValueError(f"backend '{s.name}' needs CUDA (fp16 and CUDA graphs are GPU options)")
        if dev.type == "cuda" and s.dtype == "int8":
            raise ValueError(f"backend '{s.name}' is a CPU path (onnxruntime int8 kernels); use --device cpu")
    threads = int(threads or _usable_cpus())
    machine = machine_info(str(dev))
    settings = {"height": height, "width": width, "batch": batch, "device": str(dev), "threads": threads,
                "warmup": warmup, "iters": iters, "min_iters": min_iters, "max_time": max_time, "repeats": repeats,
                "isolate": isolate, "weights": "checkpoints" if weights else "seeded random init"}
    results: dict[tuple[str, str], dict[str, Any]] = {}
    disps: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory(prefix="dna-depth-bench-") as workdir:
        need_int8 = any(s.kind == "onnxruntime" and s.dtype == "int8" for s in specs)
        prepared = {m: _prepare_model(m, height, width, batch, workdir, any(s.kind == "onnxruntime" for s in specs),
                                      (weights or {}).get(m), need_int8=need_int8, threads=threads) for m in models}
        for rep in range(repeats):
            for m in models:
                for s in specs:
                    disp_out = os.path.join(workdir, f"{m}__{s.name}.npy") if compare and rep == 0 else None
                    task = {"model": m, "backend": s.name, "checkpoint": prepared[m]["checkpoint"],
                            "onnx": prepared[m]["onnx"], "onnx_int8": prepared[m]["onnx_int8"], "height": height,
                            "width": width, "batch": batch,
                            "device": str(dev), "threads": threads, "warmup": warmup, "iters": iters,
                            "min_iters": min_iters, "max_time": max_time, "disp_out": disp_out}
                    r = _run_isolated(task, timeout) if isolate else _safe_measure(task)
                    if disp_out and os.path.exists(disp_out):
                        disps[(m, s.name)] = disp_out
                    key = (m, s.name)
                    if key in results and "error" not in results[key] and "error" not in r:
                        prev = results[key]
                        prev["samples_ms"] += r["samples_ms"]
                        prev["cpu_samples_ms"] += r.get("cpu_samples_ms", [])
                        prev["iters"] += r["iters"]
                        if r.get("peak_mem_mb") is not None:
                            prev["peak_mem_mb"] = max(prev.get("peak_mem_mb") or 0.0, r["peak_mem_mb"])
                    else:
                        results[key] = r
                    if progress:
                        progress(_progress_line(r, rep, repeats))
        # The fp32 peak of the cores the measurement may use (threads, at most the usable CPUs).
        peak, _ = cpu_peak_gflops(cores=min(threads, machine["usable_cpus"]))
        settings["cpu_peak_gflops_fp32_for_threads"] = peak
        rows = []
        for m in models:
            ref = np.load(disps[(m, "torch")]) if (m, "torch") in disps else None
            for s in specs:
                r = results[(m, s.name)]
                r.setdefault("model", m)
                r.setdefault("backend", s.name)
                r.update(params=prepared[m]["params"], macs=prepared[m]["macs"], height=height, width=width,
                         batch=batch, device=str(dev))
                if "samples_ms" in r:
                    a = np.asarray(r["samples_ms"])
                    r.update(latency_ms_median=float(np.median(a)), latency_ms_p90=float(np.percentile(a, 90)),
                             latency_ms_mean=float(a.mean()), latency_ms_min=float(a.min()))
                    if r.get("cpu_samples_ms"):
                        r["cpu_ms_median"] = float(np.median(r["cpu_samples_ms"]))
                    med_s = r["latency_ms_median"] / 1e3
                    r["fps"] = batch / med_s
                    r["gflops_per_s"] = 2 * prepared[m]["macs"] * batch / med_s / 1e9
                    if dev.type == "cpu" and peak:
                        r["percent_of_cpu_peak"] = 100.0 * r["gflops_per_s"] / peak
                if ref is not None and (m, s.name) in disps:
                    d = np.abs(np.load(disps[(m, s.name)]).astype(np.float64) - ref)
                    r["max_abs_diff"], r["mean_abs_diff"] = float(d.max()), float(d.mean())
                for k in RESULT_KEYS:
                    r.setdefault(k, None)
                rows.append(r)
    machine["loadavg_end"] = _loadavg()
    return {"machine": machine, "settings": settings, "results": rows}


def _safe_measure(task: dict[str, Any]) -> dict[str, Any]:
    import torch

    threads = torch.get_num_threads()
    try:
        return measure(dict(task, isolated=False))
    except Exception as exc:  # noqa: BLE001
        return {"model": task["model"], "backend": task["backend"], "error": f"{type(exc).__name__}: {exc}"}
    finally:
        torch.set_num_threads(threads)  # measure() sets the thread count; leave the caller's as it was


def _progress_line(r: dict[str, Any], rep: int, repeats: int) -> str:
    tag = f"[{rep + 1}/{repeats}] " if repeats > 1 else ""
    if r.get("latency_ms_median") is None:
        return f"{tag}{r.get('model')} {r.get('backend')}: {r.get('error')}"
    return (f"{tag}{r['model']} {r['backend']}: median {r['latency_ms_median']:.1f} ms over {r['iters']} calls "
            f"(first call {r['first_call_s']:.2f} s)")


# ----------------------------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------------------------
def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(report: dict[str, Any], markdown: bool = False) -> str:
    """The results as an aligned text table (or a markdown table), one row per (model, backend)."""
    cpu = report["settings"]["device"] == "cpu"
    head = ["model", "backend", "params (M)", "GMACs", "median ms", "p90 ms", "min ms"] + (["CPU ms"] if cpu else [])
    head += ["FPS", "GFLOP/s"]
    head += ["% CPU peak"] if cpu else []
    head += ["peak MB", "max |d disp|", "note"]
    rows = []
    for r in report["results"]:
        row = [r["model"], r["backend"], _f(r["params"] and r["params"] / 1e6, ".3f"), _f(r["macs"] and r["macs"] / 1e9, ".2f"),
               _f(r["latency_ms_median"], ".1f"), _f(r["latency_ms_p90"], ".1f"), _f(r["latency_ms_min"], ".1f")]
        row += [_f(r.get("cpu_ms_median"), ".1f")] if cpu else []
        row += [_f(r["fps"], ".2f"), _f(r["gflops_per_s"], ".1f")]
        row += [_f(r.get("percent_of_cpu_peak"), ".1f")] if cpu else []
        row += [_f(r["peak_mem_mb"], ".0f"), _f(r["max_abs_diff"], ".1e"), (r.get("error") or "")[:80]]
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def format_header(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    flags = ", ".join(f for f, on in m["cpu_flags"].items() if on)
    lines = [
        f"date: {m['date']}",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs" + (f", GPU {m['gpu']}" if m.get("gpu") else ""),
        f"cpu flags: {flags}; torch CPU capability {m['torch_cpu_capability']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + f", python {m['python']}",
        f"load average: start {m['loadavg_start']}, end {m.get('loadavg_end')}",
        f"settings: {s['width']}x{s['height']} batch {s['batch']} on {s['device']}, {s['threads']} threads, "
        f"{s['warmup']} warm-up calls, up to {s['iters']} timed calls ({s['max_time']} s cap), "
        f"{'one process per measurement' if s['isolate'] else 'in-process'}, weights: {s['weights']}",
    ]
    if s["device"] == "cpu" and m.get("cpu_peak_gflops_fp32"):
        lines.append(f"CPU fp32 peak: {m['cpu_peak_gflops_fp32']:.0f} GFLOP/s = {m['cpu_peak_assumptions']}")
        if s.get("cpu_peak_gflops_fp32_for_threads") not in (None, m["cpu_peak_gflops_fp32"]):
            lines.append(f"  % CPU peak is against the {s['threads']}-thread peak, "
                         f"{s['cpu_peak_gflops_fp32_for_threads']:.0f} GFLOP/s")
        lines.append("CPU ms = process CPU time per call (all threads; with 1 thread it is the call's compute time "
                     "even when other processes share the cores)")
    return "\n".join(lines)


def to_markdown(report: dict[str, Any], title: str = "Benchmark") -> str:
    return f"## {title}\n\n```\n{format_header(report)}\n```\n\n{format_table(report, markdown=True)}\n"


def write_report(report: dict[str, Any], json_path: str | None = None, markdown_path: str | None = None,
                 title: str = "Benchmark") -> None:
    from dna_depth_core.io.atomic import atomic_write

    def writer(text: str):
        def write(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write(text)
        return write

    from dna_depth_core.export import set_default_mode

    if json_path:
        atomic_write(json_path, writer(json.dumps(report, indent=1) + "\n"))
        set_default_mode(json_path)
    if markdown_path:
        atomic_write(markdown_path, writer(to_markdown(report, title)))
        set_default_mode(markdown_path)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        sys.exit(_worker_main(sys.argv[2:]))
    print("usage: python -m dna_depth_core.benchmark --worker TASK_JSON (internal); use `dna-depth bench`",
          file=sys.stderr)
    sys.exit(2)
