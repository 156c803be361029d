"""The exact ONNX graph clean-ups (dna_depth_core.io.onnx_cleanup): each rewrite on a tiny graph against the
original, and the cleaned exports of the real networks against torch within 1e-4."""
import json

import numpy as np
import pytest
import torch

import dna_depth_core
from dna_depth_core.io.onnx_cleanup import cleanup, drop_empty_optional_inputs, fold_zero_pads, reduce_mean_to_gap
from dna_depth_core.io.onnx_format import export_to_bytes, read_onnx_metadata

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

H, W = 64, 96


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One intra-op torch thread (conftest.one_torch_thread) for every test here."""


def _run(model, x, optimise=False):
    so = ort.SessionOptions()
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def _model(nodes, inits, out_shape, in_shape=(1, 4, 8, 10)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_zero_pads_fold_into_the_convolution_exactly():
    """An asymmetric zero pad (bottom 1, right 1: TF-"same" before a stride-2 conv) with an empty value input, as
    torch exports F.pad without a value, becomes the Conv's pads [0, 0, 1, 1]; same output."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    pads = numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads")
    nodes = [helper.make_node("Pad", ["x", "pads", ""], ["p"], mode="constant", name="pad"),
             helper.make_node("Conv", ["p", "w"], ["y"], group=4, strides=[2, 2], pads=[1, 0, 0, 0], name="conv")]
    m = _model(nodes, [w, pads], (1, 4, 4, 5))  # 8x10 -> pads 10x11 -> 3x3 stride 2: 4x5
    x = rng.standard_normal((1, 4, 8, 10)).astype(np.float32)
    ref = _run(m, x)
    assert drop_empty_optional_inputs(m) == 1 and list(m.graph.node[0].input) == ["x", "pads"]
    assert fold_zero_pads(m) == ["pad"] and [n.op_type for n in m.graph.node] == ["Conv"]
    conv_pads = next(a for a in m.graph.node[0].attribute if a.name == "pads").ints
    assert list(conv_pads) == [1, 0, 1, 1]  # the conv's own top pad + the pad's bottom/right
    onnx.checker.check_model(m)
    got = _run(m, x)
    assert got.shape == ref.shape == (1, 4, 4, 5) and np.abs(got - ref).max() < 1e-6


@pytest.mark.parametrize("case", ["value 1", "reflect", "two consumers", "batch pad"])
def test_pads_that_are_not_exact_to_fold_stay(case):
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")
    p = [0, 0, 1, 1, 0, 0, 1, 1] if case != "batch pad" else [1, 0, 1, 1, 0, 0, 1, 1]
    pads = numpy_helper.from_array(np.array(p, np.int64), "pads")
    value = numpy_helper.from_array(np.array(1.0 if case == "value 1" else 0.0, np.float32), "v")
    mode = "reflect" if case == "reflect" else "constant"
    nodes = [helper.make_node("Pad", ["x", "pads", "v"], ["p"], mode=mode, name="pad"),
             helper.make_node("Conv", ["p", "w"], ["c"], group=4, name="conv")]
    if case == "two consumers":
        nodes.append(helper.make_node("ReduceMean", ["p"], ["m"], keepdims=1, axes=[1, 2, 3]))
        nodes.append(helper.make_node("Add", ["c", "m"], ["y"]))
    else:
        nodes[-1].output[0] = "y"
    m = _model(nodes, [w, pads, value], (2 if case == "batch pad" else 1, 4, 8, 10))
    assert fold_zero_pads(m) == [] and "Pad" in [n.op_type for n in m.graph.node]


@pytest.mark.parametrize("keepdims", [1, 0])
def test_spatial_means_become_global_average_pools(keepdims):
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1, 2], keepdims=keepdims, name="mean"),
             helper.make_node("ReduceMean", ["x"], ["z"], axes=[1, 2, 3], keepdims=1, name="other")]
    m = _model(nodes, [], (1, 4, 1, 1) if keepdims else (1, 4))
    m.graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1, 1, 1]))
    x = rng.standard_normal((1, 4, 8, 10)).astype(np.float32)
    ref = _run(m, x)
    assert reduce_mean_to_gap(m) == ["mean"]
    ops = [n.op_type for n in m.graph.node]
    assert ops == (["GlobalAveragePool", "ReduceMean"] if keepdims else ["GlobalAveragePool", "Flatten", "ReduceMean"])
    onnx.checker.check_model(m)
    got = _run(m, x)
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-6


@pytest.mark.parametrize("model, pads, means", [("dna_b0", 6, 17), ("dna_lite0", 6, 1), ("monodepth2_r18", 0, 0)])
def test_cleaned_exports_equal_torch(model, pads, means):
    """The clean-ups on the real networks: the DNA decoder's six stride-2 zero pads fold, the squeeze-excitation
    means (17 in EfficientNet-B0, none in Lite0) and the Lite0 decoder's channel-attention mean become
    GlobalAveragePool; the cleaned graph equals torch within 1e-4 (the export bar); only reflection pads remain."""
    torch.manual_seed(0)
    net = dna_depth_core.build_model(model, height=H, width=W).eval()
    raw = export_to_bytes(net, cleanup=False)
    data = export_to_bytes(net)
    record = json.loads(read_onnx_metadata(data)["graph_cleanup"])
    assert (record["pads_folded"], record["means_to_gap"], record["basic_optimised"]) == (pads, means, True)
    assert {k: v for k, v in read_onnx_metadata(data).items() if k != "graph_cleanup"} == read_onnx_metadata(raw)
    m = onnx.load_from_string(data)
    ops = [n.op_type for n in m.graph.node]
    assert "ReduceMean" not in ops and ops.count("GlobalAveragePool") >= means
    remaining = [n for n in m.graph.node if n.op_type == "Pad"]
    assert all(next(a.s for a in n.attribute if a.name == "mode") == b"reflect" for n in remaining)
    x = np.random.default_rng(3).random((2, 3, H, W), dtype=np.float32)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x))[0].numpy()
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = np.concatenate([s.run(None, {"image": x[i:i + 1]})[0] for i in range(2)])
    assert np.abs(got - ref).max() < 1e-4


def test_cleanup_report_and_what_onnxruntime_runs(tmp_path):
    """In the graph onnxruntime finally runs (all optimisations), the folded decoder pads are gone: dna_b0 keeps
    only its reflection pads."""
    torch.manual_seed(0)
    net = dna_depth_core.build_model("dna_b0", height=H, width=W).eval()
    counts = {}
    for name, data in (("raw", export_to_bytes(net, cleanup=False)), ("clean", export_to_bytes(net))):
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"{name}.onnx")
        so.intra_op_num_threads = 1
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        counts[name] = [n.op_type for n in onnx.load(str(tmp_path / f"{name}.onnx")).graph.node]
    reflect = sum(1 for n in onnx.load_from_string(export_to_bytes(net)).graph.node if n.op_type == "Pad")
    assert counts["clean"].count("Pad") == reflect == counts["raw"].count("Pad") - 6
    assert counts["clean"].count("ReduceMean") == 0 < counts["raw"].count("ReduceMean")
    data, report = cleanup(export_to_bytes(net, cleanup=False))
    assert len(report["pads_folded"]) == 6 and report["ops_after"]["GlobalAveragePool"] == 17
    assert report["ops_before"]["Pad"] == 22 and report["ops_after"]["Pad"] == reflect
