"""evaluate_pose: predicted per-pair translations against a drive's poses.txt, on a hand-built drive whose images
encode their frame index, with fake pose networks that return known translations."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from dna_depth_core.data.poses import read_drive_poses
from dna_depth_core.evaluation import evaluate_pose, pose_metrics

FOLDER = "2000_01_01/2000_01_01_drive_0007_sync"
H, W = 32, 64


def _rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def make_drive(root, speeds, headings=None) -> np.ndarray:
    """A drive of len(speeds) + 1 frames driving forward (+z) at ``speeds`` m/frame; frame i is a uniform image of
    value 10 * i (so a fake network can tell which pair it sees). Returns the (N, 4, 4) T_world_cam poses."""
    n = len(speeds) + 1
    headings = np.zeros(n) if headings is None else np.asarray(headings)
    poses = np.tile(np.eye(4), (n, 1, 1))
    pos = np.zeros(3)
    for i in range(n):
        poses[i, :3, :3] = _rot_y(headings[i])
        poses[i, :3, 3] = pos
        if i < n - 1:
            pos = pos + poses[i, :3, :3] @ np.array([0.0, 0.0, speeds[i]])
    drive = root / FOLDER
    (drive / "image_02" / "data").mkdir(parents=True)
    for i in range(n):
        img = np.full((H * 2, W * 2, 3), 10 * i, np.uint8)
        cv2.imwrite(str(drive / "image_02" / "data" / f"{i:010d}.png"), img)
    with open(drive / "poses.txt", "w") as f:
        for p in poses:
            f.write(" ".join(f"{v:.12e}" for v in p[:3, :4].ravel()) + "\n")
    return poses


def split(n_frames: int) -> list[str]:
    return [f"{FOLDER} {i} l" for i in range(1, n_frames - 1)]


class TablePose(nn.Module):
    """Returns ``table[i]`` (translation) for the pair (frame i, frame i + 1), read off the image value; checks
    that the pair comes in temporal order."""

    def __init__(self, table: np.ndarray, axisangle: np.ndarray | None = None):
        super().__init__()
        self.table = torch.as_tensor(table, dtype=torch.float32)
        self.aa = None if axisangle is None else torch.as_tensor(axisangle, dtype=torch.float32)
        self.seen_training = []

    def forward(self, a, b):
        self.seen_training.append(self.training)
        ia = torch.round(a.mean(dim=(1, 2, 3)) * 255 / 10).long()
        ib = torch.round(b.mean(dim=(1, 2, 3)) * 255 / 10).long()
        assert torch.equal(ib, ia + 1), "pairs must come in temporal order (i, i + 1)"
        t = self.table[ia]
        aa = torch.zeros_like(t) if self.aa is None else self.aa[ia]
        return aa, t


SPEEDS = np.array([0.5, 0.7, 1.1, 1.3, 0.9, 0.6, 0.8, 1.2, 1.0])


def true_translations(poses):
    return np.stack([(np.linalg.inv(poses[i + 1]) @ poses[i])[:3, 3] for i in range(len(poses) - 1)])


def test_convention_forward_motion_is_negative_z(tmp_path):
    poses = make_drive(tmp_path, SPEEDS)
    t = true_translations(poses)
    assert np.allclose(t[:, 2], -SPEEDS) and np.allclose(t[:, :2], 0)
    assert np.allclose(read_drive_poses(tmp_path, FOLDER), poses)


def test_same_convention_as_the_trainers_ground_truth_poses(tmp_path):
    from dna_depth_core.training.datasets import ground_truth_poses

    poses = make_drive(tmp_path, SPEEDS, headings=np.linspace(0, 0.2, len(SPEEDS) + 1))
    i = 3
    batch = {"pose": {0: torch.tensor(poses[i])[None], 1: torch.tensor(poses[i + 1])[None],
                      -1: torch.tensor(poses[i - 1])[None]}}
    T = ground_truth_poses(batch, [0, -1, 1])[1][0].numpy()
    net = TablePose(true_translations(poses))
    r = evaluate_pose(net, tmp_path, [f"{FOLDER} {i} l"], H, W, return_arrays=True)
    assert np.allclose(r["t_true"][0], T[:3, 3], atol=1e-6)


def test_a_perfect_network_up_to_scale(tmp_path):
    poses = make_drive(tmp_path, SPEEDS, headings=0.02 * np.sin(np.arange(len(SPEEDS) + 1)))
    t = true_translations(poses)
    net = TablePose(t / 2.0)  # right direction and relative speed, half the metric scale
    net.train()
    r = evaluate_pose(net, tmp_path, split(len(poses)), H, W, batch_size=3, return_arrays=True)
    assert r["pairs"] == len(poses) - 2
    assert r["pearson_speed"] == pytest.approx(1.0, abs=1e-6)
    assert r["cos_mean"] == pytest.approx(1.0, abs=1e-6)
    assert r["scale"] == pytest.approx(2.0, rel=1e-5)
    assert r["spread_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert net.training and not any(net.seen_training)  # evaluated in eval mode, mode restored


def test_wrong_direction_constant_speed_and_noise(tmp_path):
    poses = make_drive(tmp_path, SPEEDS)
    t = true_translations(poses)
    r = evaluate_pose(TablePose(-t), tmp_path, split(len(poses)), H, W)
    assert r["cos_mean"] == pytest.approx(-1.0, abs=1e-6) and r["pearson_speed"] == pytest.approx(1.0, abs=1e-6)
    const = np.tile([0.0, 0.0, -1.0], (len(t), 1))
    r = evaluate_pose(TablePose(const), tmp_path, split(len(poses)), H, W)
    assert math.isnan(r["pearson_speed"]) and r["cos_mean"] == pytest.approx(1.0, abs=1e-6)
    assert r["spread_ratio"] == pytest.approx(0.0, abs=1e-9)
    assert r["scale"] == pytest.approx(np.median(SPEEDS[1:]), rel=1e-5)
    # speed ranking inverted: negative correlation
    inv = t * (1.0 / SPEEDS[:, None] ** 2)
    r = evaluate_pose(TablePose(inv), tmp_path, split(len(poses)), H, W)
    assert r["pearson_speed"] < -0.8 and r["cos_mean"] > 0.99


def test_rotation_output_is_part_of_the_transform(tmp_path):
    """The predicted translation is the [:3, 3] column of pose_vec_to_mat(axisangle, translation)."""
    poses = make_drive(tmp_path, SPEEDS)
    t = true_translations(poses)
    aa = np.tile([0.0, 0.3, 0.0], (len(t), 1))
    r = evaluate_pose(TablePose(t, aa), tmp_path, split(len(poses)), H, W, return_arrays=True)
    assert np.allclose(r["t_pred"], t[1:], atol=1e-6)  # not inverted: the translation column is the output itself


def test_pose_metrics_checks_shapes_and_skips_missing_neighbours(tmp_path):
    with pytest.raises(ValueError):
        pose_metrics(np.zeros((2, 3)), np.zeros((3, 3)))
    poses = make_drive(tmp_path, SPEEDS)
    last = len(poses) - 1  # no next frame: skipped
    r = evaluate_pose(TablePose(true_translations(poses)), tmp_path, [f"{FOLDER} 2 l", f"{FOLDER} {last} l"], H, W)
    assert r["pairs"] == 1
    with pytest.raises(ValueError, match="no split frame"):
        evaluate_pose(TablePose(true_translations(poses)), tmp_path, [f"{FOLDER} {last} l"], H, W)
