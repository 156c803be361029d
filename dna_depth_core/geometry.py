"""Camera geometry: depth <-> disparity, poses, warping (the self-supervised objective), depth <-> points.

Conventions (docs/conventions.md):

- Camera frame: optical frame (x right, y down, z forward).
- Pixels: ``(u, v)`` with the origin at the *centre* of the top-left pixel; ``u`` runs along the width
  (``0 .. W-1``), ``v`` along the height (``0 .. H-1``). The image covers ``u`` in ``[-0.5, W-0.5]``.
- Sampling: ``torch.nn.functional.grid_sample`` with ``align_corners=False``, for which pixel ``u`` sits at the
  normalised coordinate ``x = (u + 0.5) / W * 2 - 1`` (and likewise ``v`` / ``H``); see :func:`pixels_to_grid`.
- Intrinsics ``K``: ``(B, 3, 3)`` (or ``(3, 3)`` where stated) in pixels at the resolution used with them; how
  they are made and follow resizes is :mod:`dna_depth_core.camera`.
- Poses: ``T_a_b`` ``(B, 4, 4)`` maps points in frame ``b`` to frame ``a``: ``p_a = T_a_b @ p_b``. The warp of a
  source frame ``s`` onto the target ``t`` uses ``T_s_t``.
- Axis-angle: ``(B, 3)`` radians (direction = axis, norm = angle). Translations ``(B, 3)`` metres.
- Quaternions (numpy): ``(4,)`` in ``geometry_msgs/Quaternion`` order ``(x, y, z, w)``.
- Points to pixels (:func:`points_to_depth`): a point projecting to ``(u, v)`` lands on pixel
  ``(floor(u + 0.5), floor(v + 0.5))``: pixel ``i`` covers ``[i - 0.5, i + 0.5)``, so the image holds the points with
  ``-0.5 <= u < W - 0.5`` and ``-0.5 <= v < H - 0.5``.

Every tensor function checks the shapes of its arguments and raises ``ValueError`` naming the argument.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def check_shape(x, name: str, shape: tuple, desc: str) -> None:
    """Raise ValueError unless ``x`` is a tensor whose shape matches ``shape`` (``None`` = any size)."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {desc}, got {type(x).__name__}")
    if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        raise ValueError(f"{name} must have shape {desc}, got {tuple(x.shape)}")


def _check_batch(x: torch.Tensor, name: str, batch: int) -> None:
    if x.shape[0] != batch:
        raise ValueError(f"{name} has batch size {x.shape[0]}, expected {batch}")


def _check_depth_range(min_depth: float, max_depth: float) -> None:
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")


# ----------------------------------------------------------------------------------------------------------------
# Disparity <-> depth
# ----------------------------------------------------------------------------------------------------------------
def disp_to_depth(disp, min_depth: float = 0.1, max_depth: float = 100.0):
    """Convert the network's sigmoid output to depth.

    ``scaled_disp = 1/max_depth + (1/min_depth - 1/max_depth) * disp`` and ``depth = 1 / scaled_disp``, so
    ``disp = 0`` gives ``max_depth`` and ``disp = 1`` gives ``min_depth``.

    Args:
        disp: sigmoid disparity, any shape (usually ``(B, 1, H, W)``); tensor or ndarray.
    Returns:
        ``(scaled_disp, depth)``, both the shape of ``disp``.
    """
    _check_depth_range(min_depth, max_depth)
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    scaled_disp = min_disp + (max_disp - min_disp) * disp
    return scaled_disp, 1.0 / scaled_disp


def depth_to_disp(depth, min_depth: float = 0.1, max_depth: float = 100.0):
    """Inverse of :func:`disp_to_depth`: depth in metres -> the sigmoid value ``s`` that produces it.

    Args:
        depth: any shape; tensor or ndarray. Depths outside ``[min_depth, max_depth]`` map outside ``[0, 1]``.
    Returns:
        ``s``, the shape of ``depth``.
    """
    _check_depth_range(min_depth, max_depth)
    min_disp, max_disp = 1.0 / max_depth, 1.0 / min_depth
    return (1.0 / depth - min_disp) / (max_disp - min_disp)


# ----------------------------------------------------------------------------------------------------------------
# Poses
# ----------------------------------------------------------------------------------------------------------------
def _skew(v: torch.Tensor) -> torch.Tensor:
    """(B, 3) -> (B, 3, 3) cross-product matrices ``[v]_x``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(axisangle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle vectors (Rodrigues' formula).

    ``R = I + a [w]_x + b [w]_x^2`` with ``a = sin(t)/t``, ``b = (1 - cos(t))/t^2``, ``t = |w|``. Near ``t = 0`` the
    coefficients use their Taylor series, so the result and its gradient are finite at zero rotation.

    Args:
        axisangle: ``(B, 3)`` radians.
    Returns:
        ``(B, 3, 3)``.
    """
    check_shape(axisangle, "axisangle", (None, 3), "(B, 3)")
    theta2 = (axisangle * axisangle).sum(-1)
    small = theta2 < 1e-8
    safe_theta2 = torch.where(small, torch.ones_like(theta2), theta2)
    safe_theta = safe_theta2.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(safe_theta) / safe_theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(safe_theta)) / safe_theta2)
    k = _skew(axisangle)
    eye = torch.eye(3, dtype=axisangle.dtype, device=axisangle.device).expand_as(k)
    return eye + a[:, None, None] * k + b[:, None, None] * (k @ k)


def invert_pose(T):
    """Closed-form inverse of rigid transforms: ``[R | t]^-1 = [R^T | -R^T t]``.

    Args:
        T: a tensor ``(B, 4, 4)``, or a numpy array ``(..., 4, 4)``.
    Returns:
        the same kind and shape as ``T``.
    """
    if isinstance(T, np.ndarray):
        if T.shape[-2:] != (4, 4):
            raise ValueError(f"T must have shape (..., 4, 4), got {T.shape}")
        rot_t = np.swapaxes(T[..., :3, :3], -1, -2)
        out = np.zeros_like(T)
        out[..., :3, :3] = rot_t
        out[..., :3, 3] = -(rot_t @ T[..., :3, 3:])[..., 0]
        out[..., 3, 3] = 1.0
        return out
    check_shape(T, "T", (None, 4, 4), "(B, 4, 4)")
    rot_t = T[:, :3, :3].transpose(1, 2)
    out = torch.zeros_like(T)
    out[:, :3, :3] = rot_t
    out[:, :3, 3:] = -rot_t @ T[:, :3, 3:]
    out[:, 3, 3] = 1.0
    return out


def pose_vec_to_mat(axisangle: torch.Tensor, translation: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """Rigid transform ``T = [R(axisangle) | translation]``, or its inverse when ``invert`` is true.

    The pose network sees the ``-1`` source frame in temporal order, so its output for that pair is inverted
    to get ``T_source_target``.

    Args:
        axisangle: ``(B, 3)`` radians.
        translation: ``(B, 3)``.
    Returns:
        ``(B, 4, 4)``.
    """
    check_shape(axisangle, "axisangle", (None, 3), "(B, 3)")
    check_shape(translation, "translation", (None, 3), "(B, 3)")
    _check_batch(translation, "translation", axisangle.shape[0])
    rot = axis_angle_to_matrix(axisangle)
    bottom = rot.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(rot.shape[0], 1, 4)
    if invert:
        rot = rot.transpose(1, 2)
        trans = -rot @ translation.unsqueeze(-1)
    else:
        trans = translation.unsqueeze(-1)
    return torch.cat([torch.cat([rot, trans], dim=2), bottom], dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Back-projection, projection, warping
# ----------------------------------------------------------------------------------------------------------------
def _pixel_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Homogeneous pixel coordinates ``(3, H*W)``: rows u, v, 1 in row-major pixel order."""
    v, u = torch.meshgrid(torch.arange(height, dtype=like.dtype, device=like.device),
                          torch.arange(width, dtype=like.dtype, device=like.device), indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)], dim=0)


def _batched_K(K: torch.Tensor, name: str, batch: int) -> torch.Tensor:
    """Accept ``(B, 3, 3)`` or ``(3, 3)``; return ``(B, 3, 3)``."""
    if isinstance(K, torch.Tensor) and K.shape == (3, 3):
        return K.expand(batch, 3, 3)
    check_shape(K, name, (None, 3, 3), "(B, 3, 3) or (3, 3)")
    _check_batch(K, name, batch)
    return K


def backproject(depth: torch.Tensor, K_inv: torch.Tensor) -> torch.Tensor:
    """Lift every pixel to a 3-D point in the camera frame: ``p = depth * K^-1 [u, v, 1]^T``.

    Args:
        depth: ``(B, 1, H, W)`` z-depth.
        K_inv: ``(B, 3, 3)`` or ``(3, 3)`` inverse intrinsics.
    Returns:
        points ``(B, 3, H, W)``.
    """
    check_shape(depth, "depth", (None, 1, None, None), "(B, 1, H, W)")
    b, _, h, w = depth.shape
    K_inv = _batched_K(K_inv, "K_inv", b)
    rays = K_inv @ _pixel_grid(h, w, depth)  # (B, 3, H*W)
    return rays.reshape(b, 3, h, w) * depth


def project(points: torch.Tensor, K: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Project camera-frame points to pixel coordinates ``(u, v)``.

    ``z`` is clamped to at least ``eps``, so points behind the camera land far outside the image (never NaN).

    Args:
        points: ``(B, 3, H, W)``.
        K: ``(B, 3, 3)`` or ``(3, 3)``.
    Returns:
        pix ``(B, H, W, 2)``, last axis ``(u, v)``.
    """
    check_shape(points, "points", (None, 3, None, None), "(B, 3, H, W)")
    b, _, h, w = points.shape
    K = _batched_K(K, "K", b)
    cam = K @ points.reshape(b, 3, -1)  # (B, 3, H*W)
    pix = cam[:, :2] / cam[:, 2:].clamp(min=eps)
    return pix.reshape(b, 2, h, w).permute(0, 2, 3, 1)


def pixels_to_grid(pix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates -> ``grid_sample`` coordinates for ``align_corners=False``.

    ``x = (u + 0.5) / width * 2 - 1``, ``y = (v + 0.5) / height * 2 - 1``: pixel centres ``u = 0`` and ``u = W-1``
    map to ``-1 + 1/W`` and ``1 - 1/W``; the image edges ``u = -0.5`` and ``u = W-0.5`` map to -1 and 1.

    Args:
        pix: ``(B, H', W', 2)`` pixel coordinates ``(u, v)`` in an image of size ``height`` x ``width``.
    Returns:
        ``(B, H', W', 2)``.
    """
    check_shape(pix, "pix", (None, None, None, 2), "(B, H, W, 2)")
    size = pix.new_tensor([width, height])
    return (pix + 0.5) / size * 2.0 - 1.0


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply rigid transforms: ``p' = R p + t``.

    Args:
        T: ``(B, 4, 4)``.
        points: ``(B, 3, H, W)``.
    Returns:
        ``(B, 3, H, W)``.
    """
    check_shape(T, "T", (None, 4, 4), "(B, 4, 4)")
    check_shape(points, "points", (None, 3, None, None), "(B, 3, H, W)")
    _check_batch(T, "T", points.shape[0])
    b = points.shape[0]
    out = T[:, :3, :3] @ points.reshape(b, 3, -1) + T[:, :3, 3:]
    return out.reshape(points.shape)


def warp(source: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, T_source_target: torch.Tensor,
         padding_mode: str = "border", eps: float = 1e-7):
    """Synthesise the target view from a source image (inverse warping).

    Each target pixel is back-projected with its ``depth`` and ``K^-1``, moved into the source frame with
    ``T_source_target``, projected with ``K`` and the source is sampled there bilinearly
    (``grid_sample(..., align_corners=False)``, see :func:`pixels_to_grid`).

    Args:
        source: ``(B, C, H, W)`` source image.
        depth: ``(B, 1, H, W)`` target depth.
        K: ``(B, 3, 3)`` or ``(3, 3)`` intrinsics at ``H`` x ``W``.
        T_source_target: ``(B, 4, 4)``.
        padding_mode: ``grid_sample`` padding for samples outside the source.
    Returns:
        ``(warped (B, C, H, W), valid (B, 1, H, W) bool)``; ``valid`` is true where the point is in front of the
        source camera (``z > eps``) and projects inside the source image (``u`` in ``[-0.5, W-0.5]``,
        ``v`` in ``[-0.5, H-0.5]``).
    """
    check_shape(source, "source", (None, None, None, None), "(B, C, H, W)")
    check_shape(depth, "depth", (None, 1, None, None), "(B, 1, H, W)")
    if depth.shape[0] != source.shape[0] or depth.shape[-2:] != source.shape[-2:]:
        raise ValueError(f"depth must have shape (B, 1, H, W) matching source {tuple(source.shape)}, "
                         f"got {tuple(depth.shape)}")
    check_shape(T_source_target, "T_source_target", (None, 4, 4), "(B, 4, 4)")
    b, _, h, w = source.shape
    _check_batch(T_source_target, "T_source_target", b)
    K = _batched_K(K, "K", b)

    points = transform_points(T_source_target, backproject(depth, torch.linalg.inv(K)))
    grid = pixels_to_grid(project(points, K, eps), h, w)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    inside = (grid.abs() <= 1.0).all(dim=-1).unsqueeze(1)
    valid = inside & (points[:, 2:3] > eps)
    return warped, valid


def depth_to_points(depth, K):
    """Organised point cloud in the optical frame (x right, y down, z forward), NaN where depth is invalid.

    Args:
        depth: numpy ``(H, W)`` metres with ``K`` a ``(3, 3)`` array, or a tensor ``(B, 1, H, W)`` with ``K``
            ``(B, 3, 3)`` / ``(3, 3)``. Depth that is not finite or ``<= 0`` is invalid.
    Returns:
        numpy ``(H, W, 3)`` float32, or a tensor ``(B, 3, H, W)``; xyz, all three NaN at invalid pixels.
    """
    if isinstance(depth, torch.Tensor):
        check_shape(depth, "depth", (None, 1, None, None), "(B, 1, H, W)")
        K = _batched_K(torch.as_tensor(K, dtype=depth.dtype, device=depth.device), "K", depth.shape[0])
        valid = torch.isfinite(depth) & (depth > 0)
        points = backproject(torch.where(valid, depth, torch.ones_like(depth)), torch.linalg.inv(K))
        return torch.where(valid, points, torch.full_like(points, float("nan")))

    depth = np.asarray(depth)
    K = np.asarray(K, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f"depth must have shape (H, W), got {depth.shape}")
    if K.shape != (3, 3):
        raise ValueError(f"K must have shape (3, 3), got {K.shape}")
    h, w = depth.shape
    z = depth.astype(np.float64)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(z) & (z > 0)
    z = np.where(valid, z, np.nan)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T  # (H, W, 3), z-component 1
    return (rays * z[..., None]).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Quaternions and sparse depth from points (numpy)
# ----------------------------------------------------------------------------------------------------------------
def quaternion_to_matrix(q, tolerance: float = 1e-2) -> np.ndarray:
    """Unit quaternion ``(x, y, z, w)`` (``geometry_msgs/Quaternion`` order) -> ``(3, 3)`` float64 rotation.

    A quaternion whose norm is within ``tolerance`` of 1 is normalised first (messages store rounded values);
    ``ValueError`` when it is further off, not finite, or not 4 numbers.
    """
    q = np.asarray(q, np.float64).reshape(-1)
    if q.shape != (4,) or not np.isfinite(q).all():
        raise ValueError(f"a quaternion must be 4 finite numbers (x, y, z, w), got {q.tolist()}")
    n = float(np.linalg.norm(q))
    if abs(n - 1.0) > tolerance:
        raise ValueError(f"quaternion (x, y, z, w) = {q.tolist()} has norm {n:.6g}, not 1")
    x, y, z, w = q / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quaternion(R) -> np.ndarray:
    """``(3, 3)`` rotation -> unit quaternion ``(x, y, z, w)`` with ``w >= 0`` (the inverse of
    :func:`quaternion_to_matrix`; Shepperd's method, stable for every angle)."""
    R = np.asarray(R, np.float64)
    if R.shape != (3, 3):
        raise ValueError(f"R must have shape (3, 3), got {R.shape}")
    tr = np.trace(R)
    k = int(np.argmax([tr, R[0, 0], R[1, 1], R[2, 2]]))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 - R[0, 0] + R[1, 1] - R[2, 2])
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 - R[0, 0] - R[1, 1] + R[2, 2])
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def points_to_depth(points, P, height: int, width: int, counts: dict | None = None) -> np.ndarray:
    """Sparse depth map of 3-D points seen through a projection: the ground truth a LiDAR scan gives a camera.

    Each point ``p`` goes to ``(u z, v z, z) = P [p; 1]`` (``P`` ``(3, 4)``, e.g. ``K @ T_camera_lidar[:3]``), or
    ``K p`` for a ``(3, 3)`` ``P`` (points already in the camera's optical frame). Points with ``z <= 0`` (behind
    the camera) and points off the image are dropped; a point lands on pixel ``(floor(u + 0.5), floor(v + 0.5))``
    (the module's rounding convention: pixel centres at integer coordinates); when several land on one pixel the
    nearest (smallest ``z``) wins. Points that are not finite are dropped.

    Args:
        points: ``(N, 3)`` (or ``(N, C)``, C > 3: the columns after the third are ignored).
        P: ``(3, 4)`` or ``(3, 3)`` in pixels of a ``width`` x ``height`` image.
        counts: when given, receives ``points`` (N), ``in_front`` (finite, ``z > 0``), ``on_image`` (of those, on
            the image) and ``pixels`` (pixels that received a point).
    Returns:
        ``(height, width)`` float32 depth (camera z, the units of ``points``), 0 where no point landed.
    """
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    P = np.asarray(P, np.float64)
    if P.shape == (3, 3):
        P = np.hstack([P, np.zeros((3, 1))])
    if P.shape != (3, 4):
        raise ValueError(f"P must have shape (3, 4) or (3, 3), got {P.shape}")
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    proj = pts[:, :3] @ P[:, :3].T + P[:, 3]
    z = proj[:, 2]
    with np.errstate(invalid="ignore"):
        front = np.isfinite(proj).all(axis=1) & (z > 0)
    proj, z = proj[front], z[front]
    u = np.floor(proj[:, 0] / z + 0.5)
    v = np.floor(proj[:, 1] / z + 0.5)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    idx = v[inside].astype(np.int64) * width + u[inside].astype(np.int64)
    out = np.full(height * width, np.inf)
    np.minimum.at(out, idx, z[inside])
    hit = np.isfinite(out)
    out[~hit] = 0.0
    if counts is not None:
        counts.update(points=int(len(pts)), in_front=int(front.sum()), on_image=int(inside.sum()),
                      pixels=int(hit.sum()))
    return out.reshape(height, width).astype(np.float32)
