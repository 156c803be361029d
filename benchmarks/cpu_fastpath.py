#!/usr/bin/env python
"""CPU fast path: which way of running the network is fastest on this CPU, and how close it gets to the FLOP limit.

Variants (each in a fresh process, same seeded weights, batch 1, see dna_depth_core/benchmark/__init__.py for the method):

  torch               fp32 eager, NCHW (the reference for the disparity differences)
  torch+cl            fp32 eager, channels_last (NHWC)
  torch+compile       torch.compile (inductor; needs a C++ compiler; first call compiles)
  torch+cl+compile    both
  onnxruntime         the ONNX export on onnxruntime's CPU provider (all graph optimisations)
  onnxruntime+int8    that export quantised to int8 (static QDQ, U8S8, per-channel weights; AVX512-VNNI kernels),
                      calibrated on 8 synthetic street frames rendered on the fly at the benchmark size. Its
                      disparity difference is measured on the benchmark's noise input with random weights: far from
                      fp32 by construction; the accuracy with real frames is benchmarks/int8_kitti_tiny.py's job
  torch+bf16          bfloat16 autocast (weights fp32)
  torch+cl+bf16       both

bf16 is only fast on CPUs with native bf16 arithmetic (avx512_bf16 or AMX); elsewhere oneDNN emulates it and it is
slower than fp32. The script reports what the CPU has.

Usage:
  python benchmarks/cpu_fastpath.py                       # dna_b0 + monodepth2_r18 at 640x192, all variants
  python benchmarks/cpu_fastpath.py --final               # the committed report: all three paper models, seven
                                                          #   variants, 2 rounds (~28 min on a quiet 2-core CPU);
                                                          #   writes benchmarks/results/cpu_fastpath_final.{json,md}
  python benchmarks/cpu_fastpath.py --models dna_b0 --variants torch,onnxruntime --tag quick

Outputs: <out-dir>/cpu_fastpath_<tag>.json (machine, settings, every measurement with its samples, the summary)
and .md (header, table, summary).
"""
from __future__ import annotations

import argparse
import os
import sys

from dna_depth_core.benchmark import bench, format_header, format_table, to_markdown, write_report
from dna_depth_core.io.atomic import write_text

ALL_VARIANTS = ("torch,torch+cl,torch+compile,torch+cl+compile,onnxruntime,onnxruntime+int8,torch+bf16,"
                "torch+cl+bf16")
# --final drops torch+cl+compile (no gain over torch+compile in the preliminary runs) to keep the run ~25 min
# (+ under a minute per model for the int8 calibration).
FINAL_VARIANTS = "torch,torch+cl,torch+compile,onnxruntime,onnxruntime+int8,torch+bf16,torch+cl+bf16"
EXACT = 1e-4   # a variant "holds accuracy" when its disparity is within this of fp32 eager (the ONNX criterion)
GOAL_FPS = 10.0


def summarise(report: dict) -> dict:
    """Fastest accurate variant per model, the 10 FPS goal, dna_b0 vs monodepth2_r18 per backend, FLOP limit."""
    rows = [r for r in report["results"] if r.get("fps")]
    m = report["machine"]
    peak = report["settings"].get("cpu_peak_gflops_fp32_for_threads") or m.get("cpu_peak_gflops_fp32")
    out: dict = {"cpu_peak_gflops_fp32": peak, "threads": report["settings"]["threads"],
                 "peak_assumptions": m.get("cpu_peak_assumptions"),
                 "native_bf16": bool(m["cpu_flags"].get("avx512_bf16") or m["cpu_flags"].get("amx_bf16")),
                 "accuracy_threshold": EXACT, "models": {}}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        accurate = [r for r in mine if r["max_abs_diff"] is not None and r["max_abs_diff"] <= EXACT]
        best = max(accurate, key=lambda r: r["fps"]) if accurate else None
        fastest = max(mine, key=lambda r: r["fps"])
        eager = next((r for r in mine if r["backend"] == "torch"), None)
        out["models"][model] = {
            "fastest_accurate": best and best["backend"],
            "fastest_accurate_fps": best and round(best["fps"], 3),
            "fastest_accurate_gflops_per_s": best and round(best["gflops_per_s"], 2),
            "fastest_accurate_percent_of_peak": best and best.get("percent_of_cpu_peak") and round(best["percent_of_cpu_peak"], 2),
            "fastest_any": fastest["backend"], "fastest_any_fps": round(fastest["fps"], 3),
            "fastest_any_max_abs_diff": fastest["max_abs_diff"],
            "speedup_vs_eager": best and eager and round(best["fps"] / eager["fps"], 2),
            "meets_10fps": bool(best and best["fps"] >= GOAL_FPS),
            "per_backend": {r["backend"]: {"fps": round(r["fps"], 3), "median_ms": round(r["latency_ms_median"], 2),
                                           "cpu_ms": r.get("cpu_ms_median") and round(r["cpu_ms_median"], 2),
                                           "max_abs_diff": r["max_abs_diff"], "mean_abs_diff": r["mean_abs_diff"],
                                           "percent_of_cpu_peak": r.get("percent_of_cpu_peak") and round(r["percent_of_cpu_peak"], 2)}
                            for r in mine},
        }
        by = {r["backend"]: r for r in mine}
        if "onnxruntime+int8" in by and "onnxruntime" in by:
            out["models"][model]["int8_speedup_vs_onnxruntime"] = round(by["onnxruntime+int8"]["fps"]
                                                                        / by["onnxruntime"]["fps"], 2)
            out["models"][model]["int8_meets_10fps"] = bool(by["onnxruntime+int8"]["fps"] >= GOAL_FPS)
        if best:
            # FPS the network would need at this machine's FLOP efficiency to reach the goal, and the efficiency
            # the goal needs: 2 x MACs x 10 FPS against the peak.
            need = 2 * best["macs"] * GOAL_FPS / 1e9
            out["models"][model]["goal_needs_gflops_per_s"] = round(need, 1)
            if peak:
                out["models"][model]["goal_needs_percent_of_peak"] = round(100 * need / peak, 1)
    if "dna_b0" in out["models"] and "monodepth2_r18" in out["models"]:
        b0, md = out["models"]["dna_b0"]["per_backend"], out["models"]["monodepth2_r18"]["per_backend"]
        out["dna_b0_vs_monodepth2_r18"] = {b: {"dna_b0_fps": b0[b]["fps"], "monodepth2_r18_fps": md[b]["fps"],
                                              "dna_b0_not_slower": b0[b]["fps"] >= md[b]["fps"]}
                                          for b in b0 if b in md}
    return out


def summary_text(s: dict) -> str:
    lines = []
    peak = s.get("cpu_peak_gflops_fp32")
    lines.append(f"threads: {s['threads']}; fp32 peak for them: {peak:.0f} GFLOP/s" if peak else "peak unknown")
    lines.append(f"native bf16 on this CPU (avx512_bf16/amx_bf16): {'yes' if s['native_bf16'] else 'NO (bf16 is emulated)'}")
    for model, d in s["models"].items():
        if d["fastest_accurate"]:
            lines.append(f"{model}: fastest within {s['accuracy_threshold']:g} of fp32 eager: {d['fastest_accurate']} "
                         f"{d['fastest_accurate_fps']:.2f} FPS ({d['speedup_vs_eager']}x eager), "
                         f"{d['fastest_accurate_gflops_per_s']:.1f} GFLOP/s"
                         + (f" = {d['fastest_accurate_percent_of_peak']:.1f} % of the {peak:.0f} GFLOP/s peak" if peak else "")
                         + f"; 10 FPS needs {d.get('goal_needs_gflops_per_s')} GFLOP/s"
                         + (f" ({d.get('goal_needs_percent_of_peak')} % of peak)" if peak else "")
                         + f" -> {'MET' if d['meets_10fps'] else 'not met'}")
        if "int8_speedup_vs_onnxruntime" in d:
            i8 = d["per_backend"]["onnxruntime+int8"]
            lines.append(f"  onnxruntime+int8: {i8['fps']:.2f} FPS = {d['int8_speedup_vs_onnxruntime']}x onnxruntime "
                         f"fp32 -> 10 FPS {'MET' if d['int8_meets_10fps'] else 'not met'} (accuracy: "
                         f"benchmarks/int8_kitti_tiny.py)")
        if d["fastest_any"] != d["fastest_accurate"]:
            lines.append(f"  (fastest overall: {d['fastest_any']} {d['fastest_any_fps']:.2f} FPS, max |d disp| "
                         f"{d['fastest_any_max_abs_diff']})")
    for b, v in s.get("dna_b0_vs_monodepth2_r18", {}).items():
        lines.append(f"{b}: dna_b0 {v['dna_b0_fps']:.2f} FPS vs monodepth2_r18 {v['monodepth2_r18_fps']:.2f} FPS -> "
                     f"{'not slower' if v['dna_b0_not_slower'] else 'SLOWER'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None, help="default dna_b0,monodepth2_r18 (--final: + dna_b1)")
    p.add_argument("--variants", default=None, help=f"default {ALL_VARIANTS} (--final: {FINAL_VARIANTS})")
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=None, help="timed calls per round (default 20)")
    p.add_argument("--max-time", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=None, help="rounds, round-robin (default 1; --final: 2)")
    p.add_argument("--tag", default=None, help="file name tag (default: 'final' with --final, else 'run')")
    p.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--final", action="store_true",
                   help="the committed report: dna_b0,dna_b1,monodepth2_r18 x FINAL_VARIANTS, 2 rounds, 20 calls each, "
                        "plus the torch/onnxruntime side-by-side table as bench_cpu_<W>x<H>_<tag>.{json,md}")
    args = p.parse_args(argv)
    # --final fills in what was not given explicitly.
    args.models = args.models or ("dna_b0,dna_b1,monodepth2_r18" if args.final else "dna_b0,monodepth2_r18")
    args.variants = args.variants or (FINAL_VARIANTS if args.final else ALL_VARIANTS)
    args.repeats = args.repeats or (2 if args.final else 1)
    args.iters = args.iters or 20
    tag = args.tag or ("final" if args.final else "run")
    models = [m for m in args.models.split(",") if m]
    variants = [v for v in args.variants.split(",") if v]
    report = bench(models, variants, height=args.height, width=args.width, threads=args.threads, warmup=args.warmup,
                   iters=args.iters, max_time=args.max_time, repeats=args.repeats,
                   progress=lambda line: print(line, file=sys.stderr, flush=True))
    report["summary"] = summarise(report)
    report["tag"] = tag
    os.makedirs(args.out_dir, exist_ok=True)
    base = os.path.join(args.out_dir, f"cpu_fastpath_{tag}")
    title = f"CPU fast path {args.width}x{args.height} ({tag})"
    write_report(report, base + ".json", title=title)
    text = summary_text(report["summary"])
    write_text(base + ".md", to_markdown(report, title) + "\n### Summary\n\n```\n" + text + "\n```\n")
    if args.final:
        # The issue's `dna-depth bench --models dna_b0,dna_b1,monodepth2_r18 --backends torch,onnxruntime` table,
        # from the same run (same processes, same machine state).
        side = dict(report, results=[r for r in report["results"] if r["backend"] in ("torch", "onnxruntime")])
        side.pop("summary", None)
        bench_base = os.path.join(args.out_dir, f"bench_cpu_{args.width}x{args.height}_{tag}")
        write_report(side, bench_base + ".json", bench_base + ".md",
                     title=f"dna-depth bench, CPU {args.width}x{args.height} ({tag})")
        print(f"wrote {bench_base}.json and {bench_base}.md")
    print(format_header(report))
    print()
    print(format_table(report))
    print()
    print(text)
    print(f"\nwrote {base}.json and {base}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
