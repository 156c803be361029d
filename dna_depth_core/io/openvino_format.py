"""The project's OpenVINO IR files: an ``.xml`` graph + ``.bin`` weights (``openvino.save_model``) whose ``rt_info``
carries the same ``dna_depth.*`` metadata as the ONNX format (:mod:`dna_depth_core.io.onnx_format`) under the key
``dna_depth``: ``format``, ``config``, ``input_size``, ... of the fp32 export it came from, plus ``precision``
(``int8``), ``calibration_images``, ``quantization`` (JSON: tool, versions, preset, ``overflow_fix``, the ISA it was
built for, calibration files) and, once ``dna-depth guard`` ran on it, ``guard``.

``openvino`` is an optional dependency (the ``openvino`` extra), imported by the functions that need it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

#: The rt_info key under which the dna_depth metadata lives.
RT_INFO_KEY = "dna_depth"


def is_ir_source(source: Any) -> bool:
    """Whether ``source`` names an OpenVINO IR (a path ending in ``.xml``)."""
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(".xml")


def check_ir_file(path: str | os.PathLike) -> str:
    """FileNotFoundError/ValueError naming the problem unless ``path`` is an existing ``.xml`` with its ``.bin``
    beside it; returns the path as a string."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"OpenVINO IR not found: {path}")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise ValueError(f"OpenVINO IR {path}: not a file or empty")
    weights = path[: -len(".xml")] + ".bin"
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"OpenVINO IR {path}: its weights file {os.path.basename(weights)} is missing "
                                f"(an IR is the .xml and the .bin written together)")
    return path


def read_ir(path: str | os.PathLike, core: Any = None):
    """The ``openvino.Model`` of an IR file, with errors that name the file."""
    import openvino as ov  # optional dependency: openvino

    path = check_ir_file(path)
    try:
        return (core or ov.Core()).read_model(path)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError subclasses of its own
        raise ValueError(f"OpenVINO IR {path}: OpenVINO cannot read it ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


def ir_metadata(model: Any) -> dict[str, str]:
    """The ``dna_depth`` entries of an ``openvino.Model``'s rt_info, as strings (empty for a foreign IR)."""
    if not model.has_rt_info([RT_INFO_KEY]):
        return {}
    try:
        entries = model.get_rt_info([RT_INFO_KEY]).astype(dict)
    except Exception:  # noqa: BLE001 - an rt_info entry of another shape: not ours
        return {}
    return {str(k): model.get_rt_info([RT_INFO_KEY, str(k)]).astype(str) for k in entries}


def set_ir_metadata(model: Any, meta: dict[str, Any]) -> None:
    """Set the ``dna_depth`` entries of an ``openvino.Model``'s rt_info (values as strings; other entries kept)."""
    for key, value in meta.items():
        model.set_rt_info(str(value), [RT_INFO_KEY, str(key)])


def read_ir_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``dna_depth`` metadata of an IR file (empty for a foreign IR)."""
    return ir_metadata(read_ir(path))


def save_ir(model: Any, path: str | os.PathLike) -> str:
    """Write ``model`` as ``path`` (``.xml``) + its ``.bin``, uncompressed (weights stay as they are), both files
    replaced together (written in a temporary folder beside them first). Returns the path."""
    import openvino as ov  # optional dependency: openvino

    path = os.fspath(path)
    if not path.endswith(".xml"):
        raise ValueError(f"OpenVINO IR path must end in .xml, got {path}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".ir-", dir=folder)
    try:
        ov.save_model(model, os.path.join(tmp, "model.xml"), compress_to_fp16=False)
        os.replace(os.path.join(tmp, "model.bin"), path[: -len(".xml")] + ".bin")
        os.replace(os.path.join(tmp, "model.xml"), path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def update_ir_metadata(path: str | os.PathLike, updates: dict[str, Any]) -> None:
    """Add or replace ``dna_depth`` metadata entries of an IR file in place (the IR is rewritten)."""
    model = read_ir(path)
    set_ir_metadata(model, updates)
    save_ir(model, path)


__all__ = ["RT_INFO_KEY", "check_ir_file", "ir_metadata", "is_ir_source", "read_ir", "read_ir_metadata",
           "save_ir", "set_ir_metadata", "update_ir_metadata"]
