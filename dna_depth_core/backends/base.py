"""What every inference backend is (:class:`Backend`), and the checks they share: device names, the input array,
the checkpoint path."""
from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from dna_depth_core.io.checkpoint import load_checkpoint
from dna_depth_core.models.depth_net import DepthConfig, DepthNet


@runtime_checkable
class Backend(Protocol):
    """The interface of an inference backend.

    ``backend(x)``: ``x`` ``(B, 3, H, W)`` float32 in [0, 1], H and W multiples of 32 -> ``(B, 1, H, W)`` float32,
    the scale-0 sigmoid disparity (depth from ``geometry.disp_to_depth`` with ``config.min_depth/max_depth``).
    """

    #: Registry name of the implementation ("torch", "onnxruntime", ...).
    name: str
    #: The network's DepthConfig: model name, normalisation, training size, depth range.
    config: DepthConfig
    #: The input size the backend was built for (the checkpoint's by default).
    height: int
    width: int
    #: Where the network runs, and whether it runs in half precision.
    device: torch.device
    fp16: bool

    def supports_size(self, height: int, width: int) -> bool:
        """Whether ``__call__`` accepts ``(B, 3, height, width)``."""
        ...

    def __call__(self, x: np.ndarray) -> np.ndarray:
        ...


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``; unavailable CUDA ->
    ValueError."""
    if isinstance(device, torch.device):
        dev = device
    else:
        name = str(device).strip().lower()
        if name in ("", "auto"):
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(f"device '{device}' is not a device name (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' requested but CUDA is not available (use auto or cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device '{device}' requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device '{device}' not supported (use auto, cpu, cuda or cuda:N)")
    return dev


def check_input(x: Any, name: str = "x") -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(B, 3, H, W)`` array with H, W multiples of 32; ValueError otherwise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (B, 3, H, W), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name}: expected a float array in [0, 1], got dtype {x.dtype}")
    if x.shape[2] % 32 or x.shape[3] % 32 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name}: height and width must be multiples of 32, got {x.shape[2]}x{x.shape[3]}")
    return np.ascontiguousarray(x, dtype=np.float32)


def load_network(path: Any) -> DepthNet:
    """The DepthNet of a checkpoint path (on the CPU).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: no path given, or a file that is not a usable checkpoint (one line naming the file and the
            problem: see :func:`dna_depth_core.io.checkpoint.load_checkpoint`).
    """
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"weights: no checkpoint path given (got {type(path).__name__} {path!r:.60})")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    return load_checkpoint(path, map_location="cpu")


def is_onnx_source(source: Any) -> bool:
    """Whether ``source`` is an exported ONNX model: serialised bytes or a path ending in ``.onnx``."""
    if isinstance(source, (bytes, bytearray)):
        return True
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(".onnx")


__all__ = ["Backend", "check_input", "is_onnx_source", "load_network", "resolve_device"]
