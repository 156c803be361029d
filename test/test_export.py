"""ONNX export, the torch/onnxruntime backends and the bench command (a small model at 64x96 keeps this quick)."""
import argparse
import json

import numpy as np
import pytest
import torch

import dna_depth_core
import dna_depth_core.profiling
from dna_depth_core.backends import OnnxBackend, TorchBackend, onnxruntime_backend_factory, torch_backend_factory

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

H, W = 64, 96


def _run_command(module_name: str, argv: list[str]) -> int:
    """Run a command module the way dna_depth_core.cli does (works before it is listed in COMMAND_MODULES)."""
    import importlib

    from dna_depth_core import cli

    if module_name in cli.COMMAND_MODULES:
        return cli.main([importlib.import_module(f"dna_depth_core.commands.{module_name}").NAME, *argv])
    mod = importlib.import_module(f"dna_depth_core.commands.{module_name}")
    parser = argparse.ArgumentParser()
    mod.add_arguments(parser)
    try:
        return int(mod.run(parser.parse_args(argv)) or 0)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        import sys

        print(f"dna-depth {mod.NAME}: error: {exc}", file=sys.stderr)
        return 2


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return dna_depth_core.build_model("dna_lite0", height=H, width=W).eval()


@pytest.fixture(scope="module")
def checkpoint(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "lite0.safetensors"
    dna_depth_core.save_checkpoint(net, str(path), provenance={"source": "test"})
    return path


@pytest.fixture(scope="module")
def static_onnx(checkpoint, tmp_path_factory):
    from dna_depth_core.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "lite0.onnx"
    report = export_onnx(str(checkpoint), out)
    return out, report


def _images(b, h, w, seed=1):
    return np.random.default_rng(seed).random((b, 3, h, w), dtype=np.float32)


def test_static_export_matches_torch_and_describes_itself(static_onnx, net):
    from dna_depth_core.export import config_from_onnx, read_onnx_metadata

    path, report = static_onnx
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
    assert (report.height, report.width, report.dynamic, report.outputs) == (H, W, False, ("disparity",))
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["disparity"]
    meta = read_onnx_metadata(path)
    assert meta["format"] == "dna-depth-onnx/1" and meta["input_size"] == f"{H}x{W}" and meta["dynamic"] == "false"
    assert json.loads(meta["provenance"])["provenance"] == {"source": "test"}
    assert config_from_onnx(path) == net.config

    # The backend: same numbers as torch on a new input, the config comes from the file.
    backend = OnnxBackend(str(path), providers=["CPUExecutionProvider"])
    assert (backend.height, backend.width, backend.config, backend.dynamic) == (H, W, net.config, False)
    assert backend.device.type == "cpu" and backend.name == "onnxruntime" and backend.fp16 is False
    x = _images(3, H, W)  # batch 3 on a batch-1 graph: run image by image
    ref = TorchBackend(net)(x)
    got = backend(x)
    assert got.shape == (3, 1, H, W) and got.dtype == np.float32
    assert np.abs(got - ref).max() < 1e-4
    assert backend.supports_size(H, W) and not backend.supports_size(96, 128)
    with pytest.raises(ValueError, match=r"exported for 64x96 \(static\).*--dynamic"):
        backend(_images(1, 96, 128))


def test_dynamic_export_runs_at_two_sizes_with_all_scales(net, tmp_path):
    from dna_depth_core.export import export_onnx

    report = export_onnx(net, tmp_path / "dyn.onnx", dynamic=True, all_scales=True)
    assert report.dynamic and len(report.checked) == 2 and report.max_abs_diff < 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "dyn.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["disparity", "disparity_1", "disparity_2", "disparity_3"]
    backend = OnnxBackend(str(tmp_path / "dyn.onnx"), providers=["CPUExecutionProvider"])
    assert backend.dynamic and (backend.height, backend.width) == (H, W)
    assert backend.supports_size(128, 160) and not backend.supports_size(100, 160)
    for b, h, w in [(1, 64, 96), (2, 128, 160)]:
        x = _images(b, h, w)
        with torch.inference_mode():
            ref = [d.numpy() for d in net(torch.from_numpy(x))]
        outs = sess.run(None, {"image": x})
        assert [o.shape for o in outs] == [r.shape for r in ref]
        for o, r in zip(outs, ref):
            assert np.abs(o - r).max() < 1e-4
        assert np.abs(backend(x) - ref[0]).max() < 1e-4


def test_backend_from_a_checkpoint_exports_in_memory_per_size(checkpoint, net):
    backend = OnnxBackend(str(checkpoint), providers=["CPUExecutionProvider"], height=96, width=128)
    assert backend.config == net.config and (backend.height, backend.width) == (96, 128)
    x = _images(2, 96, 128)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x))[0].numpy()
    assert np.abs(backend(x) - ref).max() < 1e-4


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"\x08\x07garbage\xff\xfe" * 50, "corrupt or truncated")])
def test_corrupt_onnx_files_name_the_problem(tmp_path, content, match):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=match):
        OnnxBackend(str(bad))


def test_missing_truncated_and_foreign_onnx(tmp_path, static_onnx):
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        OnnxBackend(str(tmp_path / "absent.onnx"))
    path, _ = static_onnx
    data = path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"ONNX model .*cut\.onnx"):
        OnnxBackend(str(cut))
    # A valid ONNX file that is not a dna-depth export.
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(g), str(foreign))
    with pytest.raises(ValueError, match="not a dna-depth export"):
        OnnxBackend(str(foreign))


def test_backends_reject_bad_inputs(static_onnx, net):
    backend = OnnxBackend(str(static_onnx[0]), providers=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="multiples of 32"):
        backend(np.zeros((1, 3, 60, 96), np.float32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        backend(np.zeros((3, H, W), np.float32))
    with pytest.raises(ValueError, match="float"):
        backend(np.zeros((1, 3, H, W), np.uint8))
    with pytest.raises(ValueError, match="float16 is for CUDA"):
        TorchBackend(net, dtype="fp16")
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device"):
        TorchBackend(net, cuda_graph=True)


def test_torch_backend_variants_and_factories(net, checkpoint, static_onnx):
    x = _images(1, H, W)
    ref = TorchBackend(net)(x)
    assert ref.shape == (1, 1, H, W)
    cl = TorchBackend(net, channels_last=True)
    assert np.abs(cl(x) - ref).max() < 1e-4
    bf16 = TorchBackend(net, dtype=torch.bfloat16)
    assert bf16.autocast and np.abs(bf16(x) - ref).max() < 3e-2  # bfloat16 keeps ~3 significant digits
    tb = torch_backend_factory(str(checkpoint), device="cpu")
    assert (tb.name, tb.height, tb.width, tb.fp16) == ("torch", H, W, False)
    assert np.abs(tb(x) - ref).max() < 1e-4
    ob = onnxruntime_backend_factory(str(static_onnx[0]), device="cpu")
    assert ob.config == net.config and np.abs(ob(x) - ref).max() < 1e-4
    from dna_depth_core.backends import FACTORIES, recommended_backend

    assert recommended_backend("cpu") == "onnxruntime"
    auto = FACTORIES["auto"](str(static_onnx[0]), device="cpu")
    assert auto.name == "onnxruntime" and np.abs(auto(x) - ref).max() < 1e-4


def test_export_command(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert _run_command("export_onnx", ["--weights", str(checkpoint), "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["max_abs_diff"] < 1e-4 and r["path"] == str(out) and out.is_file()
    assert _run_command("export_onnx", ["--weights", str(tmp_path / "absent.safetensors"), "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert _run_command("export_onnx", ["--weights", str(checkpoint), "--out", str(out), "--height", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


def test_bench_json_returns_the_keys(capsys):
    from dna_depth_core.benchmark import RESULT_KEYS

    argv = ["--models", "dna_lite0", "--backends", "torch,onnxruntime", "--height", str(H), "--width", str(W),
            "--warmup", "1", "--iters", "2", "--threads", "1", "--json"]
    assert _run_command("bench", argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"machine", "settings", "results"}
    assert {"date", "cpu", "versions", "cpu_peak_gflops_fp32", "loadavg_start"} <= set(report["machine"])
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


def test_backend_spec_parsing():
    from dna_depth_core.benchmark import BackendSpec, bench

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


def test_onnx_export_reproduces_the_authors_reference(tmp_path):
    """The converted official-format checkpoint (seeded random weights, the authors' classes) exported to ONNX gives
    the authors' scale-0 disparity of expected.npz (their input, 192x640)."""
    from conftest import require_shared
    from dna_depth_core.export import export_onnx
    from dna_depth_core.official import load_official_depth

    ref_dir = require_shared("reference/official_b0")
    net = load_official_depth(str(ref_dir), "dna_b0")
    report = export_onnx(net, tmp_path / "official_b0.onnx")
    assert report.max_abs_diff < 1e-4
    expected = np.load(ref_dir / "expected.npz")
    got = OnnxBackend(str(tmp_path / "official_b0.onnx"), providers=["CPUExecutionProvider"])(expected["input"])
    assert np.abs(got - expected["disp0"]).max() < 1e-4
