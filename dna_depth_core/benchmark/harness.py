"""The benchmark harness: every (model, backend) pair measured one after another, each in a fresh worker process
(:mod:`.worker`) by default, with the results pooled over repeats and compared against fp32 torch.

See :mod:`dna_depth_core.benchmark` for the method; :mod:`.report` formats the result.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Sequence

import numpy as np
import torch

from dna_depth_core import machine
from dna_depth_core.backends.base import resolve_device
from dna_depth_core.benchmark.tasks import BackendSpec, measure, parse_result
from dna_depth_core.data.synthetic import synthetic_frames
from dna_depth_core.export.int8 import quantize_onnx_int8
from dna_depth_core.export.onnx_export import export_onnx
from dna_depth_core.export.openvino_int8 import quantize_openvino_int8
from dna_depth_core.io.checkpoint import load_checkpoint, save_checkpoint
from dna_depth_core.models.registry import build_model, list_models
from dna_depth_core.profiling import profile_model

#: Synthetic street frames the ``onnxruntime+int8`` variant is calibrated on.
INT8_CALIBRATION_FRAMES = 8
#: The keys of every result row (None where not measurable).
RESULT_KEYS = ("model", "backend", "precision", "reason", "device", "height", "width", "batch", "params", "macs",
               "latency_ms_median", "latency_ms_p90", "latency_ms_mean", "latency_ms_min", "cpu_ms_median", "fps",
               "gflops_per_s", "peak_mem_mb", "max_abs_diff", "mean_abs_diff", "guard", "iters", "first_call_s",
               "threads", "error")


def run_isolated(task: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one task in a fresh ``python -m dna_depth_core.benchmark.worker`` process (this package first on its
    path) and return its result; a timeout, a crash or a missing result becomes ``{"model", "backend", "error"}``."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "dna_depth_core.benchmark.worker", json.dumps(task)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": task["model"], "backend": task["backend"], "error": f"timed out after {timeout:.0f} s"}
    result = parse_result(proc.stdout)
    if result is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"model": task["model"], "backend": task["backend"],
                "error": f"worker exited with {proc.returncode}: {' | '.join(tail)}"}
    return result


def synthetic_calibration_frames(width: int, height: int, count: int = INT8_CALIBRATION_FRAMES,
                                 seed: int = 0) -> list[np.ndarray]:
    """``count`` synthetic street frames ``(height, width, 3)`` uint8 RGB (the one builder,
    :func:`dna_depth_core.data.synthetic.synthetic_frames`: every 4th frame of a drive, no supersampling): int8
    calibration images for benchmarks."""
    return [rgb for rgb, _, _ in synthetic_frames(count, width, height, seed=seed, every=4, ss=1)]


def _prepare_model(name: str, height: int, width: int, batch: int, workdir: str, specs: Sequence[BackendSpec],
                   weights: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Parameters and MACs of ``name``, its checkpoint (``weights``, or seeded random weights saved to
    ``workdir``) and, as the ``specs`` need them, its static ONNX export (cleaned, and raw), the onnxruntime int8
    exports and the OpenVINO int8 IR, calibrated on synthetic frames."""
    need = {s.kind for s in specs}
    need_onnx = bool(need & {"onnxruntime", "openvino", "auto"})
    need_raw = any(s.raw for s in specs)
    need_int8 = any(s.kind == "onnxruntime" and s.dtype == "int8" and not s.reduce_range for s in specs)
    need_int8_rr = any(s.kind == "onnxruntime" and s.reduce_range for s in specs)
    need_ov_int8 = any(s.kind == "openvino" and s.dtype == "int8" for s in specs)
    prof = profile_model(name, height, width)
    if weights:
        net = load_checkpoint(weights, map_location="cpu", expected_model=name)
        ckpt = weights
    else:
        torch.manual_seed(0)
        net = build_model(name, height=height, width=width).eval()
        ckpt = os.path.join(workdir, f"{name}.safetensors")
        save_checkpoint(net, ckpt, provenance={"source": "seeded random init (benchmark)"})
    stem = os.path.join(workdir, f"{name}_{height}x{width}")
    out: dict[str, Any] = {"params": prof["params"], "macs": prof["macs"], "checkpoint": ckpt, "onnx": None,
                           "onnx_raw": None, "onnx_int8": None, "onnx_int8_rr": None, "ov_int8": None}
    if need_onnx or need_raw or need_int8 or need_int8_rr or need_ov_int8:
        out["onnx"] = stem + ".onnx"
        export_onnx(net, out["onnx"], height=height, width=width, batch=batch, verify=False)
    if need_raw:
        out["onnx_raw"] = stem + "_raw.onnx"
        export_onnx(net, out["onnx_raw"], height=height, width=width, batch=batch, verify=False, cleanup=False)
    frames = synthetic_calibration_frames(width, height) if need_int8 or need_int8_rr or need_ov_int8 else []
    if need_int8:
        out["onnx_int8"] = stem + "_int8.onnx"
        quantize_onnx_int8(out["onnx"], out["onnx_int8"], frames, count=None, threads=threads, verify=False)
    if need_int8_rr:
        out["onnx_int8_rr"] = stem + "_int8_rr.onnx"
        quantize_onnx_int8(out["onnx"], out["onnx_int8_rr"], frames, count=None, threads=threads, verify=False,
                           reduce_range=True)
    if need_ov_int8:
        out["ov_int8"] = stem + "_int8.xml"
        quantize_openvino_int8(out["onnx"], out["ov_int8"], frames, count=None, threads=threads, verify=False)
    return out


def bench(models: Sequence[str], backends: Sequence[str], height: int = 192, width: int = 640, batch: int = 1,
          device: str = "cpu", threads: int | None = None, warmup: int = 3, iters: int = 20, min_iters: int = 5,
          max_time: float = 30.0, repeats: int = 1, isolate: bool = True, compare: bool = True,
          weights: dict[str, str] | None = None, timeout: float = 900.0, progress=None,
          guard: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Measure every (model, backend) pair; returns ``{"machine", "settings", "results"}`` (+ ``"guard"``).

    ``results`` holds one dict per pair with :data:`RESULT_KEYS` (values None when not measurable). With
    ``repeats`` > 1 the pairs are measured round-robin that many times and the samples pooled (fairer on a
    machine whose load changes). ``weights``: optional ``{model: checkpoint}`` to measure real weights.
    ``progress``: optional callable receiving one line per finished measurement. ``guard``: accuracy-guard records
    (:func:`dna_depth_core.benchmark.guard.run_guard`, of trained networks) by path ``"backend:precision"``: each
    row of that path gets its verdict in ``guard`` (``{"passed", "d_abs_rel", "d_a1"}``: the largest deltas over
    the records' data sets), and the records go to the report's ``guard``.
    """
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
        if dev.type == "cuda" and (s.dtype == "int8" or s.kind == "openvino"):
            raise ValueError(f"backend '{s.name}' is a CPU path (int8 kernels, OpenVINO); use --device cpu")
    threads = int(threads or machine.usable_cpus())
    machine_desc = machine.describe(str(dev))
    settings = {"height": height, "width": width, "batch": batch, "device": str(dev), "threads": threads,
                "warmup": warmup, "iters": iters, "min_iters": min_iters, "max_time": max_time, "repeats": repeats,
                "isolate": isolate, "weights": "checkpoints" if weights else "seeded random init"}
    results: dict[tuple[str, str], dict[str, Any]] = {}
    disps: dict[tuple[str, str], str] = {}
    with tempfile.TemporaryDirectory(prefix="dna-depth-bench-") as workdir:
        prepared = {m: _prepare_model(m, height, width, batch, workdir, specs, (weights or {}).get(m),
                                      threads=threads) for m in models}
        for rep in range(repeats):
            for m in models:
                for s in specs:
                    disp_out = os.path.join(workdir, f"{m}__{s.name}.npy") if compare and rep == 0 else None
                    files = {k: prepared[m][k] for k in ("checkpoint", "onnx", "onnx_raw", "onnx_int8",
                                                         "onnx_int8_rr", "ov_int8")}
                    task = {"model": m, "backend": s.name, **files, "height": height, "width": width, "batch": batch,
                            "device": str(dev), "threads": threads, "warmup": warmup, "iters": iters,
                            "min_iters": min_iters, "max_time": max_time, "disp_out": disp_out}
                    r = run_isolated(task, timeout) if isolate else _safe_measure(task)
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
        peak, _ = machine.cpu_peak_gflops(cores=min(threads, machine_desc["usable_cpus"]))
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
                r["guard"] = _guard_summary((guard or {}).get(f"{s.kind}:{r.get('precision') or s.dtype}"))
                for k in RESULT_KEYS:
                    r.setdefault(k, None)
                rows.append(r)
    machine_desc["loadavg_end"] = machine.load_average()
    report = {"machine": machine_desc, "settings": settings, "results": rows}
    if guard:
        report["guard"] = guard
    return report


def _guard_summary(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A row's guard cell: the verdict and the largest |delta| over the record's data sets (None: no record)."""
    if not record:
        return None
    sets = list(record["datasets"].values())
    worst = {k: max((d[k] for d in sets), key=abs) for k in ("d_abs_rel", "d_a1")}
    return {"passed": bool(record["passed"]), **worst}


def _safe_measure(task: dict[str, Any]) -> dict[str, Any]:
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


__all__ = ["INT8_CALIBRATION_FRAMES", "RESULT_KEYS", "bench", "run_isolated", "synthetic_calibration_frames"]
