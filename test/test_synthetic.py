"""Synthetic drives: exact geometry, velodyne round trip, photometric consistency, layout, command."""
from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from dna_depth_core.data.kitti import normalised_intrinsics, read_calib_file, read_split_file
from dna_depth_core.data.synthetic import (
    ROAD_Y,
    SyntheticScene,
    make_trajectory,
    render_drive,
    synthetic_drive,
    synthetic_frames,
    synthetic_intrinsics,
)
from dna_depth_core.evaluation import read_velodyne, velodyne_to_depth

W, H = 320, 96
FRAMES = 6


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return render_drive(root, FRAMES, seed=3, width=W, height=H, progress=False)


def _read_rgb(path):
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, path
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_poses(path):
    rows = np.loadtxt(path).reshape(-1, 3, 4)
    out = np.tile(np.eye(4), (len(rows), 1, 1))
    out[:, :3, :4] = rows
    return out


def test_road_depth_matches_plane_geometry():
    width, height = 640, 192
    K = synthetic_intrinsics(width, height)
    # KITTI's default camera, principal point at the image centre ((W - 1) / 2 in pixel-centre coordinates)
    np.testing.assert_allclose(K, [[0.58 * 640, 0, 319.5], [0, 1.92 * 192, 95.5], [0, 0, 1]])
    rgb, depth = SyntheticScene(seed=0).render(np.eye(4), K, width, height)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    assert depth.shape == (height, width) and depth.dtype == np.float32
    fy, cy = K[1, 1], K[1, 2]
    # camera 1.65 m above a flat road, level: a pixel row v sees the road at z = 1.65 fy / (v - cy)
    for v in (height - 1, height - 10, height - 30):
        expected = ROAD_Y * fy / (v - cy)
        assert depth[v, width // 2] == pytest.approx(expected, rel=1e-5)
    assert depth[height - 1, width // 2] == pytest.approx(1.65 * 368.64 / 95.5, rel=1e-5)
    assert depth[0, width // 2] == 0.0  # sky straight ahead, high up: invalid depth
    assert (depth > 0).mean() > 0.5


def test_velodyne_scan_reproduces_exact_depth(drive):
    calib_dir = drive.root / drive.date
    for i in (1, 4):
        exact = np.load(drive.drive_dir / "depth" / f"{i:010d}.npy")
        scan = read_velodyne(drive.drive_dir / "velodyne_points" / "data" / f"{i:010d}.bin")
        assert scan.dtype == np.float32 and scan.shape[1] == 4
        assert (scan[:, 0] < 0).any(), "the scan should also hold returns behind the car"
        gt = velodyne_to_depth(scan, calib_dir, cam=2)
        assert gt.shape == (H, W)
        hit = gt > 0
        assert hit.sum() > 500
        assert np.all(exact[hit] > 0)
        rel = np.abs(gt[hit] - exact[hit]) / exact[hit]
        assert rel.max() < 1e-3


def test_consecutive_frames_warp_onto_each_other(drive):
    """Independent numpy warp: target pixels -> 3D with the exact depth -> source camera -> bilinear sample."""
    poses = _read_poses(drive.drive_dir / "poses.txt")
    np.testing.assert_allclose(poses, drive.poses, atol=1e-9)
    K = drive.K
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)

    def photometric_error(t, s, T_s_t):
        target = _read_rgb(drive.drive_dir / "image_02" / "data" / f"{t:010d}.png").astype(np.float32) / 255
        source = _read_rgb(drive.drive_dir / "image_02" / "data" / f"{s:010d}.png").astype(np.float32) / 255
        z = np.load(drive.drive_dir / "depth" / f"{t:010d}.npy").astype(np.float64)
        pts = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
        ps = pts @ T_s_t[:3, :3].T + T_s_t[:3, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            us = K[0, 0] * ps[..., 0] / ps[..., 2] + K[0, 2]
            vs = K[1, 1] * ps[..., 1] / ps[..., 2] + K[1, 2]
        ok = (z > 0) & (ps[..., 2] > 0.1) & (us >= 0) & (us <= W - 1) & (vs >= 0) & (vs <= H - 1)
        warped = cv2.remap(source, np.nan_to_num(us).astype(np.float32), np.nan_to_num(vs).astype(np.float32),
                           cv2.INTER_LINEAR)
        assert ok.mean() > 0.5
        return float(np.abs(warped - target).mean(axis=-1)[ok].mean())

    for t, s in ((2, 3), (2, 1), (4, 5)):
        T_s_t = np.linalg.inv(poses[s]) @ poses[t]
        good = photometric_error(t, s, T_s_t)
        wrong = photometric_error(t, s, np.eye(4))  # ignoring the motion must be clearly worse
        assert good < 0.012, (t, s, good)  # ~0.006 here; ~0.02 without the texture pre-filter
        assert good < 0.3 * wrong, (t, s, good, wrong)


def test_speed_varies_and_yaw_is_mild():
    poses, steps = make_trajectory(200, seed=5)
    trans = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
    np.testing.assert_allclose(trans, steps, rtol=1e-6)
    assert trans.std() > 0.1
    assert trans.min() >= 0.4 - 1e-9 and trans.max() <= 1.4 + 1e-9
    assert np.allclose(poses[:, 1, 3], 0.0)  # constant height above the road
    heading = np.arctan2(poses[:, 0, 2], poses[:, 2, 2])
    yaw_step = np.degrees(np.abs(np.diff(heading)))
    assert yaw_step.max() < 1.0 and yaw_step.max() > 0.01
    assert np.abs(poses[:, 0, 3]).max() < 1.2  # stays in its lane


def test_seeds_give_different_drives_and_same_seed_is_reproducible():
    K = synthetic_intrinsics(160, 48)
    pose = make_trajectory(10, seed=0)[0][5]
    a = SyntheticScene(seed=0).render(pose, K, 160, 48)
    b = SyntheticScene(seed=0).render(pose, K, 160, 48)
    c = SyntheticScene(seed=1).render(pose, K, 160, 48)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert np.abs(a[0].astype(int) - c[0]).mean() > 5
    s0, s1 = make_trajectory(50, 0)[1], make_trajectory(50, 1)[1]
    assert np.abs(s0 - s1).max() > 0.05


def test_in_memory_frames_are_the_frames_of_the_written_drive(drive):
    """synthetic_frames (the builder of tests, benchmarks and calibration) renders exactly what render_drive
    writes for the same seed, size and supersampling; ``every`` takes every n-th frame of a longer drive."""
    frames = synthetic_frames(FRAMES, W, H, seed=3)
    assert len(frames) == FRAMES
    for i, (rgb, K, depth) in enumerate(frames):
        np.testing.assert_array_equal(rgb, _read_rgb(drive.drive_dir / "image_02" / "data" / f"{i:010d}.png"))
        np.testing.assert_array_equal(depth, np.load(drive.drive_dir / "depth" / f"{i:010d}.npy"))
        np.testing.assert_array_equal(K, drive.K)
    longer = synthetic_drive(6, seed=3)
    spaced = synthetic_frames(3, W // 4, H // 4, seed=3, every=2, ss=1)
    for j, (rgb, K, depth) in enumerate(spaced):
        rgb_j, K_j, depth_j = longer.render(2 * j, W // 4, H // 4, ss=1)
        np.testing.assert_array_equal(rgb, rgb_j)
        np.testing.assert_array_equal(depth, depth_j)
        np.testing.assert_allclose(K, synthetic_intrinsics(W // 4, H // 4))
    assert not np.array_equal(spaced[0][0], spaced[1][0])
    with pytest.raises(ValueError, match="count and every"):
        synthetic_frames(0, W, H)


def test_camera_rig_height_and_pitch():
    low = synthetic_drive(3, seed=2, camera_height=1.2)
    assert np.allclose(low.poses[:, 1, 3], ROAD_Y - 1.2)
    np.testing.assert_array_equal(low.poses[:, :3, :3], synthetic_drive(3, seed=2).poses[:, :3, :3])
    _, K, depth = low.render(0, 320, 96, ss=1)
    # level camera 1.2 m above a flat road (any yaw): row v sees the road at z = 1.2 fy / (v - cy)
    v = 95
    assert depth[v, 160] == pytest.approx(1.2 * K[1, 1] / (v - K[1, 2]), rel=1e-5)
    pitched = synthetic_drive(3, seed=2, pitch_deg=5.0, roll_deg=2.0)
    optical_axis = pitched.poses[:, :3, 2]
    np.testing.assert_allclose(optical_axis[:, 1], np.sin(np.deg2rad(5.0)), atol=1e-12)  # y down: looks down
    assert np.allclose(pitched.poses[:, :3, 3], low.poses[:, :3, 3] + [0.0, -(ROAD_Y - 1.2), 0.0])


def test_kitti_layout_calibration_and_split(drive):
    d = drive.drive_dir
    for i in range(FRAMES):
        assert (d / "image_02" / "data" / f"{i:010d}.png").is_file()
        assert (d / "velodyne_points" / "data" / f"{i:010d}.bin").is_file()
        assert np.load(d / "depth" / f"{i:010d}.npy").shape == (H, W)
    assert _read_rgb(d / "image_02" / "data" / "0000000000.png").shape == (H, W, 3)
    calib = read_calib_file(drive.root / drive.date / "calib_cam_to_cam.txt")
    for key in ("P_rect_02", "R_rect_00", "S_rect_02", "K_02", "P_rect_03"):
        assert key in calib
    np.testing.assert_allclose(calib["S_rect_02"], [W, H])
    np.testing.assert_allclose(normalised_intrinsics(calib, 2, (W, H)), [[0.58, 0, 0.5], [0, 1.92, 0.5], [0, 0, 1]],
                               atol=1e-9)
    velo = read_calib_file(drive.root / drive.date / "calib_velo_to_cam.txt")
    R = velo["R"].reshape(3, 3)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert R[2, 0] > 0.99  # velodyne x (forward) is camera z (forward)
    lines = read_split_file(drive.split_file)
    assert lines == drive.split_lines
    assert lines == [f"{drive.folder} {i} l" for i in range(1, FRAMES - 1)]
    assert drive.folder == "2000_01_01/2000_01_01_drive_0001_sync"


def test_synth_command(tmp_path):
    from dna_depth_core.commands import synth

    assert synth.NAME == "synth"
    parser = argparse.ArgumentParser()
    synth.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--frames", "3", "--seed", "2", "--width", "64",
                              "--height", "32", "--drive", "7", "--workers", "1", "--quiet"])
    assert synth.run(args) == 0
    folder = tmp_path / "2000_01_01" / "2000_01_01_drive_0007_sync"
    assert len(list((folder / "image_02" / "data").glob("*.png"))) == 3
    assert read_split_file(tmp_path / "splits" / "2000_01_01_drive_0007_sync.txt") == [
        "2000_01_01/2000_01_01_drive_0007_sync 1 l"
    ]
