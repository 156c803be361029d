"""ONNX export (dna_depth_core.export.onnx_export), the project's ONNX format (dna_depth_core.io.onnx_format) and the
export-onnx command (a small model at 64x96 keeps this quick)."""
import json

import numpy as np
import pytest
import torch

import dna_depth_core
from dna_depth_core.backends import OnnxBackend, TorchBackend
from dna_depth_core.cli import main as cli_main
from dna_depth_core.export import export_onnx, verify_onnx
from dna_depth_core.io.onnx_format import config_from_onnx, export_to_bytes, read_onnx_metadata

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

H, W = 64, 96


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
    out = tmp_path_factory.mktemp("onnx") / "lite0.onnx"
    report = export_onnx(str(checkpoint), out)
    return out, report


def _images(b, h, w, seed=1):
    return np.random.default_rng(seed).random((b, 3, h, w), dtype=np.float32)


def test_static_export_matches_torch_and_describes_itself(static_onnx, net):
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


def test_in_memory_bytes_carry_the_format_and_verify(net):
    """export_to_bytes (what OnnxBackend uses for a checkpoint) is the same format as a file; verify_onnx takes it."""
    data = export_to_bytes(net, dynamic_batch=True, provenance={"checkpoint": "x.safetensors"})
    meta = read_onnx_metadata(data)
    assert meta["dynamic"] == "batch" and meta["outputs"] == "disparity" and meta["input_size"] == f"{H}x{W}"
    assert json.loads(meta["provenance"]) == {"checkpoint": "x.safetensors"}
    assert json.loads(meta["exporter"])["opset"] == 17 and config_from_onnx(data) == net.config
    checked = verify_onnx(data, net, [(1, H, W), (3, H, W)])
    assert list(checked) == [f"1x{H}x{W}", f"3x{H}x{W}"] and max(checked.values()) < 1e-4
    with pytest.raises(ValueError, match="opset: 16 is too old"):
        export_to_bytes(net, opset=16)
    with pytest.raises(ValueError, match="width: 100 is not a positive multiple of 32"):
        export_to_bytes(net, width=100)


def test_export_command(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert cli_main(["export-onnx", "--weights", str(checkpoint), "--out", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["max_abs_diff"] < 1e-4 and r["path"] == str(out) and out.is_file()
    assert cli_main(["export-onnx", "--weights", str(tmp_path / "absent.safetensors"), "--out", str(out)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert cli_main(["export-onnx", "--weights", str(checkpoint), "--out", str(out), "--height", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err


def test_onnx_export_reproduces_the_authors_reference(tmp_path):
    """The converted official-format checkpoint (seeded random weights, the authors' classes) exported to ONNX gives
    the authors' scale-0 disparity of expected.npz (their input, 192x640)."""
    from conftest import require_shared
    from dna_depth_core.io.official import load_official_depth

    ref_dir = require_shared("reference/official_b0")
    net = load_official_depth(str(ref_dir), "dna_b0")
    report = export_onnx(net, tmp_path / "official_b0.onnx")
    assert report.max_abs_diff < 1e-4
    expected = np.load(ref_dir / "expected.npz")
    got = OnnxBackend(str(tmp_path / "official_b0.onnx"), providers=["CPUExecutionProvider"])(expected["input"])
    assert np.abs(got - expected["disp0"]).max() < 1e-4
