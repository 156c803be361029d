#!/usr/bin/env python
"""The CPU fast-path report in one command: backends x precisions side by side for dna_b0 and monodepth2_r18, the
accuracy guard of every reduced-precision path on real frames with trained networks, and the depth node's
end-to-end FPS through a real rclpy graph (trained vs untrained network, and dna_b0).

    . scripts/dev/env.sh
    unshare -n bash -c 'ip link set lo up && ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=131 \\
        python benchmarks/fastpath_report.py --tag final --synthetic-weights SYNTH.safetensors'

Parts (each writes into one report, ``benchmarks/results/fastpath_<tag>.{json,md}``):

1. **Guard** (:mod:`dna_depth_core.benchmark.guard`): a kitti_tiny_adapt dna_lite0 (``--kitti-weights``; trained
   with benchmarks/kitti_tiny_adapt.py first when absent, ~8 CPU-min) on the 7 kitti_tiny frames, and a
   synthetic-trained dna_lite0 (``--synthetic-weights``; skipped when not given) on the held-out synthetic drive of
   seed 1 (``--synthetic-frames``). Each network is exported (fp32, cleaned) at its training size, quantised for
   onnxruntime (QDQ) and OpenVINO (NNCF IR for this CPU's ISA) calibrated on frames of its own camera (KITTI frames
   0, 2, 4, 6; the synthetic drive of training seed 3), and every reduced path (onnxruntime:int8, openvino:int8,
   openvino:bf16 where the CPU has native bf16) is guarded against fp32.
2. **Bench** (:func:`dna_depth_core.benchmark.bench`): dna_b0 and monodepth2_r18 at 640x192, 2 threads, one process
   per measurement, ``--repeats`` round-robin rounds: onnxruntime fp32 (cleaned and raw graph), onnxruntime int8,
   OpenVINO fp32 (cleaned and raw), OpenVINO int8, OpenVINO bf16 and torch bf16 where native, and ``auto``. The
   rows carry the guard verdict of their path.
3. **Node** (benchmarks/node_latency.py): the kitti_tiny_adapt network and its untrained start at 96x320 with the
   camera-height scale (the per-frame gap), and seeded dna_b0 at 640x192, backend auto, frames sent one at a time:
   end-to-end FPS against the node's inference-only FPS.

``--quick`` (fewer calls and frames) is for a preliminary run on a loaded machine; the committed final report must
come from a quiet one (check ``loadavg`` in the JSON).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dna_depth_core import machine
from dna_depth_core.benchmark import bench, format_header, format_table
from dna_depth_core.benchmark.guard import (
    format_guard,
    kitti_guard_data,
    run_guard,
    synthetic_guard_data,
    write_guard_record,
)
from dna_depth_core.data.synthetic import synthetic_frames
from dna_depth_core.export import export_onnx, quantize_onnx_int8, quantize_openvino_int8
from dna_depth_core.io.atomic import write_text
from dna_depth_core.io.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
KITTI = REPO.parent / "shared" / "data" / "kitti_tiny"
KTA_DEFAULT = REPO / "runs" / "kitti_tiny_adapt" / "train" / "checkpoints" / "latest" / "model.safetensors"
MODELS = ("dna_b0", "monodepth2_r18")


def log(msg: str) -> None:
    print(f"[fastpath {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def kitti_weights(path: str | None, threads: int) -> str:
    """The kitti_tiny_adapt checkpoint: ``path``, the default run's latest, or a new run (benchmarks/kitti_tiny_adapt.py)."""
    if path:
        return path
    latest = KTA_DEFAULT.parent.parent / "latest"
    if latest.is_file():
        return str(latest.parent / latest.read_text().strip() / "model.safetensors")
    log("no kitti_tiny_adapt checkpoint: training one (benchmarks/kitti_tiny_adapt.py, ~8 CPU-min)")
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "kitti_tiny_adapt.py"), "--out",
                    str(REPO / "runs" / "kitti_tiny_adapt"), "--max-minutes", "15", "--max-steps", "160",
                    "--chunk", "40", "--threads", str(threads), "--json",
                    str(REPO / "runs" / "kitti_tiny_adapt" / "report.json")], check=True)
    return kitti_weights(None, threads)


def guard_network(name: str, weights: str, data, calibration, workdir: str, threads: int) -> dict[str, Any]:
    """Export, quantise (onnxruntime QDQ and OpenVINO IR) and guard every reduced path of one trained network."""
    net = load_checkpoint(weights, map_location="cpu")
    stem = os.path.join(workdir, name)
    fp32 = export_onnx(net, stem + ".onnx")
    log(f"{name}: exported {fp32.height}x{fp32.width}, max |onnxruntime - torch| {fp32.max_abs_diff:.1e}")
    files = {"onnxruntime:int8": stem + "_int8.onnx", "openvino:int8": stem + "_int8.xml"}
    quantize_onnx_int8(stem + ".onnx", files["onnxruntime:int8"], calibration, count=None, threads=threads)
    quantize_openvino_int8(stem + ".onnx", files["openvino:int8"], calibration, count=None, threads=threads)
    out: dict[str, Any] = {"weights": weights, "input_size": f"{fp32.height}x{fp32.width}", "records": {}}
    paths = [(p, f, stem + ".onnx") for p, f in files.items()]
    if machine.native_bf16()[0]:
        paths.append(("openvino:bf16", stem + ".onnx", None))
    for path, model, reference in paths:
        log(f"{name}: guard {path}")
        record = run_guard(model, data, path=path, reference=reference)
        write_guard_record(model, record)
        out["records"][path] = record
        print(format_guard(record), flush=True)
    out["files"] = {p: f for p, f, _ in paths}
    return out


def merged_guard(networks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One record per path over all guarded networks: their data sets side by side, passed only if all passed."""
    merged: dict[str, dict[str, Any]] = {}
    for net_name, g in networks.items():
        for path, rec in g["records"].items():
            m = merged.setdefault(path, {"path": path, "passed": True, "datasets": {}})
            m["passed"] = m["passed"] and rec["passed"]
            for ds, v in rec["datasets"].items():
                m["datasets"][f"{net_name}/{ds}"] = v
    return merged


def node_runs(args, kta: str, workdir: str) -> dict[str, Any]:
    """The node's end-to-end FPS (benchmarks/node_latency.py, in-process) for the trained/untrained gap and dna_b0."""
    try:
        import node_latency  # optional dependency: rclpy (benchmarks/node_latency.py beside this script)
    except ImportError as exc:
        return {"note": f"skipped: {exc} (the node needs rclpy)"}
    import dna_depth_core

    def run(weights, width, height, scale_mode, untrained, frames):
        ns = argparse.Namespace(backend="auto", device="cpu", scale_mode=scale_mode, camera_height=1.65,
                                frames=frames, rate=30.0, rate_seconds=3.0 if args.quick else 10.0)
        sets = [("trained", weights)]
        if untrained:
            sets.append(("untrained", node_latency.untrained_checkpoint(weights, os.path.join(workdir, "untr.safetensors"))))
        images, K, source = node_latency.load_frames(width, height)
        out = {"input": f"{width}x{height}", "frames_source": source, "scale_mode": scale_mode}
        for label, w in sets:
            bare = node_latency.BareModel(w, images[0])
            r = node_latency.node_in_process(w, images, K, ns, bare)
            out[label] = {k: r[k] for k in ("backend_reason", "latency_ms", "latency_p90_ms", "stages_ms",
                                            "fps_end_to_end", "fps_inference_only", "e2e_fps_over_inference_fps",
                                            "ros_overhead_ms", "ground_fits_accepted", "rate_test")}
            log(f"node {label} {width}x{height}: {out[label]['fps_end_to_end']:.2f} FPS end to end, "
                f"{out[label]['fps_inference_only']:.2f} inference only; {r['backend_reason']}")
        return out

    frames = 8 if args.quick else 20
    result = {"kitti_tiny_adapt_lite0": run(kta, 320, 96, "camera_height", True, frames)}
    import torch

    torch.manual_seed(0)
    b0 = dna_depth_core.build_model("dna_b0", height=192, width=640)
    b0_path = os.path.join(workdir, "dna_b0_seeded.safetensors")
    dna_depth_core.save_checkpoint(b0, b0_path)
    result["dna_b0_seeded"] = run(b0_path, 640, 192, "none", False, frames)
    return result


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Speed-ups against onnxruntime fp32, the dna_b0 / monodepth2_r18 ratios per backend, and the goals."""
    rows = {(r["model"], r["backend"]): r for r in report["bench"]["results"] if r.get("latency_ms_median")}
    out: dict[str, Any] = {"speedup_vs_onnxruntime_fp32": {}, "dna_b0_over_monodepth2_r18": {}}
    for (m, b), r in rows.items():
        base = rows.get((m, "onnxruntime"))
        if base:
            out["speedup_vs_onnxruntime_fp32"].setdefault(m, {})[b] = round(
                base["latency_ms_median"] / r["latency_ms_median"], 3)
    for (m, b), r in rows.items():
        if m == "dna_b0" and ("monodepth2_r18", b) in rows:
            out["dna_b0_over_monodepth2_r18"][b] = round(
                r["latency_ms_median"] / rows[("monodepth2_r18", b)]["latency_ms_median"], 3)
    guard = report.get("guard_merged", {})
    passing = [r for (m, b), r in rows.items() if m == "dna_b0" and (r.get("precision") == "fp32" or (
        guard.get(f"{b.split('+')[0]}:{r.get('precision')}", {}).get("passed")))]
    best = max(passing, key=lambda r: r["fps"], default=None)
    native = machine.native_bf16()[0]
    goal = 15.0 if native else 10.0
    out["goal_dna_b0"] = {"target_fps": goal, "class": "native bf16" if native else "no native bf16 (int8)",
                          "best_path_within_guard": best and best["backend"], "fps": best and round(best["fps"], 2),
                          "met": bool(best and best["fps"] >= goal)}
    node = report.get("node", {})
    gaps = {}
    for key, n in node.items():
        if isinstance(n, dict) and "trained" in n:
            gaps[key] = {label: round(n[label]["e2e_fps_over_inference_fps"], 3)
                         for label in ("trained", "untrained") if label in n}
    out["goal_node_within_10pct"] = {"e2e_fps_over_inference_fps": gaps,
                                     "met": bool(gaps) and all(v >= 0.9 for g in gaps.values() for v in g.values())}
    return out


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [f"# CPU fast path ({report['tag']})", "", "```", format_header(report["bench"]), "```", "",
             "## Backends x precisions (640x192, seeded weights; guard column: trained networks)", "",
             format_table(report["bench"], markdown=True), "", "Speed-up against onnxruntime fp32 (median):", ""]
    for m, d in s["speedup_vs_onnxruntime_fp32"].items():
        lines.append(f"- {m}: " + ", ".join(f"{b} {v:.2f}x" for b, v in d.items()))
    lines += ["", "dna_b0 / monodepth2_r18 latency on the same backend and precision: "
              + ", ".join(f"{b} {v:.2f}" for b, v in s["dna_b0_over_monodepth2_r18"].items()), "",
              "## Accuracy guard (AbsRel within 0.002 and a1 within 0.005 of fp32)", ""]
    for net, g in report["guard"].items():
        lines += [f"### {net} ({g['input_size']}, {g['weights']})", "", "```"]
        lines += [format_guard(r) for r in g["records"].values()] + ["```", ""]
    lines += ["## Node end to end (rclpy graph, in-process, backend auto)", ""]
    for key, n in report.get("node", {}).items():
        if not isinstance(n, dict) or "trained" not in n:
            lines.append(f"- {key}: {n}")
            continue
        for label in ("trained", "untrained"):
            if label in n:
                x = n[label]
                st = x["stages_ms"]
                lines.append(f"- {key} {label} ({n['input']}, scale {n['scale_mode']}): end to end "
                             f"{x['latency_ms']:.1f} ms = {x['fps_end_to_end']:.2f} FPS; node inference "
                             f"{st['inference']:.1f} ms = {x['fps_inference_only']:.2f} FPS (ratio "
                             f"{x['e2e_fps_over_inference_fps']:.2f}); postprocess {st['postprocess']:.1f} ms, "
                             f"ground fits {x['ground_fits_accepted']}; {x['backend_reason']}")
    g = s["goal_dna_b0"]
    lines += ["", "## Goals", "",
              f"- dna_b0 640x192 >= {g['target_fps']:.0f} FPS ({g['class']}): best path within the guard "
              f"{g['best_path_within_guard']} at {g['fps']} FPS: {'met' if g['met'] else 'NOT met'}",
              f"- node end-to-end FPS within 10 % of inference-only FPS: "
              f"{s['goal_node_within_10pct']['e2e_fps_over_inference_fps']}: "
              f"{'met' if s['goal_node_within_10pct']['met'] else 'NOT met'}", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="final", help="report name: benchmarks/results/fastpath_<tag>.{json,md}")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="round-robin rounds of the bench")
    ap.add_argument("--kitti-weights", default=None, help="kitti_tiny_adapt dna_lite0 checkpoint (default: train)")
    ap.add_argument("--synthetic-weights", default=None, help="a synthetic-trained dna_lite0 (the recipe's)")
    ap.add_argument("--synthetic-frames", type=int, default=40, help="held-out synthetic frames for the guard")
    ap.add_argument("--quick", action="store_true", help="fewer calls and frames (a preliminary run)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: guard, bench, node")
    args = ap.parse_args(argv)
    skip = {p.strip() for p in args.skip.split(",") if p.strip()}
    t0 = time.perf_counter()
    report: dict[str, Any] = {"tag": args.tag, "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                              "machine_start": machine.describe()}
    with tempfile.TemporaryDirectory(prefix="fastpath-report-") as work:
        kta = kitti_weights(args.kitti_weights, args.threads)
        report["guard"] = {}
        if "guard" not in skip:
            kitti = kitti_guard_data(KITTI)
            calib = [kitti.images[i] for i in (0, 2, 4, 6)]
            report["guard"]["kitti_tiny_adapt_lite0"] = guard_network("kta", kta, [kitti], calib, work, args.threads)
            if args.synthetic_weights:
                frames = 20 if args.quick else args.synthetic_frames
                held_out = synthetic_guard_data(frames, seed=1)
                calib = [rgb for rgb, _, _ in synthetic_frames(16, 640, 192, seed=3, every=4, ss=1)]
                report["guard"]["synthetic_lite0"] = guard_network("synth", args.synthetic_weights, [held_out],
                                                                   calib, work, args.threads)
        report["guard_merged"] = merged_guard(report["guard"])
        if "bench" not in skip:
            backends = ["onnxruntime", "onnxruntime+raw", "onnxruntime+int8", "openvino", "openvino+raw",
                        "openvino+int8", "auto"]
            if machine.native_bf16()[0]:
                backends += ["openvino+bf16", "torch+cl+bf16"]
            log(f"bench {', '.join(MODELS)} x {', '.join(backends)}")
            report["bench"] = bench(list(MODELS), backends, height=192, width=640, threads=args.threads,
                                    repeats=1 if args.quick else args.repeats, iters=8 if args.quick else 20,
                                    max_time=15.0 if args.quick else 30.0, compare=False,
                                    guard=report["guard_merged"], progress=log)
        if "node" not in skip:
            report["node"] = node_runs(args, kta, work)
    report["machine_end"] = {"loadavg_end": machine.load_average()}
    report["wall_s"] = time.perf_counter() - t0
    if "bench" in report:
        report["summary"] = summarise(report)
        md = markdown(report)
    else:
        md = json.dumps(report.get("guard", {}), indent=1, default=str)
    out = REPO / "benchmarks" / "results" / f"fastpath_{args.tag}"
    write_text(str(out) + ".json", json.dumps(report, indent=1, default=str) + "\n")
    write_text(str(out) + ".md", md + "\n")
    log(f"wrote {out}.json and .md in {report['wall_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
