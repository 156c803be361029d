"""int8 ONNX for the CPU: onnxruntime static quantisation (QDQ) of a static fp32 export, calibrated on images.

>>> report = quantize_onnx_int8("dna_b0.onnx", "dna_b0_int8.onnx", "frames/", count=64)

Weights int8 symmetric per output channel, activations uint8 asymmetric per tensor (U8S8, what onnxruntime's x86
kernels run fastest with VNNI; ``reduce_range=True`` gives 7-bit weights), MinMax ranges from calibration images
prepared by
:func:`dna_depth_core.preprocess.prepare` (the rule inference applies to camera images; see
:mod:`.calibration`). By default the last convolution and the sigmoid of each output stay float, so the disparity
is not rounded to 8 bits. Same input and outputs as the fp32 graph; the metadata is the fp32 model's plus
``dna_depth.precision`` (``int8``), ``dna_depth.calibration_images`` (how many) and ``dna_depth.quantization``
(JSON: scheme, ``reduce_range``, calibration files, preprocessing, float nodes, onnxruntime version, the ISA it
was built on). :class:`dna_depth_core.backends.OnnxBackend` loads it like any export and runs it exactly on every
x86 CPU (without VNNI through the exact kernels: :func:`dna_depth_core.backends.int8_needs_exact_kernels`).

int8 as an OpenVINO IR (NNCF): :mod:`.openvino_int8`.

``onnx`` and ``onnxruntime`` are optional dependencies (the ``onnx`` extra), imported by the functions that need them.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn as nn

from dna_depth_core import machine
from dna_depth_core.backends.onnx_backend import OnnxBackend, session_options
from dna_depth_core.export.calibration import (
    DEFAULT_CALIBRATION_COUNT,
    ImageCalibrationReader,
    find_calibration_images,
)
from dna_depth_core.io.atomic import write_bytes
from dna_depth_core.io.onnx_format import (
    check_onnx_file,
    config_from_onnx_metadata,
    export_to_bytes,
    load_model_proto,
    metadata_of,
    network_and_provenance,
    set_metadata,
)


@dataclasses.dataclass
class Int8Report:
    """What :func:`quantize_onnx_int8` wrote and how far its disparity is from the fp32 graph's."""

    path: str
    source: str
    model: str
    height: int
    width: int
    calibration_images: int
    calibration_files: list[str]
    per_channel: bool
    float_nodes: list[str]
    size_bytes: int
    fp32_size_bytes: int
    seconds: float
    # Check (None when skipped): |int8 - fp32| of the scale-0 disparity on the first ``checked_images`` calibration
    # images (calibration-like inputs, not held-out data): largest, mean, and mean relative to the fp32 disparity.
    checked_images: int = 0
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    mean_rel_diff: float | None = None
    # The runtime the file is for ("onnxruntime": a QDQ .onnx; "openvino": an NNCF IR) and its recipe (the
    # dna_depth.quantization record).
    runtime: str = "onnxruntime"
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _output_head_nodes(model) -> list[str]:
    """Names of the nodes that produce the graph outputs and, when such a node is an activation (Sigmoid), of the
    convolution feeding it: kept float so the disparity is not rounded to 8 bits."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names: list[str] = []
    for out in model.graph.output:
        node = producer.get(out.name)
        if node is None:
            continue
        names.append(node.name)
        if node.op_type == "Sigmoid" and node.input and node.input[0] in producer:
            prev = producer[node.input[0]]
            if prev.op_type == "Conv":
                names.append(prev.name)
    return [n for n in dict.fromkeys(names) if n]


class _QuietLogging:
    """Silence the root-logger warnings of onnxruntime.quantization (the 'run pre-processing' advice: the graph is
    pre-optimised here) for the duration of a block."""

    def __enter__(self):
        self.previous = logging.root.manager.disable
        logging.disable(max(self.previous, logging.WARNING))

    def __exit__(self, *exc):
        logging.disable(self.previous)


def _calibration_ranges(model_path: str, reader: ImageCalibrationReader, op_types: list[str], workdir: str,
                        threads: int) -> str | None:
    """Run MinMax calibration on ``model_path`` with ``threads`` intra-op threads and save the tensor ranges as an
    onnxruntime calibration cache; returns its path, or None when this onnxruntime cannot take a cache (then
    ``quantize_static`` calibrates itself, with onnxruntime's default threads)."""
    import onnxruntime as ort  # optional dependency: onnxruntime
    from onnxruntime import quantization as oq  # optional dependency: onnxruntime

    if "calibration_cache_path" not in inspect.signature(oq.quantize_static).parameters or not hasattr(
            oq, "save_tensors_data"):
        return None
    calibrator = oq.create_calibrator(Path(model_path), op_types,
                                      augmented_model_path=os.path.join(workdir, "augmented.onnx"),
                                      calibrate_method=oq.CalibrationMethod.MinMax,
                                      providers=["CPUExecutionProvider"])
    # The calibrator's own session uses every core; the same augmented graph with our thread count instead.
    if hasattr(calibrator, "infer_session") and getattr(calibrator, "augmented_model_path", None):
        so = session_options(threads)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        calibrator.infer_session = ort.InferenceSession(calibrator.augmented_model_path, so,
                                                        providers=["CPUExecutionProvider"])
    reader.rewind()
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    cache = os.path.join(workdir, "calibration.json")
    oq.save_tensors_data(ranges, cache)
    return cache


def fp32_export_bytes(source: Any) -> tuple[str, bytes]:
    """``(name, serialised fp32 model)`` of a quantiser's source: an ``.onnx`` file or its bytes as they are, a
    ``.safetensors`` checkpoint or a DepthNet exported (static, at its config's size, cleaned)."""
    if isinstance(source, nn.Module) or (isinstance(source, (str, os.PathLike))
                                         and os.fspath(source).endswith(".safetensors")):
        net, provenance = network_and_provenance(source)
        what = "<DepthNet>" if isinstance(source, nn.Module) else os.fspath(source)
        return what, export_to_bytes(net.float().cpu(), provenance=provenance)
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>", bytes(source)
    what = check_onnx_file(source)
    with open(what, "rb") as f:
        return what, f.read()


def compare_disparities(report: Int8Report, fp32: Any, int8: Any, reader: ImageCalibrationReader, images: int,
                        what: str) -> None:
    """Run the ``fp32`` and ``int8`` backends on the first ``images`` batches of ``reader`` and record
    |int8 - fp32| of the disparity in ``report`` (``checked_images``, max, mean, mean relative); RuntimeError for a
    non-finite or misshaped int8 disparity."""
    diffs, rels = [], []
    reader.rewind()
    for _, batch_in in zip(range(max(1, int(images))), reader):
        x = batch_in[reader.input_name]
        ref, got = fp32(x).astype(np.float64), int8(x).astype(np.float64)
        if got.shape != ref.shape or not np.all(np.isfinite(got)):
            raise RuntimeError(f"int8 model of {what}: non-finite or misshaped disparity on calibration input")
        d = np.abs(got - ref)
        diffs.append(d.ravel())
        rels.append((d / np.maximum(np.abs(ref), 1e-12)).ravel())
    d, r = np.concatenate(diffs), np.concatenate(rels)
    report.checked_images = len(diffs) * reader.batches[0].shape[0]
    report.max_abs_diff, report.mean_abs_diff = float(d.max()), float(d.mean())
    report.mean_rel_diff = float(r.mean())


def quantize_onnx_int8(source: Any, out_path: str | os.PathLike, calibration: Any,
                       count: int | None = DEFAULT_CALIBRATION_COUNT, per_channel: bool = True,
                       keep_output_float: bool = True, threads: int | None = None, verify: bool = True,
                       verify_images: int = 4, resize: str = "stretch", reduce_range: bool = False) -> Int8Report:
    """Quantise a static fp32 dna-depth ONNX export to int8 (onnxruntime static quantisation, QDQ) and write it
    atomically to ``out_path``.

    Args:
        source: the fp32 ``.onnx`` file (or its bytes) written by
            :func:`dna_depth_core.export.export_onnx`; a ``.safetensors`` checkpoint or a DepthNet is exported
            first (static, at its config's size).
        calibration: images for the activation ranges, see :func:`find_calibration_images` (folder, glob
            pattern, files, uint8 RGB arrays). Use frames like the deployment's (same camera, scenes, lighting).
        count: at most this many calibration images, spread evenly over the sorted list (None: all).
        per_channel: int8 weights per output channel (True) or per tensor.
        keep_output_float: leave the last convolution and sigmoid of each output in float.
        threads: onnxruntime intra-op threads for calibration and the check (default: the usable cores).
        verify: run fp32 and int8 on the first ``verify_images`` calibration inputs and record the disparity
            differences (non-finite output raises RuntimeError).
        resize: how a calibration image reaches the graph's size, as the deployment's ``DepthEstimator``
            (``resize``) / the node's ``resize_mode`` do: ``"stretch"`` or ``"crop"``.
        reduce_range: 7-bit weights. Not needed for exactness (the backend picks exact kernels per CPU); on a CPU
            without VNNI it lets onnxruntime keep its fast U8S8 kernels (measured 1.2x fp32 for dna_b0 on AVX2,
            against ~1.0x for the exact U8U8 kernels) at the cost of one bit of weight precision (it failed the
            accuracy guard once of two on the trained dna_lite0).

    The calibration images are resized to the graph's input size, so a model with dynamic height/width is refused
    (ValueError): export a static model at the deployment size. A dynamic batch is fine (calibrated at batch 1).
    """
    import onnx  # optional dependency: onnx
    import onnxruntime as ort  # optional dependency: onnxruntime
    from onnxruntime import quantization as oq  # optional dependency: onnxruntime

    t0 = time.perf_counter()
    threads = int(threads or machine.usable_cpus())
    what, data = fp32_export_bytes(source)
    model = load_model_proto(data)
    meta = metadata_of(model)
    cfg = config_from_onnx_metadata(meta, what)
    if meta.get("precision", "fp32") != "fp32":
        raise ValueError(f"ONNX model {what}: already quantised (dna_depth.precision={meta['precision']}); "
                         f"quantise the fp32 export")
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2] is None or dims[3] is None:
        raise ValueError(f"ONNX model {what}: its height/width are dynamic; int8 calibration resizes the images "
                         f"to one input size, so export a static model at the deployment size (without --dynamic)")
    batch, height, width = dims[0] or 1, int(dims[2]), int(dims[3])
    images = find_calibration_images(calibration, count)
    reader = ImageCalibrationReader(images, height, width, inp.name, batch, mode=resize)
    op_types = sorted(set(oq.registry.QDQRegistry) | set(oq.registry.QLinearOpsRegistry))
    with tempfile.TemporaryDirectory(prefix="dna-depth-int8-") as tmp:
        # onnxruntime's basic (portable, standard-op) graph optimisations first: constant folding removes the
        # shape arithmetic of the TF-"same" pads and Conv+BN/Add/Mul are fused, so the quantiser sees the real graph.
        opt = os.path.join(tmp, "fp32_opt.onnx")
        so = session_options(threads)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = opt
        ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        float_nodes = _output_head_nodes(onnx.load(opt)) if keep_output_float else []
        out_tmp = os.path.join(tmp, "int8.onnx")
        with _QuietLogging():
            cache = _calibration_ranges(opt, reader, op_types, tmp, threads)
            reader.rewind()
            oq.quantize_static(opt, out_tmp, None if cache else reader, quant_format=oq.QuantFormat.QDQ,
                               op_types_to_quantize=op_types, per_channel=per_channel, reduce_range=reduce_range,
                               activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8,
                               nodes_to_exclude=float_nodes, calibrate_method=oq.CalibrationMethod.MinMax,
                               **({"calibration_cache_path": cache} if cache else {}))
        qmodel = onnx.load(out_tmp)
    n_images = len(reader.names)
    quant = {
        "dtype": "int8", "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
        "weights": ("7-bit" if reduce_range else "8-bit") + " int8 symmetric "
                   + ("per output channel" if per_channel else "per tensor"),
        "reduce_range": reduce_range, "built_on_isa": machine.cpu_isa().name,
        "activations": "uint8 asymmetric per tensor", "calibration": "MinMax", "calibration_images": n_images,
        "calibration_files": [os.path.basename(n) for n in reader.names], "input_size": f"{height}x{width}",
        "resize": resize,
        "preprocess": f"dna_depth_core.preprocess.prepare (resize mode {resize}: INTER_AREA along a shrinking "
                      f"axis, INTER_LINEAR along a growing one; RGB, /255; normalisation in the graph)",
        "float_nodes": float_nodes, "onnxruntime": ort.__version__,
    }
    set_metadata(qmodel, {**meta, "precision": "int8", "calibration_images": str(n_images),
                          "quantization": json.dumps(quant, sort_keys=True)})
    qmodel.producer_name = "dna-depth"
    qmodel.doc_string = (model.doc_string + f" | int8 (onnxruntime static QDQ, U8S8, {n_images} calibration "
                         f"images)").lstrip(" |")
    onnx.checker.check_model(qmodel)
    qdata = qmodel.SerializeToString()
    report = Int8Report(path=os.path.abspath(os.fspath(out_path)), source=what, model=cfg.name, height=height,
                        width=width, calibration_images=n_images, calibration_files=reader.names,
                        per_channel=per_channel, float_nodes=float_nodes, size_bytes=len(qdata),
                        fp32_size_bytes=len(data), seconds=0.0, recipe=quant)
    if verify:
        fp32 = OnnxBackend(data, providers=["CPUExecutionProvider"], threads=threads)
        int8 = OnnxBackend(qdata, providers=["CPUExecutionProvider"], threads=threads)
        compare_disparities(report, fp32, int8, reader, verify_images, what)

    write_bytes(os.fspath(out_path), qdata)
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["Int8Report", "compare_disparities", "fp32_export_bytes", "quantize_onnx_int8"]
