"""The bench harness, its worker process and its report (dna_depth_core.benchmark), and the bench command."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import dna_depth_core
import dna_depth_core.profiling
from dna_depth_core.benchmark import (
    RESULT_KEYS,
    BackendSpec,
    bench,
    format_table,
    synthetic_calibration_frames,
    write_report,
)
from dna_depth_core.benchmark.tasks import RESULT_MARKER, parse_result
from dna_depth_core.cli import main as cli_main

H, W = 64, 96
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


def test_bench_json_returns_the_keys(capsys, tmp_path):
    pytest.importorskip("onnxruntime")
    argv = ["--models", "dna_lite0", "--backends", "torch,onnxruntime", "--height", str(H), "--width", str(W),
            "--warmup", "1", "--iters", "2", "--threads", "1", "--json", "--markdown", str(tmp_path / "r.md")]
    assert cli_main(["bench", *argv]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"machine", "settings", "results"}
    assert {"date", "cpu", "versions", "cpu_peak_gflops_fp32", "loadavg_start", "loadavg_end",
            "cpu_flags"} <= set(report["machine"])
    assert report["machine"]["versions"]["dna_depth_core"] == dna_depth_core.__version__
    assert report["settings"]["isolate"] is True and report["settings"]["threads"] == 1
    rows = report["results"]
    assert [(r["model"], r["backend"]) for r in rows] == [("dna_lite0", "torch"), ("dna_lite0", "onnxruntime")]
    n_params = dna_depth_core.profiling.count_parameters(dna_depth_core.build_model("dna_lite0"))
    for r in rows:
        assert set(RESULT_KEYS) <= set(r)
        assert r["error"] is None, r
        assert r["params"] == n_params and r["macs"] > 0
        assert r["latency_ms_median"] > 0 and r["fps"] > 0 and r["gflops_per_s"] > 0
        # One fresh process per measurement: the growth of its resident high-water mark (weights alone ~14 MB).
        assert r["peak_mem_mb"] is not None and r["peak_mem_mb"] > 1
    assert rows[0]["max_abs_diff"] == 0.0 and rows[1]["max_abs_diff"] < 1e-4
    md = (tmp_path / "r.md").read_text()
    assert md.startswith(f"## dna-depth bench {W}x{H}") and "| dna_lite0 | onnxruntime |" in md


def test_backend_spec_parsing():
    assert BackendSpec.parse("torch+bf16+cl").name == "torch+cl+bf16"
    assert BackendSpec.parse("ort").name == "onnxruntime"
    with pytest.raises(ValueError, match="unknown option"):
        BackendSpec.parse("torch+turbo")
    with pytest.raises(ValueError, match="backend 'tensorrt' unknown"):
        BackendSpec.parse("tensorrt")
    with pytest.raises(ValueError, match="needs CUDA"):
        bench(["dna_lite0"], ["torch+fp16"], height=H, width=W, device="cpu")
    with pytest.raises(ValueError, match="multiples of 32"):
        bench(["dna_lite0"], ["torch"], height=100, width=W)


def test_int8_benchmark_variant():
    assert BackendSpec.parse("onnxruntime+int8").name == "onnxruntime+int8"
    assert BackendSpec.parse("ort+INT8").dtype == "int8" and BackendSpec.parse("onnxruntime").dtype == "fp32"
    with pytest.raises(ValueError, match="unknown onnxruntime option"):
        BackendSpec.parse("onnxruntime+fp16")
    # OpenVINO, the graph clean-ups' baseline (raw), 7-bit onnxruntime int8 and auto.
    assert BackendSpec.parse("ov+int8").name == "openvino+int8" and BackendSpec.parse("openvino+bf16").dtype == "bf16"
    assert BackendSpec.parse("ort+rr+int8").name == "onnxruntime+int8+rr"
    assert BackendSpec.parse("openvino+raw").raw and BackendSpec.parse("auto").kind == "auto"
    for bad, msg in [("openvino+cl", "unknown openvino option"), ("onnxruntime+raw+int8", "raw .* fp32 variant"),
                     ("onnxruntime+rr", "rr .* int8 option"), ("auto+int8", "auto takes no options")]:
        with pytest.raises(ValueError, match=msg):
            BackendSpec.parse(bad)

    frames = synthetic_calibration_frames(64, 32, 2)
    assert len(frames) == 2 and frames[0].shape == (32, 64, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])


def _worker(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "dna_depth_core.benchmark.worker", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_worker_process_reports_errors_and_rejects_bad_arguments():
    """The worker is its own module: one JSON result after the marker, a failed task reported (status 0), bad
    arguments refused (status 2)."""
    proc = _worker(json.dumps({"model": "dna_lite0", "backend": "torch+turbo", "height": H, "width": W}))
    assert proc.returncode == 0, proc.stderr
    assert parse_result(proc.stdout) == {"model": "dna_lite0", "backend": "torch+turbo",
                                         "error": "ValueError: backend 'torch+turbo': unknown option(s) ['turbo']; "
                                                  "options: cl, bf16, fp16, compile, graph"}
    for args, msg in [((), "usage"), (("{not json",), "not JSON"), (("[1]",), "must be a JSON object")]:
        proc = _worker(*args)
        assert proc.returncode == 2 and msg in proc.stderr and RESULT_MARKER not in proc.stdout


def test_parse_result_takes_the_last_marker():
    out = f"library noise\n{RESULT_MARKER}{{\"a\": 1}}\nmore\n{RESULT_MARKER}{{\"b\": 2}}\n"
    assert parse_result(out) == {"b": 2}
    assert parse_result("no marker here") is None


def test_report_table_and_files(tmp_path):
    report = {"machine": {}, "settings": {"device": "cuda"},
              "results": [{"model": "m", "backend": "torch", "params": 2_000_000, "macs": 3_000_000_000,
                           "latency_ms_median": 12.345, "latency_ms_p90": 13.0, "latency_ms_min": 11.0,
                           "fps": 81.0, "gflops_per_s": 486.0, "peak_mem_mb": 100.0, "max_abs_diff": 0.0,
                           "error": None}]}
    table = format_table(report).splitlines()
    assert table[0].split()[:5] == ["model", "backend", "precision", "params", "(M)"]
    assert table[2].split() == ["m", "torch", "-", "2.000", "3.00", "12.3", "13.0", "11.0", "81.00", "486.0", "100",
                                "0.0e+00"]
    write_report(report, json_path=str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == report
