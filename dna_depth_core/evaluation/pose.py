"""Pose evaluation on drives with ground-truth poses (synthetic drives write ``poses.txt``)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dna_depth_core.data.kitti import SplitEntry, image_path, parse_split_line
from dna_depth_core.data.poses import read_drive_poses
from dna_depth_core.geometry import pose_vec_to_mat
from dna_depth_core.preprocess import load_image, prepare


def pose_metrics(t_pred, t_true) -> dict:
    """Agreement of predicted and true per-pair translations (``(N, 3)`` each): ``pearson_speed`` (correlation of
    the norms), ``cos_mean`` (mean cosine of the vectors), ``scale`` (median of ``|t_true| / |t_pred|``),
    ``pairs``, ``spread_ratio`` (relative spread ``std / mean`` of the predicted norms over that of the true ones:
    1 when the speed varies as much as the truth, 0 for a constant output, whose correlation means nothing).
    The correlation is nan when either set of norms is constant."""
    t_pred = np.asarray(t_pred, np.float64).reshape(-1, 3)
    t_true = np.asarray(t_true, np.float64).reshape(-1, 3)
    if t_pred.shape != t_true.shape or len(t_pred) == 0:
        raise ValueError(f"t_pred {t_pred.shape} and t_true {t_true.shape}: need the same, non-empty (N, 3)")
    n_pred, n_true = np.linalg.norm(t_pred, axis=1), np.linalg.norm(t_true, axis=1)
    eps = 1e-12
    if len(n_pred) > 1 and n_pred.std() > eps and n_true.std() > eps:
        pearson = float(np.corrcoef(n_pred, n_true)[0, 1])
    else:
        pearson = float("nan")
    cos = np.sum(t_pred * t_true, axis=1) / np.maximum(n_pred * n_true, eps)
    cv_pred = n_pred.std() / max(n_pred.mean(), eps)
    cv_true = n_true.std() / max(n_true.mean(), eps)
    return {"pearson_speed": pearson, "cos_mean": float(np.mean(cos)),
            "scale": float(np.median(n_true / np.maximum(n_pred, eps))), "pairs": int(len(t_pred)),
            "spread_ratio": float(cv_pred / cv_true) if cv_true > eps else float("nan")}


def evaluate_pose(pose_net, data_path, split_lines: Sequence, height: int, width: int, device="cpu",
                  batch_size: int = 8, return_arrays: bool = False) -> dict:
    """Translations of a pose network against a drive's ground-truth poses (``poses.txt``).

    For each split frame ``i`` whose next frame ``i + 1`` exists, the network sees the pair in temporal order,
    ``pose_net(frame_i, frame_i+1)`` (images resized to ``height`` x ``width`` as in training), exactly as the
    trainer feeds its ``+1`` source. The trainer uses that output as ``T_source_target`` (source ``i + 1``, target
    ``i``), so the true value is ``T = inv(T_world_cam[i + 1]) @ T_world_cam[i]``: a point in camera ``i`` expressed
    in camera ``i + 1``. Driving forward (+z) gives a negative ``t_z``. Both translations are the ``[:3, 3]``
    column of the 4x4 transform (``geometry.pose_vec_to_mat`` of the network's output).

    Returns :func:`pose_metrics` (``pearson_speed``, ``cos_mean``, ``scale``, ``pairs``, ``spread_ratio``); with
    ``return_arrays`` also ``t_pred`` and ``t_true`` (``(N, 3)`` arrays).
    """
    entries = [e if isinstance(e, SplitEntry) else parse_split_line(e) for e in split_lines]
    poses: dict[str, np.ndarray] = {}
    pairs = []
    for e in entries:
        if e.folder not in poses:
            poses[e.folder] = read_drive_poses(data_path, e.folder)
        T = poses[e.folder]
        i = e.frame_index
        if 0 <= i and i + 1 < len(T) and image_path(data_path, e.folder, i + 1, e.side).is_file():
            pairs.append((e, i))
    if not pairs:
        raise ValueError("evaluate_pose: no split frame has a next frame with a pose and an image")

    def load(e, i):  # the one image -> network input rule
        return torch.from_numpy(prepare(load_image(image_path(data_path, e.folder, i, e.side)), (width, height))[0][0])

    was_training = pose_net.training
    pose_net.eval()
    t_pred = []
    try:
        with torch.no_grad():
            for k in range(0, len(pairs), batch_size):
                chunk = pairs[k:k + batch_size]
                a = torch.stack([load(e, i) for e, i in chunk]).to(device)
                b = torch.stack([load(e, i + 1) for e, i in chunk]).to(device)
                axisangle, translation = pose_net(a, b)
                M = pose_vec_to_mat(axisangle.float(), translation.float())
                t_pred.append(M[:, :3, 3].cpu().double().numpy())
    finally:
        pose_net.train(was_training)
    t_pred = np.concatenate(t_pred)
    t_true = np.stack([(np.linalg.inv(poses[e.folder][i + 1]) @ poses[e.folder][i])[:3, 3] for e, i in pairs])
    out = pose_metrics(t_pred, t_true)
    if return_arrays:
        out.update(t_pred=t_pred, t_true=t_true)
    return out
