#!/usr/bin/env python
"""The GPU benchmark in one process, within a time budget (run by benchmarks/gpu.sh, which adds the node on CUDA and
a short AMP training run to the same report).

For every model in {dna_b0, dna_b1, monodepth2_r18}, size in {640x192, 1024x320} and batch in {1, 8}:

  fp32             torch eager, cudnn.benchmark (TF32 convolutions as torch's default allows)
  fp16             the network cast to float16, channels_last, cudnn.benchmark
  bf16             the network cast to bfloat16, channels_last (GPUs of compute capability 8.0 and newer)
  fp16+graph       the fp16 network replayed from one captured CUDA graph (no per-kernel launch cost)
  ort-cuda         onnxruntime's CUDA execution provider on the fp32 ONNX export (when onnxruntime-gpu is there;
                   one dynamic-shape export and session per model, so its first call at a new shape tunes cuDNN)
  ort-trt          onnxruntime's TensorRT execution provider, fp16, static 640x192 export of dna_b0 and
                   monodepth2_r18 at batch 1 only (when the provider is importable and 90 s of budget are left:
                   building an engine takes tens of seconds; engines cached in OUT/trt_cache)
  compile          torch.compile(mode="max-autotune-no-cudagraphs") fp16, only for dna_b0 640x192 and only when
                   --compile is given and time is left (compiling takes a minute or more)

Per measurement: ``latency_ms`` = median wall time of one call from a host float32 array to the host disparity
(what the ROS node sees: upload, network, download, synchronised); ``gpu_ms`` = median device time of the network
alone on a device-resident input (CUDA events); ``throughput`` = images/s over back-to-back device-resident calls;
``peak_mem_mb`` = torch.cuda.max_memory_allocated during the measurement (torch only); ``max_abs_diff`` = the
largest |disparity - fp32 disparity| on the same input.

The run stops starting new measurements when --budget seconds (default 420) have passed since start, marking the
rest as skipped, so the script ends inside the 8-minute limit; results are written after every measurement.

``--node-json`` / ``--train-json`` add the node-on-CUDA and AMP-training results (written by gpu.sh's earlier
steps) to the report, so the run leaves one report (``gpu_bench.{json,md}``).

    python benchmarks/gpu_bench.py --out-dir OUT                    # on a CUDA machine
    python benchmarks/gpu_bench.py --device cpu --smoke --out-dir /tmp/x   # code-path check without a GPU
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import torch

from dna_depth_core import machine
from dna_depth_core.backends import OnnxBackend, TorchBackend, available_providers, default_providers
from dna_depth_core.io.atomic import write_text
from dna_depth_core.io.onnx_format import export_to_bytes
from dna_depth_core.models.registry import build_model
from dna_depth_core.profiling import profile_model

MODELS = ("dna_b0", "dna_b1", "monodepth2_r18")
SIZES = ((192, 640), (320, 1024))
BATCHES = (1, 8)
VARIANTS = ("fp32", "fp16", "bf16", "fp16+graph", "ort-cuda", "ort-trt")
TRT_MODELS = ("dna_b0", "monodepth2_r18")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_calls(fn, n: int, max_s: float) -> list[float]:
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < n and (len(out) < 5 or time.perf_counter() - start < max_s):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def measure(backend, x_host: np.ndarray, device: torch.device, warmup: int, iters: int, max_s: float) -> dict:
    """Latency (host to host), device time and throughput of one backend on one input."""
    first_t = time.perf_counter()
    out = backend(x_host)
    first = time.perf_counter() - first_t
    for _ in range(warmup):
        backend(x_host)
    lat = _timed_calls(lambda: backend(x_host), iters, max_s)
    r = {"first_call_s": round(first, 3), "latency_ms": 1e3 * float(np.median(lat)),
         "latency_ms_p90": 1e3 * float(np.percentile(lat, 90)), "latency_iters": len(lat)}
    b = x_host.shape[0]
    if isinstance(backend, TorchBackend):
        xd = torch.from_numpy(x_host).to(device)
        if device.type == "cuda":
            gpu = []
            for _ in range(min(iters, 50)):
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                backend.run_tensor(xd)
                e.record()
                e.synchronize()
                gpu.append(s.elapsed_time(e))
            r["gpu_ms"] = float(np.median(gpu))
        n = max(10, min(200, int(max_s / max(np.median(lat), 1e-4))))
        _sync(device)
        t = time.perf_counter()
        for _ in range(n):
            backend.run_tensor(xd)
        _sync(device)
        r["throughput"] = n * b / (time.perf_counter() - t)
    else:
        r["throughput"] = b / float(np.median(lat))  # onnxruntime: host-to-host calls back to back
    return r, out


def describe_machine(device: torch.device) -> dict:
    """dna_depth_core.machine.describe plus onnxruntime's execution providers (which decide the ort-cuda rows)."""
    return dict(machine.describe(device), onnxruntime_providers=available_providers())


def markdown(report: dict) -> str:
    m = report["machine"]
    v = m["versions"]
    lines = [f"## GPU benchmark ({m.get('gpu', report['settings']['device'])})", "",
             f"date {m['date']}; torch {v['torch']} (CUDA {m.get('cuda')}, cuDNN {m.get('cudnn')}), timm {v['timm']}, "
             f"onnxruntime {v['onnxruntime']} ({', '.join(m['onnxruntime_providers'])}); CPU {m['cpu']}; "
             f"wall time {report['wall_s']:.0f} s", "",
             "latency = one call host array -> host disparity (synchronised); GPU ms = network only, device-resident "
             "input (CUDA events); throughput = images/s back to back, device-resident; max |d| = vs fp32.", "",
             "| model | size | batch | variant | latency ms | p90 ms | GPU ms | images/s | peak MB | max abs d | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)

    for r in report["results"]:
        lines.append(f"| {r['model']} | {r['width']}x{r['height']} | {r['batch']} | {r['variant']} | "
                     f"{f(r.get('latency_ms'), '.2f')} | {f(r.get('latency_ms_p90'), '.2f')} | {f(r.get('gpu_ms'), '.2f')} | "
                     f"{f(r.get('throughput'), '.0f')} | {f(r.get('peak_mem_mb'), '.0f')} | "
                     f"{f(r.get('max_abs_diff'), '.1e')} | {(r.get('note') or '')[:60]} |")
    node, train = report.get("node"), report.get("training")
    lines += ["", "### The depth node on CUDA (rclpy graph, in-process)", ""]
    if node and "summary" in node:
        n = node["summary"]
        lines.append(f"{node.get('input')} {node.get('model')}: {n['backend_reason']}; end-to-end "
                     f"{n['e2e_latency_in_process_ms']:.1f} ms ({n['fps_end_to_end']:.1f} FPS), node inference "
                     f"{n['node_inference_ms']:.1f} ms ({n['fps_inference_only']:.1f} FPS), ratio "
                     f"{n['e2e_fps_over_inference_fps']:.2f}; ROS overhead {n['ros_overhead_ms']:.1f} ms")
    else:
        lines.append((node or {}).get("note", "not run"))
    lines += ["", "### Short training run with AMP", ""]
    if train and "steps" in train:
        lines.append(f"{train['command']}: {train['steps']} steps in {train['train_s']:.1f} s "
                     f"({train['steps_per_s']:.2f} steps/s, batch {train['batch_size']}), AMP {train['amp']}, "
                     f"last loss {train['last_loss']}, peak memory {f(train.get('peak_mem_mb'), '.0f')} MB")
    else:
        lines.append((train or {}).get("note", "not run"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget", type=float, default=420.0, help="stop starting measurements after this many seconds")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--max-s", type=float, default=1.0, help="time cap per timing loop (s)")
    p.add_argument("--compile", action="store_true", help="also try torch.compile on dna_b0 640x192 if time is left")
    p.add_argument("--no-ort", action="store_true")
    p.add_argument("--smoke", action="store_true", help="tiny sizes and one model (code-path check, e.g. on a CPU)")
    p.add_argument("--node-json", default=None, help="the node-on-CUDA result (node_latency.py --out) to include")
    p.add_argument("--train-json", default=None, help="the AMP training result (gpu_train.py --out) to include")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available on this machine", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    models, sizes, batches = MODELS, SIZES, BATCHES
    if args.smoke:
        models, sizes, batches = ("dna_lite0",), ((64, 96),), (1, 2)
    os.makedirs(args.out_dir, exist_ok=True)
    json_path, md_path = os.path.join(args.out_dir, "gpu_bench.json"), os.path.join(args.out_dir, "gpu_bench.md")
    info = describe_machine(device)
    have_ort_cuda = "CUDAExecutionProvider" in info["onnxruntime_providers"] and info["versions"]["onnx"] is not None
    report = {"machine": info, "settings": {"device": str(device), "budget_s": args.budget, "warmup": args.warmup,
                                            "iters": args.iters, "max_s": args.max_s, "weights": "seeded random init"},
              "results": []}
    for key, path in (("node", args.node_json), ("training", args.train_json)):
        if path:
            try:
                with open(path) as f:
                    report[key] = json.load(f)
            except (OSError, json.JSONDecodeError) as exc:
                report[key] = {"note": f"no result: {path} ({type(exc).__name__}: {exc})"}
    have_trt = "TensorrtExecutionProvider" in info["onnxruntime_providers"] and info["versions"]["onnx"] is not None

    def save() -> None:
        report["wall_s"] = time.perf_counter() - t_start
        write_text(json_path, json.dumps(report, indent=1))  # atomic: a run cut short leaves whole files
        write_text(md_path, markdown(report))

    variants = list(VARIANTS if device.type == "cuda" else ("fp32", "ort-cuda"))
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
        variants.remove("bf16")  # bf16 tensor cores start at compute capability 8.0
    if args.no_ort:
        variants.remove("ort-cuda")
    # Most informative first: batch 1 at 640x192 for every model, then the rest; ORT last within a config.
    configs = [(b, hw, m) for b in batches for hw in sizes for m in models]
    nets, profiles, ort_backends = {}, {}, {}
    for batch, (h, w), model in configs:
        if model not in nets:
            torch.manual_seed(0)
            nets[model] = build_model(model).eval()
        if (model, h, w) not in profiles:
            profiles[(model, h, w)] = profile_model(model, h, w)
        prof = profiles[(model, h, w)]
        x = np.random.default_rng(0).random((batch, 3, h, w), dtype=np.float32)
        ref = None
        for variant in variants:
            row = {"model": model, "height": h, "width": w, "batch": batch, "variant": variant,
                   "params": prof["params"], "macs": prof["macs"]}
            elapsed = time.perf_counter() - t_start
            if variant == "ort-trt" and not (model in TRT_MODELS and (h, w) == SIZES[0] and batch == 1):
                continue  # TensorRT: one size and batch per model (engine builds are slow)
            if variant == "ort-trt" and (not have_trt or elapsed > args.budget - 90):
                row["note"] = ("skipped: onnxruntime has no TensorrtExecutionProvider here" if not have_trt
                               else "skipped: under 90 s of budget left for a TensorRT engine build")
                report["results"].append(row)
                continue
            if elapsed > args.budget:
                row["note"] = f"skipped: time budget ({args.budget:.0f} s) used"
                report["results"].append(row)
                continue
            backend = None
            try:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                    mem0 = torch.cuda.memory_allocated(device)
                if variant == "ort-cuda":
                    if not have_ort_cuda and device.type == "cuda":
                        row["note"] = "skipped: onnxruntime has no CUDAExecutionProvider here"
                        report["results"].append(row)
                        continue
                    if model not in ort_backends:  # one dynamic export and session per model, reused
                        data = export_to_bytes(nets[model], dynamic=True)
                        providers = None if device.type == "cuda" else ["CPUExecutionProvider"]
                        ort_backends[model] = OnnxBackend(data, providers=providers, device=str(device))
                    backend = ort_backends[model]
                elif variant == "ort-trt":
                    cache = os.path.join(args.out_dir, "trt_cache")
                    os.makedirs(cache, exist_ok=True)
                    trt = ("TensorrtExecutionProvider", {"device_id": device.index or 0, "trt_fp16_enable": True,
                                                         "trt_engine_cache_enable": True,
                                                         "trt_engine_cache_path": cache})
                    backend = OnnxBackend(export_to_bytes(nets[model], h, w),
                                          providers=[trt, *default_providers(str(device))])
                    row["note"] = f"providers {backend.providers}"
                else:
                    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(variant.split("+")[0], torch.float32)
                    backend = TorchBackend(copy.deepcopy(nets[model]), device=device, dtype=dtype,
                                           channels_last=dtype != torch.float32, cuda_graph=variant.endswith("+graph"))
                r, out = measure(backend, x, device, args.warmup, args.iters, args.max_s)
                row.update(r)
                if device.type == "cuda" and isinstance(backend, TorchBackend):
                    row["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) - mem0) / 2**20
                if variant == "fp32":
                    ref = out.astype(np.float64)
                elif ref is not None:
                    row["max_abs_diff"] = float(np.max(np.abs(out - ref)))
            except Exception as exc:  # noqa: BLE001 - record and go on
                row["note"] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            del backend
            report["results"].append(row)
            print(f"[{time.perf_counter() - t_start:5.0f} s] {model} {w}x{h} b{batch} {variant}: "
                  + (f"{row['latency_ms']:.2f} ms, {row['throughput']:.0f} img/s" if "latency_ms" in row else row.get("note", "")),
                  flush=True)
            save()
    if args.compile and device.type == "cuda":
        h, w = SIZES[0]
        row = {"model": "dna_b0", "height": h, "width": w, "batch": 1, "variant": "fp16+compile"}
        if time.perf_counter() - t_start > args.budget - 120:
            row["note"] = "skipped: not enough time left to compile"
        else:
            try:
                backend = TorchBackend(copy.deepcopy(nets["dna_b0"]), device=device, dtype=torch.float16,
                                       channels_last=True, compile="max-autotune-no-cudagraphs")
                x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
                r, _ = measure(backend, x, device, args.warmup, args.iters, args.max_s)
                row.update(r)
                if backend.compile_error:
                    row["note"] = f"compile failed, eager measured: {backend.compile_error[:150]}"
            except Exception as exc:  # noqa: BLE001
                row["note"] = f"error: {type(exc).__name__}: {exc}"[:200]
        report["results"].append(row)
    save()
    print(f"wrote {json_path} and {md_path} in {time.perf_counter() - t_start:.0f} s")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
