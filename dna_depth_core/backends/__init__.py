"""Inference backends: a float32 image batch in, the scale-0 sigmoid disparity out, as numpy arrays.

Every backend has one interface (:class:`Backend`), so ``DepthEstimator`` (and the ROS node) can take any::

    backend(x)        # x: (B, 3, H, W) float32 in [0, 1], H, W multiples of 32 -> (B, 1, H, W) float32 disparity
    backend.config    # the DepthConfig (model name, normalisation, training size, depth range)
    backend.height, backend.width   # the input size the backend is built for (the checkpoint's by default)
    backend.device    # torch.device the network runs on; backend.fp16: half precision in use; backend.name
    backend.supports_size(h, w)     # False for a static .onnx exported at another size

Backends by name, through the one registry (:mod:`.registry`)::

    create_backend("auto", "dna_b0.safetensors", device="auto", fp16=False, precision="auto")   # -> a Backend
    list_backends()                     # ["auto", "onnxruntime", "openvino", "torch"]
    register_backend("mine", factory)   # factory(checkpoint, device=..., fp16=...[, precision=...]) -> a Backend
    select_backend("cpu", "dna_b0.onnx")   # what "auto" picks: Selection(backend, precision, reason)

Implementations: :class:`TorchBackend` (:mod:`.torch_backend`: eager, ``torch.compile``, CUDA graphs; fp32, bf16,
fp16), :class:`OnnxBackend` (:mod:`.onnx_backend`: an exported ``.onnx``, fp32 or int8, or a checkpoint exported
in memory; CPU or CUDA execution provider) and :class:`OpenVinoBackend` (:mod:`.openvino_backend`: CPU; fp32,
bf16 where native, int8 from an NNCF IR). The ``auto`` rule is :mod:`.selection`. Built-in backends also have
``precision`` (what runs) and ``reason`` (why, one line).
"""
from dna_depth_core.backends.base import Backend, check_input, is_onnx_source, load_network, resolve_device
from dna_depth_core.backends.onnx_backend import (
    X64_QUANT_PRECISION,
    OnnxBackend,
    available_providers,
    default_providers,
    int8_needs_exact_kernels,
    onnxruntime_available,
    onnxruntime_backend_factory,
    session_options,
)
from dna_depth_core.backends.openvino_backend import (
    OpenVinoBackend,
    int8_exact_here,
    openvino_available,
    openvino_backend_factory,
)
from dna_depth_core.backends.registry import (
    AUTO,
    BACKENDS,
    PRECISIONS,
    BackendFactory,
    auto_backend_factory,
    create_backend,
    list_backends,
    recommended_backend,
    register_backend,
)
from dna_depth_core.backends.selection import Selection, guard_records, guard_verdict, select_backend
from dna_depth_core.backends.torch_backend import CPU_CHANNELS_LAST, TorchBackend, torch_backend_factory

__all__ = [
    "AUTO",
    "BACKENDS",
    "Backend",
    "BackendFactory",
    "CPU_CHANNELS_LAST",
    "OnnxBackend",
    "OpenVinoBackend",
    "PRECISIONS",
    "Selection",
    "TorchBackend",
    "X64_QUANT_PRECISION",
    "auto_backend_factory",
    "available_providers",
    "check_input",
    "create_backend",
    "default_providers",
    "guard_records",
    "guard_verdict",
    "int8_exact_here",
    "int8_needs_exact_kernels",
    "is_onnx_source",
    "list_backends",
    "load_network",
    "onnxruntime_available",
    "onnxruntime_backend_factory",
    "openvino_available",
    "openvino_backend_factory",
    "recommended_backend",
    "register_backend",
    "resolve_device",
    "select_backend",
    "session_options",
    "torch_backend_factory",
]
