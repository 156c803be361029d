"""Side-by-side inference benchmark: parameters, MACs, latency, FPS and peak memory per (model, backend).

>>> report = bench(["dna_b0", "monodepth2_r18"], ["torch", "onnxruntime"], height=192, width=640)
>>> print(format_table(report))

Backends are named ``torch`` (fp32 eager) or ``onnxruntime``; torch variants add options with ``+``:
``torch+cl`` (channels_last), ``torch+bf16`` (CPU: bfloat16 autocast; CUDA: bfloat16 weights), ``torch+fp16``
(CUDA), ``torch+compile`` (torch.compile), ``torch+graph`` (CUDA graphs), e.g. ``torch+cl+bf16``.
``onnxruntime+int8`` (CPU) runs the export quantised by :func:`dna_depth_core.export.quantize_onnx_int8`,
calibrated on :data:`INT8_CALIBRATION_FRAMES` synthetic street frames rendered at the benchmark size
(:func:`synthetic_calibration_frames`; no data set, no licence), so only its latency is meaningful with the
seeded random weights. (:class:`BackendSpec` parses these names.)

Modules: :mod:`.harness` (:func:`bench`: prepare the models, run every pair, pool and compare), :mod:`.tasks`
(one measurement), :mod:`.worker` (the worker process, ``python -m dna_depth_core.benchmark.worker TASK_JSON``),
:mod:`.report` (text/markdown tables and files).

Method (per model and backend):

- weights: seeded random initialisation (``torch.manual_seed(0)``), saved once to a temporary checkpoint that every
  measurement loads, so all backends run the same function (latency does not depend on the weights' values);
  onnxruntime runs an export of that checkpoint (static shape, opset 17).
- ``isolate=True`` (default): every measurement runs in a fresh Python process (:mod:`.worker`), one after
  another, so that one backend's allocations, thread pools and caches cannot help or hurt the next, and so that
  peak memory is that process's own: on the CPU ``peak_mem_mb`` is the growth of the resident-set high-water mark
  (``VmHWM`` in /proc/self/status, reset after the imports) while building the backend and running it; on CUDA it
  is ``torch.cuda.max_memory_allocated`` (torch backends; None for onnxruntime).
- latency: ``warmup`` calls, then timed calls (``time.perf_counter`` around one ``backend(x)`` call with a numpy
  ``(batch, 3, H, W)`` float32 input, host copies included, CUDA synchronised) until ``iters`` calls or
  ``max_time`` seconds (at least ``min_iters``). Reported: median, p90, mean and min in ms; ``fps`` = batch /
  median; ``gflops_per_s`` = 2 x MACs x batch / median.
- accuracy: the scale-0 disparity of each backend on one seeded input, against the same model's ``torch``
  fp32 eager output (``max_abs_diff``, ``mean_abs_diff``).
- MACs: ``dna_depth_core.profiling`` (torch's FLOP counter; convolutions and matrix products only), per image.

The report's ``machine`` is :func:`dna_depth_core.machine.describe`: the CPU, its ISA flags, core count, clock and
fp32 peak, library versions, the load average before and after (a busy machine makes every number slower), and
the date.
"""
from dna_depth_core.benchmark.harness import (
    INT8_CALIBRATION_FRAMES,
    RESULT_KEYS,
    bench,
    run_isolated,
    synthetic_calibration_frames,
)
from dna_depth_core.benchmark.report import format_header, format_table, to_markdown, write_report
from dna_depth_core.benchmark.tasks import ONNXRUNTIME_OPTIONS, TORCH_OPTIONS, BackendSpec, measure

__all__ = [
    "BackendSpec",
    "INT8_CALIBRATION_FRAMES",
    "ONNXRUNTIME_OPTIONS",
    "RESULT_KEYS",
    "TORCH_OPTIONS",
    "bench",
    "format_header",
    "format_table",
    "measure",
    "run_isolated",
    "synthetic_calibration_frames",
    "to_markdown",
    "write_report",
]
