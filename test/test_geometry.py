import math

import numpy as np
import pytest
import torch

from dna_depth_core import geometry as g
from dna_depth_core.camera import KITTI_K_NORMALISED, pixel_K
from dna_depth_core.losses import photometric_error


def _interior(valid: torch.Tensor, margin: int = 4) -> torch.Tensor:
    m = valid.clone()
    m[..., :margin, :] = False
    m[..., -margin:, :] = False
    m[..., :, :margin] = False
    m[..., :, -margin:] = False
    return m


def _warp_error(scene, depth, T):
    warped, valid = g.warp(scene["source"], depth, scene["K"], T)
    mask = _interior(valid)
    assert mask.float().mean() > 0.4
    return photometric_error(warped, scene["target"])[mask].mean().item()


# ------------------------------------------------------------------ warping an analytically rendered plane
def test_warp_true_depth_and_pose_reconstructs_target(plane_scene):
    err = _warp_error(plane_scene, plane_scene["depth"], plane_scene["T_source_target"])
    assert err < 0.005  # only bilinear interpolation error remains
    # the un-warped source is far from the target, so the test is not trivially passing
    assert photometric_error(plane_scene["source"], plane_scene["target"]).mean() > 0.2


@pytest.mark.parametrize("scale", [1.1, 0.9])
def test_warp_wrong_depth_is_clearly_worse(plane_scene, scale):
    good = _warp_error(plane_scene, plane_scene["depth"], plane_scene["T_source_target"])
    bad = _warp_error(plane_scene, plane_scene["depth"] * scale, plane_scene["T_source_target"])
    assert bad > 5 * good and bad > 0.01


def test_warp_flipped_translation_is_clearly_worse(plane_scene):
    T = plane_scene["T_source_target"].clone()
    T[:, :3, 3] *= -1
    good = _warp_error(plane_scene, plane_scene["depth"], plane_scene["T_source_target"])
    assert _warp_error(plane_scene, plane_scene["depth"], T) > 20 * good


def test_warp_identity_pose_returns_source_and_all_valid():
    torch.manual_seed(0)
    src = torch.rand(2, 3, 6, 8)
    depth = torch.rand(2, 1, 6, 8) + 1.0
    K = torch.from_numpy(pixel_K(KITTI_K_NORMALISED, (8, 6))).float().expand(2, 3, 3)
    warped, valid = g.warp(src, depth, K, torch.eye(4).expand(2, 4, 4))
    assert torch.allclose(warped, src, atol=1e-5)
    assert valid.dtype == torch.bool and valid.shape == (2, 1, 6, 8) and valid.all()


def test_warp_marks_points_behind_camera_and_outside_invalid():
    depth = torch.ones(1, 1, 4, 4)
    K = torch.tensor([[[4.0, 0, 1.5], [0, 4.0, 1.5], [0, 0, 1]]])
    T = torch.eye(4)[None].clone()
    T[0, 2, 3] = -2.0  # every point ends up at z = -1
    _, valid = g.warp(torch.rand(1, 3, 4, 4), depth, K, T)
    assert not valid.any()
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = 10.0  # shifted 40 px to the right
    _, valid = g.warp(torch.rand(1, 3, 4, 4), depth, K, T)
    assert not valid.any()


# ------------------------------------------------------------------ projection round trip and grid convention
def test_backproject_then_project_returns_pixel_grid():
    torch.manual_seed(0)
    b, h, w = 2, 5, 7
    K = torch.tensor([[30.0, 0, 3.1], [0, 25.0, 2.2], [0, 0, 1]]).expand(b, 3, 3)
    depth = torch.rand(b, 1, h, w) * 10 + 0.5
    points = g.backproject(depth, torch.linalg.inv(K))
    assert torch.allclose(points[:, 2:], depth)
    pix = g.project(g.transform_points(torch.eye(4).expand(b, 4, 4), points), K)
    v, u = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    assert pix.shape == (b, h, w, 2)
    assert torch.allclose(pix[..., 0], u.expand(b, h, w), atol=1e-4)
    assert torch.allclose(pix[..., 1], v.expand(b, h, w), atol=1e-4)


def test_pixels_to_grid_align_corners_false():
    pix = torch.tensor([[[[0.0, 0.0], [7.0, 3.0], [-0.5, -0.5]]]])  # (1, 1, 3, 2)
    grid = g.pixels_to_grid(pix, 4, 8)
    expected = torch.tensor([[[[-1 + 1 / 8, -1 + 1 / 4], [1 - 1 / 8, 1 - 1 / 4], [-1.0, -1.0]]]])
    assert torch.allclose(grid, expected)


def test_transform_points_known_values():
    T = torch.eye(4)[None].clone()
    T[0, :3, :3] = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    T[0, :3, 3] = torch.tensor([1.0, 2, 3])
    p = torch.tensor([1.0, 0, 0]).reshape(1, 3, 1, 1)
    assert torch.allclose(g.transform_points(T, p).flatten(), torch.tensor([1.0, 3, 3]))


# ------------------------------------------------------------------ disparity <-> depth
def test_disp_to_depth_endpoints_and_inverse():
    scaled, depth = g.disp_to_depth(torch.tensor([0.0, 1.0]))
    assert torch.allclose(depth, torch.tensor([100.0, 0.1]))
    assert torch.allclose(scaled, torch.tensor([0.01, 10.0]))
    s = torch.tensor([0.0, 0.2, 0.5, 1.0])
    assert torch.allclose(g.depth_to_disp(g.disp_to_depth(s)[1]), s, atol=1e-6)
    assert g.depth_to_disp(torch.tensor(100.0)).abs() < 1e-6
    with pytest.raises(ValueError):
        g.disp_to_depth(s, min_depth=10.0, max_depth=1.0)


# ------------------------------------------------------------------ poses
def test_axis_angle_90_deg_about_z():
    R = g.axis_angle_to_matrix(torch.tensor([[0.0, 0.0, math.pi / 2]]))
    expected = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(R[0], expected, atol=1e-6)


def test_axis_angle_180_deg_about_x():
    R = g.axis_angle_to_matrix(torch.tensor([[math.pi, 0.0, 0.0]]))
    assert torch.allclose(R[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])), atol=1e-6)


def test_axis_angle_zero_is_identity_with_finite_gradients():
    aa = torch.zeros(2, 3, requires_grad=True)
    R = g.axis_angle_to_matrix(aa)
    assert torch.equal(R.detach(), torch.eye(3).expand(2, 3, 3))
    (R * torch.arange(9.0).reshape(3, 3)).sum().backward()
    assert torch.isfinite(aa.grad).all()
    # at w = 0, dR/dw is the skew generator: R[2,1] = -R[1,2] = w_x, R[0,2] = -R[2,0] = w_y, R[1,0] = -R[0,1] = w_z
    # weighted by W[i, j] = 3 i + j: x -> W21 - W12, y -> W02 - W20, z -> W10 - W01
    assert aa.grad[0].tolist() == pytest.approx([7.0 - 5.0, 2.0 - 6.0, 3.0 - 1.0])


def test_axis_angle_is_orthonormal_and_small_angles_continuous():
    torch.manual_seed(0)
    aa = torch.randn(5, 3)
    R = g.axis_angle_to_matrix(aa)
    assert torch.allclose(R @ R.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.det(R), torch.ones(5), atol=1e-5)
    tiny = torch.tensor([[1e-5, -2e-5, 3e-5]], dtype=torch.float64)  # below the Taylor switch
    R = g.axis_angle_to_matrix(tiny)
    expected = torch.eye(3, dtype=torch.float64) + g._skew(tiny)[0]
    assert torch.allclose(R[0], expected, atol=1e-9)


def test_pose_vec_to_mat_invert_and_invert_pose():
    torch.manual_seed(0)
    aa, t = torch.randn(3, 3) * 0.3, torch.randn(3, 3)
    T = g.pose_vec_to_mat(aa, t)
    assert torch.allclose(T[:, :3, 3], t)
    assert torch.equal(T[:, 3], torch.tensor([0.0, 0, 0, 1]).expand(3, 4))
    T_inv = g.pose_vec_to_mat(aa, t, invert=True)
    assert torch.allclose(T_inv, torch.linalg.inv(T), atol=1e-5)
    assert torch.allclose(g.invert_pose(T), T_inv, atol=1e-6)
    assert torch.allclose(T @ g.invert_pose(T), torch.eye(4).expand(3, 4, 4), atol=1e-5)


# ------------------------------------------------------------------ organised point clouds
def test_depth_to_points_numpy():
    K = np.array([[50.0, 0, 31.5], [0, 40.0, 23.5], [0, 0, 1]])
    depth = np.full((48, 64), 4.0, dtype=np.float32)
    depth[0, 0], depth[1, 1], depth[2, 2] = np.nan, 0.0, np.inf
    pts = g.depth_to_points(depth, K)
    assert pts.shape == (48, 64, 3) and pts.dtype == np.float32
    u, v = 10, 40
    assert pts[v, u] == pytest.approx([(u - 31.5) * 4.0 / 50.0, (v - 23.5) * 4.0 / 40.0, 4.0])
    assert np.isnan(pts[0, 0]).all() and np.isnan(pts[1, 1]).all() and np.isnan(pts[2, 2]).all()
    assert np.isfinite(pts).sum() == 3 * (48 * 64 - 3)


def test_depth_to_points_torch():
    K = torch.tensor([[50.0, 0, 3.5], [0, 40.0, 2.5], [0, 0, 1]])
    depth = torch.full((1, 1, 6, 8), 2.0)
    depth[0, 0, 0, 0] = -1.0
    pts = g.depth_to_points(depth, K)
    assert pts.shape == (1, 3, 6, 8)
    assert torch.isnan(pts[0, :, 0, 0]).all()
    assert pts[0, :, 5, 1].tolist() == pytest.approx([(1 - 3.5) * 2 / 50, (5 - 2.5) * 2 / 40, 2.0])


# ------------------------------------------------------------------ shape checks
@pytest.mark.parametrize("call, name", [
    (lambda: g.backproject(torch.ones(1, 2, 4, 4), torch.eye(3)[None]), "depth"),
    (lambda: g.backproject(torch.ones(1, 1, 4, 4), torch.eye(4)[None]), "K_inv"),
    (lambda: g.backproject(torch.ones(2, 1, 4, 4), torch.eye(3).expand(3, 3, 3)), "K_inv"),
    (lambda: g.project(torch.ones(1, 4, 4), torch.eye(3)[None]), "points"),
    (lambda: g.pixels_to_grid(torch.ones(1, 4, 4, 3), 4, 4), "pix"),
    (lambda: g.transform_points(torch.eye(3)[None], torch.ones(1, 3, 2, 2)), "T"),
    (lambda: g.axis_angle_to_matrix(torch.zeros(2, 4)), "axisangle"),
    (lambda: g.pose_vec_to_mat(torch.zeros(2, 3), torch.zeros(3)), "translation"),
    (lambda: g.invert_pose(torch.eye(4)), "T"),
    (lambda: g.warp(torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4), torch.eye(3), torch.eye(4)), "T_source_target"),
    (lambda: g.warp(torch.ones(1, 3, 4, 4), torch.ones(1, 1, 5, 4), torch.eye(3), torch.eye(4)[None]), "depth"),
    (lambda: g.depth_to_points(np.ones((2, 3, 4)), np.eye(3)), "depth"),
    (lambda: g.depth_to_points(np.ones((3, 4)), np.eye(4)), "K"),
])
def test_shape_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()
