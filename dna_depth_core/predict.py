"""Offline prediction over image files: colourised disparity PNGs and float32 depth ``.npy`` files."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dna_depth_core.data.kitti import load_image
from dna_depth_core.geometry import disp_to_depth
from dna_depth_core.models.depth_net import DepthNet
from dna_depth_core.visualize import colorize_disparity

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def find_images(path: str | os.PathLike) -> list[Path]:
    """One image file, or the image files of a folder (recursively, sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
    raise FileNotFoundError(f"input not found: {path}")


@torch.no_grad()
def predict_disparity(net: DepthNet, rgb: np.ndarray, device: str | torch.device = "cpu",
                      out_size: tuple[int, int] | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> float32 sigmoid disparity at ``out_size`` = (height, width), by default the
    image's own resolution.

    The image is resized to the network's input size (``net.config.height`` x ``width``) and the full-resolution
    disparity is resized to ``out_size`` (bilinear; it commutes with disp_to_depth's affine map to 1/depth).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w = rgb.shape[:2]
    cfg = net.config
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(cfg.height, cfg.width), mode="bilinear", align_corners=False, antialias=True)
    disp = net(x)[0]
    disp = F.interpolate(disp, size=out_size or (h, w), mode="bilinear", align_corners=False)
    return disp[0, 0].float().cpu().numpy()


@dataclass
class PredictReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def predict_paths(net: DepthNet, inputs: list[Path], out_dir: str | os.PathLike, scale: float = 1.0,
                  device: str | torch.device = "cpu", progress: bool = True) -> PredictReport:
    """For each image: ``<stem>_disp.png`` (colourised) and ``<stem>_depth.npy`` (float32 metres x ``scale``;
    self-supervised depth is up to scale unless the network was trained with metric poses).

    An unreadable image is reported and skipped; the rest are still processed. Inputs with the same file name in
    different folders keep their relative folder under ``out_dir``.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    common = Path(os.path.commonpath([str(p.parent) for p in inputs])) if inputs else Path(".")
    report = PredictReport()
    net = net.to(device).eval()
    for path in tqdm(inputs, desc="predict", unit="img", disable=not progress or len(inputs) < 2):
        try:
            rgb = load_image(path)
        except FileNotFoundError as exc:
            report.failed.append((path, str(exc)))
            tqdm.write(f"skipping {exc}")
            continue
        disp = predict_disparity(net, rgb, device)
        _, depth = disp_to_depth(disp, net.config.min_depth, net.config.max_depth)
        target = out / path.parent.relative_to(common)
        target.mkdir(parents=True, exist_ok=True)
        png, npy = target / f"{path.stem}_disp.png", target / f"{path.stem}_depth.npy"
        cv2.imwrite(str(png), cv2.cvtColor(colorize_disparity(disp), cv2.COLOR_RGB2BGR))
        np.save(npy, (depth * scale).astype(np.float32))
        report.written += [png, npy]
    return report
