"""The one machine description (dna_depth_core.machine)."""
import importlib.metadata
import json
import subprocess
import sys

import cv2
import pytest

import dna_depth_core
from dna_depth_core import machine

XEON = """processor	: 0
model name	: Intel(R) Xeon(R) Processor @ 2.50GHz
cpu MHz		: 2494.140
flags		: fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl avx512_vnni

processor	: 1
model name	: Another CPU
"""


def test_cpu_info_reads_the_first_processor(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(XEON)
    info = machine.cpu_info(str(path))
    assert info["model name"] == "Intel(R) Xeon(R) Processor @ 2.50GHz" and info["processor"] == "0"
    assert machine.cpu_model(info) == "Intel(R) Xeon(R) Processor @ 2.50GHz"
    assert machine.nominal_ghz(info) == 2.5  # the name's nominal clock, not the current cpu MHz
    assert machine.nominal_ghz({"model name": "AMD EPYC", "cpu MHz": "2445.404"}) == pytest.approx(2.445404)
    assert machine.nominal_ghz({}) is None
    flags = machine.isa_flags(info)
    assert list(flags) == list(machine.ISA_FLAGS)
    assert [f for f, on in flags.items() if on] == ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"]
    assert not any(machine.isa_flags({}).values())
    assert machine.cpu_info(str(tmp_path / "absent")) == {}


def test_peak_estimate_against_known_values():
    # 2 cores x 2.5 GHz x (2 FMA units x 16 fp32 lanes x 2) = 320 GFLOP/s (docs/deployment.md's machine).
    peak, why = machine.cpu_peak_gflops(cores=2, ghz=2.5, flags=["avx2", "fma", "avx512f"])
    assert peak == 320.0 and "2 cores x 2.50 GHz" in why and "AVX-512" in why
    assert machine.cpu_peak_gflops(cores=2, ghz=2.5, flags=["avx2", "fma"])[0] == 160.0
    assert machine.cpu_peak_gflops(cores=1, ghz=3.0, flags=["sse2"])[0] == 48.0
    assert machine.cpu_peak_gflops(cores=2, ghz=0, flags=["avx2"]) == (None, "clock unknown")


def test_library_versions(monkeypatch):
    import torch

    versions = machine.library_versions(["torch", "cv2", "dna_depth_core", "no_such_module_xyz"])
    # Imported modules report what runs (torch's carries its build, e.g. +cu130).
    assert versions["torch"] == torch.__version__ and versions["cv2"] == cv2.__version__
    assert versions["dna_depth_core"] == dna_depth_core.__version__ == "0.1.0"
    assert versions["no_such_module_xyz"] is None
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    # A module not imported: the installed distribution that provides it, found without importing it. This
    # project's core is the distribution dna_depth_ros (setup.py), opencv's cv2 is opencv-python.
    monkeypatch.delitem(sys.modules, "dna_depth_core")
    monkeypatch.delitem(sys.modules, "cv2")
    try:
        own = importlib.metadata.version("dna_depth_ros")
    except importlib.metadata.PackageNotFoundError:
        own = None  # run from a source tree without installing it
    assert machine.library_version("dna_depth_core") == own
    assert machine.library_version("cv2").startswith(cv2.__version__)  # opencv-python 4.13.0.92 -> cv2 4.13.0


def test_describe_is_json_and_complete():
    d = machine.describe()
    assert json.loads(json.dumps(d)) == d
    assert {"date", "cpu", "cpu_flags", "usable_cpus", "cpu_count", "cpu_peak_gflops_fp32", "cpu_peak_assumptions",
            "torch_cpu_capability", "loadavg_start", "python", "platform", "versions"} <= set(d)
    assert d["usable_cpus"] == machine.usable_cpus() >= 1 and set(d["cpu_flags"]) == set(machine.ISA_FLAGS)
    assert "gpu" not in d
    out = subprocess.run([sys.executable, "-m", "dna_depth_core.machine"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and json.loads(out.stdout)["cpu"] == d["cpu"]
