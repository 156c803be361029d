"""The accuracy guard of a reduced-precision path: on real frames with ground truth, its AbsRel must stay within
:data:`ABS_REL_TOL` and its a1 within :data:`A1_TOL` of the fp32 path's, or ``backend: auto`` does not offer it.

>>> data = [kitti_guard_data("../shared/data/kitti_tiny"), synthetic_guard_data(40, seed=1)]
>>> record = run_guard("model_int8.xml", data, reference="model.onnx")       # path openvino:int8
>>> record["passed"], record["datasets"]["kitti_tiny"]["d_abs_rel"]
>>> write_guard_record("model_int8.xml", record)      # dna_depth.guard in the file: what `auto` reads

Protocol (the project's evaluation, :func:`dna_depth_core.evaluation.evaluate_depth`): every frame goes through
:class:`~dna_depth_core.inference.DepthEstimator` (the deployment's preprocessing and resize, relative depth at the
input resolution) for the path and for the fp32 reference, both at the path's input size; median scaling, depth
capped to [1e-3, 80] m; the Eigen crop on KITTI frames, the whole image on synthetic ones (sky excluded: no depth);
metrics averaged over frames. Deltas are path minus fp32; ``mean_rel_disp_diff`` is the mean |d disparity| /
disparity over all pixels.

The reference defaults to the model itself at fp32 (bf16 paths); an int8 file needs its fp32 source
(``reference``: the fp32 ``.onnx`` or the checkpoint), run on onnxruntime at fp32 (the reference runtime; any fp32
backend reproduces torch within 1e-4).
"""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dna_depth_core import machine
from dna_depth_core.backends import guard_records
from dna_depth_core.data.synthetic import synthetic_frames
from dna_depth_core.evaluation.ground_truth import load_gt_depth
from dna_depth_core.evaluation.metrics import aggregate, evaluate_depth
from dna_depth_core.inference import DepthEstimator
from dna_depth_core.io.onnx_format import read_onnx_metadata, update_onnx_metadata
from dna_depth_core.io.openvino_format import is_ir_source, read_ir_metadata, update_ir_metadata
from dna_depth_core.preprocess import load_image

#: Largest |AbsRel(path) - AbsRel(fp32)| and |a1(path) - a1(fp32)| a path may show on every data set.
ABS_REL_TOL = 0.002
A1_TOL = 0.005


@dataclass
class GuardData:
    """Frames with ground truth for the guard: ``images`` (H, W, 3) uint8 RGB, ``gts`` (H, W) metres (0 = none),
    ``crop``: apply the Eigen crop (KITTI frames)."""

    name: str
    images: list[np.ndarray]
    gts: list[np.ndarray]
    crop: bool
    description: str = ""
    files: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.images or len(self.images) != len(self.gts):
            raise ValueError(f"guard data {self.name}: {len(self.images)} images and {len(self.gts)} ground-truth "
                             f"maps (need the same number, at least one)")


def kitti_guard_data(root: str | os.PathLike, camera: str = "image_02") -> GuardData:
    """Every frame of every drive of a KITTI-layout folder (``DATE/DATE_drive_XXXX_sync/image_02/data/*.png``),
    with its ground truth (:func:`dna_depth_core.evaluation.load_gt_depth`: velodyne, projected depth, ...): e.g.
    ``../shared/data/kitti_tiny`` (7 frames with projected LiDAR)."""
    root = Path(root)
    files = sorted(root.glob(f"*/*_sync/{camera}/data/*.png"))
    if not files:
        raise FileNotFoundError(f"guard data: no KITTI frames under {root} (expected DATE/DATE_drive_XXXX_sync/"
                                f"{camera}/data/*.png)")
    side = {"image_02": "l", "image_03": "r"}[camera]
    images, gts = [], []
    for f in files:
        folder = f.parent.parent.parent.relative_to(root).as_posix()
        images.append(load_image(f))
        gts.append(load_gt_depth(str(root), f"{folder} {int(f.stem)} {side}")[0])
    return GuardData("kitti_tiny" if root.name == "kitti_tiny" else f"kitti:{root.name}", images, gts, crop=True,
                     description=f"{len(files)} KITTI frames of {root} (LiDAR ground truth, Eigen crop)",
                     files=[str(f.relative_to(root)) for f in files])


def synthetic_guard_data(frames: int = 40, seed: int = 1, width: int = 640, height: int = 192,
                         every: int = 2) -> GuardData:
    """A synthetic street drive (:func:`dna_depth_core.data.synthetic.synthetic_frames`) with its exact depth: a
    held-out drive for a network trained on other seeds (the synthetic recipe trains on seeds 3-6; seed 0 is the
    demo bag's)."""
    out = synthetic_frames(frames, width, height, seed=seed, every=every, ss=1)
    return GuardData(f"synthetic_seed{seed}", [rgb for rgb, _, _ in out], [d for _, _, d in out], crop=False,
                     description=f"{frames} frames (every {every}) of the synthetic drive of seed {seed}, "
                                 f"{width}x{height}, exact depth, whole image")


def split_path(path: str) -> tuple[str, str]:
    """``"openvino:int8"`` -> ``("openvino", "int8")``; ValueError for anything else."""
    backend, sep, precision = str(path).partition(":")
    if not sep or precision not in ("fp32", "bf16", "int8") or not backend:
        raise ValueError(f"path '{path}': expected BACKEND:PRECISION, e.g. openvino:int8, onnxruntime:int8, "
                         f"openvino:bf16")
    return backend, precision


def model_metadata(model: Any) -> dict[str, str]:
    """The ``dna_depth.*`` metadata of a model file (``.onnx`` or IR ``.xml``); ``{}`` for anything else."""
    if is_ir_source(model):
        return read_ir_metadata(model)
    if isinstance(model, (bytes, bytearray)) or (isinstance(model, (str, os.PathLike))
                                                 and os.fspath(model).endswith(".onnx")):
        return read_onnx_metadata(model)
    return {}


def default_path(model: Any) -> str:
    """The reduced path a model file stands for: ``openvino:int8`` for an int8 IR, ``onnxruntime:int8`` for an
    int8 ``.onnx``; ValueError for an fp32 model (give the path, e.g. ``openvino:bf16``)."""
    meta = model_metadata(model)
    if meta.get("precision") == "int8":
        return "openvino:int8" if is_ir_source(model) else "onnxruntime:int8"
    raise ValueError(f"{model}: an fp32 model; name the reduced path to guard (e.g. openvino:bf16)")


def evaluate_path(estimator: DepthEstimator, data: GuardData) -> dict[str, Any]:
    """Metrics of one estimator on one data set: the averaged metrics plus ``frames``, ``per_frame_abs_rel`` and
    ``disparities`` (the network's disparity per frame, at the input resolution)."""
    per_frame, disps = [], []
    for image, gt in zip(data.images, data.gts):
        res = estimator.predict(image)
        errors, _ = evaluate_depth(gt, res.depth, scaling="median", crop=data.crop)
        per_frame.append(errors)
        disps.append(res.disparity)
    out: dict[str, Any] = aggregate(per_frame)
    out.update(frames=len(per_frame), per_frame_abs_rel=[e["abs_rel"] for e in per_frame], disparities=disps)
    return out


def _compare(ref: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    d_abs, d_a1 = got["abs_rel"] - ref["abs_rel"], got["a1"] - ref["a1"]
    dd = np.concatenate([np.abs(g - r).ravel() for g, r in zip(got["disparities"], ref["disparities"])])
    rr = np.concatenate([r.ravel() for r in ref["disparities"]])
    ok = np.isfinite(dd) & np.isfinite(rr) & (rr > 0)
    return {"frames": got["frames"],
            "fp32": {"abs_rel": round(ref["abs_rel"], 5), "a1": round(ref["a1"], 5)},
            "path": {"abs_rel": round(got["abs_rel"], 5), "a1": round(got["a1"], 5)},
            "d_abs_rel": round(d_abs, 5), "d_a1": round(d_a1, 5),
            "mean_rel_disp_diff": round(float(np.mean(dd[ok] / rr[ok])), 5),
            "passed": bool(abs(d_abs) <= ABS_REL_TOL and abs(d_a1) <= A1_TOL)}


def run_guard(model: Any, data: Sequence[GuardData], path: str | None = None, reference: Any = None,
              reference_backend: str = "onnxruntime") -> dict[str, Any]:
    """The guard record of ``path`` (default :func:`default_path`) run from ``model`` on every data set.

    ``reference``: the fp32 model (checkpoint, ``.onnx``) for the comparison; default: ``model`` itself at fp32 on
    the path's backend (a bf16 path). Returns ``{"path", "passed" (every data set within the tolerances),
    "tolerance", "datasets": {name: {"frames", "fp32", "path", "d_abs_rel", "d_a1", "mean_rel_disp_diff",
    "passed", "description"}}, "isa", "cpu", "date", "model", "reference", "versions"}``.
    """
    path = path or default_path(model)
    backend, precision = split_path(path)
    if not data:
        raise ValueError("guard: no data set given (KITTI frames and/or a synthetic drive)")
    candidate = DepthEstimator(model, backend=backend, precision=precision, device="cpu", output="input")
    if reference is None:
        ref = DepthEstimator(model, backend=backend, precision="fp32", device="cpu", output="input")
    else:
        ref = DepthEstimator(reference, backend=reference_backend, precision="fp32", device="cpu", output="input",
                             input_size=candidate.input_size)
    if ref.config.name != candidate.config.name:
        raise ValueError(f"guard: the reference is {ref.config.name}, the model {candidate.config.name}")
    datasets = {}
    for d in data:
        datasets[d.name] = {**_compare(evaluate_path(ref, d), evaluate_path(candidate, d)),
                            "description": d.description}
    isa = machine.cpu_isa()
    versions = machine.library_versions(("onnxruntime", "openvino", "nncf", "torch"))
    return {"path": path, "passed": all(v["passed"] for v in datasets.values()),
            "tolerance": {"abs_rel": ABS_REL_TOL, "a1": A1_TOL}, "datasets": datasets,
            "backend_reason": candidate.backend_reason, "isa": isa.name, "cpu": isa.model,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": _name(model), "reference": _name(reference) if reference is not None else "the model at fp32",
            "input_size": "x".join(map(str, candidate.input_size)), "versions": versions}


def _name(source: Any) -> str:
    return os.path.basename(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else type(source).__name__


def write_guard_record(model: str | os.PathLike, record: dict[str, Any]) -> None:
    """Store ``record`` under its path in the model file's ``dna_depth.guard`` metadata (other paths' records are
    kept): what ``backend: auto`` reads (:func:`dna_depth_core.backends.guard_verdict`)."""
    records = guard_records(model_metadata(model))
    records[record["path"]] = {k: v for k, v in record.items() if k != "path"}
    update = {"guard": json.dumps(records, sort_keys=True)}
    if is_ir_source(model):
        update_ir_metadata(model, update)
    elif os.fspath(model).endswith(".onnx"):
        update_onnx_metadata(model, update)
    else:
        raise ValueError(f"{model}: a guard record is stored in an .onnx or OpenVINO .xml model file")


def format_guard(record: dict[str, Any]) -> str:
    """The record as a few text lines: one per data set, then the verdict."""
    lines = [f"accuracy guard of {record['path']} ({record['model']} vs {record['reference']}, "
             f"{record['input_size']}, {record['isa']}): tolerance |d AbsRel| <= {ABS_REL_TOL}, |d a1| <= {A1_TOL}"]
    for name, d in record["datasets"].items():
        lines.append(f"  {name} ({d['frames']} frames): AbsRel {d['fp32']['abs_rel']:.4f} -> {d['path']['abs_rel']:.4f}"
                     f" (d {d['d_abs_rel']:+.4f}), a1 {d['fp32']['a1']:.4f} -> {d['path']['a1']:.4f} "
                     f"(d {d['d_a1']:+.4f}), mean |d disp|/disp {100 * d['mean_rel_disp_diff']:.2f} %: "
                     + ("pass" if d["passed"] else "FAIL"))
    lines.append("passed: auto may offer it" if record["passed"] else "FAILED: auto will not offer it")
    return "\n".join(lines)


__all__ = ["A1_TOL", "ABS_REL_TOL", "GuardData", "default_path", "evaluate_path", "format_guard",
           "kitti_guard_data", "model_metadata", "run_guard", "split_path", "synthetic_guard_data",
           "write_guard_record"]
