"""Reading safetensors files that may be damaged or hostile: the header is parsed and checked here, in full, before
the safetensors library reads the file, so that any malformed file gives one ValueError naming the file and the
problem (never a TypeError, a KeyError or a library error of another type).

The format: 8 bytes, the header's length ``N`` (unsigned little-endian); ``N`` bytes of UTF-8 JSON; the tensor
data. The JSON object maps each tensor name to ``{"dtype": ..., "shape": [...], "data_offsets": [begin, end]}``
(byte offsets into the data that follows the header) and may hold ``"__metadata__"``, a string -> string map.
What is checked, as the safetensors library checks it (so a file that passes here is one it reads):

- the header length fits the file and :data:`MAX_HEADER_BYTES`; the header is UTF-8 JSON, an object, with no
  tensor named twice;
- ``__metadata__`` is absent, null or an object of strings;
- every tensor entry is an object with a ``dtype`` of :data:`DTYPE_SIZES`, a ``shape`` of non-negative integers
  whose element count does not overflow 64 bits, and ``data_offsets`` ``[begin, end]`` with
  ``end - begin = elements x dtype size``;
- the tensors' byte ranges follow each other without gap or overlap from 0 and end exactly where the file ends
  (a shorter file is truncated; a longer one holds data no tensor claims).

Nothing is ever unpickled: tensors come from the safetensors library, only after these checks.
"""
from __future__ import annotations

import dataclasses
import json
import os
import struct
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from dna_depth_core.io.errors import one_line, unreadable

#: The largest header read (bytes): the safetensors library's own limit.
MAX_HEADER_BYTES = 100_000_000
#: The dtypes accepted, with their size in bytes: the ones torch modules and optimizers hold.
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4,
               "F32": 4, "I64": 8, "U64": 8, "F64": 8}
_U64 = 2 ** 64


@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header: its ``dtype`` name, ``shape``, and byte range ``[begin, end)`` in the
    data after the header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclasses.dataclass(frozen=True)
class SafetensorsHeader:
    """A checked safetensors header: the tensors (in header order), the ``__metadata__`` strings, the header's
    length and the file's size in bytes."""

    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]
    header_bytes: int
    file_bytes: int


class _Bad(Exception):
    """A problem found while checking a header (internal: turned into a ValueError naming the file)."""


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Bad(f"the header names '{one_line(key, 80)}' twice")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise _Bad(f"the header holds {name}, which is not JSON")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_name(value: Any, limit: int = 60) -> str:
    """A short rendering of a JSON value for a message."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return one_line(text, limit)


def _entry(name: str, info: Any) -> TensorEntry:
    label = f"tensor '{one_line(name, 80)}'"
    if not isinstance(info, dict):
        raise _Bad(f"{label}: its entry is {_json_name(info)}, not an object with dtype, shape and data_offsets")
    for key in ("dtype", "shape", "data_offsets"):
        if key not in info:
            raise _Bad(f"{label}: its entry has no '{key}'")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise _Bad(f"{label}: dtype {_json_name(dtype)} is not one of {', '.join(DTYPE_SIZES)}")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _Bad(f"{label}: shape {_json_name(shape)} is not a list of non-negative integers")
    count = 1
    for d in shape:  # the library multiplies in this order and refuses an overflow even when a 0 follows
        count *= d
        if count * DTYPE_SIZES[dtype] >= _U64:
            raise _Bad(f"{label}: shape {_json_name(shape)} holds more elements than 64-bit sizes can count")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)
            and 0 <= offsets[0] <= offsets[1] < _U64):
        raise _Bad(f"{label}: data_offsets {_json_name(offsets)} is not [begin, end] with 0 <= begin <= end")
    nbytes = count * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != nbytes:
        raise _Bad(f"{label}: shape {shape} of {dtype} needs {nbytes} bytes but data_offsets {offsets} hold "
                   f"{offsets[1] - offsets[0]}")
    return TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])


def _parse(raw: bytes) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Bad(f"corrupt safetensors header: not UTF-8 text (byte {exc.start})") from None
    try:
        header = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise _Bad(f"corrupt safetensors header: not JSON ({exc.msg} at byte {exc.pos})") from None
    except RecursionError:
        raise _Bad("corrupt safetensors header: JSON nested too deeply") from None
    if not isinstance(header, dict):
        raise _Bad(f"corrupt safetensors header: a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _Bad(f"__metadata__ is {_json_name(metadata)}, not an object of strings")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise _Bad(f"__metadata__ entry '{one_line(key, 80)}' is {_json_name(value)}, not a string")
    tensors = {name: _entry(name, info) for name, info in header.items()}
    expected = 0
    for t in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if t.begin != expected:
            what = "overlaps the tensor before it" if t.begin < expected else "leaves a gap before it"
            raise _Bad(f"tensor '{one_line(t.name, 80)}': data_offsets [{t.begin}, {t.end}] {what} (expected "
                       f"it to begin at byte {expected})")
        expected = t.end
    return tensors, {str(k): v for k, v in metadata.items()}


def read_header(path: str | os.PathLike, what: str = "safetensors file") -> SafetensorsHeader:
    """Read and check the header of the safetensors file ``path`` (see the module docstring); no tensor data is
    read. ``what`` names the file in messages (``"checkpoint"``, ``"optimizer state"``, ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: anything else: not a file, unreadable, empty, truncated, a malformed header (the message
            names the file and the first problem found, in one line).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"{what} {path}: not a file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise ValueError(f"{what} {path}: file is empty or truncated ({size} bytes)")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:
                raise ValueError(f"{what} {path}: not a safetensors file, or truncated (header claims "
                                 f"{header_len} bytes, file has {size})")
            if header_len > MAX_HEADER_BYTES:
                raise ValueError(f"{what} {path}: not a safetensors file (header claims {header_len} bytes, more "
                                 f"than the {MAX_HEADER_BYTES} bytes allowed)")
            raw = f.read(header_len)
    except OSError as exc:
        raise unreadable(what, path, exc) from exc
    if len(raw) != header_len:
        raise ValueError(f"{what} {path}: changed while being read (header cut short)")
    try:
        tensors, metadata = _parse(raw)
    except _Bad as exc:
        raise ValueError(f"{what} {path}: {exc}") from None
    data_bytes = size - 8 - header_len
    end = max((t.end for t in tensors.values()), default=0)
    if end > data_bytes:
        raise ValueError(f"{what} {path}: truncated (tensor data needs {end} bytes, file holds {data_bytes})")
    if end < data_bytes:
        raise ValueError(f"{what} {path}: {data_bytes - end} bytes after the last tensor's data belong to no "
                         f"tensor (damaged, or data appended)")
    return SafetensorsHeader(tensors, metadata, int(header_len), int(size))


def read_safetensors(path: str | os.PathLike, what: str = "safetensors file"
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """``(tensors on the CPU, __metadata__)`` of the safetensors file ``path``, read after :func:`read_header`
    checked it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not a well-formed safetensors file (the message names the file and the problem).
    """
    path = os.fspath(path)
    header = read_header(path, what)
    try:
        tensors = load_file(path)
    except SafetensorError as exc:
        raise ValueError(f"{what} {path}: corrupt safetensors file ({one_line(exc)})") from None
    except OSError as exc:
        raise unreadable(what, path, exc) from exc
    if set(tensors) != set(header.tensors):
        raise ValueError(f"{what} {path}: changed while being read (its tensors differ from its header's)")
    return tensors, dict(header.metadata)


__all__ = ["DTYPE_SIZES", "MAX_HEADER_BYTES", "SafetensorsHeader", "TensorEntry", "read_header", "read_safetensors"]
