"""ONNX export to a file, verified against torch with onnxruntime.

>>> report = export_onnx("dna_b0.safetensors", "dna_b0.onnx")            # static 1x3x192x640 (the checkpoint's size)
>>> report = export_onnx(net, "dna_b0_dyn.onnx", dynamic=True)           # batch, height, width dynamic
>>> report.max_abs_diff                                                   # onnxruntime vs torch, scale-0 disparity

The graph and its metadata are the project's ONNX format (:mod:`dna_depth_core.io.onnx_format`); verification runs
the file with :class:`dna_depth_core.backends.OnnxBackend`, i.e. exactly what inference runs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import numpy as np
import torch

from dna_depth_core.backends.onnx_backend import OnnxBackend
from dna_depth_core.io.atomic import write_bytes
from dna_depth_core.io.onnx_format import (
    DEFAULT_OPSET,
    OUTPUT_NAMES,
    export_to_bytes,
    network_and_provenance,
    read_onnx_metadata,
)
from dna_depth_core.models.depth_net import DepthNet


@dataclasses.dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how well onnxruntime reproduces torch."""

    path: str
    model: str
    height: int
    width: int
    dynamic: bool
    all_scales: bool
    opset: int
    outputs: tuple[str, ...]
    size_bytes: int
    seconds: float
    # The exact graph clean-ups applied (dna_depth_core.io.onnx_cleanup): counts, or {} without clean-up.
    cleanup: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Verification (None when skipped): the largest |onnxruntime - torch| over the scale-0 disparity, per checked
    # input size "BxHxW" (batch 2 when dynamic, else the graph's batch).
    max_abs_diff: float | None = None
    checked: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def export_onnx(source: Any, out_path: str | os.PathLike, height: int | None = None, width: int | None = None,
                dynamic: bool = False, all_scales: bool = False, opset: int = DEFAULT_OPSET,
                verify: bool = True, atol: float = 1e-4, batch: int = 1, cleanup: bool = True) -> ExportReport:
    """Export a checkpoint (path) or a DepthNet to ``out_path`` (atomically) and (``verify``) check it with
    onnxruntime.

    ``height``/``width`` default to the network's training size; ``dynamic`` makes batch, height and width dynamic;
    ``all_scales`` adds the 1/2, 1/4 and 1/8 disparities; ``batch`` is the batch of a static graph. ``cleanup``
    applies the exact graph clean-ups (:mod:`dna_depth_core.io.onnx_cleanup`; the verification covers them).
    Verification runs onnxruntime (CPU) and torch on the same seeded input in [0, 1] and records the largest
    absolute difference of the scale-0 disparity; with ``dynamic`` it checks the export size and a second size
    (+64 rows, +128 columns) at batch 2. A difference above ``atol`` raises RuntimeError (the file is kept so it
    can be inspected).
    """
    t0 = time.perf_counter()
    net, provenance = network_and_provenance(source)
    cfg = net.config
    height = int(cfg.height if height is None else height)
    width = int(cfg.width if width is None else width)
    data = export_to_bytes(net, height, width, dynamic=dynamic, all_scales=all_scales, opset=opset,
                           provenance=provenance, batch=batch, cleanup=cleanup)
    out_path = os.fspath(out_path)
    write_bytes(out_path, data)
    outputs = OUTPUT_NAMES if all_scales else OUTPUT_NAMES[:1]
    report = ExportReport(path=os.path.abspath(out_path), model=cfg.name, height=height, width=width,
                          dynamic=dynamic, all_scales=all_scales, opset=opset, outputs=tuple(outputs),
                          size_bytes=len(data), seconds=0.0,
                          cleanup=json.loads(read_onnx_metadata(data).get("graph_cleanup", "{}")))
    if verify:
        sizes = [(1 if dynamic else batch, height, width)]
        if dynamic:
            sizes.append((2, height + 64, width + 128))
        report.checked = verify_onnx(out_path, net, sizes)
        report.max_abs_diff = max(report.checked.values())
        if report.max_abs_diff > atol:
            raise RuntimeError(f"export {out_path}: onnxruntime differs from torch by {report.max_abs_diff:.3g} "
                               f"(> {atol:g}) on the scale-0 disparity")
    report.seconds = time.perf_counter() - t0
    return report


def verify_onnx(onnx_path: str | os.PathLike | bytes, net: DepthNet,
                sizes: list[tuple[int, int, int]] | None = None, seed: int = 0) -> dict[str, float]:
    """``{"BxHxW": max |onnxruntime - torch|}`` of the scale-0 disparity for each ``(batch, height, width)``
    (default: batch 1 at the network's training size), on seeded inputs in [0, 1].

    Runs :class:`OnnxBackend` on the CPU provider (fp32, all graph optimisations), i.e. what inference runs.
    """
    cfg = net.config
    sizes = sizes or [(1, cfg.height, cfg.width)]
    backend = OnnxBackend(onnx_path, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    net = net.eval()
    for b, h, w in sizes:
        x = torch.rand(b, 3, h, w, generator=gen)
        with torch.inference_mode():
            ref = net(x)[0].numpy()
        got = backend(x.numpy())
        out[f"{b}x{h}x{w}"] = float(np.max(np.abs(got.astype(np.float64) - ref)))
    return out


__all__ = ["ExportReport", "export_onnx", "verify_onnx"]
