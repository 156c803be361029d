"""Training samples of one bag's frames: neighbours paired by time (:func:`build_chains`), near-static targets
skipped (:func:`photometric_change` of :func:`thumbnail` s), and a split by time (:func:`make_samples`).

- Pairing: each bag's frames are linked into chains whose consecutive members are ``frame_spacing`` seconds apart
  (within ``tolerance``), whatever the camera rate (a 30 Hz camera at 0.1 s gives three interleaved chains); frame
  id ``k`` of a target is the chain member ``k`` steps away, about ``k * frame_spacing`` seconds.
- Static filter: a target whose mean absolute grey-level change to any of its source frames (images in [0, 1], on
  a ``THUMB_WIDTH``-pixel-wide thumbnail) is below ``static_threshold`` is dropped.
- Split by time: samples whose frames all lie in the last ``val_fraction`` of the bag's time span are validation;
  samples straddling the boundary are dropped.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import numpy as np

from dna_depth_core.data.rosbag.frames import BagFrames

THUMB_WIDTH = 64


def build_chains(stamps, spacing: float, tolerance: float | None = None) -> list[list[int]]:
    """Link frames (``stamps`` ns, sorted) into chains of members about ``spacing`` s apart.

    Each frame not yet used starts a chain, extended with the unused frame closest to ``t + spacing`` when it is
    within ``tolerance`` (default ``spacing / 2``). Every frame ends up in exactly one chain.
    """
    if spacing <= 0:
        raise ValueError(f"frame_spacing must be > 0, got {spacing}")
    tol = 0.5 * spacing if tolerance is None else float(tolerance)
    t = np.asarray(stamps, np.int64)
    used = np.zeros(len(t), bool)
    step, tol_ns = int(round(spacing * 1e9)), int(round(tol * 1e9))
    chains = []
    for i in range(len(t)):
        if used[i]:
            continue
        chain, cur = [i], i
        used[i] = True
        while True:
            want = t[cur] + step
            lo, hi = np.searchsorted(t, want - tol_ns, "left"), np.searchsorted(t, want + tol_ns, "right")
            cand = [j for j in range(lo, hi) if not used[j] and j > cur]
            if not cand:
                break
            nxt = min(cand, key=lambda j: (abs(int(t[j]) - int(want)), j))
            chain.append(nxt)
            used[nxt] = True
            cur = nxt
        chains.append(chain)
    return chains


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """Grey thumbnail (``THUMB_WIDTH`` wide) in [0, 1], float32, for the photometric-change test."""
    h, w = rgb.shape[:2]
    tw = min(THUMB_WIDTH, w)
    th = max(1, int(round(h * tw / w)))
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (tw, th), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def photometric_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails (:func:`thumbnail`), in [0, 1]."""
    return float(np.mean(np.abs(a - b)))


@dataclasses.dataclass(frozen=True)
class Sample:
    """One training sample: ``bag`` (index of the bag), ``target`` (index of the target among the bag's frames),
    ``frames`` (frame id -> index into the bag's frames), ``stamp`` (the target's, ns)."""

    bag: int
    target: int
    frames: dict
    stamp: int


def make_samples(frames: BagFrames, frame_ids: Sequence[int], spacing: float, static_threshold: float,
                 val_fraction: float, tolerance: float | None = None, bag_index: int = 0,
                 stats: dict | None = None) -> dict[str, list[Sample]]:
    """``{"train": [...], "val": [...]}`` samples of one bag: time pairing, static filter, split by time (module
    docstring), each part sorted by stamp. ``stats`` (when given) receives the counts: frames, triplets, static,
    straddling, train, val."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    out: dict[str, list[Sample]] = {"train": [], "val": []}
    st = {"frames": len(frames), "triplets": 0, "static": 0, "straddling": 0}
    if len(frames) == 0:
        if stats is not None:
            stats.update(st)
        return out
    t = frames.stamps
    t_split = t[0] + (1.0 - val_fraction) * (t[-1] - t[0]) if val_fraction > 0 else np.inf
    thumbs: dict[int, np.ndarray] = {}

    def thumb(i):
        if i not in thumbs:
            thumbs[i] = thumbnail(frames.images[i])
        return thumbs[i]

    for chain in build_chains(t, spacing, tolerance):
        for pos in range(len(chain)):
            if not all(0 <= pos + f < len(chain) for f in frame_ids):
                continue
            members = {f: chain[pos + f] for f in frame_ids}
            st["triplets"] += 1
            tgt = members[0]
            change = min((photometric_change(thumb(tgt), thumb(j)) for f, j in members.items() if f != 0),
                         default=np.inf)
            if change < static_threshold:
                st["static"] += 1
                continue
            times = [t[j] for j in members.values()]
            if max(times) < t_split:
                part = "train"
            elif min(times) >= t_split:
                part = "val"
            else:
                st["straddling"] += 1
                continue
            out[part].append(Sample(bag_index, tgt, members, int(t[tgt])))
    for part in out:
        out[part].sort(key=lambda s: s.stamp)
    st.update(train=len(out["train"]), val=len(out["val"]))
    if stats is not None:
        stats.update(st)
    return out


__all__ = ["Sample", "THUMB_WIDTH", "build_chains", "make_samples", "photometric_change", "thumbnail"]
