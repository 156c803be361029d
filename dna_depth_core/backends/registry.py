"""The one backend registry: backend name -> factory ``(checkpoint, device="auto", fp16=False[, precision="auto"])
-> Backend``.

``DepthEstimator`` (and so the ROS node's ``backend`` parameter), the benchmarks and the docs take their backend
names from here. Built in: ``torch``, ``onnxruntime``, ``openvino`` and ``auto`` (:mod:`.selection`: by the
device, the model file, the CPU's ISA, what is installed and what passed the accuracy guard).
"""
from __future__ import annotations

import inspect
import logging
from typing import Any, Callable

import torch

from dna_depth_core.backends.base import Backend
from dna_depth_core.backends.onnx_backend import onnxruntime_backend_factory
from dna_depth_core.backends.openvino_backend import openvino_backend_factory
from dna_depth_core.backends.selection import select_backend
from dna_depth_core.backends.torch_backend import torch_backend_factory

#: A backend factory: ``factory(checkpoint, device=..., fp16=...)`` returns a Backend; a factory that also takes
#: ``precision=`` (``"auto"``, ``"fp32"``, ``"bf16"``, ``"int8"``) gets it. ``checkpoint`` is whatever the backend
#: loads (a ``.safetensors`` path, a DepthNet, an ``.onnx`` path or bytes, an OpenVINO ``.xml``, ...).
BackendFactory = Callable[..., Backend]

#: Precisions a caller may ask for (``auto``: the backend's or the model file's own, or the auto rule's choice).
PRECISIONS = ("auto", "fp32", "bf16", "int8")

_log = logging.getLogger("dna_depth_core.backends")

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


def recommended_backend(device: str | torch.device = "auto", checkpoint: Any = None, precision: str = "auto",
                        **kwargs: Any) -> str:
    """The backend name ``auto`` picks for ``checkpoint`` on ``device`` (:func:`.selection.select_backend`, which
    also gives the precision and the reason; ``kwargs``: its ``isa`` and ``have``)."""
    return select_backend(device, checkpoint, precision, **kwargs).backend


def _takes_precision(factory: BackendFactory) -> bool:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "precision" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def create_backend(name: str, checkpoint: Any, device: str | torch.device = "auto", fp16: bool = False,
                   precision: str = "auto") -> Backend:
    """Build the backend ``name`` (one of :func:`list_backends`) for ``checkpoint`` on ``device``; ``fp16`` asks
    for half precision on CUDA where the backend has it; ``precision`` (one of :data:`PRECISIONS`) is passed to
    factories that take it. Unknown names raise ValueError listing the registered ones; a precision other than
    ``auto`` for a factory without that option is a ValueError too."""
    if name not in BACKENDS:
        raise ValueError(f"backend '{name}' unknown; available: {', '.join(list_backends())}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision '{precision}' unknown; use one of {', '.join(PRECISIONS)}")
    factory = BACKENDS[name]
    if _takes_precision(factory):
        return factory(checkpoint, device=device, fp16=fp16, precision=precision)
    if precision != "auto":
        raise ValueError(f"backend '{name}' has no precision option (asked for {precision})")
    return factory(checkpoint, device=device, fp16=fp16)


def auto_backend_factory(checkpoint: Any, device: str | torch.device = "auto", fp16: bool = False,
                         precision: str = "auto") -> Backend:
    """The ``auto`` backend: the backend and precision :func:`.selection.select_backend` picks; its ``reason``
    attribute (also logged at INFO on the ``dna_depth_core.backends`` logger) is one line saying what was picked
    and why."""
    choice = select_backend(device, checkpoint, precision)
    backend = create_backend(choice.backend, checkpoint, device=device, fp16=fp16, precision=choice.precision)
    actual = getattr(backend, "precision", choice.precision)
    own = getattr(backend, "reason", "")
    detail = f"{choice.reason}; {own}" if own and actual not in ("fp32", "auto") else choice.reason
    backend.reason = f"backend auto: {choice.backend} {actual} ({detail})"
    if getattr(backend, "fp16", False) and choice.backend == "torch":
        backend.reason = f"backend auto: torch fp16 ({choice.reason}, fp16 requested)"
    _log.info(backend.reason)
    return backend


register_backend("torch", torch_backend_factory)
register_backend("onnxruntime", onnxruntime_backend_factory)
register_backend("openvino", openvino_backend_factory)
register_backend(AUTO, auto_backend_factory)

__all__ = ["AUTO", "BACKENDS", "BackendFactory", "PRECISIONS", "auto_backend_factory", "create_backend",
           "list_backends", "recommended_backend", "register_backend"]
