"""Exact clean-ups of an exported ONNX graph for the CPU runtimes (applied by ``export_to_bytes(cleanup=True)``).

Every rewrite computes the same function (in real arithmetic; only the summation order of a mean may change), and
``export_onnx`` checks the cleaned graph against torch within 1e-4 like any export:

1. **onnxruntime's basic optimisations** first (:func:`basic_optimised`): constant folding turns the shape
   arithmetic of the TF-"same" pads into constants, Conv+BatchNorm/Add/Mul are fused, onnxruntime's own
   ``PadFusion`` folds the encoder's zero pads. The result holds only standard ONNX operators, so it loads in any
   runtime (onnxruntime, OpenVINO) and can be quantised.
2. :func:`drop_empty_optional_inputs`: trailing empty optional inputs removed (``Pad(x, pads, '')`` ->
   ``Pad(x, pads)``). torch exports ``F.pad(x, pads)`` without a value that way, and fusions that require "the
   optional input is a constant" then apply.
3. :func:`fold_zero_pads`: a constant-zero ``Pad`` whose only consumer is a ``Conv`` becomes part of the Conv's
   ``pads`` (ONNX Conv pads are ``[top, left, bottom, right]``, so asymmetric pads fold exactly). These are the
   DNA decoder's six stride-2 TF-"same" pads, which onnxruntime's PadFusion skips (their value input is the empty
   name): each cost a Pad and a layout reorder pair around it in onnxruntime's blocked (NCHWc) graph.
4. :func:`reduce_mean_to_gap`: ``ReduceMean`` over the two spatial axes of a 4-D tensor -> ``GlobalAveragePool``
   (+ ``Flatten`` for ``keepdims=0``). onnxruntime's NCHWc transformer has a blocked GlobalAveragePool but no
   blocked ReduceMean: the 17 squeeze-excitation means of the EfficientNet-B0 encoder no longer force reorders,
   and an int8 graph gets QLinearGlobalAveragePool instead of a dequantise/quantise pair around each mean.

Not done, because not exact: the reflection pads before the decoder's dense 3x3 convolutions (a Conv pads with
zeros). Activations need no ONNX-level fusion: onnxruntime fuses Swish (x * sigmoid(x)) itself and OpenVINO fuses
it in its own graph; channels-last is a runtime layout (onnxruntime NCHWc, OpenVINO blocked formats), not a graph
property. Measured gains per runtime: docs/deployment.md ("Graph clean-ups").

``onnx`` is needed; ``onnxruntime`` (step 1) is optional: without it the graph is returned unchanged, because the
pads are only constants after constant folding.
"""
from __future__ import annotations

import collections
import os
import tempfile
from typing import Any

import numpy as np


def _attrs(node) -> dict[str, Any]:
    import onnx  # optional dependency: onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _set_ints(node, name: str, values) -> None:
    import onnx  # optional dependency: onnx

    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    node.attribute.append(onnx.helper.make_attribute(name, [int(v) for v in values]))


def _constant(graph, name: str) -> np.ndarray | None:
    """The value of ``name`` when it is an initializer or a Constant node's output, else None."""
    from onnx import numpy_helper  # optional dependency: onnx

    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name and "value" in _attrs(node):
            return numpy_helper.to_array(_attrs(node)["value"])
    return None


def drop_empty_optional_inputs(model) -> int:
    """Remove trailing empty (``''``) inputs of every node of ``model`` (an ``onnx.ModelProto``, in place);
    returns how many were removed."""
    removed = 0
    for node in model.graph.node:
        while len(node.input) and node.input[-1] == "":
            node.input.pop()
            removed += 1
    return removed


def fold_zero_pads(model) -> list[str]:
    """Fold each constant-zero ``Pad`` of a 4-D tensor whose only consumer is a ``Conv`` (explicit pads,
    ``auto_pad`` NOTSET) into that Conv's ``pads``, in place; returns the names of the folded Pads.

    A Pad's ``pads`` are ``[n0, c0, top, left, n1, c1, bottom, right]``; only spatial, non-negative pads with a
    zero (or absent) constant value fold. The Conv's pads become ``[top + t, left + l, bottom + b, right + r]``.
    """
    g = model.graph
    consumers: dict[str, list] = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            if i:
                consumers[i].append(n)
    outputs = {o.name for o in g.output}
    folded, remove = [], []
    for pad in g.node:
        if pad.op_type != "Pad" or pad.output[0] in outputs:
            continue
        a = _attrs(pad)
        if _text(a.get("mode", b"constant")) != "constant" or (len(pad.input) > 3 and pad.input[3]):
            continue  # reflect/edge pads, or an axes input
        pads = _constant(g, pad.input[1]) if len(pad.input) > 1 and pad.input[1] else np.asarray(a.get("pads", []))
        if pads is None or np.size(pads) != 8:
            continue
        if len(pad.input) > 2 and pad.input[2]:
            value = _constant(g, pad.input[2])
            if value is None or np.any(value != 0):
                continue
        elif float(a.get("value", 0.0)) != 0.0:
            continue
        p = [int(v) for v in np.ravel(pads)]
        if p[0] or p[1] or p[4] or p[5] or min(p) < 0:
            continue
        users = consumers.get(pad.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv" or users[0].input[0] != pad.output[0]:
            continue
        conv = users[0]
        ca = _attrs(conv)
        if _text(ca.get("auto_pad", b"NOTSET")) not in ("NOTSET", ""):
            continue
        cp = [int(v) for v in ca.get("pads", [0, 0, 0, 0])]
        if len(cp) != 4:
            continue
        _set_ints(conv, "pads", [cp[0] + p[2], cp[1] + p[3], cp[2] + p[6], cp[3] + p[7]])
        conv.input[0] = pad.input[0]
        remove.append(pad)
        folded.append(pad.name)
    for n in remove:
        g.node.remove(n)
    return folded


def reduce_mean_to_gap(model) -> list[str]:
    """Replace each ``ReduceMean`` over axes {2, 3} (or {-2, -1}) of a 4-D tensor by ``GlobalAveragePool``
    (``keepdims=1``) or ``GlobalAveragePool`` + ``Flatten`` (``keepdims=0``), in place; returns the replaced
    nodes' names. Ranks come from ONNX shape inference; a mean whose input rank is unknown is left alone."""
    import onnx  # optional dependency: onnx

    g = model.graph
    ranks: dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            if vi.type.tensor_type.HasField("shape"):
                ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    except Exception:  # noqa: BLE001 - shape inference is best effort: unknown ranks are skipped
        pass
    replaced, nodes = [], []
    for node in g.node:
        if node.op_type != "ReduceMean" or ranks.get(node.input[0]) != 4:
            nodes.append(node)
            continue
        a = _attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = _constant(g, node.input[1])
        if axes is None or sorted(int(x) % 4 for x in np.ravel(axes)) != [2, 3]:
            nodes.append(node)
            continue
        if int(a.get("keepdims", 1)):
            nodes.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]],
                                               name=node.name + "_gap"))
        else:
            mid = node.output[0] + "_gap4d"
            nodes.append(onnx.helper.make_node("GlobalAveragePool", [node.input[0]], [mid], name=node.name + "_gap"))
            nodes.append(onnx.helper.make_node("Flatten", [mid], [node.output[0]], name=node.name + "_flatten",
                                               axis=1))
        replaced.append(node.name)
    del g.node[:]
    g.node.extend(nodes)
    return replaced


def basic_optimised(data: bytes) -> bytes:
    """The graph after onnxruntime's basic (portable, standard-operator) optimisations, serialised; one thread."""
    import onnxruntime as ort  # optional dependency: onnxruntime

    with tempfile.TemporaryDirectory(prefix="dna-depth-cleanup-") as tmp:
        out = os.path.join(tmp, "basic.onnx")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        so.optimized_model_filepath = out
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        with open(out, "rb") as f:
            return f.read()


def cleanup(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """All clean-ups of the module docstring applied to a serialised model; returns ``(model bytes, report)``.

    ``report``: ``basic_optimised`` (bool), ``empty_inputs_dropped`` (count), ``pads_folded`` and
    ``means_to_gap`` (node names), ``ops_before``/``ops_after`` (operator counts), or ``skipped`` (why) when
    onnxruntime is missing (the model is then returned unchanged). The model's ``metadata_props``, producer and
    doc string are kept; unused initializers are dropped.
    """
    import onnx  # optional dependency: onnx

    try:
        basic = basic_optimised(data)
    except ImportError:
        return data, {"skipped": "onnxruntime is not installed (needed to fold the pad arithmetic into constants)"}
    src = onnx.load_from_string(data)
    m = onnx.load_from_string(basic)
    report: dict[str, Any] = {"basic_optimised": True,
                              "ops_before": dict(collections.Counter(n.op_type for n in src.graph.node))}
    report["empty_inputs_dropped"] = drop_empty_optional_inputs(m)
    report["pads_folded"] = fold_zero_pads(m)
    report["means_to_gap"] = reduce_mean_to_gap(m)
    used = {i for n in m.graph.node for i in n.input} | {o.name for o in m.graph.output}
    kept = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    del m.metadata_props[:]
    m.metadata_props.extend(src.metadata_props)
    m.producer_name, m.producer_version, m.doc_string = src.producer_name, src.producer_version, src.doc_string
    report["ops_after"] = dict(collections.Counter(n.op_type for n in m.graph.node))
    onnx.checker.check_model(m)
    return m.SerializeToString(), report


__all__ = ["basic_optimised", "cleanup", "drop_empty_optional_inputs", "fold_zero_pads", "reduce_mean_to_gap"]
