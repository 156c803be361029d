"""ONNX export of a depth network, self-describing and verified against torch.

>>> report = export_onnx("dna_b0.safetensors", "dna_b0.onnx")            # static 1x3x192x640 (the checkpoint's size)
>>> report = export_onnx(net, "dna_b0_dyn.onnx", dynamic=True)           # batch, height, width dynamic
>>> report.max_abs_diff                                                   # onnxruntime vs torch, scale-0 disparity

The graph:

- input ``image``: ``(B, 3, H, W)`` float32 in [0, 1] (the input normalisation is inside the graph, as in
  ``DepthNet``); H and W must be multiples of 32.
- output ``disparity``: ``(B, 1, H, W)`` float32, the scale-0 sigmoid disparity. With ``all_scales=True`` also
  ``disparity_1``, ``disparity_2``, ``disparity_3`` (1/2, 1/4, 1/8 resolution).
- ``metadata_props`` (all strings): ``dna_depth.format`` (``dna-depth-onnx/1``), ``dna_depth.config`` (the
  DepthConfig JSON of the checkpoint: model name, encoder, decoder, normalisation, training size, depth range),
  ``dna_depth.input_size`` (``HxW`` exported at; with ``dynamic`` any multiple of 32 is accepted),
  ``dna_depth.dynamic`` (``true``/``false``; ``batch`` when only the batch is dynamic), ``dna_depth.outputs`` (comma-separated output names),
  ``dna_depth.provenance`` (JSON: the source checkpoint's provenance, when exported from a file),
  ``dna_depth.exporter`` (torch version, opset). :func:`read_onnx_metadata` and :func:`config_from_onnx` read them.

The TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``) is used: it needs no ``onnxscript`` and
handles the TF-"same" paddings (constant for every multiple-of-32 input, so a dynamic graph stays exact). Files are
written atomically.

int8 for the CPU (:func:`quantize_onnx_int8`, ``dna-depth export-onnx --int8 --calibration DIR``): onnxruntime static
quantisation in QDQ format of a static fp32 export: weights int8 symmetric per output channel, activations uint8
asymmetric per tensor (U8S8, what onnxruntime's x86 kernels run fastest; no range reduction, the target CPU has
AVX512-VNNI), MinMax ranges from calibration images that are prepared exactly as ``DepthEstimator`` prepares
camera images (:func:`dna_depth_core.inference.image_to_input`). By default the last convolution and the sigmoid
of each output stay float, so the disparity is not rounded to 8 bits. Same input and outputs as the fp32 graph; the
metadata is the fp32 model's plus ``dna_depth.precision`` (``int8``; absent means fp32),
``dna_depth.calibration_images`` (how many) and ``dna_depth.quantization`` (JSON: scheme, calibration files, float
nodes, onnxruntime version). :class:`dna_depth_core.backends.OnnxBackend` loads it like any export.
"""
from __future__ import annotations

import dataclasses
import glob
import io
import json
import logging
import os
import tempfile
import time
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from dna_depth_core.models.depth_net import DepthConfig, DepthNet

ONNX_FORMAT = "dna-depth-onnx/1"
DEFAULT_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("disparity", "disparity_1", "disparity_2", "disparity_3")
META_PREFIX = "dna_depth."


@dataclasses.dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how well onnxruntime reproduces torch."""

    path: str
    model: str
    height: int
    width: int
    dynamic: bool
    all_scales: bool
    opset: int
    outputs: tuple[str, ...]
    size_bytes: int
    seconds: float
    # Verification (None when skipped): the largest |onnxruntime - torch| over the scale-0 disparity, per checked
    # input size "HxW" (batch 2 when dynamic, else batch 1).
    max_abs_diff: float | None = None
    checked: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _ExportWrapper(nn.Module):
    """The depth network with the graph's outputs: scale 0 only, or all four scales."""

    def __init__(self, net: DepthNet, all_scales: bool):
        super().__init__()
        self.net = net
        self.all_scales = all_scales

    def forward(self, image: torch.Tensor):
        disps = self.net(image)
        return tuple(disps) if self.all_scales else disps[0]


def _load_net(source: Any) -> tuple[DepthNet, dict[str, Any]]:
    """A DepthNet (eval mode, CPU, fp32) and provenance from a network or a checkpoint path."""
    if isinstance(source, nn.Module):
        if not isinstance(getattr(source, "config", None), DepthConfig):
            raise ValueError("net: expected a dna_depth_core DepthNet (a module with a DepthConfig 'config')")
        return source, {}
    from dna_depth_core.io.checkpoint import checkpoint_metadata, load_checkpoint

    path = os.fspath(source)
    net = load_checkpoint(path, map_location="cpu")
    meta = checkpoint_metadata(path)
    prov = {"checkpoint": os.path.basename(path), "provenance": meta.get("provenance", {})}
    return net, prov


def _check_size(height: int, width: int) -> None:
    for name, v in (("height", height), ("width", width)):
        if int(v) != v or v <= 0 or v % 32:
            raise ValueError(f"{name}: {v} is not a positive multiple of 32")


def export_to_bytes(net: DepthNet, height: int | None = None, width: int | None = None, dynamic: bool = False,
                    all_scales: bool = False, opset: int = DEFAULT_OPSET,
                    provenance: dict[str, Any] | None = None, dynamic_batch: bool = False,
                    batch: int = 1) -> bytes:
    """Serialised ONNX model of ``net`` (see the module docstring for the graph and its metadata).

    ``height``/``width`` default to ``net.config``'s; with ``dynamic`` they only set the tracing size.
    ``dynamic_batch`` makes only the batch dimension dynamic (``dynamic`` implies it); otherwise the graph's batch
    is ``batch``.
    """
    import onnx

    if opset < 17:
        raise ValueError(f"opset: {opset} is too old, use 17 or newer")
    cfg = net.config
    height = int(cfg.height if height is None else height)
    width = int(cfg.width if width is None else width)
    _check_size(height, width)
    outputs = OUTPUT_NAMES if all_scales else OUTPUT_NAMES[:1]
    was_training = net.training
    net = net.eval()
    param = next(net.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        raise ValueError("net: export a CPU float32 network (call net.float().cpu() first)")
    wrapper = _ExportWrapper(net, all_scales).eval()
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch: {batch} is not a positive integer")
    dummy = torch.rand(int(batch), 3, height, width, generator=torch.Generator().manual_seed(0))
    dynamic_axes = None
    if dynamic:
        dynamic_axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
        for i, name in enumerate(outputs):
            dynamic_axes[name] = {0: "batch", 2: "height" if i == 0 else f"height_{i}",
                                  3: "width" if i == 0 else f"width_{i}"}
    elif dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings about shape checks and the legacy-exporter notice
            torch.onnx.export(wrapper, (dummy,), buf, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=list(outputs), dynamic_axes=dynamic_axes,
                              do_constant_folding=True)
    finally:
        net.train(was_training)
    model = onnx.load_from_string(buf.getvalue())
    meta = {
        "format": ONNX_FORMAT,
        "config": cfg.to_json(),
        "input_size": f"{height}x{width}",
        "dynamic": "true" if dynamic else ("batch" if dynamic_batch else "false"),
        "outputs": ",".join(outputs),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
        "exporter": json.dumps({"torch": torch.__version__, "onnx": onnx.__version__, "opset": opset}),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    model.producer_name = "dna-depth"
    model.doc_string = (f"dna-depth {cfg.name}: image (B,3,H,W) float32 in [0,1] -> disparity (B,1,H,W) sigmoid; "
                        f"depth = 1 / (1/{cfg.max_depth} + (1/{cfg.min_depth} - 1/{cfg.max_depth}) * disparity)")
    onnx.checker.check_model(model)
    return model.SerializeToString()


def export_onnx(source: Any, out_path: str | os.PathLike, height: int | None = None, width: int | None = None,
                dynamic: bool = False, all_scales: bool = False, opset: int = DEFAULT_OPSET,
                verify: bool = True, atol: float = 1e-4, batch: int = 1) -> ExportReport:
    """Export a checkpoint (path) or a DepthNet to ``out_path`` and (``verify``) check it with onnxruntime.

    Verification runs onnxruntime (CPU) and torch on the same seeded input in [0, 1] and records the largest
    absolute difference of the scale-0 disparity; with ``dynamic`` it checks the export size and a second size
    (+64 rows, +128 columns) at batch 2. ``batch``: the batch size of a static graph. A difference above ``atol`` raises RuntimeError (the file is kept so it
    can be inspected).
    """
    from dna_depth_core.io.atomic import atomic_write

    t0 = time.perf_counter()
    net, provenance = _load_net(source)
    cfg = net.config
    height = int(cfg.height if height is None else height)
    width = int(cfg.width if width is None else width)
    data = export_to_bytes(net, height, width, dynamic=dynamic, all_scales=all_scales, opset=opset,
                           provenance=provenance, batch=batch)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    out_path = os.fspath(out_path)
    atomic_write(out_path, write)
    set_default_mode(out_path)
    outputs = OUTPUT_NAMES if all_scales else OUTPUT_NAMES[:1]
    report = ExportReport(path=os.path.abspath(out_path), model=cfg.name, height=height, width=width,
                          dynamic=dynamic, all_scales=all_scales, opset=opset, outputs=tuple(outputs),
                          size_bytes=len(data), seconds=0.0)
    if verify:
        sizes = [(1 if dynamic else batch, height, width)]
        if dynamic:
            sizes.append((2, height + 64, width + 128))
        report.checked = verify_onnx(out_path, net, sizes)
        report.max_abs_diff = max(report.checked.values())
        if report.max_abs_diff > atol:
            raise RuntimeError(f"export {out_path}: onnxruntime differs from torch by {report.max_abs_diff:.3g} "
                               f"(> {atol:g}) on the scale-0 disparity")
    report.seconds = time.perf_counter() - t0
    return report


def set_default_mode(path: str) -> None:
    """Give a file written through a temporary file (mode 0600) the usual mode, 0666 minus the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def verify_onnx(onnx_path: str | os.PathLike | bytes, net: DepthNet,
                sizes: list[tuple[int, int, int]] | None = None, seed: int = 0) -> dict[str, float]:
    """``{"BxHxW": max |onnxruntime - torch|}`` of the scale-0 disparity for each ``(batch, height, width)``.

    Runs onnxruntime on the CPU (fp32) with default optimisations, i.e. what :class:`OnnxBackend` runs.
    """
    from dna_depth_core.backends import OnnxBackend

    cfg = net.config
    sizes = sizes or [(1, cfg.height, cfg.width)]
    backend = OnnxBackend(onnx_path, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, float] = {}
    net = net.eval()
    for b, h, w in sizes:
        x = torch.rand(b, 3, h, w, generator=gen)
        with torch.inference_mode():
            ref = net(x)[0].numpy()
        got = backend(x.numpy())
        out[f"{b}x{h}x{w}"] = float(np.max(np.abs(got.astype(np.float64) - ref)))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Reading an exported file back
# ----------------------------------------------------------------------------------------------------------------
def check_onnx_file(path: str | os.PathLike) -> str:
    """Raise FileNotFoundError/ValueError naming the problem unless ``path`` is a readable ONNX file; returns it."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"ONNX model not found: {path}")
    if not os.path.isfile(path):
        raise ValueError(f"ONNX model {path}: not a file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"ONNX model {path}: file is empty")
    return path


def _load_model_proto(path_or_bytes: str | os.PathLike | bytes):
    import onnx

    if isinstance(path_or_bytes, (bytes, bytearray)):
        what, loader = "<bytes>", lambda: onnx.load_from_string(bytes(path_or_bytes))
    else:
        what = check_onnx_file(path_or_bytes)
        loader = lambda: onnx.load(what, load_external_data=False)  # noqa: E731
    try:
        return loader()
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ValueError(f"ONNX model {what}: corrupt or truncated, not a readable ONNX file "
                         f"({type(exc).__name__}: {exc})") from exc


def read_onnx_metadata(path_or_bytes: str | os.PathLike | bytes) -> dict[str, str]:
    """The ``dna_depth.*`` metadata of an exported model, without the prefix (empty for foreign ONNX files)."""
    model = _load_model_proto(path_or_bytes)
    return {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}


def config_from_onnx_metadata(meta: dict[str, str], what: str = "<onnx>") -> DepthConfig:
    if meta.get("format") != ONNX_FORMAT:
        raise ValueError(f"ONNX model {what}: not a dna-depth export (metadata dna_depth.format="
                         f"{meta.get('format')!r}, expected {ONNX_FORMAT!r}); export it with `dna-depth export-onnx`")
    try:
        return DepthConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"ONNX model {what}: missing or corrupt dna_depth.config metadata ({exc})") from exc


def config_from_onnx(path_or_bytes: str | os.PathLike | bytes) -> DepthConfig:
    """The DepthConfig recorded in an exported model (raises ValueError for a foreign or corrupt file)."""
    what = "<bytes>" if isinstance(path_or_bytes, (bytes, bytearray)) else os.fspath(path_or_bytes)
    return config_from_onnx_metadata(read_onnx_metadata(path_or_bytes), what)


# ----------------------------------------------------------------------------------------------------------------
# int8: onnxruntime static quantisation (QDQ) calibrated on images
# ----------------------------------------------------------------------------------------------------------------
#: File name endings taken as images when a calibration folder or glob pattern is searched (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
#: Calibration images used when more are found (spread evenly over the sorted list): calibration costs one forward
#: pass of the fp32 network per image.
DEFAULT_CALIBRATION_COUNT = 64
_GLOB_CHARS = "*?["


def _images_in_folder(folder: str) -> list[str]:
    errors: list[OSError] = []
    found: list[str] = []
    for root, dirs, files in os.walk(folder, onerror=errors.append):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if errors and not found:
        e = errors[0]
        raise ValueError(f"calibration folder {folder}: cannot be read ({type(e).__name__}: {e.strerror or e})")
    if not found:
        raise ValueError(f"calibration folder {folder}: no image file ({', '.join(IMAGE_EXTENSIONS)}) in it or "
                         f"below it")
    return found


def find_calibration_images(source: Any, count: int | None = DEFAULT_CALIBRATION_COUNT) -> list[Any]:
    """The calibration images named by ``source``: a folder (searched recursively for :data:`IMAGE_EXTENSIONS`),
    a glob pattern (``"frames/*.png"``, ``"**"`` recursive), an image file, an ``(H, W, 3)`` uint8 RGB array, or
    a list of those. Files are sorted per item; ``count`` (None: all) keeps that many, spread evenly over the list.

    Raises FileNotFoundError for a path that does not exist, ValueError when nothing usable is found (an empty
    list, a pattern that matches no image, a folder without images or that cannot be read) or ``count`` < 1.
    """
    if count is not None and (int(count) != count or count < 1):
        raise ValueError(f"calibration count: {count} is not a positive integer")
    items = [source] if isinstance(source, (str, os.PathLike, np.ndarray)) else list(source or [])
    if not items:
        raise ValueError("calibration: no calibration images given (a folder, a glob pattern or image files)")
    found: list[Any] = []
    for item in items:
        if isinstance(item, np.ndarray):
            found.append(item)
            continue
        path = os.fspath(item)
        if not path:
            raise ValueError("calibration: an empty path was given")
        if os.path.isdir(path):
            found += _images_in_folder(path)
        elif os.path.isfile(path):
            found.append(path)  # named explicitly: used whatever its ending (an unreadable one fails when loaded)
        elif any(c in path for c in _GLOB_CHARS):
            matches = [m for m in sorted(glob.glob(path, recursive=True))
                       if os.path.isfile(m) and m.lower().endswith(IMAGE_EXTENSIONS)]
            if not matches:
                raise ValueError(f"calibration: the pattern {path!r} matches no image file "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
            found += matches
        else:
            raise FileNotFoundError(f"calibration images not found: {path} (give a folder, a glob pattern or image "
                                    f"files)")
    if count is not None and len(found) > count:
        keep = np.unique(np.round(np.linspace(0, len(found) - 1, int(count))).astype(int))
        found = [found[i] for i in keep]
    return found


def _calibration_rgb(image: Any) -> np.ndarray:
    """An image file or array as ``(H, W, 3)`` uint8 RGB, or ValueError naming what is wrong."""
    if isinstance(image, np.ndarray):
        a = image[..., None] if image.ndim == 2 else image
        if a.ndim != 3 or a.shape[2] not in (1, 3) or a.dtype != np.uint8 or 0 in a.shape:
            raise ValueError(f"calibration image: expected an (H, W, 3) uint8 RGB array, got {image.shape} "
                             f"{image.dtype}")
        return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a
    import cv2

    path = os.fspath(image)
    bgr = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
    if bgr is None:
        raise ValueError(f"calibration image {path}: missing or unreadable (not an image file OpenCV can decode)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ImageCalibrationReader:
    """An onnxruntime ``CalibrationDataReader`` (registered as one) over calibration images.

    Each image is read (RGB), resized to ``height`` x ``width`` and scaled to [0, 1] by
    :func:`dna_depth_core.inference.image_to_input`, i.e. exactly what :class:`DepthEstimator` feeds the graph
    (the input normalisation is inside the graph). ``batch`` > 1 (a static-batch graph) groups the images,
    repeating the first ones to fill the last batch. All images are loaded up front, so an unreadable file fails
    here, before any calibration run.
    """

    def __init__(self, images: Sequence[Any], height: int, width: int, input_name: str = INPUT_NAME,
                 batch: int = 1):
        from dna_depth_core.inference import image_to_input

        images = list(images)
        if not images:
            raise ValueError("calibration: no calibration images")
        self.input_name = input_name
        self.height, self.width = int(height), int(width)
        self.names = [f"<array {i}>" if isinstance(im, np.ndarray) else os.fspath(im) for i, im in enumerate(images)]
        xs = [image_to_input(_calibration_rgb(im), self.height, self.width) for im in images]
        batch = max(1, int(batch))
        while len(xs) % batch:
            xs.append(xs[len(xs) % len(images)])
        self.batches = [np.concatenate(xs[i:i + batch]) for i in range(0, len(xs), batch)]
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.batches):
            return None
        self._next += 1
        return {self.input_name: self.batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def set_range(self, start_index: int, end_index: int) -> None:
        self.batches = self.batches[start_index:end_index]
        self._next = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        self.rewind()
        return iter(self.get_next, None)


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
    import inspect
    from pathlib import Path

    import onnxruntime as ort
    from onnxruntime import quantization as oq

    if "calibration_cache_path" not in inspect.signature(oq.quantize_static).parameters or not hasattr(
            oq, "save_tensors_data"):
        return None
    from dna_depth_core.backends import session_options

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


def quantize_onnx_int8(source: Any, out_path: str | os.PathLike, calibration: Any,
                       count: int | None = DEFAULT_CALIBRATION_COUNT, per_channel: bool = True,
                       keep_output_float: bool = True, threads: int | None = None, verify: bool = True,
                       verify_images: int = 4) -> Int8Report:
    """Quantise a static fp32 dna-depth ONNX export to int8 (onnxruntime static quantisation, QDQ) and write it
    atomically to ``out_path``.

    Args:
        source: the fp32 ``.onnx`` file (or its bytes) written by :func:`export_onnx`; a ``.safetensors``
            checkpoint or a DepthNet is exported first (static, at its config's size).
        calibration: images for the activation ranges, see :func:`find_calibration_images` (folder, glob
            pattern, files, uint8 RGB arrays). Use frames like the deployment's (same camera, scenes, lighting).
        count: at most this many calibration images, spread evenly over the sorted list (None: all).
        per_channel: int8 weights per output channel (True) or per tensor.
        keep_output_float: leave the last convolution and sigmoid of each output in float.
        threads: onnxruntime intra-op threads for calibration and the check (default: the usable cores).
        verify: run fp32 and int8 on the first ``verify_images`` calibration inputs and record the disparity
            differences (non-finite output raises RuntimeError).

    The calibration images are resized to the graph's input size, so a model with dynamic height/width is refused
    (ValueError): export a static model at the deployment size. A dynamic batch is fine (calibrated at batch 1).
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime import quantization as oq

    from dna_depth_core.backends import OnnxBackend, session_options, usable_cpus
    from dna_depth_core.io.atomic import atomic_write

    t0 = time.perf_counter()
    oq.CalibrationDataReader.register(ImageCalibrationReader)
    threads = int(threads or usable_cpus())
    if isinstance(source, nn.Module) or (isinstance(source, (str, os.PathLike))
                                         and os.fspath(source).endswith(".safetensors")):
        net, provenance = _load_net(source)
        what = "<DepthNet>" if isinstance(source, nn.Module) else os.fspath(source)
        data = export_to_bytes(net.float().cpu(), provenance=provenance)
    elif isinstance(source, (bytes, bytearray)):
        what, data = "<bytes>", bytes(source)
    else:
        what = check_onnx_file(source)
        with open(what, "rb") as f:
            data = f.read()
    model = _load_model_proto(data)
    meta = {p.key[len(META_PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(META_PREFIX)}
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
    reader = ImageCalibrationReader(images, height, width, inp.name, batch)
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
                               op_types_to_quantize=op_types, per_channel=per_channel, reduce_range=False,
                               activation_type=oq.QuantType.QUInt8, weight_type=oq.QuantType.QInt8,
                               nodes_to_exclude=float_nodes, calibrate_method=oq.CalibrationMethod.MinMax,
                               **({"calibration_cache_path": cache} if cache else {}))
        qmodel = onnx.load(out_tmp)
    n_images = len(reader.names)
    quant = {
        "dtype": "int8", "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
        "weights": "int8 symmetric " + ("per output channel" if per_channel else "per tensor"),
        "activations": "uint8 asymmetric per tensor", "calibration": "MinMax", "calibration_images": n_images,
        "calibration_files": [os.path.basename(n) for n in reader.names], "input_size": f"{height}x{width}",
        "preprocess": "dna_depth_core.inference.image_to_input (resize, /255; normalisation in the graph)",
        "float_nodes": float_nodes, "onnxruntime": ort.__version__,
    }
    kept = [(p.key, p.value) for p in qmodel.metadata_props if not p.key.startswith(META_PREFIX)]
    entries = [(p.key, p.value) for p in model.metadata_props if p.key.startswith(META_PREFIX)]
    entries += [(META_PREFIX + "precision", "int8"), (META_PREFIX + "calibration_images", str(n_images)),
                (META_PREFIX + "quantization", json.dumps(quant, sort_keys=True))]
    del qmodel.metadata_props[:]
    for key, value in kept + entries:
        entry = qmodel.metadata_props.add()
        entry.key, entry.value = key, value
    qmodel.producer_name = "dna-depth"
    qmodel.doc_string = (model.doc_string + f" | int8 (onnxruntime static QDQ, U8S8, {n_images} calibration "
                         f"images)").lstrip(" |")
    onnx.checker.check_model(qmodel)
    qdata = qmodel.SerializeToString()
    report = Int8Report(path=os.path.abspath(os.fspath(out_path)), source=what, model=cfg.name, height=height,
                        width=width, calibration_images=n_images, calibration_files=reader.names,
                        per_channel=per_channel, float_nodes=float_nodes, size_bytes=len(qdata),
                        fp32_size_bytes=len(data), seconds=0.0)
    if verify:
        fp32 = OnnxBackend(data, providers=["CPUExecutionProvider"], threads=threads)
        int8 = OnnxBackend(qdata, providers=["CPUExecutionProvider"], threads=threads)
        diffs, rels = [], []
        reader.rewind()
        for _, batch_in in zip(range(max(1, int(verify_images))), reader):
            x = batch_in[inp.name]
            ref, got = fp32(x).astype(np.float64), int8(x).astype(np.float64)
            if got.shape != ref.shape or not np.all(np.isfinite(got)):
                raise RuntimeError(f"int8 model of {what}: non-finite or misshaped disparity on calibration input")
            d = np.abs(got - ref)
            diffs.append(d.ravel())
            rels.append((d / np.maximum(np.abs(ref), 1e-12)).ravel())
        d, r = np.concatenate(diffs), np.concatenate(rels)
        report.checked_images = len(diffs) * batch
        report.max_abs_diff, report.mean_abs_diff = float(d.max()), float(d.mean())
        report.mean_rel_diff = float(r.mean())

    def write(tmp_path: str) -> None:
        with open(tmp_path, "wb") as f:
            f.write(qdata)

    atomic_write(os.fspath(out_path), write)
    set_default_mode(os.fspath(out_path))
    report.seconds = time.perf_counter() - t0
    return report


__all__ = [
    "DEFAULT_CALIBRATION_COUNT",
    "DEFAULT_OPSET",
    "ExportReport",
    "IMAGE_EXTENSIONS",
    "INPUT_NAME",
    "ImageCalibrationReader",
    "Int8Report",
    "ONNX_FORMAT",
    "OUTPUT_NAMES",
    "check_onnx_file",
    "config_from_onnx",
    "export_onnx",
    "export_to_bytes",
    "find_calibration_images",
    "quantize_onnx_int8",
    "read_onnx_metadata",
    "verify_onnx",
]
