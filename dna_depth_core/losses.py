"""The self-supervised objective (Monodepth2 protocol, see docs/model.md, section 4).

- Photometric error ``pe = 0.85 * clamp((1 - SSIM) / 2, 0, 1) + 0.15 * |a - b|``, each term averaged over channels;
  SSIM on 3x3 average-pool windows with reflection padding 1, ``C1 = 0.01**2``, ``C2 = 0.03**2``.
- Per-pixel minimum reprojection over the source frames; auto-masking puts the identity (un-warped) source errors
  (plus noise of std ~1e-5, which breaks ties) into the same minimum, so pixels that do not move drop out.
- Edge-aware smoothness on the mean-normalised disparity, weight ``smoothness_weight / 2**scale``.
- All disparity scales are upsampled to the input resolution for the photometric term; total = mean over scales.

Images are ``(B, 3, H, W)`` in ``[0, 1]``; poses follow docs/conventions.md (``T_source_target``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dna_depth_core.geometry import check_shape, disp_to_depth, warp

SSIM_C1 = 0.01 ** 2
SSIM_C2 = 0.03 ** 2


def _check_same(a: torch.Tensor, name_a: str, b: torch.Tensor, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_b} must have the shape of {name_a} {tuple(a.shape)}, got {tuple(b.shape)}")


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM map on 3x3 average-pool windows with reflection padding 1.

    The map is in ``[-1, 1]`` (1 for identical images). The photometric loss uses ``(1 - SSIM) / 2`` clamped to
    ``[0, 1]``.

    Args:
        x, y: ``(B, C, H, W)``, ``H, W >= 2``.
    Returns:
        ``(B, C, H, W)``.
    """
    check_shape(x, "x", (None, None, None, None), "(B, C, H, W)")
    _check_same(x, "x", y, "y")
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")

    def mean(t):  # 3x3 box mean, separable sums of shifted views (faster than avg_pool2d on CPU, same values)
        t = t[..., :-2] + t[..., 1:-1] + t[..., 2:]
        return (t[..., :-2, :] + t[..., 1:-1, :] + t[..., 2:, :]) / 9.0

    mu_x, mu_y = mean(x), mean(y)
    var_x = mean(x * x) - mu_x * mu_x
    var_y = mean(y * y) - mu_y * mu_y
    cov_xy = mean(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov_xy + SSIM_C2)
    den = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return num / den


class SSIM(nn.Module):
    """Module form of :func:`ssim` (no parameters)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ssim(x, y)


def photometric_error(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.85) -> torch.Tensor:
    """``ssim_weight * clamp((1 - SSIM) / 2, 0, 1) + (1 - ssim_weight) * |pred - target|``, channel-averaged.

    Args:
        pred, target: ``(B, C, H, W)``.
    Returns:
        ``(B, 1, H, W)``.
    """
    check_shape(pred, "pred", (None, None, None, None), "(B, C, H, W)")
    _check_same(pred, "pred", target, "target")
    l1 = (pred - target).abs().mean(1, keepdim=True)
    if ssim_weight == 0:
        return l1
    dssim = ((1 - ssim(pred, target)) / 2).clamp(0, 1).mean(1, keepdim=True)
    return ssim_weight * dssim + (1 - ssim_weight) * l1


def min_reprojection(reprojection_errors: torch.Tensor, identity_errors: torch.Tensor | None = None,
                     noise: float = 1e-5, generator: torch.Generator | None = None):
    """Per-pixel minimum over source frames, with auto-masking.

    When ``identity_errors`` is given, they (plus Gaussian noise of std ``noise``, which breaks ties) take part in
    the same per-pixel minimum: a pixel where an un-warped source matches best contributes its identity error,
    which carries no gradient to depth or pose, and counts as masked out.

    Args:
        reprojection_errors: ``(B, S, H, W)`` photometric errors of the warped sources.
        identity_errors: ``(B, S', H, W)`` errors of the un-warped sources, or None (no auto-masking).
        noise: std of the noise added to ``identity_errors``.
        generator: optional ``torch.Generator`` for the noise.
    Returns:
        ``(loss (B, 1, H, W), automask (B, 1, H, W) bool)``; ``automask`` is true where a warped source won
        (all true without ``identity_errors``).
    """
    check_shape(reprojection_errors, "reprojection_errors", (None, None, None, None), "(B, S, H, W)")
    if identity_errors is None:
        loss = reprojection_errors.min(dim=1, keepdim=True).values
        return loss, torch.ones_like(loss, dtype=torch.bool)
    b, _, h, w = reprojection_errors.shape
    check_shape(identity_errors, "identity_errors", (b, None, h, w), f"(B, S', H, W) = ({b}, S', {h}, {w})")
    if noise > 0:
        identity_errors = identity_errors + noise * torch.randn(
            identity_errors.shape, generator=generator, dtype=identity_errors.dtype,
            device=identity_errors.device)
    combined = torch.cat([identity_errors, reprojection_errors], dim=1)
    loss, idx = combined.min(dim=1, keepdim=True)
    return loss, idx >= identity_errors.shape[1]


def smoothness_loss(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of the mean-normalised disparity.

    ``d = disp / mean_HW(disp)``; loss = ``mean(|dx d| * exp(-mean_c |dx I|)) + mean(|dy d| * exp(-mean_c |dy I|))``
    with forward differences.

    Args:
        disp: ``(B, 1, H, W)``.
        image: ``(B, C, H, W)`` at the same resolution.
    Returns:
        scalar tensor.
    """
    check_shape(disp, "disp", (None, 1, None, None), "(B, 1, H, W)")
    b, _, h, w = disp.shape
    check_shape(image, "image", (b, None, h, w), f"(B, C, H, W) = ({b}, C, {h}, {w})")
    d = disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)
    dx = (d[..., :, 1:] - d[..., :, :-1]).abs()
    dy = (d[..., 1:, :] - d[..., :-1, :]).abs()
    wx = torch.exp(-(image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True))
    wy = torch.exp(-(image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True))
    return (dx * wx).mean() + (dy * wy).mean()


class SelfSupervisedLoss(nn.Module):
    """Monodepth2-style multi-scale objective. No parameters; call it from the training step.

    Example::

        loss_fn = SelfSupervisedLoss()
        out = loss_fn(target, {-1: prev, 1: nxt}, disps, {-1: T_prev_target, 1: T_next_target}, K)
        out["loss"].backward()

    Args:
        min_depth, max_depth: for :func:`~dna_depth_core.geometry.disp_to_depth`.
        smoothness_weight: smoothness weight at scale 0 (scale ``s`` uses ``smoothness_weight / 2**s``).
        ssim_weight: weight of the SSIM term in :func:`photometric_error`.
        automask: include identity errors in the per-pixel minimum.
        noise: std of the tie-breaking noise on the identity errors.
    """

    def __init__(self, min_depth: float = 0.1, max_depth: float = 100.0, smoothness_weight: float = 1e-3,
                 ssim_weight: float = 0.85, automask: bool = True, noise: float = 1e-5):
        super().__init__()
        self.min_depth, self.max_depth = min_depth, max_depth
        self.smoothness_weight, self.ssim_weight = smoothness_weight, ssim_weight
        self.automask, self.noise = automask, noise

    def forward(self, target: torch.Tensor, sources: Mapping[int, torch.Tensor], disps: Sequence[torch.Tensor],
                poses: Mapping[int, torch.Tensor], K: torch.Tensor) -> dict:
        """Compute the loss.

        Args:
            target: ``(B, 3, H, W)`` target image.
            sources: ``{frame_id: (B, 3, H, W)}`` source images (e.g. ids -1 and 1).
            disps: sigmoid disparities, scale ``s`` of shape ``(B, 1, H / 2**s, W / 2**s)``, scale 0 first.
            poses: ``{frame_id: T_source_target (B, 4, 4)}``, same keys as ``sources``.
            K: ``(B, 3, 3)`` (or ``(3, 3)``) intrinsics at ``H`` x ``W``.
        Returns:
            dict with ``loss`` (scalar, differentiable) and detached diagnostics: ``photometric/{s}`` and
            ``smoothness/{s}`` (scalars, smoothness unweighted), ``automask_fraction`` (fraction of scale-0
            pixels where a warped source won), ``automask`` (scale-0 mask, ``(B, 1, H, W)`` bool),
            ``depth/0`` (``(B, 1, H, W)``) and ``warped/{frame_id}`` (scale-0 warped sources, ``(B, 3, H, W)``).
        """
        check_shape(target, "target", (None, 3, None, None), "(B, 3, H, W)")
        b, _, h, w = target.shape
        if not sources:
            raise ValueError("sources must contain at least one source image")
        if set(sources) != set(poses):
            raise ValueError(f"poses must have the keys of sources {sorted(sources)}, got {sorted(poses)}")
        if len(disps) == 0:
            raise ValueError("disps must contain at least one disparity map")
        frame_ids = sorted(sources)
        for fid in frame_ids:
            _check_same(target, "target", sources[fid], f"sources[{fid}]")
        for s, disp in enumerate(disps):
            check_shape(disp, f"disps[{s}]", (b, 1, None, None), f"(B, 1, H/2^{s}, W/2^{s}) with B={b}")

        identity = None
        if self.automask:
            identity = torch.cat([photometric_error(sources[f], target, self.ssim_weight) for f in frame_ids], 1)

        out: dict = {}
        total = target.new_zeros(())
        for s, disp in enumerate(disps):
            disp_full = disp
            if disp.shape[-2:] != (h, w):
                disp_full = F.interpolate(disp, size=(h, w), mode="bilinear", align_corners=False)
            _, depth = disp_to_depth(disp_full, self.min_depth, self.max_depth)

            errors, warped = [], {}
            for fid in frame_ids:
                warped[fid], _ = warp(sources[fid], depth, K, poses[fid])
                errors.append(photometric_error(warped[fid], target, self.ssim_weight))
            per_pixel, mask = min_reprojection(torch.cat(errors, 1), identity, self.noise)
            photometric = per_pixel.mean()

            image_s = target
            if disp.shape[-2:] != (h, w):
                image_s = F.interpolate(target, size=disp.shape[-2:], mode="bilinear", align_corners=False,
                                        antialias=True)
            smooth = smoothness_loss(disp, image_s)
            total = total + photometric + self.smoothness_weight / (2 ** s) * smooth

            out[f"photometric/{s}"] = photometric.detach()
            out[f"smoothness/{s}"] = smooth.detach()
            if s == 0:
                out["automask_fraction"] = mask.float().mean().detach()
                out["automask"] = mask
                out["depth/0"] = depth.detach()
                for fid in frame_ids:
                    out[f"warped/{fid}"] = warped[fid].detach()
        out["loss"] = total / len(disps)
        return out


def compute_losses(target, sources, disps, poses, K, **options) -> dict:
    """Functional form: ``SelfSupervisedLoss(**options)(target, sources, disps, poses, K)``."""
    return SelfSupervisedLoss(**options)(target, sources, disps, poses, K)
