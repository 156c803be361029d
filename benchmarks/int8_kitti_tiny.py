#!/usr/bin/env python
"""int8 vs fp32 onnxruntime on the 7 real KITTI frames of kitti_tiny: disparity difference, AbsRel/a1,
latency.

For each checkpoint (``--weights``, repeatable):

1. export fp32 ONNX (static, the checkpoint's size; checked against torch on the 7 frames);
2. quantise it to int8 twice with :func:`dna_depth_core.export.quantize_onnx_int8` (QDQ, U8S8, per-channel weights,
   MinMax): calibrated on the 7 KITTI frames themselves (calibration set = evaluation set, the optimistic case)
   and on synthetic frames (``--synthetic``, rendered by ``dna-depth synth``: disjoint from the evaluation);
3. evaluate fp32 and both int8 models on the 7 frames (``image_02``, frames 0..6) against the projected LiDAR
   (``proj_depth/velodyne/image_02/*.npz``) with the protocol of ``dna_depth_core.evaluation``: the image turned
   into the network input by ``dna_depth_core.preprocess.prepare`` (the rule every dataset, ``evaluate`` and
   ``DepthEstimator`` apply), the disparity resized to the ground truth (bilinear), per-image median scaling,
   Garg/Eigen crop, depth capped to [1e-3, 80] m; the torch fp32 network is evaluated with ``evaluate_model`` as a
   cross-check of this pipeline;
4. |int8 - fp32| of the scale-0 disparity at the network resolution over all pixels of the 7 frames;
5. latency: fp32 and int8 (KITTI-calibrated) :class:`OnnxBackend` with ``--threads`` (default 1), ``--warmup``
   calls each, then ``--iters`` rounds alternating fp32/int8 (interleaved, so load changes hit both); median ms.

    . scripts/dev/env.sh
    dna-depth convert-official ../shared/reference/official_b0 --model dna_b0 --out /tmp/official_b0.safetensors
    dna-depth synth --out /tmp/s --frames 20 --width 640 --height 192 --workers 1
    python benchmarks/int8_kitti_tiny.py --weights /tmp/official_b0.safetensors --synthetic /tmp/s

Writes ``--json`` (default ``benchmarks/results/int8_kitti_tiny.json``) and prints a markdown table.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dna_depth_core import machine
from dna_depth_core.backends import OnnxBackend
from dna_depth_core.data.kitti import image_path, load_image, parse_split_line
from dna_depth_core.evaluation import aggregate, evaluate_depth, evaluate_model, load_gt_depth
from dna_depth_core.export import export_onnx, find_calibration_images, quantize_onnx_int8
from dna_depth_core.geometry import disp_to_depth
from dna_depth_core.io.checkpoint import load_checkpoint
from dna_depth_core.preprocess import prepare

REPO = Path(__file__).resolve().parents[1]
DRIVE = "2011_09_26/2011_09_26_drive_0023_sync"
DEFAULT_DATA = str(REPO.parent / "shared" / "data" / "kitti_tiny")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", action="append", required=True, help="dna-depth checkpoint (repeatable)")
    ap.add_argument("--synthetic", required=True, help="folder of synthetic frames (dna-depth synth --out DIR)")
    ap.add_argument("--data", default=DEFAULT_DATA, help="kitti_tiny root")
    ap.add_argument("--work", default="/tmp/int8_kitti_tiny", help="folder for the .onnx files")
    ap.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "int8_kitti_tiny.json"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--no-latency", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    data = str(Path(args.data).resolve())
    n_frames = len(list((Path(data) / DRIVE / "image_02" / "data").glob("*.png")))
    lines = [f"{DRIVE} {i} l" for i in range(n_frames)]
    entries = [parse_split_line(x) for x in lines]
    rgbs = [load_image(image_path(data, e.folder, e.frame_index, e.side)) for e in entries]
    gts = [load_gt_depth(data, e)[0] for e in entries]
    kitti_files = [str(image_path(data, e.folder, e.frame_index, e.side)) for e in entries]
    synth_files = find_calibration_images(args.synthetic, None)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine_start = machine.describe()  # the load average at the start, library versions

    def net_input(rgb, h, w):
        # The one image-to-input rule (what the datasets, evaluate and DepthEstimator feed the network).
        return prepare(rgb, (w, h))[0]

    def evaluate(backend, xs, cfg):
        disps, per_frame = [], []
        for x, gt in zip(xs, gts):
            d = backend(x)
            disps.append(d[0, 0])
            up = F.interpolate(torch.from_numpy(d), size=gt.shape, mode="bilinear", align_corners=False)
            depth = disp_to_depth(up[0, 0].numpy(), cfg.min_depth, cfg.max_depth)[1]
            per_frame.append(evaluate_depth(gt, depth, scaling="median")[0])
        m = aggregate(per_frame)
        return {"abs_rel": m["abs_rel"], "a1": m["a1"], "rmse": m["rmse"],
                "per_frame_abs_rel": [f["abs_rel"] for f in per_frame]}, disps

    results = []
    for weights in args.weights:
        net = load_checkpoint(weights, map_location="cpu").eval()
        cfg = net.config
        name = Path(weights).stem if Path(weights).stem != "model" else Path(weights).parent.name
        h, w = cfg.height, cfg.width
        xs = [net_input(rgb, h, w) for rgb in rgbs]
        torch_eval = evaluate_model(net, data, lines, gts, scaling="median", progress=False)
        fp32_path = work / f"{name}_fp32.onnx"
        export_onnx(weights, fp32_path, verify=False)  # checked below on the 7 frames, with --threads threads
        int8 = {}
        for calib, files in (("kitti7", kitti_files), ("synthetic", synth_files)):
            path = work / f"{name}_int8_{calib}.onnx"
            rep = quantize_onnx_int8(fp32_path, path, files, count=None, threads=args.threads, verify=False)
            int8[calib] = {"path": str(path), "calibration_images": rep.calibration_images,
                           "quantize_seconds": rep.seconds, "size_bytes": rep.size_bytes}
        fp32 = OnnxBackend(str(fp32_path), providers=["CPUExecutionProvider"], threads=args.threads)
        fp32_metrics, ref = evaluate(fp32, xs, cfg)
        with torch.inference_mode():
            fp32_vs_torch = max(float(np.abs(net(torch.from_numpy(x))[0][0, 0].numpy() - r).max())
                                for x, r in zip(xs, ref))
        row = {"weights": weights, "name": name, "model": cfg.name, "input": f"{w}x{h}",
               "fp32_vs_torch_max_abs": fp32_vs_torch,
               "torch": {"abs_rel": torch_eval["abs_rel"], "a1": torch_eval["a1"]}, "fp32": fp32_metrics,
               "fp32_size_bytes": os.path.getsize(fp32_path), "disp_fp32_range": [float(min(r.min() for r in ref)),
                                                                                   float(max(r.max() for r in ref))]}
        for calib, info in int8.items():
            b = OnnxBackend(info["path"], providers=["CPUExecutionProvider"], threads=args.threads)
            metrics, got = evaluate(b, xs, cfg)
            d = np.concatenate([np.abs(g.astype(np.float64) - r).ravel() for g, r in zip(got, ref)])
            rel = np.concatenate([(np.abs(g.astype(np.float64) - r) / r).ravel() for g, r in zip(got, ref)])
            row[f"int8_{calib}"] = {**info, **metrics, "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                                    "max_rel_diff": float(rel.max()), "mean_rel_diff": float(rel.mean())}
        if not args.no_latency:
            b32 = fp32
            b8 = OnnxBackend(int8["kitti7"]["path"], providers=["CPUExecutionProvider"], threads=args.threads)
            x = xs[0]
            for _ in range(args.warmup):
                b32(x)
                b8(x)
            t32, t8 = [], []
            la0 = machine.load_average()
            for _ in range(args.iters):
                for b, t in ((b32, t32), (b8, t8)):
                    t0 = time.perf_counter()
                    b(x)
                    t.append(1e3 * (time.perf_counter() - t0))
            row["latency"] = {"threads": args.threads, "iters": args.iters, "warmup": args.warmup,
                              "fp32_ms_median": float(np.median(t32)), "int8_ms_median": float(np.median(t8)),
                              "fp32_ms_p10_p90": [float(np.percentile(t32, 10)), float(np.percentile(t32, 90))],
                              "int8_ms_p10_p90": [float(np.percentile(t8, 10)), float(np.percentile(t8, 90))],
                              "speedup_median": float(np.median(t32) / np.median(t8)),
                              "fp32_samples_ms": [round(v, 1) for v in t32],
                              "int8_samples_ms": [round(v, 1) for v in t8],
                              "loadavg_before_after": [la0, machine.load_average()]}
        results.append(row)
        print(f"[int8] {name} done", file=sys.stderr, flush=True)

    report = {
        "benchmark": "int8_kitti_tiny",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
        "machine": {**{k: v for k, v in machine_start.items() if k != "versions"},
                    "loadavg_end": machine.load_average()},
        "versions": machine_start["versions"],
        "data": {"frames": lines, "gt": "proj_depth/velodyne/image_02/*.npz", "synthetic": str(args.synthetic),
                 "synthetic_frames": len(synth_files),
                 "protocol": "preprocess.prepare input (stretch), disparity resized bilinearly to the ground truth, "
                             "median scaling, Eigen crop, depth in [1e-3, 80] m"},
        "results": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")

    print("| weights | input | variant | AbsRel | a1 | max abs d disp | mean abs d disp | mean rel d disp "
          "| median ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        lat = r.get("latency", {})
        n = f"{r['model']} {r['name']}"
        print(f"| {n} | {r['input']} | torch fp32 (evaluate_model) | {r['torch']['abs_rel']:.4f} | "
              f"{r['torch']['a1']:.4f} | | | | |")
        print(f"| {n} | {r['input']} | onnxruntime fp32 | {r['fp32']['abs_rel']:.4f} | {r['fp32']['a1']:.4f} | 0 | 0 "
              f"| 0 | {lat.get('fp32_ms_median', float('nan')):.0f} |")
        for calib in ("kitti7", "synthetic"):
            q = r[f"int8_{calib}"]
            ms = f"{lat['int8_ms_median']:.0f}" if calib == "kitti7" and lat else ""
            print(f"| {n} | {r['input']} | int8, calibrated on {calib} ({q['calibration_images']}) | "
                  f"{q['abs_rel']:.4f} | {q['a1']:.4f} | {q['max_abs_diff']:.2e} | {q['mean_abs_diff']:.2e} | "
                  f"{100 * q['mean_rel_diff']:.2f} % | {ms} |")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
