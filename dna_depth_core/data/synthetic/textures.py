"""Band-limited texture primitives of the synthetic street. Inputs are 1-D arrays over the hits of one plane:
in-plane coordinates (s, t) in metres and their derivatives per output pixel (s_u, s_v, t_u, t_v); each primitive
is pre-filtered analytically by the Gaussian footprint of the pixel, so nothing aliases."""
from __future__ import annotations

import numpy as np

FILTER_SIGMA = 0.5  # Gaussian pre-filter of the textures, in output pixels
#: Sub-pixel offsets of the supersampling at geometric edges, by samples per axis.
SUBPIXEL = {1: (0.0,), 2: (-0.25, 0.25), 3: (-1.0 / 3.0, 0.0, 1.0 / 3.0), 4: (-0.375, -0.125, 0.125, 0.375)}


def make_sines(rng: np.random.Generator, n: int, fmin: float, fmax: float, slope: float = 0.6) -> np.ndarray:
    """``n`` random plane waves as rows (2 pi fs, 2 pi ft, phase, amplitude); the sum has unit std."""
    f = np.exp(rng.uniform(np.log(fmin), np.log(fmax), n))
    ang = rng.uniform(0.0, np.pi, n)
    amp = f ** (-slope) * rng.uniform(0.6, 1.0, n)
    amp /= np.sqrt(0.5 * np.sum(amp**2))
    w = 2.0 * np.pi * f
    return np.stack([w * np.cos(ang), w * np.sin(ang), rng.uniform(0, 2 * np.pi, n), amp], 1).astype(np.float32)


def sines(s, t, su, sv, tu, tv, waves: np.ndarray) -> np.ndarray:
    """Sum of plane waves, each pre-filtered by the Gaussian footprint of its screen-space frequency.

    Wave k contributes ``amp_k * exp(-sigma^2/2 * |J^T w_k|^2) * cos(w_k . (s, t) + phase_k)`` where J is the
    Jacobian of (s, t) per output pixel; the linear parts are matrix products (fast in numpy).
    """
    ws, wt, ph, amp = waves[:, 0], waves[:, 1], waves[:, 2], waves[:, 3]
    c = np.float32(-0.5 * FILTER_SIGMA**2)
    quad = np.stack([c * (su * su + sv * sv), (2 * c) * (su * tu + sv * tv), c * (tu * tu + tv * tv)], 1)
    att = quad @ np.stack([ws * ws, ws * wt, wt * wt])
    np.exp(att, out=att)
    phase = np.stack([s, t, np.ones_like(s)], 1) @ np.stack([ws, wt, ph])
    np.cos(phase, out=phase)
    att *= phase
    return att @ amp


def erf(x: np.ndarray) -> np.ndarray:
    """Error function, ``tanh(x (2/sqrt(pi) + 0.1009 x^2))`` (|error| < 4e-4: plenty for 8-bit textures)."""
    return np.tanh(x * (np.float32(1.1283791671) + np.float32(0.1009) * (x * x)))


def band(s, su, sv, lo: float, hi: float, soft: float = 0.01) -> np.ndarray:
    """Indicator of lo < s < hi convolved with the pixel-footprint Gaussian (plus a small intrinsic softness)."""
    sig = np.sqrt(soft * soft + FILTER_SIGMA**2 * (su * su + sv * sv)) * np.float32(np.sqrt(2.0))
    return 0.5 * (erf((s - lo) / sig) - erf((s - hi) / sig))


def pulses(s, su, sv, period, duty, centre, soft: float = 0.01) -> np.ndarray:
    """Periodic pulse train in [0, 1] (pulses duty*period wide, centred on centre + k*period), pre-filtered.

    Each pulse is a box convolved with the pixel-footprint Gaussian (sigma); where sigma grows past a tenth of
    the period the result fades to the train's mean (the duty), which is where its Fourier series has no
    energy left below the pixel's Nyquist frequency. ``period``, ``duty`` and ``centre`` are scalars or arrays
    like ``s``.
    """
    period = np.asarray(period, np.float32)
    half = 0.5 * np.asarray(duty, np.float32) * period
    rel = s - centre
    d = rel - period * np.floor(rel / period + 0.5)  # offset from the nearest pulse centre
    sig = np.sqrt(soft * soft + FILTER_SIGMA**2 * (su * su + sv * sv))
    k = np.float32(1.0 / np.sqrt(2.0)) / sig
    val = 0.5 * (erf((d + half) * k) - erf((d - half) * k))
    fade = np.clip((sig / period - 0.1) * np.float32(1.0 / 0.15), 0.0, 1.0)
    return val + fade * (np.asarray(duty, np.float32) - val)
