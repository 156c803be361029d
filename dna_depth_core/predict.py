"""Offline prediction over image files: colourised disparity PNGs and float32 depth ``.npy`` files, through
:class:`~dna_depth_core.inference.DepthEstimator` (the same input rule and backends as the ROS node)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from dna_depth_core.inference import DepthEstimator
from dna_depth_core.preprocess import IMAGE_SUFFIXES, load_image
from dna_depth_core.visualize import colorize_disparity

def find_images(path: str | os.PathLike) -> list[Path]:
    """One image file, or the image files of a folder (recursively, sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
    raise FileNotFoundError(f"input not found: {path}")


@dataclass
class PredictReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def predict_paths(model: Any, inputs: list[Path], out_dir: str | os.PathLike, scale: float = 1.0,
                  device: str = "cpu", backend: str = "torch", progress: bool = True) -> PredictReport:
    """For each image: ``<stem>_disp.png`` (colourised disparity, near = bright) and ``<stem>_depth.npy`` (float32,
    the image's resolution, depth x ``scale``; self-supervised depth is up to scale unless the network was trained
    with metric poses).

    Args:
        model: a :class:`DepthEstimator`, or what it takes (checkpoint path, ``.onnx``, DepthNet), run with
            ``backend`` on ``device``.

    An unreadable image is reported and skipped; the rest are still processed. Inputs with the same file name in
    different folders keep their relative folder under ``out_dir``.
    """
    estimator = model if isinstance(model, DepthEstimator) else DepthEstimator(
        model, device=device, backend=backend, output="input")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    common = Path(os.path.commonpath([str(p.parent) for p in inputs])) if inputs else Path(".")
    report = PredictReport()
    for path in tqdm(inputs, desc="predict", unit="img", disable=not progress or len(inputs) < 2):
        try:
            rgb = load_image(path)
        except FileNotFoundError as exc:
            report.failed.append((path, str(exc)))
            tqdm.write(f"skipping {exc}")
            continue
        res = estimator.predict(rgb)
        target = out / path.parent.relative_to(common)
        target.mkdir(parents=True, exist_ok=True)
        png, npy = target / f"{path.stem}_disp.png", target / f"{path.stem}_depth.npy"
        cv2.imwrite(str(png), cv2.cvtColor(colorize_disparity(res.disparity), cv2.COLOR_RGB2BGR))
        np.save(npy, (res.depth * scale).astype(np.float32))
        report.written += [png, npy]
    return report
