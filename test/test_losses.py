import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dna_depth_core import geometry as g
from dna_depth_core import losses as L
from dna_depth_core.camera import KITTI_K_NORMALISED, pixel_K

C1, C2 = 0.01 ** 2, 0.03 ** 2


# ------------------------------------------------------------------ SSIM and photometric error
def test_ssim_identical_is_one_and_photometric_zero():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 10)
    s = L.ssim(x, x.clone())
    assert s.shape == x.shape
    assert torch.allclose(s, torch.ones_like(s), atol=1e-5)
    assert torch.allclose(L.SSIM()(x, x), s)
    pe = L.photometric_error(x, x.clone())
    assert pe.shape == (2, 1, 8, 10)
    assert pe.abs().max() < 1e-5


def test_ssim_and_photometric_of_constant_images():
    a, b = 0.2, 0.6  # float64: E[x^2] - E[x]^2 loses ~1e-4 of SSIM to cancellation in float32
    x, y = torch.full((1, 3, 5, 5), a, dtype=torch.float64), torch.full((1, 3, 5, 5), b, dtype=torch.float64)
    expected_ssim = (2 * a * b + C1) / (a * a + b * b + C1)  # variances and covariance are zero
    assert torch.allclose(L.ssim(x, y), torch.full_like(x, expected_ssim), atol=1e-8)
    expected_pe = 0.85 * (1 - expected_ssim) / 2 + 0.15 * abs(a - b)
    assert torch.allclose(L.photometric_error(x, y), torch.full_like(x[:, :1], expected_pe), atol=1e-8)
    assert torch.allclose(L.photometric_error(x, y, ssim_weight=0.0), torch.full_like(x[:, :1], abs(a - b)))


def _ssim_at(x: np.ndarray, y: np.ndarray, i: int, j: int) -> float:
    """SSIM of one pixel from its reflection-padded 3x3 window, by the textbook formula."""
    xp, yp = np.pad(x, 1, mode="reflect"), np.pad(y, 1, mode="reflect")
    wx, wy = xp[i:i + 3, j:j + 3].ravel(), yp[i:i + 3, j:j + 3].ravel()
    mx, my = wx.mean(), wy.mean()
    vx, vy = ((wx - mx) ** 2).mean(), ((wy - my) ** 2).mean()
    cov = ((wx - mx) * (wy - my)).mean()
    return (2 * mx * my + C1) * (2 * cov + C2) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2))


@pytest.mark.parametrize("i, j", [(0, 0), (2, 3), (5, 6), (0, 4)])
def test_ssim_matches_textbook_window(i, j):
    rng = np.random.default_rng(0)
    x, y = rng.random((6, 7)), rng.random((6, 7))
    s = L.ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None])
    assert s[0, 0, i, j].item() == pytest.approx(_ssim_at(x, y, i, j), abs=1e-9)


# ------------------------------------------------------------------ minimum reprojection and auto-masking
def test_min_reprojection_identity_winning_masks_pixel_out():
    reproj = torch.tensor([[[[0.5, 0.1, 0.3]], [[0.4, 0.2, 0.9]]]])  # (1, 2, 1, 3)
    identity = torch.tensor([[[[0.3, 0.6, 0.8]], [[0.35, 0.7, 0.25]]]])
    loss, mask = L.min_reprojection(reproj, identity, noise=0.0)
    assert loss.shape == mask.shape == (1, 1, 1, 3) and mask.dtype == torch.bool
    assert torch.allclose(loss.flatten(), torch.tensor([0.3, 0.1, 0.25]))
    assert mask.flatten().tolist() == [False, True, False]


def test_min_reprojection_without_identity_and_with_noise():
    reproj = torch.tensor([[[[0.5, 0.1]], [[0.4, 0.2]]]])
    loss, mask = L.min_reprojection(reproj, None)
    assert torch.allclose(loss.flatten(), torch.tensor([0.4, 0.1])) and mask.all()
    # identity equal to the reprojection error: the noise (std 1e-5) decides, the loss barely moves
    gen = torch.Generator().manual_seed(0)
    big = torch.rand(1, 2, 16, 16, generator=gen)
    loss, mask = L.min_reprojection(big, big.clone(), generator=gen)
    assert (loss - big.min(1, keepdim=True).values).abs().max() < 1e-4
    assert 0.05 < mask.float().mean() < 0.95
    gen2 = torch.Generator().manual_seed(1)
    _, m1 = L.min_reprojection(big, big.clone(), generator=gen2.manual_seed(7))
    _, m2 = L.min_reprojection(big, big.clone(), generator=gen2.manual_seed(7))
    assert torch.equal(m1, m2)


# ------------------------------------------------------------------ smoothness
def test_smoothness_constant_is_zero_noise_is_larger():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 12, 16)
    assert L.smoothness_loss(torch.full((2, 1, 12, 16), 0.3), img).item() == pytest.approx(0.0, abs=1e-7)
    ramp = torch.linspace(0.2, 0.3, 16).expand(2, 1, 12, 16)
    noisy = 0.25 + 0.05 * torch.rand(2, 1, 12, 16)
    assert L.smoothness_loss(noisy, img) > 3 * L.smoothness_loss(ramp, img)


def test_smoothness_known_value_and_mean_normalisation():
    disp = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]]]])  # mean 2 -> normalised [[0.5, 1.5], ...]
    flat = torch.zeros(1, 3, 2, 2)
    # |dx| = 1 on both rows, |dy| = 0, no image edges: (1 + 1) / 2 + 0
    assert L.smoothness_loss(disp, flat).item() == pytest.approx(1.0, abs=1e-6)
    assert L.smoothness_loss(disp * 5, flat).item() == pytest.approx(1.0, abs=1e-6)
    edge = torch.tensor([0.0, 1.0]).expand(1, 3, 2, 2)  # image edge where the disparity jumps
    assert L.smoothness_loss(disp, edge).item() == pytest.approx(np.exp(-1.0), abs=1e-6)


# ------------------------------------------------------------------ the full objective
def _pyramid(disp: torch.Tensor, n: int = 4):
    return [disp if s == 0 else F.avg_pool2d(disp, 2 ** s) for s in range(n)]


def _scene_inputs(scene, depth_scale=1.0):
    disp = g.depth_to_disp(scene["depth"] * depth_scale)
    return scene["target"], {1: scene["source"]}, _pyramid(disp), {1: scene["T_source_target"]}, scene["K"]


def test_loss_outputs_and_gradients(plane_scene):
    target, sources, disps, poses, K = _scene_inputs(plane_scene)
    disps = [d.clone().requires_grad_() for d in disps]
    out = L.SelfSupervisedLoss()(target, sources, disps, poses, K)
    assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
    for s in range(4):
        assert f"photometric/{s}" in out and f"smoothness/{s}" in out
    assert out["warped/1"].shape == target.shape
    assert out["automask"].shape == (1, 1, 48, 64)
    assert out["automask_fraction"] > 0.8  # the warped source beats the un-warped one almost everywhere
    out["loss"].backward()
    for d in disps:
        assert torch.isfinite(d.grad).all() and d.grad.abs().sum() > 0


def test_loss_true_depth_beats_wrong_depth(plane_scene):
    loss_fn = L.SelfSupervisedLoss()
    good = loss_fn(*_scene_inputs(plane_scene))
    # the full-image mean includes the strip the source camera does not see (~0.077 here), hence a margin
    for scale in (0.9, 1.1):
        bad = loss_fn(*_scene_inputs(plane_scene, scale))
        assert bad["photometric/0"] > good["photometric/0"] + 0.01
        assert bad["loss"] > good["loss"] + 0.01


@pytest.mark.parametrize("level", [0, 2])
def test_loss_single_scale_equals_hand_composition(plane_scene, level):
    target, sources, disps, poses, K = _scene_inputs(plane_scene)
    disp = disps[level]  # a coarse disparity is upsampled bilinearly (align_corners=False) to the input size
    out = L.compute_losses(target, sources, [disp], poses, K, automask=False, smoothness_weight=0.0)
    _, depth = g.disp_to_depth(F.interpolate(disp, size=(48, 64), mode="bilinear", align_corners=False))
    warped, _ = g.warp(sources[1], depth, K, poses[1])
    expected = L.photometric_error(warped, target).mean()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out["automask_fraction"] == 1.0


def test_loss_smoothness_weighting_per_scale():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 16, 16)
    disps = [torch.rand(1, 1, 16 >> s, 16 >> s) for s in range(4)]
    identity_pose = {1: torch.eye(4)[None]}
    K = torch.from_numpy(pixel_K(KITTI_K_NORMALISED, (16, 16))).float()
    base = L.SelfSupervisedLoss(smoothness_weight=0.0, automask=False)(target, {1: target}, disps, identity_pose, K)
    out = L.SelfSupervisedLoss(smoothness_weight=0.1, automask=False)(target, {1: target}, disps, identity_pose, K)
    expected = base["loss"] + sum(0.1 / 2 ** s * out[f"smoothness/{s}"] for s in range(4)) / 4
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


# ------------------------------------------------------------------ shape checks
@pytest.mark.parametrize("call, name", [
    (lambda: L.ssim(torch.ones(1, 3, 4, 4), torch.ones(1, 3, 4, 5)), "y"),
    (lambda: L.photometric_error(torch.ones(3, 4, 4), torch.ones(3, 4, 4)), "pred"),
    (lambda: L.min_reprojection(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 3)), "identity_errors"),
    (lambda: L.min_reprojection(torch.ones(2, 4, 4), None), "reprojection_errors"),
    (lambda: L.smoothness_loss(torch.ones(1, 2, 4, 4), torch.ones(1, 3, 4, 4)), "disp"),
    (lambda: L.smoothness_loss(torch.ones(1, 1, 4, 4), torch.ones(1, 3, 2, 2)), "image"),
    (lambda: L.SelfSupervisedLoss()(torch.ones(1, 1, 8, 8), {1: torch.ones(1, 1, 8, 8)},
                                    [torch.ones(1, 1, 8, 8)], {1: torch.eye(4)[None]}, torch.eye(3)), "target"),
    (lambda: L.SelfSupervisedLoss()(torch.ones(1, 3, 8, 8), {1: torch.ones(1, 3, 8, 8)},
                                    [torch.ones(1, 1, 8, 8)], {-1: torch.eye(4)[None]}, torch.eye(3)), "poses"),
    (lambda: L.SelfSupervisedLoss()(torch.ones(1, 3, 8, 8), {1: torch.ones(1, 3, 8, 8)},
                                    [torch.ones(2, 1, 8, 8)], {1: torch.eye(4)[None]}, torch.eye(3)), r"disps\[0\]"),
])
def test_shape_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}"):
        call()
