"""``backend: auto``: which backend and precision run a model, chosen from the device, the model file, the CPU's
instruction set (:func:`dna_depth_core.machine.cpu_isa`), what is installed and what passed the accuracy guard.

Rule (first that applies; measurements in docs/deployment.md):

- CUDA: ``onnxruntime`` for an exported ``.onnx`` (CUDA execution provider), else ``torch``.
- An OpenVINO IR (``.xml``): ``openvino`` at the file's precision.
- A quantised ``.onnx`` (``export-onnx --int8``): ``onnxruntime`` int8 (exact kernels on every x86 CPU). Giving an
  int8 file chooses int8; a file whose accuracy-guard record *failed* is refused under ``precision: auto``.
- An fp32 network (checkpoint, DepthNet, fp32 ``.onnx``) on the CPU:

  1. native bf16 (avx512_bf16 or AMX, and OpenVINO offers BF16) + OpenVINO + a passing guard record for
     ``openvino:bf16`` in the file -> ``openvino`` bf16 (no calibration needed);
  2. else fp32 on the runtime measured faster for the ISA class: ``openvino`` on x86 CPUs without AVX-512 (AVX2,
     AVX-VNNI: 1.1-1.7x onnxruntime on this project's AVX2 EPYC), ``onnxruntime`` on AVX-512 CPUs (146 vs 170 ms
     for dna_b0 on the AVX-512 machine) and on other architectures (not measured); the other runtime when one is
     missing; ``torch`` when neither is installed.

  int8 is never made up here: it needs a quantised file calibrated on the deployment camera's frames
  (``dna-depth export-onnx --int8 --runtime openvino``), then ``dna-depth guard`` records whether it passes.

``precision`` other than ``auto`` is a request: ``fp32`` skips bf16, ``bf16`` needs native bf16, ``int8`` needs
an int8 file. :func:`select_backend` returns the choice with its reason, the one line the estimator and the ROS node
log.

Guard records (``dna_depth.guard`` metadata, JSON, written by ``dna-depth guard``) map a path ``"backend:precision"``
to its verdict: ``{"passed": bool, "tolerance": {...}, "datasets": {...}, ...}``; :func:`guard_verdict` reads one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
from typing import Any

import torch

from dna_depth_core import machine
from dna_depth_core.backends.base import is_onnx_source, resolve_device
from dna_depth_core.backends.onnx_backend import onnxruntime_available
from dna_depth_core.backends.openvino_backend import openvino_available
from dna_depth_core.io.onnx_format import read_onnx_metadata
from dna_depth_core.io.openvino_format import is_ir_source, read_ir_metadata


@dataclasses.dataclass(frozen=True)
class Selection:
    """What ``backend: auto`` runs: a registered backend name, a precision, and why (one line)."""

    backend: str
    precision: str
    reason: str


def guard_records(meta: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The accuracy-guard records of a model's ``dna_depth.*`` metadata: ``{"backend:precision": record}``
    (empty when none was written or the entry is unreadable)."""
    try:
        records = json.loads(meta.get("guard", "{}"))
    except json.JSONDecodeError:
        return {}
    return records if isinstance(records, dict) else {}


def guard_verdict(meta: dict[str, str], path: str) -> bool | None:
    """Whether ``path`` (``"openvino:int8"``, ...) passed the accuracy guard recorded in ``meta``: True, False, or
    None when no record exists."""
    record = guard_records(meta).get(path)
    if not isinstance(record, dict) or "passed" not in record:
        return None
    return bool(record["passed"])


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


def fp32_runtime(isa: machine.CpuIsa, have_ort: bool, have_ov: bool) -> tuple[str, str]:
    """``(backend, why)``: the fp32 runtime for the ISA class ``isa`` among the installed ones."""
    if have_ov and _is_x86() and not isa.avx512:
        return "openvino", f"{isa.name} without AVX-512: openvino measured faster than onnxruntime at fp32"
    if have_ort:
        why = "AVX-512: onnxruntime measured faster than openvino at fp32" if isa.avx512 else \
            "onnxruntime (openvino not installed)" if _is_x86() else "onnxruntime"
        return "onnxruntime", f"{isa.name}: {why}"
    if have_ov:
        return "openvino", f"{isa.name}: openvino (onnxruntime not installed)"
    return "torch", f"{isa.name}: torch (neither onnxruntime nor openvino installed)"


def _int8_guard(meta: dict[str, str], path: str, precision: str) -> str:
    """What the guard record of an int8 file says, for the reason line; ValueError under ``precision: auto``
    when it failed."""
    verdict = guard_verdict(meta, path)
    if verdict is False and precision == "auto":
        raise ValueError(f"precision auto: this int8 model failed the accuracy guard for {path} (its dna_depth.guard "
                         f"record); use the fp32 model, or pass precision int8 to run it anyway")
    return {True: "passed the accuracy guard", False: "failed the accuracy guard (int8 requested)",
            None: "no accuracy-guard record (run `dna-depth guard`)"}[verdict]


def _metadata(checkpoint: Any) -> dict[str, str]:
    if is_onnx_source(checkpoint):
        if isinstance(checkpoint, (str, os.PathLike)) and not os.path.exists(os.fspath(checkpoint)):
            return {}  # the backend names the missing file
        return read_onnx_metadata(checkpoint)
    return {}


def select_backend(device: str | torch.device = "auto", checkpoint: Any = None, precision: str = "auto",
                   isa: machine.CpuIsa | None = None, have: dict[str, bool] | None = None) -> Selection:
    """The :class:`Selection` of ``backend: auto`` for ``checkpoint`` on ``device`` (module docstring).

    ``isa`` (default this CPU) and ``have`` (``{"onnxruntime": bool, "openvino": bool}``, default what is
    importable) let a caller reason about another machine. Raises ValueError for a request that cannot be served
    (``int8`` of an fp32 network, ``bf16`` without native bf16, an int8 file that failed its guard under ``auto``).
    """
    if precision not in ("auto", "fp32", "bf16", "int8"):
        raise ValueError(f"precision '{precision}' unknown; use auto, fp32, bf16 or int8")
    have = {"onnxruntime": onnxruntime_available(), "openvino": openvino_available(), **(have or {})}
    ort, ov = have["onnxruntime"], have["openvino"]
    if is_ir_source(checkpoint):
        meta = read_ir_metadata(checkpoint) if ov and os.path.isfile(os.fspath(checkpoint)) else {}
        if meta.get("precision") != "int8":
            return Selection("openvino", precision, "an OpenVINO IR runs in openvino")
        return Selection("openvino", "int8" if precision == "auto" else precision,
                         "the model file is an int8 OpenVINO IR, " + _int8_guard(meta, "openvino:int8", precision))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if is_onnx_source(checkpoint):
            return Selection("onnxruntime", precision, "CUDA: an .onnx file runs in onnxruntime (CUDA provider)")
        return Selection("torch", precision, "CUDA: torch")
    here = isa is None
    isa = machine.cpu_isa() if here else isa
    meta = _metadata(checkpoint)
    if meta.get("precision") == "int8":
        return Selection("onnxruntime", "int8" if precision == "auto" else precision,
                         f"{isa.name}: the model file is int8 (onnxruntime QDQ), "
                         + _int8_guard(meta, "onnxruntime:int8", precision))
    if is_onnx_source(checkpoint) and not (ort or ov):
        return Selection("onnxruntime", precision, "an .onnx file needs onnxruntime (not installed)")
    if precision == "int8":
        raise ValueError("precision int8 needs an int8 model file: write one with `dna-depth export-onnx --int8 "
                         "--runtime openvino --calibration FRAMES` (or --runtime onnxruntime) and pass that file")
    # OpenVINO's own capability list is consulted for this CPU only (another machine's is unknown here).
    bf16_ok, bf16_why = machine.native_bf16(isa, None if here else ())
    if precision == "bf16":
        if not bf16_ok:
            raise ValueError(f"precision bf16 unavailable: {bf16_why}")
        if ov:
            return Selection("openvino", "bf16", f"{isa.name}: bf16 requested, {bf16_why}")
        return Selection("torch", "bf16", f"{isa.name}: bf16 requested, {bf16_why} (openvino not installed)")
    skipped = ""
    if precision == "auto":
        if bf16_ok and ov:
            verdict = guard_verdict(meta, "openvino:bf16")
            if verdict:
                return Selection("openvino", "bf16", f"{isa.name}: {bf16_why}, openvino bf16 passed the accuracy "
                                                     f"guard")
            skipped = "; bf16 not used: " + ("it failed the accuracy guard" if verdict is False else
                                             "no accuracy-guard record for openvino:bf16 in the model file")
        elif not bf16_ok:
            skipped = f"; no bf16: {bf16_why}"
    backend, why = fp32_runtime(isa, ort, ov)
    return Selection(backend, "fp32", f"fp32 on {why}{skipped}")


__all__ = ["Selection", "fp32_runtime", "guard_records", "guard_verdict", "select_backend"]
