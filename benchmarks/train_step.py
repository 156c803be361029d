#!/usr/bin/env python3
"""CPU training step time: one full step (forward, loss, backward, Adam) of the demo's fine-tune recipe
(config/train/finetune_synthetic.yaml: dna_lite0 + Lite0 pose network, 320x96, batch 4) in fp32 and in bf16
autocast (``precision``), with 1 and 2 torch threads. The variants take turns step by step in one process, so
they see the same machine load; medians of wall and CPU seconds per step, with the machine (ISA flags, whether the
CPU has native bf16) and the load average recorded.

    . scripts/dev/env.sh
    python benchmarks/train_step.py --steps 8 --out benchmarks/results/train_step_cpu.json

Weights are random (a step's time does not depend on them); the data is a rendered synthetic drive (20 frames).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

from dna_depth_core import machine
from dna_depth_core.data.synthetic import render_drive
from dna_depth_core.training.config import load_config
from dna_depth_core.training.trainer import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="measured steps per variant (after 2 warm-up steps)")
    ap.add_argument("--threads", default="1,2", help="torch thread counts to measure")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--out", help="JSON report (a .md table is written beside it)")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    precisions = args.precisions.split(",")
    info = machine.describe()
    isa = machine.cpu_isa()
    native = isa.native_bf16
    why = f"ISA class {isa.name}: " + ("avx512_bf16 or amx_bf16 present" if native else "no avx512_bf16, no amx_bf16")
    with tempfile.TemporaryDirectory() as tmp:
        drive = render_drive(tmp, 20, seed=3, width=320, height=96, progress=False)
        trainers = {}
        for p in precisions:
            cfg = load_config(os.path.join(REPO, "config", "train", "finetune_synthetic.yaml"),
                              [f"data_path={drive.root}", f"split={drive.split_file}", f"out_dir={tmp}/{p}",
                               f"precision={p}", "cpu_threads=1"])
            trainers[p] = Trainer(cfg)
        loaders = {p: iter(tr.loader(0, 0)) for p, tr in trainers.items()}

        def batch(p):
            try:
                return next(loaders[p])
            except StopIteration:
                loaders[p] = iter(trainers[p].loader(0, 0))
                return next(loaders[p])

        variants = [(p, t) for t in threads for p in precisions]
        times = {v: {"wall": [], "cpu": []} for v in variants}
        for i in range(args.steps + 2):
            for p, t in variants:
                torch.set_num_threads(t)
                b = batch(p)
                w0, c0 = time.perf_counter(), time.process_time()
                out = trainers[p].train_step(b)
                w, c = time.perf_counter() - w0, time.process_time() - c0
                if out["skipped"]:
                    raise RuntimeError(f"{p}: a non-finite step")
                if i >= 2:
                    times[(p, t)]["wall"].append(w)
                    times[(p, t)]["cpu"].append(c)
    rows = []
    for (p, t), tt in times.items():
        wall, cpu = statistics.median(tt["wall"]), statistics.median(tt["cpu"])
        rows.append({"precision": p, "threads": t, "wall_s_per_step": round(wall, 3), "cpu_s_per_step": round(cpu, 3),
                     "steps_per_s": round(1 / wall, 3), "steps": len(tt["wall"])})
    fp32 = {r["threads"]: r["wall_s_per_step"] for r in rows if r["precision"] == "fp32"}
    for r in rows:
        r["wall_vs_fp32"] = round(r["wall_s_per_step"] / fp32[r["threads"]], 2) if r["threads"] in fp32 else None
    info["loadavg_end"] = machine.load_average()
    report = {"benchmark": "benchmarks/train_step.py", "recipe": "config/train/finetune_synthetic.yaml (320x96, "
              "batch 4, dna_lite0 + lite0 pose)", "native_bf16": native, "native_bf16_why": why, "rows": rows,
              "machine": info, "command": " ".join(["python"] + sys.argv)}
    text = ["| precision | threads | wall s/step | CPU s/step | steps/s | wall vs fp32 |", "|---|---|---|---|---|---|"]
    text += [f"| {r['precision']} | {r['threads']} | {r['wall_s_per_step']:.2f} | {r['cpu_s_per_step']:.2f} | "
             f"{r['steps_per_s']:.3f} | {r['wall_vs_fp32']} |" for r in rows]
    print("\n".join(text))
    print(f"CPU {info['cpu']}, torch ISA {info['torch_cpu_capability']}, native bf16: {native} ({why}); load "
          f"{info['loadavg_start']} -> {info['loadavg_end']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
        md = os.path.splitext(args.out)[0] + ".md"
        with open(md, "w") as f:
            f.write(f"# Training step on the CPU ({info['date']})\n\n`{report['command']}`\n\n{report['recipe']}; "
                    f"medians of {args.steps} steps per variant, variants interleaved step by step.\n\n"
                    + "\n".join(text) + f"\n\nCPU: {info['cpu']} ({info['usable_cpus']} usable cores), torch ISA "
                    f"{info['torch_cpu_capability']}, native bf16: {native} ({why}); torch "
                    f"{info['versions'].get('torch')}; load average {info['loadavg_start']} at the start, "
                    f"{info['loadavg_end']} at the end.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
