"""The benchmark report (``{"machine", "settings", "results"}`` from :func:`dna_depth_core.benchmark.bench`) as an
aligned text table, markdown, or JSON files.
"""
from __future__ import annotations

import json
from typing import Any

from dna_depth_core.io.atomic import write_text


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(report: dict[str, Any], markdown: bool = False) -> str:
    """The results as an aligned text table (or a markdown table), one row per (model, backend)."""
    cpu = report["settings"]["device"] == "cpu"
    with_guard = any(r.get("guard") for r in report["results"])
    head = ["model", "backend", "precision", "params (M)", "GMACs", "median ms", "p90 ms", "min ms"]
    head += ["CPU ms"] if cpu else []
    head += ["FPS", "GFLOP/s"]
    head += ["% CPU peak"] if cpu else []
    head += ["peak MB", "max |d disp|"] + (["guard d AbsRel / d a1"] if with_guard else []) + ["note"]
    rows = []
    for r in report["results"]:
        row = [r["model"], r["backend"], r.get("precision") or "-", _f(r["params"] and r["params"] / 1e6, ".3f"),
               _f(r["macs"] and r["macs"] / 1e9, ".2f"),
               _f(r["latency_ms_median"], ".1f"), _f(r["latency_ms_p90"], ".1f"), _f(r["latency_ms_min"], ".1f")]
        row += [_f(r.get("cpu_ms_median"), ".1f")] if cpu else []
        row += [_f(r["fps"], ".2f"), _f(r["gflops_per_s"], ".1f")]
        row += [_f(r.get("percent_of_cpu_peak"), ".1f")] if cpu else []
        row += [_f(r["peak_mem_mb"], ".0f"), _f(r["max_abs_diff"], ".1e")]
        if with_guard:
            g = r.get("guard")
            row += [f"{g['d_abs_rel']:+.4f} / {g['d_a1']:+.4f} " + ("pass" if g["passed"] else "FAIL") if g else
                    ("fp32" if r.get("precision") == "fp32" else "-")]
        row += [(r.get("error") or "")[:80]]
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def format_header(report: dict[str, Any]) -> str:
    """The machine (:func:`dna_depth_core.machine.describe`) and the settings of a report, one fact per line."""
    m, s = report["machine"], report["settings"]
    flags = ", ".join(f for f, on in m["cpu_flags"].items() if on)
    lines = [
        f"date: {m['date']}",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs" + (f", GPU {m['gpu']}" if m.get("gpu") else ""),
        f"cpu flags: {flags}; torch CPU capability {m['torch_cpu_capability']}"
        + (f"; ISA class {m['isa_class']} (VNNI {'yes' if m.get('vnni') else 'no'}, native bf16 "
           f"{'yes' if m.get('native_bf16') else 'no'}); OpenVINO CPU capabilities "
           f"{', '.join(m.get('openvino_capabilities') or []) or '-'}" if "isa_class" in m else ""),
        "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
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
    """A markdown section: ``## title``, the header in a code block, the results table."""
    return f"## {title}\n\n```\n{format_header(report)}\n```\n\n{format_table(report, markdown=True)}\n"


def write_report(report: dict[str, Any], json_path: str | None = None, markdown_path: str | None = None,
                 title: str = "Benchmark") -> None:
    """Write the report as JSON (indented) and/or markdown (:func:`to_markdown`), each file atomically."""
    if json_path:
        write_text(json_path, json.dumps(report, indent=1) + "\n")
    if markdown_path:
        write_text(markdown_path, to_markdown(report, title))


__all__ = ["format_header", "format_table", "to_markdown", "write_report"]
