"""Evaluation metrics, the Eigen crop, velodyne projection and ground-truth export."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from dna_depth_core.data.synthetic import render_drive
from dna_depth_core.evaluation import (
    aggregate,
    compute_errors,
    eigen_crop_mask,
    evaluate_depth,
    export_gt,
    format_table_row,
    load_gt,
    read_velodyne,
    velodyne_to_depth,
)

from conftest import require_shared



def shared_path(*parts) -> Path:
    return require_shared("/".join(parts))


def test_exact_prediction_is_perfect():
    gt = np.array([1.0, 5.0, 20.0, 79.0])
    e = compute_errors(gt, gt.copy())
    assert e == {"abs_rel": 0.0, "sq_rel": 0.0, "rmse": 0.0, "rmse_log": 0.0, "a1": 1.0, "a2": 1.0, "a3": 1.0}


def test_hand_computed_metrics():
    # gt = [1, 2, 4], pred = [1, 1, 8]
    # |g-p|/g = [0, 1/2, 1]        -> abs_rel = 1.5 / 3 = 0.5
    # (g-p)^2/g = [0, 1/2, 16/4]   -> sq_rel = 4.5 / 3 = 1.5
    # (g-p)^2 = [0, 1, 16]         -> rmse = sqrt(17 / 3) = 2.38048...
    # ln g - ln p = [0, ln 2, -ln 2] -> rmse_log = ln 2 * sqrt(2 / 3) = 0.56594...
    # max(g/p, p/g) = [1, 2, 2]    -> only the first is < 1.25, 1.5625, 1.953125: a1 = a2 = a3 = 1/3
    e = compute_errors(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 8.0]))
    assert e["abs_rel"] == pytest.approx(0.5)
    assert e["sq_rel"] == pytest.approx(1.5)
    assert e["rmse"] == pytest.approx(math.sqrt(17 / 3))
    assert e["rmse_log"] == pytest.approx(math.log(2) * math.sqrt(2 / 3))
    assert e["a1"] == pytest.approx(1 / 3) and e["a2"] == pytest.approx(1 / 3) and e["a3"] == pytest.approx(1 / 3)
    assert format_table_row(e) == "0.500 | 1.500 | 2.380 | 0.566 | 0.333 | 0.333 | 0.333"


def test_threshold_metrics_separate():
    # ratios 1.2 (< 1.25), 1.5 (< 1.5625), 1.9 (< 1.953125), 2.5 (none)
    e = compute_errors(np.ones(4), np.array([1.2, 1.5, 1.9, 2.5]))
    assert (e["a1"], e["a2"], e["a3"]) == (0.25, 0.5, 0.75)
    with pytest.raises(ValueError):
        compute_errors(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        compute_errors(np.ones(2), np.array([1.0, 0.0]))


def test_eigen_crop():
    m = eigen_crop_mask(375, 1242)
    # rows [int(0.40810811*375), int(0.99189189*375)) = [153, 371), cols [int(44.65), int(1197.35)) = [44, 1197)
    assert m.sum() == (371 - 153) * (1197 - 44)
    assert m[153, 44] and m[370, 1196]
    assert not m[152, 44] and not m[153, 43] and not m[371, 600] and not m[200, 1197]


def test_median_scaling_resize_and_range():
    rng = np.random.default_rng(0)
    gt = rng.uniform(2.0, 39.0, (375, 1242)).astype(np.float32)  # 2 * gt stays below the 80 m clamp
    gt[rng.random(gt.shape) < 0.5] = 0.0  # sparse
    e, ratio = evaluate_depth(gt, 2.0 * gt)  # uniformly doubled: perfect after median scaling
    assert ratio == pytest.approx(0.5)
    assert e["abs_rel"] == pytest.approx(0.0, abs=1e-6) and e["a1"] == 1.0
    e, ratio = evaluate_depth(gt, 2.0 * gt, scaling="none")
    assert ratio == 1.0 and e["abs_rel"] == pytest.approx(1.0, rel=1e-6)  # |g - 2g| / g
    e, ratio = evaluate_depth(gt, 2.0 * gt, scaling=("fixed", 0.25))
    assert ratio == 0.25 and e["abs_rel"] == pytest.approx(0.5, rel=1e-6)
    # any prediction size: resized to the ground truth
    flat = np.full((375, 1242), 10.0, np.float32)
    e, ratio = evaluate_depth(flat, np.full((24, 80), 3.0, np.float32))
    assert ratio == pytest.approx(10 / 3) and e["rmse"] == pytest.approx(0.0, abs=1e-4)
    # ground truth outside (1e-3, 80) and outside the crop is ignored; predictions are clamped to 80
    g = np.full((100, 200), 20.0, np.float32)
    g[:30] = 500.0  # above the crop anyway and beyond max_depth
    g[90, 100] = 100.0  # inside the crop, beyond max_depth
    p = np.full((100, 200), 20.0, np.float32)
    p[90, 100] = -5.0
    e, _ = evaluate_depth(g, p, scaling="none")
    assert e["abs_rel"] == 0.0
    e, _ = evaluate_depth(g, np.full_like(p, 1000.0), scaling="none")
    assert e["abs_rel"] == pytest.approx(3.0)  # clamped to 80: |20 - 80| / 20
    with pytest.raises(ValueError):
        evaluate_depth(np.zeros((10, 10)), np.ones((10, 10)))


def test_aggregate_means_frames():
    a = {k: 0.0 for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")}
    b = {k: 1.0 for k in a}
    assert aggregate([a, b, b, b]) == {k: 0.75 for k in a}


def _write_calib(folder: Path, T=(0.0, 0.0, 0.0)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "S_rect_02: 1.000000e+02 8.000000e+01\n"
        "R_rect_00: 1 0 0 0 1 0 0 0 1\n"
        "P_rect_02: 100 0 51 0 0 100 41 0 0 0 1 0\n"
    )
    (folder / "calib_velo_to_cam.txt").write_text(
        "calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: " + " ".join(map(str, T)) + "\n"
    )


def test_velodyne_point_lands_on_expected_pixel(tmp_path):
    _write_calib(tmp_path)
    # velodyne (10, -1, 0.5) -> camera (x, y, z) = (1, -0.5, 10)
    # u = 100 * 1/10 + 51 = 61, v = 100 * -0.5/10 + 41 = 36 (1-based) -> pixel (row 35, col 60), depth 10
    near, far = [10.0, -1.0, 0.5, 0.3], [20.0, -2.0, 1.0, 0.9]  # same ray, twice as far
    behind = [-10.0, 1.0, -0.5, 0.1]  # would project into the image with a negative depth
    off = [10.0, -100.0, 0.0, 0.2]  # u = 1051: off the image
    for pts in ([near, far, behind, off], [far, off, near, behind]):
        depth = velodyne_to_depth(np.array(pts, np.float32), tmp_path, cam=2)
        assert depth.shape == (80, 100) and depth.dtype == np.float32
        assert depth[35, 60] == pytest.approx(10.0)  # the nearest return wins
        assert np.count_nonzero(depth) == 1
    # the translation T is applied: camera = (1, -0.5, 10.5) -> u = 60.52 -> 61, v = 36.24 -> 36
    _write_calib(tmp_path / "t", T=(0.0, 0.0, 0.5))
    depth = velodyne_to_depth(np.array([near], np.float32), tmp_path / "t", image_shape=(80, 100))
    assert depth[35, 60] == pytest.approx(10.5) and np.count_nonzero(depth) == 1


def test_read_velodyne(tmp_path):
    pts = np.arange(20, dtype=np.float32).reshape(5, 4)
    pts.tofile(tmp_path / "a.bin")
    assert np.array_equal(read_velodyne(tmp_path / "a.bin"), pts)
    np.arange(6, dtype=np.float32).tofile(tmp_path / "b.bin")
    with pytest.raises(ValueError):
        read_velodyne(tmp_path / "b.bin")
    with pytest.raises(FileNotFoundError):
        read_velodyne(tmp_path / "c.bin")


def test_export_gt_sources_and_load(tmp_path):
    info = render_drive(tmp_path / "raw", 4, seed=2, width=96, height=48, progress=False)
    # a second drive with only a 16-bit PNG ground truth
    png_drive = "2000_01_01/2000_01_01_drive_0005_sync"
    png = tmp_path / "raw" / png_drive / "proj_depth" / "groundtruth" / "image_02" / "0000000003.png"
    png.parent.mkdir(parents=True)
    raw = np.zeros((20, 30), np.uint16)
    raw[5, 7] = 2560  # 10 m
    cv2.imwrite(str(png), raw)
    lines = info.split_lines + [f"{png_drive} 3 l"]
    out = tmp_path / "gt" / "gt_depths.npz"
    depths = export_gt(tmp_path / "raw", lines, out, progress=False)
    loaded = load_gt(out)
    assert len(loaded) == len(lines) == 3
    for a, b in zip(depths, loaded):
        assert np.array_equal(a, b) and b.dtype == np.float32
    # synthetic frames: from the velodyne scan (sparse), matching the exact depth where present
    exact = np.load(info.drive_dir / "depth" / "0000000001.npy")
    velo = loaded[0]
    assert 0 < np.count_nonzero(velo) < velo.size
    hit = velo > 0
    np.testing.assert_allclose(velo[hit], exact[hit], rtol=1e-3)
    assert loaded[2].shape == (20, 30) and loaded[2][5, 7] == 10.0 and np.count_nonzero(loaded[2]) == 1
    with np.load(out, allow_pickle=False) as z:
        assert list(z["split_lines"]) == lines
    with pytest.raises(FileNotFoundError, match="no ground truth"):
        export_gt(tmp_path / "raw", [f"{png_drive} 4 l"], tmp_path / "x.npz", progress=False)


def test_export_gt_real_kitti_sample(tmp_path):
    root = shared_path("data", "kitti_tiny")
    folder = "2011_09_26/2011_09_26_drive_0023_sync"
    split = tmp_path / "test_files.txt"
    split.write_text(f"{folder} 0 l\n{folder} 3 l\n{folder} 6 r\n")
    from dna_depth_core.commands import export_gt as cmd

    assert cmd.NAME == "export-gt"
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    out = tmp_path / "gt_depths.npz"
    assert cmd.run(parser.parse_args(["--data-path", str(root), "--split", str(split), "--out", str(out),
                                      "--quiet"])) == 0
    gts = load_gt(out)
    for gt, (frame, cam) in zip(gts, ((0, 2), (3, 2), (6, 3))):
        ref = np.load(root / folder / "proj_depth" / "velodyne" / f"image_0{cam}" / f"{frame:010d}.npz")
        assert gt.shape == (375, 1242)
        assert np.array_equal(gt, ref["velodyne_depth"])
    # an exact prediction of the real ground truth scores perfectly; the protocol runs on real sizes
    e, ratio = evaluate_depth(gts[0], gts[0] * 3.0 + (gts[0] == 0) * 30.0)
    assert ratio == pytest.approx(1 / 3, rel=1e-5) and e["abs_rel"] < 1e-6


def test_error_accumulator_pools_like_compute_errors_and_scale_prediction():
    from dna_depth_core.evaluation import ErrorAccumulator, scale_prediction

    rng = np.random.default_rng(3)
    g, p = rng.uniform(1, 50, 300), rng.uniform(1, 50, 300)
    acc = ErrorAccumulator()
    assert acc.result() is None
    for part in np.split(np.arange(300), [10, 10, 200]):  # an empty part among them
        acc.add(g[part], p[part])
    assert acc.count == 300
    want = compute_errors(g, p)
    for k, v in acc.result().items():
        assert v == pytest.approx(want[k], rel=1e-12), k
    with pytest.raises(ValueError, match="> 0"):
        acc.add(np.array([1.0]), np.array([0.0]))
    # scaling: median ratio, clamped to the depth range
    scaled, ratio = scale_prediction(np.array([2.0, 4.0, 100.0]), np.array([1.0, 2.0, 3.0]), "median", 1e-3, 80.0)
    assert ratio == 2.0 and scaled.tolist() == [2.0, 4.0, 6.0]
    scaled, ratio = scale_prediction(np.array([2.0]), np.array([90.0]), ("fixed", 2.0), 1e-3, 80.0)
    assert ratio == 2.0 and scaled.tolist() == [80.0]
