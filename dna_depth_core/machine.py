"""The one description of the machine the code runs on: CPU model, usable cores, instruction-set flags, an fp32 peak
estimate, the GPU, library versions and the load average.

Benchmark reports (``dna-depth bench``, the scripts under ``benchmarks/``) record :func:`describe`; the inference
backends ask :func:`usable_cpus` for their thread count and :func:`cpu_isa` for the instruction-set class that
decides which reduced precisions are exact and fast here (``backend: auto``, the int8 kernels' settings).
Everything here is read from the running system (``/proc/cpuinfo``, the affinity mask, ``importlib.metadata``,
torch, OpenVINO's CPU plugin when installed); nothing is measured.

    python -m dna_depth_core.machine [--device cuda]     # the description as JSON
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from typing import Any, Iterable

import torch

#: CPU flags that decide which kernels run fast: AVX2/FMA, AVX-512 (foundation, byte/word, vector length), VNNI
#: (int8 dot products that accumulate in int32: avx512_vnni, or avx_vnni on AVX2-only cores), native bf16
#: (avx512_bf16, AMX) and fp16 (avx512_fp16, amx_fp16).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
             "amx_bf16", "amx_int8", "avx512_fp16", "amx_fp16")

#: Import names whose installed versions a description lists (``cv2`` is OpenCV, ``dna_depth_core`` this project).
LIBRARIES = ("torch", "timm", "onnx", "onnxruntime", "openvino", "nncf", "numpy", "cv2", "safetensors",
             "dna_depth_core")

#: The ISA classes of :attr:`CpuIsa.name`, most capable first.
ISA_CLASSES = ("amx", "avx512_bf16", "avx512_vnni", "avx512", "avx_vnni", "avx2", "baseline")


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask; cgroup CPU quotas are not read)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def cpu_info(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The ``key: value`` fields of the first processor in ``path`` (empty where the file cannot be read)."""
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    break  # end of the first processor's block
                key, _, value = line.partition(":")
                out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def cpu_model(info: dict[str, str] | None = None) -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows, else ``"unknown"``."""
    info = cpu_info() if info is None else info
    return info.get("model name") or platform.processor() or "unknown"


def isa_flags(info: dict[str, str] | None = None) -> dict[str, bool]:
    """``{flag: present}`` for each of :data:`ISA_FLAGS` (all False where ``/proc/cpuinfo`` is unavailable)."""
    info = cpu_info() if info is None else info
    present = set(info.get("flags", "").split())
    return {f: f in present for f in ISA_FLAGS}


@dataclasses.dataclass(frozen=True)
class CpuIsa:
    """What a CPU's instruction set means for reduced precision (read by :func:`cpu_isa`).

    ``flags`` are the :data:`ISA_FLAGS` present. The properties are the facts the backends decide on:

    - ``vnni``: an int8 dot product that accumulates in int32 (``vpdpbusd``: avx512_vnni, avx_vnni, or AMX int8).
      Without it, x86 int8 kernels that multiply uint8 activations by int8 weights (``vpmaddubsw``) add pairs of
      products into a *saturating* int16 (2 x 255 x 127 = 64770 > 32767): such kernels are wrong for real
      activations unless the weights use 7 bits (docs/deployment.md, "int8 per ISA").
    - ``native_bf16``: bf16 arithmetic in hardware (avx512_bf16 or amx_bf16). Elsewhere bf16 is emulated with fp32
      instructions plus conversions, slower than fp32.
    - ``amx``: AMX tiles with bf16 or int8.
    - ``name``: the class of :data:`ISA_CLASSES` (``amx``, ``avx512_bf16``, ``avx512_vnni``, ``avx512``,
      ``avx_vnni``, ``avx2``, ``baseline``).
    """

    model: str
    flags: tuple[str, ...]

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def vnni(self) -> bool:
        return self.has("avx512_vnni") or self.has("avx_vnni") or self.has("amx_int8")

    @property
    def native_bf16(self) -> bool:
        return self.has("avx512_bf16") or self.has("amx_bf16")

    @property
    def amx(self) -> bool:
        return self.has("amx_tile") and (self.has("amx_bf16") or self.has("amx_int8"))

    @property
    def avx512(self) -> bool:
        return self.has("avx512f")

    @property
    def name(self) -> str:
        if self.amx:
            return "amx"
        if self.has("avx512_bf16"):
            return "avx512_bf16"
        if self.has("avx512_vnni"):
            return "avx512_vnni"
        if self.has("avx512f"):
            return "avx512"
        if self.has("avx_vnni"):
            return "avx_vnni"
        if self.has("avx2") and self.has("fma"):
            return "avx2"
        return "baseline"

    def describe(self) -> str:
        """One line: the class, the model name and the flags present."""
        return f"{self.name} ({self.model}: {' '.join(self.flags) or 'none of the flags of interest'})"


def cpu_isa(info: dict[str, str] | None = None) -> CpuIsa:
    """The :class:`CpuIsa` of this CPU (``/proc/cpuinfo``, or ``info`` from :func:`cpu_info`). Where the flags
    cannot be read (not Linux) no flag is present, so every reduced-precision path is treated as unavailable."""
    info = cpu_info() if info is None else info
    return isa_from_flags(info.get("flags", ""), cpu_model(info))


def isa_from_flags(flags: str | Iterable[str], model: str = "unknown") -> CpuIsa:
    """A :class:`CpuIsa` from a flag list (a ``/proc/cpuinfo`` line or names): this machine's, or another
    machine's to build a model for (``--target-isa``) or to reason about."""
    present = set(flags.split() if isinstance(flags, str) else flags)
    return CpuIsa(model=model, flags=tuple(f for f in ISA_FLAGS if f in present))


#: Flag lists of each ISA class, for building a model for another machine (``isa_for_class``).
_CLASS_FLAGS = {
    "amx": "avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8",
    "avx512_bf16": "avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16",
    "avx512_vnni": "avx2 fma avx512f avx512bw avx512vl avx512_vnni",
    "avx512": "avx2 fma avx512f avx512bw avx512vl",
    "avx_vnni": "avx2 fma avx_vnni",
    "avx2": "avx2 fma",
    "baseline": "",
}


def isa_for_class(name: str) -> CpuIsa:
    """A representative :class:`CpuIsa` of the class ``name`` (one of :data:`ISA_CLASSES`); ValueError otherwise."""
    if name not in _CLASS_FLAGS:
        raise ValueError(f"ISA class '{name}' unknown; use one of {', '.join(ISA_CLASSES)}")
    return isa_from_flags(_CLASS_FLAGS[name], model=f"any {name} CPU")


@functools.lru_cache(maxsize=1)
def openvino_capabilities() -> tuple[str, ...]:
    """OpenVINO's CPU plugin ``OPTIMIZATION_CAPABILITIES`` (e.g. ``FP32``, ``INT8``, ``BF16`` on avx512_bf16/AMX
    CPUs, ``FP16`` on AMX-FP16), ``()`` when OpenVINO is not installed or has no CPU plugin. Cached."""
    try:
        import openvino as ov  # optional dependency: openvino
    except ImportError:
        return ()
    try:
        return tuple(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # noqa: BLE001 - a plugin without the property or without a CPU device
        return ()


def native_bf16(isa: CpuIsa | None = None, capabilities: Iterable[str] | None = None) -> tuple[bool, str]:
    """``(available, why)``: whether bf16 runs natively here. The kernel's flags (``isa``, default this CPU) must
    have avx512_bf16 or amx_bf16, and OpenVINO's CPU plugin (``capabilities``, default
    :func:`openvino_capabilities`; not consulted when empty) must list ``BF16``."""
    isa = cpu_isa() if isa is None else isa
    caps = tuple(openvino_capabilities() if capabilities is None else capabilities)
    if not isa.native_bf16:
        return False, (f"{isa.model} has no avx512_bf16 and no amx_bf16 (bf16 would be emulated, slower than "
                       f"fp32)")
    if caps and "BF16" not in caps:
        return False, f"the CPU flags allow bf16 but OpenVINO's CPU plugin does not offer it ({', '.join(caps)})"
    return True, "native bf16 (" + ("AMX" if isa.amx else "avx512_bf16") + ")"


def threadpool_info() -> list[dict[str, Any]] | None:
    """The native thread pools loaded in this process (BLAS, OpenMP) as threadpoolctl reports them (API, library,
    version, threads), or None without threadpoolctl."""
    try:
        import threadpoolctl  # optional dependency: threadpoolctl
    except ImportError:
        return None
    keys = ("user_api", "internal_api", "prefix", "version", "num_threads", "threading_layer", "architecture")
    return [{k: p.get(k) for k in keys if k in p} for p in threadpoolctl.threadpool_info()]


def nominal_ghz(info: dict[str, str] | None = None) -> float | None:
    """The nominal clock in GHz: from the model name (``... @ 2.50GHz``), else ``cpu MHz``, else None."""
    info = cpu_info() if info is None else info
    m = re.search(r"@\s*([\d.]+)\s*GHz", info.get("model name", ""))
    if m:
        return float(m.group(1))
    try:
        return float(info["cpu MHz"]) / 1000.0
    except (KeyError, ValueError):
        return None


def cpu_peak_gflops(cores: int | None = None, ghz: float | None = None, flags: Iterable[str] | None = None
                    ) -> tuple[float | None, str]:
    """Theoretical fp32 peak in GFLOP/s of ``cores`` cores (default: the usable ones) and the assumptions behind it.

    FLOPs per cycle per core: AVX-512 with two FMA units = 2 units x 16 lanes x 2 (multiply + add) = 64;
    AVX2+FMA = 2 x 8 x 2 = 32; else 16 (SSE). ``ghz`` defaults to :func:`nominal_ghz`, ``flags`` (the names of
    the flags present) to this CPU's. AVX-512 turbo/licence clocks differ, and cheaper Xeons have one AVX-512 FMA
    unit (half this peak), which a virtual machine does not reveal. Returns ``(None, "clock unknown")`` without a
    clock.
    """
    info = cpu_info() if flags is None or ghz is None else {}
    present = set(info.get("flags", "").split()) if flags is None else set(flags)
    cores = int(cores or usable_cpus())
    ghz = nominal_ghz(info) if ghz is None else float(ghz)
    if not ghz:
        return None, "clock unknown"
    if "avx512f" in present:
        per_cycle, isa = 64, "AVX-512, 2 FMA units x 16 fp32 lanes x 2 FLOP"
    elif "avx2" in present and "fma" in present:
        per_cycle, isa = 32, "AVX2, 2 FMA units x 8 fp32 lanes x 2 FLOP"
    else:
        per_cycle, isa = 16, "SSE, 4 lanes x 2 units x 2 FLOP"
    return cores * ghz * per_cycle, (
        f"{cores} cores x {ghz:.2f} GHz (nominal) x {per_cycle} FLOP/cycle ({isa}); assumes every usable CPU is a "
        f"full core (a VM's vCPU may be a hyperthread) and the nominal clock under AVX-512")


@functools.lru_cache(maxsize=1)
def _distributions_by_module() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def library_version(module: str) -> str | None:
    """The version of the import name ``module``: its ``__version__`` when it is already imported (what runs; it
    can carry the build, e.g. torch ``2.14.1+cu130``), else the version of the installed distribution that
    provides it (found without importing it: ``cv2`` -> opencv-python, ``dna_depth_core`` -> dna_depth_ros);
    None when neither exists."""
    version = getattr(sys.modules.get(module), "__version__", None)
    if version is not None:
        return str(version)
    for dist in _distributions_by_module().get(module, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def library_versions(modules: Iterable[str] = LIBRARIES) -> dict[str, str | None]:
    """``{import name: version or None}`` (:func:`library_version`), plus ``python``."""
    out: dict[str, str | None] = {m: library_version(m) for m in modules}
    out["python"] = platform.python_version()
    return out


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the system has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def gpu_info(device: str | torch.device = "cuda") -> dict[str, Any]:
    """Name, memory, multiprocessors and compute capability of a CUDA device, the CUDA/cuDNN versions, whether
    cuDNN may use TF32, and ``nvidia-smi``'s driver/clock/power line; ``{}`` when CUDA is unavailable."""
    if not torch.cuda.is_available():
        return {}
    dev = torch.device(device)
    props = torch.cuda.get_device_properties(dev)
    out: dict[str, Any] = {
        "gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        "gpu_sms": props.multi_processor_count, "gpu_capability": f"{props.major}.{props.minor}",
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
    }
    try:
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["nvidia_smi"] = None
    return out


def describe(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The machine as one JSON-ready dict.

    Keys: ``date`` (UTC, ISO 8601), ``cpu`` (model name), ``cpu_flags`` (:func:`isa_flags`), ``isa_class``,
    ``vnni`` and ``native_bf16`` (:class:`CpuIsa`), ``openvino_capabilities``, ``usable_cpus``,
    ``cpu_count``, ``cpu_ghz_nominal``, ``cpu_peak_gflops_fp32`` and ``cpu_peak_assumptions`` (for the usable
    cores), ``torch_cpu_capability`` (the vector ISA torch dispatches to), ``mkldnn_bf16_supported``,
    ``loadavg_start`` (the load when described; a caller timing something adds ``loadavg_end``), ``python``,
    ``platform``, ``arch``, ``versions`` (:func:`library_versions`), ``threadpools`` (:func:`threadpool_info`), and
    for a CUDA ``device`` the :func:`gpu_info` keys.
    """
    info = cpu_info()
    flags = isa_flags(info)
    isa = cpu_isa(info)
    ghz = nominal_ghz(info)
    peak, assumptions = cpu_peak_gflops(ghz=ghz, flags=info.get("flags", "").split())
    out: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(info),
        "cpu_flags": flags,
        "isa_class": isa.name,
        "vnni": isa.vnni,
        "native_bf16": isa.native_bf16,
        "openvino_capabilities": list(openvino_capabilities()),
        "usable_cpus": usable_cpus(),
        "cpu_count": os.cpu_count(),
        "cpu_ghz_nominal": ghz,
        "cpu_peak_gflops_fp32": peak,
        "cpu_peak_assumptions": assumptions,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_bf16_supported": bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)()),
        "loadavg_start": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "arch": platform.machine(),
        "versions": library_versions(),
        "threadpools": threadpool_info(),
    }
    if str(device).startswith("cuda"):
        out.update(gpu_info(device))
    return out


__all__ = ["CpuIsa", "ISA_CLASSES", "ISA_FLAGS", "LIBRARIES", "cpu_info", "cpu_isa", "cpu_model", "cpu_peak_gflops",
           "describe", "gpu_info", "isa_flags", "isa_for_class", "isa_from_flags", "library_version",
           "library_versions", "load_average", "native_bf16", "nominal_ghz", "openvino_capabilities",
           "threadpool_info", "usable_cpus"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dna_depth_core.machine", description="Print the machine description "
                                "(CPU, flags, cores, peak, GPU, library versions, load) as JSON.")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N] to add the GPU")
    args = p.parse_args(argv)
    print(json.dumps(describe(args.device), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
