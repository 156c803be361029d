"""int8 OpenVINO IR for the CPU: NNCF post-training quantisation of a static fp32 export, calibrated on images.

>>> report = quantize_openvino_int8("dna_b0.onnx", "dna_b0_int8.xml", "frames/", count=64)

The calibration images are prepared by :func:`dna_depth_core.preprocess.prepare` (the rule inference applies to
camera frames; :class:`~dna_depth_core.export.calibration.ImageCalibrationReader`), so the ranges are those the
deployment sees. NNCF's ``mixed`` preset by default (symmetric int8 weights per output channel, asymmetric uint8
activations: on the trained dna_lite0 it kept the accuracy guard at 100 and 160 training steps where the
``performance`` preset failed once), fast bias correction, MinMax ranges. The scale-0 head (its last convolution
and sigmoid) stays float, as in the onnxruntime int8 file.

**Per ISA** (``target_isa``, default this CPU): without VNNI, OpenVINO's int8 kernels add pairs of u8 x s8
products into a saturating int16 like onnxruntime's, and OpenVINO has no switch to exact kernels; NNCF's
``overflow_fix="enable"`` then quantises every weight to 7 bits, which cannot saturate (costs one bit of weight
precision). With VNNI the weights keep 8 bits (``"disable"``). The file records which, and
:class:`~dna_depth_core.backends.OpenVinoBackend` refuses an 8-bit-weight IR on a CPU without VNNI.

The IR's rt_info carries the fp32 export's ``dna_depth.*`` metadata plus ``precision=int8``,
``calibration_images`` and ``quantization`` (JSON: tool and versions, preset, overflow_fix, target and build ISA,
calibration files, preprocessing, the nodes kept float). ``openvino`` and ``nncf`` are optional dependencies (the
``openvino`` extra), imported by the function.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Any


from dna_depth_core import machine
from dna_depth_core.backends.openvino_backend import OpenVinoBackend
from dna_depth_core.export.calibration import DEFAULT_CALIBRATION_COUNT, ImageCalibrationReader, find_calibration_images
from dna_depth_core.export.int8 import Int8Report, compare_disparities, fp32_export_bytes
from dna_depth_core.io.onnx_format import config_from_onnx_metadata, load_model_proto, metadata_of
from dna_depth_core.io.openvino_format import save_ir, set_ir_metadata

PRESETS = ("mixed", "performance")


def overflow_fix_for(isa: machine.CpuIsa) -> str:
    """NNCF's ``overflow_fix`` for a target CPU: ``"disable"`` (8-bit weights) with VNNI, ``"enable"`` (7-bit
    weights, exact without VNNI) otherwise."""
    return "disable" if isa.vnni else "enable"


def _head_nodes(model: Any) -> list[str]:
    """Friendly names of the scale-0 output's sigmoid and the convolution (and bias Add) feeding it."""
    names: list[str] = []
    node = model.outputs[0].get_node().input_value(0).get_node()
    if node.get_type_name() != "Sigmoid":
        return names
    names.append(node.get_friendly_name())
    prev = node.input_value(0).get_node()
    if prev.get_type_name() == "Add":
        names.append(prev.get_friendly_name())
        prev = prev.input_value(0).get_node()
    if prev.get_type_name() in ("Convolution", "GroupConvolution"):
        names.append(prev.get_friendly_name())
    return names


class _QuietNNCF:
    """For the duration of a block: NNCF's info lines off, its progress bars on stderr (NNCF writes both to stdout,
    where they would mix with a command's ``--json`` output)."""

    def __enter__(self):
        self.logger = logging.getLogger("nncf")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)
        self.redirect = contextlib.redirect_stdout(sys.stderr)
        self.redirect.__enter__()

    def __exit__(self, *exc):
        self.redirect.__exit__(*exc)
        self.logger.setLevel(self.level)


def quantize_openvino_int8(source: Any, out_path: str | os.PathLike, calibration: Any,
                           count: int | None = DEFAULT_CALIBRATION_COUNT, preset: str = "mixed",
                           target_isa: str | machine.CpuIsa | None = None, overflow_fix: str | None = None,
                           keep_output_float: bool = True, fast_bias_correction: bool = True,
                           threads: int | None = None, verify: bool = True, verify_images: int = 4,
                           resize: str = "stretch") -> Int8Report:
    """Quantise a static fp32 dna-depth ONNX export (or a checkpoint / DepthNet, exported first) to an int8
    OpenVINO IR at ``out_path`` (``.xml`` + ``.bin``).

    Args:
        source: the fp32 ``.onnx`` (path or bytes), a ``.safetensors`` checkpoint or a DepthNet.
        calibration: images for the activation ranges (:func:`find_calibration_images`): frames of the deployment
            camera. ``count``: at most this many, spread evenly over the sorted list (None: all).
        preset: NNCF preset, ``"mixed"`` (default) or ``"performance"`` (symmetric activations).
        target_isa: the CPU the file is for: a :class:`~dna_depth_core.machine.CpuIsa`, an ISA class name
            (``"avx2"``, ``"avx512_vnni"``, ...; :data:`~dna_depth_core.machine.ISA_CLASSES`) or None (this CPU).
            It decides ``overflow_fix`` (:func:`overflow_fix_for`) unless that is given.
        keep_output_float: leave the scale-0 head's convolution and sigmoid float.
        threads: OpenVINO threads for the check (default: the usable cores).
        verify: run the fp32 model and the IR (OpenVINO) on the first ``verify_images`` calibration inputs and
            record the disparity differences (non-finite output raises RuntimeError).
        resize: ``"stretch"`` or ``"crop"``, as the deployment's ``resize_mode``.

    Returns an :class:`~dna_depth_core.export.int8.Int8Report` with ``runtime="openvino"`` and ``recipe``.
    """
    import nncf  # optional dependency: nncf
    import openvino as ov  # optional dependency: openvino
    from nncf.quantization.advanced_parameters import (  # optional dependency: nncf
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    t0 = time.perf_counter()
    if preset not in PRESETS:
        raise ValueError(f"preset '{preset}' unknown; use one of {', '.join(PRESETS)}")
    out_path = os.fspath(out_path)
    if not out_path.endswith(".xml"):
        raise ValueError(f"out_path: an OpenVINO IR is written as NAME.xml (+ NAME.bin), got {out_path}")
    isa = (machine.cpu_isa() if target_isa is None else target_isa if isinstance(target_isa, machine.CpuIsa)
           else machine.isa_for_class(str(target_isa)))
    fix = overflow_fix or overflow_fix_for(isa)
    if fix not in ("enable", "disable", "first_layer_only"):
        raise ValueError(f"overflow_fix '{fix}' unknown; use enable, disable or first_layer_only")
    what, data = fp32_export_bytes(source)
    onnx_model = load_model_proto(data)
    meta = metadata_of(onnx_model)
    cfg = config_from_onnx_metadata(meta, what)
    if meta.get("precision", "fp32") != "fp32":
        raise ValueError(f"ONNX model {what}: already quantised (dna_depth.precision={meta['precision']}); "
                         f"quantise the fp32 export")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in onnx_model.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2] is None or dims[3] is None:
        raise ValueError(f"ONNX model {what}: its height/width are dynamic; int8 calibration resizes the images "
                         f"to one input size, so export a static model at the deployment size (without --dynamic)")
    height, width = int(dims[2]), int(dims[3])
    images = find_calibration_images(calibration, count)
    reader = ImageCalibrationReader(images, height, width, onnx_model.graph.input[0].name, dims[0] or 1, mode=resize)
    core = ov.Core()
    model = core.read_model(data, b"")
    ignored = _head_nodes(model) if keep_output_float else []
    with _QuietNNCF():
        qmodel = nncf.quantize(
            model, nncf.Dataset([b for b in reader.batches]), subset_size=len(reader.batches),
            preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
            fast_bias_correction=fast_bias_correction, ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
            advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix(fix)))
    n_images = len(reader.names)
    recipe = {
        "dtype": "int8", "tool": "nncf.quantize", "nncf": nncf.__version__, "openvino": ov.__version__,
        "preset": preset, "overflow_fix": fix,
        "weights": ("7-bit" if fix == "enable" else "8-bit") + " int8 symmetric per output channel",
        "activations": "uint8 asymmetric per tensor" if preset == "mixed" else "int8/uint8 symmetric per tensor",
        "fast_bias_correction": fast_bias_correction, "calibration": "MinMax (NNCF default range estimator)",
        "calibration_images": n_images, "calibration_files": [os.path.basename(n) for n in reader.names],
        "input_size": f"{height}x{width}", "resize": resize,
        "preprocess": f"dna_depth_core.preprocess.prepare (resize mode {resize})", "float_nodes": ignored,
        "target_isa": isa.name, "built_on_isa": machine.cpu_isa().name,
    }
    set_ir_metadata(qmodel, {**meta, "precision": "int8", "calibration_images": str(n_images),
                             "quantization": json.dumps(recipe, sort_keys=True)})
    save_ir(qmodel, out_path)
    size = os.path.getsize(out_path) + os.path.getsize(out_path[: -len(".xml")] + ".bin")
    report = Int8Report(path=os.path.abspath(out_path), source=what, model=cfg.name, height=height, width=width,
                        calibration_images=n_images, calibration_files=reader.names, per_channel=True,
                        float_nodes=ignored, size_bytes=size, fp32_size_bytes=len(data), seconds=0.0,
                        runtime="openvino", recipe=recipe)
    if verify:
        if machine.cpu_isa().vnni or fix == "enable":  # else the IR cannot run exactly here: built for another CPU
            fp32 = OpenVinoBackend(data, precision="fp32", threads=threads)
            int8 = OpenVinoBackend(out_path, precision="int8", threads=threads)
            compare_disparities(report, fp32, int8, reader, verify_images, what)
    report.seconds = time.perf_counter() - t0
    return report


__all__ = ["PRESETS", "overflow_fix_for", "quantize_openvino_int8"]
