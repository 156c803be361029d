"""The ground-plane fit of GroundPlaneScale (dna_depth_core.inference.scale) against exact planes: level, pitched
and rolled ground in front of a KITTI-like camera, with outlier points, and the fit of the all-point RANSAC it
replaces (subset scoring + all-point refinement must find the same plane)."""
import math

import numpy as np
import pytest

from dna_depth_core.data.synthetic import synthetic_intrinsics
from dna_depth_core.inference import GroundPlaneScale
from dna_depth_core.inference.scale import _inlier_counts, _plane_through

W, H = 320, 96


def _ground_depth(K, height, pitch_deg=0.0, roll_deg=0.0, w=W, h=H):
    """Exact depth (camera z) of the ground plane ``{p : n . p = height}`` whose normal ``n`` is "down" (+y)
    rotated by the camera's pitch (about x) and roll (about z); NaN above the horizon. Returns ``(depth, n)``."""
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    n = np.array([-math.sin(r) * math.cos(p), math.cos(r) * math.cos(p), math.sin(p)])
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    along = rays @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(along > 0.02, height / along, np.nan)
    return z.astype(np.float64), n


def _all_point_fit(g, depth, K):
    """The fit this replaced: every point scores every hypothesis (float64), then the same refinement."""
    pts = g._sample_points(depth, K)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(pts), size=(g.iterations, 3))
    a, b, c = pts[idx[:, 0]], pts[idx[:, 1]], pts[idx[:, 2]]
    normals = np.cross(b - a, c - a)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    normals *= np.where(normals[:, 1] < 0, -1.0, 1.0)[:, None]
    heights = np.einsum("ij,ij->i", normals, a)
    keep = (normals[:, 1] >= math.cos(math.radians(g.max_tilt_deg))) & (heights > 0)
    normals, heights = normals[keep], heights[keep]
    counts = (np.abs(pts @ normals.T - heights) < g.inlier_threshold * heights).sum(axis=0)
    n, d = normals[np.argmax(counts)], heights[np.argmax(counts)]
    for _ in range(2):
        inl = np.abs(pts @ n - d) < g.inlier_threshold * d
        n, d = _plane_through(pts[inl])
    return n, d


@pytest.mark.parametrize("height, pitch, roll", [(1.65, 0.0, 0.0), (0.8, 4.0, 0.0), (2.3, -3.0, 2.5)])
def test_exact_planes_are_recovered(height, pitch, roll):
    K = synthetic_intrinsics(W, H)
    depth, n_true = _ground_depth(K, height, pitch, roll)
    for scale in (1.0, 1 / 7.3):  # relative depth: the fitted height scales with it
        fit = GroundPlaneScale(1.65, seed=1).fit_plane(depth * scale, K)
        assert fit is not None and fit.inliers == fit.points  # every sampled point lies on the plane
        assert fit.height == pytest.approx(height * scale, rel=1e-9)
        np.testing.assert_allclose(fit.normal, n_true, atol=1e-9)


def test_outliers_do_not_move_the_plane():
    """30 % of the region replaced by points 2x nearer than the ground (a car, noise): the inliers are the ground
    points only, and the refined plane is the exact one."""
    K = synthetic_intrinsics(W, H)
    depth, n_true = _ground_depth(K, 1.65, 2.0, 0.0)
    rng = np.random.default_rng(5)
    mask = rng.random(depth.shape) < 0.3
    depth = np.where(mask, 0.5 * depth, depth)
    g = GroundPlaneScale(1.65)
    fit = g.fit_plane(depth, K)
    assert fit is not None and fit.height == pytest.approx(1.65, rel=1e-9)
    np.testing.assert_allclose(fit.normal, n_true, atol=1e-9)
    assert 0.6 < fit.inlier_ratio < 0.8
    assert g.measure(depth, K) == pytest.approx(1.0, rel=1e-9)  # camera_height / fitted height


def test_same_plane_as_the_all_point_fit_on_a_noisy_road():
    """2 % multiplicative depth noise: the subset-scored fit lands on the plane the all-point RANSAC refines to
    (within 0.5 % in height, 0.2 degrees in normal), for several RANSAC seeds."""
    K = synthetic_intrinsics(W, H)
    depth, _ = _ground_depth(K, 1.4, 3.0, 1.0)
    depth *= 1.0 + 0.02 * np.random.default_rng(2).standard_normal(depth.shape)
    n_ref, d_ref = _all_point_fit(GroundPlaneScale(1.65), depth, K)
    for seed in range(5):
        fit = GroundPlaneScale(1.65, seed=seed).fit_plane(depth, K)
        assert fit.height == pytest.approx(d_ref, rel=5e-3)
        assert math.degrees(math.acos(min(1.0, float(fit.normal @ n_ref)))) < 0.2


def test_no_ground_and_the_untrained_network():
    """A constant depth map (what an untrained network predicts) and an all-invalid one give no fit."""
    K = synthetic_intrinsics(W, H)
    g = GroundPlaneScale(1.65)
    assert g.fit_plane(np.full((H, W), 13.0), K) is None
    assert g.fit_plane(np.full((H, W), np.nan), K) is None
    with pytest.raises(ValueError, match=r"depth must have shape \(H, W\)"):
        g.fit_plane(np.zeros((1, H, W)), K)


def test_helpers_against_hand_computed_values():
    pts = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 5.0], [-1.0, 1.1, 3.0], [0.0, 3.0, 4.0]])
    normals = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    heights = np.array([1.0, 4.0])
    # |p.n - h| < 0.05 h: plane y = 1 holds points 0, 1 (point 2 is 0.1 off, > 0.05); plane z = 4 holds point 3.
    assert _inlier_counts(pts, normals, heights, 0.05).tolist() == [2, 1]
    assert _inlier_counts(pts, normals, heights, 0.2).tolist() == [3, 1]
    n, d = _plane_through(np.array([[0.0, 2.0, 1.0], [1.0, 2.0, 0.0], [0.0, 2.0, 3.0], [5.0, 2.0, 2.0]]))
    np.testing.assert_allclose(n, [0.0, 1.0, 0.0], atol=1e-12)
    assert d == pytest.approx(2.0)
