"""Training augmentations, written in torch (no torchvision needed).

- Colour jitter as in the Monodepth2 protocol: brightness, contrast and saturation factors drawn uniformly in
  [1 - 0.2, 1 + 0.2], a hue shift drawn in [-0.1, 0.1] (fraction of the hue circle), applied in a random order.
  One :class:`ColorJitter` is drawn per sample and applied identically to all of its frames.
- The horizontal flip of images is done by the datasets; its intrinsics are :func:`dna_depth_core.camera.flip_K`.

Images are float tensors ``(..., 3, H, W)`` in [0, 1], RGB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

_LUMA = (0.299, 0.587, 0.114)


def _check_image(img: torch.Tensor, name: str = "img") -> None:
    if not torch.is_tensor(img) or img.dim() < 3 or img.shape[-3] != 3:
        shape = tuple(img.shape) if torch.is_tensor(img) else type(img).__name__
        raise ValueError(f"{name} must be a tensor (..., 3, H, W), got {shape}")


def grayscale(img: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601) of (..., 3, H, W) RGB -> (..., 1, H, W)."""
    _check_image(img)
    r, g, b = img.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def adjust_brightness(img: torch.Tensor, factor: float) -> torch.Tensor:
    """``img * factor``, clamped to [0, 1]."""
    _check_image(img)
    return (img * factor).clamp(0.0, 1.0)


def adjust_contrast(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the mean luma of each image: ``factor * img + (1 - factor) * mean``, clamped."""
    _check_image(img)
    mean = grayscale(img).mean(dim=(-3, -2, -1), keepdim=True)
    return (factor * img + (1.0 - factor) * mean).clamp(0.0, 1.0)


def adjust_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with the per-pixel luma: ``factor * img + (1 - factor) * gray``, clamped."""
    _check_image(img)
    return (factor * img + (1.0 - factor) * grayscale(img)).clamp(0.0, 1.0)


def rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> HSV with all channels in [0, 1] (hue as a fraction of the circle)."""
    _check_image(img)
    r, g, b = img.unbind(-3)
    maxc, _ = img.max(dim=-3)
    minc, _ = img.min(dim=-3)
    delta = maxc - minc
    v = maxc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    d = delta.clamp_min(1e-12)
    hr = ((g - b) / d) % 6.0
    hg = (b - r) / d + 2.0
    hb = (r - g) / d + 4.0
    h = torch.where(maxc == r, hr, torch.where(maxc == g, hg, hb))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    return torch.stack([h, s, v], dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    _check_image(hsv, "hsv")
    h, s, v = hsv.unbind(-3)
    h6 = (h % 1.0) * 6.0
    # f(n) = v - v s max(0, min(k, 4 - k, 1)), k = (n + h6) mod 6, for n = 5, 3, 1 -> r, g, b
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (n + h6) % 6.0
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=-3)


def adjust_hue(img: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue by ``shift`` (fraction of the circle, in [-0.5, 0.5])."""
    _check_image(img)
    if shift == 0:
        return img.clone()
    hsv = rgb_to_hsv(img)
    h, s, v = hsv.unbind(-3)
    return hsv_to_rgb(torch.stack([(h + shift) % 1.0, s, v], dim=-3)).clamp(0.0, 1.0)


@dataclass(frozen=True)
class ColorJitter:
    """One drawn colour jitter: factors, hue shift and the order of the four operations.

    ``order`` lists 0 (brightness), 1 (contrast), 2 (saturation), 3 (hue). Calling it on (..., 3, H, W) applies
    the same parameters to every image (contrast uses each image's own mean luma).
    """

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[int, ...] = (0, 1, 2, 3)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _check_image(img)
        for op in self.order:
            if op == 0:
                img = adjust_brightness(img, self.brightness)
            elif op == 1:
                img = adjust_contrast(img, self.contrast)
            elif op == 2:
                img = adjust_saturation(img, self.saturation)
            elif op == 3:
                img = adjust_hue(img, self.hue)
            else:
                raise ValueError(f"order must hold operations 0..3, got {self.order}")
        return img


def sample_color_jitter(
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.1,
) -> ColorJitter:
    """Draw a :class:`ColorJitter`: factors uniform in [1 - x, 1 + x], hue uniform in [-hue, hue], random order."""
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    for name, x in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        if not 0 <= x < 1:
            raise ValueError(f"{name} must be in [0, 1), got {x}")
    return ColorJitter(
        brightness=float(rng.uniform(1 - brightness, 1 + brightness)),
        contrast=float(rng.uniform(1 - contrast, 1 + contrast)),
        saturation=float(rng.uniform(1 - saturation, 1 + saturation)),
        hue=float(rng.uniform(-hue, hue)),
        order=tuple(int(i) for i in rng.permutation(4)),
    )
