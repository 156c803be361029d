"""The one backend registry: backend name -> factory ``(checkpoint, device="auto", fp16=False) -> Backend``.

``DepthEstimator`` (and so the ROS node's ``backend`` parameter), the benchmarks and the docs take their backend
names from here. Built in: ``torch``, ``onnxruntime`` and ``auto`` (:func:`recommended_backend`).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from dna_depth_core.backends.base import Backend, is_onnx_source, resolve_device
from dna_depth_core.backends.onnx_backend import onnxruntime_available, onnxruntime_backend_factory
from dna_depth_core.backends.torch_backend import torch_backend_factory

#: A backend factory: ``factory(checkpoint, device=..., fp16=...)`` returns a Backend. ``checkpoint`` is whatever
#: the backend loads (a ``.safetensors`` path, a DepthNet, an ``.onnx`` path or bytes, ...).
BackendFactory = Callable[..., Backend]

AUTO = "auto"

#: The registry itself, name -> factory. Read it through :func:`list_backends`, change it through
#: :func:`register_backend`.
BACKENDS: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Add (or replace) the backend ``name``; ``factory(checkpoint, device=..., fp16=...)`` returns an object with
    the :class:`~dna_depth_core.backends.base.Backend` interface. ``auto`` is the automatic choice and cannot be
    replaced."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"backend name: expected a non-empty string without surrounding spaces, got {name!r}")
    if name == AUTO and AUTO in BACKENDS:
        raise ValueError(f"backend name '{AUTO}' is the automatic choice (recommended_backend); pick another name")
    if not callable(factory):
        raise ValueError(f"backend '{name}': factory must be callable, got {type(factory).__name__}")
    BACKENDS[name] = factory


def list_backends() -> list[str]:
    """The registered backend names, ``auto`` first, then sorted."""
    return sorted(BACKENDS, key=lambda n: (n != AUTO, n))


def recommended_backend(device: str | torch.device = "auto", checkpoint: Any = None) -> str:
    """The backend ``auto`` picks: ``onnxruntime`` for an exported ``.onnx`` (path or bytes); otherwise the one
    measured fastest at fp32 accuracy (docs/deployment.md): ``onnxruntime`` on the CPU when it is installed,
    ``torch`` on CUDA and where onnxruntime is missing."""
    if is_onnx_source(checkpoint):
        return "onnxruntime"
    dev = resolve_device(device)
    return "onnxruntime" if dev.type == "cpu" and onnxruntime_available() else "torch"


def create_backend(name: str, checkpoint: Any, device: str | torch.device = "auto", fp16: bool = False) -> Backend:
    """Build the backend ``name`` (one of :func:`list_backends`) for ``checkpoint`` on ``device``; ``fp16`` asks
    for half precision where the backend has it. Unknown names raise ValueError listing the registered ones."""
    if name not in BACKENDS:
        raise ValueError(f"backend '{name}' unknown; available: {', '.join(list_backends())}")
    return BACKENDS[name](checkpoint, device=device, fp16=fp16)


def auto_backend_factory(checkpoint: Any, device: str | torch.device = "auto", fp16: bool = False) -> Backend:
    """The ``auto`` backend: :func:`create_backend` with :func:`recommended_backend` for ``device`` and
    ``checkpoint``."""
    return create_backend(recommended_backend(device, checkpoint), checkpoint, device=device, fp16=fp16)


register_backend("torch", torch_backend_factory)
register_backend("onnxruntime", onnxruntime_backend_factory)
register_backend(AUTO, auto_backend_factory)

__all__ = ["AUTO", "BACKENDS", "BackendFactory", "auto_backend_factory", "create_backend", "list_backends",
           "recommended_backend", "register_backend"]
