"""ONNX export of a depth network: the file, verified against torch (:mod:`.onnx_export`; exact graph clean-ups
included), and int8 quantisation for the CPU, as an onnxruntime QDQ ``.onnx`` (:mod:`.int8`) or an OpenVINO IR
(:mod:`.openvino_int8`, NNCF), calibrated on images found and prepared by :mod:`.calibration`.

>>> report = export_onnx("dna_b0.safetensors", "dna_b0.onnx")             # fp32, verified with onnxruntime
>>> q = quantize_onnx_int8("dna_b0.onnx", "dna_b0_int8.onnx", "frames/")   # int8 QDQ, calibrated on frames/
>>> q = quantize_openvino_int8("dna_b0.onnx", "dna_b0_int8.xml", "frames/")   # int8 IR for this CPU's ISA

The file format itself (graph, metadata, reading it back) is :mod:`dna_depth_core.io.onnx_format`; running it is
:class:`dna_depth_core.backends.OnnxBackend`.
"""
from dna_depth_core.export.calibration import (
    DEFAULT_CALIBRATION_COUNT,
    IMAGE_SUFFIXES,
    ImageCalibrationReader,
    find_calibration_images,
    load_calibration_image,
)
from dna_depth_core.export.int8 import Int8Report, quantize_onnx_int8
from dna_depth_core.export.onnx_export import ExportReport, export_onnx, verify_onnx
from dna_depth_core.export.openvino_int8 import overflow_fix_for, quantize_openvino_int8

__all__ = [
    "DEFAULT_CALIBRATION_COUNT",
    "ExportReport",
    "IMAGE_SUFFIXES",
    "ImageCalibrationReader",
    "Int8Report",
    "export_onnx",
    "find_calibration_images",
    "load_calibration_image",
    "overflow_fix_for",
    "quantize_onnx_int8",
    "quantize_openvino_int8",
    "verify_onnx",
]
