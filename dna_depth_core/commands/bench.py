"""``dna-depth bench``: latency, FPS, peak memory, parameters and MACs of models x backends, side by side."""
from __future__ import annotations

import json
import sys

from dna_depth_core.benchmark import bench, format_header, format_table, write_report

NAME = "bench"
HELP = "benchmark models x backends side by side (latency, FPS, peak memory, params, MACs)"
DESCRIPTION = """Measure every model with every backend in one run, one fresh process per measurement: median and
p90 latency of one call (warm-up first), FPS (= batch / median), achieved GFLOP/s (2 x MACs x FPS) and, on the
CPU, its share of the machine's fp32 peak, peak memory (CPU: growth of the process's resident high-water mark;
CUDA: torch.cuda.max_memory_allocated), parameters and MACs, and the largest disparity difference against the
same model's fp32 torch output. Weights are seeded random (latency does not depend on their values).

backends: torch (fp32 eager), onnxruntime, openvino, auto, and variants joined with '+':
  torch: cl (channels_last), bf16 (CPU autocast / CUDA cast), fp16 (CUDA), compile (torch.compile), graph (CUDA
    graphs), e.g. torch+cl+bf16;
  onnxruntime: int8 (the QDQ export, exact int8 kernels on every x86 CPU), int8+rr (7-bit weights), raw (fp32
    export without the graph clean-ups, to measure them);
  openvino: int8 (the NNCF IR for this CPU's ISA), bf16 (only on a CPU with native bf16), raw;
  auto: what `backend: auto` picks for the fp32 export here (its reason is in the JSON).
int8 files are calibrated on 8 synthetic frames rendered at the benchmark size: with random weights only their
latency means something (their disparity difference is on a noise input); accuracy is the guard's job
(`dna-depth guard`, benchmarks/fastpath_report.py).

The report records the machine (CPU, flags, cores, GPU), library versions, load average and date. A loaded
machine slows every number: benchmark on a quiet one.

example:
  dna-depth bench --models dna_b0,dna_b1,monodepth2_r18 --backends torch,onnxruntime --height 192 --width 640
  dna-depth bench --models dna_b0 --backends torch,torch+cl,onnxruntime --json > bench.json
  dna-depth bench --models dna_b0,monodepth2_r18 --backends onnxruntime,onnxruntime+int8,openvino,openvino+int8,auto \
      --threads 2 --repeats 2
  dna-depth bench --models dna_b0 --backends torch+fp16,torch+fp16+graph --device cuda --batch 8"""


def add_arguments(p) -> None:
    p.add_argument("--models", default="dna_b0,dna_b1,monodepth2_r18", help="comma-separated registry names")
    p.add_argument("--backends", default="torch,onnxruntime", help="comma-separated backends (see above)")
    p.add_argument("--height", type=int, default=192, help="input height, a multiple of 32 (default 192)")
    p.add_argument("--width", type=int, default=640, help="input width, a multiple of 32 (default 640)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: the usable cores)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up calls (default 3)")
    p.add_argument("--iters", type=int, default=20, help="timed calls (default 20)")
    p.add_argument("--max-time", type=float, default=30.0,
                   help="stop timing after this many seconds once 5 calls are done (default 30)")
    p.add_argument("--repeats", type=int, default=1, help="measure the pairs round-robin this many times (default 1)")
    p.add_argument("--in-process", action="store_true",
                   help="measure in this process (faster; peak memory is then not reported)")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--out", default=None, help="also write the JSON report to this file")
    p.add_argument("--markdown", default=None, help="also write a markdown report (header + table) to this file")


def run(args) -> int:
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    progress = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    report = bench(models, backends, height=args.height, width=args.width, batch=args.batch, device=args.device,
                   threads=args.threads, warmup=args.warmup, iters=args.iters, max_time=args.max_time,
                   repeats=args.repeats, isolate=not args.in_process, progress=progress)
    write_report(report, args.out, args.markdown, title=f"dna-depth bench {args.width}x{args.height}")
    if args.json:
        print(json.dumps(report))
    else:
        print(format_header(report))
        print()
        print(format_table(report))
    failed = [r for r in report["results"] if r["latency_ms_median"] is None]
    return 1 if failed and len(failed) == len(report["results"]) else 0
