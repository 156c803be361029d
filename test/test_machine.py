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


def test_isa_classes_from_known_flag_lists():
    """The ISA facts the backends decide on, for the CPU classes of docs/deployment.md."""
    cases = {
        "fpu sse avx avx2 fma f16c": ("avx2", False, False, False),                        # AMD Zen 3, Haswell..
        "avx2 fma avx_vnni": ("avx_vnni", True, False, False),                              # Alder Lake P-cores
        "avx2 fma avx512f avx512bw avx512vl": ("avx512", False, False, False),             # Skylake-SP
        "avx2 fma avx512f avx512bw avx512vl avx512_vnni": ("avx512_vnni", True, False, False),  # Cascade Lake
        "avx2 fma avx512f avx512bw avx512_vnni avx512_bf16": ("avx512_bf16", True, True, False),  # Zen 4
        "avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8": ("amx", True, True, True),
        "sse sse2": ("baseline", False, False, False),
    }
    for flags, (name, vnni, bf16, amx) in cases.items():
        isa = machine.isa_from_flags(flags, "cpu")
        assert (isa.name, isa.vnni, isa.native_bf16, isa.amx) == (name, vnni, bf16, amx), flags
        assert machine.isa_for_class(name).name == name
    assert machine.isa_from_flags("avx2 fma amx_int8 amx_tile").vnni  # AMX int8 accumulates in int32 too
    with pytest.raises(ValueError, match="ISA class 'avx9' unknown"):
        machine.isa_for_class("avx9")
    # bf16 needs the flags, and OpenVINO's plugin must agree when it is consulted.
    bf16 = machine.isa_from_flags("avx2 fma avx512f avx512_bf16", "Zen 4")
    assert machine.native_bf16(bf16, ["FP32", "INT8", "BF16"]) == (True, "native bf16 (avx512_bf16)")
    ok, why = machine.native_bf16(bf16, ["FP32", "INT8"])
    assert not ok and "does not offer it" in why
    ok, why = machine.native_bf16(machine.isa_from_flags("avx2 fma", "AMD EPYC"), [])
    assert not ok and why.startswith("AMD EPYC has no avx512_bf16 and no amx_bf16")


def test_this_cpu_is_described_with_its_isa_class(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(XEON)
    isa = machine.cpu_isa(machine.cpu_info(str(path)))
    assert isa.model == "Intel(R) Xeon(R) Processor @ 2.50GHz" and isa.name == "avx512_vnni" and isa.vnni
    d = machine.describe()
    here = machine.cpu_isa()
    assert (d["isa_class"], d["vnni"], d["native_bf16"]) == (here.name, here.vnni, here.native_bf16)
    assert d["isa_class"] in machine.ISA_CLASSES and isinstance(d["openvino_capabilities"], list)
    assert {"openvino", "nncf"} <= set(d["versions"])
    if machine.library_version("openvino") is not None:
        assert "FP32" in d["openvino_capabilities"]
