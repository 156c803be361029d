"""The inference backends (torch, onnxruntime) and the one backend registry (a small model at 64x96)."""
import platform

import numpy as np
import pytest
import torch

import dna_depth_core
from dna_depth_core import backends, inference
from dna_depth_core.backends import (
    OnnxBackend,
    TorchBackend,
    create_backend,
    list_backends,
    onnxruntime_backend_factory,
    recommended_backend,
    register_backend,
    torch_backend_factory,
)
from dna_depth_core import machine
from dna_depth_core.backends import select_backend

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
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from dna_depth_core.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "lite0.onnx"
    return out, export_onnx(str(checkpoint), out)


def _images(b, h, w, seed=1):
    return np.random.default_rng(seed).random((b, 3, h, w), dtype=np.float32)


def test_backend_from_a_checkpoint_exports_in_memory_per_size(checkpoint, net):
    pytest.importorskip("onnxruntime")
    backend = OnnxBackend(str(checkpoint), providers=["CPUExecutionProvider"], height=96, width=128)
    assert backend.config == net.config and (backend.height, backend.width) == (96, 128)
    x = _images(2, 96, 128)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x))[0].numpy()
    assert np.abs(backend(x) - ref).max() < 1e-4


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"\x08\x07garbage\xff\xfe" * 50, "corrupt or truncated")])
def test_corrupt_onnx_files_name_the_problem(tmp_path, content, match):
    pytest.importorskip("onnxruntime")
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
    import onnx
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
    assert recommended_backend("cpu", isa=machine.isa_for_class("avx512_vnni")) == "onnxruntime"
    auto = create_backend("auto", str(static_onnx[0]), device="cpu")
    assert auto.name == recommended_backend("cpu", str(static_onnx[0])) and np.abs(auto(x) - ref).max() < 1e-4
    assert auto.reason.startswith(f"backend auto: {auto.name} fp32 (fp32 on {machine.cpu_isa().name}")


def test_the_registry_is_one_and_builds_by_name(checkpoint, static_onnx):
    assert list_backends() == ["auto", "onnxruntime", "openvino", "torch"]
    assert not hasattr(inference, "BACKENDS")  # DepthEstimator keeps no registry of its own: it calls create_backend
    t = create_backend("torch", str(checkpoint), device="cpu")
    assert isinstance(t, TorchBackend) and t.channels_last  # the factory's CPU default
    assert isinstance(create_backend("onnxruntime", str(checkpoint), device="cpu"), OnnxBackend)
    # auto on the CPU: the runtime of the selection rule for this CPU's ISA class (test_auto_choice).
    expected = {"onnxruntime": OnnxBackend, "openvino": backends.OpenVinoBackend, "torch": TorchBackend}
    assert isinstance(create_backend("auto", str(checkpoint), device="cpu"),
                      expected[recommended_backend("cpu", str(checkpoint))])
    assert isinstance(t, backends.Backend)  # the interface, checked structurally
    with pytest.raises(ValueError, match="backend 'tensorrt' unknown; available: auto, onnxruntime, openvino, torch"):
        create_backend("tensorrt", str(checkpoint))
    with pytest.raises(ValueError, match="no checkpoint path given"):
        create_backend("onnxruntime", None, device="cpu")


def test_registering_a_backend(checkpoint):
    seen = {}

    def factory(checkpoint, device="auto", fp16=False):
        seen.update(checkpoint=checkpoint, device=device, fp16=fp16)
        return "built"

    register_backend("mine", factory)
    try:
        assert "mine" in list_backends() and list_backends()[0] == "auto"
        assert create_backend("mine", "w.onnx", device="cpu", fp16=True) == "built"
        assert seen == {"checkpoint": "w.onnx", "device": "cpu", "fp16": True}
        # DepthEstimator builds it by name through the same registry.
        seen.clear()
        with pytest.raises(AttributeError):  # "built" is not a backend: the estimator reads its config
            inference.DepthEstimator("other.onnx", backend="mine", device="cpu")
        assert seen == {"checkpoint": "other.onnx", "device": "cpu", "fp16": False}
    finally:
        backends.BACKENDS.pop("mine", None)
    for name, fac, match in [("", factory, "non-empty string"), (" x", factory, "surrounding spaces"),
                             ("auto", factory, "automatic choice"), ("x", 42, "must be callable")]:
        with pytest.raises(ValueError, match=match):
            register_backend(name, fac)
    assert list_backends() == ["auto", "onnxruntime", "openvino", "torch"]


def test_auto_choice(static_onnx):
    """The auto rule per ISA class and installed runtimes (docs/deployment.md): fp32 on OpenVINO without AVX-512
    (measured faster there), on onnxruntime with AVX-512; torch when neither runtime is installed."""
    path = static_onnx[0]
    both, ort_only, none = ({"onnxruntime": True, "openvino": True}, {"onnxruntime": True, "openvino": False},
                            {"onnxruntime": False, "openvino": False})
    avx2, avx512 = machine.isa_for_class("avx2"), machine.isa_for_class("avx512_vnni")
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    for source in (None, str(path), path.read_bytes(), "model.safetensors"):
        assert recommended_backend("cpu", source, isa=avx512, have=both) == "onnxruntime"
        assert recommended_backend("cpu", source, isa=avx2, have=both) == ("openvino" if x86 else "onnxruntime")
        assert recommended_backend("cpu", source, isa=avx2, have=ort_only) == "onnxruntime"
    assert recommended_backend("cpu", isa=avx2, have=none) == "torch"
    assert recommended_backend("cpu", "model.safetensors", isa=avx512, have=none) == "torch"
    assert recommended_backend("cpu", "model.onnx", isa=avx2, have=none) == "onnxruntime"  # names what is missing
    choice = select_backend("cpu", str(path), isa=avx2, have=ort_only)
    assert (choice.backend, choice.precision) == ("onnxruntime", "fp32")
    assert "avx2" in choice.reason and "no avx512_bf16 and no amx_bf16" in choice.reason
    if torch.cuda.is_available():
        assert recommended_backend("cuda") == "torch"
